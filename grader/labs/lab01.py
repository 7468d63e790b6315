"""Checks of lab 01 "netns and veth": kernel state over netlink, plus real packets.

Each check opens the learner's namespaces by name (the run prefix comes from the run
registry), reads links and addresses over netlink, and sends real packets from inside the
namespaces with `grader.probes` (Scapy or kernel sockets in a child process that entered
the namespace). A failure names what was inspected or sent, what came back, what was
expected, and a hint, in that order.

Roles and addresses (the lab's addressing plan; node 1 owns 10.244.1.0/24):
    pod-a 10.244.1.2, pod-b 10.244.1.3  -- cabled to each other (exercise 2)
    pod-c 10.244.1.4, pod-d 10.244.1.5  -- cabled to node1, Kubernetes style (exercise 4)

Hints speak the learner's language: the notebook's variable for each namespace (`node`,
`pod_a`, ...) for the Python exercises, and the `ip` command for a `%%ns` cell.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from course.kernel import Netns
from grader import journey, probes
from grader.labs import Check, CheckContext, Lab
from grader.labs.common import Failed, fail, judged, misconceptions, question
from grader.verdict import Verdict

LAB_ID = "01-netns-veth"
NODE = "node1"
POD_IP = {
    "pod-a": "10.244.1.2",
    "pod-b": "10.244.1.3",
    "pod-c": "10.244.1.4",
    "pod-d": "10.244.1.5",
}
# The notebook's variable holding each namespace (hints name what the learner typed).
VAR = {"node1": "node", "pod-a": "pod_a", "pod-b": "pod_b", "pod-c": "pod_c", "pod-d": "pod_d"}
SERVER_PORT = 8080
PROBE_TIMEOUT = 0.5
T = TypeVar("T")


def concurrently(*calls: Callable[[], T]) -> list[T]:
    """Run independent probes at the same time (each is its own process); keep the order.

    The first `Failed` (in call order) is raised, as if the calls had run one by one.
    """
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
    return [f.result() for f in futures]


# --- inspections shared by the checks ------------------------------------------------------------
def var(role: str) -> str:
    return VAR.get(role, role.replace("-", "_"))


def netns(ctx: CheckContext, role: str, made_in: str) -> Netns:
    ns = Netns(ctx.ns(role))
    if not ns.exists():
        raise fail(
            f"there is no {role} namespace",
            sent=f"looked for /run/netns/{ns.name}",
            observed="no such namespace",
            expected=f"the namespace of {role}, created in {made_in}",
            hint=f"{var(role)} = new_namespace({role!r}), in {made_in}",
        )
    return ns


def link(ns: Netns, role: str, ifname: str, hint: str) -> dict[str, Any]:
    for entry in ns.links():
        if entry["name"] == ifname:
            return entry
    names = ", ".join(e["name"] for e in ns.links())
    raise fail(
        f"{role} has no interface {ifname}",
        sent=f"netlink: list the links of {ns.name}",
        observed=f"links in {role}: {names}",
        expected=f"{ifname} in {role}",
        hint=hint,
    )


def peer_role(ctx: CheckContext, ns: Netns, veth: dict[str, Any]) -> str | None:
    """Which namespace of this run holds the other end of `veth` (None: outside the lab)."""
    role_of = {name: name[len(ctx.prefix) + 1 :] for name in ctx.namespaces}
    if veth["link_netnsid"] is None:
        return role_of.get(ns.name)
    for name, role in role_of.items():
        other = Netns(name)
        if name == ns.name or not other.exists():
            continue
        if ns.nsid_of(other) == veth["link_netnsid"]:
            other.close()
            return role
        other.close()
    return None


def veth_to(ctx: CheckContext, ns: Netns, role: str, ifname: str, want: str, hint: str) -> None:
    """`ifname` in `role` is a veth whose other end sits in namespace `want`."""
    entry = link(ns, role, ifname, hint)
    if entry["kind"] != "veth":
        raise fail(
            f"{role}'s {ifname} is not a veth",
            sent=f"netlink: link details of {ifname} in {ns.name}",
            observed=f"kind {entry['kind']}",
            expected="a veth (one end of a virtual cable)",
            hint=hint,
        )
    where = peer_role(ctx, ns, entry)
    if where != want:
        raise fail(
            f"the other end of {role}'s {ifname} is in the wrong namespace",
            sent=f"netlink: peer of {ifname} in {ns.name} (link-netnsid {entry['link_netnsid']})",
            observed=f"the peer end is in {where or 'a namespace outside this lab'}",
            expected=f"the peer end inside {want}",
            hint=(
                f"create the pair with one end in each namespace: "
                f"{var(role)}.add_veth({ifname!r}, {var(want)}, ...) "
                f"(%%ns {role}: ip link add {ifname} type veth peer name ... netns $RUN-{want})"
            ),
        )


def is_up(ns: Netns, role: str, ifname: str) -> None:
    entry = ns.link(ifname)
    if not entry["up"]:
        raise fail(
            f"{role}'s {ifname} is DOWN",
            sent=f"netlink: flags of {ifname} in {ns.name}",
            observed=f"{ifname} is administratively DOWN (operstate {entry['operstate']})",
            expected=f"{ifname} UP: a link carries no packet until it is set up, on BOTH ends",
            hint=f"{var(role)}.up({ifname!r})  (%%ns {role}: ip link set {ifname} up)",
        )


def has_address(ns: Netns, role: str, ifname: str, cidr: str) -> None:
    found = ns.addresses(ifname)
    if cidr not in found:
        raise fail(
            f"{role}'s {ifname} does not have {cidr}",
            sent=f"netlink: IPv4 addresses of {ifname} in {ns.name}",
            observed=f"addresses: {', '.join(found) or 'none'}",
            expected=f"{cidr} on {ifname}",
            hint=(
                f"{var(role)}.add_address({ifname!r}, {cidr!r})  "
                f"(%%ns {role}: ip addr replace {cidr} dev {ifname})"
            ),
        )


def answers_ping(src: Netns, src_role: str, dst: str, expected: str, hint: str) -> str:
    obs = probes.ping(src.name, dst, timeout=PROBE_TIMEOUT)
    if not obs.ok or obs.reply is None or obs.reply.src != dst:
        raise fail(
            f"no ICMP echo reply from {dst} to {src_role}",
            sent=obs.sent + f" from {src_role}",
            observed=obs.describe(),
            expected=expected,
            hint=hint,
        )
    return obs.describe()


# --- exercise 1: a pod namespace with a working loopback ---------------------------------------------
@judged
def ex1_pod_namespace(ctx: CheckContext) -> Verdict:
    """pod-a exists as its own namespace, lo is UP and 127.0.0.1 answers inside it."""
    pod = netns(ctx, "pod-a", "exercise 1")
    is_up(pod, "pod-a", "lo")
    seen = answers_ping(
        pod,
        "pod-a",
        "127.0.0.1",
        expected="an echo reply from 127.0.0.1 over pod-a's own lo",
        hint="pod_a.up('lo')  (%%ns pod-a: ip link set lo up)",
    )
    return Verdict.ok("pod-a is a namespace of its own and its loopback works", observed=seen)


# --- exercise 2: two pods joined by a veth pair -------------------------------------------------------
@judged
def ex2_veth_pair(ctx: CheckContext) -> Verdict:
    """pod-a:eth0 <-> pod-b:eth0 is one veth pair, both up and addressed; pings cross it.

    Each pod pings the other (as the exercise says), at the same time; the ping from pod-a
    is followed hop by hop, and its journey is shown under the verdict.
    """
    hint = "pod_a.add_veth('eth0', pod_b, 'eth0') creates the pair with one end in each pod"
    a, b = netns(ctx, "pod-a", "exercise 1"), netns(ctx, "pod-b", "exercise 2")
    veth_to(ctx, a, "pod-a", "eth0", "pod-b", hint)
    veth_to(ctx, b, "pod-b", "eth0", "pod-a", hint)
    for ns, role in ((a, "pod-a"), (b, "pod-b")):
        has_address(ns, role, "eth0", f"{POD_IP[role]}/24")
        is_up(ns, role, "eth0")
    (obs, trip), back = concurrently(
        lambda: journey.ping(ctx, "pod-a", POD_IP["pod-b"], timeout=PROBE_TIMEOUT),
        lambda: probes.ping(b.name, POD_IP["pod-a"], timeout=PROBE_TIMEOUT),
    )
    hint = "both ends up, both addresses in 10.244.1.0/24, lo up in both pods"
    for src, dst, seen in (("pod-a", "pod-b", obs), ("pod-b", "pod-a", back)):
        if not _answered(seen, POD_IP[dst]):
            raise journey.attach(
                fail(
                    f"no ICMP echo reply from {dst} to {src}",
                    sent=f"{seen.sent} from {src}",
                    observed=seen.describe(),
                    expected=f"an echo reply from {dst} ({POD_IP[dst]}) through the veth",
                    hint=hint,
                ),
                trip,
            )
    done = Verdict.ok(
        "pod-a and pod-b are joined by a veth pair and ping each other",
        observed=f"pod-a -> pod-b: {obs.describe()} pod-b -> pod-a: {back.describe()}",
    )
    return journey.attach(done, trip)


def _answered(obs: probes.Observation, dst: str) -> bool:
    return obs.ok and obs.reply is not None and obs.reply.src == dst


# --- exercise 3: two containers in one pod share its namespace ------------------------------------
HTTP_GET = b"GET / HTTP/1.0\r\n\r\n"


def _connect(ns: Netns, dst: str) -> probes.Observation:
    """A real TCP connection plus an HTTP request, so a server answers at once."""
    return probes.tcp_connect(ns.name, dst, SERVER_PORT, timeout=PROBE_TIMEOUT, payload=HTTP_GET)


@judged
def ex3_shared_localhost(ctx: CheckContext) -> Verdict:
    """A server on 127.0.0.1:8080 in pod-a is reachable from pod-a only."""
    a, b = netns(ctx, "pod-a", "exercise 1"), netns(ctx, "pod-b", "exercise 2")
    # The three connections do not disturb each other: send them at once.
    inside, from_b, via_eth = concurrently(
        lambda: _connect(a, "127.0.0.1"),
        lambda: _connect(b, "127.0.0.1"),
        lambda: _connect(b, POD_IP["pod-a"]),
    )
    if not inside.ok:
        raise _no_server_in_a(from_b, inside)
    if from_b.ok:
        raise fail(
            "pod-b reached a server on its own 127.0.0.1:8080",
            sent=from_b.sent + " from pod-b",
            observed=from_b.describe(),
            expected="connection refused: pod-b's 127.0.0.1 is pod-b's own loopback",
            hint="run only the app container's server, and only inside pod-a",
        )
    if via_eth.ok:
        raise fail(
            "the server in pod-a is reachable from pod-b through the veth",
            sent=via_eth.sent + " from pod-b",
            observed=via_eth.describe(),
            expected="refused: the server listens on 127.0.0.1 only, which no other pod reaches",
            hint="bind the server to 127.0.0.1 (--bind 127.0.0.1), not to every address",
        )
    observed = f"from pod-a: {inside.describe()} From pod-b: {from_b.describe()}"
    return Verdict.ok(
        "containers of pod-a share localhost; pod-b cannot reach it", observed=observed
    )


def _no_server_in_a(in_b: probes.Observation, inside: probes.Observation) -> Failed:
    where = (
        "A server on 127.0.0.1:8080 answers in pod-b instead: the two 'containers' were "
        "started in different namespaces."
        if in_b.ok
        else "No namespace of pod-a or pod-b has a server on 127.0.0.1:8080."
    )
    return fail(
        "nothing answers on 127.0.0.1:8080 inside pod-a",
        sent=inside.sent + " from pod-a",
        observed=f"{inside.describe()} {where}",
        expected="the app container's server, listening on 127.0.0.1:8080 in pod-a",
        hint="start both containers with pod_a.popen([...]): they then share pod-a's namespace",
    )


# --- exercise 4: the node reaches its pods --------------------------------------------------------
@judged
def ex4_node_reaches_pods(ctx: CheckContext) -> Verdict:
    """pod-c and pod-d hang off node1 by veths, and node1 pings both pod IPs."""
    node = netns(ctx, NODE, "the setup cell")
    roles = ("pod-c", "pod-d")
    for role in roles:
        pod = netns(ctx, role, "exercise 4")
        hint = f"%%ns node1: ip link add veth-{role[-1]} type veth peer name eth0 netns $RUN-{role}"
        veth_to(ctx, pod, role, "eth0", NODE, hint)
        has_address(pod, role, "eth0", f"{POD_IP[role]}/24")
        is_up(pod, role, "eth0")
        host_end = f"veth-{role[-1]}"
        veth_to(ctx, node, NODE, host_end, role, hint)
        is_up(node, NODE, host_end)
        _routes_to(node, role, host_end)
    seen = concurrently(
        *(
            lambda role=role: journey.ping(ctx, NODE, POD_IP[role], timeout=PROBE_TIMEOUT)
            for role in roles
        )
    )
    for role, (obs, trip) in zip(roles, seen, strict=True):
        if not _answered(obs, POD_IP[role]):
            raise journey.attach(
                fail(
                    f"no ICMP echo reply from {role} to node1",
                    sent=f"{obs.sent} from node1",
                    observed=obs.describe(),
                    expected=f"an echo reply from {role} ({POD_IP[role]})",
                    hint=(
                        f"node1 needs an address (%%ns node1: ip addr replace 10.244.1.1/32 "
                        f"dev lo) and a route to {POD_IP[role]}"
                    ),
                ),
                trip,
            )
    done = Verdict.ok(
        "node1 reaches pod-c and pod-d through their veths",
        observed=" ".join(obs.describe() for obs, _ in seen),
    )
    return journey.attach(done, seen[0][1])


def _routes_to(node: Netns, role: str, host_end: str) -> None:
    route = node.route_get(POD_IP[role])
    if route is None or route["dev"] != host_end:
        raise fail(
            f"node1 does not route {POD_IP[role]} to {role}'s veth",
            sent=f"netlink: ip route get {POD_IP[role]} in {node.name}",
            observed=f"route: {route or 'unreachable'}",
            expected=f"{POD_IP[role]} via dev {host_end}",
            hint=f"%%ns node1: ip route replace {POD_IP[role]}/32 dev {host_end}",
        )


# --- question 1: what is left after deleting one end of a veth? --------------------------------------
Q1_RIGHT = "b"
Q1_WHY = {
    "a": "a veth pair is not two cards joined by a cable that can hang loose: it is one "
    "kernel device with two ends, and deleting either end unregisters both at once. "
    "(A physical NIC would stay and lose carrier; a veth end cannot outlive its peer.)",
    "c": "10.244.1.3 lived on pod-b's end, which is gone; and pod-a's end goes with it, so "
    "pod-a has no interface left that leads anywhere, UP or not.",
}


@judged
def q1_delete_one_end(ctx: CheckContext) -> Verdict:
    """Predict, then observe: deleting pod-b's eth0 removes pod-a's eth0 too."""
    answer = ctx.answers["q1"]
    if not isinstance(answer, str) or answer.strip().lower() != Q1_RIGHT:
        raise fail(
            "q1: that is not what the kernel does",
            sent="read your answer q1 from the notebook source",
            observed=f"q1 = {answer!r}",
            expected="the option matching what the observe cell shows",
            hint="a veth pair is one device with two ends: look at pod-a's links after the delete",
            details=misconceptions(answer, Q1_RIGHT, Q1_WHY),
        )
    a = netns(ctx, "pod-a", "exercise 1")
    left = [e["name"] for e in a.links() if e["name"] == "eth0"]
    if left:
        raise fail(
            "q1: the observe cell has not deleted pod-b's eth0 yet",
            sent=f"netlink: list the links of {a.name}",
            observed="pod-a still has eth0",
            expected="pod-a without eth0 after pod_b.delete_link('eth0')",
            hint="run the observe cell below your answer",
        )
    return Verdict.ok("q1: right, deleting one end of a veth deletes the whole pair")


# --- question 2: two pods on one node, each on its own cable ----------------------------------------
Q2_RIGHT = "b"
Q2_WHY = {
    "a": "same subnet only tells pod-c to ask ARP for 10.244.1.5 on its own cable; that "
    "cable ends at node1's veth-c, and node1 neither passes ARP between veths (there is no "
    "bridge) nor answers for an address that is not its own (proxy ARP is off). No ARP "
    "answer, so no IP packet ever reaches node1's routes.",
    "c": "learning MAC addresses is what a switch (a bridge) does; node1 has none here: "
    "veth-c and veth-d are two separate interfaces, and nothing forwards frames between "
    "them, however long you wait.",
}


@judged
def q2_same_subnet(ctx: CheckContext) -> Verdict:
    """Predict, then observe: pod-c cannot reach pod-d, nobody answers its ARP."""
    answer = ctx.answers["q2"]
    if isinstance(answer, str) and answer.strip().lower() == Q2_RIGHT:
        return Verdict.ok("q2: right, a veth reaches only its other end")
    # Wrong: show the evidence with a real ping (the learner saw it in the observe cell too).
    c = netns(ctx, "pod-c", "exercise 4")
    obs = probes.ping(c.name, POD_IP["pod-d"], timeout=PROBE_TIMEOUT)
    raise fail(
        "q2: that is not what the kernel does",
        sent=f"read q2 from the notebook; then {obs.sent} from pod-c",
        observed=f"q2 = {answer!r}. The wire: {obs.describe()}",
        expected="the option matching what the observe cell shows",
        hint="look at pod-c's `ip neigh` after the ping: who could answer its ARP?",
        details=misconceptions(answer, Q2_RIGHT, Q2_WHY),
    )


# --- question 3: which source address does pod-c see? (read from a capture) -------------------------
Q3 = question(
    "q3",
    "a",
    "veth-c has no address, so the kernel takes one from another interface of node1: the "
    "global 10.244.1.1 on lo. That is why the node gets an address in its pod range.",
    "one of 'a', 'b', 'c', 'd'",
    evidence="the capture shows",
    hint="run the capture cell and read the src column of the echo request pod-c received",
    why={
        "b": "127.0.0.1 has host scope: the kernel never picks it as the source of a packet "
        "that leaves the namespace (and pod-c's own 127.0.0.1 is pod-c itself).",
        "c": "10.244.1.4 is the destination, pod-c's own address; the sender puts its own "
        "address in the source field.",
        "d": "an interface needs no address of its own to send: the kernel takes a global "
        "address from any interface of the namespace, here 10.244.1.1 on node1's lo.",
    },
)


# --- break/fix: node1 and its pods, with the learner's own faults -----------------------------------
def breakfix(ctx: CheckContext) -> Verdict:
    """node1 reaches pod-c and pod-d again, whichever faults were drawn (`lab01_breakfix`).

    Imported when judged: lab01_breakfix itself imports from this module.
    """
    from grader.labs.lab01_breakfix import CHECK

    return CHECK(ctx)


LAB = Lab(
    id=LAB_ID,
    title="netns and veth",
    checks=(
        Check(
            "ex1-pod-namespace", "check-ex1", 1, "exercise 1: a pod namespace", ex1_pod_namespace
        ),
        Check(
            "ex2-veth-pair", "check-ex2", 2, "exercise 2: a veth between two pods", ex2_veth_pair
        ),
        Check(
            "ex3-shared-localhost",
            "check-ex3",
            2,
            "exercise 3: two containers, one pod",
            ex3_shared_localhost,
        ),
        Check(
            "ex4-node-reaches-pods",
            "check-ex4",
            2,
            "exercise 4: the node reaches its pods",
            ex4_node_reaches_pods,
        ),
        Check(
            "q2-same-subnet",
            "check-q2",
            1,
            "question 2: two pods, two cables",
            q2_same_subnet,
            answers=("q2",),
        ),
        Check(
            "q1-delete-one-end",
            "check-q1",
            1,
            "question 1: deleting one end of a veth",
            q1_delete_one_end,
            answers=("q1",),
        ),
        Check(
            "q3-source-address",
            "check-q3",
            1,
            "question 3: the source address pod-c sees",
            Q3,
            answers=("q3",),
        ),
        Check("breakfix", "check-breakfix", 2, "break/fix: node1 and its pods", breakfix),
    ),
)
