"""Break/fix exercises: a lab's catalogue of faults, a few drawn per learner, injected for real.

A real cluster breaks in small ways: a link left down, a route missing, a /32 where a /24
belongs. Finding such a fault with `ip`, `ping` and `tcpdump` is the skill this course is
for, so each lab may declare a `Catalogue` of `Fault`s. The exercise builds a working
topology, then `inject(cluster, CATALOGUE)` breaks it with `k` faults drawn from the
learner's identity: neighbours get different faults, and the same learner always gets the
same ones (the grader re-creates them from the same identity).

The identity is `$K8SNET_LEARNER` (the grading executor sets it to nbgrader's student id);
without it, a random seed (one per kernel) is stored in the run record at the first draw, so
re-running the cells, even rebuilding the lab, in the same kernel keeps the same faults.

A fault carries two hints and never its own name in feedback: level 1 says where the packet
stops, level 2 which object to look at. The fix itself is the learner's. The grader side of
the exercise is `grader.breakfix`.
"""

from __future__ import annotations

import hashlib
import os
import random
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from course.kernel import Netns

# Roles -> namespaces: `Cluster.namespaces` in the notebook, a lookup by name in the grader.
Roles = Mapping[str, "Netns"]
IDENTITY_ENV = "K8SNET_LEARNER"
# One seed per Python process (a notebook's kernel): a lab rebuilt in the same kernel gets
# the same faults again. It is copied into each run record, where the grader reads it.
_KERNEL_SEED = secrets.token_hex(8)


@dataclass(frozen=True)
class Fault:
    """One way to break a working lab.

    `apply` breaks it; `present` (optional) tells whether this fault is still there, so the
    hint talks about a fault the learner has not repaired yet; `repair` (optional) is the
    instructor's fix, used by the tests, never shown to learners.
    """

    id: str
    title: str
    apply: Callable[[Roles], None]
    where: str  # hint level 1: where the packet stops
    look_at: str  # hint level 2: which object to look at
    present: Callable[[Roles], bool] | None = None
    repair: Callable[[Roles], None] | None = None


@dataclass(frozen=True)
class Catalogue:
    """The faults of one break/fix exercise; `k` of them are drawn for each learner."""

    name: str  # unique across labs: "01-netns-veth/node-pods"
    faults: tuple[Fault, ...]
    k: int = 2
    story: str = ""  # what the learner is told: the symptom, never the fault

    def fault(self, fault_id: str) -> Fault:
        for f in self.faults:
            if f.id == fault_id:
                return f
        raise KeyError(f"catalogue {self.name} has no fault {fault_id!r}")


def draw(catalogue: Catalogue, identity: str, k: int | None = None) -> list[Fault]:
    """`k` faults picked from `identity` alone (a hash, not Python's salted `hash()`).

    The same identity always gets the same faults, in catalogue order (the order they are
    applied), on any machine.
    """
    k = catalogue.k if k is None else k
    seed = hashlib.sha256(f"{catalogue.name}\0{identity}".encode()).digest()
    picked = set(random.Random(seed).sample(range(len(catalogue.faults)), k))
    return [f for i, f in enumerate(catalogue.faults) if i in picked]


def identity(record: Any, create: bool = True) -> str | None:
    """The learner's identity: $K8SNET_LEARNER, else this run's stored seed.

    The seed is made and saved at the first draw (`create`); the grader only reads it.
    """
    learner = os.environ.get(IDENTITY_ENV, "").strip()
    if learner:
        return f"learner:{learner}"
    if not getattr(record, "faults_seed", None):
        if not create:
            return None
        record.faults_seed = _KERNEL_SEED
        record.save()
    return f"seed:{record.faults_seed}"


@dataclass
class Injected:
    """What `inject` tells the learner: how many faults and the symptom, never which ones."""

    catalogue: Catalogue
    faults: list[Fault]
    fresh: bool

    def __str__(self) -> str:
        n = len(self.faults)
        head = f"{n} fault{'s' if n != 1 else ''} injected into your lab"
        if not self.fresh:
            head = f"your lab already has its {n} fault{'s' if n != 1 else ''} (not injected again)"
        return f"{head}. {self.catalogue.story}".strip()

    def __repr__(self) -> str:
        return str(self)


def inject(cluster: Any, catalogue: Catalogue, again: bool = False) -> Injected:
    """Break a working lab with the learner's faults; once per run (re-running does nothing).

    Re-running the cell after a repair must not undo the learner's work, so the faults
    applied are recorded in the run record; `again=True` applies them once more.
    """
    record = cluster.record
    who = identity(record)
    assert who is not None
    faults = draw(catalogue, who)
    done: dict[str, list[str]] = getattr(record, "faults", None) or {}
    if catalogue.name in done and not again:
        return Injected(catalogue, faults, fresh=False)
    for fault in faults:
        fault.apply(cluster.namespaces)
    done[catalogue.name] = [f.id for f in faults]
    record.faults = done
    record.save()
    return Injected(catalogue, faults, fresh=True)
