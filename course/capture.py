"""Captures you can read: tcpdump inside a lab namespace while something runs.

    with capture("node1", "veth-c", filter="icmp") as cap:
        sh("pod-c", "ping -c1 10.244.1.5")
    cap            # a table in Jupyter: time, where, src -> dst, proto, summary
    cap.pcap       # the same packets as a .pcap file, for Wireshark

This is what you would do on a real node: `tcpdump -ni veth1a2b3c -w out.pcap icmp`. The
capture runs the real tcpdump inside the namespace (`nsenter --net=... tcpdump`), waits until
it says "listening on" (from then on every packet is kept), runs your code, stops tcpdump
with SIGINT (which makes it flush its file) and reads the file with Scapy. Several
interfaces at once (both ends of a cable, the underlay and the VXLAN device) are merged by
time. Encapsulated packets (VXLAN) show their outer and inner headers.

A fresh namespace chatters IPv6 router and neighbour solicitations, MLD and IGMP reports
(see kernel-notes); they are left out unless you ask for them (`noise=True`).
"""

from __future__ import annotations

import atexit
import contextlib
import html
import os
import re
import signal
import subprocess
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from course.kernel import Netns
from course.runs import PREFIX

# What a fresh namespace says by itself: IPv6 RS/NS/MLD (all to ff02::/16) and IGMP.
NOISE_BPF = "ip6 multicast or igmp"
START_TIMEOUT = 5.0
_LIVE: set[subprocess.Popen[bytes]] = set()


class CaptureError(RuntimeError):
    """tcpdump could not start (no such interface, namespace gone, bad filter)."""


# --- where to capture --------------------------------------------------------------------------
Where = Netns | str


def _role_of(ns: Netns) -> str:
    """`knl-3fa2-node1-a` -> `node1-a`: the role is what the lab calls the namespace."""
    match = re.match(rf"^{re.escape(PREFIX)}-[0-9a-f]{{4}}-(.+)$", ns.name)
    return match.group(1) if match else ns.name


def resolve(where: Where, cluster: Any = None) -> tuple[str, Netns]:
    """A namespace and its role name from a Netns, a role (`node1`) or a full namespace name.

    Roles are looked up in `cluster` (a `course.topology.Cluster`), else in the current run
    of the notebook (`course.notebook`), else taken as a full namespace name.
    """
    if isinstance(where, Netns):
        return _role_of(where), where
    if cluster is not None and where in cluster.namespaces:
        return where, cluster.namespaces[where]
    if cluster is None:
        found = _from_notebook(where)
        if found is not None:
            return found
    ns = Netns(where)
    if ns.exists():
        return _role_of(ns), ns
    cluster = cluster if cluster is not None else _current_cluster()
    known = ", ".join(cluster.namespaces) if cluster is not None else "(no current lab run)"
    raise CaptureError(f"no namespace for {where!r}; roles of the current run: {known}")


def _from_notebook(role: str) -> tuple[str, Netns] | None:
    """`course.notebook.namespace_of`: roles and their aliases (`a` for `node1-a`)."""
    try:
        from course import notebook  # type: ignore[attr-defined]
    except ImportError:
        return None
    namespace_of = getattr(notebook, "namespace_of", None)
    if namespace_of is None:
        return None
    try:
        name, record = namespace_of(role)
    except Exception:
        return None
    return name[len(record.prefix) + 1 :], Netns(name)


def _current_cluster() -> Any:
    """The notebook's current run, when `course.notebook` (the setup cell's helper) has one."""
    try:
        from course import notebook  # type: ignore[attr-defined]
    except ImportError:
        return None
    for name in ("current_cluster", "current", "current_run"):
        fn = getattr(notebook, name, None)
        if callable(fn):
            with contextlib.suppress(Exception):
                return fn()
    return getattr(notebook, "CURRENT", None)


def capture_dir() -> Path:
    """Where pcaps go: $K8SNET_CAPTURE_DIR, else ./captures in a notebook, else /tmp.

    In JupyterLab the notebook's folder is the working directory, so a capture saved under
    ./captures shows up in the file browser, ready to download and open in Wireshark.
    """
    env = os.environ.get("K8SNET_CAPTURE_DIR")
    if env:
        return Path(env)
    if _in_ipython():
        return Path.cwd() / "captures"
    return Path("/tmp/k8s-netlabs/captures")


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


