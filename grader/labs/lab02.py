"""Checks of lab 02 "bridge versus L3 routing": pod to pod on one node, two ways.

The lab cluster has two nodes that never talk to each other: node1 is wired like the CNI
`bridge` plugin (pods a and b on `cni0`), node2 like Calico (pods c and d on routes). Every
check sends real packets (Scapy, from inside the namespaces), watches where they go, and,
when something is wrong, reads the kernel state (links, sysctls, `ip route get`) to say
exactly where the packet stopped and why.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from course.addressing import node_ip, pod_gateway, pod_ip
from course.kernel import Netns
from grader import journey
from grader.labs import Check, CheckContext, Lab
from grader.labs.common import question
from grader.labs.lab01 import concurrently
from grader.labs.lab02_breakfix import CHECK as BREAKFIX
from grader.probes import Frame, Observation, ping, sniff_while
from grader.verdict import Verdict

LAB_ID = "02-bridge-vs-routed"
BRIDGE_NODE, ROUTED_NODE = 1, 2
PODS = {BRIDGE_NODE: ("a", "b"), ROUTED_NODE: ("c", "d")}
GATEWAY = "169.254.1.1"  # Calico's link-local next hop
CNI0 = "cni0"


# --- what the check looks at ---------------------------------------------------------------------
@dataclass
class PodView:
    """One pod as the kernel shows it: its namespace, eth0, and the veth's node end."""

    name: str
    ip: str
    ns: Netns
    eth0: dict[str, Any] | None = None
    host_if: str | None = None
    host: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return f"pod {self.name} ({self.ip})"


@dataclass
class NodeView:
    index: int
    ip: str
    ns: Netns
    pods: list[PodView] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"node{self.index}"


def look(ctx: CheckContext, index: int) -> NodeView:
    """Open the node's and its pods' namespaces and find each pod's veth node end."""
    node = NodeView(index, node_ip(index), Netns(ctx.ns(f"node{index}")))
    for k, name in enumerate(PODS[index]):
        pod = PodView(name, pod_ip(index, k), Netns(ctx.ns(f"node{index}-{name}")))
        if pod.ns.exists() and pod.ns.has_link("eth0"):
            pod.eth0 = pod.ns.link("eth0")
            peer = pod.eth0.get("link")
            pod.host = next((lk for lk in node.ns.links() if lk["index"] == peer), None)
            pod.host_if = pod.host["name"] if pod.host else None
        node.pods.append(pod)
    return node


def close(node: NodeView) -> None:
    node.ns.close()
    for pod in node.pods:
        pod.ns.close()


def _with_node(ctx: CheckContext, index: int, body: Callable[[NodeView], Verdict]) -> Verdict:
    node = look(ctx, index)
    try:
        if not node.ns.exists():
            return _missing(f"namespace {node.ns.name}", "the lab cluster's node namespace")
        unplugged = next((p for p in node.pods if p.eth0 is None or p.host_if is None), None)
        if unplugged is not None:
            return _unplugged(node, unplugged)
        return next(filter(None, (_half_done(node, p) for p in node.pods)), None) or body(node)
    finally:
        close(node)


def _missing(what: str, expected: str) -> Verdict:
    return Verdict.fail(
        f"{what} does not exist",
        sent=f"looked for {what}",
        observed="not found",
        expected=expected,
        hint="run the setup cell at the top of the notebook, then the exercise cells",
    )


def _unplugged(node: NodeView, pod: PodView) -> Verdict:
    return Verdict.fail(
        f"{pod.label} has no cable to {node.name}",
        sent=f"netlink RTM_GETLINK for eth0 in {pod.ns.name}, and its veth peer in {node.name}",
        observed="no eth0 in the pod" if pod.eth0 is None else "eth0's peer is not in the node",
        expected=f"a veth pair: eth0 in the pod, its other end in {node.name}",
        hint="your function must create the veth with one end named eth0 inside the pod",
    )


