"""Checks of lab 06 "ClusterIP and KUBE-SVC probabilities": the node's nat table, and real packets.

The lab cluster is one node (`node1`, pods on the bridge `cni0`): pods a, b and c run a tiny
TCP server on port 8080 and back the Services `default/web` (ClusterIP 10.96.0.10:80) and
`default/web-sticky` (10.96.0.11:80, sessionAffinity ClientIP); pod d is the client. The
learner writes the rules kube-proxy would write and applies them in the node's namespace.

Each check reads what the kernel holds (`iptables-save -t nat` inside the node, which prints
the probabilities back from the 31-bit thresholds the kernel stores) or opens real TCP
connections from pod d and reads which endpoint the DNAT chose from the node's conntrack
events (`grader.kubeproxy_checks`). What is expected comes from the lab's fixed plan and
from `course.kubeproxy`'s chain-name helpers, never from the learner's functions.
"""

from __future__ import annotations

import math
import shlex
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from course.addressing import pod_ip
from course.faults.lab06 import CATALOGUE as FAULTS
from course.kernel import Netns
from course.kernel import netns as kernel_netns
from course.kubeproxy import (
    compute_probability,
    service_port_endpoint_chain_name,
    service_port_policy_cluster_chain,
)
from grader import breakfix, journey
from grader.kubeproxy_checks import (
    ConntrackEvents,
    Expectation,
    busy_ports,
    check_cluster_ip_distribution,
    open_connections,
    parse_conntrack,
    read_conntrack,
)
from grader.labs import Check, CheckContext, CheckFn, Lab
from grader.labs.common import answer_check as _answer
from grader.labs.common import fail, judged, open_ns, question
from grader.probes import run_in_netns
from grader.verdict import Verdict

LAB_ID = "06-kube-proxy"
NODE_ROLE = "node1"
CLIENT = "d"
CLIENT_IP = pod_ip(1, 3)
BACKENDS = {"a": pod_ip(1, 0), "b": pod_ip(1, 1), "c": pod_ip(1, 2)}
NOT_READY = "b"  # the pod exercise 4 turns not ready
TARGET_PORT = 8080  # the container port named "http" on every backend
AFFINITY_SECONDS = 10800  # sessionAffinityConfig.clientIP.timeoutSeconds default
STICKY_CONNECTIONS = 200


@dataclass(frozen=True)
class ServiceSpec:
    """One Service port of the lab, as kube-proxy names it (`namespace/name:port`)."""

    spn: str
    cluster_ip: str
    port: int
    protocol: str = "tcp"

    @property
    def vip(self) -> str:
        return f"{self.cluster_ip}:{self.port}"

    @property
    def svc_chain(self) -> str:
        return service_port_policy_cluster_chain(self.spn, self.protocol)

    def sep_chain(self, endpoint: str) -> str:
        return service_port_endpoint_chain_name(self.spn, self.protocol, endpoint)


WEB = ServiceSpec("default/web:http", "10.96.0.10", 80)
STICKY = ServiceSpec("default/web-sticky:http", "10.96.0.11", 80)


def endpoints(names: str) -> list[str]:
    """`ip:port` of the named backends, in kube-proxy's order (a string sort)."""
    return sorted(f"{BACKENDS[n]}:{TARGET_PORT}" for n in names)


def printed_probability(n: int) -> str:
    """What `iptables-save` prints for kube-proxy's 1/n: the kernel keeps a 31-bit threshold.

    libxt_statistic stores lround(2^31 * p) and prints it back as threshold / 2^31 with 11
    decimals, so kube-proxy's `0.3333333333` reads back as `0.33333333349`.
    """
    threshold = math.floor(float(compute_probability(n)) * 2**31 + 0.5)
    return f"{threshold / 2**31:.11f}"


# --- reading the nat table -------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """One `-A CHAIN ...` line of `iptables-save`, with the options the checks look at."""

    chain: str
    words: tuple[str, ...]
    text: str

    def opt(self, flag: str) -> str | None:
        words = self.words
        return next((words[i + 1] for i in range(len(words) - 1) if words[i] == flag), None)

    @property
    def jump(self) -> str | None:
        return self.opt("-j")

    def matches_vip(self, svc: ServiceSpec) -> bool:
        dst = self.opt("-d")
        return (
            dst in (svc.cluster_ip, f"{svc.cluster_ip}/32")
            and self.opt("--dport") == str(svc.port)
            and self.opt("-p") == svc.protocol
        )


