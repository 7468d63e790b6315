"""What a check found, in words a learner can act on.

The grader contract: a failed check says what was sent (or inspected), what came back or
where it stopped, what was expected, and a hint. A `Verdict` carries exactly those parts so
no check can forget one, and it travels between processes as JSON because verdicts are
computed outside the student's kernel (see `grader.verify`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Verdict:
    """The outcome of one check: `passed` plus the evidence behind it."""

    passed: bool
    summary: str
    sent: str = ""
    observed: str = ""
    expected: str = ""
    hint: str = ""
    details: list[str] = field(default_factory=list)
    # the probe's packet hop by hop (grader.journey): text, and graphviz source for notebooks
    journey: str = ""
    journey_dot: str = ""

    @classmethod
    def ok(cls, summary: str, sent: str = "", observed: str = "") -> Verdict:
        return cls(True, summary, sent=sent, observed=observed)

    @classmethod
    def fail(cls, summary: str, *, sent: str, observed: str, expected: str, hint: str) -> Verdict:
        """A failure must name all four parts; keyword-only so none is left out by accident."""
        return cls(False, summary, sent=sent, observed=observed, expected=expected, hint=hint)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Verdict:
        data: dict[str, Any] = json.loads(text)
        return cls(**data)

    def render(self) -> str:
        """Plain text for notebook outputs, feedback HTML and the terminal."""
        mark = "PASS" if self.passed else "FAIL"
        lines = [f"[{mark}] {self.summary}"]
        for label, text in (
            ("sent", self.sent),
            ("observed", self.observed),
            ("expected", self.expected),
            ("hint", self.hint),
        ):
            if text:
                lines.append(f"  {label + ':':9} {text}")
        lines.extend(f"  {line}" for line in self.details)
        if self.journey:
            lines.extend(f"  {line}" for line in self.journey.splitlines())
        return "\n".join(lines)
