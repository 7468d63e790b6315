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
"""

from __future__ import annotations

import contextlib
import random
import socket
import time
from typing import Literal

from course.kernel import Netns
from course.netfilter import Match, Trace, trace
from grader import probes
from grader.probes import Frame, Observation, run_in_netns

Proto = Literal["tcp", "udp", "icmp"]


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


def probe_match(
    proto: Proto, dst: str, port: int | None, sport: int | None, ident: int | None
) -> Match:
    if proto == "icmp":
        return Match("icmp", dst=dst, icmp_id=ident)
    return Match(proto, dst=dst, sport=sport, dport=port)


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
    sport = random.randrange(20000, 60000)
    ident = random.randrange(1, 0xFFFF)
    if proto in ("tcp", "udp") and port is None:
        raise ValueError(f"a {proto} probe needs a destination port")
    match = probe_match(proto, dst, port, sport, ident)

    def send() -> Observation:
        assert port is not None or proto == "icmp"
        if proto == "icmp":
            return probes.ping(sender, dst, timeout=timeout, ident=ident)
        if proto == "udp":
            return probes.udp(sender, dst, port or 0, sport=sport, timeout=timeout)
        if connect:
            obs = run_in_netns(
                sender, _connect_from, dst, port, sport, payload, timeout, timeout=timeout + 8
            )
            obs.ns = sender.name if isinstance(sender, Netns) else str(sender)
            return obs
        return probes.tcp_syn(sender, dst, port or 0, sport=sport, timeout=timeout)

    return trace(at, send, match, settle=settle)
