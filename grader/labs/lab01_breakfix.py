"""Lab 01's break/fix check (the demo every lab copies): node1 must reach both pods again.

The proof is packets only: node1 pings pod-c and pod-d. How the learner repaired the faults
(`ip` in a shell cell, or the Python API) does not matter; which faults were drawn matters
only for the hints (`grader.breakfix`). Register it in a lab's table with
`Check("breakfix", "check-breakfix", 2, "break/fix: node1 and its pods", CHECK)`.
"""

from __future__ import annotations

from course.faults.lab01 import CATALOGUE, NODE, POD_IP
from grader import breakfix, journey, probes
from grader.labs import CheckContext
from grader.labs.lab01 import concurrently
from grader.verdict import Verdict

# Longer than lab 01's other probes: right after a repair, the node's ARP entry for the pod
# may still be INCOMPLETE from the broken time, and the kernel retries ARP only once a second.
PROBE_TIMEOUT = 1.5


def node_reaches_pods(ctx: CheckContext) -> Verdict:
    """node1 pings pod-c and pod-d at the same time; both must answer from their own IP.

    Each ping is followed hop by hop (`grader.journey`): the verdict shows where the first
    failing one stopped, or the path of a working one.
    """
    roles = sorted(POD_IP)
    seen = concurrently(
        *(lambda r=r: journey.ping(ctx, NODE, POD_IP[r], timeout=PROBE_TIMEOUT) for r in roles)
    )
    bad = [(r, o, t) for r, (o, t) in zip(roles, seen, strict=True) if not _answered(o)]
    sent = " and ".join(f"{o.sent} to {r}" for r, (o, _) in zip(roles, seen, strict=True))
    observed = " ".join(f"{r}: {o.describe()}" for r, (o, _) in zip(roles, seen, strict=True))
    if bad:
        names = " and ".join(r for r, _, _ in bad)
        failed = Verdict.fail(
            f"node1 does not reach {names}",
            sent=f"from node1: {sent}",
            observed=observed,
            expected=", ".join(f"an echo reply from {r} ({POD_IP[r]})" for r in roles),
            hint="",
        )
        return journey.attach(failed, bad[0][2])
    done = Verdict.ok(
        "node1 reaches pod-c and pod-d", sent=f"from node1: {sent}", observed=observed
    )
    return journey.attach(done, seen[-1][1])


def _answered(obs: probes.Observation) -> bool:
    return obs.ok and obs.reply is not None and obs.reply.src == obs.dst


CHECK = breakfix.check(CATALOGUE, node_reaches_pods)
