"""A trace as text: per packet, the hooks in order, the tables in each, the rules that hit.

packet 1  TCP 10.244.1.5:40001 -> 10.96.0.10:80 [SYN] in eth0      forwarded
  PREROUTING   raw      policy ACCEPT
               mangle   policy ACCEPT
               nat      rule 1  -A PREROUTING -j KUBE-SERVICES                 => jump KUBE-SERVICES
               nat      KUBE-SERVICES rule 1  -A KUBE-SERVICES -d 10.96.0.10/32 ... => jump ...
                        packet now TCP 10.244.1.5:40001 -> 10.244.1.2:8080
  -- routing decision: another host, out cni0
  FORWARD      mangle   policy ACCEPT
  ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from course.netfilter.model import PATH_TITLES

if TYPE_CHECKING:
    from course.netfilter.tracer import Seen, Step, Trace, TracedPacket

_KIND = {"forward": "forwarded", "local-in": "to a local process", "local-out": "sent locally"}


def _addresses(seen: Seen) -> tuple[object, ...]:
    return (seen.src, seen.sport, seen.dst, seen.dport)


def _routing_line(prev_hook: str, hook: str, seen: Seen) -> str | None:
    """The routing decision between two hooks, as the interfaces in the trace show it."""
    if prev_hook == "PREROUTING" and hook == "INPUT":
        return "-- routing decision: this host (local delivery)"
    if prev_hook == "PREROUTING" and hook == "FORWARD":
        out = f", out {seen.oif}" if seen.oif else ""
        return f"-- routing decision: another host (forward){out}"
    if prev_hook == "OUTPUT" and hook == "POSTROUTING" and seen.oif:
        return f"-- leaves by {seen.oif}"
    return None


def _step_text(step: Step) -> str:
    if step.kind == "policy":
        return f"policy {step.verdict.upper()}"
    if step.kind == "return":
        return f"{step.chain}: {step.verdict}"
    inner = "" if step.chain == step.hook else f"{step.chain} "
    pos = f"rule {step.position}  " if step.position else ""
    text = step.rule or step.nft or f"rule handle {step.handle}"
    return f"{inner}{pos}{text}  => {step.verdict}"


def render_packet(number: int, packet: TracedPacket) -> list[str]:
    kind = packet.kind()
    label = f"  {_KIND[kind]}" if kind else ""
    lines = [f"packet {number}  {packet.first.describe()}{label}"]
    prev_hook, prev_table = "", ""
    prev_seen = packet.first
    for step in packet.steps:
        if step.hook != prev_hook:
            routing = _routing_line(prev_hook, step.hook, step.seen)
            if routing:
                lines.append(f"  {routing}")
        if _addresses(step.seen) != _addresses(prev_seen) and step.seen.src:
            lines.append(f"  {'':13}{'':9}packet now {step.seen.describe()}")
        hook = step.hook if step.hook != prev_hook else ""
        table = step.table if (step.table, step.hook) != (prev_table, prev_hook) else ""
        lines.append(f"  {hook:<13}{table:<9}{_step_text(step)}")
        prev_hook, prev_table, prev_seen = step.hook, step.table, step.seen
    if not packet.steps:
        lines.append(
            "  met no iptables chain: this namespace has none on this path "
            "(iptables-nft creates a chain only when a rule or a policy needs it)"
        )
    dropped = packet.where_dropped()
    if dropped:
        lines.append(f"  => dropped in {dropped.table} {dropped.chain}")
    return lines


def render_trace(trace: Trace) -> str:
    head = f"trace in {trace.namespace} of {trace.match.describe()}"
    if not trace.packets:
        return (
            f"{head}: no packet was seen in this namespace ({trace.elapsed_ms:.0f} ms). "
            "Either nothing matching was sent, or it never reached this namespace."
        )
    n = len(trace.packets)
    lines = [f"{head}: {n} packet{'s' if n > 1 else ''} ({trace.elapsed_ms:.0f} ms)"]
    for i, packet in enumerate(trace.packets, start=1):
        lines.append("")
        lines += render_packet(i, packet)
    return "\n".join(lines)


def render_prediction(predicted: list[tuple[str, str]], traced: list[tuple[str, str]]) -> str:
    """The prediction next to the traced order, the first difference marked with `<==`."""
    width = max([len(f"{t} {c}") for t, c in predicted] + [len("you predicted")]) + 2
    lines = [f"  {'#':>2}  {'you predicted':<{width}}the kernel traced"]
    first_diff = next(
        (i for i, (p, t) in enumerate(zip(predicted, traced, strict=False)) if p != t),
        None if len(predicted) == len(traced) else min(len(predicted), len(traced)),
    )
    for i in range(max(len(predicted), len(traced))):
        p = " ".join(predicted[i]) if i < len(predicted) else "(nothing)"
        t = " ".join(traced[i]) if i < len(traced) else "(nothing)"
        mark = "   <== first difference" if i == first_diff else ""
        lines.append(f"  {i + 1:>2}  {p:<{width}}{t}{mark}")
    return "\n".join(lines)


def path_title(kind: str) -> str:
    return PATH_TITLES.get(kind, kind)
