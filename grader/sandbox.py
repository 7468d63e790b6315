"""One sandbox per graded submission: the kernel in its own mount and PID namespaces.

Why bubblewrap (Debian's `bubblewrap`, the sandbox Flatpak runs every app in) rather than
util-linux `unshare` plus our own mount script: a sandbox is only as good as the list of
what it shows, and bubblewrap builds the kernel's file system from an *allow list* (each
`--ro-bind` names something the kernel may see; everything else simply does not exist
inside), puts the kernel in a new PID namespace whose init it runs itself, and kills that
whole namespace when its parent dies (`--die-with-parent`). Doing the same with `unshare`
means hand-writing the pivot_root, the tmpfs root and the hiding of every secret folder,
which is the part that goes wrong. bubblewrap is small, audited and packaged everywhere.

What the kernel sees inside:
- the system folders (`/usr`, `/etc`, `/bin`, ...) and the Python it runs, read-only;
- the course code it imports (`course/`, and `grader/` without the labs' check tables,
  which hold the answer keys), read-only;
- a scratch copy of its own submission folder (its notebook), writable;
- a private `/run` (so `/run/netns` and the run registry hold only its own namespaces and
  runs), `/tmp`, `/root` and `/dev`, `/proc` of its own PID namespace.
Not there: the gradebook, `solutions/`, other submissions, the verifier's copy, the
grading processes (different PID namespace).

The grading side reaches the submission's namespaces through the sandbox's root
(`/proc/<sandbox init>/root/run/netns`), so the grader, not the kernel, decides which
namespaces belong to the submission: inside the sandbox nothing else exists. When the
kernel exits, bubblewrap's init exits, the kernel kills every process left in the PID
namespace, the mount namespace goes with them and so do the lab's network namespaces
(they were pinned only by mounts in that private `/run`).

Limits, said plainly: the kernel keeps root and CAP_SYS_ADMIN (the labs need them to build
namespaces), minus a few capabilities it never needs (modules, raw I/O, ptrace, clock,
reboot, mknod). A root process with CAP_SYS_ADMIN can remount its read-only views, so the
sandbox is backed by `grader.integrity`'s hashes and by the verifier living outside it.
It is not a boundary against kernel exploits: grade untrusted classes in a throwaway VM
or container as well.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from traitlets import List, Unicode

from grader.inside import DROPPED_CAPS
from grader.nbtools import REPO

BWRAP = "/usr/bin/bwrap"
# Not /opt: the Docker image keeps the whole repository (solutions/ too) under /opt.
SYSTEM_DIRS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What of the repository the kernel sees: the course code and its example data (Kubernetes
# manifests the labs load). Not solutions/, tests/ or labs/ (other notebooks).
COURSE_PARTS = ("course", "examples")
# Files of grader/labs the kernel may import (check tables with answer keys stay outside).
GRADER_LABS_VISIBLE = ("__init__.py", "common.py")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot build a sandbox here; the message says why."""


def unavailable_reason() -> str:
    """Empty when a sandbox can be built here; else why not, in words an instructor can act on."""
    if not os.path.exists(BWRAP):
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    if os.geteuid() != 0:
        return "grading must run as root (the labs build network namespaces)"
    # What every lab does first: a named namespace, then `ip -n` (which mounts a sysfs).
    probe = "ip netns add k8snet-probe && ip -n k8snet-probe link set lo up"
    argv = [BWRAP, *_base_args(), "--", *LOCK, "/bin/sh", "-c", probe]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not start: {exc}"
    if out.returncode != 0 and "mount of /sys failed" in out.stderr:
        return (
            "inside the sandbox `ip -n` cannot mount a sysfs: this container masks paths "
            "under /sys (Docker does unless told not to). Start it with the project's "
            "docker-compose.yml (its entrypoint lifts the masks: K8SNET_UNMASK_SYSTEM_PATHS=1), "
            "or `docker run --security-opt systempaths=unconfined`, or grade with --no-sandbox"
        )
    if out.returncode != 0:
        return (
            f"bubblewrap refused to build a sandbox here: {out.stderr.strip()[:300]} "
            "(in Docker, use the project's docker-compose.yml, which grants CAP_SYS_ADMIN "
            "with seccomp and AppArmor unconfined, or docker/compose.privileged.yml; user "
            "namespaces must be enabled: sysctl user.max_user_namespaces > 0)"
        )
    return ""


