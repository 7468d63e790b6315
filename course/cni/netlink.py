"""Just enough rtnetlink for a CNI plugin, on a raw socket, with the standard library only.

A CNI plugin is a program started once per operation, so its start-up time is part of every
pod's start-up time. The reference plugins (Go) link `vishvananda/netlink`; importing a full
Python netlink library costs more than the whole Go plugin run, so the course plugin speaks
netlink itself. Each function below is one `ip` command, sent as one netlink message:

    RTM_NEWLINK  ip link add ... type bridge | veth peer ... netns ...
    RTM_SETLINK  ip link set ... up | master ... ; bridge link set ... hairpin on
    RTM_DELLINK  ip link del ...
    RTM_GETLINK  ip -d link show ...
    RTM_NEWADDR  ip addr add ...                RTM_GETADDR  ip addr show
    RTM_NEWROUTE ip route add ...               RTM_GETROUTE ip route show

Namespaces: a netlink socket talks to the namespace it was opened in. `entered(path)` moves
this process (a plugin is single-threaded) into another namespace and back, like the
reference plugins' `ns.Do`.
"""

from __future__ import annotations

# the C module: `socket` would turn every constant into an enum on import (~20 ms per call)
import _socket as socket
import ctypes
import errno
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager

# message types and flags (linux/netlink.h, linux/rtnetlink.h)
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLA_F_NESTED = 0x8000
# attributes
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_PROTINFO, IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_NET_NS_FD = 12, 16, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFLA_BRPORT_MODE = 4  # hairpin
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
IFF_UP = 1
IF_OPER_UP = 6
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")
RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST = 254, 3, 1
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
AF_BRIDGE = 7

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, ...


class NetlinkError(OSError):
    """The kernel refused a request; `errno` says why (EEXIST, ENODEV, ...)."""


# --- attributes ---------------------------------------------------------------------------------
def attr(kind: int, payload: bytes) -> bytes:
    """One rtattr: length, type, payload, padded to 4 bytes."""
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def attr_str(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def parse_attrs(data: bytes) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    pos = 0
    while pos + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, pos)
        if length < 4:
            break
        found[kind & ~NLA_F_NESTED] = data[pos + 4 : pos + length]
        pos += (length + 3) & ~3
    return found


# --- IPv4 addresses without the ipaddress module (it costs a plugin ~10 ms to import) ----------
def parse_cidr(cidr: str) -> tuple[int, int]:
    """ "10.244.1.2/24" -> (address as an int, 24); ValueError if it is not IPv4 CIDR."""
    addr, sep, plen = cidr.partition("/")
    if not sep or not plen.isdigit() or not 0 <= int(plen) <= 32:
        raise ValueError(f"{cidr!r} is not an IPv4 address with a prefix length")
    try:
        raw = socket.inet_pton(socket.AF_INET, addr)
    except OSError:
        raise ValueError(f"{cidr!r} is not an IPv4 address with a prefix length") from None
    return struct.unpack("!I", raw)[0], int(plen)


def ip_str(value: int) -> str:
    return socket.inet_ntoa(struct.pack("!I", value))


def ip_int(text: str) -> int:
    return struct.unpack("!I", socket.inet_pton(socket.AF_INET, text))[0]


def network(cidr: str) -> tuple[int, int]:
    """(network address, prefix length) of the subnet `cidr` lies in."""
    addr, plen = parse_cidr(cidr)
    mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
    return addr & mask, plen


# --- what the kernel reports ---------------------------------------------------------------
class Link:
    """One interface as `ip -d link` shows it."""

    def __init__(
        self,
        index: int,
        name: str,
        kind: str | None,
        mac: str,
        up: bool,
        operstate: str,
        master: int,
        peer_index: int,
        mtu: int,
    ) -> None:
        self.index, self.name, self.kind, self.mac = index, name, kind, mac
        self.up, self.operstate, self.master, self.mtu = up, operstate, master, mtu
        self.peer_index = peer_index  # IFLA_LINK: a veth's peer index (in the peer's netns)


class Address:
    def __init__(self, index: int, cidr: str) -> None:
        self.index, self.cidr = index, cidr  # cidr: "10.244.1.2/24"


class Route:
    def __init__(self, dst: str, gateway: str | None, oif: int, table: int, scope: int) -> None:
        self.dst, self.gateway, self.oif, self.table, self.scope = dst, gateway, oif, table, scope


