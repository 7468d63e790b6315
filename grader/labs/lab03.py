"""Checks of lab 03 "across nodes": VXLAN by hand, MTU, BGP with BIRD, the underlay, break/fix.

The lab cluster: node1 (192.168.1.11) and node2 (192.168.1.12) share the node subnet
192.168.1.0/24; node3 (192.168.2.13) sits on 192.168.2.0/24 behind the router. Pods a, b
(node1), c, d (node2), e, f (node3) sit on each node's `cni0` bridge. Every check sends real
packets from a pod and captures the underlay while they travel, so it can say whether the
packet crossed wrapped in VXLAN (outer node IPs, UDP port, VNI) or as itself, and where it
was last seen. When something is wrong, it reads the kernel (devices, neighbour and FDB
entries, routes, sysctls) or BIRD (`birdc show protocols all`) to say why.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from course.addressing import pod_ip
from course.kernel import Netns
from course.podnet import bgp
from course.podnet.vxlan import DEVICE, PORT, VNI, device_info
from grader.encap import WirePacket, about, sniff_wire_while
from grader.labs import Check, CheckContext, Lab
from grader.labs.common import Failed, fail, judged, question
from grader.labs.lab03_breakfix import CHECK as check_breakfix
from grader.probes import ProbeError, ping
from grader.verdict import Verdict

LAB_ID = "03-across-nodes"
NODE_IP = {1: "192.168.1.11", 2: "192.168.1.12", 3: "192.168.2.13"}
PODS = {1: ("a", "b"), 2: ("c", "d"), 3: ("e", "f")}
FLANNEL_MTU = 1450
UNDERLAY_PODS = {"u1": (1, "192.168.1.111"), "u2": (2, "192.168.1.121")}


# --- what the checks look at -----------------------------------------------------------------------
@dataclass
class NodeView:
    index: int
    ns: Netns

    @property
    def name(self) -> str:
        return f"node{self.index}"

    @property
    def ip(self) -> str:
        return NODE_IP[self.index]

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.index}.0/24"

    @property
    def vtep_gateway(self) -> str:
        return f"10.244.{self.index}.0"


def node(ctx: CheckContext, index: int) -> NodeView:
    ns = Netns(ctx.ns(f"node{index}"))
    if not ns.exists():
        raise fail(
            f"there is no node{index} namespace",
            sent=f"looked for namespace {ns.name}",
            observed="not found",
            expected="the lab cluster built by the setup cell",
            hint="run the setup cell at the top of the notebook, then the exercises in order",
        )
    return NodeView(index, ns)


def pod_ns(ctx: CheckContext, name: str) -> tuple[Netns, str]:
    index = next(n for n, names in PODS.items() if name in names)
    return Netns(ctx.ns(f"node{index}-{name}")), pod_ip(index, PODS[index].index(name))


def neigh_text(ns: Netns, ip: str, dev: str = DEVICE) -> str:
    out = ns.run(["ip", "neigh", "show", ip, "dev", dev], check=False).stdout.strip()
    return out or "no entry"


def route_text(ns: Netns, dst: str) -> str:
    r = ns.route_get(dst)
    if r is None:
        return f"`ip route get {dst}` -> no route"
    via = f" via {r['gateway']}" if r["gateway"] else ""
    return f"`ip route get {dst}` ->{via} dev {r['dev']}"


def wire_text(packets: list[WirePacket], port: str = "node1") -> str:
    if not packets:
        return f"nothing of this ping crossed the underlay (capture on the switch port {port})"
    shown = "; ".join(p.describe() for p in packets[:4])
    return f"on the underlay (switch port {port}): {shown}"


def sniffed_ping(ctx: CheckContext, src: str, dst_ip: str, **kw: Any) -> tuple[Any, list[Any]]:
    """Ping from pod `src` while capturing on the underlay switch port of the pod's node."""
    src_ns, _ = pod_ns(ctx, src)
    port = src_ns.name[len(ctx.prefix) + 1 :].split("-")[0]
    underlay = Netns(ctx.ns("underlay"))
    try:
        return sniff_wire_while(underlay, port, lambda: ping(src_ns, dst_ip, **kw))
    except ProbeError as exc:
        raise fail(
            f"could not probe from pod {src}",
            sent=f"a ping from {src_ns.name} to {dst_ip}",
            observed=str(exc),
            expected="the pod namespaces of the setup cell",
            hint="run the setup cell again, then the exercises in order",
        ) from None


