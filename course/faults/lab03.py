"""Lab 03's break/fix catalogue: the overlay between node1 and node3 (another subnet).

Working state (part 6 of the notebook): BIRD runs on all three nodes, but node3 is on
192.168.2.0/24, so BGP's route to its pods points at the router, which drops them. Like
Calico's `CrossSubnet` mode, node1 and node3 then talk through VXLAN: `flannel.1` on both
(VNI 1, port 8472) with the three entries each way; its routes (metric 0) win over BIRD's
(metric 32). Every fault below breaks "pod a (node1) pings pod e (node3)" in its own place.
"""

from __future__ import annotations

from course.faults import Catalogue, Fault, Roles
from course.podnet import vxlan

A, B = "node1", "node3"
A_IP, B_IP = "192.168.1.11", "192.168.2.13"
B_GW, A_CIDR = "10.244.3.0", "10.244.1.0/24"


def _mac(roles: Roles, role: str) -> str:
    info = vxlan.device_info(roles[role])
    return str(info["mac"]) if info else ""


def _info(roles: Roles, role: str, key: str) -> object:
    info = vxlan.device_info(roles[role])
    return info[key] if info else None


# --- node1's FDB sends node3's frames to node2 -------------------------------------------------
def _fdb_wrong(roles: Roles) -> None:
    roles[A].add_fdb(_mac(roles, B), vxlan.DEVICE, dst="192.168.1.12", replace=True)


def _fdb_is_wrong(roles: Roles) -> bool:
    fdb = {e["mac"]: e["dst"] for e in roles[A].fdb(vxlan.DEVICE)}
    return fdb.get(_mac(roles, B)) != B_IP


def _fdb_fix(roles: Roles) -> None:
    roles[A].add_fdb(_mac(roles, B), vxlan.DEVICE, dst=B_IP, replace=True)


# --- the neighbour entry for node3's VTEP is gone on node1 -----------------------------------------
def _neigh_delete(roles: Roles) -> None:
    ns = roles[A]
    ns.ipr.neigh("del", dst=B_GW, ifindex=ns.index(vxlan.DEVICE))


def _neigh_missing(roles: Roles) -> bool:
    found = {n["ip"]: n for n in roles[A].neighbours(vxlan.DEVICE)}
    entry = found.get(B_GW)
    return entry is None or entry["mac"] != _mac(roles, B) or not entry["state"] & 0x80


def _neigh_fix(roles: Roles) -> None:
    roles[A].add_neighbour(B_GW, _mac(roles, B), vxlan.DEVICE)


# --- node3's route back into the tunnel is gone ---------------------------------------------------
def _route_delete(roles: Roles) -> None:
    ns = roles[B]
    ns.ipr.route("del", dst=A_CIDR, oif=ns.index(vxlan.DEVICE))


def _route_missing(roles: Roles) -> bool:
    route = roles[B].route_get("10.244.1.2")
    return route is None or route["dev"] != vxlan.DEVICE


def _route_fix(roles: Roles) -> None:
    roles[B].add_route(A_CIDR, via="10.244.1.0", dev=vxlan.DEVICE, onlink=True)


CATALOGUE = Catalogue(
    name="03-across-nodes/overlay-node3",
    k=2,
    story=(
        "pod a on node1 no longer reaches pod e on node3 through the overlay. Find where the "
        "packets stop (ping, tcpdump on the underlay and on flannel.1, ip -d link, ip neigh, "
        "bridge fdb, ip route, sysctl in each node) and repair the lab."
    ),
    faults=(
        Fault(
            "fdb-wrong-node",
            "node1's FDB sends node3's VTEP MAC to node2's IP",
            _fdb_wrong,
            where="node1 wraps the request in UDP, but the outer packet never reaches node3",
            look_at="where node1's flannel.1 sends each VTEP MAC (`bridge fdb show dev flannel.1`)",
            present=_fdb_is_wrong,
            repair=_fdb_fix,
        ),
        Fault(
            "vni-mismatch",
            "node3's flannel.1 uses VNI 2",
            lambda r: vxlan.recreate(r[B], vni=2),
            where="the UDP packets reach node3, but no device there takes them in",
            look_at="the VXLAN settings of flannel.1 on both nodes (`ip -d link show flannel.1`)",
            present=lambda r: _info(r, B, "vni") != 1,
            repair=lambda r: vxlan.recreate(r[B], vni=1),
        ),
        Fault(
            "dstport-4789",
            "node1's flannel.1 sends to UDP port 4789",
            lambda r: vxlan.recreate(r[A], port=4789),
            where="node3 gets UDP it has no socket for and answers ICMP port unreachable",
            look_at="the VXLAN settings of flannel.1 on both nodes (`ip -d link show flannel.1`)",
            present=lambda r: _info(r, A, "port") != 8472,
            repair=lambda r: vxlan.recreate(r[A], port=8472),
        ),
        Fault(
            "neighbour-missing",
            "node1 lost its neighbour entry for 10.244.3.0",
            _neigh_delete,
            where="nothing leaves node1 for node3: it asks ARP for 10.244.3.0 on flannel.1",
            look_at="node1's neighbour entries on flannel.1 (`ip neigh show dev flannel.1`)",
            present=_neigh_missing,
            repair=_neigh_fix,
        ),
        Fault(
            "forwarding-off-node3",
            "node3 does not forward",
            lambda r: r[B].sysctl("net.ipv4.ip_forward", 0),
            where="the request comes out of node3's flannel.1 but never reaches pod e",
            look_at="node3's forwarding setting (`sysctl net.ipv4.ip_forward`)",
            present=lambda r: r[B].sysctl("net.ipv4.ip_forward") != "1",
            repair=lambda r: r[B].sysctl("net.ipv4.ip_forward", 1),
        ),
        Fault(
            "route-missing-node3",
            "node3 lost its route to 10.244.1.0/24 through flannel.1",
            _route_delete,
            where="pod e's reply leaves node3 unwrapped, towards the router, which drops it",
            look_at="how node3 reaches pod a (`ip route get 10.244.1.2` in node3)",
            present=_route_missing,
            repair=_route_fix,
        ),
    ),
)
