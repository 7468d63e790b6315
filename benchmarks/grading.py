"""What grading costs: the independent checks per lab, and a class batch in sandboxes.

In one run, on this machine:

(b) per lab (every lab in solutions/): `nbgrader autograde` of the solution as the course
    grades it (VerifyingExecute: verifier from its hashed copy, every check re-run outside
    the kernel with real packets) against the same notebook with every check cell emptied
    under nbgrader's stock executor (same cells, same namespaces, nothing checked).
    Issue 9's target: the checks add less than 50% wall time. Each side is run --rounds
    times, interleaved, and the fastest run counts (the least disturbed by other work on a
    shared machine); CPU seconds of the whole process tree (nbgrader, kernel, verifier,
    probes: orphans are reaped here, see `ProcessTree`) are printed too, steadier than
    wall time under load. A table of every lab closes the section.
(a) a class of 12 lab-01 submissions (4 full, 4 about half, 4 zero) graded by
    `grade_submissions` (what `k8snet grade` runs) three ways: --jobs 1 without a sandbox,
    --jobs 1 and --jobs 2 with one sandbox per submission. Printed: each wall time, the
    jobs-2 speed-up (target >= 1.5x) and the sandbox's own cost per submission (target < 1 s).

Measured (b) on 2 cores shared with other engineers' test runs (load average 1-4 during
the "after" run), wall time the checks add, target < 50%:

    lab                      before (issue 9's last numbers)   after (best of 2, 14:00 UTC)
    01-netns-veth            29%   (12% quieter)               26%   9.0 -> 11.4 s   CPU +43%
    02-bridge-vs-routed      111%  (53% quieter)               34%   8.8 -> 11.8 s   CPU +81%
    03-across-nodes          not measured (51% quieter)        32%  16.2 -> 21.4 s   CPU +45%
    04-cni-plugin            112%  (149% quieter)              92%  10.4 -> 20.0 s   CPU +64%
    05-netfilter-order       38%   (56% quieter)               51%  14.6 -> 22.0 s   CPU +45%
    06-kube-proxy            169%  (64% quieter)               16%  13.8 -> 16.0 s   CPU +49%
    07-nodeport-masquerade   51%   (41% quieter)               34%  20.4 -> 27.3 s   CPU +31%

("quieter": one run each, at 12:51 UTC, load average ~1-4, with the code before this
change.) Run to run, at the same load, a lab's figure moves by 15-30 points: two more
runs of labs 04 and 05 at 14:11-14:16 UTC (with the lab import overlapping the copy)
gave 53% and 63%, then 29% for lab 05. So lab 05 sits at the target and lab 04 above
it. Profiled after this change (nbgrader log, one run):
lab 04's checks take 3.9 s (ex3-del 2.2 s, ex2-add 0.7 s), lab 05's 3.2 s (ex4-block
1.2 s, breakfix 1.2 s); the copy and the verifier's start cost 1.3-1.8 s before the
kernel starts in every lab; the rest is the verifier's CPU beside the kernel's cells.

Where the checks' time went, and what changed: every verifier (and its probe forkserver)
compiled Scapy, pyroute2 and the grader again from a read-only copy without bytecode
(~1.7 s CPU per lab, while the learner's kernel ran its first cells), and the first check
of every lab waited for that whole start-up (4-6 s); the copy now carries its hashed
bytecode, the forkserver warms in a thread, and the verifier starts before the grading
process imports the lab's checks. Making the copy (3,000 files) took 1-4 s on the shared
disk; it is made in /dev/shm when there is room (~1 s). Lab 06 opens 1,500 connections
per distribution check, not 3,000 (the statistical reasoning: grader/kubeproxy_checks.py);
lab 02's gateway and node pings run at once.

Usage: python benchmarks/grading.py [--skip-labs] [--skip-class] [--class-size 12]
                                    [--rounds 2] [--labs 02-bridge-vs-routed ...]
SIGINT/SIGTERM stop it cleanly: graders, kernels and sandboxes are killed, namespaces swept.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _namespaces import bench_prefix, clean_up_on_exit, run  # noqa: E402

from grader import nbtools  # noqa: E402

LAB = "01-netns-veth"
TARGET_OVERHEAD = 0.50
TARGET_SPEEDUP = 1.5
TARGET_SANDBOX_S = 1.0
STOCK_EXECUTOR = (
    "--Autograde.autograde_preprocessors=['nbgrader.preprocessors.Execute',"
    "'nbgrader.preprocessors.IgnorePattern',"
    "'nbconvert.preprocessors.ClearMetadataPreprocessor',"
    "'nbgrader.preprocessors.LimitOutput','nbgrader.preprocessors.SaveAutoGrades',"
    "'nbgrader.preprocessors.AssignLatePenalties','nbgrader.preprocessors.CheckCellMetadata']"
)
NO_SANDBOX = "--VerifyingExecute.sandbox=False"
# About half of lab 01's 9 points: exercises 3 and 4 left undone, question 2 wrong.
HALF = {"ex3-solution": "pass", "ex4-solution": "pass", "answer-q2": 'q2 = "a"'}


# --- (b) checks vs no checks, per lab --------------------------------------------------------
def unchecked_source(tmp: Path, lab: str) -> Path:
    """A source tree whose lab notebook has the same cells, check cells emptied."""
    src = tmp / "solutions" / lab
    shutil.copytree(ROOT / "solutions" / lab, src)
    path = src / f"{lab}.ipynb"
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            cell["source"] = "pass"
    path.write_text(json.dumps(nb))
    return tmp


class ProcessTree:
    """CPU seconds used by this process's descendants, orphans included.

    nbgrader's verifier is killed when grading ends, so its probe forkserver is orphaned
    and would be reparented to init, its CPU never counted. As a child subreaper this
    process adopts such orphans; `reap()` collects them so RUSAGE_CHILDREN includes them.
    """

    PR_SET_CHILD_SUBREAPER = 36

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(self.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    @staticmethod
    def reap(patience: float = 3.0) -> None:
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                time.sleep(0.05)

    def cpu(self) -> float:
        self.reap()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime


@dataclass
class Timing:
    wall: float
    cpu: float


def time_autograde(
    tree: ProcessTree, course: Path, lab: str, notebook: Path, student: str, extra: list[str]
) -> Timing:
    nbtools.submit(course, lab, student, notebook)
    cpu0 = tree.cpu()
    t0 = time.perf_counter()
    result = nbtools.autograde_submitted(course, lab, student, extra_args=extra)
    elapsed = time.perf_counter() - t0
    if result.score != result.max_score:
        lost = [g for g, c in result.cells.items() if c.score != c.max_score]
        shown = "\n".join(f"--- {g}:\n{result.cell_text(g)[:2000]}" for g in lost)
        raise SystemExit(f"{lab}/{student}: expected full marks, got {result.score}\n{shown}")
    return Timing(elapsed, tree.cpu() - cpu0)


@dataclass
class LabCost:
    lab: str
    plain: Timing
    checked: Timing

    @property
    def overhead(self) -> float:
        return (self.checked.wall - self.plain.wall) / self.plain.wall

    @property
    def cpu_overhead(self) -> float:
        return (self.checked.cpu - self.plain.cpu) / self.plain.cpu

    def line(self) -> str:
        verdict = "OK" if self.overhead < TARGET_OVERHEAD else "MISSED"
        return (
            f"  {self.lab:22} no checks {self.plain.wall:6.1f} s   checks {self.checked.wall:6.1f} s"
            f"   checks add {self.overhead:4.0%} wall (target < {TARGET_OVERHEAD:.0%}): "
            f"{verdict:6}  CPU {self.plain.cpu:5.1f} -> {self.checked.cpu:5.1f} s "
            f"(+{self.cpu_overhead:.0%})"
        )


def one_lab(tree: ProcessTree, lab: str, rounds: int) -> LabCost:
    """Best of `rounds` interleaved runs each way (scratch courses made once)."""
    with tempfile.TemporaryDirectory(prefix="k8snet-bench-") as tmp:
        plain_root = unchecked_source(Path(tmp), lab)
        plain_nb = plain_root / "solutions" / lab / f"{lab}.ipynb"
        checked_nb = ROOT / "solutions" / lab / f"{lab}.ipynb"
        plains, checks = [], []
        with (
            nbtools.scratch_course(lab) as checked,
            nbtools.scratch_course(lab, plain_root) as plain,
        ):
            for _ in range(rounds):  # same students, regraded with --force
                plains.append(time_autograde(tree, plain, lab, plain_nb, "base", [STOCK_EXECUTOR]))
                # the checks' own cost: plain nbgrader would sandbox by default (grader.executor)
                checks.append(
                    time_autograde(tree, checked, lab, checked_nb, "checked", [NO_SANDBOX])
                )
    best = min(plains, key=lambda t: t.wall), min(checks, key=lambda t: t.wall)
    return LabCost(lab, *best)


def per_lab(labs: list[str], rounds: int) -> None:
    print(f"(b) nbgrader autograde of each lab's solution, checks vs no checks (best of {rounds}):")
    tree = ProcessTree()
    costs = []
    for lab in labs:
        cost = one_lab(tree, lab, rounds)
        costs.append(cost)
        print(cost.line(), flush=True)
    missed = [c.lab for c in costs if c.overhead >= TARGET_OVERHEAD]
    print(f"  per lab, checks add (wall, target < {TARGET_OVERHEAD:.0%}):")
    for c in costs:
        print(f"    {c.lab:22} {c.overhead:5.0%}   (CPU +{c.cpu_overhead:.0%})")
    print(
        f"  {len(costs) - len(missed)} of {len(costs)} labs under target"
        + (f"; missed: {', '.join(missed)}" if missed else "")
    )


# --- (a) a class batch, sandboxed or not, 1 or 2 at a time -------------------------------------
def make_class(root: Path, size: int) -> Path:
    course = root / "class"
    course.mkdir()
    shutil.copy(nbtools.CONFIG, course / "nbgrader_config.py")
    shutil.copytree(ROOT / "solutions" / LAB, course / "solutions" / LAB)
    solution = json.loads((ROOT / "solutions" / LAB / f"{LAB}.ipynb").read_text())
    release = json.loads((ROOT / "labs" / LAB / f"{LAB}.ipynb").read_text())
    half = json.loads(json.dumps(solution))
    for cell in half["cells"]:
        gid = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if gid in HALF:
            cell["source"] = HALF[gid]
    kinds = [("full", solution), ("half", half), ("zero", release)]
    for i in range(size):
        kind, nb = kinds[i % 3]
        dest = course / "submitted" / f"s{i:02d}-{kind}" / LAB
        dest.mkdir(parents=True)
        (dest / f"{LAB}.ipynb").write_text(json.dumps(nb))
    return course


def batch(course: Path, jobs: int, sandbox: bool) -> tuple[float, list[float]]:
    from grader.grading import grade_submissions

    for folder in ("autograded", "feedback"):
        shutil.rmtree(course / folder, ignore_errors=True)
    (course / "gradebook.db").unlink(missing_ok=True)
    t0 = time.perf_counter()
    rows = grade_submissions(course, LAB, jobs=jobs, sandbox=sandbox)
    elapsed = time.perf_counter() - t0
    bad = [r for r in rows if r.status != "ok"]
    if bad:
        raise SystemExit(f"grading failed: {[(r.student, r.status) for r in bad]}")
    return elapsed, [r.score for r in rows]


def class_batch(size: int) -> None:
    print(f"(a) {size} lab-01 submissions (full/half/zero), graded by k8snet grade's batch:")
    with tempfile.TemporaryDirectory(prefix="k8snet-bench-class-") as tmp:
        course = make_class(Path(tmp), size)
        plain, plain_scores = batch(course, 1, sandbox=False)
        one, scores = batch(course, 1, sandbox=True)
        two, scores2 = batch(course, 2, sandbox=True)
    if not plain_scores == scores == scores2:
        raise SystemExit(f"scores differ: {plain_scores} / {scores} / {scores2}")
    speedup = one / two
    per_sub = (one - plain) / size
    print(f"  scores: {scores} (the same all three ways)")
    print(f"  --jobs 1, no sandbox: {plain:6.1f} s")
    print(f"  --jobs 1, sandboxed:  {one:6.1f} s")
    print(f"  --jobs 2, sandboxed:  {two:6.1f} s")
    ok = "OK" if speedup >= TARGET_SPEEDUP else "MISSED"
    print(f"  --jobs 2 is {speedup:.2f}x faster than --jobs 1 (target >= {TARGET_SPEEDUP}x): {ok}")
    ok = "OK" if per_sub < TARGET_SANDBOX_S else "MISSED"
    print(
        f"  sandbox overhead: {per_sub:+.2f} s per submission (target < {TARGET_SANDBOX_S} s): {ok}"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-labs", action="store_true")
    parser.add_argument("--skip-class", action="store_true")
    parser.add_argument("--class-size", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2, help="runs per lab and way (best)")
    parser.add_argument("--labs", nargs="*", default=None, help="lab ids (default: all)")
    args = parser.parse_args()
    # nbgrader, its kernels and their sandboxes inherit the prefix: killed or not, their
    # namespaces and they themselves are gone at exit (benchmarks/_namespaces.py).
    prefix = bench_prefix("grade")
    os.environ["K8SNET_NS_PREFIX"] = prefix
    clean_up_on_exit(prefix)
    os.environ["PATH"] = nbtools.tool_env()["PATH"]
    if not args.skip_class:
        class_batch(args.class_size)
    if not args.skip_labs:
        per_lab(args.labs or nbtools.lab_ids(), max(1, args.rounds))
    return 0


if __name__ == "__main__":
    run(main)
