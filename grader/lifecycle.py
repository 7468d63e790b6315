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


# --- verifier copies and sandbox scratch folders of graders that were killed ----------------------
# `grader.integrity` copies the verifier's code (~35 MB) into /tmp for each grading run and
# removes it at the end; a grader killed with SIGKILL (or the OOM killer) cannot. The same goes
# for the sandbox's folders (`grader.sandbox`: the kernel's socket folder and the scratch copy
# of the submission). Each gets a sidecar `<folder>.owner` that its grading process holds an
# flock on for as long as it lives: the kernel drops the lock when the process dies, however it
# dies, and a pid reused by another process cannot fake it. The next grading run and `k8snet
# down` remove folders whose lock is free. Kept apart from grader.integrity's hashing on purpose.
OWNER_SUFFIX = ".owner"
COPY_PREFIX = "k8snet-verifier-"
SCRATCH_PREFIXES = (COPY_PREFIX, "k8snet-kernel-", "k8snet-submission-")
_claims: dict[str, int] = {}


def claim_copy(root: Path) -> None:
    """Mark the copy (or scratch folder) at `root` as this process's while it lives (see above).

    The sidecar is locked under a temporary name and renamed into place, so a reaper never
    sees an unlocked sidecar of a live copy.
    """
    import fcntl

    temp = root.parent / f".{root.name}{OWNER_SUFFIX}.{os.getpid()}"
    fd = os.open(temp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{os.getpid()}\n".encode())
    os.rename(temp, root.parent / (root.name + OWNER_SUFFIX))
    _claims[str(root)] = fd


def release_copy(root: Path) -> None:
    """The copy at `root` is gone (removed by its owner): drop its sidecar and lock."""
    (root.parent / (root.name + OWNER_SUFFIX)).unlink(missing_ok=True)
    fd = _claims.pop(str(root), None)
    if fd is not None:
        os.close(fd)


def reap_stale_copies(folder: Path | None = None) -> list[Path]:
    """Remove the verifier copies and sandbox scratch folders in `folder` (default: every
    folder they are made in, /dev/shm and the temp folder) whose grader died."""
    import fcntl
    import shutil

    from grader.integrity import copy_folders

    owners = [o for f in ([folder] if folder else copy_folders()) for o in _owners(f)]
    removed = []
    for owner in owners:
        try:
            fd = os.open(owner, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its grader is alive
        else:
            copy = owner.with_name(owner.name[: -len(OWNER_SUFFIX)])
            if copy.is_dir() and not copy.is_symlink():
                if copy.name.startswith(COPY_PREFIX):  # a verifier copy is read-only
                    for path in [copy, *copy.rglob("*")]:
                        if path.is_dir() and not path.is_symlink():
                            path.chmod(0o755)
                # A scratch folder may hold a submission's symlinks: rmtree never follows them.
                shutil.rmtree(copy, ignore_errors=True)
                removed.append(copy)
            owner.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return removed


def _owners(folder: Path) -> list[Path]:
    try:
        return sorted(o for p in SCRATCH_PREFIXES for o in folder.glob(f"{p}*{OWNER_SUFFIX}"))
    except OSError:
        return []