# --- exercise 1: VXLAN by hand between node1 and node2 ------------------------------------------------
@dataclass(frozen=True)
class Seen:
    """One probe: what was sent and what the underlay showed. A verdict that explains its
    failure from the kernel's state opens with the wire, so the learner reads both at once."""

    sent: str
    wire: str

    def fail(self, summary: str, why: str, expected: str, hint: str) -> Failed:
        observed = f"{self.wire}. {why}"
        return fail(summary, sent=self.sent, observed=observed, expected=expected, hint=hint)


# Settings both ends of the tunnel must share: (key in device_info, flannel's value, the
# summary, what the receiving kernel does on a mismatch, expected, hint).
MUST_AGREE = (
    ("vni", VNI, "VNI mismatch: {me}'s {dev} uses VNI {mine}, {peer}'s uses VNI {theirs}",
     "A VXLAN packet is taken only by a device with the same VNI, so the receiving kernel "
     "drops it silently.", "VNI 1 on both ends (flannel's default network)",
     f"recreate the device whose VNI is not 1: ip link del {DEVICE}; ip link add {DEVICE} type "
     "vxlan id 1 ..."),
    ("port", PORT, "UDP port mismatch: {me}'s {dev} uses dstport {mine}, {peer}'s uses {theirs}",
     "The receiving kernel has no VXLAN socket on the port the packets are sent to: it answers "
     "ICMP port unreachable (or drops them).",
     "dstport 8472 on both ends (flannel keeps the kernel's default)",
     "recreate the device whose port is not 8472 with `dstport 8472`"),
)  # fmt: skip


def vxlan_device_problem(me: NodeView, peer: NodeView, seen: Seen) -> None:
    """flannel.1 on `me` must exist, match flanneld's settings, and agree with the peer's."""
    mine, theirs = device_info(me.ns), device_info(peer.ns)
    if mine is None or mine["kind"] != "vxlan":
        raise seen.fail(
            f"{me.name} has no VXLAN device {DEVICE}",
            f"`ip -d link show {DEVICE}` in {me.name}: no such device",
            f"{DEVICE}: vxlan id 1 local {me.ip} dev eth0 dstport 8472 nolearning, up",
            f"ip link add {DEVICE} type vxlan id 1 local {me.ip} dev eth0 dstport 8472 "
            "nolearning; then give it 10.244.N.0/32 and bring it up",
        )
    if not mine["up"]:
        raise seen.fail(
            f"{DEVICE} in {me.name} is DOWN",
            f"{DEVICE} in {me.name} is administratively down",
            f"{DEVICE} up on both nodes",
            f"ip link set {DEVICE} up (in {me.name})",
        )
    if mine["local"] != me.ip:
        raise seen.fail(
            f"{DEVICE} in {me.name} sends from {mine['local']}, not from its node IP",
            f"{DEVICE} in {me.name}: local {mine['local']}",
            f"local {me.ip}: the outer source address is the node's own IP",
            f"recreate {DEVICE} with `local {me.ip}`",
        )
    if theirs is None:
        return
    for key, want, summary, effect, expected, hint in MUST_AGREE:
        if mine[key] != theirs[key] or mine[key] != want:
            names = {"me": me.name, "peer": peer.name, "dev": DEVICE}
            text = summary.format(mine=mine[key], theirs=theirs[key], **names)
            raise seen.fail(text, effect, expected, hint)


