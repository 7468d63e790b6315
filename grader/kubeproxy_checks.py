"""Does a ClusterIP spread new connections evenly over its ready endpoints? Real packets decide.

The check opens many new TCP connections (each from its own source port, so each one is
a new conntrack entry that walks the nat table once) from a client pod to ClusterIP:port,
and reads the node's conntrack (its NEW events, plus a dump of the table): the reply side
of every entry names the endpoint the DNAT chose, `src=<pod ip> sport=<target port>`.
A connection with no entry, or whose reply comes from the ClusterIP itself, was not
translated. From those counts it decides, in this order, each with its own message:

1. no connection was translated          -> no KUBE-SERVICES rule for this ClusterIP:port
2. some connections were not translated  -> the cascade lost its final unconditional rule
3. a not-ready pod received connections  -> rules were not resynced after the slice changed
4. DNAT to a port the pods do not serve  -> targetPort was not resolved to the pod port
5. counts not uniform over ready pods    -> probabilities wrong (every rule 1/n, say)

Step 5 is a chi-square goodness-of-fit test against equal shares. It fails a correct
rule set with probability at most ALPHA = 1e-6 (the test's size; the u32 rounding of
kube-proxy's probabilities moves each share by under 1e-9). Steps 1-4 are exact: a
correct rule set never trips them, provided every SYN reaches the node; the client paces
its bursts and leaves time for one SYN retransmission so a busy host does not lose any.
The survival function is computed here in closed form (no SciPy): for k degrees of
freedom it is a finite sum of Poisson terms (k even) or erfc plus a finite sum (k odd).

How many connections (DEFAULT_CONNECTIONS = 1,500, was 3,000): enough that the subtlest
mistake step 5 exists for almost never passes, and no more, since every connection is
grading time. That mistake is "every rule 1/n" with the lab's n = 3 endpoints: shares
1/3, 2/9, 4/9 instead of a third each (for n = 2 it is the correct 1/2, nothing to catch;
a cascade without its last rule is step 2's, exact). Computed exactly over the
multinomial distribution (every count vector summed, not the chi-square approximation),
with the test at ALPHA = 1e-6:

    connections      1,200     1,500     1,800     2,000     3,000
    size (n = 3)     1.0e-6    1.0e-6    1.0e-6    1.0e-6    1.0e-6   (a correct rule set fails)
    miss 1/n skew    5.4e-6    1.5e-8    2.2e-11   1.0e-12   < 1e-15  (the mistake passes)

At 1,500 the mistake passes 70 times less often than a correct rule set fails, and the
exact size stays at the stated 1e-6 (1.02e-6; n = 2: 1.03e-6). The message after a
rejection ("skewed towards the last endpoint") is a second test at ALPHA against the
1/n shares, so it does not depend on the count. When conntrack drops events under load
the sample shrinks only by refused connections (accepted ones stay in the table dump),
which the skew mistake does not produce. The check takes about 0.6 s (was 1.0 s for
3,000) once the probe forkserver runs, more on a loaded machine.
"""

from __future__ import annotations

import math
import random
import resource
import selectors
import socket
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from course.kernel import Netns
from grader.probes import ProbeError, run_in_netns
from grader.verdict import Verdict

ALPHA = 1e-6
DEFAULT_CONNECTIONS = 1500  # why 1,500: the module docstring
BATCH = 250  # connections started per burst from the client
PACE = 0.2  # seconds a burst may take to be answered before the next one starts
# How long the connection probe may run beyond its own waits before it is killed as hung:
# on a loaded 2-core machine (load average 20+) 3,000 connections took over 14 s in all.
PROBE_SLACK = 25.0
# Netlink receive buffer for conntrack events. Each event sits in its own skb (several KB of
# truesize), and on a busy machine the listener may fall behind a burst.
EVENT_BUFFER = 128 << 20