_REASON: list[str] = []


def unavailable_reason_once() -> str:
    """`unavailable_reason()`, probed once per process (nbgrader grades many notebooks)."""
    if not _REASON:
        _REASON.append(unavailable_reason())
    return _REASON[0]


def _base_args() -> list[str]:
    args = ["--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-cgroup-try"]
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    args += ["--proc", "/proc", "--dev", "/dev", "--ro-bind", "/sys", "/sys"]
    args += ["--tmpfs", "/run", "--tmpfs", "/tmp", "--tmpfs", "/root", "--dir", "/var"]
    args += ["--symlink", "../run", "/var/run", "--tmpfs", "/var/tmp"]
    for cap in DROPPED_CAPS:
        args += ["--cap-drop", cap]
    return args


def _python_args() -> list[str]:
    """The interpreter, its venv and the course code (minus answer keys), read-only."""
    args: list[str] = []
    for prefix in dict.fromkeys((sys.base_prefix, sys.prefix)):
        args += ["--ro-bind", prefix, prefix]
    for part in COURSE_PARTS:
        if (REPO / part).exists():
            args += ["--ro-bind", str(REPO / part), str(REPO / part)]
    args += ["--ro-bind", str(REPO / "grader"), str(REPO / "grader")]
    labs = REPO / "grader" / "labs"
    args += ["--tmpfs", str(labs)]
    for name in GRADER_LABS_VISIBLE:
        args += ["--ro-bind", str(labs / name), str(labs / name)]
    return args


def sandbox_argv(workdir: Path, cwd: str, connection_file: str, sockets: Path) -> list[str]:
    """bubblewrap's command line for one kernel; `workdir` is mounted at `cwd`, the folder
    of Jupyter's Unix sockets at its own path."""
    args = [BWRAP, *_base_args(), *_python_args()]
    args += ["--bind", str(workdir), cwd, "--chdir", cwd]
    args += ["--bind", str(sockets), str(sockets)]
    # writable: ipykernel rewrites its connection file when it merges what it bound
    args += ["--bind", connection_file, connection_file]
    args += ["--setenv", "HOME", "/root", "--setenv", "TMPDIR", "/tmp"]
    # The kernel's parent inside is the sandbox's init (pid 1), so ipykernel's "has my
    # parent exited?" poller would stop it at once; --die-with-parent does that job here.
    args += ["--setenv", "JPY_PARENT_PID", "1"]
    return [*args, "--", *LOCK]


# Inside bubblewrap's view, the kernel enters a user namespace of its own (root mapped to
# root, every capability *in it*), with its own mount and network namespaces. Every mount
# bubblewrap made is then locked: not even CAP_SYS_ADMIN inside can remount a read-only
# view read-write or unmount it (a plain bubblewrap sandbox as root could). Its own network
# namespace follows: a process in a user namespace may not enter a network namespace the
# parent owns, so the kernel starts in an empty one, and Jupyter talks to it over Unix
# sockets (SandboxKernelManager). The lab namespaces it creates belong to it.
LOCK = ["/usr/bin/unshare", "--user", "--map-root-user", "--net", "--mount", "--"]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _special_files(folder: str, names: list[str]) -> list[str]:
    return [
        n
        for n in names
        if not (os.path.isdir(os.path.join(folder, n)) or os.path.isfile(os.path.join(folder, n)))
    ]


