"""Lab 04's break/fix exercise: each planted fault alone breaks the probe with its own
symptom, hints escalate without naming it, and both the instructor's repair and the
notebook solution's generic repair earn full marks."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from course.cni.learner import CniLab
from course.faults import draw, inject
from course.faults.lab04 import CATALOGUE, NETWORK, state
from course.labs import topology
from course.topology import Cluster
from grader.labs import CheckContext
from grader.labs.lab04 import LAB, LAB_ID
from tests.nbharness import REPO

FAULTS = [f.id for f in CATALOGUE.faults]


def identity_for(fault: str) -> str:
    """A learner name whose draw is exactly `fault`."""
    for i in range(500):
        if [f.id for f in draw(CATALOGUE, f"learner:s{i}")] == [fault]:
            return f"s{i}"
    raise AssertionError(f"no identity draws {fault}")


def solution_repair() -> str:
    nb = json.loads((REPO / "solutions" / LAB_ID / f"{LAB_ID}.ipynb").read_text())
    cell = next(c for c in nb["cells"] if c["id"] == "breakfix-solution")
    return "".join(cell["source"])


@pytest.fixture
def broken(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    monkeypatch.setenv("K8SNET_LEARNER", identity_for(request.param))
    with Cluster(LAB_ID, **topology(LAB_ID)) as c:
        lab = CniLab(c)
        for role in ("pod-x", "pod-y", "pod-z"):
            lab.new_pod(role)
        injected = inject(c, CATALOGUE)
        assert [f.id for f in injected.faults] == [request.param]
        yield c


def check(c: Cluster):
    ctx = CheckContext(LAB_ID, c.prefix, tuple(c.record.namespaces), {})
    verdict = LAB.check("breakfix").run(ctx)
    print(verdict.render())
    return verdict


@pytest.mark.parametrize("broken", FAULTS, indirect=True)
def test_fault_breaks_hints_escalate_and_repair_passes(broken: Cluster) -> None:
    fault = CATALOGUE.fault(json.loads(broken.record.path.read_text())["faults"][CATALOGUE.name][0])
    first, second = check(broken), check(broken)
    assert not first.passed and not second.passed
    assert fault.where in first.hint and fault.look_at not in first.hint
    assert fault.look_at in second.hint
    for text in (first.render(), second.render()):
        assert fault.id not in text
    assert fault.repair is not None
    fault.repair(broken.namespaces)
    assert check(broken).passed


@pytest.mark.parametrize("broken", FAULTS, indirect=True)
def test_the_notebook_repair_fixes_every_fault(broken: Cluster) -> None:
    lab = CniLab(broken)
    scope = {
        "cluster": broken,
        "lab": lab,
        "node": lab.node,
        "rt": lab.runtime(),
        "NETWORK": NETWORK,
        "MYSTERY_DIR": state(broken.namespaces) / "networks",
        "json": json,
        "os": os,
    }
    exec(solution_repair(), scope)
    assert check(broken).passed
