"""The grader's side of break/fix exercises (`course.faults`): prove the repair, hint in steps.

    CHECK = breakfix.check(CATALOGUE, probe)      # a CheckFn for a lab's check table

`probe(ctx)` is the lab's own proof that the path works, with real packets (for lab 01:
node1 pings both pods). It passes only when every drawn fault is repaired, whatever the
learner did to repair it. While it fails, the feedback never names a fault; it escalates
with the learner's failed attempts at this check in this run:

    attempt 1:  where the packet stops            (the fault's level-1 hint)
    attempt 2+: and which object to look at       (level 2)

Never the fix itself. Attempts are counted by the grading side under
/run/k8s-netlabs/attempts/<run prefix>/<catalogue>, outside anything the check reads from
the notebook. (The kernel runs as root and could reset the file: that buys only a gentler
hint, never a point.)
"""

from __future__ import annotations

import contextlib
import fcntl
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from course.faults import Catalogue, Fault, draw, identity
from course.kernel import Netns
from grader.labs import CheckContext, CheckFn
from grader.verdict import Verdict

ATTEMPTS_DIR = Path("/run/k8s-netlabs/attempts")


class CtxRoles(Mapping[str, Netns]):
    """Roles of the learner's run as namespaces, opened on demand and closed after use."""

    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self._open: dict[str, Netns] = {}

    def __getitem__(self, role: str) -> Netns:
        if role not in self._open:
            self._open[role] = Netns(self.ctx.ns(role))
        return self._open[role]

    def __iter__(self) -> Iterator[str]:
        return iter(self._open)

    def __len__(self) -> int:
        return len(self._open)

    def close(self) -> None:
        for ns in self._open.values():
            ns.close()


def _attempts_file(prefix: str, key: str) -> Path:
    return ATTEMPTS_DIR / prefix / re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def attempts(prefix: str, key: str) -> int:
    """Failed attempts so far at check `key` in run `prefix`."""
    try:
        return int(_attempts_file(prefix, key).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def count_attempt(prefix: str, key: str) -> int:
    """One more failed attempt; returns the new count (locked: checks may run at once)."""
    path = _attempts_file(prefix, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        try:
            n = int(f.read().strip() or 0) + 1
        except ValueError:
            n = 1
        f.seek(0)
        f.truncate()
        f.write(f"{n}\n")
    return n


def _record(prefix: str) -> object | None:
    from course.runs import load_runs

    return next((r for r in load_runs() if r.prefix == prefix), None)


def _still_there(faults: list[Fault], ctx: CheckContext) -> list[Fault]:
    """The drawn faults the kernel still shows (all of them if a fault cannot tell)."""
    roles = CtxRoles(ctx)
    left = []
    try:
        for fault in faults:
            present = True
            if fault.present is not None:
                with contextlib.suppress(Exception):
                    present = bool(fault.present(roles))
            if present:
                left.append(fault)
    finally:
        roles.close()
    return left or faults


def hint(faults: list[Fault], attempt: int, total: int) -> str:
    """Level 1 (where the packet stops), from the 2nd failed attempt on also level 2."""
    first = faults[0]
    if total > 1:
        count = f"{len(faults)} of your {total} faults {'is' if len(faults) == 1 else 'are'}"
    else:
        count = "Your fault is"
    text = f"{count} still there. Where it stops: {first.where}."
    if attempt >= 2:
        text += f" Look at {first.look_at}."
    else:
        text += " (Run the check again after trying: the next hint says where to look.)"
    return text


def _not_injected(catalogue: Catalogue) -> Verdict:
    return Verdict.fail(
        "the faults of this exercise were never injected into your lab",
        sent="read this run's record for the faults of the exercise",
        observed=f"no faults of {catalogue.name} recorded in this run",
        expected="the break cell of the exercise run once, after the lab works",
        hint="run the exercise's cells from the top: build, check, then the cell that breaks it",
    )


def _carry(source: Verdict, target: Verdict) -> Verdict:
    """Keep the probe's details and packet journey on the break/fix verdict."""
    target.details = source.details
    target.journey, target.journey_dot = source.journey, source.journey_dot
    return target


def check(
    catalogue: Catalogue, probe: Callable[[CheckContext], Verdict], *, key: str | None = None
) -> CheckFn:
    """A check for a break/fix exercise: full marks exactly when `probe` passes."""
    key = key or catalogue.name

    def run(ctx: CheckContext) -> Verdict:
        record = _record(ctx.prefix)
        if record is None or catalogue.name not in (getattr(record, "faults", None) or {}):
            return _not_injected(catalogue)
        verdict = probe(ctx)
        if verdict.passed:
            done = Verdict.ok(f"repaired: {verdict.summary}", verdict.sent, verdict.observed)
            return _carry(verdict, done)
        n = count_attempt(ctx.prefix, key)
        who = identity(record, create=False) or ""
        drawn = draw(catalogue, who)
        left = _still_there(drawn, ctx)
        failed = Verdict.fail(
            f"not repaired yet ({verdict.summary}; failed attempt {n})",
            sent=verdict.sent,
            observed=verdict.observed,
            expected=verdict.expected,
            hint=hint(left, n, len(drawn)),
        )
        return _carry(verdict, failed)

    run.__name__ = f"breakfix_{re.sub(r'[^A-Za-z0-9]', '_', catalogue.name)}"
    run.__doc__ = f"Break/fix {catalogue.name}: the probe passes with every drawn fault repaired."
    return run