def nat_rules(node: Netns) -> list[Rule]:
    rules = []
    for line in node.iptables_save("nat").splitlines():
        if line.startswith("-A "):
            words = tuple(shlex.split(line))
            rules.append(Rule(words[1], words, line))
    return rules


def chain(rules: list[Rule], name: str) -> list[Rule]:
    return [r for r in rules if r.chain == name]


def read(node: Netns) -> tuple[list[Rule], str]:
    return nat_rules(node), f"read `iptables-save -t nat` inside {node.name}"


def service_chain(
    rules: list[Rule],
    svc: ServiceSpec,
    sent: str,
    hint: str = "without this jump, packets to the ClusterIP never reach the Service's chain: "
    "service_rules must write it, for the Service port (not the target port)",
) -> str:
    """The chain KUBE-SERVICES sends ClusterIP:port to; it must be named the kube-proxy way."""
    entry = [r for r in chain(rules, "PREROUTING") if r.jump == "KUBE-SERVICES"]
    if not entry:
        raise fail(
            "PREROUTING does not jump to KUBE-SERVICES",
            sent=sent,
            observed="no `-A PREROUTING ... -j KUBE-SERVICES` rule in the node",
            expected="kube-proxy's jump from the built-in chains into KUBE-SERVICES",
            hint="the setup cell installs it with ensure_jump_rules(node.ns): run it again",
        )
    hits = [r for r in chain(rules, "KUBE-SERVICES") if r.matches_vip(svc)]
    if not hits:
        listed = "; ".join(r.text for r in chain(rules, "KUBE-SERVICES")) or "the chain is empty"
        raise fail(
            f"KUBE-SERVICES has no rule for {svc.vip}",
            sent=sent,
            observed=f"KUBE-SERVICES: {listed}{rejected(sent)}",
            expected=f"-A KUBE-SERVICES ... -p {svc.protocol} -d {svc.cluster_ip} "
            f"--dport {svc.port} -j {svc.svc_chain}",
            hint=hint,
        )
    target = hits[0].jump or "?"
    if target != svc.svc_chain:
        raise fail(
            f"the chain for {svc.spn} is not named the kube-proxy way",
            sent=sent,
            observed=f"KUBE-SERVICES sends {svc.vip} to {target}",
            expected=f"{svc.svc_chain}: 'KUBE-SVC-' + base32(sha256('{svc.spn}{svc.protocol}'))[:16]",
            hint="hash the service port name and the lowercase protocol, joined without a "
            "separator; keep the first 16 base32 characters",
        )
    return target


def rejected(sent: str) -> str:
    """Why the chain may be empty: the node's last iptables-restore, if it was refused."""
    ns_name = sent.rsplit(" ", 1)[-1]
    try:
        # RESTORE_ERRORS is re-rooted in a sandbox
        note = (kernel_netns.RESTORE_ERRORS / f"{ns_name}.txt").read_text().strip()
    except OSError:
        return ""
    return (
        f". Your last iptables-restore in {NODE_ROLE} was rejected, nothing of it applied: {note}"
    )


def cascade_rules(rules: list[Rule], svc_chain: str) -> list[Rule]:
    """The rules of the Service chain that pick an endpoint (affinity checks left out)."""
    return [
        r
        for r in chain(rules, svc_chain)
        if (r.jump or "").startswith("KUBE-SEP-") and "--rcheck" not in r.words
    ]