# --- statistics ------------------------------------------------------------------------------
def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for X ~ chi-square with integer df (regularized upper gamma Q(df/2, x/2))."""
    if df < 1:
        raise ValueError("df must be >= 1")
    if x <= 0:
        return 1.0
    h = x / 2.0
    if df % 2 == 0:
        term = math.exp(-h)
        total = term
        for k in range(1, df // 2):
            term *= h / k
            total += term
        return min(1.0, total)
    total = math.erfc(math.sqrt(h))
    term = math.exp(-h) * math.sqrt(h) / math.gamma(1.5)
    for j in range(1, (df - 1) // 2 + 1):
        total += term
        term *= h / (j + 0.5)
    return min(1.0, total)


def chi2_critical(df: int, alpha: float = ALPHA) -> float:
    """The x with chi2_sf(x, df) = alpha (bisection; sf is decreasing in x)."""
    lo, hi = 0.0, 1.0
    while chi2_sf(hi, df) > alpha:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if chi2_sf(mid, df) > alpha else (lo, mid)
    return hi


def chi_square(counts: list[int], shares: list[float]) -> float:
    total = sum(counts)
    return sum((c - total * p) ** 2 / (total * p) for c, p in zip(counts, shares, strict=True))


def every_rule_one_over_n_shares(n: int) -> list[float]:
    """Shares if every cascade rule used 1/n: 1/n, (1-1/n)/n, ..., and the rest to the last."""
    shares = [(1 / n) * (1 - 1 / n) ** i for i in range(n - 1)]
    return [*shares, 1 - sum(shares)]


# --- what runs inside the client pod ------------------------------------------------------------
def open_connections(
    dst: str, port: int, count: int, wait: float, seed: int = 0, avoid: Collection[int] = ()
) -> list[int]:
    """Start `count` TCP connections from distinct source ports; return the ports used.

    Source ports are a seeded sample, bound explicitly, so none repeats within a run; ports
    in `avoid` (those the node's conntrack already holds an entry for, see `busy_ports`)
    are left out.
    Connections start `BATCH` at a time, each burst given up to `PACE` seconds to be
    answered, which keeps bursts under the kernel's per-CPU backlog (netdev_max_backlog,
    1000) on a busy machine; one connection goes first so the gateway's MAC is resolved
    before the burst. Unanswered sockets stay open until `wait` seconds after the last
    one started: longer than TCP's first SYN retransmission (1 s), so a SYN lost on a
    busy host gets a second chance instead of counting as "not translated". Closing with
    SO_LINGER 0 sends RST, so no TIME_WAIT is left behind.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 64), hard))
    taken = set(avoid)
    sample = random.Random(seed).sample(range(32768, 61000), min(count + 500 + len(taken), 28000))
    candidates = [p for p in sample if p not in taken]
    sel = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    used: list[int] = []
    batches = [candidates[:1]] + [
        candidates[i : i + BATCH] for i in range(1, len(candidates), BATCH)
    ]
    for batch in batches:
        if len(used) >= count:
            break
        started = _start(dst, port, batch[: count - len(used)], sel, socks, used)
        _drain(sel, started, time.monotonic() + PACE)
    _drain(sel, len(sel.get_map()), time.monotonic() + wait)
    for s in socks:
        s.close()
    sel.close()
    return used


def _start(
    dst: str,
    port: int,
    sports: list[int],
    sel: selectors.BaseSelector,
    socks: list[socket.socket],
    used: list[int],
) -> int:
    """Non-blocking connect() from each source port; returns how many SYNs were sent."""
    started = 0
    for sport in sports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            s.bind(("0.0.0.0", sport))
        except OSError:
            s.close()
            continue
        if s.connect_ex((dst, port)) not in (0, 115):  # 115: EINPROGRESS
            s.close()
            continue
        used.append(sport)
        socks.append(s)
        sel.register(s, selectors.EVENT_WRITE)
        started += 1
    return started


def _drain(sel: selectors.BaseSelector, expected: int, deadline: float) -> None:
    """Unregister sockets as their connect() completes (answer, refusal or ICMP error)."""
    done = 0
    while done < expected and sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
            sel.unregister(key.fileobj)
            done += 1


# --- what the node's conntrack saw --------------------------------------------------------------
@dataclass(frozen=True)
class Flow:
    """One conntrack entry: the client's source port and where the reply comes from."""

    sport: int
    reply_src: str
    reply_sport: int


def parse_conntrack(text: str, client_ip: str, dst: str = "", dport: int = 0) -> dict[int, Flow]:
    """conntrack lines -> {client source port: Flow} (first src/sport = original side).

    Works for `conntrack -L` and `conntrack -E` output alike; only TCP entries from
    `client_ip` (and to dst:dport, when given) are kept.
    """
    flows: dict[int, Flow] = {}
    for line in text.splitlines():
        fields: dict[str, list[str]] = {}
        for word in line.split():
            key, sep, value = word.partition("=")
            if sep:
                fields.setdefault(key, []).append(value)
        if " tcp " not in f" {line} " or len(fields.get("src", [])) < 2:
            continue
        if fields["src"][0] != client_ip or (dst and fields["dst"][0] != dst):
            continue
        if dport and int(fields["dport"][0]) != dport:
            continue
        sport = int(fields["sport"][0])
        flows[sport] = Flow(sport, fields["src"][1], int(fields["sport"][1]))
    return flows


