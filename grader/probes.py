"""Packet probes: send real packets with Scapy from inside a lab namespace and report.

Each probe runs in its own short-lived process that has entered the namespace (forked
from a forkserver that imported Scapy once, about 0.1 s a probe). That keeps Scapy's
process-global state per namespace, keeps the caller's threads out of `setns`, and means
a learner's notebook cannot patch what the probe sees.

Every probe returns an `Observation`: what was sent, every related frame seen on the
egress interface (ARP included), the replies, and a `describe()` that turns it into
the sentence a check puts in its feedback.

A reply counts only if a kernel sent it across the cable the probe went out on (issue 14:
a responder process must not stand in for a topology). Checked where it is cheap:
- the reply was also *received by the prober's kernel* (a raw socket of the probe's
  protocol, open while the probe runs): a frame a process sends out of the prober's own
  interface is seen by the sniffer, but never reaches the kernel;
- the egress "cable" leaves the namespace: not a veth whose other end is in the same
  namespace, not a tun/tap a process writes (also for the ports of an egress bridge);
- no process outside the grader holds a packet socket (what a Scapy responder needs to
  send made-up frames) in a namespace of the run, looked up after a reply came: one read
  of /proc/net/packet per namespace, an owner search only when a socket is there.
A second capture at the far end would prove the frames crossed, but a responder *at* the
far end crosses it too; what tells a topology from a responder is who answered.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from course.kernel import Netns

_ctx: Any = None


class ProbeError(RuntimeError):
    """The probe itself could not run (not: the network did not answer)."""


def _context() -> Any:
    global _ctx
    if _ctx is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["scapy.all", "grader._probe_child", "grader.probes"])
        _ctx = ctx
    return _ctx


def _noop() -> None:
    """Runs in a forkserver child; returns only once the forkserver has preloaded Scapy."""


def warm_up(timeout: float = 30.0) -> None:
    """Start the probes' forkserver now and wait until it has imported Scapy (about 1 s).

    Call it while nothing is waiting (when a grader starts, before the learner's kernel),
    so the first probe costs ~0.1 s like every other. Starts no code in any namespace.
    """
    from multiprocessing import forkserver

    ctx = _context()
    forkserver.ensure_running()
    child = ctx.Process(target=_noop, daemon=True)
    child.start()
    child.join(timeout)


def _ns_path(ns: Netns | str) -> str:
    if isinstance(ns, Netns):
        return str(ns.path)
    from course.kernel import netns  # its NETNS_DIR moves into a sandbox when grading

    return ns if ns.startswith("/") else str(netns.NETNS_DIR / ns)


def _ns_name(ns: Netns | str) -> str:
    return ns.name if isinstance(ns, Netns) else os.path.basename(ns)


def run_in_netns(
    ns: Netns | str, func: Callable[..., Any], *args: Any, timeout: float = 10.0, **kwargs: Any
) -> Any:
    """Run `func(*args, **kwargs)` in a fresh process inside `ns` and return its result.

    `func` must be a module-level function (it is pickled by name). A probe that does not
    finish within `timeout` seconds is killed and raises ProbeError.
    """
    if not os.path.exists(_ns_path(ns)):
        raise ProbeError(f"network namespace {_ns_name(ns)!r} does not exist")
    ctx = _context()
    from grader import _probe_child

    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_probe_child.main, args=(_ns_path(ns), func, args, kwargs, send), daemon=True
    )
    proc.start()
    send.close()
    try:
        if not recv.poll(timeout):
            raise ProbeError(f"probe {func.__name__} in {_ns_name(ns)} ran over {timeout:.0f} s")
        status, value = recv.recv()
    except EOFError:
        raise ProbeError(f"probe {func.__name__} in {_ns_name(ns)} died") from None
    finally:
        recv.close()
        if proc.is_alive():
            proc.kill()
        proc.join(2)
    if status != "ok":
        raise ProbeError(f"probe {func.__name__} in {_ns_name(ns)} failed: {value}")
    return value


# --- what a probe reports ---------------------------------------------------------------------
@dataclass
class Frame:
    """One frame seen on an interface, reduced to what feedback talks about."""

    t_ms: float
    iface: str
    kind: str
    src_mac: str | None = None
    dst_mac: str | None = None
    src: str | None = None
    dst: str | None = None
    ttl: int | None = None
    sport: int | None = None
    dport: int | None = None
    detail: str = ""

    def describe(self) -> str:
        where = f"{self.src} -> {self.dst}" if self.src else ""
        macs = f" [MAC {self.src_mac} -> {self.dst_mac}]" if self.src_mac else ""
        ttl = f" ttl {self.ttl}" if self.ttl is not None else ""
        extra = f" ({self.detail})" if self.detail else ""
        return f"{self.kind} {where}{ttl}{macs}{extra}".strip()


@dataclass
class Observation:
    """What one probe sent and what came back (or did not)."""

    probe: str
    ns: str
    dst: str
    sent: str
    iface: str | None = None
    replies: list[Frame] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    error: str | None = None
    elapsed_ms: float = 0.0
    timeout: float = 1.0
    data: bytes = b""
    outcome: str = ""  # for kernel-socket probes: what the socket call reported
    forged: str = ""  # why the replies seen do not count (not a kernel across the cable)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.replies) and not self.forged

    @property
    def reply(self) -> Frame | None:
        return self.replies[0] if self.replies else None

    def arp_unanswered(self) -> list[str]:
        """Addresses this probe's namespace asked ARP for and never got an answer."""
        asked = {f.dst for f in self.frames if f.kind == "ARP who-has" and f.dst}
        answered = {f.src for f in self.frames if f.kind == "ARP is-at" and f.src}
        return sorted(asked - answered)

    def describe(self) -> str:
        """One paragraph: what was sent from where, and what the wire showed."""
        head = f"Sent {self.sent} from namespace {self.ns}"
        head += f" out of {self.iface}." if self.iface else "."
        if self.outcome:
            return f"{head} {self.outcome}"
        if self.error:
            return f"{head} The kernel did not send it: {self.error}."
        if self.forged:
            return f"{head} A reply was seen, but it does not count: {self.forged}."
        if self.reply is not None:
            r = self.reply
            return f"{head} Got back {r.describe()} after {r.t_ms:.1f} ms."
        lines = [f"{head} Nothing came back within {self.timeout:g} s."]
        for ip in self.arp_unanswered():
            lines.append(f"The namespace asked ARP 'who has {ip}?' and nobody answered.")
        errors = [f for f in self.frames if f.kind.startswith("ICMP ") and "echo" not in f.kind]
        for f in errors:
            lines.append(f"An error came back instead: {f.describe()}.")
        out = [f for f in self.frames if f.kind == self.probe_kind() and f.src_mac]
        if out and not self.arp_unanswered():
            lines.append(f"The request left towards MAC {out[0].dst_mac}.")
        return " ".join(lines)

    def probe_kind(self) -> str:
        return {"icmp-echo": "ICMP echo-request", "tcp-syn": "TCP S", "udp": "UDP"}.get(
            self.probe, ""
        )


# --- the probes themselves (these functions run inside the namespace) --------------------------
def _frame(pkt: Any, t0: float, iface: str) -> Frame:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.l2 import ARP, Ether

    f = Frame(t_ms=(float(pkt.time) - t0) * 1000, iface=iface, kind=pkt.lastlayer().name)
    if Ether in pkt:
        f.src_mac, f.dst_mac = pkt[Ether].src, pkt[Ether].dst
    if ARP in pkt:
        op = pkt[ARP].op
        f.kind = "ARP who-has" if op == 1 else "ARP is-at"
        f.src, f.dst = pkt[ARP].psrc, pkt[ARP].pdst
        if op == 2:
            f.detail = f"{pkt[ARP].psrc} is at {pkt[ARP].hwsrc}"
        return f
    if IP in pkt:
        f.src, f.dst, f.ttl = pkt[IP].src, pkt[IP].dst, pkt[IP].ttl
    if ICMP in pkt:
        icmp = pkt[ICMP]
        f.kind = f"ICMP {icmp.sprintf('%ICMP.type%')}"
        if icmp.type in (3, 11):
            f.detail = f"code {icmp.code}: {icmp.sprintf('%ICMP.code%')}"
    elif TCP in pkt:
        f.kind = f"TCP {pkt[TCP].flags}"
        f.sport, f.dport = pkt[TCP].sport, pkt[TCP].dport
    elif UDP in pkt:
        f.kind = "UDP"
        f.sport, f.dport = pkt[UDP].sport, pkt[UDP].dport
    return f


def _egress(dst: str) -> tuple[str | None, str | None]:
    """The interface and next hop the kernel would use for `dst` (None: no route + why)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        try:
            msg = ipr.route("get", dst=dst)[0]
        except NetlinkError as exc:
            return None, str(exc.args[-1]) if exc.args else "no route"
        oif = msg.get_attr("RTA_OIF")
        name = ipr.get_links(oif)[0].get_attr("IFLA_IFNAME")
        if msg["type"] == 2:  # RTN_LOCAL: the kernel delivers it to itself over lo
            name = "lo"
        return name, msg.get_attr("RTA_GATEWAY") or dst


def _icmp_error(pkt: Any) -> bool:
    """An ICMP error (unreachable, time exceeded) ends the wait: nothing else will come."""
    from scapy.layers.inet import ICMP

    return ICMP in pkt and pkt[ICMP].type in (3, 11)


def _related(pkt: Any, next_hop: str | None, dst: str) -> bool:
    """Keep ARP only for this probe's next hop: a kernel may still be ARPing for an
    address an earlier probe tried, and that must not show up in this probe's story."""
    from scapy.layers.l2 import ARP

    if ARP in pkt:
        return next_hop in (pkt[ARP].pdst, pkt[ARP].psrc)
    return True


def _kind(link: Any) -> str:
    info = link.get_attr("IFLA_LINKINFO")
    return str(info.get_attr("IFLA_INFO_KIND") or "") if info else ""


def _cable_ends_here(iface: str) -> str:
    """Why the cable behind `iface` ends in this very namespace, or "" when it leaves it.

    A veth whose other end is in the same namespace, or a tun/tap (a process writes its
    frames), lets a process here inject a "reply" that arrives from the wire; for an egress
    bridge, each port is such a cable.
    """
    from pyroute2 import IPRoute

    if iface == "lo":
        return ""
    with IPRoute() as ipr:
        links = list(ipr.get_links())
    out = next((lk for lk in links if lk.get_attr("IFLA_IFNAME") == iface), None)
    if out is None:
        return ""
    ends = [out]
    if _kind(out) == "bridge":
        ends += [lk for lk in links if lk.get_attr("IFLA_MASTER") == out["index"]]
    for link in ends:
        name = link.get_attr("IFLA_IFNAME")
        if _kind(link) == "tun":
            return f"{name} is a tun/tap device: a process writes the frames it carries"
        if _kind(link) == "veth" and link.get_attr("IFLA_LINK_NETNSID") is None:
            return f"{name} is a veth whose other end is in this same namespace"
    return ""


def _kernel_sockets(proto: int) -> list[Any]:
    """Raw sockets that get a copy of what this namespace's kernel receives (the probe's
    protocol and ICMP, for errors); frames sent out by a process never reach them."""
    import socket

    socks = []
    for p in dict.fromkeys((proto, socket.IPPROTO_ICMP)):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, p)
        s.setblocking(False)
        socks.append(s)
    return socks


