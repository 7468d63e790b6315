"""Links, addresses, routes, neighbours and FDB entries of one namespace, over netlink.

Each method is one `ip` command you would type (shown in its docstring), done through
pyroute2 on a socket that lives inside the namespace: no `ip` process is started.

Every method that creates something can be called again with the same arguments: a
notebook cell that is re-run after a fix must just work, so an existing object that matches
is kept, one that does not match is replaced (like `ip route replace`, `ip addr replace`),
and deleting something already gone is not an error.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING, Any

from pyroute2.netlink.exceptions import NetlinkError

if TYPE_CHECKING:
    from pyroute2 import IPRoute

    from course.kernel.netns import Netns

RT_SCOPES = {"universe": 0, "site": 200, "link": 253, "host": 254}
EEXIST = 17
RTNH_F_ONLINK = 4
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
NTF_PROXY = 0x08


def _err(ns: Any, what: str, exc: NetlinkError) -> Exception:
    from course.kernel.netns import KernelError

    return KernelError(f"{what} in {ns.name}: {exc.args[-1] if exc.args else exc}")


class LinkOps:
    """Mixed into `Netns`: everything `ip link/addr/route/neigh` and `bridge` do."""

    name: str
    ipr: IPRoute

    # --- lookups ---------------------------------------------------------------------------
    def index(self, ifname: str) -> int:
        """The interface's index, asked of the kernel from inside the namespace.

        `if_nametoindex` is one ioctl (about 20 us); a netlink link dump would cost ~0.3 ms
        and grow with the number of links, which dominated building a cluster.
        """
        try:
            with self.entered():  # type: ignore[attr-defined]
                return socket.if_nametoindex(ifname)
        except OSError:
            from course.kernel.netns import KernelError

            raise KernelError(f"no interface {ifname!r} in namespace {self.name}") from None

    def has_link(self, ifname: str) -> bool:
        try:
            self.index(ifname)
        except RuntimeError:
            return False
        return True

    def find_link(self, ifname: str) -> dict[str, Any] | None:
        """`link(ifname)`, or None when there is no such interface (one cheap ioctl first)."""
        return self.link(ifname) if self.has_link(ifname) else None

    def links(self) -> list[dict[str, Any]]:
        """`ip -d link`: name, index, state, MAC, master, kind and peer index of every link."""
        out = []
        for msg in self.ipr.get_links():
            info = msg.get_attr("IFLA_LINKINFO")
            out.append(
                {
                    "name": msg.get_attr("IFLA_IFNAME"),
                    "index": msg["index"],
                    "up": bool(msg["flags"] & 1),
                    "operstate": msg.get_attr("IFLA_OPERSTATE"),
                    "mac": msg.get_attr("IFLA_ADDRESS"),
                    "master": msg.get_attr("IFLA_MASTER"),
                    "kind": info.get_attr("IFLA_INFO_KIND") if info else None,
                    "link": msg.get_attr("IFLA_LINK"),
                    "link_netnsid": msg.get_attr("IFLA_LINK_NETNSID"),
                    "mtu": msg.get_attr("IFLA_MTU"),
                }
            )
        return out

    def nsid_of(self, other: Netns) -> int | None:
        """The id this namespace uses for `other` (`ip netns list-id`), if it has one.

        A veth whose peer lives elsewhere reports the peer's namespace by this id
        (`link-netnsid` in `ip link`), which is how the peer can be found.
        """
        import os

        fd = os.open(other.path, os.O_RDONLY)
        try:
            answer = self.ipr.get_netnsid(fd=fd)
        finally:
            os.close(fd)
        nsid = answer.get("nsid") if answer else None
        return None if nsid in (None, -1, 0xFFFFFFFF) else int(nsid)

    def link(self, ifname: str) -> dict[str, Any]:
        for entry in self.links():
            if entry["name"] == ifname:
                return entry
        from course.kernel.netns import KernelError

        raise KernelError(f"no interface {ifname!r} in namespace {self.name}")

    def addresses(self, ifname: str | None = None) -> list[str]:
        """`ip -4 addr`: the IPv4 addresses as CIDR strings, e.g. `10.244.1.2/24`."""
        kw = {"index": self.index(ifname)} if ifname else {}
        return [
            f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}"
            for m in self.ipr.get_addr(family=socket.AF_INET, **kw)
        ]

    def routes(self) -> list[dict[str, Any]]:
        """`ip -4 route` (main table) as dicts: dst, gateway, dev, scope, type."""
        names = {link["index"]: link["name"] for link in self.links()}
        out = []
        for m in self.ipr.get_routes(family=socket.AF_INET, table=254):
            dst = m.get_attr("RTA_DST")
            out.append(
                {
                    "dst": f"{dst}/{m['dst_len']}" if dst else "default",
                    "gateway": m.get_attr("RTA_GATEWAY"),
                    "dev": names.get(m.get_attr("RTA_OIF")),
                    "scope": m["scope"],
                    "type": m["type"],
                    "onlink": bool(m["flags"] & RTNH_F_ONLINK),
                    "proto": m["proto"],
                }
            )
        return out

    def route_get(self, dst: str) -> dict[str, Any] | None:
        """`ip route get DST`: which way the kernel would send a packet (None: unreachable)."""
        try:
            msg = self.ipr.route("get", dst=dst)[0]
        except NetlinkError:
            return None
        names = {link["index"]: link["name"] for link in self.links()}
        return {
            "dst": dst,
            "gateway": msg.get_attr("RTA_GATEWAY"),
            "dev": names.get(msg.get_attr("RTA_OIF")),
            "src": msg.get_attr("RTA_PREFSRC"),
            "type": msg["type"],
        }

    # --- links -----------------------------------------------------------------------------
    def add_veth(
        self,
        ifname: str,
        peer_ns: Netns,
        peer_name: str,
        master: str | None = None,
        up: bool = False,
    ) -> None:
        """`ip link add IFNAME [master BR] [up] type veth peer name PEER netns PEER_NS`.

        A veth pair is a virtual cable: both ends are born together, one may be created
        straight inside another namespace, and deleting either end deletes both.
        `master` and `up` apply to this end in the same netlink message (fewer round trips).

        Called again (a re-run cell): the same cable is kept; an interface of either name
        that is something else (another cable, a leftover) is deleted and the pair is made anew.
        """
        if self.has_link(ifname) or peer_ns.has_link(peer_name):
            if self._is_veth_pair(ifname, peer_ns, peer_name):
                if master:
                    self.set_master(ifname, master)
                if up:
                    self.up(ifname)
                return
            self.delete_link(ifname)
            peer_ns.delete_link(peer_name)
        kw: dict[str, Any] = {}
        if master:
            kw["master"] = self.index(master)
        if up:
            kw["state"] = "up"
        try:
            self.ipr.link(
                "add",
                ifname=ifname,
                kind="veth",
                peer={"ifname": peer_name, "net_ns_fd": str(peer_ns.path)},
                **kw,
            )
        except NetlinkError as exc:
            raise _err(self, f"veth {ifname}<->{peer_ns.name}/{peer_name}", exc) from exc

    def _is_veth_pair(self, ifname: str, peer_ns: Netns, peer_name: str) -> bool:
        """True when `ifname` here and `peer_name` in `peer_ns` are the two ends of one veth."""
        mine, theirs = self.find_link(ifname), peer_ns.find_link(peer_name)
        if mine is None or theirs is None or mine["kind"] != "veth" or theirs["kind"] != "veth":
            return False
        if mine["link"] != theirs["index"] or theirs["link"] != mine["index"]:
            return False
        if peer_ns.name == self.name:
            return mine["link_netnsid"] is None
        return mine["link_netnsid"] is not None and mine["link_netnsid"] == self.nsid_of(peer_ns)

    def add_bridge(self, ifname: str, up: bool = False) -> None:
        """`ip link add IFNAME type bridge`: a software switch, like `cni0` or `docker0`.

        Called again, an existing bridge of that name is kept (its ports stay plugged in).
        """
        existing = self.find_link(ifname)
        if existing is not None:
            if existing["kind"] != "bridge":
                from course.kernel.netns import KernelError

                raise KernelError(
                    f"{ifname} in {self.name} exists and is a {existing['kind'] or 'device'}, "
                    f"not a bridge: delete it first (delete_link({ifname!r}))"
                )
            if up:
                self.up(ifname)
            return
        try:
            self.ipr.link("add", ifname=ifname, kind="bridge", **({"state": "up"} if up else {}))
        except NetlinkError as exc:
            raise _err(self, f"bridge {ifname}", exc) from exc

    def add_vxlan(
        self,
        ifname: str,
        vni: int,
        local: str,
        dev: str,
        port: int = 8472,
        learning: bool = False,
        mtu: int | None = None,
    ) -> None:
        """`ip link add flannel.1 type vxlan id 1 local IP dev eth0 dstport 8472 nolearning`.

        Not re-runnable on purpose: a second device of that name is refused ("File exists"),
        as lab 03's tests expect; delete_link() it first to start over.
        """
        kw: dict[str, Any] = {
            "ifname": ifname,
            "kind": "vxlan",
            "vxlan_id": vni,
            "vxlan_local": local,
            "vxlan_link": self.index(dev),
            "vxlan_port": port,
            "vxlan_learning": int(learning),
        }
        if mtu:
            kw["mtu"] = mtu
        try:
            self.ipr.link("add", **kw)
        except NetlinkError as exc:
            raise _err(self, f"vxlan {ifname}", exc) from exc

    def move(self, ifname: str, target: Netns, new_name: str | None = None) -> None:
        """`ip link set IFNAME netns TARGET [name NEW]`: hand an interface to another namespace."""
        kw: dict[str, Any] = {"index": self.index(ifname), "net_ns_fd": str(target.path)}
        if new_name:
            kw["ifname"] = new_name
        self.ipr.link("set", **kw)

    def delete_link(self, ifname: str) -> None:
        """`ip link del IFNAME` (for a veth: the peer in the other namespace goes too).

        Deleting an interface that is already gone does nothing, so a cell can run twice.
        """
        if self.has_link(ifname):
            self.ipr.link("del", index=self.index(ifname))

    def up(self, ifname: str) -> None:
        """`ip link set IFNAME up`."""
        self.ipr.link("set", index=self.index(ifname), state="up")

    def down(self, ifname: str) -> None:
        self.ipr.link("set", index=self.index(ifname), state="down")

    def set_mac(self, ifname: str, mac: str) -> None:
        self.ipr.link("set", index=self.index(ifname), address=mac)

    def set_mtu(self, ifname: str, mtu: int) -> None:
        self.ipr.link("set", index=self.index(ifname), mtu=mtu)

    def set_master(self, ifname: str, bridge: str | None) -> None:
        """`ip link set IFNAME master BRIDGE`: plug a port into a bridge (None: unplug)."""
        master = self.index(bridge) if bridge else 0
        self.ipr.link("set", index=self.index(ifname), master=master)

    def bridge_port(
        self, ifname: str, hairpin: bool | None = None, learning: bool | None = None
    ) -> None:
        """`bridge link set dev IFNAME hairpin on|off learning on|off`.

        Hairpin lets the bridge send a frame back out of the port it came in on, which a
        pod needs to reach itself through its own Service IP.
        """
        kw: dict[str, Any] = {}
        if hairpin is not None:
            kw["mode"] = int(hairpin)
        if learning is not None:
            kw["learning"] = int(learning)
        self.ipr.brport("set", index=self.index(ifname), **kw)

    def bridge_port_flags(self, ifname: str) -> dict[str, bool]:
        msg = self.ipr.brport("show", index=self.index(ifname))[0]
        info = msg.get_attr("IFLA_PROTINFO")
        return {
            "hairpin": bool(info.get_attr("IFLA_BRPORT_MODE")),
            "learning": bool(info.get_attr("IFLA_BRPORT_LEARNING")),
        }

    # --- addresses, routes, neighbours -------------------------------------------------------
    def add_address(self, ifname: str, cidr: str) -> None:
        """`ip addr replace CIDR dev IFNAME`.

        Called again, the address is kept; the same IP with another prefix length on that
        interface is replaced, since one IP with two prefixes is always a mistake (the
        fixed cell wins).
        """
        iface = ipaddress.ip_interface(cidr)
        family = socket.AF_INET6 if iface.version == 6 else socket.AF_INET
        index = self.index(ifname)
        for msg in self.ipr.get_addr(family=family, index=index):
            if msg.get_attr("IFA_ADDRESS") != str(iface.ip):
                continue
            if msg["prefixlen"] == iface.network.prefixlen:
                return
            self.ipr.addr("del", index=index, address=str(iface.ip), prefixlen=msg["prefixlen"])
        try:
            self.ipr.addr(
                "add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen
            )
        except NetlinkError as exc:
            raise _err(self, f"address {cidr} on {ifname}", exc) from exc

    def add_route(
        self,
        dst: str,
        via: str | None = None,
        dev: str | None = None,
        onlink: bool = False,
        scope: str | None = None,
        blackhole: bool = False,
        src: str | None = None,
    ) -> None:
        """`ip route replace DST [via GW] [dev DEV] [onlink] [scope link]` or `blackhole DST`.

        `replace`, not `add`: run again, the route to DST is set to what this call says
        instead of failing with "File exists", so a fixed cell overrides its earlier run.
        """
        kw: dict[str, Any] = {"dst": dst}
        if blackhole:
            kw["type"] = "blackhole"
        if via:
            kw["gateway"] = via
        if dev:
            kw["oif"] = self.index(dev)
        if onlink:
            kw["flags"] = RTNH_F_ONLINK
        if scope:
            kw["scope"] = RT_SCOPES[scope]
        if src:
            kw["prefsrc"] = src
        try:
            self.ipr.route("replace", **kw)
        except NetlinkError as exc:
            raise _err(self, f"route {dst}", exc) from exc

    def del_route(self, dst: str) -> None:
        """`ip route del DST`: whatever its scope (a Calico `scope link` route included).

        Like iproute2, ask with scope "nowhere" (255), which the kernel takes as "any scope";
        netlink's default (universe) would not match a link-scope route: ESRCH.
        """
        self.ipr.route("del", dst=dst, scope=255)

    def add_neighbour(self, ip: str, mac: str, dev: str) -> None:
        """`ip neigh replace IP lladdr MAC dev DEV nud permanent`."""
        self.ipr.neigh("replace", dst=ip, lladdr=mac, ifindex=self.index(dev), state=NUD_PERMANENT)

    def neighbours(self, dev: str | None = None) -> list[dict[str, Any]]:
        kw = {"ifindex": self.index(dev)} if dev else {}
        return [
            {"ip": m.get_attr("NDA_DST"), "mac": m.get_attr("NDA_LLADDR"), "state": m["state"]}
            for m in self.ipr.get_neighbours(family=socket.AF_INET, **kw)
        ]

    def add_fdb(self, mac: str, dev: str, dst: str | None = None, replace: bool = False) -> None:
        """`bridge fdb append|replace MAC dev DEV [dst IP] self permanent`.

        For VXLAN: which node IP holds MAC. `replace` (what flanneld does) leaves one entry
        per MAC; `append` adds another destination next to the existing ones.

        The same entry twice is not an error (a re-run cell).
        """
        kw: dict[str, Any] = {"ifindex": self.index(dev), "lladdr": mac, "state": NUD_PERMANENT}
        if dst:
            kw["dst"] = dst
            kw["flags"] = NTF_SELF
        try:
            self.ipr.fdb("replace" if replace else "append", **kw)
        except NetlinkError as exc:
            if exc.code != EEXIST:
                raise

    def fdb(self, dev: str) -> list[dict[str, Any]]:
        """`bridge fdb show dev DEV`: MAC and (for VXLAN) destination node IP of every entry."""
        return [
            {"mac": m.get_attr("NDA_LLADDR"), "dst": m.get_attr("NDA_DST"), "state": m["state"]}
            for m in self.ipr.fdb("dump", ifindex=self.index(dev))
            if m["ifindex"] == self.index(dev)
        ]

    def add_proxy_neighbour(self, ip: str, dev: str) -> None:
        """`ip neigh add proxy IP dev DEV`: answer ARP for IP on DEV although IP is elsewhere."""
        try:
            self.ipr.neigh("add", dst=ip, ifindex=self.index(dev), flags=NTF_PROXY)
        except NetlinkError as exc:
            if exc.code != EEXIST:  # already there: a re-run cell
                raise _err(self, f"proxy neighbour {ip} on {dev}", exc) from exc

    def proxy_neighbours(self, dev: str | None = None) -> list[str]:
        """`ip neigh show proxy`: the addresses this namespace answers ARP for on others' behalf.

        Read through `ip -j` (one process): pyroute2 0.9's neighbour dump drops the
        NTF_PROXY request flag, so it never lists proxy entries.
        """
        import json

        argv = ["ip", "-j", "neigh", "show", "proxy"] + (["dev", dev] if dev else [])
        return [e["dst"] for e in json.loads(self.run(argv).stdout or "[]")]  # type: ignore[attr-defined]
