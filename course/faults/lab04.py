"""Lab 04's break/fix catalogue: three pods made by a CNI plugin with a planted fault.

The scenario (`attach_pods`): node1 runs `mystery-bridge` (the course bridge plugin with one
fault from `course.cni.faulty`) for network `mystery-net` (10.244.1.100-150, same cni0 and
gateway as the rest of the lab):
    pod-x  ADD with CNI_IFNAME=eth0
    pod-y  ADD with CNI_IFNAME=net1
    pod-z  ADD, then DEL (the pod was deleted; its address must be free again)
Working state: pod-x has eth0 and pod-y has net1, each with its address and a default route
via 10.244.1.1; every node-side veth is a port of cni0; host-local holds addresses only for
pod-x and pod-y. node1 has 10.96.0.10/32 on lo: an address outside the pod subnet, so a
pod reaches it only through its default route.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from course.cni.faulty import install_faulty
from course.cni.learner import reservations
from course.cni.runtime import DEBIAN_PLUGIN_DIR, Attachment, Runtime, bridge_conflist, run_state
from course.faults import Catalogue, Fault, Roles

NODE = "node1"
NETWORK = "mystery-net"
PLUGIN = "mystery-bridge"
OUTSIDE = "10.96.0.10"  # on node1's lo: reached only through a pod's default route
PODS = {"pod-x": "eth0", "pod-y": "net1", "pod-z": "eth0"}


def _prefix(roles: Roles) -> str:
    return roles[NODE].name.rsplit("-", 1)[0]


def state(roles: Roles) -> Path:
    return run_state(_prefix(roles)) / "node1" / "mystery"


def conflist(roles: Roles) -> dict:
    conf = bridge_conflist(1, state(roles) / "networks", plugin_type=PLUGIN, name=NETWORK)
    conf["plugins"][0]["ipam"].update(rangeStart="10.244.1.100", rangeEnd="10.244.1.150")
    return conf


def runtime(roles: Roles) -> Runtime:
    bin_dir = run_state(_prefix(roles)) / "bin"
    return Runtime(roles[NODE].path, [bin_dir, DEBIAN_PLUGIN_DIR], state(roles) / "cache")


def attachment(roles: Roles, role: str) -> Attachment:
    return Attachment(roles[role].name, str(roles[role].path), PODS[role])


def attach_pods(roles: Roles, fault: str) -> None:
    """Install the faulty plugin and let it make the three pods (pod-z is deleted again)."""
    install_faulty(run_state(_prefix(roles)) / "bin", fault, PLUGIN)
    with contextlib.suppress(RuntimeError):
        roles[NODE].add_address("lo", f"{OUTSIDE}/32")
    rt, conf = runtime(roles), conflist(roles)
    for role in PODS:
        rt.add(conf, attachment(roles, role))
    rt.delete(conf, attachment(roles, "pod-z"))


def leaked(roles: Roles) -> list[str]:
    """Addresses host-local still holds for pod-z, which was deleted."""
    held = reservations(state(roles) / "networks", NETWORK)
    return [ip for ip, holder in held.items() if holder == roles["pod-z"].name]


def _has_default_route(roles: Roles, role: str) -> bool:
    return any(r["dst"] == "default" for r in roles[role].routes())


def _loose_veths(roles: Roles) -> list[str]:
    node = roles[NODE]
    return [e["name"] for e in node.links() if e["kind"] == "veth" and not e["master"]]


# --- repairs (the instructor's; never shown to learners) ------------------------------------
def _rename(roles: Roles) -> None:
    pod = roles["pod-y"]
    pod.run(["ip", "link", "set", "eth0", "down"])
    pod.run(["ip", "link", "set", "eth0", "name", "net1"])
    pod.run(["ip", "link", "set", "net1", "up"])
    pod.run(["ip", "route", "replace", "default", "via", "10.244.1.1", "dev", "net1"])


def _add_routes(roles: Roles) -> None:
    for role in ("pod-x", "pod-y"):
        if not _has_default_route(roles, role):
            roles[role].run(["ip", "route", "add", "default", "via", "10.244.1.1"])


def _plug(roles: Roles) -> None:
    for name in _loose_veths(roles):
        roles[NODE].set_master(name, "cni0")


def _release(roles: Roles) -> None:
    for ip in leaked(roles):
        (state(roles) / "networks" / NETWORK / ip).unlink()


def _scenario(fault: str) -> Callable[[Roles], None]:
    def apply(roles: Roles) -> None:
        attach_pods(roles, fault)

    return apply


CATALOGUE = Catalogue(
    "04-cni-plugin/mystery-bridge",
    faults=(
        Fault(
            "ignores-ifname",
            "the plugin names every pod interface eth0, whatever CNI_IFNAME says",
            _scenario("ignores-ifname"),
            where="the runtime asked pod-y for an interface the pod does not have",
            look_at="the interface names inside pod-y (`ip -br link`) against CNI_IFNAME of its ADD",
            present=lambda r: r["pod-y"].has_link("eth0") and not r["pod-y"].has_link("net1"),
            repair=_rename,
        ),
        Fault(
            "no-default-route",
            "the plugin drops the routes IPAM returned",
            _scenario("no-default-route"),
            where="a pod reaches its neighbours and the gateway, but nothing outside 10.244.1.0/24",
            look_at="the pods' routing tables (`ip route`) against the routes in the ADD result",
            present=lambda r: not all(_has_default_route(r, p) for p in ("pod-x", "pod-y")),
            repair=_add_routes,
        ),
        Fault(
            "veth-not-on-bridge",
            "the node end of each veth is left outside cni0",
            _scenario("veth-not-on-bridge"),
            where="a pod's ARP request for its neighbour leaves the pod and never reaches cni0",
            look_at="the node-side veths in node1 (`ip -br link`, `bridge link`): which bridge holds them",
            present=lambda r: bool(_loose_veths(r)),
            repair=_plug,
        ),
        Fault(
            "releases-wrong-address",
            "DEL asks host-local to release an attachment that never existed",
            _scenario("releases-wrong-address"),
            where="pod-z is gone, yet its address is still taken: the range runs out sooner",
            look_at=f"host-local's reservations (files under the {NETWORK} dataDir: whose id is in each)",
            present=lambda r: bool(leaked(r)),
            repair=_release,
        ),
    ),
    k=1,
    story=(
        "node1's pods pod-x (CNI_IFNAME eth0) and pod-y (CNI_IFNAME net1) were made by "
        "mystery-bridge, and pod-z was made and deleted. Something about them is not as the "
        "CNI spec and the ADD results say."
    ),
)
