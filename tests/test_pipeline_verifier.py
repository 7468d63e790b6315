"""The grading process's verifier: isolated, bounded in time, never restarted after a hang."""

from __future__ import annotations

import pytest

from grader.nbtools import REPO
from grader.verify import VerifierServer, verify

FIXTURE_LABS = str(REPO / "tests" / "fixtures" / "labs")


@pytest.fixture(autouse=True)
def fixture_labs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K8SNET_EXTRA_LABS", FIXTURE_LABS)


def test_a_stalled_verifier_is_not_restarted_and_later_checks_are_flagged() -> None:
    server = VerifierServer("00-fixture")
    server.start()
    try:
        # the server needs about a second to preload Scapy: 10 ms is certainly too short
        late = server.ask("00-fixture", "q1-fresh-lo", -1, {"q1": "down"}, timeout=0.01)
        assert not late.passed
        assert "grading was interfered with" in late.summary
        assert "stalled" in late.observed
        after = server.ask("00-fixture", "q1-fresh-lo", -1, {"q1": "down"}, timeout=60)
        assert not after.passed and "grading was interfered with" in after.summary
        assert server.interference
    finally:
        server.close()


def test_a_verifier_answers_from_its_copy_with_python_isolated() -> None:
    server = VerifierServer("00-fixture")
    server.start()
    try:
        assert server.proc is not None and server.integrity is not None
        argv = server.proc.args
        assert argv[1:3] == ["-I", "-S"] and str(server.integrity.root) in argv
        ok = server.ask("00-fixture", "q1-fresh-lo", -1, {"q1": "down"}, timeout=60)
        assert ok.passed, ok.render()
    finally:
        server.close()


def test_no_run_for_this_kernel_is_explained() -> None:
    verdict = verify("00-fixture", "ex1-loopback", pid=-1, prefix=None, answers={})
    assert not verdict.passed
    assert "no running lab found" in verdict.summary
    assert "kernel process -1" in verdict.sent
