"""Issue 14's attacks against `k8snet grade` (one sandbox per submission, --jobs 2).

One class, one batch run, many submissions: an honest one, the untouched release (graded
last, after the attacks), and one per attack class. Each test then reads what the batch
left behind: the CSV, the gradebook, the autograded notebooks, the host.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import site
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from course.kernel import Netns
from course.runs import PREFIX
from grader import nbtools
from grader.grading import nbgrader_schema, schema
from grader.sandbox import unavailable_reason
from tests.grading import attacks
from tests.nbharness import find_cell

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(unavailable_reason()), reason=unavailable_reason() or "ok"),
]
FIXTURES = nbtools.REPO / "tests" / "fixtures"
SOLUTION = FIXTURES / "solutions" / "00-fixture" / "00-fixture.ipynb"
LAB = "00-fixture"
K8SNET = str(Path(sys.executable).parent / "k8snet")
CELL_LIMIT = 8
VICTIM = f"{PREFIX}-vict"
PLANTED = [Path(site.getsitepackages()[0]) / n for n in ("sitecustomize.py", "k8snet_planted.pth")]


@dataclass
class Batch:
    course: Path
    rows: dict[str, dict[str, str]]
    stdout: str

    def notebook(self, student: str) -> dict:
        path = self.course / "autograded" / student / LAB / f"{LAB}.ipynb"
        return json.loads(path.read_text())

    def text(self, student: str, grade_id: str) -> str:
        result = nbtools.GradeResult(student, notebook=self.notebook(student))
        return result.cell_text(grade_id)

    def all_text(self, student: str) -> str:
        """Every output of every cell (not the sources: those name what they attempt)."""
        return json.dumps([c.get("outputs", []) for c in self.notebook(student)["cells"]])


def mutant(replacements: dict[str, str], base: dict | None = None) -> dict:
    nb = base or json.loads(SOLUTION.read_text())
    for grade_id, source in replacements.items():
        find_cell(nb, grade_id)["source"] = source
    return nb


def submit(course: Path, student: str, nb: dict) -> None:
    dest = course / "submitted" / student / LAB
    dest.mkdir(parents=True)
    (dest / f"{LAB}.ipynb").write_text(json.dumps(nb))


def attack_daemons() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"k8snet-attack-daemon" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batch]:
    course = tmp_path_factory.mktemp("class")
    config = nbtools.CONFIG.read_text() + f"\nc.Execute.timeout = {CELL_LIMIT}\n"
    (course / "nbgrader_config.py").write_text(config)
    shutil.copytree(FIXTURES / "solutions", course / "solutions")
    release = nbtools.release(LAB, FIXTURES, tmp_path_factory.mktemp("release"))
    victim = Netns.create(f"{VICTIM}-pod")
    victim.up("lo")
    secrets = [
        str(nbtools.REPO / "solutions" / "01-netns-veth" / "01-netns-veth.ipynb"),
        str(nbtools.REPO / "grader" / "labs" / "lab01.py"),
        str(FIXTURES / "labs" / "lab00.py"),
        str(course / "solutions" / LAB / f"{LAB}.ipynb"),
        str(course / "submitted" / "a-honest" / LAB / f"{LAB}.ipynb"),
        str(course / "gradebook.db"),
    ]
    read_and_trigger = attacks.READ_SECRETS_AND_TRIGGER.replace("@SECRETS@", repr(secrets))
    read_and_trigger = read_and_trigger.replace("@GRADEBOOK@", str(course / "gradebook.db"))
    submit(course, "a-honest", mutant({}))
    submit(
        course, "a0-planter", mutant({"ex1-solution": attacks.PLANT_AND_KILL.replace("@SITE@", "")})
    )
    submit(course, "d-daemon", mutant({"ex1-solution": attacks.DAEMON_AND_REGISTRY.replace(
        "@VICTIM@", VICTIM)}))  # fmt: skip
    submit(course, "e-secrets", mutant({"ex1-solution": read_and_trigger}))
    submit(course, "f-dies", mutant({"answer-q1": attacks.DIES_AFTER_ANSWER}))
    submit(course, "g-stubborn", mutant({"ex1-solution": attacks.IGNORES_SIGINT}))
    submit(course, "z-release", json.loads((release / f"{LAB}.ipynb").read_text()))
    env = dict(os.environ, K8SNET_EXTRA_LABS=str(FIXTURES / "labs"))
    argv = [K8SNET, "grade", LAB, "--course", str(course), "--jobs", "2", "--timeout", "180"]
    try:
        out = subprocess.run(argv, cwd=course, env=env, capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stdout + out.stderr
        rows = {r["student"]: r for r in csv.DictReader((course / f"grades-{LAB}.csv").open())}
        yield Batch(course, rows, out.stdout)
    finally:
        for path in PLANTED:
            path.unlink(missing_ok=True)
        victim.delete()


def test_honest_submission_scores_as_without_a_sandbox(batch: Batch) -> None:
    row = batch.rows["a-honest"]
    assert (row["status"], float(row["score"]), float(row["max_score"])) == ("ok", 3, 3)
    assert row["check-ex1"] == "2.0" and row["check-q1"] == "1.0"


def test_planted_startup_hook_and_killed_verifier_gain_nothing(batch: Batch) -> None:
    row = batch.rows["a0-planter"]
    assert float(row["check-ex1"]) == 0
    assert "forged" not in batch.all_text("a0-planter")
    # the kernel could not even see a verifier to kill (another PID namespace)
    assert "killed verifier" not in batch.all_text("a0-planter")
    if any(p.exists() for p in PLANTED):  # remounting the venv worked: it is noticed
        assert row["status"].startswith("flagged: grading was interfered with"), row
        assert "start-up hook" in row["status"]
    # ...and every submission graded after it scores what it deserves
    assert float(batch.rows["z-release"]["score"]) == 0
    assert "forged" not in batch.all_text("z-release")


def test_daemon_deleting_namespaces_and_rewritten_registry(batch: Batch) -> None:
    row = batch.rows["d-daemon"]
    assert float(row["check-ex1"]) == 0
    # its own `down --all` loop even deleted the run record it forged: no run, no points
    text = batch.text("d-daemon", "check-ex1")
    assert "the pod namespace does not exist" in text or "no running lab found" in text
    assert "detached from the kernel" in row["notes"]
    # the host's namespace it claimed and tried to delete is untouched, the daemon is gone,
    # and the honest submission graded beside it (--jobs 2) lost nothing
    assert Netns(f"{VICTIM}-pod").exists()
    assert attack_daemons() == []
    assert float(batch.rows["a-honest"]["score"]) == 3


def test_no_secret_is_readable_and_the_gradebook_is_untouched(batch: Batch) -> None:
    text = batch.all_text("e-secrets")
    assert "READABLE" not in text
    assert "TRIGGER WRITTEN" not in text
    assert float(batch.rows["e-secrets"]["check-ex1"]) == 0
    assert schema(batch.course / "gradebook.db") - nbgrader_schema() == set()
    grades = nbtools.read_grades(batch.course, LAB, "e-secrets")
    assert grades["check-ex1"].score == 0


def test_dead_kernel_keeps_earlier_points_and_says_where(batch: Batch) -> None:
    row = batch.rows["f-dies"]
    assert float(row["check-ex1"]) == 2 and float(row["check-q1"]) == 0
    assert "not judged, the kernel died while running cell" in batch.text("f-dies", "check-q1")
    assert "kernel died" in row["notes"]


def test_cell_ignoring_sigint_is_stopped_with_a_clear_message(batch: Batch) -> None:
    text = batch.text("g-stubborn", "ex1-solution")
    assert f"ran past {CELL_LIMIT} s and was stopped" in text
    assert "IOPub" not in text
    assert float(batch.rows["g-stubborn"]["score"]) == 0


def test_table_csv_and_gradebook_agree(batch: Batch) -> None:
    for student, row in batch.rows.items():
        grades = nbtools.read_grades(batch.course, LAB, student)
        assert sum(g.score for g in grades.values()) == float(row["score"]), student
        assert student in batch.stdout


def test_a_gradebook_with_a_trigger_is_refused(batch: Batch, tmp_path: Path) -> None:
    course = tmp_path / "class"
    shutil.copytree(batch.course, course, ignore=shutil.ignore_patterns("autograded"))
    con = sqlite3.connect(course / "gradebook.db")
    con.execute("CREATE TRIGGER t AFTER UPDATE ON grade BEGIN SELECT 1; END")
    con.commit()
    con.close()
    argv = [K8SNET, "grade", LAB, "--course", str(course)]
    env = dict(os.environ, K8SNET_EXTRA_LABS=str(FIXTURES / "labs"))
    out = subprocess.run(argv, cwd=course, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 3
    assert "trigger t" in out.stdout