def _received(socks: list[Any]) -> set[tuple[str, str, int, int]]:
    """(src, dst, IP id, protocol) of every packet the kernel got meanwhile."""
    import socket

    got = set()
    for s in socks:
        while True:
            try:
                data = s.recv(65535)
            except OSError:
                break
            if len(data) >= 20:
                ident = int.from_bytes(data[4:6], "big")
                got.add(
                    (socket.inet_ntoa(data[12:16]), socket.inet_ntoa(data[16:20]), ident, data[9])
                )
        s.close()
    return got


def _ip_key(pkt: Any) -> tuple[str, str, int, int]:
    from scapy.layers.inet import IP

    return (pkt[IP].src, pkt[IP].dst, pkt[IP].id, pkt[IP].proto)


def _exchange(
    pkt: Any, dst: str, is_answer: Callable[[Any], bool], timeout: float, bpf: str
) -> tuple[str | None, list[Frame], list[Frame], str | None, float, str]:
    """Send `pkt` through the kernel (raw socket), sniff the egress interface meanwhile.

    The last value says why reply-shaped frames do not count ("" when they do, or when
    there are none): see the module docstring.
    """
    import threading

    from scapy.layers.inet import IP
    from scapy.sendrecv import AsyncSniffer
    from scapy.supersocket import L3RawSocket

    iface, next_hop = _egress(dst)
    if iface is None:
        return None, [], [], f"no route to {dst} ({next_hop})", 0.0, ""
    kernel = _kernel_sockets(pkt[IP].proto)
    ready = threading.Event()
    captured: list[Any] = []  # AsyncSniffer.results only exists after stop(): collect live
    sniffer = AsyncSniffer(
        iface=iface, filter=bpf, started_callback=ready.set, store=False, prn=captured.append
    )
    sniffer.start()
    ready.wait(2)
    t0 = time.time()
    sock = L3RawSocket()
    error = None
    try:
        sock.send(pkt)
    except OSError as exc:
        error = exc.strerror or str(exc)
    finally:
        sock.close()
    deadline = t0 + timeout
    answers: list[Any] = []
    while error is None and time.time() < deadline:
        answers = [p for p in list(captured) if is_answer(p) or _icmp_error(p)]
        if answers:
            time.sleep(0.02)  # let a duplicate or an error arrive too
            break
        time.sleep(0.005)
    elapsed = (time.time() - t0) * 1000
    sniffer.stop()
    received = _received(kernel)
    frames = [_frame(p, t0, iface) for p in captured if _related(p, next_hop, dst)]
    answers = [p for p in captured if is_answer(p)]
    replies = [_frame(p, t0, iface) for p in answers if IP in p and _ip_key(p) in received]
    forged = ""
    if answers and not replies:
        forged = (
            f"it was seen on {iface} but never reached this namespace's kernel: a process "
            f"here sent it out, it did not come back across the cable"
        )
    elif replies:
        forged = _cable_ends_here(iface)
    return iface, frames, replies, error, elapsed, forged


