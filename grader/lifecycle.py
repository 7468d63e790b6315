"""`k8snet` ends cleanly however it is stopped: Ctrl+C, `timeout` (SIGTERM), a closed terminal.

Why: `k8snet check` and `k8snet grade` run notebooks in Jupyter kernels, which Jupyter starts
in sessions of their own. Killed by Python's default SIGTERM, the command died at once and
its kernel lived on, holding the lab's namespaces (seen: `timeout 25 k8snet check ...` left
`knl-xxxx-node1` and `knl-xxxx-pod-a`). Now SIGTERM and SIGHUP unwind like Ctrl+C
(SystemExit runs every `finally`), and at exit after a signal the command stops what it
started:
SIGTERM to every descendant (a lab kernel's own handler then deletes its namespaces), SIGKILL
to any still there after a grace period, and the namespaces of runs whose owner is gone are
deleted. Runs left on purpose (`k8snet up`, marked detached) stay.
"""

from __future__ import annotations

import atexit
import os
import signal
import time
from pathlib import Path
from types import FrameType

GRACE_S = 3.0


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, read from /proc."""
    parent_of: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent_of[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parent_of.items() if pp in frontier]
        found += kids
        frontier = kids
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop_descendants(grace: float = GRACE_S) -> list[int]:
    """SIGTERM everything this process started, SIGKILL what is left after `grace` s."""
    victims = descendants(os.getpid())
    for pid in victims:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + grace
    while any(_alive(p) for p in victims) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in victims:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
    return victims


def reap_abandoned() -> list[str]:
    """Delete the namespaces of this prefix's runs whose owner is gone (and not detached)."""
    from course.kernel import Netns
    from course.runs import PREFIX, load_runs

    removed = []
    for rec in load_runs():
        if rec.prefix.startswith(PREFIX + "-") and not rec.detached and not rec.owner_alive():
            for name in rec.namespaces:
                Netns(name).delete()
                removed.append(name)
            rec.path.unlink(missing_ok=True)
    return removed


_stopped_by: list[int] = []


def _on_exit() -> None:
    # Only after a signal: a normal exit may leave children on purpose (`k8snet up` with BGP
    # leaves BIRD running in its detached lab).
    if _stopped_by and stop_descendants():
        reap_abandoned()


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    signal.signal(signum, signal.SIG_IGN)  # a second signal must not cut the cleanup short
    _stopped_by.append(signum)
    raise SystemExit(128 + signum)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _stopped_by.append(signum)
    signal.default_int_handler(signum, frame)  # KeyboardInterrupt, as Python does


def install() -> None:
    """For the `k8snet` process: signals unwind; after one, stop children and reap."""
    atexit.register(_on_exit)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    signal.signal(signal.SIGINT, _interrupt)