def _half_done(node: NodeView, pod: PodView) -> Verdict | None:
    """A cable that exists but cannot carry anything yet: a down end, or no pod address."""
    sent = f"netlink RTM_GETLINK/RTM_GETADDR for {pod.name}'s eth0 and {node.name}'s {pod.host_if}"
    for where, link in ((pod.name, pod.eth0), (node.name, pod.host)):
        if link is not None and not link["up"]:
            return Verdict.fail(
                f"{link['name']} in {where} is DOWN",
                sent=sent,
                observed=f"{link['name']} in {where}: state DOWN",
                expected="both ends of every pod's veth up",
                hint=f"ns.up('{link['name']}') in {where}",
            )
    if not any(a.startswith(f"{pod.ip}/") for a in pod.ns.addresses("eth0")):
        return Verdict.fail(
            f"{pod.label} has no address {pod.ip} on eth0",
            sent=sent,
            observed=f"eth0 in {pod.name} holds {pod.ns.addresses('eth0') or 'no IPv4 address'}",
            expected=f"{pod.ip} on the pod's eth0",
            hint=f"pod.ns.add_address('eth0', '{pod.ip}/{24 if node.index == BRIDGE_NODE else 32}')",
        )
    return None


# --- wire helpers ----------------------------------------------------------------------------------
def requests_seen(frames: list[Frame], src: str, dst: str) -> list[Frame]:
    return [f for f in frames if f.kind == "ICMP echo-request" and (f.src, f.dst) == (src, dst)]


def replies_seen(frames: list[Frame], src: str, dst: str) -> list[Frame]:
    return [f for f in frames if f.kind == "ICMP echo-reply" and (f.src, f.dst) == (src, dst)]


def arp_asked(obs: Observation) -> list[str]:
    return sorted({f.dst for f in obs.frames if f.kind == "ARP who-has" and f.dst})


def route_text(ns: Netns, dst: str) -> str:
    """`ip route get DST`, in words (the kernel's own lookup, whatever table it used)."""
    r = ns.route_get(dst)
    if r is None:
        return f"`ip route get {dst}` -> no route (Network is unreachable)"
    if r["type"] == 2:
        return f"`ip route get {dst}` -> local (delivered to the namespace itself)"
    via = f" via {r['gateway']}" if r["gateway"] else ""
    return f"`ip route get {dst}` ->{via} dev {r['dev']}"


def sysctl(ns: Netns, key: str) -> str:
    try:
        return ns.sysctl(key)
    except Exception:  # interface gone: report it as unknown rather than crash the check
        return "?"


def ping_watched(src: PodView, dst: PodView, node: NodeView) -> tuple[Observation, dict[str, Any]]:
    """Ping dst from src while capturing in dst's eth0 and on both veth ends in the node."""
    seen: dict[str, Any] = {}

    def watch_dst_end() -> Observation:
        obs, seen["dst_host"] = sniff_while(
            node.ns, dst.host_if or "lo", lambda: ping(src.ns, dst.ip)
        )
        return obs

    def watch_src_end() -> Observation:
        obs, seen["src_host"] = sniff_while(node.ns, src.host_if or "lo", watch_dst_end)
        return obs

    obs, seen["dst"] = sniff_while(dst.ns, "eth0", watch_src_end)
    return obs, seen


# --- bridge mode -------------------------------------------------------------------------------------
def bridge_problem(node: NodeView, obs: Observation, src: PodView | None = None) -> Verdict | None:
    """The bridge-mode mistakes we know, named from the kernel state; None if none applies."""
    if not node.ns.has_link(CNI0) or node.ns.link(CNI0)["kind"] != "bridge":
        return _fail_bridge_missing(node, obs)
    cni0 = node.ns.link(CNI0)
    if not cni0["up"]:
        return Verdict.fail(
            f"{CNI0} is DOWN",
            sent=obs.sent,
            observed=f"{obs.describe()} In {node.name}, {CNI0} is administratively down.",
            expected=f"{CNI0} up: a bridge that is down forwards nothing",
            hint=f"node.ns.up('{CNI0}')",
        )
    for pod in node.pods:
        if pod.host and pod.host["master"] != cni0["index"]:
            return _fail_not_a_port(node, pod, obs)
    gw = pod_gateway(node.index)
    if not any(a.startswith(f"{gw}/") for a in node.ns.addresses(CNI0)):
        return _fail_no_gateway(node, obs)
    if src is not None and src.ns.route_get(node.ip) is None:
        return _fail_no_default(src, node, obs)
    return None


def _fail_bridge_missing(node: NodeView, obs: Observation) -> Verdict:
    return Verdict.fail(
        f"{node.name} has no bridge {CNI0}",
        sent=obs.sent,
        observed=f"{obs.describe()} In {node.name}, `ip link show {CNI0}` finds no bridge.",
        expected=f"a bridge {CNI0} in {node.name}, up, with every pod's veth node end as a port",
        hint=f"ns.add_bridge('{CNI0}'), then ns.up('{CNI0}')",
    )