def vxlan_entries_problem(me: NodeView, peer: NodeView, seen: Seen) -> None:
    """The three entries flanneld writes on `me` for `peer`, and forwarding."""
    peer_mac = (device_info(peer.ns) or {}).get("mac")
    neigh = {n["ip"]: n for n in me.ns.neighbours(DEVICE)}
    entry = neigh.get(peer.vtep_gateway)
    if entry is None or entry["mac"] != peer_mac or not entry["state"] & 0x80:
        raise seen.fail(
            f"{me.name} has no permanent neighbour entry for {peer.vtep_gateway}",
            f"In {me.name}: `ip neigh show {peer.vtep_gateway} dev {DEVICE}` "
            f"-> {neigh_text(me.ns, peer.vtep_gateway)}; {peer.name}'s VTEP MAC is {peer_mac}. "
            "Without it the kernel ARPs on the overlay, and nobody answers there.",
            f"{peer.vtep_gateway} lladdr {peer_mac} PERMANENT on {DEVICE}",
            f"ip neigh replace {peer.vtep_gateway} lladdr {peer_mac} dev {DEVICE} nud permanent",
        )
    fdb = {e["mac"]: e["dst"] for e in me.ns.fdb(DEVICE)}
    if fdb.get(peer_mac) != peer.ip:
        where = fdb.get(peer_mac)
        observed = (
            f"the FDB sends {peer_mac} to {where}"
            if where
            else f"`bridge fdb show dev {DEVICE}` has no entry for {peer_mac}: with learning "
            "off, the kernel does not know which node IP to send the frame to, so no UDP "
            f"leaves {me.name}"
        )
        raise seen.fail(
            f"{me.name}'s FDB does not map {peer.name}'s VTEP MAC to {peer.ip}",
            f"In {me.name}: {observed}.",
            f"{peer_mac} dst {peer.ip} self permanent on {DEVICE}",
            f"bridge fdb replace {peer_mac} dev {DEVICE} dst {peer.ip} self permanent",
        )
    route = me.ns.route_get(f"10.244.{peer.index}.2")
    if route is None or route["dev"] != DEVICE or route["gateway"] != peer.vtep_gateway:
        raise seen.fail(
            f"{me.name} does not route {peer.pod_cidr} into {DEVICE}",
            f"In {me.name}: {route_text(me.ns, f'10.244.{peer.index}.2')}",
            f"{peer.pod_cidr} via {peer.vtep_gateway} dev {DEVICE} onlink",
            f"ip route replace {peer.pod_cidr} via {peer.vtep_gateway} dev {DEVICE} onlink",
        )
    if me.ns.sysctl("net.ipv4.ip_forward") != "1":
        raise seen.fail(
            f"{me.name} does not forward",
            f"In {me.name}: net.ipv4.ip_forward = 0: a packet from a pod to "
            "another node must be routed by the node, from cni0 into flannel.1",
            "net.ipv4.ip_forward = 1 on every node",
            "sysctl -w net.ipv4.ip_forward=1",
        )


def overlay_path(ctx: CheckContext, src: str, dst: str, a: int, b: int) -> Verdict:
    """Ping pod `src` -> pod `dst` across nodes a -> b; both directions' state explains failures."""
    me, peer = node(ctx, a), node(ctx, b)
    _, dst_ip = pod_ns(ctx, dst)
    _, src_ip = pod_ns(ctx, src)
    obs, packets = sniffed_ping(ctx, src, dst_ip)
    flow = about(packets, src_ip, dst_ip)
    wire = wire_text(flow, me.name)
    sent = f"{obs.sent} from pod {src} ({src_ip}) to pod {dst} on {peer.name}"
    wrapped = [p for p in flow if p.encapsulated]
    if obs.ok and wrapped and len(wrapped) == len(flow):
        request = next((p for p in wrapped if p.inner_src == src_ip), wrapped[0])
        return Verdict.ok(
            f"pod {src} reaches pod {dst} through the overlay: {request.describe()}",
            sent=sent,
            observed=obs.describe(),
        )
    for me_, peer_ in ((me, peer), (peer, me)):
        vxlan_device_problem(me_, peer_, Seen(sent, wire))
        vxlan_entries_problem(me_, peer_, Seen(sent, wire))
    if obs.ok:
        raise fail(
            f"pod {src} reaches pod {dst}, but not through VXLAN",
            sent=sent,
            observed=wire,
            expected=f"UDP {me.ip} -> {peer.ip}:8472, VNI 1, carrying the pods' packet",
            hint=f"the route for {peer.pod_cidr} must point into {DEVICE}",
        )
    raise fail(
        f"pod {src} does not reach pod {dst}",
        sent=sent,
        observed=f"{obs.describe()} {wire}",
        expected="an echo reply through flannel.1 on both nodes",
        hint="compare both nodes' `ip -d link show flannel.1`, `ip neigh`, `bridge fdb`, `ip route`",
    )


@judged
def check_ex1_vxlan(ctx: CheckContext) -> Verdict:
    """a -> c and c -> a cross the underlay wrapped in UDP/8472, VNI 1, between node IPs."""
    there = overlay_path(ctx, "a", "c", 1, 2)
    back = overlay_path(ctx, "c", "a", 2, 1)
    return Verdict.ok(
        f"{there.summary}; and back: {back.summary.split(': ', 1)[-1]}",
        sent=there.sent,
        observed=there.observed,
    )