def endpoint_chains(rules: list[Rule], svc: ServiceSpec, eps: list[str], sent: str) -> None:
    """KUBE-SVC jumps to one KUBE-SEP per endpoint, in kube-proxy's order, each DNATing right."""
    picks = cascade_rules(rules, svc.svc_chain)
    want = [svc.sep_chain(ep) for ep in eps]
    got = [r.jump or "" for r in picks]
    if sorted(got) != sorted(want):
        raise fail(
            f"{svc.svc_chain} does not jump to kube-proxy's KUBE-SEP chains",
            sent=sent,
            observed=f"{svc.svc_chain} jumps to {got or 'nothing'}",
            expected=f"{want} (for {', '.join(eps)})",
            hint="one KUBE-SEP chain per ready endpoint, named 'KUBE-SEP-' + "
            "base32(sha256(service port name + protocol + 'ip:port'))[:16]",
        )
    if got != want:
        raise fail(
            "the endpoints are not in kube-proxy's order",
            sent=sent,
            observed=f"{svc.svc_chain} tries {got}",
            expected=f"{want}: endpoints sorted as strings 'ip:port' ({', '.join(eps)})",
            hint="sort the endpoints as kube-proxy does (a plain string sort of 'ip:port')",
        )
    for ep, sep in zip(eps, want, strict=True):
        dnat = [r.opt("--to-destination") for r in chain(rules, sep) if r.jump == "DNAT"]
        if dnat != [ep]:
            raise fail(
                f"{sep} does not DNAT to {ep}" + _port_note(dnat, ep),
                sent=sent,
                observed=f"{sep} DNATs to {dnat or 'nothing'}",
                expected=f"-A {sep} ... -j DNAT --to-destination {ep}",
                hint="the DNAT target is the endpoint's address and the endpoint port from the "
                "EndpointSlice (the pod's port 8080), not the Service port 80",
            )


def _port_note(dnat: list[str | None], ep: str) -> str:
    ip = ep.split(":")[0]
    if dnat and all(d and d.split(":")[0] == ip and d != ep for d in dnat):
        return f": wrong target port, the pods serve {ep.split(':')[1]}"
    return ""


# --- exercise 3: names, cascade, spread ---------------------------------------------------------
@judged
def check_chain_names(ctx: CheckContext) -> Verdict:
    """KUBE-SERVICES -> KUBE-SVC -> KUBE-SEP names for default/web:http, and their DNATs."""
    rules, sent = read(open_ns(ctx, NODE_ROLE))
    svc_chain = service_chain(rules, WEB, sent)
    eps = endpoints("abc")
    endpoint_chains(rules, WEB, eps, sent)
    return Verdict.ok(
        f"{WEB.vip} -> {svc_chain} -> one KUBE-SEP per endpoint: the names kube-proxy uses",
        sent=sent,
        observed=", ".join(f"{WEB.sep_chain(ep)} DNAT {ep}" for ep in eps),
    )


@judged
def check_cascade(ctx: CheckContext) -> Verdict:
    """The kernel holds the probabilities 1/3, 1/2, then an unconditional rule."""
    rules, sent = read(open_ns(ctx, NODE_ROLE))
    svc_chain = service_chain(rules, WEB, sent)
    picks = cascade_rules(rules, svc_chain)
    got = [r.opt("--probability") for r in picks]
    n = len(endpoints("abc"))
    want: list[str | None] = [printed_probability(n - i) for i in range(n - 1)] + [None]
    shown = ", ".join(p or "(no --probability)" for p in got) or "no rule"
    if got == want:
        return Verdict.ok(
            f"{svc_chain} holds the cascade {shown}",
            sent=sent,
            observed="kube-proxy wrote 0.3333333333; the kernel stores it as a 31-bit "
            "threshold, which iptables prints back as 0.33333333349",
        )
    if not got:
        raise fail(
            f"{svc_chain} sends nothing to a KUBE-SEP chain",
            sent=sent,
            observed=f"{svc_chain}: {[r.text for r in chain(rules, svc_chain)] or 'empty'}",
            expected=f"{n} rules, one per endpoint, with the probabilities "
            f"{', '.join(p or '(no --probability)' for p in want)}",
            hint="service_rules must write one `-A KUBE-SVC-... -j KUBE-SEP-...` per endpoint",
        )
    if got[-1] is not None:
        raise fail(
            f"{svc_chain} has no final unconditional rule",
            sent=sent,
            observed=f"the probabilities in {svc_chain}: {shown}",
            expected=f"{', '.join(p or '(no --probability)' for p in want)}",
            hint="the last endpoint's rule takes whatever is left: it must have no "
            "-m statistic match, or some connections fall out of the chain untranslated",
        )
    hint = "rule i (counting from 0) takes 1/(n-i) of what reaches it: 1/3, then 1/2, then all"
    if len(got) == n and all(p == printed_probability(n) for p in got[:-1]):
        hint = f"every rule uses 1/{n}, so the last endpoint gets what the others leave: " + hint
    raise fail(
        f"{svc_chain} does not hold kube-proxy's probability cascade",
        sent=sent,
        observed=f"the probabilities in {svc_chain}: {shown}",
        expected=f"{', '.join(p or '(no --probability)' for p in want)} (as iptables prints "
        "back 0.3333333333, 0.5000000000, and no match)",
        hint=hint,
    )


