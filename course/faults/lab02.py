"""Lab 02's break/fix catalogue: node1 in bridge mode (pods a, b), node2 routed (pods c, d).

Working state (exercises 1 and 2): on node1, `cni0` holds 10.244.1.1/24 and each pod's
host-side veth is a port of it; each pod has a /24 and a default route via 10.244.1.1. On
node2 (Calico style), each pod has a /32, a link-local route to 169.254.1.1 and a default via
it; each `cali...` end has proxy ARP on and node2 has a /32 route per pod; node2 forwards.

The learner names the host-side veths, so every fault finds a pod's cable from the pod's
side: the node end is the link whose index the pod's `eth0` names as its peer.
"""

from __future__ import annotations

import contextlib
from typing import Any

from course.faults import Catalogue, Fault, Roles
from course.kernel import Netns

POD_IP = {"a": "10.244.1.2", "b": "10.244.1.3", "c": "10.244.2.2", "d": "10.244.2.3"}
NODE_OF = {"a": "node1", "b": "node1", "c": "node2", "d": "node2"}
GATEWAY = {"node1": "10.244.1.1", "node2": "169.254.1.1"}


def pod_role(pod: str) -> str:
    return f"{NODE_OF[pod]}-{pod}"


def host_end(roles: Roles, pod: str) -> str:
    """The name of the node-side end of `pod`'s eth0, found through the veth peer index."""
    peer_index = roles[pod_role(pod)].link("eth0")["link"]
    node = roles[NODE_OF[pod]]
    for link in node.links():
        if link["index"] == peer_index:
            return str(link["name"])
    raise LookupError(f"pod {pod}'s cable has no end in {NODE_OF[pod]}")


def _sysctl_is(ns: Netns, key: str, value: str) -> bool:
    return ns.sysctl(key).strip() == value


def _routes_to(ns: Netns, dst: str) -> list[dict[str, Any]]:
    return [r for r in ns.routes() if r["dst"] == dst]


def _forget_neighbours(ns: Netns) -> None:
    """What a few minutes would do: cached ARP answers expire and must be asked again."""
    ns.run(["ip", "neigh", "flush", "all"], check=False)


def _proxy_arp_off(roles: Roles) -> None:
    roles["node2"].sysctl(_proxy_arp_key(roles), 0)
    _forget_neighbours(roles[pod_role("c")])


# --- node2, routed ----------------------------------------------------------------------------
def _proxy_arp_key(roles: Roles) -> str:
    return f"net.ipv4.conf.{host_end(roles, 'c')}.proxy_arp"


def _route_d_key(roles: Roles) -> tuple[Netns, str]:
    return roles["node2"], f"{POD_IP['d']}/32"


def _drop_route_d(roles: Roles) -> None:
    node, dst = _route_d_key(roles)
    node.del_route(dst)


def _route_d_missing(roles: Roles) -> bool:
    node, dst = _route_d_key(roles)
    return not _routes_to(node, dst)


def _restore_route_d(roles: Roles) -> None:
    node, dst = _route_d_key(roles)
    with contextlib.suppress(RuntimeError):
        node.add_route(dst, dev=host_end(roles, "d"), scope="link")


def _default_c_missing(roles: Roles) -> bool:
    return not _routes_to(roles[pod_role("c")], "default")


def _restore_default_c(roles: Roles) -> None:
    pod = roles[pod_role("c")]
    pod.add_route(f"{GATEWAY['node2']}/32", dev="eth0", scope="link")
    pod.add_route("0.0.0.0/0", via=GATEWAY["node2"], dev="eth0")


def _cali_d_down(roles: Roles) -> None:
    # A link set down also loses the routes through it: the repair takes two steps.
    roles["node2"].down(host_end(roles, "d"))


def _cali_d_is_down(roles: Roles) -> bool:
    return not roles["node2"].link(host_end(roles, "d"))["up"]


def _cali_d_up(roles: Roles) -> None:
    roles["node2"].up(host_end(roles, "d"))
    _restore_route_d(roles)


# --- node1, bridge ----------------------------------------------------------------------------
def _unplug_b(roles: Roles) -> None:
    roles["node1"].set_master(host_end(roles, "b"), None)


def _b_unplugged(roles: Roles) -> bool:
    node = roles["node1"]
    master = node.link(host_end(roles, "b"))["master"]
    return master != node.index("cni0")


def _gateway_missing(roles: Roles) -> bool:
    return f"{GATEWAY['node1']}/24" not in roles["node1"].addresses("cni0")


def _drop_gateway(roles: Roles) -> None:
    node = roles["node1"]
    node.ipr.addr("del", index=node.index("cni0"), address=GATEWAY["node1"], prefixlen=24)