# --- exercise 2: the pods' MTU --------------------------------------------------------------------
def df_ping(ns: Netns, dst: str, payload: int) -> tuple[bool, str]:
    """`ping -M do -s PAYLOAD`: (answered, what ping printed) -- the kernel's own DF ping."""
    argv = ["ping", "-c1", "-W1", "-M", "do", "-s", str(payload), dst]
    out = ns.run(argv, check=False, timeout=10)
    text = " ".join((out.stdout + out.stderr).split())
    reason = re.search(r"(From \S+ .*?mtu = \d+\)|local error: message too long, mtu=\d+)", text)
    return out.returncode == 0, reason.group(1) if reason else text[-160:]


@judged
def check_ex2_mtu(ctx: CheckContext) -> Verdict:
    """Pods take flannel.1's MTU: 1422-byte DF pings pass, 1472 is refused inside the pod."""
    for src, dst in (("a", "c"), ("c", "a")):
        src_ns, _ = pod_ns(ctx, src)
        _, dst_ip = pod_ns(ctx, dst)
        sent = f"`ping -M do -s 1422` and `-s 1472` from pod {src} to pod {dst} ({dst_ip})"
        fits, why_small = df_ping(src_ns, dst_ip, 1422)
        mtu = src_ns.link("eth0")["mtu"]
        if not fits:
            too_small = "local error" in why_small and mtu < FLANNEL_MTU
            raise fail(
                f"a 1450-byte DF ping from pod {src} to pod {dst} failed",
                sent=sent,
                observed=f"1422-byte payload (1450 bytes of IP): {why_small}. "
                f"Pod {src}'s eth0 has MTU {mtu}"
                + (": the pod refuses packets the tunnel would carry" if too_small else ""),
                expected="1450 bytes fit flannel.1: an echo reply",
                hint=f"set MTU 1450, not {mtu}: flannel.1's MTU is the largest that fits"
                if too_small
                else "exercise 1's overlay must work first; then the pods' MTU must be 1450",
            )
        big, why_big = df_ping(src_ns, dst_ip, 1472)
        if big or "local error" not in why_big or mtu != FLANNEL_MTU:
            raise fail(
                f"pod {src} still sends 1500-byte packets into a 1450-byte tunnel",
                sent=sent,
                observed=f"1422: answered. 1472 (1500 bytes of IP): "
                f"{'answered' if big else why_big}. Pod {src}'s eth0 has MTU {mtu}: "
                + (
                    "the packet left the pod and the node had to refuse it"
                    if "local error" not in why_big
                    else "the pod refused only because it remembers an earlier "
                    "'fragmentation needed' from the node (a cached path MTU that expires)"
                ),
                expected="pod eth0 MTU 1450 (flannel's FLANNEL_MTU): the pod's own kernel "
                "refuses 1472 ('message too long, mtu=1450') and TCP picks a smaller MSS",
                hint="set MTU 1450 on every pod's eth0, its veth end on the node and cni0",
            )
    return Verdict.ok(
        "pods a and c use MTU 1450: 1450-byte DF pings cross the overlay, 1500-byte ones are "
        "refused inside the pod (message too long, mtu=1450)",
        sent="DF pings of 1450 and 1500 bytes of IP between pods a and c, both ways",
    )


# --- exercise 3: BGP with BIRD --------------------------------------------------------------------
def bird_running(ctx: CheckContext, me: NodeView, sent: str) -> bgp.Bird:
    bird = bgp.Bird.of(ctx.prefix, me.name, me.ns)
    if bird.running():
        return bird
    if bird.conf.exists():
        try:
            bgp.parse_check(bird.conf)
        except bgp.BirdConfigError as exc:
            raise fail(
                f"{me.name}'s BIRD config does not parse",
                sent=f"{sent}; `bird -p -c {bird.conf}`",
                observed=f"BIRD says: {exc}. Nothing was started.",
                expected="a config BIRD accepts, then BIRD running in node1",
                hint="fix the line BIRD names; compare with node2's config shown above",
            ) from None
    raise fail(
        f"BIRD is not running in {me.name}",
        sent=sent,
        observed=f"no BIRD process in {me.ns.name} (pid file {bird.pidfile})",
        expected="BIRD started with your config (bgp.setup_node(cluster, node1, config=...))",
        hint="run your exercise cell; it must not raise",
    )


def established(bird: bgp.Bird, name: str, wait: float = 6.0) -> dict[str, str] | None:
    """The session's state, polled for a few seconds: BIRD dials 1 s after it starts."""
    deadline = time.monotonic() + wait
    proto = bird.protocols().get(name)
    while proto is not None and proto.get("info") != "Established" and time.monotonic() < deadline:
        time.sleep(0.1)
        proto = bird.protocols().get(name)
    return proto