class ConntrackEvents:
    """`conntrack -E -e NEW` in the node namespace, for the duration of a `with` block.

    Events, not `conntrack -L`: a SYN answered by RST has its entry destroyed at once, so
    a table dump taken afterwards misses it, while its NEW event (sent when the entry is
    confirmed, after the nat table chose the endpoint) is always there. Marker packets on
    the node's loopback prove the listener is subscribed before the probe starts, and that
    every earlier event has been read before the block ends. The conntrack table itself is
    left untouched.
    """

    def __init__(self, node: Netns, timeout: float = 5.0) -> None:
        self.node = node
        self.timeout = timeout
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> ConntrackEvents:
        argv = ["conntrack", "-E", "-e", "NEW", "-b", str(EVENT_BUFFER)]
        self._proc = self.node.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()
        self._marker()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self._marker()
        finally:
            assert self._proc is not None
            self._proc.terminate()
            self._proc.wait(timeout=5)

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def lost_events(self) -> bool:
        """conntrack says so when the kernel had to drop events (ENOBUFS)."""
        return "ENOBUFS" in self.text()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def _marker(self) -> None:
        """Send UDP to 127.0.0.1:<random port> from the node until its NEW event shows up."""
        port = random.randint(20000, 60000)
        needle = f"dport={port} "
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            with self.node.entered():  # a new socket each time: a new flow, a new event
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with sock:
                sock.sendto(b"marker", ("127.0.0.1", port))
            with self._cond:
                if self._cond.wait_for(lambda: any(needle in ln for ln in self.lines), 0.05):
                    return
        raise ProbeError(f"conntrack -E in {self.node.name} reported nothing in {self.timeout} s")


# --- judging ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Expectation:
    """What a correct rule set does for this Service port."""

    cluster_ip: str
    port: int
    target_port: int
    ready: Mapping[str, str]  # pod name -> pod IP: the endpoints that should share traffic
    not_ready: Mapping[str, str]  # pod name -> pod IP: endpoints that must get nothing
    alpha: float = ALPHA

    @property
    def vip(self) -> str:
        return f"{self.cluster_ip}:{self.port}"

    def kube_proxy_order(self) -> list[tuple[str, str]]:
        """(name, ip) in kube-proxy's endpoint order: a string sort of "ip:port"."""
        return sorted(self.ready.items(), key=lambda kv: f"{kv[1]}:{self.target_port}")


def judge(sent: list[int], flows: Mapping[int, Flow], exp: Expectation, lost: int = 0) -> Verdict:
    """Turn source ports sent and conntrack flows into a verdict (steps 1-5 above).

    `lost`: connections also sent whose endpoint the kernel's dropped events hid; they
    are left out of `sent` and only mentioned.
    """
    sent_text = (
        f"{len(sent)} new TCP connections (distinct source ports) from the client pod to "
        f"{exp.vip}; counted per endpoint from the node's conntrack events"
    )
    if lost:
        sent_text += f" ({lost} more were sent, but the busy kernel dropped their events)"
    if not sent:
        return Verdict.fail(
            "the client could not open any connection",
            sent=sent_text, observed="connect() failed at once for every socket",
            expected=f"SYNs leaving the client towards {exp.vip}",
            hint="does the client pod have a default route towards its node?",
        )  # fmt: skip
    mine = {p: flows[p] for p in sent if p in flows}
    for step in (_untranslated, _not_ready, _wrong_port, _strangers, _distribution):
        verdict = step(sent, mine, exp, sent_text)
        if verdict is not None:
            return verdict
    return _passed(mine, exp, sent_text)