def _fail_not_a_port(node: NodeView, pod: PodView, obs: Observation) -> Verdict:
    return Verdict.fail(
        f"{pod.host_if} ({pod.name}'s cable end in {node.name}) is not a port of {CNI0}",
        sent=obs.sent,
        observed=(
            f"{obs.describe()} `ip -n {node.ns.name} link show {pod.host_if}` shows no "
            f"`master {CNI0}`: the bridge neither floods frames out of that cable nor takes "
            f"frames in from it, so {pod.name} and the rest of the segment never hear each other."
        ),
        expected=f"every pod's veth node end plugged into {CNI0} (`master {CNI0}`) and up",
        hint=f"node.ns.set_master('{pod.host_if}', '{CNI0}') after creating the veth",
    )


def _fail_no_gateway(node: NodeView, obs: Observation) -> Verdict:
    gw = pod_gateway(node.index)
    return Verdict.fail(
        f"{CNI0} has no gateway address {gw}",
        sent=obs.sent,
        observed=(
            f"{obs.describe()} {CNI0} holds {node.ns.addresses(CNI0) or 'no address'}; so the "
            f"pods' ARP for their gateway {gw} finds nobody, and on the node "
            f"{route_text(node.ns, node.pods[0].ip)} (no connected route to the pod range)."
        ),
        expected=f"{gw}/24 on {CNI0}: the pods' default gateway and the node's way to the pods",
        hint=f"node.ns.add_address('{CNI0}', '{gw}/24')",
    )


def _fail_no_default(src: PodView, node: NodeView, obs: Observation) -> Verdict:
    gw = pod_gateway(node.index)
    return Verdict.fail(
        f"{src.label} has no default route",
        sent=obs.sent,
        observed=(
            f"{obs.describe()} Inside the pod, {route_text(src.ns, node.ip)}: only its own "
            f"/24 is reachable, so nothing outside 10.244.{node.index}.0/24 can be answered."
        ),
        expected=f"`default via {gw} dev eth0` in every pod",
        hint=f"pod.ns.add_route('0.0.0.0/0', via='{gw}')",
    )


def _generic(what: str, obs: Observation, expected: str, hint: str) -> Verdict:
    return Verdict.fail(what, sent=obs.sent, observed=obs.describe(), expected=expected, hint=hint)


def with_journey(ctx: CheckContext, verdict: Verdict, index: int, src: str, dst: str) -> Verdict:
    """The check's ping once more, followed hop by hop: the path as a reward, or where it stopped.

    Shown after passing and failing verdicts alike; only node `index` and its pods are
    listened on (the two nodes never talk). A journey that cannot be drawn (the namespaces
    are gone) leaves the verdict as it was.
    """
    roles = [f"node{index}", *(f"node{index}-{p}" for p in PODS[index])]
    try:
        _, trip = journey.ping(ctx, src, dst, timeout=1.0, only=roles)
    except Exception:
        return verdict
    return journey.attach(verdict, trip)


def check_bridge_switched(ctx: CheckContext) -> Verdict:
    """Pod a to pod b on node1: a reply, the sender's own MAC and TTL at b, ARP for b itself."""
    verdict = _with_node(ctx, BRIDGE_NODE, _bridge_switched)
    return with_journey(ctx, verdict, BRIDGE_NODE, "node1-a", pod_ip(BRIDGE_NODE, 1))


def _bridge_switched(node: NodeView) -> Verdict:
    a, b = node.pods
    obs, at_b = sniff_while(b.ns, "eth0", lambda: ping(a.ns, b.ip, ttl=64))
    seen = requests_seen(at_b, a.ip, b.ip)
    if not obs.ok or not seen:
        return bridge_problem(node, obs) or _generic(
            f"{a.label} cannot reach {b.label} through {CNI0}",
            obs,
            "an echo reply from b, switched by cni0",
            "compare both pods' eth0 addresses, routes and veth ends with course.podnet.bridge",
        )
    req, a_mac = seen[0], (a.eth0 or {}).get("mac")
    if req.src_mac != a_mac or req.ttl != 64:
        return Verdict.fail(
            "the packet was routed, not switched",
            sent=obs.sent,
            observed=f"b received {req.describe()}; a's own MAC is {a_mac}",
            expected="b sees a's own MAC as the source and the TTL a used (64)",
            hint="both pods need addresses in the same /24 and their veth ends in cni0",
        )
    b_mac = (b.eth0 or {}).get("mac")
    resolved = [n["mac"] for n in a.ns.neighbours("eth0") if n["ip"] == b.ip]
    if resolved != [b_mac]:
        return Verdict.fail(
            f"{a.name} did not resolve {b.ip} to {b.name}'s own MAC",
            sent=obs.sent,
            observed=f"a's ARP table for {b.ip}: {resolved or 'no entry'}; b's MAC is {b_mac}",
            expected=f"a asks ARP for {b.ip} itself and b answers with {b_mac}",
            hint="on a shared segment each pod answers ARP for its own address",
        )
    return Verdict.ok(
        f"{a.name} -> {b.name} is switched: b saw a's MAC {req.src_mac} and TTL {req.ttl}",
        sent=obs.sent,
        observed=f"at b: {req.describe()}; a resolved {b.ip} to b's own MAC {b_mac}",
    )