def session_problem(bird: bgp.Bird, me: NodeView, peer: NodeView, sent: str) -> None:
    name = bgp.protocol_name(peer.ip)
    proto = established(bird, name)
    if proto is None:
        raise fail(
            f"{me.name}'s BIRD has no session {name} to {peer.name}",
            sent=f"{sent}; `birdc show protocols` in {me.name}",
            observed=f"protocols: {', '.join(bird.protocols()) or 'none'}",
            expected=f"protocol bgp {name} from mesh {{ neighbor {peer.ip} as 64512; ... }}",
            hint="one session per other node, named like Calico's Mesh_<IP with underscores>",
        )
    if proto.get("info") != "Established":
        error = proto.get("last_error", "none")
        raise fail(
            f"BGP session {me.name} -> {peer.name} is not Established",
            sent=f"{sent}; `birdc show protocols all {name}` in {me.name}",
            observed=f"{name}: state {proto.get('state')} {proto.get('info')}; "
            f"BGP state {proto.get('bgp_state', '?')}; last error: {error}",
            expected="Established (both ends agree on addresses and AS 64512)",
            hint="compare `local ... as` and `neighbor ... as` in your config with node2's; "
            "'Bad peer AS' means the AS numbers disagree",
        )


def bird_route_lines(bird: bgp.Bird, command: str, cidr: str) -> list[str]:
    """The lines of `birdc COMMAND` that name `cidr` (with the line after: its next hop)."""
    out = bird.birdc(command, check=False) if bird.running() else None
    lines = out.stdout.splitlines() if out is not None and out.returncode == 0 else []
    found = []
    for i, line in enumerate(lines):
        if line.startswith(cidr + " "):
            found.append(" ".join(line.split()))
            if i + 1 < len(lines) and lines[i + 1].startswith("\t"):
                found.append(lines[i + 1].strip())
    return found


def why_not_learned(ctx: CheckContext, learner: NodeView, owner: NodeView) -> tuple[str, str]:
    """Which step of owner -> BGP -> learner's BIRD -> learner's kernel lost the pod range.

    Four places can lose it, and each has its own line of config to fix: the owner's BIRD
    has no route for its range (no `blackhole` static), has it but does not announce it
    (export filter), announces it but the learner's BIRD drops it (import), or the learner's
    BIRD has it but does not write it into the kernel (`protocol kernel`'s export filter).
    Returns (what BIRD shows, hint).
    """
    cidr = owner.pod_cidr
    mine = bgp.Bird.of(ctx.prefix, learner.name, learner.ns)
    theirs = bgp.Bird.of(ctx.prefix, owner.name, owner.ns)
    known = bird_route_lines(mine, f"show route {cidr}", cidr)
    if known:
        return (
            f"{learner.name}'s BIRD knows it (`birdc show route {cidr}`: {'; '.join(known)}) "
            f"but did not write it into {learner.name}'s kernel",
            f"{learner.name}'s `protocol kernel` must export pod routes to the kernel: "
            "`export filter calico_kernel_programming;` accepting `net ~ 10.244.0.0/16`",
        )
    session = bgp.protocol_name(learner.ip)
    sent = bird_route_lines(theirs, f"show route export {session}", cidr)
    if sent:
        return (
            f"{owner.name} announces it to {learner.name} (`birdc show route export {session}` "
            f"in {owner.name}: {'; '.join(sent)}), but {learner.name}'s BIRD did not take it in "
            f"(`birdc show route {cidr}` in {learner.name}: not found)",
            f"{learner.name}'s mesh template must import what peers announce: `import all;` "
            "in its `ipv4 { ... }` channel",
        )
    owned = bird_route_lines(theirs, f"show route {cidr}", cidr)
    if owned:
        return (
            f"{owner.name}'s BIRD has the route ({'; '.join(owned)}) but does not announce it "
            f"to {learner.name} (`birdc show route export {session}` in {owner.name}: not there)",
            f"{owner.name}'s BGP export filter must accept its own range: "
            "`export filter { calico_aggr(); if net ~ 10.244.0.0/16 then accept; reject; };`",
        )
    return (
        f"{owner.name}'s BIRD has no route for {cidr} at all, so it has nothing to announce",
        f"{owner.name} must own its pod range in BIRD: "
        f"`protocol static {{ ipv4; route {cidr} blackhole; }}`",
    )


