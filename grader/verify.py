"""Run one lab check in a process of its own and print the verdict.

    python -I -m grader.verify 01-netns-veth ex2-veth --pid 4242 --answers '{"q1": "b"}'

Why a separate process: the student's code runs in the same Jupyter kernel as the check
cells, so anything living in that kernel (grader functions, Scapy, the result objects) can be
replaced by the student. This process starts clean (`-I`: no PYTHON* variables, no current
folder on sys.path), finds the student's lab run through the run registry that
`course.runs` writes, and inspects the kernel state and the wire itself.

The verdict is printed as one JSON line starting with `K8SNET-VERDICT `; the exit code is 0
when the check passed and 1 when it failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader.labs import Check, CheckContext, load_lab

if TYPE_CHECKING:
    from course.runs import RunRecord
    from grader.integrity import Integrity
from grader.verdict import Verdict

MARKER = "K8SNET-VERDICT "
READY = "K8SNET-VERIFIER-READY"
INTERFERED = "grading was interfered with"


def netns_dir() -> Path:
    """Where named namespaces are looked up now (moved into a sandbox by `use_root`)."""
    from course.kernel import netns

    return netns.NETNS_DIR


def use_root(root: str) -> None:
    """Look up namespaces and run records under `root` (a sandbox's `/proc/PID/root`).

    A sandboxed kernel has its own `/run`: its namespaces are mounted there, and nothing
    else is. The grading side reaches that `/run` through the kernel's sandbox root, so
    the namespaces a check inspects are exactly the submission's own.
    """
    from course import runs
    from course.kernel import netns

    base = Path(root) if root else Path("/")
    netns.NETNS_DIR = base / "run" / "netns"
    runs.RUN_ROOT = base / "run" / "k8s-netlabs"
    runs.RUN_DIR = runs.RUN_ROOT / "runs"
    runs.STATE_DIR = runs.RUN_ROOT / "state"
    netns.RESTORE_ERRORS = runs.RUN_ROOT / "restore-errors"


def find_run(lab: str, pid: int) -> tuple[str, tuple[str, ...]] | None:
    """The newest run of `lab` owned by process `pid` (the learner's kernel).

    A run with live namespaces wins over one whose namespaces are gone; a run with none
    left is still returned, so the check itself can say which namespace is missing.
    """
    from course.runs import load_runs

    # In a sandbox (pid 0) every run is the submission's: nothing else exists there.
    mine = [r for r in load_runs() if r.lab == lab and (pid == 0 or r.owned_by(pid))]
    if not mine:
        return None

    def rank(r: RunRecord) -> tuple[bool, int]:
        live = any((netns_dir() / ns).exists() for ns in r.namespaces)
        return live, r.path.stat().st_mtime_ns

    newest = max(mine, key=rank)
    return newest.prefix, tuple(newest.namespaces)


def _run_record(prefix: str) -> tuple[str, tuple[str, ...]]:
    from course.runs import load_runs

    for rec in load_runs():
        if rec.prefix == prefix:
            return rec.prefix, tuple(rec.namespaces)
    return prefix, ()


def _no_run(lab: str, pid: int) -> Verdict:
    return Verdict.fail(
        "no running lab found for this notebook",
        sent=f"looked for a run record of lab {lab} "
        + ("in the submission's sandbox" if pid == 0 else f"owned by kernel process {pid}"),
        observed="no run record (was the setup cell run? was the kernel restarted?)",
        expected="the run the notebook's setup cell started, still alive while checks run",
        hint="run the notebook from the top, in order, without restarting the kernel",
    )


def run_check(chk: Check, ctx: CheckContext) -> Verdict:
    """Call the check; a crash inside the check becomes a failed verdict, not a traceback."""
    missing = [name for name in chk.answers if name not in ctx.answers]
    if missing:
        return Verdict.fail(
            f"{chk.title}: no answer given",
            sent=f"read the answer variable(s) {', '.join(missing)} from the notebook",
            observed='no plain literal assigned to them (such as: q1 = "your letter")',
            expected="each answer written as a plain string or number literal",
            hint="replace the `raise NotImplementedError()` line with your literal answer",
        )
    try:
        return chk.run(ctx)
    except Exception as exc:  # the check's own failure must still produce feedback
        return Verdict.fail(
            f"{chk.title}: the check could not inspect the lab",
            sent=f"inspected the namespaces of run {ctx.prefix or '(none)'}",
            observed=f"{type(exc).__name__}: {exc}",
            expected="the namespaces and links this exercise builds",
            hint="run the exercise cells above again, in order",
        )


def verify(
    lab_id: str, check_id: str, *, pid: int | None, prefix: str | None, answers: dict[str, object]
) -> Verdict:
    chk = load_lab(lab_id).check(check_id)
    if prefix:
        prefix, namespaces = _run_record(prefix)
    elif chk.needs_run:
        found = find_run(lab_id, pid if pid is not None else os.getppid())
        if found is None:
            return _no_run(lab_id, pid if pid is not None else os.getppid())
        prefix, namespaces = found
    else:
        prefix, namespaces = "", ()
    foreign = grading_namespaces(prefix)
    if foreign:
        return Verdict.fail(
            f"{chk.title}: {INTERFERED}",
            sent=f"compared the namespaces of run {prefix} with the grading machine's own",
            observed=f"{', '.join(foreign)} is the grading machine's own network namespace",
            expected="namespaces the notebook created for its lab",
            hint="build the lab with the notebook's own cells; never mount other namespaces",
        )
    ctx = CheckContext(lab_id, prefix, namespaces, answers)
    return run_check(chk, ctx)


def grading_namespaces(prefix: str) -> list[str]:
    """Lab namespace names that are really the verifier's own network namespace.

    A kernel that shares the grading machine's network namespace could bind-mount it as
    `node1`, and the checks would then inspect (and probe) the host instead of the lab.
    """
    if not prefix or not netns_dir().is_dir():
        return []
    own = os.stat("/proc/self/ns/net")
    found = []
    for path in netns_dir().glob(f"{prefix}-*"):
        try:
            st = path.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino):
            found.append(path.name)
    return found


def verify_in_subprocess(
    lab_id: str,
    check_id: str,
    *,
    pid: int,
    answers: dict[str, object] | None = None,
    timeout: float = 45.0,
) -> Verdict:
    """Run `verify` in a fresh isolated interpreter and parse its verdict line."""
    argv = [sys.executable, "-I", "-m", "grader.verify", lab_id, check_id, "--pid", str(pid)]
    argv += ["--answers", json.dumps(answers or {})]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Verdict.fail(
            f"check {check_id} did not finish",
            sent=f"ran the check {check_id} of lab {lab_id}",
            observed=f"no verdict after {timeout:.0f} s",
            expected="a verdict within the check's time budget",
            hint="something in the lab blocks the probes; rebuild the lab from the top",
        )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
    if not lines:
        return Verdict.fail(
            f"check {check_id} crashed",
            sent=f"ran the check {check_id} of lab {lab_id}",
            observed=(proc.stderr.strip().splitlines() or ["no output"])[-1],
            expected="a verdict",
            hint="report this to the course maintainers with the notebook attached",
        )
    return Verdict.from_json(lines[-1][len(MARKER) :])


class VerifierServer:
    """One long-lived verifier process answering check requests, for the grading executor.

    It is started before the student's kernel runs any code, from the read-only hashed copy
    of `grader.integrity` with `python -I -S` and a fixed environment, and preloads the
    grader, the lab's checks and the probes' forkserver (Scapy imported once), so each
    verdict costs only the check's own probes.

    It is never restarted: a verifier that dies or stalls past a check's budget could have
    been killed or stopped by the kernel (which runs as root), and a restarted one would run
    whatever is on disk by then. So from that moment every check of the submission fails
    with "grading was interfered with", and `interference` says why (the executor flags
    the submission). The same happens when a hashed file changed (checked while each check
    runs, in a thread of the grading process).
    """

    def __init__(self, lab: str, integrity: Integrity | None = None) -> None:
        self.lab = lab
        self.proc: subprocess.Popen[str] | None = None
        self.interference: str = ""
        self._own_copy = integrity is None
        self.integrity = integrity

    def start(self) -> None:
        from grader import integrity as copies

        if self.integrity is None:
            from grader.lifecycle import claim_copy, reap_stale_copies

            reap_stale_copies()  # left by graders that were killed (SIGKILL cannot clean up)
            self.integrity = copies.make_copy(copies.extra_lab_folders())
            claim_copy(self.integrity.root)
        argv = copies.verifier_argv(self.integrity, "--serve", self.lab)
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=copies.verifier_env(self.integrity),
            cwd="/",
        )

    def ask(
        self,
        lab: str,
        check: str,
        pid: int,
        answers: dict[str, object],
        timeout: float,
        root: str = "",
    ) -> Verdict:
        if self.interference:
            return interfered(lab, check, self.interference)
        if self.proc is None or self.proc.poll() is not None:
            return self._broken(lab, check, "the verifier process exited before this check")
        assert self.proc.stdin and self.proc.stdout and self.integrity is not None
        hashing = _Hashing(self.integrity)
        request = {"lab": lab, "check": check, "pid": pid, "answers": answers, "root": root}
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except OSError:
            return self._broken(lab, check, "the verifier process exited before this check")
        deadline = time.monotonic() + timeout
        verdict: Verdict | None = None
        while (line := _read_line(self.proc.stdout, deadline - time.monotonic())) is not None:
            if line.startswith(MARKER):
                verdict = Verdict.from_json(line[len(MARKER) :].rstrip("\n"))
                break
            if not line:
                return self._broken(lab, check, "the verifier process died during this check")
        if verdict is None:
            return self._broken(lab, check, f"the verifier stalled: no verdict after {timeout:g} s")
        changed = hashing.result()
        if changed:
            shown = ", ".join(changed[:3]) + (" ..." if len(changed) > 3 else "")
            return self._broken(lab, check, f"files of the grader or its tools changed: {shown}")
        return verdict

    def _broken(self, lab: str, check: str, why: str) -> Verdict:
        self.interference = why
        self._stop()
        return interfered(lab, check, why)

    def _stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        self._stop()
        if self._own_copy and self.integrity is not None:
            from grader.integrity import remove_copy
            from grader.lifecycle import release_copy

            remove_copy(self.integrity)
            release_copy(self.integrity.root)
            self.integrity = None


class _Hashing:
    """Re-hash the verifier's files in a thread while a check runs (about 0.2 s of CPU)."""

    def __init__(self, integrity: Integrity) -> None:
        import threading

        self._changed: list[str] = []
        self._thread = threading.Thread(target=self._run, args=(integrity,), daemon=True)
        self._thread.start()

    def _run(self, integrity: Integrity) -> None:
        self._changed = integrity.changed()

    def result(self) -> list[str]:
        self._thread.join()
        return self._changed


def interfered(lab: str, check: str, why: str) -> Verdict:
    """The verdict of every check after the verifier was attacked: failed, and flagged."""
    return Verdict.fail(
        f"check {check}: {INTERFERED}",
        sent=f"asked the verifier of lab {lab} for check {check}",
        observed=why,
        expected="the verifier alive, unchanged and answering within its budget",
        hint="a notebook must not kill, stop or modify the grader, its libraries or tools",
    )


def _read_line(stream: Any, timeout: float) -> str | None:
    """One line from `stream`, or None if none arrives within `timeout` seconds."""
    import selectors

    if timeout <= 0:
        return None
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(timeout):
            return None
    return str(stream.readline())  # "" means end of file


def _warm_probes() -> threading.Thread:
    """Start the probes' forkserver while the student's kernel starts, not at the first check.

    In a thread: the forkserver imports Scapy (a second or more) while this process imports
    the lab's checks, and a first check that sends no packet (a question) is answered at
    once; a probe started meanwhile simply waits for the forkserver, as it would anyway.
    """
    from grader import probes

    warm = threading.Thread(target=probes.warm_up, name="warm-probes", daemon=True)
    warm.start()
    return warm


def serve(lab: str) -> int:
    """Answer JSON requests from stdin, one verdict line each, until stdin closes.

    Everything a check needs is imported first (the lab's checks, the run registry, the
    probes' forkserver), while the student's kernel does not exist yet.
    """
    _warm_probes()
    import course.runs  # noqa: F401  (used by find_run)

    load_lab(lab)
    for line in sys.stdin:
        try:
            req = json.loads(line)
            use_root(req.get("root", ""))
            verdict = verify(
                req["lab"], req["check"], pid=req["pid"], prefix=None, answers=req["answers"]
            )
        except Exception as exc:
            verdict = Verdict(False, f"the verifier failed: {type(exc).__name__}: {exc}")
        print(MARKER + verdict.to_json(), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--serve"] and len(args_in) == 2:
        return serve(args_in[1])
    parser = argparse.ArgumentParser(prog="python -m grader.verify")
    parser.add_argument("lab")
    parser.add_argument("check")
    parser.add_argument("--pid", type=int, default=None, help="process that owns the lab run")
    parser.add_argument("--run", default=None, help="run prefix, instead of --pid")
    parser.add_argument("--answers", default="{}", help="JSON object of literal answers")
    args = parser.parse_args(args_in)
    try:
        answers = json.loads(args.answers)
        verdict = verify(args.lab, args.check, pid=args.pid, prefix=args.run, answers=answers)
    except Exception:
        traceback.print_exc()
        return 2
    print(MARKER + verdict.to_json(), flush=True)
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())