def _source(pkt: Any) -> str:
    """The source address the probe leaves with (0.0.0.0: the namespace has none to give).

    Scapy leaves 0.0.0.0 when the egress interface has no address of its own; the kernel
    then fills in the address its routing prefers (as `ip route get` shows it), so that
    is the address a real reply comes back to.
    """
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    from scapy.layers.inet import IP

    src = str(pkt[IP].src)
    if src not in ("0.0.0.0", ""):
        return src
    with IPRoute() as ipr:
        try:
            msg = ipr.route("get", dst=str(pkt[IP].dst))[0]
        except NetlinkError:
            return "0.0.0.0"
        return str(msg.get_attr("RTA_PREFSRC") or "0.0.0.0")


def _answers(reply: Any, src: str, dst: str) -> bool:
    """A reply answers the probe only if it comes from where the probe went and goes back
    to the probe's own address. A namespace without an address (source 0.0.0.0) can get no
    answer at all: a responder forging replies to 0.0.0.0 stands in for no topology.
    """
    from scapy.layers.inet import IP

    if IP not in reply or src in ("0.0.0.0", ""):
        return False
    return bool(reply[IP].src == dst and reply[IP].dst == src)


def _ping_inside(dst: str, ttl: int, ident: int, timeout: float, size: int) -> Observation:
    from scapy.layers.inet import ICMP, IP
    from scapy.packet import Raw

    data = b"k8snet".ljust(size, b".")
    pkt = IP(dst=dst, ttl=ttl) / ICMP(id=ident, seq=1) / Raw(data)
    src = _source(pkt)

    def is_answer(p: Any) -> bool:
        if not (ICMP in p and p[ICMP].type == 0 and _answers(p, src, dst)):
            return False
        return p[ICMP].id == ident and p[ICMP].seq == 1 and bytes(p[ICMP].payload) == data

    iface, frames, replies, error, ms, forged = _exchange(
        pkt, dst, is_answer, timeout, "icmp or arp"
    )
    sent = f"ICMP echo request to {dst} (ttl {ttl}, id {ident:#06x})"
    return Observation(
        "icmp-echo", "", dst, sent, iface, replies, frames, error, ms, timeout, forged=forged
    )


