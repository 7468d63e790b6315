"""Checks of lab 07 "NodePort, masquerade and hairpin": who sees whose address, on the wire.

The lab cluster is `course.nodeport`: node1 (192.168.1.11) with pods a and dns, node2
(192.168.1.12) with the web pods b and c, the router and the outside client 203.0.113.10.
kube-proxy (`course.kubeproxy`) writes every rule on both nodes except the two chains the
learner writes: KUBE-MARK-MASQ and KUBE-POSTROUTING.

Every check sends tagged connections (`grader.nodeport_checks`: a unique line per
connection, sniffers at the receiving pods and at the client) and reads which pod got
each one, the source address **the pod saw**, and what came back to the client; where it
matters it reads node1's conntrack and nat table. A failure names the reply's source as
seen at the client or the pod, what was expected, and a hint.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

from course.addressing import CLIENT_IP, node_ip, pod_gateway
from course.dns import KUBE_DNS_IP, query_from
from course.faults.lab07 import CATALOGUE
from course.kernel import Netns
from grader import breakfix, journey
from grader.labs import Check, CheckContext, Lab
from grader.labs.common import answer_check, fail, judged, open_ns, question
from grader.nodeport_checks import (
    CtEntry,
    Place,
    Probe,
    conntrack_entries,
    entry_for,
    hairpin_journey,
    nat_journey,
    probes_from,
)
from grader.verdict import Verdict

LAB_ID = "07-nodeport-masquerade"
NODE1, NODE2 = node_ip(1), node_ip(2)
PODS = {"a": "10.244.1.2", "dns": "10.244.1.3", "b": "10.244.2.2", "c": "10.244.2.3"}
ROLES = {"a": "node1-a", "dns": "node1-dns", "b": "node2-b", "c": "node2-c"}
WEB_PORT, LOCAL_PORT = 30080, 30081
SELF_VIP = "10.96.0.30"  # Service `a`: pod a's own Service
MARK = "0x4000"
HEADLESS = "web-headless.default.svc.cluster.local"
WEB_PODS_AFTER_JOIN = ("a", "b", "c")  # the headless check runs after pod a joined `web`


# --- reading the lab ---------------------------------------------------------------------------
def nat_rules(node: Netns) -> dict[str, list[list[str]]]:
    """`iptables-save -t nat` as chain -> rules (each rule's words after `-A CHAIN`)."""
    chains: dict[str, list[list[str]]] = {}
    for line in node.iptables_save("nat").splitlines():
        if line.startswith(":"):
            chains.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            words = shlex.split(line)
            chains.setdefault(words[1], []).append(words[2:])
    return chains


def show(rules: list[list[str]]) -> str:
    return "; ".join(shlex.join(r) for r in rules) or "no rule"


def opt(words: list[str], flag: str) -> str | None:
    return next((words[i + 1] for i in range(len(words) - 1) if words[i] == flag), None)


def pod_name(ip: str) -> str:
    for name, addr in PODS.items():
        if addr == ip:
            return f"pod {name} ({ip})"
    return ip


def story(probes: list[Probe]) -> str:
    """Per probe: where it landed, the source the pod saw, what came back to the client."""
    parts = []
    for p in probes:
        arrived = p.tagged_arrival()
        syns = p.syn_arrivals()
        if p.connected and arrived is not None:
            parts.append(
                f"{p.tag}: {arrived.place} saw it from {arrived.src}, and answered "
                f"{p.answer.pod!r} back to the client"
            )
            continue
        where = (
            f"{syns[0].place} got the SYN from {syns[0].src}"
            if syns
            else "no pod received anything"
        )
        back = sorted({f"{s.src}:{s.sport}" for s in p.replies_at_client()})
        replies = (
            f"the client got a SYN-ACK from {', '.join(back)}"
            if back
            else "nothing came back to the client"
        )
        parts.append(f"{p.tag}: {where}; {replies} ({p.answer.error or 'no answer'})")
    return " | ".join(parts)


def from_client(
    ctx: CheckContext, node: str, port: int, count: int = 3, pods: str = "bc"
) -> list[Probe]:
    """Tagged connections from the client, watched at the client and at `pods` (the
    Service's pods at that point of the lab: b and c)."""
    client = open_ns(ctx, "client")
    places = [Place("client", client)] + [
        Place(f"pod {n}", open_ns(ctx, ROLES[n]), ip=PODS[n]) for n in pods
    ]
    return probes_from(client, node, port, places, count=count, timeout=1.5)


CheckFn = Callable[[CheckContext], Verdict]


def followed(port: int) -> Callable[[CheckFn], CheckFn]:
    """After the check, one SYN from the client to node1:`port`, drawn hop by hop under the
    verdict (passing or failing): every interface it crossed, with the addresses before
    and after node1's DNAT and masquerade, and the reply's way back (through node1, or
    around it), or where it stopped. It is a picture of the same path and never changes
    the verdict."""

    def wrap(check: CheckFn) -> CheckFn:
        def run(ctx: CheckContext) -> Verdict:
            verdict = check(ctx)
            if verdict.journey:  # the check drew the path that failed itself
                return verdict
            try:
                nodes = [open_ns(ctx, "node1"), open_ns(ctx, "node2")]
                trip = nat_journey(ctx, open_ns(ctx, "client"), NODE1, port, nodes)
            except Exception:
                return verdict
            return journey.attach(verdict, trip)  # type: ignore[no-any-return]

        run.__name__, run.__doc__ = check.__name__, check.__doc__
        return run

    return wrap


with_nodeport_journey = followed(WEB_PORT)


# --- exercise 1: mark and masquerade -----------------------------------------------------------
def _marks(rules: list[list[str]]) -> list[str]:
    """The marks KUBE-MARK-MASQ sets, as iptables prints them (`--set-xmark M/M`)."""
    return [opt(r, "--set-xmark") or opt(r, "--or-mark") or "" for r in rules if "MARK" in r]


def diagnose_masquerade(chains: dict[str, list[list[str]]]) -> tuple[str, str]:
    """(summary, hint) for the first thing wrong in node1's mark-and-masquerade rules."""
    ext = [c for c in chains if c.startswith("KUBE-EXT-")]
    ext_rules = [r for c in ext for r in chains[c]]
    if ext and not any(opt(r, "-j") == "KUBE-MARK-MASQ" for r in ext_rules):
        return (
            "KUBE-EXT does not send NodePort traffic to KUBE-MARK-MASQ",
            f"put `-j KUBE-MARK-MASQ` back as the first rule of {ext[0]}: without the mark, "
            "KUBE-POSTROUTING lets the packet leave with the client's address",
        )
    mark_rules = chains.get("KUBE-MARK-MASQ", [])
    marks = _marks(mark_rules)
    if not marks:
        return (
            "KUBE-MARK-MASQ marks nothing",
            f"KUBE-MARK-MASQ holds one rule: `-j MARK --or-mark {MARK}` (kube-proxy's mark bit "
            "14); the chains that jump to it rely on it to set the mark",
        )
    if any(m.split("/")[0] != MARK for m in marks):
        return (
            f"KUBE-MARK-MASQ sets the mark {marks[0]}, not {MARK}",
            f"kube-proxy's masquerade mark is {MARK} (bit 14, --iptables-masquerade-bit); "
            "KUBE-POSTROUTING and KUBE-FORWARD test that bit, so every chain must agree",
        )
    post = chains.get("KUBE-POSTROUTING", [])
    if not any(opt(r, "-j") == "MASQUERADE" for r in post):
        return (
            "KUBE-POSTROUTING never masquerades",
            "end KUBE-POSTROUTING with `-j MASQUERADE` (kube-proxy adds --random-fully): marking "
            "a packet only asks for the SNAT, this rule does it",
        )
    first = post[0]
    returns = opt(first, "-j") == "RETURN" and "!" in first and opt(first, "--mark")
    if not returns or (opt(first, "--mark") or "").split("/")[0] != MARK:
        return (
            "KUBE-POSTROUTING does not let unmarked packets through untouched",
            f"the first rule must be `-m mark ! --mark {MARK}/{MARK} -j RETURN`: only marked "
            "packets are masqueraded, everything else (pod to pod) keeps its source",
        )
    if not any(opt(r, "--set-xmark") == f"{MARK}/0x0" for r in post):
        return (
            "KUBE-POSTROUTING does not clear the mark before masquerading",
            f"add `-j MARK --xor-mark {MARK}` between the RETURN and the MASQUERADE: a packet "
            "that passes the stack again must not be masqueraded twice",
        )
    return "", ""


@with_nodeport_journey
@judged
def check_masquerade(ctx: CheckContext) -> Verdict:
    """client -> node1:30080 lands on pod b or c, which sees node1's address, and node1's
    conntrack shows DNAT and SNAT; the same through node2 (kube-proxy writes its chains on
    every node: there the pods see node2's cni0 address); pod-to-pod traffic keeps its
    source; the rules are kube-proxy's on both nodes."""
    sent1, observed1 = through_node(ctx, 1)
    sent2, observed2 = through_node(ctx, 2)
    pod_to_pod(ctx)
    for n, sent, observed in ((1, sent1, observed1), (2, sent2, observed2)):
        summary, hint = diagnose_masquerade(nat_rules(open_ns(ctx, f"node{n}")))
        if summary:  # the packets work, but the rules are not kube-proxy's
            raise fail(f"{_on(n)}{summary}", sent=f"{sent}; read `iptables-save -t nat` in "
                       f"node{n}", observed=observed, expected="kube-proxy's KUBE-MARK-MASQ "
                       "and KUBE-POSTROUTING", hint=hint)  # fmt: skip
    return Verdict.ok(
        f"NodePort through node1: the pods saw {NODE1}; conntrack holds DNAT and SNAT "
        f"(through node2 they saw {pod_gateway(2)})",
        sent=f"{sent1}; {sent2}",
        observed=f"{observed1} || {observed2}",
    )


def _on(n: int) -> str:
    """Node 1 is the exercise's main subject: its messages carry no prefix."""
    return "" if n == 1 else f"node{n}: "


def through_node(ctx: CheckContext, n: int) -> tuple[str, str]:
    """Tagged connections from the client to node N's NodePort: every one answered by pod b
    or c, which saw node N's address on the interface the packet left by (node1: eth0,
    192.168.1.11; node2: cni0, 10.244.2.1, b and c being its own pods); node N's conntrack
    holds both translations of each. Returns (sent, observed) for the final verdict."""
    node = open_ns(ctx, f"node{n}")
    ip, want = node_ip(n), (NODE1 if n == 1 else pod_gateway(2))
    probes = from_client(ctx, ip, WEB_PORT)
    sent = (
        f"{len(probes)} tagged TCP connections from the client ({CLIENT_IP}) to "
        f"node{n} {ip}:{WEB_PORT}, captured at pods b, c and at the client"
    )
    observed = story(probes)
    summary, hint = diagnose_masquerade(nat_rules(node))
    bad = [p for p in probes if not p.connected or p.answer.seen != want]
    if bad:
        if n != 1:
            hint = (hint + ". " if hint else "") + (
                "kube-proxy runs on every node: write the two chains on node2 too "
                "(`ip netns exec $RUN-node2 iptables -t nat ...`)"
            )
        raise fail(
            f"{_on(n)}{summary}" if summary else f"the NodePort does not answer through node{n}",
            sent=sent,
            observed=observed,
            expected=f"every connection answered by pod b or c, which saw it come from node{n} "
            f"({want}); the client's replies come from {ip}:{WEB_PORT}",
            hint=hint
            or f"follow one probe: `iptables -t nat -L -v -n` counters on node{n}, "
            f"`conntrack -L` on node{n}",
        )
    entries = conntrack_entries(node, "--orig-port-dst", str(WEB_PORT))
    missing = [p.tag for p in probes if not _both(entry_for(entries, CLIENT_IP, p.sport))]
    if missing:
        raise fail(
            f"node{n}'s conntrack does not show both translations",
            sent=sent + f"; read `conntrack -L --orig-port-dst {WEB_PORT}` in node{n}",
            observed=f"no DNAT+SNAT entry for {', '.join(missing)}: "
            + " / ".join(e.line for e in entries[:3]),
            expected=f"src={CLIENT_IP} dst={ip} ... dport={WEB_PORT} and the reply side "
            f"src=<pod> dst={want}",
            hint="the conntrack entry is made by the first packet; run the check again",
        )
    return sent, observed


def _both(entry: CtEntry | None) -> bool:
    return entry is not None and entry.dnat and entry.snat


def pod_to_pod(ctx: CheckContext) -> None:
    """pod a -> pod b directly: b must see a's own address (nothing marked, nothing SNATed)."""
    a = open_ns(ctx, ROLES["a"])
    places = [Place("pod b", open_ns(ctx, ROLES["b"]), ip=PODS["b"])]
    (p,) = probes_from(a, PODS["b"], 8080, places, 1)
    if p.connected and p.answer.seen == PODS["a"]:
        return
    raise fail(
        "pod-to-pod traffic is masqueraded too",
        sent=f"a tagged connection from pod a ({PODS['a']}) to pod b {PODS['b']}:8080",
        observed=story([p]),
        expected=f"pod b sees pod a's own address {PODS['a']}",
        hint=f"KUBE-POSTROUTING must start with `-m mark ! --mark {MARK}/{MARK} -j RETURN`: "
        "without it every forwarded packet is masqueraded, and pods lose each other's addresses",
    )


# --- exercise 2: externalTrafficPolicy Local ------------------------------------------------------
@judged
def check_local(ctx: CheckContext) -> Verdict:
    """web-local (30081, eTP Local): via node2 the pod sees the client; via node1 dropped."""
    node1 = open_ns(ctx, "node1")
    via2 = from_client(ctx, NODE2, LOCAL_PORT)
    sent2 = f"3 tagged connections from the client to node2 {NODE2}:{LOCAL_PORT}"
    if not all(p.connected for p in via2):
        raise fail(
            f"nothing answers on node2:{LOCAL_PORT}",
            sent=sent2,
            observed=story(via2),
            expected=f"pod b or c answers, having seen the client's own address {CLIENT_IP}",
            hint="apply the Service web-local: type NodePort, nodePort 30081, selector app: web",
        )
    seen = sorted({p.answer.seen or "" for p in via2})
    if seen != [CLIENT_IP]:
        raise fail(
            "the pods do not see the client's address",
            sent=sent2,
            observed=story(via2),
            expected=f"the pods see {CLIENT_IP}: with externalTrafficPolicy Local nothing is "
            "masqueraded",
            hint=f"the pods saw {', '.join(seen)}, an address of node2 (10.244.2.1 is its "
            "cni0): node2 masqueraded, so the Service still has externalTrafficPolicy "
            "Cluster. Set `externalTrafficPolicy: Local`",
        )
    via1 = from_client(ctx, NODE1, LOCAL_PORT, count=2)
    sent1 = f"2 tagged connections from the client to node1 {NODE1}:{LOCAL_PORT}"
    reached = [p for p in via1 if p.connected or p.syn_arrivals()]
    if reached:
        raise fail(
            "node1 forwards web-local traffic although it has no web pod",
            sent=sent1,
            observed=story(via1),
            expected="no pod receives anything and the client gets no answer: node1 drops it",
            hint="with externalTrafficPolicy Local a node only uses its own endpoints; node1 "
            "has none, so kube-proxy drops (filter KUBE-EXTERNAL-SERVICES, 'has no local "
            "endpoints')",
        )
    resets = sorted(
        {s.src for p in via1 for s in p.at("client") if "R" in s.flags and s.src == NODE1}
    )
    if resets:
        raise fail(
            "node1 refuses web-local connections instead of dropping them",
            sent=sent1,
            observed=story(via1) + f"; the client got a TCP RST from {resets[0]}",
            expected="silence: node1 drops the SYN, so the client (or a load balancer's "
            "health check) learns nothing is served there",
            hint="kube-proxy writes `-A KUBE-EXTERNAL-SERVICES ... --dst-type LOCAL ... --dport "
            "30081 -j DROP` (comment 'has no local endpoints') in node1's filter table; "
            "without it the SYN falls through to node1 itself, where nothing listens",
        )
    drop = _has_local_drop(node1)
    return Verdict.ok(
        f"eTP Local: via node2 the pods saw {CLIENT_IP}; via node1 (no web pod) dropped",
        sent=f"{sent2}; {sent1}",
        observed=f"{story(via2)} || {story(via1)}" + (f" || node1: {drop}" if drop else ""),
    )


def _has_local_drop(node: Netns) -> str:
    text = node.iptables_save("filter")
    return next((ln for ln in text.splitlines() if "has no local endpoints" in ln), "")


# --- exercise 3: hairpin -------------------------------------------------------------------------
@judged
def check_hairpin(ctx: CheckContext) -> Verdict:
    """pod a -> its own Service 10.96.0.30:80 -> itself, seeing node1's bridge address."""
    a = open_ns(ctx, ROLES["a"])
    node1 = open_ns(ctx, "node1")
    (p,) = probes_from(a, SELF_VIP, 80, [Place("pod a", a, ip=PODS["a"])], count=1, timeout=1.0)
    sent = f"a tagged connection from pod a ({PODS['a']}) to its own Service {SELF_VIP}:80"
    back = [s for s in p.segments if s.dst == PODS["a"] and s.dport == 8080 and s.flags == "S"]
    gateway = pod_gateway(1)
    trip = hairpin_journey(p, "a", PODS["a"], gateway, "node1")  # the loop, drawn
    if p.connected and p.answer.seen == gateway:
        return journey.attach(
            Verdict.ok(
                f"pod a reached itself through its Service and saw {gateway}",
                sent=sent,
                observed=f"pod a's server saw the connection come from {gateway} (node1's cni0)",
            ),
            trip,
        )
    if not back:
        raise journey.attach(
            fail(
                "the SYN never came back into pod a",
                sent=sent,
                observed="pod a's eth0 saw its SYN leave towards the Service; no SYN came back in",
                expected=f"the DNATed SYN back in through pod a's eth0, from {gateway}",
                hint="after the DNAT the frame must leave the bridge by the port it came in on: "
                "the bridge refuses that unless the port has hairpin mode (`bridge -d link show`, "
                "`bridge link set dev <veth> hairpin on`)",
            ),
            trip,
        )
    src = back[0].src
    entries = conntrack_entries(node1, "--orig-dst", SELF_VIP)
    unreplied = any("UNREPLIED" in e.line for e in entries)
    raise journey.attach(
        fail(
            "pod a answered itself directly, not through node1",
            sent=sent,
            observed=f"the SYN came back into pod a from {pod_name(src)}, its own address"
            + ("; node1's conntrack entry stays [UNREPLIED]" if unreplied else ""),
            expected=f"the SYN back from {gateway}: masqueraded, so the answer returns through node1",
            hint=f"a packet from {PODS['a']} to itself must be masqueraded: KUBE-SEP's first rule "
            f"`-s {PODS['a']}/32 -j KUBE-MARK-MASQ`, and your KUBE-MARK-MASQ/KUBE-POSTROUTING",
        ),
        trip,
    )


# --- exercise 4: headless --------------------------------------------------------------------------
@judged
def check_headless(ctx: CheckContext) -> Verdict:
    """web-headless: no rule on any node; DNS answers with the ready web pods; no NAT."""
    sent = f"read `iptables-save -t nat` in node1 and node2; asked {KUBE_DNS_IP} for {HEADLESS}"
    for role in ("node1", "node2"):
        lines = sorted(
            (
                ln
                for ln in open_ns(ctx, role).iptables_save("nat").splitlines()
                if "default/web-headless" in ln
            ),
            key=lambda ln: not ln.startswith("-A KUBE-SERVICES"),
        )
        if lines:
            raise fail(
                f"{role} has kube-proxy rules for web-headless",
                sent=sent,
                observed="; ".join(lines[:3]),
                expected="no rule at all: a headless Service has no ClusterIP for kube-proxy",
                hint="set `clusterIP: None` in the Service (a headless Service gets no virtual "
                "IP, no KUBE-SVC chain; DNS hands out the pods' own addresses)",
            )
    a = open_ns(ctx, ROLES["a"])
    try:
        answer = sorted(query_from(a, HEADLESS, timeout=4.0))
    except Exception as exc:  # the DNS pod or the kube-dns Service is broken
        raise fail(
            f"no DNS answer for {HEADLESS}",
            sent=sent,
            observed=str(exc).splitlines()[0],
            expected=f"A records from {KUBE_DNS_IP}",
            hint="the DNS pod answers behind the kube-dns Service; was the lab rebuilt?",
        ) from None
    want = sorted(PODS[n] for n in WEB_PODS_AFTER_JOIN)
    if answer != want:
        shown = ", ".join(pod_name(ip) for ip in answer) or "no A record"
        hint = "a headless Service's name resolves to its ready pods, one A record each"
        if answer and not set(answer) & set(PODS.values()):
            hint = (
                "the name resolves to a virtual IP: the Service is not headless (clusterIP: None)"
            )
        elif not answer:
            hint = "apply the Service web-headless (selector app: web, port 8080, clusterIP: None)"
        raise fail(
            f"{HEADLESS} does not resolve to the web pods",
            sent=sent,
            observed=f"DNS answered {shown}",
            expected=", ".join(pod_name(ip) for ip in want),
            hint=hint,
        )
    direct = connect_directly(ctx, answer)
    return Verdict.ok(
        "web-headless: no kube-proxy rule, DNS answers with the ready pods, reached directly",
        sent=f"{sent}; a tagged connection from pod dns to each address, node1's conntrack read",
        observed=f"DNS answered {', '.join(pod_name(ip) for ip in answer)} || {direct}",
    )


def connect_directly(ctx: CheckContext, addresses: list[str]) -> str:
    """What a client does with a headless answer: pod dns connects to each pod address. Each
    pod must see pod dns's own address, and node1's conntrack must hold no translation."""
    dns, node1 = open_ns(ctx, ROLES["dns"]), open_ns(ctx, "node1")
    places = [Place(f"pod {n}", open_ns(ctx, ROLES[n]), ip=PODS[n]) for n in WEB_PODS_AFTER_JOIN]
    probes = [probes_from(dns, ip, 8080, places, 1, 1.5)[0] for ip in addresses]
    entries = conntrack_entries(node1, "--orig-src", PODS["dns"], "--orig-port-dst", "8080")
    found = [entry_for(entries, PODS["dns"], p.sport) for p in probes]
    nat = [e.line for e in found if e is not None and (e.dnat or e.snat)]
    observed = story(probes)
    if nat or not all(p.connected and p.answer.seen == PODS["dns"] for p in probes):
        raise fail(
            "connections to the pods' own addresses are not direct",
            sent=f"a tagged connection from pod dns ({PODS['dns']}) to each address DNS gave, "
            "port 8080; read node1's conntrack",
            observed=observed + (f"; node1's conntrack: {' / '.join(nat[:2])}" if nat else ""),
            expected=f"each pod answers, having seen pod dns's own address {PODS['dns']}, and "
            "node1's conntrack entries show no translation (reply side = original side)",
            hint="a connection to a pod address matches no Service rule; if a pod saw another "
            "address, something masquerades pod-to-pod traffic: KUBE-POSTROUTING must RETURN "
            f"unmarked packets (`-m mark ! --mark {MARK}/{MARK} -j RETURN`)",
        )
    return observed + "; node1's conntrack: no translation"


# --- exercise 5: break/fix -----------------------------------------------------------------------
def nodeport_path_works(ctx: CheckContext) -> Verdict:
    """The paths the faults break: client -> node1:30080, pod a -> itself through
    10.96.0.30, pod dns -> pod a through 10.96.0.30 (across node1's bridge); and one a
    wrong repair breaks: pod dns -> node2:30080, translated by node2 (not node1)."""
    via1 = from_client(ctx, NODE1, WEB_PORT, pods="abc")
    # pod a (on node1 itself, once it joined `web`) sees node1's cni0 address instead
    want = {"a": pod_gateway(1), "b": NODE1, "c": NODE1}
    if not all(p.connected and p.answer.seen == want.get(p.answer.pod or "") for p in via1):
        return Verdict.fail(
            f"the client does not get through node1:{WEB_PORT}",
            sent=f"3 tagged connections from the client to node1 {NODE1}:{WEB_PORT}",
            observed=story(via1),
            expected=f"each answered by a web pod, which saw node1's address ({NODE1} from "
            f"node2's pods, {pod_gateway(1)} from pod a)",
            hint="",
        )
    a, dns = open_ns(ctx, ROLES["a"]), open_ns(ctx, ROLES["dns"])
    broken = passes_node1_by(ctx, dns)
    if broken is not None:
        return broken
    for sender, who, seen in ((a, "pod a", pod_gateway(1)), (dns, "pod dns", PODS["dns"])):
        (p,) = probes_from(sender, SELF_VIP, 80, [Place("pod a", a, ip=PODS["a"])], 1, 1.0)
        if not (p.connected and p.answer.seen == seen):
            failed = Verdict.fail(
                f"{who} does not reach pod a through {SELF_VIP}:80",
                sent=f"a tagged connection from {who} to the Service {SELF_VIP}:80",
                observed=story([p]),
                expected=f"pod a answers, having seen {seen}",
                hint="",
            )
            if sender is a:  # the hairpin loop as pod a's eth0 saw it (shown instead)
                journey.attach(failed, hairpin_journey(p, "a", PODS["a"], seen, "node1"))
            return failed
    return Verdict.ok(
        "the client gets through node1, pods a and dns reach pod a through its Service, "
        "and node1 leaves node2's NodePort to node2",
        sent=f"tagged connections: client -> {NODE1}:{WEB_PORT}; pod dns -> {NODE2}:{WEB_PORT}; "
        f"pods a and dns -> {SELF_VIP}:80",
        observed=story(via1),
    )


def passes_node1_by(ctx: CheckContext, dns: Netns) -> Verdict | None:
    """pod dns (on node1) -> node2:30080 must pass node1 untranslated: node2's NodePort.

    node1 routes the SYN on untouched: 192.168.1.12 is not one of its own addresses, which
    is what the `-m addrtype --dst-type LOCAL` of KUBE-SERVICES' last rule tests. A jump to
    KUBE-NODEPORTS put back without it takes every packet to port 30080, whatever its
    destination: node1 translates it itself. node1's conntrack entry of the connection
    tells (its reply side comes from a pod instead of 192.168.1.12), whether or not the
    connection then works (that depends on node2's masquerade, exercise 1's business). The
    jump's place in the chain changes no packet in this lab (no Service has an external IP
    on a node), so only the addrtype is proven here.
    """
    node1 = open_ns(ctx, "node1")
    places = [Place(f"pod {n}", open_ns(ctx, ROLES[n]), ip=PODS[n]) for n in "abc"]
    (p,) = probes_from(dns, NODE2, WEB_PORT, places, 1, 1.5)
    entries = conntrack_entries(node1, "--orig-dst", NODE2, "--orig-port-dst", str(WEB_PORT))
    entry = entry_for(entries, PODS["dns"], p.sport)
    if entry is not None and not entry.dnat:
        return None
    seen = f"node1's conntrack: {entry.line}" if entry else "node1's conntrack has no entry"
    return Verdict.fail(
        f"pod dns's connection to node2:{WEB_PORT} is translated by node1",
        sent=f"a tagged connection from pod dns ({PODS['dns']}) to node2 {NODE2}:{WEB_PORT}; "
        f"read `conntrack -L --orig-dst {NODE2}` in node1",
        observed=f"{story([p])}; {seen}",
        expected=f"node1 routes it to node2 unchanged (reply side src={NODE2} sport={WEB_PORT}): "
        "192.168.1.12 is not node1's address, so node1's NodePort rules must not touch it",
        hint="",
    )


CHECK_BREAKFIX = breakfix.check(CATALOGUE, with_nodeport_journey(nodeport_path_works))


# --- predict, then observe --------------------------------------------------------------------------
Q1 = question(
    "q1",
    "b",
    "Without SNAT the pod answers the client directly, from its own address: the client "
    "never talked to 10.244.2.x, so its kernel answers that SYN-ACK with a RST.",
    "one of 'a', 'b', 'c', 'd'",
    why={
        "a": "only node1 could turn the pod's address back into 192.168.1.11:30080 (its "
        "conntrack entry holds the DNAT), and without SNAT the reply never passes node1: the "
        "pod answers 203.0.113.10 directly, and node2 sends that out by its default route.",
        "c": "node2 has no reason to drop it: the SYN arrives already translated, for "
        "10.244.2.x:8080, a pod on its own cni0, and it forwards it there whatever the source.",
        "d": "node2 translated nothing in this connection: node1 did the DNAT, so only node1 "
        "could undo it. The pod answers from its own address, and node2 routes the reply "
        "unchanged.",
    },
)
Q2 = question(
    "q2",
    "b",
    "DNAT happens in PREROUTING, before routing (so routing sees the pod's address); SNAT "
    "happens in POSTROUTING, after it.",
    "one of 'a', 'b', 'c'",
    why={
        "a": "the DNAT comes before the routing decision: KUBE-SEP's rule runs in nat "
        "PREROUTING, so routing already sees the pod's address (that is how it knows to send "
        "the SYN to node2 at all).",
        "c": "MASQUERADE runs in nat POSTROUTING, after the routing decision: it uses the "
        "address of the interface routing chose, so it cannot happen before that choice.",
    },
)
Q3 = question(
    "q3",
    "b",
    "node1 has no web pod; with externalTrafficPolicy Local kube-proxy drops the packet "
    "there instead of forwarding it (and masquerading it) to node2.",
    "one of 'a', 'b', 'c'",
    why={
        "a": "that is externalTrafficPolicy: Cluster. With Local, a node sends NodePort "
        "traffic only to its own endpoints and never masquerades it; node1 has none, so "
        "kube-proxy drops the SYN ('has no local endpoints').",
        "c": "kube-proxy REJECTs only a Service with no endpoints at all (and then with ICMP "
        "port unreachable, not a RST); this one has endpoints on node2, so it DROPs the SYN "
        "in the filter table, before node1's TCP stack could answer for the closed port.",
    },
)
Q4 = question(
    "q4",
    "10.244.1.1",
    "The hairpin packet is masqueraded to node1's address on cni0, the interface it leaves "
    "by: 10.244.1.1.",
    "an IPv4 address as a string, like '10.0.0.1'",
    why={
        "10.244.1.2": "pod a's own address is what the server would see without SNAT, and "
        "then pod a would answer itself directly, bypassing node1's conntrack, and the "
        "connection fails. kube-proxy's hairpin rule marks it for masquerade.",
        "10.96.0.30": "the Service address is only ever a destination: the DNAT replaces it "
        "with pod a's address; the source is rewritten by the masquerade.",
        "192.168.1.11": "MASQUERADE takes an address of the interface the packet leaves by, "
        "and a hairpin packet leaves by cni0 (10.244.1.1/24), not by eth0.",
    },
    why_other="the hairpin packet is masqueraded (source = endpoint): read the address node1 "
    "has on the interface the packet leaves by.",
)

Q5 = question(
    "q5",
    "b",
    "Without the masquerade the SYN comes back into pod a from 10.244.1.2, pod a itself: its "
    "SYN-ACK goes to its own address, inside the pod, and never reaches node1, whose conntrack "
    "would have turned 10.244.1.2:8080 back into 10.96.0.30:80. The connecting socket never "
    "hears from 10.96.0.30, and node1's entry stays [UNREPLIED].",
    "one of 'a', 'b', 'c'",
    why={
        "a": "the server does see 10.244.1.2, but its answer is addressed to 10.244.1.2, an "
        "address of pod a's own namespace: the kernel delivers it there directly, it never "
        "passes node1, so nothing turns 10.244.1.2:8080 back into 10.96.0.30:80, and the socket "
        "that connected to 10.96.0.30 does not recognise it.",
        "c": "hairpin mode is about the port a frame leaves the bridge by, not about its "
        "addresses: with it on, the bridge sends the SYN back into pod a whatever its source. "
        "What goes wrong comes after, with the answer.",
    },
)


LAB = Lab(
    id=LAB_ID,
    title="NodePort, masquerade and hairpin",
    checks=(
        answer_check("q1-no-snat", "check-q1", "question 1: the reply without masquerade", Q1),
        Check("ex1-masquerade", "check-ex1-masquerade", 4,
              "mark and masquerade: the NodePort works through node1", check_masquerade),
        answer_check("q2-trace", "check-q2", "question 2: addresses after routing", Q2),
        answer_check("q3-local", "check-q3", "question 3: eTP Local on a node without pods", Q3),
        Check("ex2-local", "check-ex2-local", 3, "externalTrafficPolicy Local", check_local),
        answer_check("q4-hairpin", "check-q4", "question 4: the address a hairpin pod sees", Q4),
        Check("ex3-hairpin", "check-ex3-hairpin", 3, "hairpin: a pod reaches itself",
              check_hairpin),
        answer_check("q5-hairpin-masq", "check-q5", "question 5: hairpin without masquerade",
                     Q5),
        Check("ex4-headless", "check-ex4-headless", 3, "a headless Service", check_headless),
        Check("ex5-breakfix", "check-ex5-breakfix", 3, "break/fix: the NodePort path",
              CHECK_BREAKFIX),
    ),
    # the lab's kube-proxy leaves the masquerade chains to the learner: building another
    # one (with kube-proxy's own KUBE-MARK-MASQ/KUBE-POSTROUTING) in an exercise scores zero
    reference=("course.kubeproxy",),
)  # fmt: skip