def _untranslated(
    sent: list[int], mine: dict[int, Flow], exp: Expectation, sent_text: str
) -> Verdict | None:
    lost = [p for p in sent if p not in mine or mine[p].reply_src == exp.cluster_ip]
    if not lost:
        return None
    if len(lost) == len(sent):
        return Verdict.fail(
            f"no connection to {exp.vip} was translated",
            sent=sent_text,
            observed=f"none of the {len(sent)} connections was DNATed to a pod",
            expected=f"every connection DNATed to one of {_names(exp.ready)}",
            hint=f"packets to {exp.vip} never reach a KUBE-SVC chain: is there a "
            f"`-A KUBE-SERVICES ... -d {exp.cluster_ip} --dport {exp.port} -j KUBE-SVC-...` "
            "rule, and does PREROUTING jump to KUBE-SERVICES?",
        )
    share = len(lost) / len(sent)
    return Verdict.fail(
        f"{len(lost)} of {len(sent)} connections ({share:.0%}) were not translated",
        sent=sent_text,
        observed=f"{len(lost)} connections left the KUBE-SVC chain without a DNAT",
        expected="every connection DNATed: the cascade must always pick an endpoint",
        hint="the last rule of a KUBE-SVC chain must have no --probability: it catches "
        "whatever the probabilistic rules before it did not take",
    )


def _not_ready(
    sent: list[int], mine: dict[int, Flow], exp: Expectation, sent_text: str
) -> Verdict | None:
    hits = Counter(f.reply_src for f in mine.values() if f.reply_src in exp.not_ready.values())
    if not hits:
        return None
    names = {ip: name for name, ip in exp.not_ready.items()}
    got = ", ".join(f"pod {names[ip]} ({ip}) got {n}" for ip, n in sorted(hits.items()))
    return Verdict.fail(
        "a pod that is not ready still receives new connections",
        sent=sent_text, observed=got,
        expected=f"new connections only to ready pods {_names(exp.ready)}",
        hint="the EndpointSlice marks the pod ready: false; kube-proxy must resync so the "
        "pod's KUBE-SEP chain and its jump leave the KUBE-SVC chain",
    )  # fmt: skip


def _wrong_port(
    sent: list[int], mine: dict[int, Flow], exp: Expectation, sent_text: str
) -> Verdict | None:
    ports = Counter(f.reply_sport for f in mine.values() if f.reply_sport != exp.target_port)
    if not ports:
        return None
    seen = ", ".join(f"port {p} ({n} connections)" for p, n in sorted(ports.items()))
    return Verdict.fail(
        f"connections were DNATed to the wrong port, not the pods' {exp.target_port}",
        sent=sent_text, observed=f"DNAT targets used {seen}",
        expected=f"--to-destination <pod ip>:{exp.target_port} (the Service's targetPort)",
        hint="the Service port is what clients dial; the DNAT must use the endpoint port from "
        "the EndpointSlice (targetPort resolved on the pod), not the Service port",
    )  # fmt: skip


def _strangers(
    sent: list[int], mine: dict[int, Flow], exp: Expectation, sent_text: str
) -> Verdict | None:
    others = Counter(f.reply_src for f in mine.values() if f.reply_src not in exp.ready.values())
    if not others:
        return None
    seen = ", ".join(f"{ip} ({n})" for ip, n in sorted(others.items()))
    return Verdict.fail(
        "connections were sent to addresses that are not endpoints of this Service",
        sent=sent_text, observed=f"DNAT targets {seen}",
        expected=f"only the endpoints {_names(exp.ready)}",
        hint="each KUBE-SEP chain must DNAT to its own endpoint's IP",
    )  # fmt: skip


def _distribution(
    sent: list[int], mine: dict[int, Flow], exp: Expectation, sent_text: str
) -> Verdict | None:
    order = exp.kube_proxy_order()
    if len(order) < 2:
        return None
    counts = [sum(f.reply_src == ip for f in mine.values()) for _, ip in order]
    n = len(order)
    stat = chi_square(counts, [1 / n] * n)
    p = chi2_sf(stat, n - 1)
    if p >= exp.alpha:
        return None
    observed = _counts_text(order, counts) + f"; chi-square {stat:.1f} (df {n - 1}), p = {p:.2g}"
    if chi2_sf(chi_square(counts, every_rule_one_over_n_shares(n)), n - 1) >= exp.alpha:
        hint = (
            f"the counts fit every rule using --probability 1/{n}: the last endpoint gets what "
            f"the others leave. Rule i must take 1/(n-i) of what is left: "
            f"{', '.join(f'1/{n - i}' for i in range(n - 1))}, then no --probability"
        )
        summary = f"traffic is skewed towards the last endpoint ({order[-1][0]})"
    else:
        hint = "rule i of the cascade must use --probability 1/(n-i), in kube-proxy's order"
        summary = "connections are not spread evenly over the endpoints"
    return Verdict.fail(
        summary, sent=sent_text, observed=observed,
        expected=f"about {len(mine) / n:.0f} each (uniform; rejected only if p < {exp.alpha:g})",
        hint=hint,
    )  # fmt: skip