def check_bridge_gateway(ctx: CheckContext) -> Verdict:
    """node1 reaches each pod, and each pod reaches node1's own address via its gateway."""
    return _with_node(ctx, BRIDGE_NODE, _bridge_gateway)


def _bridge_gateway(node: NodeView) -> Verdict:
    """Judged in the order node -> a, a -> node, node -> b, b -> node; the four pings run
    at once (each its own probe process; they share no state a verdict reads), so a
    passing lab costs one ping's time and a broken one one timeout, not four."""
    pings = concurrently(
        *(
            call
            for pod in node.pods
            for call in (
                lambda pod=pod: ping(node.ns, pod.ip),
                lambda pod=pod: ping(pod.ns, node.ip),
            )
        )
    )
    for k, pod in enumerate(node.pods):
        obs, out = pings[2 * k], pings[2 * k + 1]
        if not obs.ok:
            return bridge_problem(node, obs) or _generic(
                f"{node.name} cannot reach {pod.label}",
                obs,
                f"an echo reply from {pod.ip} via {CNI0}",
                "the node reaches pods through cni0's address and its connected /24 route",
            )
        if not out.ok:
            return bridge_problem(node, out, src=pod) or _generic(
                f"{pod.label} cannot reach {node.name}'s address {node.ip}",
                out,
                f"a reply from {node.ip} via the gateway {pod_gateway(node.index)}",
                "traffic leaving the pod's /24 needs the default route via cni0's address",
            )
    return Verdict.ok(f"{node.name} and its pods reach each other through {CNI0}")


# --- routed mode ---------------------------------------------------------------------------------------
def routed_problem(
    node: NodeView, src: PodView, dst: PodView, obs: Observation, seen: dict[str, Any]
) -> Verdict | None:
    """Walk the packet's path (pod -> node -> pod -> node -> pod) and name where it stops."""
    if src.ns.route_get(dst.ip) is None:
        return _fail_pod_no_default(node, src, dst.ip, obs, "The kernel did not even send it")
    if not requests_seen(seen.get("src_host", []), src.ip, dst.ip):
        return _routed_first_hop(node, src, obs)
    reached = f"The request arrived on {src.host_if} in {node.name}"
    verdict = _routed_node_hop(node, src, dst, obs, reached)
    if verdict is not None or not requests_seen(seen.get("dst", []), src.ip, dst.ip):
        return verdict
    if dst.ns.route_get(src.ip) is None:
        return _fail_pod_no_default(node, dst, src.ip, obs, f"{dst.name} got the request")
    if not replies_seen(seen.get("dst_host", []), dst.ip, src.ip):
        return _routed_first_hop(node, dst, obs)
    reached = f"{dst.name} answered, and the reply arrived on {dst.host_if} in {node.name}"
    return _routed_node_hop(node, dst, src, obs, reached)


def _fail_pod_no_default(
    node: NodeView, pod: PodView, dst_ip: str, obs: Observation, what: str
) -> Verdict:
    return Verdict.fail(
        f"{pod.label} has no default route",
        sent=obs.sent,
        observed=f"{obs.describe()} {what}, but in {pod.name} {route_text(pod.ns, dst_ip)}.",
        expected=f"`{GATEWAY} dev eth0 scope link` and `default via {GATEWAY} dev eth0`",
        hint="add the link-scope route to 169.254.1.1 first, then the default route via it",
    )