def _restore_gateway(roles: Roles) -> None:
    with contextlib.suppress(Exception):
        roles["node1"].add_address("cni0", f"{GATEWAY['node1']}/24")


def _default_a_missing(roles: Roles) -> bool:
    return not _routes_to(roles[pod_role("a")], "default")


def _restore_default_a(roles: Roles) -> None:
    with contextlib.suppress(RuntimeError):
        roles[pod_role("a")].add_route("0.0.0.0/0", via=GATEWAY["node1"])


CATALOGUE = Catalogue(
    name="02-bridge-vs-routed/both-nodes",
    k=2,
    # A cable taken down drops the routes through it: with pod d's cali end down, node2's
    # missing /32 to pod d is no second fault (its repair brings the route back anyway).
    apart=(("node2-route-d-missing", "cali-d-down"),),
    story=(
        "Some pods no longer reach each other or their node. Find where the packets stop "
        "(ping, tcpdump, ip link/addr/route/neigh, bridge link, sysctl, in each namespace) "
        "and repair the lab."
    ),
    faults=(
        Fault(
            "proxy-arp-off-c",
            "proxy ARP is off on pod c's cali end",
            _proxy_arp_off,
            where="pod c asks ARP 'who has 169.254.1.1?' on its cable and nobody answers",
            look_at="the settings of the node2 end of pod c's cable (`sysctl -a | grep proxy_arp`)",
            present=lambda r: _sysctl_is(r["node2"], _proxy_arp_key(r), "0"),
            repair=lambda r: r["node2"].sysctl(_proxy_arp_key(r), 1),
        ),
        Fault(
            "node2-route-d-missing",
            "node2 has no /32 route to pod d",
            _drop_route_d,
            where="pod c's ping to 10.244.2.3 reaches node2, but never leaves on pod d's cable",
            look_at="node2's routing table (`ip route get 10.244.2.3` in node2)",
            present=lambda r: not _cali_d_is_down(r) and _route_d_missing(r),
            repair=_restore_route_d,
        ),
        Fault(
            "node2-forwarding-off",
            "node2 does not forward",
            lambda r: r["node2"].sysctl("net.ipv4.ip_forward", 0),
            where="pod c's ping reaches node2 on c's cable and goes no further",
            look_at="whether node2 is allowed to route between its interfaces (`sysctl net.ipv4.ip_forward`)",
            present=lambda r: _sysctl_is(r["node2"], "net.ipv4.ip_forward", "0"),
            repair=lambda r: r["node2"].sysctl("net.ipv4.ip_forward", 1),
        ),
        Fault(
            "pod-c-default-missing",
            "pod c has no default route",
            lambda r: r[pod_role("c")].del_route("0.0.0.0/0"),
            where="pod c's ping to 10.244.2.3 never leaves pod c (with a /32, nothing is on its link)",
            look_at="pod c's routing table (`ip route` in pod c)",
            present=_default_c_missing,
            repair=_restore_default_c,
        ),
        Fault(
            "cali-d-down",
            "node2's end of pod d's cable is down",
            _cali_d_down,
            where="node2 cannot send to 10.244.2.3 at all: the packet never leaves node2",
            look_at="node2's end of pod d's cable (`ip link` in node2), then node2's routes",
            present=_cali_d_is_down,
            repair=_cali_d_up,
        ),
        Fault(
            "bridge-port-b-unplugged",
            "pod b's veth is no longer a port of cni0",
            _unplug_b,
            where="pod a asks ARP 'who has 10.244.1.3?' and the question never reaches pod b",
            look_at="which interfaces are ports of cni0 on node1 (`bridge link`)",
            present=_b_unplugged,
            repair=lambda r: r["node1"].set_master(host_end(r, "b"), "cni0"),
        ),
        Fault(
            "cni0-gateway-missing",
            "cni0 lost its gateway address 10.244.1.1",
            _drop_gateway,
            where="pod a asks ARP 'who has 10.244.1.1?' for anything outside its /24, and nobody answers",
            look_at="the addresses on node1's bridge (`ip addr show cni0` in node1)",
            present=_gateway_missing,
            repair=_restore_gateway,
        ),
        Fault(
            "pod-a-default-missing",
            "pod a has no default route",
            lambda r: r[pod_role("a")].del_route("0.0.0.0/0"),
            where="pod a reaches pod b, but cannot send anything to node1's 192.168.1.11",
            look_at="pod a's routing table (`ip route` in pod a)",
            present=_default_a_missing,
            repair=_restore_default_a,
        ),
    ),
)
