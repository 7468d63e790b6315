"""Lab 03's break/fix check: pod a (node1) reaches pod e (node3) through the overlay again.

The proof is a ping followed hop by hop (`grader.journey`): the verdict shows where it
stopped. How the learner repaired the faults does not matter; the hints come from the
faults still present (`grader.breakfix`).
"""

from __future__ import annotations

from course.faults.lab03 import CATALOGUE
from grader import breakfix, journey
from grader.labs import CheckContext
from grader.verdict import Verdict

POD_A, POD_E = "10.244.1.2", "10.244.3.2"
PROBE_TIMEOUT = 1.5  # an INCOMPLETE neighbour entry from the broken time is retried once a second


def a_reaches_e(ctx: CheckContext) -> Verdict:
    obs, trip = journey.ping(ctx, "node1-a", POD_E, timeout=PROBE_TIMEOUT)
    sent = f"from pod a (node1): {obs.sent}"
    if obs.ok and obs.reply is not None and obs.reply.src == POD_E:
        done = Verdict.ok("pod a reaches pod e on node3", sent=sent, observed=obs.describe())
        return journey.attach(done, trip)
    failed = Verdict.fail(
        "pod a does not reach pod e on node3",
        sent=sent,
        observed=f"{obs.describe()} {trip.outcome}",
        expected=f"an echo reply from pod e ({POD_E}), through flannel.1 on node1 and node3",
        hint="",
    )
    return journey.attach(failed, trip)


CHECK = breakfix.check(CATALOGUE, a_reaches_e)