def route_learned(ctx: CheckContext, learner: NodeView, owner: NodeView, sent: str) -> None:
    deadline = time.monotonic() + 3.0
    have = bgp.bird_routes(learner.ns)
    while owner.pod_cidr not in have and time.monotonic() < deadline:
        time.sleep(0.1)
        have = bgp.bird_routes(learner.ns)
    if owner.pod_cidr not in have:
        why, hint = why_not_learned(ctx, learner, owner)
        raise fail(
            f"{learner.name} has no BGP route to {owner.pod_cidr} ({owner.name}'s pods)",
            sent=f"{sent}; `ip route show proto bird` in {learner.name}",
            observed=f"{learner.name}'s BIRD routes in the kernel: "
            f"{', '.join(sorted(have)) or 'none'}. {why}",
            expected=f"{owner.pod_cidr} via {owner.ip} dev eth0 proto bird",
            hint=hint,
        )


@judged
def check_ex3_bgp(ctx: CheckContext) -> Verdict:
    """node1's BIRD: session to node2 Established, ranges exchanged, a -> c unencapsulated."""
    me, peer = node(ctx, 1), node(ctx, 2)
    sent = "looked at BIRD in node1 and node2"
    bird = bird_running(ctx, me, sent)
    session_problem(bird, me, peer, sent)
    route_learned(ctx, peer, me, sent)
    route_learned(ctx, me, peer, sent)
    _, c_ip = pod_ns(ctx, "c")
    _, a_ip = pod_ns(ctx, "a")
    obs, packets = sniffed_ping(ctx, "a", c_ip)
    flow = about(packets, a_ip, c_ip)
    sent = f"{obs.sent} from pod a ({a_ip}) to pod c ({c_ip})"
    if any(p.encapsulated for p in flow):
        raise fail(
            "the traffic is still encapsulated",
            sent=sent,
            observed=f"{wire_text(flow)}. In node1: {route_text(me.ns, c_ip)}",
            expected="pod IPs directly on the underlay (BGP's route via 192.168.1.12)",
            hint="delete flannel.1 on node1 and node2 (`ip link del flannel.1`): its routes "
            "win over BIRD's (metric 0 against 32)",
        )
    request = next((p for p in flow if p.src == a_ip), None)
    if not obs.ok or request is None:
        raise fail(
            "pod a does not reach pod c over the BGP routes",
            sent=sent,
            observed=f"{obs.describe()} {wire_text(flow)}. In node1: {route_text(me.ns, c_ip)}",
            expected="an echo reply, pod IPs on the wire",
            hint="both nodes need net.ipv4.ip_forward=1 and each other's pod range",
        )
    return Verdict.ok(
        "BGP session node1 <-> node2 Established, 10.244.1.0/24 and 10.244.2.0/24 exchanged "
        f"as `proto bird` routes; on the wire: {request.describe()} (no encapsulation)",
        sent=sent,
        observed=obs.describe(),
    )