def _link(body: bytes) -> Link:
    _family, _type, index, flags, _change = _IFINFO.unpack_from(body)
    attrs = parse_attrs(body[_IFINFO.size :])
    info = parse_attrs(attrs.get(IFLA_LINKINFO, b""))
    state = attrs.get(IFLA_OPERSTATE, b"\0")[0]
    return Link(
        index=index,
        name=attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(),
        kind=info[IFLA_INFO_KIND].rstrip(b"\0").decode() if IFLA_INFO_KIND in info else None,
        mac=":".join(f"{b:02x}" for b in attrs.get(IFLA_ADDRESS, b"")),
        up=bool(flags & IFF_UP),
        operstate=OPERSTATES[state] if state < len(OPERSTATES) else str(state),
        master=struct.unpack("=I", attrs[IFLA_MASTER])[0] if IFLA_MASTER in attrs else 0,
        peer_index=struct.unpack("=i", attrs[IFLA_LINK])[0] if IFLA_LINK in attrs else 0,
        mtu=struct.unpack("=I", attrs[IFLA_MTU])[0] if IFLA_MTU in attrs else 0,
    )


def _address(body: bytes) -> Address | None:
    family, prefixlen, _flags, _scope, index = _IFADDR.unpack_from(body)
    attrs = parse_attrs(body[_IFADDR.size :])
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    if family != socket.AF_INET or raw is None:
        return None
    return Address(index, f"{socket.inet_ntoa(raw)}/{prefixlen}")


def _route(body: bytes) -> Route | None:
    family, dst_len, _src, _tos, table, _proto, scope, rtype, _flags = _RTMSG.unpack_from(body)
    attrs = parse_attrs(body[_RTMSG.size :])
    table = struct.unpack("=I", attrs[RTA_TABLE])[0] if RTA_TABLE in attrs else table
    if family != socket.AF_INET or rtype != RTN_UNICAST or table != RT_TABLE_MAIN:
        return None
    dst = socket.inet_ntoa(attrs[RTA_DST]) if RTA_DST in attrs else "0.0.0.0"
    gw = socket.inet_ntoa(attrs[RTA_GATEWAY]) if RTA_GATEWAY in attrs else None
    oif = struct.unpack("=I", attrs[RTA_OIF])[0] if RTA_OIF in attrs else 0
    return Route(f"{dst}/{dst_len}", gw, oif, table, scope)