def _passed(mine: dict[int, Flow], exp: Expectation, sent_text: str) -> Verdict:
    order = exp.kube_proxy_order()
    counts = [sum(f.reply_src == ip for f in mine.values()) for _, ip in order]
    text = _counts_text(order, counts)
    if len(order) > 1:
        stat = chi_square(counts, [1 / len(order)] * len(order))
        text += f"; chi-square {stat:.1f}, p = {chi2_sf(stat, len(order) - 1):.2g}"
    return Verdict.ok(f"{exp.vip} spreads new connections evenly", sent=sent_text, observed=text)


def _counts_text(order: list[tuple[str, str]], counts: list[int]) -> str:
    return ", ".join(f"{name} ({ip}) {c}" for (name, ip), c in zip(order, counts, strict=True))


def _names(pods: Mapping[str, str]) -> str:
    return ", ".join(f"{name} ({ip})" for name, ip in sorted(pods.items()))


# --- the check ---------------------------------------------------------------------------------
def check_cluster_ip_distribution(
    client: Netns,
    client_ip: str,
    node: Netns,
    exp: Expectation,
    connections: int = DEFAULT_CONNECTIONS,
    wait: float = 1.3,
) -> Verdict:
    """Send `connections` new connections from `client` and judge the node's DNAT choices.

    Two witnesses are merged: conntrack's NEW events (they see every connection, even one
    refused by a closed port, whose entry the kernel drops at once), and a dump of the
    table right after (it holds every connection a listening pod accepted, for 10 s). On
    a busy machine the kernel may drop events (conntrack reports ENOBUFS); a connection
    whose event was lost and whose entry is gone (refused) is then unknown, not
    "untranslated". The measurement is repeated with other source ports; after three
    tries it is judged on the connections whose endpoint is known (losses do not depend
    on the endpoint chosen, so the sample stays fair), or, when fewer than half are
    known, the check raises ProbeError instead of blaming the learner.
    """
    best: tuple[list[int], dict[int, Flow], int] = ([], {}, 0)
    for attempt in range(3):
        busy = busy_ports(node, exp.cluster_ip, exp.port, client_ip)
        with ConntrackEvents(node) as events:
            sent = run_in_netns(
                client, open_connections, exp.cluster_ip, exp.port, connections, wait,
                attempt, busy, timeout=PROBE_SLACK + wait + PACE * (connections / BATCH + 1),
            )  # fmt: skip
        flows = parse_conntrack(events.text(), client_ip, exp.cluster_ip, exp.port)
        flows.update(read_conntrack(node, exp.cluster_ip, exp.port, client_ip))
        if not events.lost_events() or all(p in flows for p in sent):
            return judge(sent, flows, exp)
        known = [p for p in sent if p in flows]
        if len(known) > len(best[0]):
            best = (known, flows, len(sent))
    known, flows, total = best
    if len(known) * 2 < total or not known:
        raise ProbeError(f"conntrack events were lost in {node.name} three times: machine too busy")
    return judge(known, flows, exp, lost=total - len(known))


def busy_ports(node: Netns, cluster_ip: str, port: int, client_ip: str) -> list[int]:
    """Source ports of `client_ip` that already have a conntrack entry towards cluster_ip:port.

    A SYN from such a port opens no new connection for conntrack: it joins the old entry
    and skips the nat table. With a default route on the node, a SYN sent before the rules
    existed leaves such an entry, untranslated, for two minutes (SYN_SENT); a new "new
    connection" from that port would then count as not translated against right rules.
    """
    return sorted(read_conntrack(node, cluster_ip, port, client_ip))


def read_conntrack(node: Netns, cluster_ip: str, port: int, client_ip: str) -> dict[int, Flow]:
    """The entries still in the node's table for this ClusterIP:port from this client."""
    argv = ["conntrack", "-L", "-p", "tcp", "--orig-dst", cluster_ip, "--orig-port-dst", str(port)]
    out = node.run(argv, check=False)
    return parse_conntrack(out.stdout, client_ip, cluster_ip, port)