# --- exercise 4: the underlay -------------------------------------------------------------------
@judged
def check_ex4_underlay(ctx: CheckContext) -> Verdict:
    """u1 (node1) pings u2 (node2) by node-network addresses: no overlay, no routes."""
    n2 = node(ctx, 2)
    u1, u2 = Netns(ctx.ns("node1-u1")), Netns(ctx.ns("node2-u2"))
    ip1, ip2 = UNDERLAY_PODS["u1"][1], UNDERLAY_PODS["u2"][1]
    for ns, ip in ((u1, ip1), (u2, ip2)):
        if not ns.exists() or f"{ip}/32" not in ns.addresses("eth0"):
            raise fail(
                f"pod {ns.name.rsplit('-', 1)[-1]} with address {ip}/32 does not exist",
                sent=f"looked for namespace {ns.name} and {ip}/32 on its eth0",
                observed="no such namespace" if not ns.exists() else str(ns.addresses("eth0")),
                expected=f"{ip}/32 on eth0 inside {ns.name}",
                hint="follow the exercise: a namespace, a veth, the /32, the gateway entry",
            )
    underlay = Netns(ctx.ns("underlay"))
    obs, packets = sniff_wire_while(underlay, "node1", lambda: ping(u1, ip2))
    flow = about(packets, ip1, ip2)
    sent = f"{obs.sent} from u1 ({ip1}) to u2 ({ip2})"
    if obs.ok and flow and not any(p.encapsulated for p in flow):
        return Verdict.ok(
            f"u1 reaches u2 on the node network itself: {flow[0].describe()}; node2 answered "
            f"ARP for {ip2} on u2's behalf",
            sent=sent,
            observed=obs.describe(),
        )
    if ip2 not in n2.ns.proxy_neighbours("eth0"):
        raise fail(
            f"nobody on the node network answers for {ip2}",
            sent=sent,
            observed=f"{obs.describe()} {wire_text(flow)}. node1 asked ARP 'who has {ip2}?' on "
            f"the underlay; node2 has no proxy entry for it (`ip neigh show proxy`: "
            f"{n2.ns.proxy_neighbours('eth0') or 'none'})",
            expected=f"node2 answers for {ip2} like an ENI holding a secondary address",
            hint=f"in node2: ip neigh add proxy {ip2} dev eth0",
        )
    r = n2.ns.route_get(ip2)
    if r is None or not str(r["dev"]).startswith("eni"):
        raise fail(
            f"node2 does not route {ip2} to u2's cable",
            sent=sent,
            observed=f"{obs.describe()} In node2: {route_text(n2.ns, ip2)}",
            expected=f"{ip2} dev eni... scope link in node2",
            hint=f"in node2: ip route add {ip2}/32 dev <u2's eni veth> scope link",
        )
    raise fail(
        "u1 does not reach u2",
        sent=sent,
        observed=f"{obs.describe()} {wire_text(flow)}",
        expected="an echo reply, pod addresses directly on the node network",
        hint="u2 needs 169.254.1.1 as its gateway with a permanent ARP entry for node2's veth MAC",
    )