def _tcp_syn_inside(dst: str, port: int, sport: int, timeout: float) -> Observation:
    from scapy.layers.inet import ICMP, IP, TCP

    seq = random.getrandbits(32)
    pkt = IP(dst=dst) / TCP(sport=sport, dport=port, flags="S", seq=seq)
    src = _source(pkt)

    def is_answer(p: Any) -> bool:
        if TCP in p and p[TCP].dport == sport and p[TCP].sport == port:
            acked = p[TCP].ack == (seq + 1) % 2**32 or not p[TCP].flags.A
            return acked and _answers(p, src, dst)
        return ICMP in p and p[ICMP].type == 3

    bpf = f"(tcp and port {sport}) or icmp or arp"
    iface, frames, replies, error, ms, forged = _exchange(pkt, dst, is_answer, timeout, bpf)
    sent = f"TCP SYN to {dst}:{port} (source port {sport})"
    return Observation(
        "tcp-syn", "", dst, sent, iface, replies, frames, error, ms, timeout, forged=forged
    )


def _udp_inside(dst: str, port: int, sport: int, payload: bytes, timeout: float) -> Observation:
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.packet import Raw

    pkt = IP(dst=dst) / UDP(sport=sport, dport=port) / Raw(payload)
    src = _source(pkt)

    def is_answer(p: Any) -> bool:
        if UDP in p and p[UDP].dport == sport and p[UDP].sport == port:
            return _answers(p, src, dst)
        return ICMP in p and p[ICMP].type == 3

    bpf = f"(udp and port {sport}) or icmp or arp"
    iface, frames, replies, error, ms, forged = _exchange(pkt, dst, is_answer, timeout, bpf)
    sent = f"UDP datagram to {dst}:{port} (source port {sport}, {len(payload)} bytes)"
    return Observation(
        "udp", "", dst, sent, iface, replies, frames, error, ms, timeout, forged=forged
    )


