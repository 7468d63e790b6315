"""The course's CNI `bridge` plugin: what containernetworking/plugins' `bridge` does, in Python.

The runtime runs it in the node's namespace (its "host"); CNI_NETNS names the pod's.

ADD    ensure the bridge (`cni0`), make a veth whose pod end is CNI_IFNAME inside CNI_NETNS
       and whose node end is a port of the bridge (hairpin as configured), ask the IPAM
       plugin for addresses, put them and the routes on the pod's interface, put the
       gateway address on the bridge (`isGateway`), print the result.
DEL    delete the pod's interface if it is still there, release the address through IPAM.
       Succeeds when the namespace or the interface is already gone: the kubelet repeats
       DELs, also after a reboot that took the namespace away.
CHECK  compare the kernel with `prevResult`: bridge, veth pair, addresses, routes; and ask
       IPAM whether the reservation still exists.

Run as an executable (`k8snet cni install DIR` places one in a plugin directory), it speaks
the CNI protocol through `course.cni.skel`. It imports only the standard library and
`course.cni`, so it starts fast: a plugin's start-up time is part of every pod's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time

from course.cni import errors, ipam, skel
from course.cni.netlink import (
    Link,
    Netlink,
    NetlinkError,
    entered,
    ip_str,
    network,
    parse_cidr,
    write_sysctl,
)
from course.cni.types import convert_result

TYPE_CHECKING = False  # see course.cni.types: no `typing` or `dataclasses` at run time
if TYPE_CHECKING:
    from typing import Any

DEFAULT_BRIDGE = "cni0"
# the reference plugin polls the node end's state at these delays (ms) before giving up
OPER_UP_RETRIES_MS = (0, 50, 500, 1000, 1000)


class NetConf:
    """The plugin's own keys of the request configuration (the rest passes through)."""

    def __init__(
        self,
        name: str,
        bridge: str = DEFAULT_BRIDGE,
        is_gateway: bool = False,
        is_default_gateway: bool = False,
        force_address: bool = False,
        hairpin_mode: bool = False,
    ) -> None:
        self.name, self.bridge = name, bridge
        self.is_gateway, self.is_default_gateway = is_gateway, is_default_gateway
        self.force_address, self.hairpin_mode = force_address, hairpin_mode
        self.dns: dict[str, Any] | None = None

    @classmethod
    def load(cls, conf: dict[str, Any]) -> NetConf:
        for key in ("ipMasq", "promiscMode", "vlan", "macspoofchk"):
            if conf.get(key):
                raise errors.CniError(
                    errors.UNSUPPORTED_FIELD,
                    f"unsupported field {key}={conf[key]!r}",
                    "the course plugin implements bridge, isGateway, isDefaultGateway, "
                    "forceAddress, hairpinMode and ipam",
                )
        bridge = conf.get("bridge", DEFAULT_BRIDGE)
        if not isinstance(bridge, str) or not 0 < len(bridge) <= 15:
            raise errors.CniError(
                errors.INVALID_NETWORK_CONFIG, f"field 'bridge' {bridge!r} is not an interface name"
            )
        n = cls(
            name=conf["name"],
            bridge=bridge,
            is_gateway=bool(conf.get("isGateway")) or bool(conf.get("isDefaultGateway")),
            is_default_gateway=bool(conf.get("isDefaultGateway")),
            force_address=bool(conf.get("forceAddress")),
            hairpin_mode=bool(conf.get("hairpinMode")),
        )
        dns = conf.get("dns")
        if isinstance(dns, dict) and any(
            dns.get(k) for k in ("nameservers", "domain", "search", "options")
        ):
            n.dns = dns
        return n