def _routed_first_hop(node: NodeView, src: PodView, obs: Observation) -> Verdict | None:
    """The pod's packet never reached the node: its ARP for 169.254.1.1 went unanswered."""
    cali = src.host_if or "?"
    if sysctl(node.ns, f"net.ipv4.conf.{cali}.proxy_arp") != "1":
        return Verdict.fail(
            f"{src.name}'s ARP for {GATEWAY} went unanswered: proxy ARP is off on {cali}",
            sent=obs.sent,
            observed=(
                f"{obs.describe()} Nobody owns {GATEWAY}; only the node's proxy ARP can answer "
                f"for it, and net.ipv4.conf.{cali}.proxy_arp is "
                f"{sysctl(node.ns, f'net.ipv4.conf.{cali}.proxy_arp')}."
            ),
            expected=f"the node answers 'who has {GATEWAY}?' on {cali} with {cali}'s own MAC",
            hint=f"node.ns.sysctl('net.ipv4.conf.{cali}.proxy_arp', 1)",
        )
    if sysctl(node.ns, f"net.ipv4.conf.{cali}.forwarding") != "1":
        return _fail_forwarding(node, src, obs, reached=False)
    if node.ns.route_get(GATEWAY) is None:
        return Verdict.fail(
            f"{node.name} has no route covering {GATEWAY}, so proxy ARP stays silent",
            sent=obs.sent,
            observed=f"{obs.describe()} On the node, {route_text(node.ns, GATEWAY)}.",
            expected=f"a route covering {GATEWAY} (normally the node's default route)",
            hint="Linux proxies ARP only for addresses it could route (Calico issue #3270)",
        )
    return None


def _fail_forwarding(node: NodeView, ingress: PodView, obs: Observation, reached: bool) -> Verdict:
    cali = ingress.host_if or "?"
    where = (
        f"The packet arrived on {cali} in {node.name} and went no further."
        if reached
        else f"Linux answers proxy ARP only on an interface that forwards, so even the ARP "
        f"for {GATEWAY} on {cali} went unanswered."
    )
    what = "the packet" if reached else f"{ingress.name}'s ARP for {GATEWAY}"
    return Verdict.fail(
        f"{what} reached {node.name} on {cali} and stopped there: the node does not forward",
        sent=obs.sent,
        observed=(
            f"{obs.describe()} {where} net.ipv4.ip_forward = "
            f"{sysctl(node.ns, 'net.ipv4.ip_forward')}, net.ipv4.conf.{cali}.forwarding = "
            f"{sysctl(node.ns, f'net.ipv4.conf.{cali}.forwarding')}."
        ),
        expected=f"{node.name} routes between its cali interfaces (forwarding = 1)",
        hint="node.ns.sysctl('net.ipv4.ip_forward', 1) (it also turns it on for each interface)",
    )


def _routed_node_hop(
    node: NodeView, ingress: PodView, target: PodView, obs: Observation, reached: str
) -> Verdict | None:
    """A packet from `ingress` for `target` reached the node: can the node pass it on?"""
    if sysctl(node.ns, f"net.ipv4.conf.{ingress.host_if}.forwarding") != "1":
        return _fail_forwarding(node, ingress, obs, reached=True)
    r = node.ns.route_get(target.ip)
    if r is None or r["dev"] != target.host_if:
        back = " back" if target.ip != obs.dst else ""
        return Verdict.fail(
            f"{node.name} has no route{back} to {target.ip}",
            sent=obs.sent,
            observed=(
                f"{obs.describe()} {reached}; there {route_text(node.ns, target.ip)}, "
                f"not out of {target.host_if}, so it never reaches {target.name}."
            ),
            expected=f"`{target.ip} dev {target.host_if} scope link` in {node.name}",
            hint=f"node.ns.add_route('{target.ip}/32', dev='{target.host_if}', scope='link')",
        )
    return None


def _prefix(pod: PodView) -> int | None:
    addrs = [a for a in pod.ns.addresses("eth0") if a.startswith(f"{pod.ip}/")]
    return ipaddress.ip_interface(addrs[0]).network.prefixlen if addrs else None


