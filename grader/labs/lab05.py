"""Checks of lab 05 "iptables tables and chain order": real packets, read back through the
kernel's own trace events and rule counters, never through rule text alone.

The cluster (`course.netfilter.lab`): node1 with pods a and c on cni0 and a process on
10250, node2 with pod b serving "web" on 8080, a router as default gateway. Every check
sends real packets (a Scapy SYN or a kernel TCP connection from a pod or from node1) and
traces them in node1 (`grader.tracing`): which tables and chains they met, which rule
matched, what the packet looked like there, where it was dropped. Rule counters read
before and after say whether the learner's own rules saw the packets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from course.faults.lab05 import CATALOGUE
from course.kernel import Netns
from course.netfilter import Trace, path, render_prediction, rule_counters
from course.netfilter.lab import (
    BACKEND_IP,
    BLOCKED,
    BLOCKED_IP,
    CLIENT,
    CLIENT_IP,
    KUBELET_PORT,
    LAB_ID,
    NODE,
    NODE_IP,
    OUTSIDE_IP,
    OUTSIDE_PORT,
    OUTSIDE_REPLY,
    VIP,
    VIP_PORT,
    WEB_PORT,
    WEB_REPLY,
)
from course.netfilter.model import (
    BUILTIN_CHAINS,
    PATH_TITLES,
    TABLES,
    Hook,
    PathKind,
    hooks,
    table_priority,
)
from grader import breakfix
from grader.labs import Check, CheckContext, Lab
from grader.labs.common import Failed, answer_check, fail, judged, open_ns, question
from grader.tracing import Probe, trace_probe, trace_probes
from grader.verdict import Verdict

CONNECT_TIMEOUT = 1.0


def with_trace(verdict: Verdict, t: Trace, packet: int = 0) -> Verdict:
    """Attach the trace (text and picture) to a verdict, passing or failing."""
    verdict.journey = t.render()
    if t.packets:
        verdict.journey_dot = t.draw(packet).source
    return verdict


@dataclass
class Attempt:
    """One real TCP connection, traced in node1: who answered, and what netfilter did."""

    sender: str
    dst: str
    port: int
    trace: Trace

    @property
    def data(self) -> bytes:
        return self.trace.result.data

    @property
    def sent(self) -> str:
        return f"a TCP connection from {self.sender} to {self.dst}:{self.port}, traced in node1"

    def outcome(self) -> str:
        return self.trace.result.outcome or self.trace.result.describe()

    def answered_by_web(self) -> bool:
        return self.data == WEB_REPLY

    def first_walk(self) -> str:
        if not self.trace.packets:
            return "the first packet never reached node1's netfilter"
        pk = self.trace.packets[0]
        chains = ", ".join(f"{t} {c}" for t, c in pk.chains()) or "no chain"
        return f"its first packet walked {chains}"

    def nat_rule(self, hook: str) -> str | None:
        """The nat rule at `hook` that translated the first packet, if one did."""
        if not self.trace.packets:
            return None
        for st in self.trace.packets[0].steps:
            if st.table == "nat" and st.hook == hook and "dnat" in (st.nft or "").lower():
                return st.rule or st.nft
        return None


def connect(ctx: CheckContext, sender: str, dst: str, port: int) -> Attempt:
    return connect_all(ctx, [(sender, dst, port)])[0]


def connect_all(ctx: CheckContext, targets: list[tuple[str, str, int]]) -> list[Attempt]:
    """Real TCP connections, one after the other, traced in node1 in one trace session."""
    node = open_ns(ctx, NODE)
    batch = [
        Probe(open_ns(ctx, sender), dst, port, connect=True, timeout=CONNECT_TIMEOUT)
        for sender, dst, port in targets
    ]
    traces = trace_probes(node, batch)
    return [Attempt(s, d, p, t) for (s, d, p), t in zip(targets, traces, strict=True)]


# --- question 1: predict the order, for three paths -----------------------------------------------
PATH_PROBES: dict[str, tuple[str, str, int]] = {
    "forward": (CLIENT, BACKEND_IP, WEB_PORT),
    "local-in": (CLIENT, NODE_IP, KUBELET_PORT),
    "local-out": (NODE, BACKEND_IP, WEB_PORT),
}


def normalize(answer: object) -> list[tuple[str, str]] | None:
    """["raw PREROUTING", ...] (or pairs) -> [("raw", "PREROUTING"), ...]; None if not that."""
    if not isinstance(answer, list):
        return None
    out = []
    for item in answer:
        parts = item.split() if isinstance(item, str) else item
        if not isinstance(parts, list | tuple) or len(parts) != 2:
            return None
        if not all(isinstance(p, str) for p in parts):
            return None
        out.append((parts[0].lower(), parts[1].upper()))
    return out


def traced_path(ctx: CheckContext, kind: str) -> tuple[list[tuple[str, str]], Trace | None]:
    """The order the kernel shows for a SYN on this path in the learner's node1 now."""
    sender, dst, port = PATH_PROBES[kind]
    try:
        t = trace_probe(open_ns(ctx, NODE), open_ns(ctx, sender), dst, port, connect=True)
    except Exception:  # the prediction is graded against the model; the trace only shows
        return path(kind), None  # type: ignore[arg-type]
    return (t.path() if t.packets else []), t


