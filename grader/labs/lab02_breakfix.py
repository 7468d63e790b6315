"""Lab 02's break/fix check: every pod reaches its neighbour on the same node and its node.

The proof is packets only, on both nodes at once: a -> b over the bridge, c -> d routed,
each pod -> its node's own address (which needs its default route), and each node -> its
pods. How the learner repaired (`%%ns` cells or Python) does not matter; which faults were
drawn matters only for the hints (`grader.breakfix`).

Plain pings first, all at the same time; then one more ping is followed hop by hop
(`grader.journey`): the first failing path, so the verdict shows where it stops, or the
routed path c -> d as the picture of a working lab.
"""

from __future__ import annotations

from course import addressing
from course.faults.lab02 import CATALOGUE, NODE_OF, POD_IP, pod_role
from grader import breakfix, journey, probes
from grader.labs import CheckContext
from grader.labs.lab01 import concurrently
from grader.verdict import Verdict

# Right after a repair, a neighbour entry may still be INCOMPLETE from the broken time, and
# the kernel retries ARP only about once a second.
PROBE_TIMEOUT = 1.5

# (from role, to address, what it proves)
PATHS: tuple[tuple[str, str, str], ...] = (
    (pod_role("a"), POD_IP["b"], "pod a -> pod b (bridged)"),
    (pod_role("c"), POD_IP["d"], "pod c -> pod d (routed)"),
    (pod_role("a"), addressing.node_ip(1), "pod a -> node1 (default route)"),
    (pod_role("c"), addressing.node_ip(2), "pod c -> node2 (default route)"),
    ("node1", POD_IP["a"], "node1 -> pod a"),
    ("node1", POD_IP["b"], "node1 -> pod b"),
    ("node2", POD_IP["c"], "node2 -> pod c"),
    ("node2", POD_IP["d"], "node2 -> pod d"),
)


def _answered(obs: probes.Observation) -> bool:
    return obs.ok and obs.reply is not None and obs.reply.src == obs.dst


def _node_roles(role: str) -> list[str]:
    """The namespaces of the node `role` belongs to: the only ones its packets can cross."""
    node = role.split("-")[0]
    return [node, *(pod_role(p) for p, n in NODE_OF.items() if n == node)]


def pods_and_nodes_talk(ctx: CheckContext) -> Verdict:
    """Every path of PATHS answers; the verdict names the ones that do not."""
    seen = concurrently(
        *(lambda s=s, d=d: probes.ping(ctx.ns(s), d, timeout=PROBE_TIMEOUT) for s, d, _ in PATHS)
    )
    bad = [(p, o) for p, o in zip(PATHS, seen, strict=True) if not _answered(o)]
    observed = (
        "; ".join(f"{what}: {o.describe()}" for (_, _, what), o in bad) or "every ping answered"
    )
    sent = f"one ping on each of {len(PATHS)} paths: " + ", ".join(what for _, _, what in PATHS)
    if bad:
        (src, dst, _), _ = bad[0]
        _, trip = journey.ping(ctx, src, dst, timeout=PROBE_TIMEOUT, only=_node_roles(src))
        failed = Verdict.fail(
            f"{len(bad)} of {len(PATHS)} paths fail: " + ", ".join(w for (_, _, w), _ in bad),
            sent=sent,
            observed=observed,
            expected="an echo reply on every path, from the address pinged",
            hint="",
        )
        return journey.attach(failed, trip)
    _, trip = journey.ping(
        ctx, pod_role("c"), POD_IP["d"], timeout=PROBE_TIMEOUT, only=_node_roles("node2")
    )
    return journey.attach(
        Verdict.ok("every pod reaches its neighbour and its node", sent, observed), trip
    )


CHECK = breakfix.check(CATALOGUE, pods_and_nodes_talk)