def wide_address(node: NodeView, obs: Observation, src: PodView, dst: PodView) -> Verdict | None:
    """A pod whose address is wider than /32 treats its neighbours as on-link and ARPs for them."""
    wide = next((p for p in (src, dst) if (_prefix(p) or 32) != 32), None)
    if wide is None:
        return None
    other = dst if wide is src else src
    r = wide.ns.route_get(other.ip)
    if r is not None and r["gateway"] == GATEWAY:
        return None
    asked = [ip for ip in arp_asked(obs) if ip == other.ip]
    neigh = [n for n in wide.ns.neighbours("eth0") if n["ip"] == other.ip]
    evidence = (
        f"on the wire it asked 'who has {other.ip}?'"
        if asked
        else f"its ARP table holds {other.ip} at {neigh[0]['mac']}"
        if neigh
        else "it will ARP for it"
    )
    return Verdict.fail(
        f"{wide.label} ARPs for its peer {other.ip} directly",
        sent=obs.sent,
        observed=(
            f"{obs.describe()} {wide.name}'s eth0 holds {wide.ip}/{_prefix(wide)}, so "
            f"{route_text(wide.ns, other.ip)} (on-link, no gateway) and {evidence}. "
            f"It works only because the node's proxy ARP answers for every address."
        ),
        expected=f"{wide.ip}/32 on eth0: every destination goes via {GATEWAY}",
        hint=f"pod.ns.add_address('eth0', '{wide.ip}/32')",
    )


def check_routed_path(ctx: CheckContext) -> Verdict:
    """Pod c to pod d on node2: routed (node veth MAC, TTL - 1), ARP only for 169.254.1.1."""
    verdict = _with_node(ctx, ROUTED_NODE, _routed_path)
    return with_journey(ctx, verdict, ROUTED_NODE, "node2-c", pod_ip(ROUTED_NODE, 1))


def _routed_path(node: NodeView) -> Verdict:
    c, d = node.pods
    obs, seen = ping_watched(c, d, node)
    wide = wide_address(node, obs, c, d)
    if wide is not None:
        return wide
    at_d = requests_seen(seen.get("dst", []), c.ip, d.ip)
    if not obs.ok or not at_d:
        return routed_problem(node, c, d, obs, seen) or _generic(
            f"{c.label} cannot reach {d.label} through {node.name}",
            obs,
            "an echo reply, routed by the node",
            "compare with course.podnet.routed: pod side, node side, sysctls, routes",
        )
    return _routed_wire_properties(node, c, d, obs, at_d[0])


def _routed_wire_properties(
    node: NodeView, c: PodView, d: PodView, obs: Observation, req: Frame
) -> Verdict:
    d_host_mac = d.host["mac"] if d.host else None
    if req.src_mac != d_host_mac or req.ttl != 63:
        return Verdict.fail(
            "the packet was not routed by the node",
            sent=obs.sent,
            observed=f"d received {req.describe()}; {d.host_if}'s MAC is {d_host_mac}",
            expected=f"source MAC of {d.host_if} (the node's side of d's cable) and TTL 63",
            hint="no bridge in routed mode: each pod's cable ends on its own cali interface",
        )
    gw = [n for n in c.ns.neighbours("eth0") if n["ip"] == GATEWAY]
    c_host_mac = c.host["mac"] if c.host else None
    if not gw or gw[0]["mac"] != c_host_mac:
        return Verdict.fail(
            f"{GATEWAY} was not resolved to {c.host_if}",
            sent=obs.sent,
            observed=f"c's ARP table for {GATEWAY}: {gw or 'no entry'}",
            expected=f"{GATEWAY} at {c_host_mac}, the MAC of {c.host_if}, learned by proxy ARP",
            hint="proxy ARP on the cali interface answers for 169.254.1.1",
        )
    cached = cached_only(node, obs)
    if cached is not None:
        return cached
    return Verdict.ok(
        f"{c.name} -> {d.name} is routed: d saw source MAC {req.src_mac} and TTL {req.ttl}",
        sent=obs.sent,
        observed=f"at d: {req.describe()}; c resolved {GATEWAY} to {c_host_mac}",
    )


def cached_only(node: NodeView, obs: Observation) -> Verdict | None:
    """Traffic that flows only because a pod still remembers 169.254.1.1's MAC.

    With proxy ARP off, a pod that resolved its gateway earlier keeps working until the
    neighbour entry expires (tens of seconds), then goes silent. The wire cannot show that
    yet, so the sysctl is read too.
    """
    for pod in node.pods:
        key = f"net.ipv4.conf.{pod.host_if}.proxy_arp"
        if sysctl(node.ns, key) != "1":
            return Verdict.fail(
                f"proxy ARP is off on {pod.host_if}: traffic flows only from a cached ARP entry",
                sent=obs.sent,
                observed=(
                    f"{obs.describe()} But {key} = {sysctl(node.ns, key)}; {pod.name} still "
                    f"remembers {GATEWAY}'s MAC from earlier, and once that entry expires its "
                    f"ARP for {GATEWAY} will go unanswered."
                ),
                expected=f"proxy ARP on for every cali interface ({key} = 1)",
                hint=f"node.ns.sysctl('{key}', 1)",
            )
    return None


