"""Lab 01's break/fix catalogue: node1 and its pods pod-c, pod-d, as built in exercise 4.

Working state (exercise 4): node1 has 10.244.1.1/32 on lo and a /32 route to each pod
through that pod's host-side veth (`veth-c`, `veth-d`); each pod has its address as a /24
on `eth0`. Every fault below breaks "node1 pings both pods" in a different place.
"""

from __future__ import annotations

import contextlib

from course.faults import Catalogue, Fault, Roles

NODE = "node1"
POD_IP = {"pod-c": "10.244.1.4", "pod-d": "10.244.1.5"}


def _up(roles: Roles, role: str, ifname: str) -> bool:
    return bool(roles[role].link(ifname)["up"])


def _pod_eth0_down(roles: Roles) -> None:
    roles["pod-c"].down("eth0")


def _route_d_missing(roles: Roles) -> None:
    roles[NODE].del_route(f"{POD_IP['pod-d']}/32")


def _has_route_d(roles: Roles) -> bool:
    route = roles[NODE].route_get(POD_IP["pod-d"])
    return route is not None and route["dev"] == "veth-d"


def _restore_route_d(roles: Roles) -> None:
    with contextlib.suppress(RuntimeError):
        roles[NODE].add_route(f"{POD_IP['pod-d']}/32", dev="veth-d")


def _wrong_prefix(roles: Roles) -> None:
    pod = roles["pod-c"]
    pod.ipr.addr("del", index=pod.index("eth0"), address=POD_IP["pod-c"], prefixlen=24)
    pod.add_address("eth0", f"{POD_IP['pod-c']}/32")


def _prefix_wrong(roles: Roles) -> bool:
    return f"{POD_IP['pod-c']}/24" not in roles["pod-c"].addresses("eth0")


def _fix_prefix(roles: Roles) -> None:
    pod = roles["pod-c"]
    for cidr in pod.addresses("eth0"):
        ip, plen = cidr.split("/")
        pod.ipr.addr("del", index=pod.index("eth0"), address=ip, prefixlen=int(plen))
    pod.add_address("eth0", f"{POD_IP['pod-c']}/24")


def _veth_d_down(roles: Roles) -> None:
    # Setting a link down also makes the kernel drop the routes through it.
    roles[NODE].down("veth-d")


def _fix_veth_d(roles: Roles) -> None:
    roles[NODE].up("veth-d")
    _restore_route_d(roles)


def _pod_d_wrong_ip(roles: Roles) -> None:
    pod = roles["pod-d"]
    pod.ipr.addr("del", index=pod.index("eth0"), address=POD_IP["pod-d"], prefixlen=24)
    pod.add_address("eth0", "10.244.1.6/24")


def _pod_d_ip_wrong(roles: Roles) -> bool:
    return f"{POD_IP['pod-d']}/24" not in roles["pod-d"].addresses("eth0")


def _fix_pod_d_ip(roles: Roles) -> None:
    pod = roles["pod-d"]
    for cidr in pod.addresses("eth0"):
        ip, plen = cidr.split("/")
        pod.ipr.addr("del", index=pod.index("eth0"), address=ip, prefixlen=int(plen))
    pod.add_address("eth0", f"{POD_IP['pod-d']}/24")


def _route_c_wrong_cable(roles: Roles) -> None:
    roles[NODE].ipr.route("replace", dst=f"{POD_IP['pod-c']}/32", oif=roles[NODE].index("veth-d"))


def _route_c_wrong(roles: Roles) -> bool:
    route = roles[NODE].route_get(POD_IP["pod-c"])
    return route is not None and route["dev"] == "veth-d"


def _fix_route_c(roles: Roles) -> None:
    roles[NODE].ipr.route("replace", dst=f"{POD_IP['pod-c']}/32", oif=roles[NODE].index("veth-c"))


CATALOGUE = Catalogue(
    name="01-netns-veth/node-pods",
    k=2,
    # A cable taken down drops the routes through it: with veth-d down, pod-d's missing route
    # would be no second fault, and pod-c's route into veth-d could not even be written.
    apart=(
        ("node-route-d-missing", "node-veth-d-down"),
        ("node-veth-d-down", "node-route-c-wrong-cable"),
    ),
    story=(
        "node1 no longer reaches all of its pods. Find where the packets stop (ping, "
        "tcpdump, ip link/addr/route/neigh in each namespace) and repair the lab."
    ),
    faults=(
        Fault(
            "pod-c-eth0-down",
            "pod-c's eth0 is down",
            _pod_eth0_down,
            where="node1's echo request to pod-c leaves veth-c, but pod-c never sees it",
            look_at="the state of the links inside pod-c (`ip link` in pod-c)",
            present=lambda r: not _up(r, "pod-c", "eth0"),
            repair=lambda r: r["pod-c"].up("eth0"),
        ),
        Fault(
            "node-route-d-missing",
            "node1 has no route to pod-d",
            _route_d_missing,
            where="node1 cannot send to 10.244.1.5 at all: the request never leaves node1",
            look_at="node1's routing table (`ip route` in node1)",
            present=lambda r: _up(r, NODE, "veth-d") and not _has_route_d(r),
            repair=_restore_route_d,
        ),
        Fault(
            "pod-c-prefix-32",
            "pod-c's address is a /32 instead of a /24",
            _wrong_prefix,
            where="pod-c receives node1's echo request, but its reply never leaves pod-c",
            look_at="pod-c's address on eth0 and the routes that follow from it (`ip addr`)",
            present=_prefix_wrong,
            repair=_fix_prefix,
        ),
        Fault(
            "node-veth-d-down",
            "node1's end of pod-d's cable (veth-d) is down",
            _veth_d_down,
            where="node1 cannot send to 10.244.1.5 at all: the request never leaves node1",
            look_at="node1's end of pod-d's cable (`ip link` in node1), then its routes",
            present=lambda r: not _up(r, NODE, "veth-d"),
            repair=_fix_veth_d,
        ),
        Fault(
            "pod-d-wrong-address",
            "pod-d has 10.244.1.6 instead of 10.244.1.5",
            _pod_d_wrong_ip,
            where="nobody on pod-d's cable takes packets for 10.244.1.5 as their own",
            look_at="the addresses inside pod-d (`ip addr` in pod-d)",
            present=_pod_d_ip_wrong,
            repair=_fix_pod_d_ip,
        ),
        Fault(
            "node-route-c-wrong-cable",
            "node1 routes pod-c's address into pod-d's cable",
            _route_c_wrong_cable,
            where="node1's echo request to 10.244.1.4 leaves node1, but pod-c never sees it",
            look_at="which interface node1 picks for 10.244.1.4 (`ip route get 10.244.1.4`)",
            present=_route_c_wrong,
            repair=_fix_route_c,
        ),
    ),
)