def distribution(ctx: CheckContext, ready: str, not_ready: str) -> Verdict:
    node, client = open_ns(ctx, NODE_ROLE), open_ns(ctx, f"{NODE_ROLE}-{CLIENT}")
    exp = Expectation(
        WEB.cluster_ip,
        WEB.port,
        TARGET_PORT,
        ready={n: BACKENDS[n] for n in ready},
        not_ready={n: BACKENDS[n] for n in not_ready},
    )
    return check_cluster_ip_distribution(client, CLIENT_IP, node, exp)


def followed(svc: ServiceSpec) -> Callable[[CheckFn], CheckFn]:
    """After the check, one SYN from pod d to `svc`, drawn hop by hop under the verdict.

    The journey shows the DNAT between node1's interfaces (or where the SYN stopped); it is
    a picture of the same rules, and never changes the verdict.
    """

    def wrap(check: CheckFn) -> CheckFn:
        def run(ctx: CheckContext) -> Verdict:
            verdict = check(ctx)
            try:
                _, trip = journey.tcp_syn(ctx, f"{NODE_ROLE}-{CLIENT}", svc.cluster_ip, svc.port)
            except Exception:
                return verdict
            return journey.attach(verdict, trip)

        run.__name__, run.__doc__ = check.__name__, check.__doc__
        return run

    return wrap


@followed(WEB)
@judged
def check_spread(ctx: CheckContext) -> Verdict:
    """1,500 new connections from pod d to 10.96.0.10:80 spread evenly over a, b and c."""
    return distribution(ctx, "abc", "")


# --- exercise 4: a pod turns not ready --------------------------------------------------------
@followed(WEB)
@judged
def check_not_ready(ctx: CheckContext) -> Verdict:
    """After the resync, pod b gets no new connection; a and c share them evenly."""
    verdict = distribution(ctx, "ac", NOT_READY)
    if verdict.passed:
        verdict.summary = (
            f"pod {NOT_READY} (not ready) got no new connection; a and c share them evenly"
        )
    return verdict


# --- exercise 5: session affinity -------------------------------------------------------------
def affinity_rules(rules: list[Rule], eps: list[str], sent: str) -> None:
    """`--rcheck` per endpoint first in KUBE-SVC, `--set` before each DNAT."""
    svc_chain = STICKY.svc_chain
    own = chain(rules, svc_chain)
    checks = [r for r in own if "--rcheck" in r.words]
    want = [STICKY.sep_chain(ep) for ep in eps]
    if sorted((r.opt("--name") or "", r.jump or "") for r in checks) != [(s, s) for s in want]:
        raise fail(
            f"{svc_chain} does not look up the client's last endpoint first",
            sent=sent,
            observed=f"affinity rules in {svc_chain}: {[r.text for r in checks] or 'none'}",
            expected=f"one rule per endpoint before the cascade: -m recent --name <SEP chain> "
            f"--rcheck --seconds {AFFINITY_SECONDS} --reap -j <SEP chain>, for {want}",
            hint="sessionAffinity ClientIP: remember the client per endpoint with the `recent` "
            "match and send it back to the endpoint that remembers it",
        )
    first_pick = next(i for i, r in enumerate(own) if r not in checks)
    if any(own.index(r) > first_pick for r in checks) or any(
        r.opt("--seconds") != str(AFFINITY_SECONDS) or "--reap" not in r.words for r in checks
    ):
        raise fail(
            f"the affinity rules of {svc_chain} are misplaced or have the wrong timeout",
            sent=sent,
            observed="; ".join(r.text for r in own),
            expected=f"every --rcheck rule (with --seconds {AFFINITY_SECONDS} --reap) before the "
            "first probability rule",
            hint="a client that was seen recently must be matched before the random cascade runs",
        )
    for sep in want:
        dnat = [r for r in chain(rules, sep) if r.jump == "DNAT"]
        if not dnat or "--set" not in dnat[0].words or dnat[0].opt("--name") != sep:
            raise fail(
                f"{sep} does not remember the client",
                sent=sent,
                observed="; ".join(r.text for r in chain(rules, sep)) or f"no chain {sep}",
                expected=f"-A {sep} ... -m recent --name {sep} --set ... -j DNAT ...",
                hint="the DNAT rule records the client's address in the list named after the "
                "KUBE-SEP chain; the --rcheck rules read that list",
            )