# --- one tcpdump -------------------------------------------------------------------------------
@dataclass
class Tap:
    """One tcpdump on one interface of one namespace, writing a pcap."""

    role: str
    ns: Netns
    iface: str
    path: Path
    bpf: str = ""
    proc: subprocess.Popen[bytes] | None = None
    mac: str | None = None
    stderr: str = ""

    @property
    def where(self) -> str:
        return f"{self.role}/{self.iface}"

    def argv(self, count: int) -> list[str]:
        # -U --immediate-mode: every packet reaches the file at once (libpcap otherwise
        # holds packets in its ring for up to a second, and a quick SIGINT loses them).
        # -Z root: Debian's tcpdump would drop to user tcpdump, which cannot write here.
        # -p: no promiscuous mode, so capturing never changes how the lab behaves.
        cmd = ["tcpdump", "-p", "-i", self.iface, "-w", str(self.path), "-U", "--immediate-mode"]
        cmd += ["-n", "-Z", "root", "--time-stamp-precision=nano", "-c", str(count)]
        cmd += [self.bpf] if self.bpf else []
        return ["nsenter", f"--net={self.ns.path}", "--", *cmd]

    def start(self, count: int) -> None:
        if not self.ns.exists():
            raise CaptureError(f"namespace {self.ns.name} ({self.role}) does not exist")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self.argv(count), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        _LIVE.add(self.proc)

    def wait_listening(self, deadline: float) -> None:
        """tcpdump prints "listening on IFACE" once its socket and filter are in place."""
        assert self.proc is not None and self.proc.stderr is not None
        os.set_blocking(self.proc.stderr.fileno(), False)
        buf = b""
        while time.monotonic() < deadline:
            with contextlib.suppress(BlockingIOError, TypeError):
                chunk = self.proc.stderr.read()
                if chunk:
                    buf += chunk
            if b"listening on" in buf:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.003)
        self.stop()
        msg = buf.decode(errors="replace").strip() or "no output"
        raise CaptureError(f"tcpdump on {self.where} did not start: {msg}")

    def interrupt(self) -> None:
        """SIGINT makes tcpdump flush and close its file (several taps: signal all, then wait)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)

    def stop(self) -> None:
        """Interrupt, wait for the exit (SIGKILL if tcpdump does not obey), collect stderr."""
        proc = self.proc
        if proc is None:
            return
        self.interrupt()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stderr is not None:
            with contextlib.suppress(OSError, TypeError, ValueError):
                self.stderr = (proc.stderr.read() or b"").decode(errors="replace")
            proc.stderr.close()
        _LIVE.discard(proc)


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


# --- what a capture shows ----------------------------------------------------------------------
@dataclass
class Row:
    """One packet as seen at one place. For encapsulated packets `outer` names the tunnel."""

    t: float
    where: str
    src: str
    dst: str
    proto: str
    summary: str
    src_mac: str = ""
    dst_mac: str = ""
    ttl: int | None = None
    outer: str = ""
    vni: int | None = None
    direction: str = ""  # "out" (sent by this interface), "in", or "" when unknown
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    icmp_id: int | None = None
    quoted: dict[str, Any] = field(default_factory=dict)  # inside an ICMP error
    fingerprint: int = 0  # CRC of the frame's bytes: the same frame seen at two places
    packet: Any = field(default=None, repr=False, compare=False)

    def text(self, macs: bool = False) -> str:
        line = f"{self.t:8.6f}  {self.where:<16} {self.direction:<3} {self.src} -> {self.dst}  "
        line += f"{self.proto:<5} "
        line += self.summary
        if self.outer:
            line += f"   [outer: {self.outer}]"
        if macs and self.src_mac:
            line += f"   [MAC {self.src_mac} -> {self.dst_mac}]"
        return line


def describe(pkt: Any) -> dict[str, Any]:
    """src, dst, proto, summary, MACs and TTL of the innermost packet; outer headers if any."""
    from scapy.layers.inet import UDP
    from scapy.layers.vxlan import VXLAN

    info: dict[str, Any] = {"outer": "", "vni": None}
    if VXLAN in pkt:
        outer = _describe_one(pkt)
        vx, udp = pkt[VXLAN], pkt[UDP]
        info["vni"] = int(vx.vni)
        info["outer"] = (
            f"{outer['src']} -> {outer['dst']} UDP {udp.sport} > {udp.dport}"
            f" VXLAN VNI {vx.vni} ttl {outer['ttl']}"
        )
        inner = _describe_one(vx.payload)
        info.update(inner)
        # The wire's own MACs: which way the frame crossed this interface (the inner
        # MACs are the two VTEPs', the same at every place the packet passes).
        info["outer_src_mac"] = outer.get("src_mac", "")
        return info
    info.update(_describe_one(pkt))
    return info


def _describe_one(pkt: Any) -> dict[str, Any]:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import ARP, Ether

    d: dict[str, Any] = {"src": "", "dst": "", "proto": pkt.lastlayer().name, "summary": ""}
    d.update(ttl=None, sport=None, dport=None, icmp_type=None, icmp_id=None, quoted={})
    if Ether in pkt:
        d["src_mac"], d["dst_mac"] = pkt[Ether].src, pkt[Ether].dst
        d["src"], d["dst"] = pkt[Ether].src, pkt[Ether].dst
    if ARP in pkt:
        a = pkt[ARP]
        d["proto"], d["src"], d["dst"] = "ARP", a.psrc, a.pdst
        d["summary"] = (
            f"who-has {a.pdst} tell {a.psrc}" if a.op == 1 else f"{a.psrc} is-at {a.hwsrc}"
        )
        return d
    ip = pkt[IP] if IP in pkt else pkt.getlayer(IPv6)
    if ip is None:
        d["summary"] = pkt.summary()
        return d
    d["src"], d["dst"] = ip.src, ip.dst
    d["ttl"] = ip.ttl if IP in pkt else ip.hlim
    ttl = f"ttl {d['ttl']}"
    if ICMP in pkt:
        icmp = pkt[ICMP]
        d["proto"] = "ICMP"
        d["icmp_type"] = int(icmp.type)
        d["icmp_id"] = int(icmp.id) if icmp.type in (0, 8) else None
        d["quoted"] = _quoted(icmp)
        kind = icmp.sprintf("%ICMP.type%")
        if icmp.type in (0, 8):
            d["summary"] = f"echo-{'reply' if icmp.type == 0 else 'request'} id {icmp.id:#06x} "
            d["summary"] += f"seq {icmp.seq} {ttl}"
        else:
            d["summary"] = f"{kind} ({icmp.sprintf('%ICMP.code%')}) {ttl}"
    elif TCP in pkt:
        t = pkt[TCP]
        d["proto"] = "TCP"
        d["sport"], d["dport"] = int(t.sport), int(t.dport)
        d["summary"] = f"{t.sport} > {t.dport} [{t.flags}] {ttl}"
    elif UDP in pkt:
        u = pkt[UDP]
        d["proto"] = "UDP"
        d["sport"], d["dport"] = int(u.sport), int(u.dport)
        d["summary"] = f"{u.sport} > {u.dport} len {u.len - 8} {ttl}"
    else:
        d["proto"] = ip.lastlayer().name
        d["summary"] = ttl
    return d


def _quoted(icmp: Any) -> dict[str, Any]:
    """The packet an ICMP error quotes (its first bytes): who sent what that failed."""
    from scapy.layers.inet import ICMPerror, IPerror, TCPerror, UDPerror

    if icmp.type not in (3, 4, 5, 11, 12) or IPerror not in icmp:
        return {}
    q: dict[str, Any] = {"src": icmp[IPerror].src, "dst": icmp[IPerror].dst}
    for layer in (TCPerror, UDPerror):
        if layer in icmp:
            q["sport"], q["dport"] = int(icmp[layer].sport), int(icmp[layer].dport)
    if ICMPerror in icmp:
        q["icmp_id"] = icmp[ICMPerror].id
    return q


def _is_noise(pkt: Any) -> bool:
    """IPv6 multicast chatter and IGMP, also inside a tunnel (BPF sees only the outer packet)."""
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.vxlan import VXLAN

    inner = pkt[VXLAN].payload if VXLAN in pkt else pkt
    if IPv6 in inner and inner[IPv6].dst.startswith("ff"):
        return True
    return IP in inner and inner[IP].proto == 2


def _load_scapy_layers() -> None:
    """Register Ethernet, IP, ARP, IPv6 and VXLAN (8472 too) with Scapy's pcap reader.

    Cheaper than `scapy.all` (about 1 s) in a kernel that only reads files.
    """
    import scapy.layers.inet
    import scapy.layers.inet6
    import scapy.layers.l2
    import scapy.layers.vxlan  # noqa: F401


def read_rows(
    paths: Sequence[tuple[str, Path, str | None]], t0: float | None = None, noise: bool = False
) -> list[Row]:
    """Rows from pcaps [(where, path, interface MAC)], merged by time, relative to `t0`."""
    _load_scapy_layers()
    from scapy.utils import rdpcap

    found: list[tuple[float, str, str | None, Any]] = []
    for where, path, mac in paths:
        if not path.exists() or path.stat().st_size <= 24:  # 24 bytes: the header only
            continue
        found.extend((float(p.time), where, mac, p) for p in rdpcap(str(path)))
    found.sort(key=lambda item: item[0])
    if t0 is None:
        t0 = found[0][0] if found else 0.0
    rows = []
    for ts, where, mac, pkt in found:
        if not noise and _is_noise(pkt):
            continue
        try:
            d = describe(pkt)
        except Exception:  # a frame Scapy cannot take apart still gets a row
            d = {"src": "", "dst": "", "proto": "?", "summary": pkt.summary(), "ttl": None}
            d.update(outer="", vni=None, sport=None, dport=None, icmp_type=None, icmp_id=None)
            d["quoted"] = {}
        direction = ""
        wire_src = d.get("outer_src_mac") or d.get("src_mac")
        if mac and wire_src:
            direction = "out" if wire_src == mac else "in"
        rows.append(
            Row(
                t=ts - t0, where=where, src=d["src"], dst=d["dst"], proto=d["proto"],
                summary=d["summary"], src_mac=d.get("src_mac", ""),
                dst_mac=d.get("dst_mac", ""), ttl=d["ttl"], outer=d["outer"], vni=d["vni"],
                direction=direction, packet=pkt, sport=d["sport"], dport=d["dport"],
                icmp_type=d["icmp_type"], icmp_id=d["icmp_id"], quoted=d["quoted"],
                fingerprint=zlib.crc32(bytes(pkt)),
            )
        )  # fmt: skip
    return rows


def read_rows_to(
    conn: Any, paths: Sequence[tuple[str, Path, str | None]], t0: float | None, noise: bool
) -> None:
    """`read_rows` for another process: sends the rows (without Scapy objects) over `conn`."""
    try:
        rows = read_rows(paths, t0, noise)
        for row in rows:
            row.packet = None
        conn.send(("ok", rows))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


# How pcaps become rows: `read_rows` here; the grader reads them in a process that has
# Scapy loaded already (importing it costs about a second).
Reader = Callable[[Sequence[tuple[str, Path, "str | None"]], "float | None", bool], list[Row]]


# --- the capture -------------------------------------------------------------------------------
class Capture:
    """Packets seen on one or more interfaces while something ran; a table and a pcap."""

    def __init__(self, taps: list[Tap], noise: bool = False, reader: Reader | None = None) -> None:
        self.taps = taps
        self.noise = noise
        self.reader = reader or read_rows
        self.rows: list[Row] = []
        self.started = 0.0
        self.pcap: Path | None = None
        self.pcaps: dict[str, Path] = {tap.where: tap.path for tap in taps}

    # lifecycle
    def start(self, count: int = 10000) -> Capture:
        try:
            for tap in self.taps:
                tap.start(count)
            deadline = time.monotonic() + START_TIMEOUT
            for tap in self.taps:
                tap.wait_listening(deadline)
        except BaseException:
            self.stop_taps()
            raise
        self.started = time.time()
        return self

    def stop_taps(self) -> None:
        for tap in self.taps:
            tap.interrupt()
        for tap in self.taps:
            tap.stop()

    def stop(self) -> Capture:
        """Stop every tcpdump, read what they wrote, write the merged pcap."""
        time.sleep(0.01)  # a reply still crossing the last veth when the action returned
        self.stop_taps()
        paths = [(tap.where, tap.path, tap.mac) for tap in self.taps]
        self.rows = self.reader(paths, self.started, self.noise)
        self.pcap = self._merged()
        return self

    def _merged(self) -> Path | None:
        if len(self.taps) == 1:
            return self.taps[0].path
        first = self.taps[0].path
        packets = [row.packet for row in self.rows if row.packet is not None]
        if not packets:  # rows read elsewhere (journeys): no Scapy import here, no merged file
            return first
        from scapy.utils import wrpcap

        merged = first.with_name(first.name.split("-", 1)[0] + "-merged.pcap")
        wrpcap(str(merged), packets)
        return merged

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.stop()
            return
        self.stop_taps()  # an exception or KeyboardInterrupt in the body: stop tcpdump first
        with contextlib.suppress(Exception):
            self.stop()

    # showing it
    def table(self, macs: bool = False) -> str:
        if not self.rows:
            where = ", ".join(self.pcaps)
            return f"no packets on {where}" + ("" if self.noise else " (IPv6/IGMP noise hidden)")
        return "\n".join(row.text(macs) for row in self.rows)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return f"<Capture {len(self.rows)} packets on {', '.join(self.pcaps)}; pcap {self.pcap}>"

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def _repr_html_(self) -> str:
        encap = any(row.outer for row in self.rows)
        head = ["time (s)", "where", "src → dst", "proto", "summary"] + (["outer"] if encap else [])
        cells = "".join(f"<th style='text-align:left'>{h}</th>" for h in head)
        body = []
        for row in self.rows:
            cols = [f"{row.t:.6f}", row.where, f"{row.src} → {row.dst}", row.proto, row.summary]
            if encap:
                cols.append(row.outer)
            tds = "".join(
                f"<td style='text-align:left;font-family:monospace'>{html.escape(c)}</td>"
                for c in cols
            )
            body.append(f"<tr title='MAC {row.src_mac} → {row.dst_mac}'>{tds}</tr>")
        if not body:
            body.append(f"<tr><td colspan='{len(head)}'>{html.escape(self.table())}</td></tr>")
        foot = f"<div style='font-size:smaller'>{len(self.rows)} packets; pcap: "
        foot += f"<code>{html.escape(str(self.pcap))}</code> (open it in Wireshark)</div>"
        return f"<table>{cells and '<tr>' + cells + '</tr>'}{''.join(body)}</table>{foot}"

    def find(self, **want: Any) -> list[Row]:
        """Rows whose attributes equal every keyword: `cap.find(proto="ICMP", where="pod-c/eth0")`."""
        return [r for r in self.rows if all(getattr(r, k) == v for k, v in want.items())]


def _bpf(user: str, noise: bool) -> str:
    if noise:
        return user
    return f"({user}) and not ({NOISE_BPF})" if user else f"not ({NOISE_BPF})"


def _taps(
    points: Sequence[tuple[Where, str]], bpf: str, cluster: Any, folder: Path | None
) -> list[Tap]:
    folder = folder or capture_dir()
    stamp = time.strftime("%Y%m%dT%H%M%S") + f"{time.time() % 1:.3f}"[1:].replace(".", "")
    taps = []
    for where, iface in points:
        role, ns = resolve(where, cluster)
        path = folder / f"{stamp}-{role}-{iface}.pcap"
        tap = Tap(role, ns, iface, path, bpf)
        with contextlib.suppress(Exception):
            link = ns.link(iface)
            # A bridge port forwards frames that are neither from nor to its own MAC: no
            # direction can be read from the MACs there.
            tap.mac = None if link["master"] else link["mac"]
        ns.close()
        taps.append(tap)
    return taps


def capture(
    where: Where | Sequence[tuple[Where, str]],
    iface: str | None = None,
    *,
    filter: str = "",
    noise: bool = False,
    cluster: Any = None,
    folder: Path | None = None,
    count: int = 10000,
    reader: Reader | None = None,
) -> Capture:
    """Start capturing; use it as a context manager so tcpdump always stops.

        with capture("node1", "veth-c", filter="icmp") as cap: ...
        with capture([("pod-c", "eth0"), ("node1", "veth-c")]) as cap: ...   # both ends

    `filter` is a tcpdump (BPF) expression. Roles resolve against `cluster`, else the
    notebook's current run. At most `count` packets per interface are kept.
    """
    points = [(where, iface)] if iface is not None else list(where)  # type: ignore[arg-type]
    if not points:
        raise CaptureError("capture(): name a namespace and an interface")
    taps = _taps(points, _bpf(filter, noise), cluster, folder)  # type: ignore[arg-type]
    return Capture(taps, noise, reader).start(count)


def capture_while(
    where: Where | Sequence[tuple[Where, str]],
    iface: str | None,
    action: Callable[[], Any],
    **kwargs: Any,
) -> tuple[Any, Capture]:
    """Run `action()` while capturing; return its result and the capture."""
    with capture(where, iface, **kwargs) as cap:
        result = action()
    return result, cap