def _connect_inside(dst: str, port: int, timeout: float, payload: bytes) -> Observation:
    """A real `connect()` from the kernel's TCP stack (what an application would do)."""
    import socket

    sent = f"TCP connect() to {dst}:{port}"
    obs = Observation("tcp-connect", "", dst, sent, timeout=timeout)
    t0 = time.time()
    with socket.socket() as s:
        s.settimeout(timeout)
        try:
            s.connect((dst, port))
            obs.iface, _ = _egress(dst)
            local = s.getsockname()
            obs.replies.append(
                Frame(
                    (time.time() - t0) * 1000,
                    obs.iface or "",
                    "TCP connected",
                    src=dst,
                    dst=local[0],
                    sport=port,
                    dport=local[1],
                )
            )
            obs.outcome = f"The connection was accepted by {dst}:{port}."
            if payload:
                s.sendall(payload)
            s.settimeout(min(timeout, 0.5))
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                obs.data = s.recv(4096)
            if obs.data:
                obs.outcome += f" The server answered {obs.data[:60]!r}."
        except ConnectionRefusedError:
            obs.error = "connection refused"
            obs.outcome = "A TCP RST came back: the address answered, but nothing listens there."
        except TimeoutError:
            obs.error = "timeout"
            obs.outcome = f"No answer to the SYN within {timeout:g} s (dropped or unrouted)."
        except OSError as exc:
            obs.error = exc.strerror or str(exc)
            obs.outcome = f"The kernel refused to connect: {obs.error}."
    obs.elapsed_ms = (time.time() - t0) * 1000
    return obs