def sticky_connections(node: Netns, client: Netns) -> tuple[list[int], dict[int, str]]:
    busy = busy_ports(node, STICKY.cluster_ip, STICKY.port, CLIENT_IP)  # not new to conntrack
    with ConntrackEvents(node) as events:
        sent = run_in_netns(
            client, open_connections, STICKY.cluster_ip, STICKY.port, STICKY_CONNECTIONS, 1.3,
            66, busy, timeout=15.0,
        )  # fmt: skip
    flows = parse_conntrack(events.text(), CLIENT_IP, STICKY.cluster_ip, STICKY.port)
    # A busy kernel drops events (ENOBUFS); the pods accepted these connections, so their
    # entries are still in the table for a few seconds.
    flows.update(read_conntrack(node, STICKY.cluster_ip, STICKY.port, CLIENT_IP))
    # A connection whose reply still comes from the ClusterIP was not translated.
    return sent, {
        p: flows[p].reply_src
        for p in sent
        if p in flows and flows[p].reply_src != STICKY.cluster_ip
    }


@judged
def check_affinity(ctx: CheckContext) -> Verdict:
    """web-sticky: affinity rules in the kernel, and 200 new connections from d hit one pod."""
    node, client = open_ns(ctx, NODE_ROLE), open_ns(ctx, f"{NODE_ROLE}-{CLIENT}")
    rules, sent_text = read(node)
    service_chain(rules, STICKY, sent_text)
    eps = endpoints("ac")
    endpoint_chains(rules, STICKY, eps, sent_text)
    affinity_rules(rules, eps, sent_text)
    sent, picked = sticky_connections(node, client)
    wire = (
        f"{len(sent)} new TCP connections (distinct source ports) from pod d ({CLIENT_IP}) to "
        f"{STICKY.vip}; endpoints read from the node's conntrack events"
    )
    names = {ip: name for name, ip in BACKENDS.items()}
    counts = Counter(picked.values())
    seen = ", ".join(f"{names.get(ip, ip)} ({ip}) {n}" for ip, n in sorted(counts.items()))
    if len(picked) < len(sent) or not sent:
        raise fail(
            f"{len(sent) - len(picked)} of {len(sent)} connections to {STICKY.vip} were not "
            "translated",
            sent=wire,
            observed=f"DNATed: {seen or 'none'}",
            expected="every connection DNATed to a ready endpoint",
            hint="the cascade after the affinity rules must end with an unconditional rule",
        )
    if len(counts) > 1:
        raise fail(
            f"connections from one client went to {len(counts)} pods",
            sent=wire,
            observed=seen,
            expected="every connection from pod d to the same endpoint (sessionAffinity ClientIP)",
            hint="the --rcheck rules read the list the DNAT rule's --set writes: both must use "
            "the KUBE-SEP chain's name, and the list must hold the client's source address "
            "(the recent match's default, --rsource)",
        )
    return Verdict.ok(
        f"{STICKY.vip} keeps pod d on one endpoint",
        sent=wire,
        observed=f"{seen}; affinity rules for {', '.join(eps)} in {STICKY.svc_chain}",
    )