_NOT_ON_PATH: dict[str, dict[str, str]] = {
    "forward": {
        "INPUT": "a forwarded packet is not for node1: the routing decision sends it to "
        "FORWARD, and INPUT is only for packets a local socket receives",
        "OUTPUT": "OUTPUT is for packets a process on node1 sends; this SYN was sent by pod a "
        "and only passes through node1",
    },
    "local-in": {
        "FORWARD": "the routing decision found 192.168.1.11 to be node1's own address, so the "
        "packet goes up to INPUT; FORWARD is for packets on their way to another host",
        "OUTPUT": "a packet for a local process ends at INPUT, in the socket; OUTPUT and "
        "POSTROUTING are for packets node1 sends (the SYN-ACK is one, a separate packet)",
        "POSTROUTING": "a packet for a local process ends at INPUT, in the socket; "
        "POSTROUTING is for packets leaving by an interface",
    },
    "local-out": {
        "PREROUTING": "PREROUTING is for packets that arrive on an interface; a packet a "
        "local process sends starts at OUTPUT, after its output route lookup",
        "INPUT": "INPUT is for packets delivered to a local socket; this one leaves node1",
        "FORWARD": "FORWARD is for packets that arrived on one interface and leave by another; "
        "a locally sent packet goes OUTPUT -> POSTROUTING",
    },
}


_CHAINS_WHY = {
    "raw": "raw runs before conntrack, so it has chains only where packets enter: "
    "PREROUTING and OUTPUT",
    "nat": "nat rewrites the destination where a packet enters (PREROUTING, OUTPUT) and the "
    "source where it leaves or is delivered (POSTROUTING, INPUT), never in FORWARD",
    "filter": "filtering happens after the routing decision: INPUT, FORWARD, OUTPUT",
    "security": "like filter, it works after the routing decision: INPUT, FORWARD, OUTPUT",
}


def _order_text(hook: Hook) -> str:
    tables = sorted(
        (t for t in TABLES if hook in BUILTIN_CHAINS[t]), key=lambda t: table_priority(t, hook)
    )
    text = ", ".join(f"{t} {table_priority(t, hook)}" for t in tables)
    if "security" in tables:
        text += " (150 for security is iptables-nft's choice; legacy iptables uses 50)"
    return text


def _priority(table: str, chain: str) -> int:
    return table_priority(table, Hook(chain))


def path_misconceptions(got: list[tuple[str, str]], kind: PathKind) -> list[str]:
    """What the first wrong step of a predicted path assumes, and what the kernel does."""
    on_path = [str(h) for h in hooks(kind)]
    for i, (table, chain) in enumerate(got):
        step = f"{table} {chain}"
        if table not in TABLES:
            return [f"why not '{step}': there is no table {table!r}; the five are "
                    f"{', '.join(TABLES)}"]  # fmt: skip
        if chain not in {str(h) for h in Hook}:
            return [f"why not '{step}': {chain} is not a hook; the five are "
                    f"{', '.join(str(h) for h in Hook)}"]  # fmt: skip
        if Hook(chain) not in BUILTIN_CHAINS[table]:
            return [f"why not '{step}': the {table} table has no {chain} chain: "
                    f"{_CHAINS_WHY[table]}"]  # fmt: skip
        if chain not in on_path:
            return [f"why not '{step}': {_NOT_ON_PATH[kind][chain]}"]
        if (table, chain) in got[:i]:
            return [f"why not '{step}' twice: a packet meets each chain once on its way"]
        before = got[i - 1] if i else None
        if before and before[1] == chain and _priority(before[0], chain) > _priority(table, chain):
            return [f"why not '{before[0]} {chain}' before '{step}': at one hook the tables "
                    f"run by priority, lowest first: {_order_text(Hook(chain))}"]  # fmt: skip
        if before and on_path.index(before[1]) > on_path.index(chain):
            return [f"why not '{step}' after '{before[0]} {before[1]}': the hooks "
                    f"come in the order {' -> '.join(on_path)} on this path"]  # fmt: skip
    missing = [f"{t} {c}" for t, c in path(kind) if (t, c) not in got]
    if missing:
        return [f"missing {', '.join(repr(m) for m in missing)}: every table with a built-in "
                "chain at a hook on the path runs it, and node1 has all of them"]  # fmt: skip
    return []