def _scratch_folder(prefix: str) -> Path:
    """A temporary folder claimed by this process: if it is killed before removing it, the
    next grading run or `k8snet down` does (grader.lifecycle.reap_stale_copies)."""
    from grader.lifecycle import claim_copy

    folder = Path(tempfile.mkdtemp(prefix=prefix))
    claim_copy(folder)
    return folder


def _remove_scratch(folder: Path) -> None:
    from grader.lifecycle import release_copy

    shutil.rmtree(folder, ignore_errors=True)
    release_copy(folder)


class SandboxKernelManager(AsyncKernelManager):
    """A Jupyter kernel manager whose kernel starts inside a bubblewrap sandbox.

    Jupyter's own process management stays as it is (the provisioner's process is
    bubblewrap); only the interrupt goes to the kernel itself, since a SIGINT to
    bubblewrap would end the whole sandbox instead of the running cell.
    """

    submission_dir = Unicode("", help="folder whose scratch copy the kernel sees").tag(config=True)
    extra_env = List([], help="KEY=VALUE pairs set inside the sandbox").tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._scratch: Path | None = None
        # The kernel has a network namespace of its own: Jupyter's channels are Unix
        # sockets in a folder both sides see (no TCP port anyone else could connect to).
        self._sockets = _scratch_folder("k8snet-kernel-")
        self.transport = "ipc"
        self.ip = str(self._sockets / "kernel")

    async def _async_pre_start_kernel(self, **kw: Any) -> tuple[list[str], dict[str, Any]]:
        cmd, kw = await super()._async_pre_start_kernel(**kw)
        cwd = str(kw.get("cwd") or self.submission_dir or os.getcwd())
        self._scratch = _scratch_folder("k8snet-submission-")
        source = Path(self.submission_dir or cwd)
        if source.is_dir():
            # regular files only (no sockets, fifos or devices); unreadable ones are skipped
            with contextlib.suppress(shutil.Error):
                shutil.copytree(source, self._scratch, dirs_exist_ok=True, ignore=_special_files)
        prefix = sandbox_argv(self._scratch, cwd, self.connection_file, self._sockets)
        end = prefix.index("--")  # bubblewrap's own options end here
        for pair in self.extra_env:
            key, _, value = pair.partition("=")
            prefix[end:end] = ["--setenv", key, value]
        return [*prefix, *cmd], kw

    # --- the processes inside ---------------------------------------------------------------
    def sandbox_init(self, wait: float = 5.0) -> int | None:
        """Host pid of the sandbox's init (bubblewrap inside the new PID namespace)."""
        pid = getattr(self.provisioner, "pid", None)
        deadline = time.monotonic() + wait
        while pid:
            kids = _children(int(pid))
            if kids:
                return kids[0]
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)
        return None

    def kernel_host_pid(self) -> int | None:
        init = self.sandbox_init()
        kids = _children(init) if init else []
        return kids[0] if kids else None

    def detached_processes(self) -> list[str]:
        """Processes reparented to the sandbox's init: started by the submission, detached."""
        init = self.sandbox_init(wait=0)
        if not init:
            return []
        kernel = self.kernel_host_pid()
        found = []
        for pid in _children(init):
            if pid == kernel:
                continue
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                found.append(f"{pid}: {cmd.decode(errors='replace').strip()[:80]}")
        return found

    def root(self) -> str:
        """Where the grading side finds the kernel's file system (`/run/netns` inside)."""
        kernel = self.kernel_host_pid()
        return f"/proc/{kernel}/root" if kernel else ""

    def kill_sandbox(self) -> None:
        """End everything inside at once: bubblewrap's init dies with its parent."""
        pid = getattr(self.provisioner, "pid", None)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)

    async def _async_signal_kernel(self, signum: int) -> None:
        kernel = self.kernel_host_pid()
        if kernel is None:
            await super()._async_signal_kernel(signum)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(kernel, signum)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart)
        if self._scratch is not None:
            _remove_scratch(self._scratch)
            self._scratch = None
        if not restart:
            _remove_scratch(self._sockets)