# --- predict, then observe ----------------------------------------------------------------------
_FIRST_ONLY = (
    "Only the first packet of a connection walks the nat table; conntrack applies the DNAT "
    "it chose to every later packet (and un-DNATs the replies) without the rules"
)
Q1 = question(
    "q1",
    "b",
    "iptables stores 0.3333333333 as the threshold 715827883 out of 2^31 and prints that "
    "back with 11 decimals: 0.33333333349.",
    "one of 'a', 'b', 'c', 'd'",
    evidence="the kernel shows",
    why={
        "a": "the kernel does not keep the text kube-proxy wrote: the statistic match stores "
        "an integer threshold out of 2^31 (here 715827883), and iptables prints that threshold "
        "back as a fraction of 2^31.",
        "c": "eleven decimals, yes, but of the stored threshold, not of 1/3: 0.3333333333 "
        "times 2^31 is rounded to 715827883, and 715827883 / 2^31 = 0.33333333349.",
        "d": "iptables prints the probability with eleven decimals, not six (six is printf's "
        "%f default, not what iptables uses).",
    },
)
Q2 = question(
    "q2",
    1,
    "Only the first packet of a connection walks the nat table; conntrack applies the same "
    "DNAT to every later packet (and un-DNATs the replies).",
    "a whole number of packets, such as 1 or 10",
    evidence="the kernel shows",
    why={
        0: "the SYN, the first packet of the connection, does walk the nat table: it is the "
        "packet for which the KUBE-SVC rules pick an endpoint.",
        10: f"{_FIRST_ONLY}, so the ten lines add nothing.",
        11: f"{_FIRST_ONLY}: the SYN is counted, the ten lines are not.",
        **dict.fromkeys((20, 21, 22), f"replies never pass these rules either. {_FIRST_ONLY}."),
    },
    why_other=f"{_FIRST_ONLY}: count the packets that can be the first of a connection.",
)
Q3 = question(
    "q3",
    "a",
    "conntrack keeps the connection's DNAT until it ends; only new connections walk the "
    "updated rules.",
    "one of 'a', 'b', 'c'",
    evidence="the kernel shows",
    why={
        "b": "a resync rewrites rules; it does not touch conntrack and sends nothing to "
        "anyone, so no RST comes. (kube-proxy clears conntrack entries of removed endpoints "
        "for UDP Services only.)",
        "c": "only a connection's first packet walks the nat table; its later packets follow "
        "the conntrack entry, which still says pod b, whatever the new rules say.",
    },
)


Q4 = question(
    "q4",
    "a",
    "conntrack reverses the DNAT on every reply: pod d only ever talks to 10.96.0.10:80, and "
    "only the pod's side of node1 sees 10.244.1.x:8080.",
    "one of 'a', 'b', 'c'",
    evidence="the capture shows",
    hint="read the SYN-ACK rows of the capture on pod d's eth0 (node1-d/eth0)",
)


# --- exercise 6: a Service by hand, with iptables commands -----------------------------------
ECHO = ServiceSpec("default/echo:http", "10.96.0.12", 80)
ECHO_POD = "c"
ASKS = 20


def ask_names(
    dst: str, port: int, count: int, budget: float, avoid: tuple[int, ...] = ()
) -> list[str]:
    """Runs in the client pod: `count` new connections at once; each one's first line.

    The lab's servers answer every connection with their pod's name. A connection that
    fails is named by what the kernel reported (refused, unreachable, timeout). Source ports
    are drawn at random below the kernel's ephemeral range and outside `avoid`: left to the
    kernel, a new connection takes the port of one made while the lab was broken, and the
    node's conntrack still holds that one untranslated (SYN_SENT, two minutes), so the new
    SYN would skip the nat table however right the rules are now.
    """
    import random
    import socket
    from concurrent.futures import ThreadPoolExecutor

    ports = random.sample(sorted(set(range(20000, 32768)) - set(avoid)), count)

    def one(sport: int) -> str:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("0.0.0.0", sport))
                sock.settimeout(budget)
                sock.connect((dst, port))
                return sock.recv(64).decode(errors="replace").strip() or "closed"
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            return exc.strerror or type(exc).__name__

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, ports))


def asked(
    client: Netns, dst: str, port: int, count: int = ASKS, node: Netns | None = None
) -> tuple[Counter[str], str]:
    avoid = tuple(busy_ports(node, dst, port, CLIENT_IP)) if node is not None else ()
    names = run_in_netns(client, ask_names, dst, port, count, 1.5, avoid, timeout=15.0)
    wire = f"{count} new TCP connections at once from pod d ({CLIENT_IP}) to {dst}:{port}"
    return Counter(names), wire


def _shown(counts: Counter[str]) -> str:
    return ", ".join(f"{name} x{n}" for name, n in sorted(counts.items()))