# --- the socket ------------------------------------------------------------------------------
class Netlink:
    """An rtnetlink socket in the namespace this process was in when it was opened."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, msg_type: int, flags: int, body: bytes) -> list[bytes]:
        """Send one message; return the bodies of the replies (raise on a kernel error)."""
        self.seq += 1
        flags |= NLM_F_REQUEST
        self.sock.send(_HDR.pack(_HDR.size + len(body), msg_type, flags, self.seq, 0) + body)
        bodies: list[bytes] = []
        while True:
            data = self.sock.recv(1 << 16)
            pos = 0
            while pos + _HDR.size <= len(data):
                length, kind, _flags, seq, _pid = _HDR.unpack_from(data, pos)
                body_in = data[pos + _HDR.size : pos + length]
                pos += (length + 3) & ~3
                if seq != self.seq:
                    continue
                if kind == NLMSG_DONE:
                    return bodies
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body_in)[0]
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    return bodies  # the ACK of a request
                bodies.append(body_in)
                if not flags & NLM_F_DUMP and not flags & NLM_F_ACK:
                    return bodies

    # --- links ---------------------------------------------------------------------------
    def links(self) -> list[Link]:
        """`ip -d link show`."""
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        return [_link(b) for b in self.request(RTM_GETLINK, NLM_F_DUMP, body)]

    def link(self, name: str) -> Link | None:
        """`ip -d link show NAME`, or None when there is no such interface."""
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr_str(IFLA_IFNAME, name)
        try:
            return _link(self.request(RTM_GETLINK, 0, body)[0])
        except NetlinkError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise

    def link_by_index(self, index: int) -> Link | None:
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0)
        try:
            return _link(self.request(RTM_GETLINK, 0, body)[0])
        except NetlinkError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise

    def add_bridge(self, name: str) -> None:
        """`ip link add NAME type bridge` (EEXIST is left to the caller)."""
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        body += attr_str(IFLA_IFNAME, name) + nested(
            IFLA_LINKINFO, attr_str(IFLA_INFO_KIND, "bridge")
        )
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, body)

    def add_veth(self, name: str, peer: str, peer_netns_fd: int, master: int = 0) -> None:
        """`ip link add NAME [master M] up type veth peer name PEER netns FD`.

        One message makes both ends: this end here, the peer directly inside the other
        namespace (so the pod's interface never appears in the node's namespace).
        """
        peer_body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        peer_body += attr_str(IFLA_IFNAME, peer) + attr_u32(IFLA_NET_NS_FD, peer_netns_fd)
        info = attr_str(IFLA_INFO_KIND, "veth") + nested(
            IFLA_INFO_DATA, attr(VETH_INFO_PEER | NLA_F_NESTED, peer_body)
        )
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, IFF_UP, IFF_UP)
        body += attr_str(IFLA_IFNAME, name) + nested(IFLA_LINKINFO, info)
        if master:
            body += attr_u32(IFLA_MASTER, master)
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, body)

    def set_up(self, index: int) -> None:
        """`ip link set DEV up`."""
        self.request(
            RTM_SETLINK, NLM_F_ACK, _IFINFO.pack(socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP)
        )

    def set_master(self, index: int, master: int) -> None:
        """`ip link set DEV master BRIDGE` (master 0: `nomaster`, out of any bridge)."""
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0) + attr_u32(IFLA_MASTER, master)
        self.request(RTM_SETLINK, NLM_F_ACK, body)

    def set_mac(self, index: int, mac: str) -> None:
        """`ip link set DEV address MAC`."""
        raw = bytes(int(part, 16) for part in mac.split(":"))
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0) + attr(IFLA_ADDRESS, raw)
        self.request(RTM_SETLINK, NLM_F_ACK, body)

    def set_hairpin(self, index: int, on: bool) -> None:
        """`bridge link set dev DEV hairpin on`: a frame may leave by the port it came in."""
        body = _IFINFO.pack(AF_BRIDGE, 0, index, 0, 0)
        body += nested(IFLA_PROTINFO, attr(IFLA_BRPORT_MODE, bytes([int(on)])))
        self.request(RTM_SETLINK, NLM_F_ACK, body)

    def delete_link(self, index: int) -> None:
        """`ip link del DEV` (a veth takes its peer with it)."""
        self.request(RTM_DELLINK, NLM_F_ACK, _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0))

    # --- addresses and routes -------------------------------------------------------------
    def addresses(self, index: int | None = None) -> list[Address]:
        """`ip -4 addr show [dev DEV]`."""
        body = _IFADDR.pack(socket.AF_INET, 0, 0, 0, 0)
        found = [_address(b) for b in self.request(RTM_GETADDR, NLM_F_DUMP, body)]
        return [a for a in found if a and (index is None or a.index == index)]

    def add_address(self, index: int, cidr: str) -> None:
        """`ip addr add CIDR brd + dev DEV` (with the broadcast address, as `ip` and Go do)."""
        addr, plen = parse_cidr(cidr)
        packed = struct.pack("!I", addr)
        body = _IFADDR.pack(socket.AF_INET, plen, 0, RT_SCOPE_UNIVERSE, index)
        body += attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed)
        if plen < 31:
            broadcast = addr | (0xFFFFFFFF >> plen)
            body += attr(IFA_BROADCAST, struct.pack("!I", broadcast))
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, body)

    def routes(self) -> list[Route]:
        """`ip -4 route show table main`."""
        body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
        return [r for r in map(_route, self.request(RTM_GETROUTE, NLM_F_DUMP, body)) if r]

    def add_route(self, dst: str, gateway: str | None, oif: int) -> None:
        """`ip route add DST [via GW] dev DEV` (no gateway: a `scope link` route)."""
        net, plen = network(dst)
        scope = RT_SCOPE_UNIVERSE if gateway else RT_SCOPE_LINK
        body = _RTMSG.pack(
            socket.AF_INET, plen, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, scope, RTN_UNICAST, 0
        )
        body += attr(RTA_DST, struct.pack("!I", net)) + attr_u32(RTA_OIF, oif)
        if gateway:
            body += attr(RTA_GATEWAY, struct.pack("!I", ip_int(gateway)))
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, body)


# --- namespaces ------------------------------------------------------------------------------
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def entered(path: str) -> Iterator[int]:
    """Run the body inside the network namespace at `path`; yield an fd of the namespace.

    Raises FileNotFoundError when `path` does not exist, and OSError(EINVAL) when it is not
    a network namespace (a plain file, or a namespace whose mount went away).
    """
    target = os.open(path, os.O_RDONLY)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        setns(target)
        try:
            yield target
        finally:
            setns(home)
    finally:
        os.close(home)
        os.close(target)


def write_sysctl(path: str, value: str) -> bool:
    """Write /proc/sys/PATH (e.g. `net/ipv4/ip_forward`) in the current namespace.

    Paths, not dotted keys: an interface name may itself contain a dot. False if refused.
    """
    try:
        with open("/proc/sys/" + path, "w") as f:
            f.write(value)
    except OSError:
        return False
    return True