def _named(obs: Observation, ns: Netns | str) -> Observation:
    obs.ns = _ns_name(ns)
    if obs.ok:  # only a reply needs to be vouched for
        found = responders(ns)
        if found:
            obs.forged = (
                "; ".join(found[:3]) + ": a process like that can answer in place of a kernel, "
                "so no reply counts while it runs (stop it, then check again)"
            )
    return obs


# --- who else could have answered --------------------------------------------------------------
def _run_namespaces(ns: Netns | str) -> list[str]:
    """The namespaces of `ns`'s run (same `<prefix>-<run>` name start, same folder: in a
    sandbox, that folder holds the submission's namespaces only)."""
    path = _ns_path(ns)
    folder, name = os.path.split(path)
    run = "-".join(name.split("-")[:2])
    try:
        names = os.listdir(folder)
    except OSError:
        return [path]
    return [os.path.join(folder, n) for n in names if n == run or n.startswith(run + "-")]


def _packet_sockets(path: str) -> set[int]:
    """Inodes of the packet sockets open in the namespace at `path` (its /proc/net/packet)."""
    from course.kernel.netns import entered_path

    with entered_path(path), open("/proc/thread-self/net/packet") as f:
        rows = f.read().splitlines()[1:]
    return {int(row.split()[-1]) for row in rows if row.split()}


def _socket_owners(inodes: set[int], pids: list[int]) -> dict[int, int]:
    want = {f"socket:[{i}]": i for i in inodes}
    owners: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target in want:
                        owners[want[target]] = pid
    return owners


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _ours(pid: int) -> bool:
    """`pid` is this process or one it started (probe children, journeys' tcpdumps)."""
    me = os.getpid()
    with contextlib.suppress(OSError, ValueError, IndexError):
        for _ in range(16):
            if pid == me:
                return True
            if pid <= 1:
                return False
            pid = _parent(pid)
    return False


