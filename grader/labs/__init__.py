"""Per-lab check tables: which notebook grade cell is judged by which check.

Each lab has a module `grader/labs/labNN.py` defining `LAB = Lab(...)`. The table maps the
`grade_id` of every autograded cell to a check function that looks at the kernel and the wire
from its own process. The check code lives here, not in the notebook, so release and
feedback copies never carry it, and the grading process can run it without asking the
student's kernel anything.

Extra lab modules (the pipeline's own test fixture) are found through the
`K8SNET_EXTRA_LABS` environment variable: a list of folders separated by `:`.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from grader.verdict import Verdict


@dataclass(frozen=True)
class CheckContext:
    """What a check gets: the lab run to inspect and the learner's literal answers."""

    lab: str
    prefix: str
    namespaces: tuple[str, ...]
    answers: dict[str, object] = field(default_factory=dict)

    def ns(self, role: str) -> str:
        """The full namespace name for a role, e.g. `pod-a` -> `knl-3fa2-pod-a`."""
        return f"{self.prefix}-{role}"


CheckFn = Callable[[CheckContext], Verdict]


@dataclass(frozen=True)
class Check:
    """One autograded notebook cell and the function that judges it."""

    id: str
    grade_id: str
    points: float
    title: str
    run: CheckFn
    answers: tuple[str, ...] = ()
    needs_run: bool = True


@dataclass(frozen=True)
class Lab:
    """A lab's check table.

    `reference` names the course's reference implementation of the lab's topic (modules or
    objects, dotted); an exercise cell that uses one of them scores zero for its exercise
    (a static check of the submission, in `grader.executor`), except the dotted names
    listed in `reference_allowed` (helpers the exercise is meant to use).
    """

    id: str
    title: str
    checks: tuple[Check, ...]
    reference: tuple[str, ...] = ()
    reference_allowed: tuple[str, ...] = ()

    def check(self, check_id: str) -> Check:
        for chk in self.checks:
            if chk.id == check_id:
                return chk
        raise KeyError(f"lab {self.id} has no check {check_id!r}")

    def by_grade_id(self, grade_id: str) -> Check | None:
        return next((c for c in self.checks if c.grade_id == grade_id), None)

    @property
    def total_points(self) -> float:
        return sum(c.points for c in self.checks)


def module_name(lab_id: str) -> str:
    """`01-netns-veth` -> `lab01`: the number is the stable part of a lab's id."""
    number = lab_id.split("-", 1)[0]
    if not number.isdigit():
        raise ValueError(f"lab id {lab_id!r} must start with its number, like 01-netns-veth")
    return f"lab{number}"


@functools.cache
def load_lab(lab_id: str) -> Lab:
    """Import the check table of `lab_id` from grader.labs or a K8SNET_EXTRA_LABS folder."""
    name = module_name(lab_id)
    for folder in filter(None, os.environ.get("K8SNET_EXTRA_LABS", "").split(":")):
        path = Path(folder) / f"{name}.py"
        if path.is_file():
            spec = importlib.util.spec_from_file_location(f"k8snet_extra_{name}", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return _lab_of(module, lab_id)
    return _lab_of(importlib.import_module(f"grader.labs.{name}"), lab_id)


def _lab_of(module: object, lab_id: str) -> Lab:
    lab = getattr(module, "LAB", None)
    if not isinstance(lab, Lab) or lab.id != lab_id:
        raise LookupError(f"{module!r} does not define LAB for {lab_id}")
    return lab
