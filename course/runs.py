"""Which lab runs exist, who owns them, and how to reap what a crashed run left behind.

Every namespace a lab makes is named `knl-<run id>-<role>` (for example
`knl-3fa2-node1`), and every run writes a small JSON record under /run/k8s-netlabs/runs.
/run is a tmpfs, so records vanish at reboot, exactly like the namespaces they describe.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path

from course.kernel import Netns, list_netns

# The first part of every lab namespace's name. A second course on the same machine (or a
# test that must not touch anyone else's labs) can pick another with K8SNET_NS_PREFIX.
PREFIX = os.environ.get("K8SNET_NS_PREFIX", "knl")
RUN_ROOT = Path("/run/k8s-netlabs")
RUN_DIR = RUN_ROOT / "runs"
# Files a run's daemons need (BIRD's config, control socket, pid file, log), one folder per run.
STATE_DIR = RUN_ROOT / "state"


def state_dir(prefix: str) -> Path:
    """Where the run `prefix` keeps daemon files; removed with the run."""
    return STATE_DIR / prefix


def remove_state_dir(prefix: str) -> None:
    """Remove what run `prefix` keeps under /run/k8s-netlabs, its record aside.

    That is its daemon folder, and the notes other layers keep per run or per namespace
    in folders of their own (break/fix attempt counts, iptables-restore rejections), all
    named after the run's prefix or its namespaces. A tmpfs that only grows would carry
    one lab's notes into a later run that happens to draw the same prefix.
    """
    _remove_under_run_root([prefix], [prefix + "-*", prefix + ".*"])


def kill_run_daemons(prefix: str) -> list[int]:
    """SIGKILL the processes whose command line names a file of run `prefix`'s state folder.

    A daemon (BIRD) is normally found through its namespace. But a node namespace deleted
    by name while its BIRD ran (`ip netns del` in a terminal) lives on, nameless, held by
    that BIRD: no namespace name leads to it any more, its command line (`bird -c
    /run/k8s-netlabs/state/<prefix>/node1/bird.conf ...`) still does. `prefix` may also be
    the start of several runs' prefixes (`knl-`, for `k8snet down --all`).
    """
    needle = str(STATE_DIR / prefix).encode()
    if not prefix.endswith("-"):
        needle += b"/"
    killed = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                continue
            killed.append(int(entry.name))
    return killed


def _remove_under_run_root(names: list[str], patterns: list[str]) -> None:
    import shutil

    areas = [a for a in RUN_ROOT.iterdir() if a.is_dir()] if RUN_ROOT.is_dir() else []
    for area in areas:
        if area == RUN_DIR:
            continue  # records are removed by whoever removes the run, after its namespaces
        found = [area / n for n in names] + [p for pat in patterns for p in area.glob(pat)]
        for path in found:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def process_start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot): with the pid, names one process for good.

    PIDs are reused, quickly so in a container; the start time tells a new process with an
    old number from the one that made a run.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass
class RunRecord:
    prefix: str
    lab: str
    pid: int
    namespaces: list[str] = field(default_factory=list)
    detached: bool = False
    started: int | None = None  # the owner's start time, see process_start_time
    # break/fix exercises (course.faults): the seed used when $K8SNET_LEARNER is unset, and
    # which faults each catalogue injected into this run
    faults_seed: str | None = None
    faults: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.started is None:
            self.started = process_start_time(self.pid)

    def owned_by(self, pid: int) -> bool:
        """True when process `pid` (the same process, not a reuse of its number) owns it."""
        return self.pid == pid and self.started == process_start_time(pid)

    @property
    def path(self) -> Path:
        return RUN_DIR / f"{self.prefix}.json"

    def save(self) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(self.path)

    def owner_alive(self) -> bool:
        return self.owned_by(self.pid)


def new_prefix() -> str:
    """A fresh run prefix such as `knl-3fa2`, unused by any namespace or record."""
    while True:
        prefix = f"{PREFIX}-{secrets.token_hex(2)}"
        if not list_netns(prefix + "-") and not (RUN_DIR / f"{prefix}.json").exists():
            return prefix


def load_runs() -> list[RunRecord]:
    records = []
    for path in sorted(RUN_DIR.glob("*.json")) if RUN_DIR.is_dir() else []:
        try:
            records.append(RunRecord(**json.loads(path.read_text())))
        except (ValueError, TypeError, OSError):
            continue
    return records


def orphan_namespaces() -> list[str]:
    """Lab namespaces that no run record mentions (left by a SIGKILLed build)."""
    known = {ns for rec in load_runs() for ns in rec.namespaces}
    return [ns for ns in list_netns(PREFIX + "-") if ns not in known]


def reap(lab: str | None = None, everything: bool = False) -> list[str]:
    """Delete the namespaces of matching runs (and, with `everything`, any `knl-*` one).

    Processes inside are killed first, since a namespace with a process in it lives on.
    Returns the names of the namespaces removed.
    """
    removed: list[str] = []
    for rec in load_runs():
        if not rec.prefix.startswith(PREFIX + "-"):
            continue  # another course (or test) on this machine with its own K8SNET_NS_PREFIX
        if everything or (lab is not None and rec.lab == lab):
            for name in list_netns(rec.prefix + "-"):
                Netns(name).delete()  # kills what runs inside first (BIRD included)
                removed.append(name)
            kill_run_daemons(rec.prefix)  # a BIRD whose namespace lost its name
            remove_state_dir(rec.prefix)
            rec.path.unlink(missing_ok=True)
    if everything:
        for name in list_netns(PREFIX + "-"):
            Netns(name).delete()
            removed.append(name)
        kill_run_daemons(PREFIX + "-")
        _remove_under_run_root([], [PREFIX + "-*"])
    return removed