def _cmdline(pid: int) -> str:
    """The command line of a live process; "" once it has exited (or is exiting)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:60]
    except OSError:
        return ""


def responders(ns: Netns | str) -> list[str]:
    """Processes, other than the grader's own, holding a packet socket in `ns`'s run.

    A packet socket is what a responder (Scapy's sendp, a raw frame writer) needs to put
    made-up replies on a cable. Clean labs have none, so this costs one small read per
    namespace; owners are looked up only when a socket is found (in the run's namespaces
    first, then, for a socket whose owner moved out, everywhere).
    """
    from course.kernel.netns import netns_inode, pids_by_netns

    sockets: dict[int, str] = {}
    run = _run_namespaces(ns)
    for path in run:
        with contextlib.suppress(OSError):
            sockets |= dict.fromkeys(_packet_sockets(path), os.path.basename(path))
    if not sockets:
        return []
    by_netns = pids_by_netns()
    inside: list[int] = []
    for path in run:
        with contextlib.suppress(OSError):
            inside += by_netns.get(netns_inode(path), [])
    owners = _socket_owners(set(sockets), inside)
    if len(owners) < len(sockets):
        everyone = [p for pids in by_netns.values() for p in pids if p not in inside]
        owners |= _socket_owners(set(sockets) - set(owners), everyone)
    # A socket no process holds any more (a capture that just ended) can send nothing, nor
    # can a process gone by now (a probe child or tcpdump of the grader, exiting).
    return [
        f"process {pid} ({cmd}) holds a packet socket in {sockets[inode]}"
        for inode, pid in owners.items()
        if not _ours(pid) and (cmd := _cmdline(pid))
    ]


# --- the public probes ----------------------------------------------------------------------------
def ping(
    ns: Netns | str,
    dst: str,
    ttl: int = 64,
    timeout: float = 1.0,
    size: int = 32,
    ident: int | None = None,
) -> Observation:
    """ICMP echo from `ns` to `dst`: the reply's source, TTL and MACs, or why none came."""
    ident = ident if ident is not None else random.randrange(1, 0xFFFF)
    obs = run_in_netns(ns, _ping_inside, dst, ttl, ident, timeout, size, timeout=timeout + 8)
    return _named(obs, ns)


def tcp_syn(
    ns: Netns | str, dst: str, port: int, sport: int | None = None, timeout: float = 1.0
) -> Observation:
    """One hand-made TCP SYN: SYN-ACK (listening), RST (closed), ICMP error or silence."""
    sport = sport or random.randrange(20000, 60000)
    obs = run_in_netns(ns, _tcp_syn_inside, dst, port, sport, timeout, timeout=timeout + 8)
    return _named(obs, ns)


def tcp_connect(
    ns: Netns | str, dst: str, port: int, timeout: float = 1.0, payload: bytes = b""
) -> Observation:
    """A kernel TCP connection from `ns`; `data` holds what the server sent back, if any."""
    obs = run_in_netns(ns, _connect_inside, dst, port, timeout, payload, timeout=timeout + 8)
    return _named(obs, ns)


def udp(
    ns: Netns | str,
    dst: str,
    port: int,
    payload: bytes = b"k8snet",
    sport: int | None = None,
    timeout: float = 1.0,
) -> Observation:
    """One UDP datagram: a reply, an ICMP port-unreachable, or silence."""
    sport = sport or random.randrange(20000, 60000)
    obs = run_in_netns(ns, _udp_inside, dst, port, sport, payload, timeout, timeout=timeout + 8)
    return _named(obs, ns)


# --- watching one place while sending from another ----------------------------------------------
def _sniff_inside(iface: str, bpf: str, seconds: float, ready: Any, stop: Any) -> list[Frame]:
    from scapy.sendrecv import AsyncSniffer

    t0 = time.time()
    sniffer = AsyncSniffer(iface=iface, filter=bpf, started_callback=ready.set, store=True)
    sniffer.start()
    stop.wait(seconds)
    time.sleep(0.02)  # frames still in flight when the sender finished
    sniffer.stop()
    return [_frame(p, t0, iface) for p in (sniffer.results or [])]


def sniff_while(
    ns: Netns | str,
    iface: str,
    action: Callable[[], Any],
    bpf: str = "icmp or arp or tcp or udp",
    max_seconds: float = 5.0,
) -> tuple[Any, list[Frame]]:
    """Capture on `iface` inside `ns` while `action()` runs (typically a probe elsewhere).

    Answers questions such as "did the packet reach the node's veth?" and "whose MAC did
    the receiver see?". Returns the action's result and the frames captured.
    """
    ctx = _context()
    ready, stop = ctx.Event(), ctx.Event()
    result: dict[str, Any] = {}

    import threading

    def sniff() -> None:
        try:
            result["frames"] = run_in_netns(
                ns, _sniff_inside, iface, bpf, max_seconds, ready, stop, timeout=max_seconds + 8
            )
        except ProbeError as exc:
            result["error"] = exc
            ready.set()

    t = threading.Thread(target=sniff, daemon=True)
    t.start()
    if not ready.wait(max_seconds + 5):
        raise ProbeError(f"sniffer on {_ns_name(ns)}/{iface} did not start")
    if "error" in result:
        raise result["error"]
    try:
        outcome = action()
    finally:
        stop.set()
        t.join(max_seconds + 10)
    if "error" in result:
        raise result["error"]
    return outcome, result.get("frames", [])
