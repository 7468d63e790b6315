"""course.faults + grader.breakfix: faults drawn per learner, injected for real, hints in steps."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest

from course import faults
from course.faults import Catalogue, draw, inject
from course.faults.lab01 import CATALOGUE
from course.runs import RunRecord
from course.topology import Cluster
from grader import breakfix
from grader.labs import CheckContext
from grader.labs.lab01_breakfix import CHECK, node_reaches_pods

LAB = "01-netns-veth"


@pytest.fixture(autouse=True)
def _private_learner_file(monkeypatch, tmp_path):
    """Never read or write the machine's real learner id from the tests."""
    monkeypatch.setenv("K8SNET_STATE_DIR", str(tmp_path / "state"))


def test_catalogue_has_enough_faults_to_differ():
    assert len(CATALOGUE.faults) >= 4
    assert len({f.id for f in CATALOGUE.faults}) == len(CATALOGUE.faults)


def test_same_identity_same_faults_different_identities_differ():
    alice = [f.id for f in draw(CATALOGUE, "learner:alice")]
    assert alice == [f.id for f in draw(CATALOGUE, "learner:alice")]
    assert alice != [f.id for f in draw(CATALOGUE, "learner:bob")]
    assert len(alice) == CATALOGUE.k
    combos = {tuple(f.id for f in draw(CATALOGUE, f"learner:s{i}")) for i in range(30)}
    assert len(combos) >= 6  # 5 faults, 2 drawn: 10 possible pairs
    assert {f for combo in combos for f in combo} == {f.id for f in CATALOGUE.faults}


def test_draw_depends_on_the_catalogue_too():
    other = replace(CATALOGUE, name="another-lab/exercise")
    picks = [draw(c, f"learner:s{i}") for c in (CATALOGUE, other) for i in range(10)]
    assert picks[:10] != picks[10:]


def test_identity_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("K8SNET_LEARNER", "student-42")
    record = RunRecord("kt-none", LAB, 1)
    assert faults.identity(record) == "learner:student-42"
    assert record.faults_seed is None  # nothing stored when the grader names the learner


def test_seed_is_stored_once_and_survives_a_reload(monkeypatch, tmp_path):
    monkeypatch.delenv("K8SNET_LEARNER", raising=False)
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    monkeypatch.setenv("K8SNET_STATE_DIR", str(tmp_path))
    with Cluster("t-faults-seed", nodes=1, pod_network=None, underlay=False) as c:
        assert faults.identity(c.record, create=False) is None
        first = faults.identity(c.record)
        assert first and first == faults.identity(c.record)
        stored = json.loads(c.record.path.read_text())
        assert f"seed:{stored['faults_seed']}" == first
        c.netns("pod-x")  # the cluster saves its record again: the seed must stay
        assert json.loads(c.record.path.read_text())["faults_seed"] == stored["faults_seed"]


# --- lab 01's catalogue on a real node with two pods -----------------------------------------------
def _exercise4(c: Cluster) -> None:
    """The working state of lab 01 exercise 4 (what its solution cell builds)."""
    node = c.node(1).ns
    node.add_address("lo", "10.244.1.1/32")
    for role, ip, host_end in (
        ("pod-c", "10.244.1.4", "veth-c"),
        ("pod-d", "10.244.1.5", "veth-d"),
    ):
        pod = c.netns(role)
        pod.add_veth("eth0", node, host_end)
        pod.add_address("eth0", f"{ip}/24")
        pod.up("eth0")
        node.up(host_end)
        node.add_route(f"{ip}/32", dev=host_end)


@pytest.fixture(scope="module")
def lab01():
    with Cluster(LAB, nodes=1, pods_per_node=0, pod_network=None, underlay=False) as c:
        _exercise4(c)
        yield c
    shutil.rmtree(breakfix.ATTEMPTS_DIR / c.prefix, ignore_errors=True)


def _ctx(c: Cluster) -> CheckContext:
    return CheckContext(LAB, c.prefix, tuple(c.record.namespaces))


def test_the_working_lab_passes_the_probe(lab01):
    assert node_reaches_pods(_ctx(lab01)).passed


@pytest.mark.parametrize("fault", CATALOGUE.faults, ids=lambda f: f.id)
def test_each_fault_breaks_hints_in_steps_and_its_repair_gets_full_marks(lab01, fault):
    single = Catalogue(f"t-single/{fault.id}", (fault,), k=1)
    check = breakfix.check(single, node_reaches_pods)
    ctx = _ctx(lab01)
    assert not check(ctx).passed  # not injected yet: no points for an intact lab
    inject(lab01, single)
    assert fault.present is None or fault.present(lab01.namespaces)
    first, second = check(ctx), check(ctx)
    for verdict in (first, second):
        assert not verdict.passed
        text = verdict.render()
        assert fault.title not in text and fault.id not in text  # never names the fault
        assert "Nothing came back" in text or "did not send" in text  # what the wire showed
    assert fault.where in first.hint and fault.look_at not in first.hint
    assert fault.where in second.hint and fault.look_at in second.hint
    assert "failed attempt 2" in second.summary
    assert fault.repair is not None
    fault.repair(lab01.namespaces)
    assert fault.present is None or not fault.present(lab01.namespaces)
    repaired = check(ctx)
    assert repaired.passed, repaired.render()


