"""Trace a probe: send a real packet from one lab namespace, trace it in another.

`course.netfilter.trace` traces whatever a callable sends; this module supplies the
callable (a Scapy probe or a kernel connection from `grader.probes`, run inside the
sender's namespace) and the match that scopes tracing to exactly that probe (its own
source port or ICMP id). Labs 05, 06 and 07 and `k8snet trace` use it:

    t = trace_probe(at="knl-3fa2-node1", sender="knl-3fa2-node1-a",
                    dst="10.96.0.10", port=80)          # one TCP SYN (Scapy)
    t.render(); t.path(); t.draw(); t.result            # t.result: the probe's Observation

    t = trace_probe(..., connect=True, payload=b"hi")   # a real connection: SYN, data,
                                                        # FIN... (later packets skip nat)
    ta, tc = trace_probes(node, [Probe(pod_a, vip, 80, connect=True),
                                 Probe(pod_c, vip, 80, connect=True)])  # one session
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import time
from dataclasses import dataclass, field
from typing import Literal

from course.kernel import Netns, entered_path
from course.netfilter import Match, Trace, trace
from grader import probes
from grader.probes import Frame, Observation, ProbeError

Proto = Literal["tcp", "udp", "icmp"]


# Below Linux's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999): a port the kernel
# handed to one of the sender's own connections (one still closing, say) would make the traced
# connection's bind() fail with "Address already in use".
SPORTS = (20000, 32768)


def _free_port() -> int:
    return random.randrange(*SPORTS)


def _connect_from(dst: str, port: int, sport: int, payload: bytes, timeout: float) -> Observation:
    """A kernel TCP connection from a fixed source port: SYN, data, the answer, FIN.

    The fixed port lets the tracer match this connection and nothing else. SO_LINGER 0 on
    close sends a RST instead of leaving TIME_WAIT, so the port is free again at once.
    """
    import struct

    sent = f"TCP connection from port {sport} to {dst}:{port}"
    obs = Observation("tcp-connect", "", dst, sent, timeout=timeout)
    t0 = time.time()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", sport))
        s.settimeout(timeout)
        try:
            s.connect((dst, port))
            obs.replies.append(Frame((time.time() - t0) * 1000, "", "TCP connected", src=dst))
            obs.outcome = f"The connection to {dst}:{port} was accepted."
            if payload:
                s.sendall(payload)
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
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    obs.elapsed_ms = (time.time() - t0) * 1000
    return obs


def connect_in(
    sender: Netns | str, dst: str, port: int, sport: int, payload: bytes, timeout: float
) -> Observation:
    """`_connect_from` run by this thread after it entered `sender`'s namespace.

    A kernel connection needs no Scapy and no child process: a socket belongs to the
    namespace it was created in, and `setns` moves only the calling thread (and back).
    That makes it cheap everywhere, also in the grader's isolated verifier.
    """
    ns = sender if isinstance(sender, Netns) else Netns(os.path.basename(str(sender)))
    if not ns.exists():
        raise ProbeError(f"network namespace {ns.name!r} does not exist")
    with entered_path(ns.path):
        obs = _connect_from(dst, port, sport, payload, timeout)
    obs.ns = ns.name
    return obs


def probe_match(
    proto: Proto, dst: str, port: int | None, sport: int | None, ident: int | None
) -> Match:
    if proto == "icmp":
        return Match("icmp", dst=dst, icmp_id=ident)
    return Match(proto, dst=dst, sport=sport, dport=port)


@dataclass
class Probe:
    """One probe to trace: from role namespace `sender` to `dst[:port]`.

    proto "tcp" sends one Scapy SYN (or, with `connect=True`, opens a real connection,
    sends `payload` and closes: every packet of it is traced); "udp" one datagram; "icmp"
    one echo request. Source port and ICMP id are chosen here, so the trace can tell
    probes sent at the same time apart.
    """

    sender: Netns | str
    dst: str
    port: int | None = None
    proto: Proto = "tcp"
    connect: bool = False
    payload: bytes = b""
    timeout: float = 1.0
    sport: int = field(default_factory=lambda: _free_port())
    ident: int = field(default_factory=lambda: random.randrange(1, 0xFFFF))

    def __post_init__(self) -> None:
        if self.proto in ("tcp", "udp") and self.port is None:
            raise ValueError(f"a {self.proto} probe needs a destination port")

    @property
    def match(self) -> Match:
        return probe_match(self.proto, self.dst, self.port, self.sport, self.ident)

    def send(self) -> Observation:
        if self.proto == "icmp":
            return probes.ping(self.sender, self.dst, timeout=self.timeout, ident=self.ident)
        port = self.port or 0
        if self.proto == "udp":
            return probes.udp(self.sender, self.dst, port, sport=self.sport, timeout=self.timeout)
        if self.connect:
            return connect_in(self.sender, self.dst, port, self.sport, self.payload, self.timeout)
        return probes.tcp_syn(self.sender, self.dst, port, sport=self.sport, timeout=self.timeout)


def trace_probes(at: Netns | str, batch: list[Probe], settle: float = 0.05) -> list[Trace]:
    """Send the probes of `batch` one after the other, all traced in one session in `at`.

    The monitor and the trace table are set up once for all of them. They go one by one:
    sent from threads at once, Scapy probes in the grader's verifier ran over their budget
    (there each probe child imports Scapy itself, 4-6 s on a busy machine, because
    Python 3.11's forkserver ignores the verifier's sys.path when preloading). Returns one
    Trace per probe, in order, each with only that probe's packets and its Observation as
    `result`.
    """
    used: set[int] = set()
    for p in batch:  # two probes must never share a source port
        while p.sport in used:
            p.sport = _free_port()
        used.add(p.sport)

    def send() -> list[Observation]:
        return [p.send() for p in batch]

    whole = trace(at, send, [p.match for p in batch], settle=settle)
    return [whole.only(p.match, obs) for p, obs in zip(batch, whole.result, strict=True)]


def trace_probe(
    at: Netns | str,
    sender: Netns | str,
    dst: str,
    port: int | None = None,
    proto: Proto = "tcp",
    *,
    connect: bool = False,
    payload: bytes = b"",
    timeout: float = 1.0,
    settle: float = 0.05,
) -> Trace:
    """Send one probe from `sender` to `dst[:port]` and trace it in namespace `at`.

    proto "tcp" sends one Scapy SYN (or, with `connect=True`, opens a real connection,
    sends `payload` and closes: every packet of it is traced); "udp" one datagram; "icmp"
    one echo request. The probe's Observation is `Trace.result`. `at` may be the sender
    itself (a node process sending: the OUTPUT path).
    """
    probe = Probe(sender, dst, port, proto, connect, payload, timeout)
    return trace(at, probe.send, probe.match, settle=settle)
