"""The grading process's verifier: isolated, bounded in time, and restarted after a hang."""

from __future__ import annotations

import pytest

from grader.nbtools import REPO
from grader.verify import VerifierServer, verify

FIXTURE_LABS = str(REPO / "tests" / "fixtures" / "labs")


@pytest.fixture(autouse=True)
def fixture_labs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K8SNET_EXTRA_LABS", FIXTURE_LABS)


def test_a_verifier_past_its_budget_is_killed_and_the_next_check_still_runs() -> None:
    server = VerifierServer("00-fixture")
    server.start()
    try:
        # the server needs about a second to preload Scapy: 10 ms is certainly too short
        late = server.ask("00-fixture", "q1-fresh-lo", -1, {"q1": "down"}, timeout=0.01)
        assert not late.passed
        assert "did not finish" in late.summary
        assert server.proc is None  # killed
        ok = server.ask("00-fixture", "q1-fresh-lo", -1, {"q1": "down"}, timeout=60)
        assert ok.passed, ok.render()
    finally:
        server.close()


def test_no_run_for_this_kernel_is_explained() -> None:
    verdict = verify("00-fixture", "ex1-loopback", pid=-1, prefix=None, answers={})
    assert not verdict.passed
    assert "no running lab found" in verdict.summary
    assert "kernel process -1" in verdict.sent