def test_the_drawn_faults_of_a_learner_and_the_real_check(lab01, monkeypatch):
    monkeypatch.setenv("K8SNET_LEARNER", "student-7")
    drawn = draw(CATALOGUE, "learner:student-7")
    assert [f.id for f in inject(lab01, CATALOGUE).faults] == [f.id for f in drawn]
    again = inject(lab01, CATALOGUE)
    assert not again.fresh and "not injected again" in str(again)
    assert all(f.title not in str(again) for f in drawn)
    verdict = CHECK(_ctx(lab01))
    assert not verdict.passed and "of your 2 faults" in verdict.hint
    for fault in drawn:
        fault.repair(lab01.namespaces)  # type: ignore[misc]
    assert CHECK(_ctx(lab01)).passed


def test_a_new_run_and_a_new_process_draw_the_same_faults(monkeypatch, tmp_path):
    """`k8snet check` re-runs the notebook in a fresh kernel: its faults must match the repairs
    the learner wrote against the faults of their own kernel."""
    for env in ("K8SNET_LEARNER", "JUPYTERHUB_USER"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("K8SNET_STATE_DIR", str(tmp_path))
    first = faults.identity(RunRecord("kt-one", LAB, 1))
    code = (
        "from course import faults; from course.runs import RunRecord; "
        f"print(faults.identity(RunRecord('kt-two', {LAB!r}, 1)))"
    )
    env = {**os.environ, "K8SNET_STATE_DIR": str(tmp_path)}
    other = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    for prefix in ("kt-one", "kt-two"):  # identity() saved the seed in these run records
        RunRecord(prefix, LAB, 1).path.unlink(missing_ok=True)
    assert other.stdout.strip() == first, other.stderr
    assert (tmp_path / "learner-id").read_text().strip() == first.removeprefix("seed:")


def test_jupyterhub_user_is_the_identity_nbgrader_will_use(monkeypatch):
    monkeypatch.delenv("K8SNET_LEARNER", raising=False)
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    assert faults.identity(RunRecord("kt-hub", LAB, 1)) == "learner:alice"


def test_prepare_runs_only_when_the_faults_are_injected(monkeypatch):
    monkeypatch.delenv("K8SNET_LEARNER", raising=False)
    calls = []
    noop = replace(CATALOGUE.faults[0], apply=lambda roles: calls.append("fault"))
    cat = Catalogue("t-prepare", (noop,), k=1)
    with Cluster("t-faults-prepare", nodes=1, pod_network=None, underlay=False) as c:
        first = inject(c, cat, prepare=lambda: calls.append("prepare"))
        again = inject(c, cat, prepare=lambda: calls.append("prepare"))
    assert calls == ["prepare", "fault"]
    assert first.fresh and not again.fresh
    assert "1 fault injected into your lab" in str(first)


@pytest.mark.parametrize(
    "pair",
    [
        p
        for p in itertools.combinations(CATALOGUE.faults, CATALOGUE.k)
        if CATALOGUE.compatible(list(p))
    ],
    ids=lambda p: "+".join(f.id for f in p),
)
def test_every_pair_a_learner_can_draw_is_injected_present_and_repairable(pair):
    """A learner draws any compatible pair: both faults must apply (in draw order), both
    must be there afterwards (the hints talk about them), and both repairs must heal the lab.
    (A route through pod-d's cable cannot be written once that cable is down: a learner id
    drawing that pair got an inject cell that raised.)"""
    with Cluster(LAB, nodes=1, pods_per_node=0, pod_network=None, underlay=False) as c:
        _exercise4(c)
        for fault in pair:
            fault.apply(c.namespaces)
        assert [f.id for f in pair if f.present and not f.present(c.namespaces)] == []
        assert not node_reaches_pods(_ctx(c)).passed
        for fault in pair:
            fault.repair(c.namespaces)  # type: ignore[misc]
        assert node_reaches_pods(_ctx(c)).passed


def test_pairs_kept_apart_are_never_drawn():
    apart = Catalogue(
        "t-apart",
        CATALOGUE.faults[:3],
        k=2,
        apart=((CATALOGUE.faults[0].id, CATALOGUE.faults[1].id),),
    )
    drawn = {tuple(f.id for f in draw(apart, f"learner:{n}")) for n in range(200)}
    assert drawn == {
        (CATALOGUE.faults[0].id, CATALOGUE.faults[2].id),
        (CATALOGUE.faults[1].id, CATALOGUE.faults[2].id),
    }


def _catalogues() -> list[Catalogue]:
    import importlib
    import pkgutil

    import course.faults as pkg

    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name.startswith("lab"))
    return [importlib.import_module(f"course.faults.{n}").CATALOGUE for n in names]


@pytest.mark.parametrize("catalogue", _catalogues(), ids=lambda c: c.name.split("/")[0])
def test_every_catalogue_can_always_draw(catalogue: Catalogue) -> None:
    """`draw` redraws a set holding a pair kept apart: a catalogue whose `apart` rules out
    every k-set would loop to its give-up for every learner. Its pairs must name real faults
    (a typo would silently keep nothing apart), and learners still get varied draws."""
    known = {f.id for f in catalogue.faults}
    assert {i for pair in catalogue.apart for i in pair} <= known
    combos = itertools.combinations(catalogue.faults, catalogue.k)
    assert any(catalogue.compatible(list(c)) for c in combos)
    drawn = {tuple(f.id for f in draw(catalogue, f"learner:s{n}")) for n in range(200)}
    assert all(catalogue.compatible([catalogue.fault(i) for i in d]) for d in drawn)
    assert len(drawn) >= min(4, len(catalogue.faults))
