"""Lab 01's break/fix check (the demo every lab copies): node1 must reach both pods again.

The proof is packets only: node1 pings pod-c and pod-d. How the learner repaired the faults
(`ip` in a shell cell, or the Python API) does not matter; which faults were drawn matters
only for the hints (`grader.breakfix`). Register it in a lab's table with
`Check("breakfix", "check-breakfix", 2, "break/fix: node1 and its pods", CHECK)`.
"""

from __future__ import annotations

from course.faults.lab01 import CATALOGUE, NODE, POD_IP
from grader import breakfix, probes
from grader.labs import CheckContext
from grader.labs.lab01 import PROBE_TIMEOUT, concurrently
from grader.verdict import Verdict


def node_reaches_pods(ctx: CheckContext) -> Verdict:
    """node1 pings pod-c and pod-d at the same time; both must answer from their own IP."""
    node = ctx.ns(NODE)
    roles = sorted(POD_IP)
    seen = concurrently(
        *(lambda ip=POD_IP[r]: probes.ping(node, ip, timeout=PROBE_TIMEOUT) for r in roles)
    )
    bad = [(r, o) for r, o in zip(roles, seen, strict=True) if not o.ok or o.reply.src != o.dst]  # type: ignore[union-attr]
    sent = " and ".join(f"{o.sent} to {r}" for r, o in zip(roles, seen, strict=True))
    observed = " ".join(f"{r}: {o.describe()}" for r, o in zip(roles, seen, strict=True))
    if bad:
        names = " and ".join(r for r, _ in bad)
        return Verdict.fail(
            f"node1 does not reach {names}",
            sent=f"from node1: {sent}",
            observed=observed,
            expected=", ".join(f"an echo reply from {r} ({POD_IP[r]})" for r in roles),
            hint="",
        )
    return Verdict.ok("node1 reaches pod-c and pod-d", sent=f"from node1: {sent}", observed=observed)


CHECK = breakfix.check(CATALOGUE, node_reaches_pods)