# --- ADD ---------------------------------------------------------------------------------------
def cmd_add(args: skel.CmdArgs) -> dict[str, Any]:
    conf = NetConf.load(args.conf)
    ipam.ipam_type(args)  # fail on a config without IPAM before touching the kernel
    pod_fd = _open_netns(args.netns)
    try:
        with Netlink() as node:
            bridge = ensure_bridge(node, conf.bridge)
            host = setup_veth(node, bridge, args, pod_fd, conf.hairpin_mode)
            try:
                result = _configure(node, bridge, host, args, conf)
            except BaseException:
                _undo(node, host)  # nothing half-built: the pair goes, the pod's end with it
                raise
    finally:
        os.close(pod_fd)
    return convert_result(result, args.cni_version)


def _open_netns(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise errors.CniError(
            errors.UNKNOWN_CONTAINER, f"failed to open netns CNI_NETNS={path!r}: {exc.strerror}"
        ) from None


def ensure_bridge(node: Netlink, name: str) -> Link:
    """`ip link add NAME type bridge; ip link set NAME up` unless it already exists."""
    try:
        node.add_bridge(name)
    except NetlinkError as exc:
        if exc.errno != errno.EEXIST:
            raise errors.CniError(
                errors.INTERNAL, f"could not add bridge {name!r}: {exc}"
            ) from None
    br = node.link(name)
    if br is None or br.kind != "bridge":
        raise errors.CniError(errors.INTERNAL, f"{name!r} already exists but is not a bridge")
    write_sysctl(f"net/ipv6/conf/{name}/accept_ra", "0")  # we own this interface's routes
    if not br.up:
        node.set_up(br.index)
    return br


def setup_veth(node: Netlink, bridge: Link, args: skel.CmdArgs, pod_fd: int, hairpin: bool) -> Link:
    """A veth pair: CNI_IFNAME inside the pod, `vethXXXXXXXX` on the node, in the bridge."""
    with entered(args.netns), Netlink() as pod:
        if pod.link(args.ifname) is not None:
            raise errors.CniError(
                errors.INTERNAL,
                f"container veth name provided ({args.ifname}) already exists",
                f"CNI_IFNAME {args.ifname!r} already exists in CNI_NETNS {args.netns}: "
                "ADD must fail rather than take over an interface it did not create",
            )
    for _attempt in range(5):
        host_name = "veth" + os.urandom(4).hex()  # random, like the reference plugin
        try:
            node.add_veth(host_name, args.ifname, pod_fd, master=bridge.index)
            break
        except NetlinkError as exc:
            if exc.errno != errno.EEXIST or node.link(host_name) is None:
                raise errors.CniError(
                    errors.INTERNAL, f"failed to create veth {host_name}<->{args.ifname}: {exc}"
                ) from None
    else:
        raise errors.CniError(errors.TRY_AGAIN_LATER, "no free random veth name after 5 tries")
    host = node.link(host_name)
    assert host is not None
    write_sysctl(f"net/ipv6/conf/{host_name}/accept_ra", "0")
    node.set_hairpin(host.index, hairpin)
    return host


def _undo(node: Netlink, host: Link) -> None:
    with contextlib.suppress(NetlinkError):
        node.delete_link(host.index)


def _configure(
    node: Netlink, bridge: Link, host: Link, args: skel.CmdArgs, conf: NetConf
) -> dict[str, Any]:
    """IPAM, the pod's addresses and routes, the gateway on the bridge, then the result."""
    got = ipam.delegate(args, "ADD")
    assert got is not None
    try:
        ips, routes = _gateways(got, conf)
        pod_iface = _configure_pod(args, ips, routes)
        if conf.is_gateway:
            _bridge_gateways(node, bridge, ips, conf.force_address)
        host = _wait_oper_up(node, host.name)
        bridge = node.link(bridge.name) or bridge  # its MAC may change as ports come and go
    except BaseException:
        ipam.delegate(args, "DEL")  # release the address: nothing may leak
        raise
    return {
        "cniVersion": args.cni_version,
        "interfaces": [
            {"name": bridge.name, "mac": bridge.mac},
            {"name": host.name, "mac": host.mac},
            {"name": args.ifname, "mac": pod_iface.mac, "sandbox": args.netns},
        ],
        "ips": ips,
        "routes": routes,
        "dns": conf.dns or got.get("dns") or {},
    }


def _gateways(
    got: dict[str, Any], conf: NetConf
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every IP belongs to the pod's interface (index 2); fill in gateways, default route."""
    ips = [{k: v for k, v in ip.items() if k != "version"} for ip in got["ips"]]
    routes = list(got.get("routes") or [])
    for ip in ips:
        ip["interface"] = 2
        try:
            net, _plen = network(ip["address"])
        except ValueError:
            raise errors.CniError(
                errors.UNSUPPORTED_FIELD,
                f"IPAM gave {ip['address']!r}: the course plugin handles IPv4 only",
            ) from None
        if not ip.get("gateway") and conf.is_gateway:
            ip["gateway"] = ip_str(net + 1)
        if conf.is_default_gateway and not any(
            r.get("dst") == "0.0.0.0/0" and r.get("gw") for r in routes
        ):
            routes.append({"dst": "0.0.0.0/0", "gw": ip["gateway"]})
    return ips, routes


def _configure_pod(
    args: skel.CmdArgs, ips: list[dict[str, Any]], routes: list[dict[str, Any]]
) -> Link:
    """Inside the pod: link up, addresses, routes (a route without `gw` uses the IP's gateway)."""
    v4_gw = next((ip.get("gateway") for ip in ips), None)
    with entered(args.netns), Netlink() as pod:
        write_sysctl(f"net/ipv4/conf/{args.ifname}/arp_notify", "1")
        write_sysctl(f"net/ipv6/conf/{args.ifname}/accept_dad", "0")
        link = pod.link(args.ifname)
        if link is None:
            raise errors.CniError(errors.INTERNAL, f"{args.ifname} vanished from {args.netns}")
        pod.set_up(link.index)
        for ip in ips:
            _kernel(pod.add_address, link.index, ip["address"], what=f"address {ip['address']}")
        for route in routes:
            gw = route.get("gw") or v4_gw
            try:
                pod.add_route(route["dst"], gw, link.index)
            except NetlinkError as exc:
                if exc.errno != errno.EEXIST:
                    raise errors.CniError(
                        errors.INTERNAL, f"failed to add route {route['dst']} via {gw}: {exc}"
                    ) from None
        return pod.link(args.ifname) or link


def _bridge_gateways(node: Netlink, bridge: Link, ips: list[dict[str, Any]], force: bool) -> None:
    """`ip addr add GW/PREFIX dev cni0` and `sysctl net.ipv4.ip_forward=1` on the node."""
    for ip in ips:
        want = f"{ip['gateway']}/{parse_cidr(ip['address'])[1]}"
        have = [a.cidr for a in node.addresses(bridge.index)]
        if want in have:
            continue
        if have and not force:
            raise errors.CniError(
                errors.INTERNAL, f"{bridge.name!r} already has an IP address different from {want}"
            )
        _kernel(node.add_address, bridge.index, want, what=f"gateway {want} on {bridge.name}")
        node.set_mac(bridge.index, bridge.mac)  # pin the MAC: a bridge otherwise follows its ports
    write_sysctl("net/ipv4/ip_forward", "1")


def _wait_oper_up(node: Netlink, name: str) -> Link:
    for delay in OPER_UP_RETRIES_MS:
        time.sleep(delay / 1000)
        link = node.link(name)
        if link is None:
            raise errors.CniError(errors.INTERNAL, f"{name} vanished")
        if link.operstate == "up":
            return link
    raise errors.CniError(errors.INTERNAL, f"bridge port in error state: {link.operstate}")


def _kernel(fn: Any, *args: Any, what: str) -> None:
    try:
        fn(*args)
    except NetlinkError as exc:
        raise errors.CniError(errors.INTERNAL, f"failed to add {what}: {exc}") from None


# --- DEL ---------------------------------------------------------------------------------------
def cmd_del(args: skel.CmdArgs) -> None:
    NetConf.load(args.conf)
    if args.netns:
        try:
            with entered(args.netns), Netlink() as pod:
                link = pod.link(args.ifname)
                if link is not None:
                    pod.delete_link(link.index)  # the node's end goes with it
        except OSError as exc:
            # the namespace is gone (a reboot, a runtime that deleted it first): nothing
            # of ours can be left inside it, but the address must still be released
            if exc.errno not in (errno.ENOENT, errno.EINVAL):
                raise
    ipam.delegate(args, "DEL")
    return None


# --- CHECK -------------------------------------------------------------------------------------
def cmd_check(args: skel.CmdArgs) -> None:
    conf = NetConf.load(args.conf)
    ipam.delegate(args, "CHECK")
    prev = args.conf.get("prevResult")
    if not isinstance(prev, dict):
        raise errors.CniError(errors.INVALID_NETWORK_CONFIG, "Required prevResult missing")
    interfaces = prev.get("interfaces") or []
    br_entry = next((i for i in interfaces if i.get("name") == conf.bridge), None)
    pod_entry = next(
        (i for i in interfaces if i.get("name") == args.ifname and i.get("sandbox") == args.netns),
        None,
    )
    if br_entry is None or pod_entry is None:
        raise _check_error(
            f"prevResult lists no {'bridge ' + conf.bridge if br_entry is None else args.ifname + ' in ' + args.netns}"
        )
    with Netlink() as node:
        bridge = _expect_link(node, conf.bridge, "bridge", br_entry.get("mac"), "on the node")
        pod_link = _check_pod(args, pod_entry, prev)
        host = node.link_by_index(pod_link.peer_index)
        if host is None or host.kind != "veth" or host.master != bridge.index:
            raise _check_error(
                f"the node end of {args.ifname} is not a port of {conf.bridge}"
                + (f" ({host.name} has master index {host.master})" if host else " (not found)")
            )


def _check_pod(args: skel.CmdArgs, entry: dict[str, Any], prev: dict[str, Any]) -> Link:
    try:
        ctx = entered(args.netns)
        ctx.__enter__()
    except OSError:
        raise errors.CniError(
            errors.UNKNOWN_CONTAINER, f"CNI_NETNS {args.netns} does not exist"
        ) from None
    try:
        with Netlink() as pod:
            link = _expect_link(pod, args.ifname, "veth", entry.get("mac"), f"in {args.netns}")
            have = {a.cidr for a in pod.addresses(link.index)}
            for ip in prev.get("ips") or []:
                if ip["address"] not in have:
                    raise _check_error(
                        f"{args.ifname} lacks {ip['address']}; it has {sorted(have) or 'none'}"
                    )
            _check_routes(pod, prev, link)
            return link
    finally:
        ctx.__exit__(None, None, None)


def _check_routes(pod: Netlink, prev: dict[str, Any], link: Link) -> None:
    v4_gw = next(
        (ip.get("gateway") for ip in prev.get("ips") or [] if ":" not in ip["address"]), None
    )
    kernel = [(r.dst, r.gateway) for r in pod.routes() if r.oif == link.index]
    for route in prev.get("routes") or []:
        net, plen = network(route["dst"])
        want = (f"{ip_str(net)}/{plen}", route.get("gw") or v4_gw)
        if want not in kernel:
            raise _check_error(
                f"route {route['dst']} via {want[1]} is missing; routes on {link.name}: {kernel}"
            )


def _expect_link(nl: Netlink, name: str, kind: str, mac: str | None, where: str) -> Link:
    link = nl.link(name)
    if link is None:
        raise _check_error(f"{name} not found {where}")
    if link.kind != kind:
        raise _check_error(f"{name} {where} is a {link.kind}, not a {kind}")
    if mac and mac.lower() != link.mac:
        raise _check_error(f"{name} {where} has MAC {link.mac}, prevResult says {mac}")
    return link


def _check_error(msg: str) -> errors.CniError:
    return errors.CniError(errors.INTERNAL, "CHECK failed", msg)


def main() -> None:
    skel.plugin_main(cmd_add, cmd_del, cmd_check)


if __name__ == "__main__":
    main()