def prediction(name: str, kind: PathKind) -> Callable[[CheckContext], Verdict]:
    """Graded on the prediction (against the model); the feedback shows the real trace."""

    def judge(ctx: CheckContext) -> Verdict:
        answer = ctx.answers.get(name)
        want = path(kind)
        got = normalize(answer)
        traced, t = traced_path(ctx, kind)
        shown = traced if traced else want
        where = "the kernel traced" if t is not None else "the model says"
        if got == want:
            v = Verdict.ok(
                f"{name}: right, a packet {PATH_TITLES[kind]} meets "
                + " -> ".join(f"{tb} {ch}" for tb, ch in want),
                sent=f"read {name}; traced a SYN {PATH_TITLES[kind]} in node1",
            )
            return with_trace(v, t) if t is not None else v
        if got is None:
            observed = f"{name} = {answer!r}: not a list of 'table CHAIN' strings"
            summary = f"{name}: no usable answer"
        else:
            diff = next(
                (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
                min(len(got), len(want)),
            )
            summary = f"{name}: your order differs from the kernel's at step {diff + 1}"
            observed = f"{name} has {len(got)} steps; side by side with what {where}:"
        v = Verdict.fail(
            summary,
            sent=f"read {name} from your notebook; traced a SYN {PATH_TITLES[kind]} in node1",
            observed=observed,
            expected=f"{len(want)} steps, as 'table CHAIN' strings, first to last",
            hint="tables at one hook run in priority order (raw, mangle, nat, filter, "
            "security; nat's INPUT/POSTROUTING chains at 100); the routing decision sits "
            "between PREROUTING and INPUT/FORWARD, and before OUTPUT",
        )
        v.details = render_prediction(got or [], shown).splitlines()
        v.details += path_misconceptions(got or [], kind)
        return v

    judge.__name__ = f"check_{name}"
    return judge


# --- exercise 2: a counting rule in every table of PREROUTING --------------------------------------
PRE_TABLES = ("raw", "mangle", "nat")
COUNT_CONNECTIONS = 3


def prerouting_counts(node: Netns) -> dict[str, dict[str, int]]:
    """{table: {rule text: packets}} of the PREROUTING rules of raw, mangle and nat."""
    return {
        t: {r.rule: r.packets for r in rule_counters(node, t) if r.chain == "PREROUTING"}
        for t in PRE_TABLES
    }


@judged
def check_counters(ctx: CheckContext) -> Verdict:
    """3 connections pod a -> pod b:8080; a rule in raw, mangle and nat PREROUTING counts them."""
    node = open_ns(ctx, NODE)
    before = prerouting_counts(node)
    attempts = connect_all(ctx, [(CLIENT, BACKEND_IP, WEB_PORT)] * COUNT_CONNECTIONS)
    after = prerouting_counts(node)
    sent = (
        f"{COUNT_CONNECTIONS} TCP connections from pod a to pod b ({BACKEND_IP}:{WEB_PORT}); "
        "read the PREROUTING rule counters of raw, mangle and nat in node1 before and after"
    )
    lost = [a for a in attempts if not a.answered_by_web()]
    if lost:
        raise fail(
            "pod a's connections to pod b did not work",
            sent=sent,
            observed=lost[0].outcome(),
            expected="every connection answered by pod b's server ('web')",
            hint="counting rules must not change the packet's fate: leave out -j, or use "
            "-j ACCEPT only where nothing else is meant to run",
        )
    deltas = {
        t: max((after[t].get(rule, 0) - before[t].get(rule, 0) for rule in after[t]), default=0)
        for t in PRE_TABLES
    }
    packets = sum(len([p for p in a.trace.packets if p.first.src == CLIENT_IP]) for a in attempts)
    shown = ", ".join(f"{t} PREROUTING +{deltas[t]}" for t in PRE_TABLES)
    missing = [t for t in PRE_TABLES if deltas[t] == 0]
    if missing:
        rules = "; ".join(f"{t}: {list(after[t]) or 'no rule'}" for t in missing)
        raise fail(
            f"no rule in {', '.join(t + ' PREROUTING' for t in missing)} saw pod a's packets",
            sent=sent,
            observed=f"counter growth per table: {shown} (the trace saw {packets} packets "
            f"from pod a); rules: {rules}",
            expected="one rule in each of raw, mangle and nat PREROUTING matching TCP from "
            f"{CLIENT_IP} to port {WEB_PORT}, whose counter grows",
            hint="choose the table with -t and the chain by name: "
            f"iptables -t raw -A PREROUTING -s {CLIENT_IP} -p tcp --dport {WEB_PORT}",
        )
    if deltas["nat"] != COUNT_CONNECTIONS:
        raise fail(
            f"the nat PREROUTING rule counted {deltas['nat']}, not one per connection",
            sent=sent,
            observed=shown,
            expected=f"nat +{COUNT_CONNECTIONS} (one per connection), raw and mangle one per "
            "packet",
            hint="match pod a's connections to pod b:8080 exactly (source, protocol, port)",
        )
    v = Verdict.ok(
        f"raw and mangle counted every packet, nat only the first of each connection: {shown}",
        sent=sent,
        observed=f"the traces saw {packets} packets from pod a in {COUNT_CONNECTIONS} connections",
    )
    return with_trace(v, attempts[0].trace)


# --- exercise 3: DNAT for a virtual IP, from a pod and from the node --------------------------------
def _not_translated(a: Attempt, hook: str, chain_hint: str) -> Failed:
    return fail(
        f"{a.sender}'s connection to {VIP}:{VIP_PORT} was not translated to pod b",
        sent=a.sent,
        observed=f"{a.outcome()} In node1, {a.first_walk()}; no DNAT rule matched in nat {hook}.",
        expected=f"nat {hook} DNATs {VIP}:{VIP_PORT} to {BACKEND_IP}:{WEB_PORT}, pod b answers 'web'",
        hint=chain_hint,
    )


@judged
def check_dnat_from_pod(ctx: CheckContext) -> Verdict:
    """Pod a -> 10.96.0.50:80 is answered by pod b; the trace shows DNAT in nat PREROUTING."""
    a = connect(ctx, CLIENT, VIP, VIP_PORT)
    rule = a.nat_rule("PREROUTING")
    if rule is None:
        raise _not_translated(
            a, "PREROUTING",
            f"iptables -t nat -A PREROUTING -d {VIP} -p tcp --dport {VIP_PORT} -j DNAT "
            "--to-destination IP:PORT (pod b's address and the port its server listens on)",
        )  # fmt: skip
    if not a.answered_by_web():
        raise fail(
            f"the DNAT matched, but pod b's server did not answer at {BACKEND_IP}:{WEB_PORT}",
            sent=a.sent,
            observed=f"{a.outcome()} The rule that matched: {rule}",
            expected=f"--to-destination {BACKEND_IP}:{WEB_PORT}, answered 'web'",
            hint=f"pod b listens on {WEB_PORT}, not on the virtual port {VIP_PORT}",
        )
    v = Verdict.ok(
        f"pod a reaches {VIP}:{VIP_PORT}: nat PREROUTING translated it to pod b",
        sent=a.sent,
        observed=f"{a.outcome()} Rule: {rule}",
    )
    return with_trace(v, a.trace)


@judged
def check_dnat_from_node(ctx: CheckContext) -> Verdict:
    """node1 -> 10.96.0.50:80 is answered by pod b; the trace shows DNAT in nat OUTPUT."""
    a = connect(ctx, NODE, VIP, VIP_PORT)
    rule = a.nat_rule("OUTPUT")
    if rule is None:
        raise _not_translated(
            a, "OUTPUT",
            "packets a node process sends never pass PREROUTING: they start at the output "
            "routing decision and OUTPUT. kube-proxy jumps to KUBE-SERVICES from both chains",
        )  # fmt: skip
    if not a.answered_by_web():
        raise fail(
            "the DNAT in nat OUTPUT matched, but pod b's server did not answer",
            sent=a.sent,
            observed=f"{a.outcome()} The rule that matched: {rule}",
            expected=f"--to-destination {BACKEND_IP}:{WEB_PORT}, answered 'web'",
            hint=f"pod b listens on {WEB_PORT}",
        )
    v = Verdict.ok(
        f"node1 reaches {VIP}:{VIP_PORT} too: nat OUTPUT translated it",
        sent=a.sent,
        observed=f"{a.outcome()} Rule: {rule}",
    )
    return with_trace(v, a.trace)


# --- exercise 4: block pod c from the Service, in FORWARD, after DNAT -------------------------------
def filter_drops(node: Netns) -> dict[tuple[str, str], int]:
    """{(chain, rule): packets} of the DROP/REJECT rules of the filter table."""
    return {
        (r.chain, r.rule): r.packets
        for r in rule_counters(node, "filter")
        if r.rule.split()[-1] in ("DROP", "REJECT") or " -j DROP" in r.rule or "-j REJECT" in r.rule
    }


def _why_not_blocked(
    c: Attempt, before: dict[tuple[str, str], int], after: dict[tuple[str, str], int]
) -> tuple[str, str]:
    """Summary and hint for 'pod c still gets through', from counters and the trace."""
    idle = [(ch, r) for (ch, r), n in after.items() if n == before.get((ch, r), 0)]
    pk = c.trace.packets[0] if c.trace.packets else None
    fwd = (
        next((s for s in pk.steps if s.hook == "FORWARD" and s.table == "filter"), None)
        if pk
        else None
    )
    seen = f"{fwd.seen.dst}:{fwd.seen.dport}" if fwd else "?"
    accepted = (
        next((s for s in pk.steps if s.table == "filter" and s.hook == "FORWARD"
              and s.kind == "rule" and s.verdict == "accept"), None)
        if pk else None
    )  # fmt: skip
    in_input = [r for ch, r in idle if ch == "INPUT"]
    on_vip = [r for ch, r in idle if ch == "FORWARD" and VIP in r]
    if accepted is not None:
        return (
            f"pod c's SYN was accepted by filter FORWARD rule {accepted.position or ''} before "
            "any DROP could see it",
            f"rules are tried top to bottom and ACCEPT ends the chain: put the DROP first "
            f"(-I FORWARD 1 ...). The rule that won: {accepted.rule or accepted.nft}",
        )
    if in_input:
        return (
            "your DROP is in filter INPUT, which pod c's packets never pass (counter stayed 0)",
            f"the trace shows pod c's SYN forwarded (FORWARD), never INPUT: node1 only passes "
            f"it on to pod b. Rule: {in_input[0]}",
        )
    if on_vip:
        return (
            f"your FORWARD rule names the Service address {VIP}; its counter stayed 0",
            f"filter FORWARD sees the packet after DNAT: the trace shows it there with "
            f"destination {seen}. Match the translated destination. Rule: {on_vip[0]}",
        )
    return (
        "no DROP in filter FORWARD matched pod c's SYN",
        f"in FORWARD the packet is {BLOCKED_IP} -> {seen} (already translated): match that",
    )


_TABLE_JOB = {
    "raw": "raw runs before conntrack and DNAT, to exempt packets from connection tracking",
    "mangle": "mangle is for changing packets (marks, TOS, TTL)",
    "nat": "nat only rewrites addresses (iptables refuses DROP there)",
    "security": "security is for SELinux-style labels, after filter",
}


def _wrong_place_hint(table: str | None) -> str:
    """Why a DROP that did cut pod c off belongs in filter FORWARD all the same."""
    if table is None or table == "filter":
        return "check that pod b's DNAT still works, and block only in filter FORWARD"
    return (
        f"{_TABLE_JOB.get(table, table)}; filtering is the filter table's job. A drop in "
        f"{table} hides the packet from every later table: filter FORWARD's rules and "
        "counters never see it, and nobody reading `iptables -L` (the default table) finds "
        "why pod c is cut off. Move the rule: iptables -A FORWARD ... -j DROP"
    )


@judged
def check_block(ctx: CheckContext) -> Verdict:
    """Pod c cannot reach 10.96.0.50:80 (dropped in filter FORWARD); pod a still can."""
    node = open_ns(ctx, NODE)
    before = filter_drops(node)
    c, a = connect_all(ctx, [(BLOCKED, VIP, VIP_PORT), (CLIENT, VIP, VIP_PORT)])
    after = filter_drops(node)
    if c.answered_by_web():
        summary, hint = _why_not_blocked(c, before, after)
        v = fail(summary, sent=c.sent, observed=f"{c.outcome()} In node1, {c.first_walk()}.",
                 expected="pod c's SYN dropped in filter FORWARD; pod a still answered 'web'",
                 hint=hint).verdict  # fmt: skip
        return with_trace(v, c.trace)
    dropped = c.trace.packets[0].where_dropped() if c.trace.packets else None
    if dropped is None or (dropped.table, dropped.hook) != ("filter", "FORWARD"):
        where = f"{dropped.table} {dropped.chain}" if dropped else "nowhere in node1"
        v = fail(
            "pod c is cut off, but not by a DROP in filter FORWARD",
            sent=c.sent,
            observed=f"{c.outcome()} The trace shows the drop in {where}; {c.first_walk()}.",
            expected="the drop in filter FORWARD, where forwarded traffic is filtered",
            hint=_wrong_place_hint(dropped.table if dropped else None),
        ).verdict
        return with_trace(v, c.trace)
    if not a.answered_by_web():
        v = fail(
            "pod c is blocked, but so is pod a",
            sent=f"{c.sent}; then {a.sent}",
            observed=f"pod a: {a.outcome()} In node1, {a.first_walk()}.",
            expected=f"only pod c ({BLOCKED_IP}) blocked; pod a ({CLIENT_IP}) answered 'web'",
            hint="match the source too: -s " + BLOCKED_IP,
        ).verdict
        return with_trace(v, a.trace)
    v = Verdict.ok(
        f"pod c is dropped in filter FORWARD ({dropped.rule or dropped.nft}); pod a gets 'web'",
        sent=f"{c.sent}; then {a.sent}",
        observed=f"filter FORWARD saw {c.trace.packets[0].first.src} -> "
        f"{next(s.seen.dst for s in c.trace.packets[0].steps if s.hook == 'FORWARD')}",
    )
    return with_trace(v, c.trace)


# --- break/fix: the Service as exercises 3 and 4 left it ------------------------------------------
def _blocked_in_forward(c: Attempt) -> bool:
    dropped = c.trace.packets[0].where_dropped() if c.trace.packets else None
    return dropped is not None and (dropped.table, dropped.hook) == ("filter", "FORWARD")


def service_works(ctx: CheckContext) -> Verdict:
    """Pod a and node1 get 'web' from 10.96.0.50:80; pod c is dropped in filter FORWARD; pod a
    gets 'outside' from the router's server (masqueraded in nat POSTROUTING)."""
    a, n, c, o = connect_all(
        ctx,
        [(CLIENT, VIP, VIP_PORT), (NODE, VIP, VIP_PORT), (BLOCKED, VIP, VIP_PORT),
         (CLIENT, OUTSIDE_IP, OUTSIDE_PORT)],
    )  # fmt: skip
    problems: list[tuple[str, Attempt]] = []
    if not a.answered_by_web():
        problems.append(("pod a does not get 'web'", a))
    if not n.answered_by_web():
        problems.append(("node1 does not get 'web'", n))
    if c.answered_by_web() or not _blocked_in_forward(c):
        problems.append(("pod c is not dropped in filter FORWARD", c))
    if o.data != OUTSIDE_REPLY:
        problems.append((f"pod a does not get 'outside' from {OUTSIDE_IP}:{OUTSIDE_PORT}", o))
    sent = (
        f"TCP connections to {VIP}:{VIP_PORT} from pod a, node1 and pod c, and from pod a to "
        f"the server outside the cluster ({OUTSIDE_IP}:{OUTSIDE_PORT}), traced in node1"
    )
    observed = " ".join(
        f"{who}: {att.outcome()} ({att.first_walk()})."
        for who, att in (("pod a", a), ("node1", n), ("pod c", c), ("pod a -> outside", o))
    )
    if problems:
        v = Verdict.fail(
            "; ".join(p for p, _ in problems),
            sent=sent,
            observed=observed,
            expected="pod a and node1 answered 'web' by pod b; pod c's SYN dropped in filter "
            "FORWARD; pod a answered 'outside' by the router",
            hint="",
        )
        return with_trace(v, problems[0][1].trace)
    done = (
        "pod a and node1 reach the Service, pod c is dropped in filter FORWARD, pod a reaches "
        "the server outside"
    )
    return with_trace(Verdict.ok(done, sent=sent, observed=observed), c.trace)


BREAKFIX = breakfix.check(CATALOGUE, service_works)


# --- questions -----------------------------------------------------------------------------------
_FIRST_ONLY = (
    "only the first packet of a connection walks the nat chains; conntrack applies the "
    "translation it chose to every later packet (and undoes it on the replies) without them"
)
Q_MATCH = question(
    "q_match",
    "b",
    "filter FORWARD runs after nat PREROUTING has translated the destination, so only a rule "
    f"on {BACKEND_IP}:{WEB_PORT} matches.",
    "one of 'a', 'b', 'c'",
    why={
        "a": f"by the time filter FORWARD sees pod c's SYN, nat PREROUTING (kube-proxy's DNAT) "
        f"has rewritten its destination to {BACKEND_IP}:{WEB_PORT}; routing needed the pod's "
        f"address to choose FORWARD at all. A rule on {VIP}:{VIP_PORT} there never matches.",
        "c": f"a packet has one destination at a time, and in FORWARD it is already the "
        f"translated one, {BACKEND_IP}:{WEB_PORT}: the rule on the Service address counts 0.",
    },
)
Q_NAT_PACKETS = question(
    "q_nat_packets",
    1,
    "Only the first packet of a connection walks the nat chains; conntrack applies the "
    "translation to every later packet (and undoes it on the replies) without them.",
    "a whole number of packets, such as 1 or 7",
    why={
        0: "the SYN, the first packet of the connection, does walk nat PREROUTING: that is "
        "where the DNAT to pod b is chosen, and conntrack stores the choice.",
        2: "the handshake's ACK already belongs to a connection conntrack knows (state "
        "ESTABLISHED), so it gets the stored translation without walking the nat table; only "
        "the SYN walks it.",
    },
    why_other=f"{_FIRST_ONLY}: count the packets of pod a that can start a connection.",
)
Q_REFUSED = question(
    "q_refused",
    "c",
    "iptables (nft backend) asked the kernel, which refused the DNAT target outside the nat "
    "table with EINVAL; the reason is only in the kernel log: 'DNAT target: only valid in "
    "nat table, not filter'.",
    "one of 'a', 'b', 'c', 'd'",
    why={
        "a": "iptables accepted the syntax (DNAT and --to-destination parse) and sent the rule "
        "to the kernel; a usage error would print iptables' own message with exit status 2. "
        "Exit status 4 with 'Invalid argument' is the kernel's refusal.",
        "b": "the rule was not added (exit status 4; `iptables -S INPUT` does not list it): "
        "the kernel checks where a NAT target stands when the rule is added, not when packets "
        "come.",
        "d": "a policy decides the packets that reach the end of a built-in chain; it never "
        "accepts or refuses rules. The kernel refused DNAT because it belongs to the nat "
        "table (PREROUTING and OUTPUT) only.",
    },
)


def _predict(kind: PathKind, name: str) -> Check:
    title = f"question 1: the chains {PATH_TITLES[kind]}"
    return Check(f"q1-{kind}", f"check-{name}", 1, title, prediction(name, kind),
                 answers=(name,))  # fmt: skip


LAB = Lab(
    id=LAB_ID,
    title="iptables tables and chain order",
    checks=(
        _predict("forward", "forwarded"),
        _predict("local-in", "to_node"),
        _predict("local-out", "from_node"),
        Check("ex2-counters", "check-ex2-counters", 2, "a counter in every table of PREROUTING",
              check_counters),
        Check("ex3-dnat-pod", "check-ex3-dnat-pod", 2, "DNAT for pods: nat PREROUTING",
              check_dnat_from_pod),
        Check("ex3-dnat-node", "check-ex3-dnat-node", 2, "DNAT for the node: nat OUTPUT",
              check_dnat_from_node),
        answer_check("q2-match", "check-q_match", "question 2: FORWARD before or after DNAT", Q_MATCH),
        Check("ex4-block", "check-ex4-block", 3, "block pod c in filter FORWARD", check_block),
        answer_check("q3-nat-packets", "check-q_nat_packets", "question 3: packets through nat",
                Q_NAT_PACKETS),
        answer_check("q4-refused", "check-q_refused", "question 4: DNAT in filter", Q_REFUSED),
        Check("breakfix", "check-breakfix", 3, "break/fix: the Service in node1", BREAKFIX),
    ),
)  # fmt: skip