@followed(ECHO)
@judged
def check_by_hand(ctx: CheckContext) -> Verdict:
    """default/echo: rules typed as iptables commands; every connection reaches pod c."""
    node, client = open_ns(ctx, NODE_ROLE), open_ns(ctx, f"{NODE_ROLE}-{CLIENT}")
    rules, sent = read(node)
    hint = "in a %%ns node1 cell: iptables -t nat -A KUBE-SERVICES -p tcp -d 10.96.0.12 --dport 80 -j <the KUBE-SVC chain>"
    service_chain(rules, ECHO, sent, hint=hint)
    endpoint_chains(rules, ECHO, endpoints(ECHO_POD), sent)
    counts, wire = asked(client, ECHO.cluster_ip, ECHO.port, node=node)
    if counts != Counter({ECHO_POD: ASKS}):
        raise fail(
            f"connections to {ECHO.vip} do not all reach pod {ECHO_POD}",
            sent=wire,
            observed=f"answered by: {_shown(counts)}",
            expected=f"all {ASKS} answered by pod {ECHO_POD} ({BACKENDS[ECHO_POD]}:8080)",
            hint="the rules are there but the packets disagree: compare the DNAT target with "
            "pod c's address and port, and look at the chain counters (iptables -t nat -L -v)",
        )
    return Verdict.ok(
        f"{ECHO.vip} -> {ECHO.svc_chain} -> {ECHO.sep_chain(endpoints(ECHO_POD)[0])}: your "
        "commands wrote exactly kube-proxy's rules",
        sent=f"{sent}; then {wire}",
        observed=f"answered by: {_shown(counts)}",
    )


# --- exercise 7: break/fix -------------------------------------------------------------------
def cluster_ip_works(ctx: CheckContext) -> Verdict:
    """Every new connection from pod d to 10.96.0.10:80 is answered, by more than one pod.

    Only packets decide: whatever the learner changed to get there is fine. The verdict
    carries the journey of a SYN, preferably one that failed (up to three tries).
    """
    node, client = open_ns(ctx, NODE_ROLE), open_ns(ctx, f"{NODE_ROLE}-{CLIENT}")
    counts, wire = asked(client, WEB.cluster_ip, WEB.port, 2 * ASKS, node=node)
    pods = {name for name in counts if name in BACKENDS}
    works = sum(counts[p] for p in pods) == 2 * ASKS and len(pods) > 1
    trip = None
    for _ in range(1 if works else 2):
        obs, trip = journey.tcp_syn(ctx, f"{NODE_ROLE}-{CLIENT}", WEB.cluster_ip, WEB.port)
        if works or not obs.ok:
            break
    if works:
        verdict = Verdict.ok(f"{WEB.vip} answers again", sent=wire, observed=_shown(counts))
    else:
        verdict = Verdict.fail(
            f"{sum(n for k, n in counts.items() if k not in BACKENDS)} of {2 * ASKS} "
            f"connections to {WEB.vip} failed",
            sent=wire,
            observed=f"outcomes: {_shown(counts)}",
            expected=f"all {2 * ASKS} answered, spread over the ready pods",
            hint="",
        )
    return journey.attach(verdict, trip) if trip else verdict


BREAKFIX = breakfix.check(FAULTS, cluster_ip_works)


LAB = Lab(
    id=LAB_ID,
    title="ClusterIP and KUBE-SVC probabilities",
    checks=(
        _answer("q1-printed", "check-q1", "question 1: what iptables prints", Q1),
        Check("ex3-names", "check-ex3-names", 2, "chain names the kube-proxy way",
              check_chain_names),
        Check("ex3-cascade", "check-ex3-cascade", 2, "the probability cascade in the kernel",
              check_cascade),
        Check("ex3-spread", "check-ex3-spread", 4, "connections spread evenly", check_spread),
        _answer("q2-conntrack", "check-q2", "question 2: packets through the nat table", Q2),
        _answer("q3-established", "check-q3", "question 3: an established connection", Q3),
        Check("ex4-not-ready", "check-ex4-not-ready", 3, "a not-ready pod gets no connection",
              check_not_ready),
        Check("ex5-affinity", "check-ex5-affinity", 3, "sessionAffinity ClientIP",
              check_affinity),
        _answer("q4-capture", "check-q4", "question 4: who answers pod d", Q4),
        Check("ex6-by-hand", "check-ex6-by-hand", 2, "a Service by hand, with iptables",
              check_by_hand),
        Check("ex7-breakfix", "check-ex7-breakfix", 3, "break/fix: a broken ClusterIP",
              BREAKFIX),
    ),
    reference=("course.kubeproxy.Proxier", "course.kubeproxy.proxier"),
    reference_allowed=(
        "course.kubeproxy.proxier.ensure_jump_rules",
        "course.kubeproxy.proxier.get_chains_from_table",
    ),
)  # fmt: skip