def check_routed_node(ctx: CheckContext) -> Verdict:
    """node2 reaches each pod over its own /32 route, and each pod reaches node2's address."""
    return _with_node(ctx, ROUTED_NODE, _routed_node)


def _routed_node(node: NodeView) -> Verdict:
    """Judged pod by pod in order; the pings run at once (see `_bridge_gateway`)."""
    pings = concurrently(*(lambda pod=pod: ping(node.ns, pod.ip) for pod in node.pods))
    for pod, obs in zip(node.pods, pings, strict=True):
        if not obs.ok:
            return _routed_node_problem(node, pod, obs) or _generic(
                f"{node.name} cannot reach {pod.label}",
                obs,
                f"an echo reply from {pod.ip} over {pod.host_if}",
                "the node needs a /32 route per pod, the pod a default route via 169.254.1.1",
            )
        cached = cached_only(node, obs)
        if cached is not None:
            return cached
    return Verdict.ok(f"{node.name} reaches every pod over its own cali interface and /32 route")


def _routed_node_problem(node: NodeView, pod: PodView, obs: Observation) -> Verdict | None:
    r = node.ns.route_get(pod.ip)
    if r is None or r["dev"] != pod.host_if:
        return Verdict.fail(
            f"{node.name} has no route to {pod.ip}",
            sent=obs.sent,
            observed=f"{obs.describe()} On the node, {route_text(node.ns, pod.ip)}.",
            expected=f"`{pod.ip} dev {pod.host_if} scope link` in {node.name}",
            hint=f"node.ns.add_route('{pod.ip}/32', dev='{pod.host_if}', scope='link')",
        )
    if pod.ns.route_get(node.ip) is None:
        return _fail_pod_no_default(node, pod, node.ip, obs, f"{pod.name} got the request")
    return _routed_first_hop(node, pod, obs)


# --- predict, then observe ------------------------------------------------------------------------------
def _question(
    name: str,
    right: object,
    explain: str,
    options: str,
    why: dict[str, Any] | None = None,
) -> Callable[..., Verdict]:
    """Lab 02's questions are all answered by comparing what the two nodes put on the wire."""
    return question(
        name,
        right,
        explain,
        options,
        evidence="the packets show",
        hint="run the observation cells below the question and compare both nodes",
        why=why,
    )


