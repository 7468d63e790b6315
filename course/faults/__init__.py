"""Break/fix exercises: a lab's catalogue of faults, a few drawn per learner, injected for real.

A real cluster breaks in small ways: a link left down, a route missing, a /32 where a /24
belongs. Finding such a fault with `ip`, `ping` and `tcpdump` is the skill this course is
for, so each lab may declare a `Catalogue` of `Fault`s. The exercise builds a working
topology, then `inject(cluster, CATALOGUE)` breaks it with `k` faults drawn from the
learner's identity: neighbours get different faults, and the same learner always gets the
same ones (the grader re-creates them from the same identity).

The identity is, in this order: `$K8SNET_LEARNER` (the grading executor sets it to nbgrader's
student id); `$JUPYTERHUB_USER` (on a course's JupyterHub the learner works under the name
nbgrader later grades, so both draw the same faults); else a learner id made once and kept in
`$K8SNET_STATE_DIR/learner-id` (default `~/.local/state/k8s-netlabs`), so the notebook, a
rebuilt lab and `k8snet check` on the same machine all see the same faults as the repairs the
learner wrote. Only if that file cannot be written does a seed per kernel stand in.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from course.kernel import Netns

# Roles -> namespaces: `Cluster.namespaces` in the notebook, a lookup by name in the grader.
Roles = Mapping[str, "Netns"]
IDENTITY_ENV = "K8SNET_LEARNER"
HUB_USER_ENV = "JUPYTERHUB_USER"
STATE_DIR_ENV = "K8SNET_STATE_DIR"
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
    # Pairs of fault ids never drawn together: one would undo or hide the other (a route
    # through a cable that the other fault takes down cannot even be written).
    apart: tuple[tuple[str, str], ...] = ()

    def compatible(self, picked: list[Fault]) -> bool:
        ids = {f.id for f in picked}
        return not any(a in ids and b in ids for a, b in self.apart)

    def fault(self, fault_id: str) -> Fault:
        for f in self.faults:
            if f.id == fault_id:
                return f
        raise KeyError(f"catalogue {self.name} has no fault {fault_id!r}")


def draw(catalogue: Catalogue, identity: str, k: int | None = None) -> list[Fault]:
    """`k` faults picked from `identity` alone (a hash, not Python's salted `hash()`).

    The same identity always gets the same faults, in catalogue order (the order they are
    applied), on any machine. A draw holding a pair the catalogue keeps `apart` is drawn
    again from the same generator, so every other identity keeps the faults it had.
    """
    k = catalogue.k if k is None else k
    seed = hashlib.sha256(f"{catalogue.name}\0{identity}".encode()).digest()
    rng = random.Random(seed)
    for _ in range(1000):
        picked = set(rng.sample(range(len(catalogue.faults)), k))
        faults = [f for i, f in enumerate(catalogue.faults) if i in picked]
        if catalogue.compatible(faults):
            return faults
    raise ValueError(f"catalogue {catalogue.name}: no {k} faults can be drawn together")


def learner_file() -> Path:
    """Where this machine's self-learner keeps the id that draws their faults."""
    base = os.environ.get(STATE_DIR_ENV) or os.path.expanduser("~/.local/state/k8s-netlabs")
    return Path(base) / "learner-id"


def _stored_learner(create: bool) -> str | None:
    """The id in `learner_file()`, made once (first writer wins, so two kernels agree)."""
    path = learner_file()
    try:
        return path.read_text().strip() or None
    except OSError:
        if not create:
            return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(8) + "\n")
        return path.read_text().strip() or None
    except FileExistsError:
        return path.read_text().strip() or None
    except OSError:
        return None


def identity(record: Any, create: bool = True) -> str | None:
    """The learner's identity (see the module docstring for the order).

    The seed that stands in for a name is also saved in the run record, so the grader (which
    only reads, `create=False`) hints about the same faults the kernel injected.
    """
    for env in (IDENTITY_ENV, HUB_USER_ENV):
        learner = os.environ.get(env, "").strip()
        if learner:
            return f"learner:{learner}"
    if getattr(record, "faults_seed", None):
        return f"seed:{record.faults_seed}"
    if not create:
        return None
    record.faults_seed = _stored_learner(create=True) or _KERNEL_SEED
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


def inject(
    cluster: Any,
    catalogue: Catalogue,
    again: bool = False,
    prepare: Callable[[], object] | None = None,
) -> Injected:
    """Break a working lab with the learner's faults; once per run (re-running does nothing).

    Re-running the cell after a repair must not undo the learner's work, so the faults
    applied are recorded in the run record; `again=True` applies them once more.
    `prepare()` runs just before the faults, and only then: it builds the known-good state
    the faults break (run again later, it could repair some of them).
    """
    record = cluster.record
    who = identity(record)
    assert who is not None
    faults = draw(catalogue, who)
    done: dict[str, list[str]] = getattr(record, "faults", None) or {}
    if catalogue.name in done and not again:
        return Injected(catalogue, faults, fresh=False)
    if prepare is not None:
        prepare()
    for fault in faults:
        fault.apply(cluster.namespaces)
    done[catalogue.name] = [f.id for f in faults]
    record.faults = done
    record.save()
    return Injected(catalogue, faults, fresh=True)