# --- questions ----------------------------------------------------------------------------------
_INNER_NOT_OUTER = (
    "that is a pod address, from the inner packet; the outer header is the one flannel.1 adds, "
    "and it carries the node IPs, the only addresses the node network can deliver."
)
_OUTER_NOT_INNER = (
    "that is a node IP, from the outer header; the inner packet is pod a's own, unchanged by "
    "the overlay, so it keeps the pods' addresses."
)
_REPLY_NOT_REQUEST = (
    "source and destination swapped: that is the echo reply, on its way back from node2 "
    "(pod c); the question asks for the request from pod a to pod c."
)
Q1 = question(
    "q1",
    {
        "outer_src": "192.168.1.11",
        "outer_dst": "192.168.1.12",
        "dport": 8472,
        "vni": 1,
        "inner_src": "10.244.1.2",
        "inner_dst": "10.244.2.2",
    },
    "The outer header carries node IPs and UDP/8472 with VNI 1; the pods' own packet rides "
    "inside, untouched.",
    "a dict with outer_src, outer_dst, dport, vni, inner_src, inner_dst read from the capture; "
    "addresses as strings, dport and vni as integers",
    evidence="the capture shows",
    hint="read the request's row in the capture above: outer column first, then the inner packet",
    why={
        "outer_src": {
            "10.244.1.2": _INNER_NOT_OUTER,
            "192.168.1.12": _REPLY_NOT_REQUEST,
        },
        "outer_dst": {
            "10.244.2.2": _INNER_NOT_OUTER,
            "192.168.1.11": _REPLY_NOT_REQUEST,
        },
        "dport": {
            4789: "4789 is the port IANA assigned to VXLAN, but flannel keeps 8472, the port "
            "Linux used before that assignment; the capture's outer column shows it.",
            "8472": "the right port, written as a string: dport is a number, 8472.",
        },
        "vni": {
            "1": "the right VNI, written as a string: vni is a number, 1.",
            8472: "8472 is the UDP port; the VNI is the 24-bit network id in the VXLAN header "
            "(flannel.1: VNI 1).",
            0: "VNI 0 is not flannel's: it names its device flannel.<VNI> and uses VNI 1.",
        },
        "inner_src": {
            "192.168.1.11": _OUTER_NOT_INNER,
            "10.244.2.2": _REPLY_NOT_REQUEST,
        },
        "inner_dst": {
            "192.168.1.12": _OUTER_NOT_INNER,
            "10.244.1.2": _REPLY_NOT_REQUEST,
        },
    },
    why_other="the outer header is added by node1's flannel.1: node IPs, UDP port, VNI; the "
    "inner packet is pod a's own, unchanged, with the pods' addresses. Read the request's row.",
)
Q2 = question(
    "q2",
    "c",
    "The pod believes 1500 fits; node1 must route it into flannel.1 (1450), cannot fragment a "
    "DF packet, and answers 'fragmentation needed, mtu 1450'.",
    "one of 'a', 'b', 'c', 'd'",
    evidence="the kernel does",
    hint="the pod's eth0 still has MTU 1500; which device's MTU is first too small?",
    why={
        "a": "DF (`-M do`) forbids fragmenting the packet anywhere on the way: a router that "
        "cannot forward it in one piece drops it and reports why; nothing gets reassembled.",
        "b": "pod a's kernel compares the packet with its own route's MTU, eth0's 1500: 1500 "
        "bytes fit, so it leaves. 'message too long' comes from the pod only when its eth0 is "
        "1450 (exercise 2), or after it cached a 1450 path MTU from an earlier ICMP error.",
        "d": "the refusal is not silent: the kernel that cannot forward a DF packet (node1, "
        "routing it into flannel.1 at 1450) sends ICMP 'fragmentation needed' with mtu 1450 "
        "to the sender. Silence would need that ICMP filtered on the way (a PMTU black hole).",
    },
)
Q3 = question(
    "q3",
    "b",
    "The node network itself must deliver every pod address (the VPC knows each ENI's secondary "
    "IPs), so pods consume node-network addresses.",
    "one of 'a', 'b', 'c'",
    evidence="the underlay exercise shows",
    hint="look at which addresses the pods use and who answered ARP for them",
    why={
        "a": "no routing daemon took part: u1's packet went to 192.168.1.121, an address of "
        "the node subnet itself, node2 answered ARP for it with its proxy entry and routed it "
        "to u2 by a /32. The node network delivered it because it is its own address.",
        "c": "nothing was wrapped: u1 -> u2 crossed the node network with the pods' own "
        "addresses (no UDP 8472 on the wire), so the pods keep MTU 1500. The 50 bytes are "
        "the overlay's price (part 2).",
    },
)
Q4 = question(
    "q4",
    {"host-gw": False, "bgp": False, "vxlan": True},
    "Plain routes need the next hop on a shared subnet; BGP's next hop resolves via the router, "
    "which knows no pod routes; VXLAN needs only node IPs that reach each other.",
    "a dict {'host-gw': bool, 'bgp': bool, 'vxlan': bool}",
    evidence="the packets to node3's pods show",
    hint="run the observation cells of part 5 and look where each mode's packet stops",
    why={
        "host-gw": {
            True: "a host-gw route's gateway must be on a subnet node1 is attached to; "
            "192.168.2.13 is behind the router, so the kernel refuses the route ('Nexthop has "
            "invalid gateway') and pod a's packet keeps following node1's default route."
        },
        "bgp": {
            True: "the session comes up and BIRD learns 10.244.3.0/24 with next hop "
            "192.168.2.13, but node1 reaches that next hop only through the router, so the "
            "kernel route hands pod a's packet, pod addresses unchanged, to the router, which "
            "knows the two node subnets and no pod range: it drops the packet."
        },
        "vxlan": {
            False: "VXLAN needs only that the node IPs reach each other: the outer packet "
            "192.168.1.11 -> 192.168.2.13 (UDP 8472) is routed by the router like any other "
            "packet between its two subnets, and the pod addresses stay hidden inside."
        },
    },
)


LAB = Lab(
    id=LAB_ID,
    title="across nodes: VXLAN overlay, BGP with BIRD, and the underlay",
    checks=(
        Check("ex1-vxlan", "check-ex1-vxlan", 4, "VXLAN by hand: node1 <-> node2", check_ex1_vxlan),
        Check("ex2-mtu", "check-ex2-mtu", 2, "pod MTU for the overlay", check_ex2_mtu),
        Check("ex3-bgp", "check-ex3-bgp", 4, "BIRD on node1: BGP routes, no encap", check_ex3_bgp),
        Check("ex4-underlay", "check-ex4-underlay", 2, "underlay pod u2", check_ex4_underlay),
        Check("breakfix", "check-breakfix", 3, "break/fix: node1 <-> node3", check_breakfix),
        Check("q1", "check-q1", 1, "read the VXLAN capture", Q1, ("q1",), False),
        Check("q2", "check-q2", 1, "predict: 1500-byte DF ping", Q2, ("q2",), False),
        Check("q3", "check-q3", 1, "the underlay's price", Q3, ("q3",), False),
        Check("q4", "check-q4", 1, "predict: who reaches node3", Q4, ("q4",), False),
    ),
)