Q1 = _question(
    "q1",
    "routed",
    "Only a router decrements the TTL; a bridge passes frames on untouched.",
    "one of 'bridge', 'routed', 'both', 'neither'",
    {
        "bridge": "a bridge is a switch: it forwards Ethernet frames and never looks inside "
        "the IP header, so b receives TTL 64. cni0's address matters only for traffic that "
        "leaves the /24.",
        "both": "only a hop that routes (IP forwarding in a kernel) decrements the TTL; the "
        "bridge on node1 switches a's frame to b without routing it, so b sees TTL 64.",
        "neither": "in routed mode node2's kernel receives c's packet on one cali interface "
        "and forwards it out of another: that is a router hop, and every router hop takes one "
        "off the TTL (64 -> 63).",
    },
)
Q2 = _question(
    "q2",
    {"bridge": "sender", "routed": "node"},
    "A switched frame keeps the sender's MAC; a routed packet is re-framed by the node's veth.",
    "a dict {'bridge': ..., 'routed': ...} with values 'sender' or 'node'",
    {
        "bridge": {
            "node": "a bridge forwards the very frame pod a sent, Ethernet header included, so "
            "the source MAC is a's eth0; the node's MAC appears only when the node routes."
        },
        "routed": {
            "sender": "routing ends the frame at the node: node2 takes the IP packet out of "
            "c's frame and sends it in a new one from d's cali end (ee:ee:ee:ee:ee:ee), so d "
            "never sees c's MAC."
        },
    },
)
Q3 = _question(
    "q3",
    {"bridge": "a", "routed": "b"},
    "cni0's address gives the node one connected /24; Calico adds one /32 per pod instead.",
    "a dict {'bridge': ..., 'routed': ...} with values 'a', 'b' or 'c'",
    {
        "bridge": {
            "b": "per-pod /32 routes are what a routed node needs because it has no shared "
            "segment; with a bridge, 10.244.N.1/24 on cni0 gives the node one connected route "
            "for the whole /24, and the bridge finds each pod by MAC.",
            "c": "169.254.1.1 is the gateway a *pod* uses in Calico mode; no node route goes "
            "through it, and bridge mode does not use it at all.",
        },
        "routed": {
            "a": "in routed mode there is no cni0 and the cali ends have no address, so the "
            "kernel adds no connected /24: the node knows each pod only from its /32 route.",
            "c": "that is the pod's view (its default route via 169.254.1.1); the node is the "
            "one answering for 169.254.1.1, and it routes each pod IP to its cali interface.",
        },
    },
)
Q4 = _question(
    "q4",
    {"bridge": "a", "routed": "b"},
    "Only a bridge learns MACs; routed mode has no forwarding database to fill.",
    "a dict {'bridge': ..., 'routed': ...} with values 'a', 'b' or 'c'",
    {
        "bridge": {
            "b": "a bridge learns the source MAC of every frame it forwards, so after a and b "
            "talked, each pod's MAC is listed on its veth port (dev vethXXXX master cni0).",
            "c": "ee:ee:ee:ee:ee:ee is the MAC Calico gives the node's cali ends; in bridge "
            "mode the pods keep their own MACs and cni0 learns those.",
        },
        "routed": {
            "a": "there is no bridge in routed mode, so nothing learns MACs: `bridge fdb show` "
            "lists only each interface's own permanent multicast entries.",
            "c": "proxy ARP writes no FDB entry: the node answers ARP from its routing table, "
            "and ee:ee:ee:ee:ee:ee is the node's own MAC, never a learned one.",
        },
    },
)

Q5 = _question(
    "q5",
    {"ttl": 63, "src_mac": "ee:ee:ee:ee:ee:ee"},
    "d's eth0 got TTL 63 (node2 routed it once) from ee:ee:ee:ee:ee:ee, the node's cali end.",
    "a dict {'ttl': <number>, 'src_mac': '<MAC as tcpdump prints it>'} read from the capture",
    {
        "ttl": {
            64: "64 is what c sent; node2 forwarded the packet between two cali interfaces, "
            "and a routing hop takes one off the TTL before d's eth0 sees it.",
            62: "only one router is on the way (node2's kernel); the bridge on node1 is not on "
            "this path at all.",
        },
    },
)


LAB = Lab(
    id=LAB_ID,
    title="bridge versus L3 routing: pod to pod on one node",
    checks=(
        Check(
            "ex1-switched",
            "check-ex1-switched",
            3,
            "bridge: pod to pod is switched",
            check_bridge_switched,
        ),
        Check(
            "ex1-gateway",
            "check-ex1-gateway",
            2,
            "bridge: node and pods via the gateway",
            check_bridge_gateway,
        ),
        Check(
            "ex2-routed", "check-ex2-routed", 3, "routed: pod to pod is routed", check_routed_path
        ),
        Check("ex2-node", "check-ex2-node", 2, "routed: node reaches every pod", check_routed_node),
        Check(
            "q1-ttl",
            "check-q1",
            1,
            "question 1: which mode lowers the TTL",
            Q1,
            answers=("q1",),
            needs_run=False,
        ),
        Check(
            "q2-mac",
            "check-q2",
            1,
            "question 2: whose MAC the receiver sees",
            Q2,
            answers=("q2",),
            needs_run=False,
        ),
        Check(
            "q3-routes",
            "check-q3",
            1,
            "question 3: the node's routes",
            Q3,
            answers=("q3",),
            needs_run=False,
        ),
        Check(
            "q4-fdb",
            "check-q4",
            1,
            "question 4: the bridge fdb",
            Q4,
            answers=("q4",),
            needs_run=False,
        ),
        Check(
            "q5-capture",
            "check-q5",
            1,
            "question 5: TTL and source MAC read from a capture",
            Q5,
            answers=("q5",),
            needs_run=False,
        ),
        Check("breakfix", "check-breakfix", 3, "break/fix: both nodes repaired", BREAKFIX),
    ),
    reference=("course.podnet",),
    reference_allowed=(
        "course.podnet.bridge.host_veth_name",
        "course.podnet.routed.host_veth_name",
    ),
)
