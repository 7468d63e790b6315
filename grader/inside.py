"""Run a program inside a submission's sandbox from the grading side, and read its files safely.

Why: a few checks run the learner's own code as part of the check (lab 04's checks are the
container runtime and run the learner's CNI plugin file). Started by the verifier, that
code would be root in the grading machine's own view: it could read the gradebook, the
answer keys and other submissions, or tamper with the verifier. So it runs where the
learner's kernel runs. util-linux `nsenter` joins the kernel's user, mount, PID, IPC and
network namespaces (the sandbox bubblewrap and `unshare` built, `grader.sandbox`); then,
already inside, `setpriv` sets no_new_privs and drops from the bounding set the
capabilities bubblewrap drops for the kernel. The program sees the sandbox's files only,
is root only over the sandbox's own namespaces, sees only the sandbox's processes, and is
killed with the sandbox. What the program prints is judged here, in the verifier.

Well-kept tools rather than our own setns code: `nsenter` already enters the namespaces in
the order the kernel accepts (everything but the user namespace while still privileged,
the user namespace last), sets uid/gid 0 in it and forks into the PID namespace.

The grading side also reads files the submission wrote (host-local's reservations) through
the sandbox's root `/proc/<kernel>/root`. A symlink there resolves in the *verifier's*
view (an absolute target points at the grading machine's own files), so those reads walk
the path one component at a time and never follow a symlink, and read regular files only
(a FIFO would block the verifier).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

NSENTER = "/usr/bin/nsenter"  # hashed as a verifier tool (grader.integrity.VERIFIER_TOOLS)
# Capabilities a lab never needs, dropped by bubblewrap for the kernel (grader.sandbox) and
# here for what the grading side runs inside. Here, not in grader.sandbox: the verifier
# imports this module and must not import Jupyter (not in its hashed copy).
DROPPED_CAPS = (
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_PTRACE",
    "CAP_SYS_TIME",
    "CAP_SYS_BOOT",
    "CAP_MKNOD",
    "CAP_SYS_TTY_CONFIG",
    "CAP_SYSLOG",
)
_ROOT = re.compile(r"^/proc/(\d+)/root(/|$)")


@dataclass(frozen=True)
class Sandbox:
    """The sandbox of the kernel with host pid `pid`, as the verifier reaches it."""

    pid: int

    @property
    def root(self) -> Path:
        return Path(f"/proc/{self.pid}/root")

    # --- paths ---------------------------------------------------------------------------
    def inside(self, path: str | Path) -> str:
        """The sandbox's own name for `path` (given as the verifier sees it, or already inside)."""
        text = str(path)
        match = _ROOT.match(text)
        if match is None:
            return text
        if int(match.group(1)) != self.pid:
            raise ValueError(f"{text} is not in the sandbox of process {self.pid}")
        return "/" + text[match.end() :].lstrip("/")

    # --- programs ------------------------------------------------------------------------
    def argv(self, argv: Sequence[str], netns: str | None = None) -> list[str]:
        """`argv` run inside the sandbox; inside the named namespace `netns` (an inside path)
        if given, else in the kernel's own network namespace.

        The lab namespace is entered by a second `nsenter` already inside: it opens the path
        in the sandbox's view and with the sandbox's rights, so a name the submission pointed
        at a namespace of the grading machine cannot be entered.
        """
        caps = ",".join("-" + c.lower().removeprefix("cap_") for c in DROPPED_CAPS)
        outer = [NSENTER, f"--target={self.pid}", "--user", "--mount", "--pid", "--ipc", "--net"]
        drop = ["setpriv", "--no-new-privs", f"--bounding-set={caps}"]
        lab = ["nsenter", f"--net={netns}"] if netns else []
        return (
            [*outer, "--", *drop, "--", *lab, "--", *argv]
            if lab
            else [*outer, "--", *drop, "--", *argv]
        )

    def run(
        self, argv: Sequence[str], input: str | None = None, timeout: float = 10.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a grading tool (`ip netns add`, `rm`) inside; its output, never raising on exit."""
        return subprocess.run(
            self.argv(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={
                "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                "LANG": "C.UTF-8",
            },
            cwd="/",
        )

    # --- files, without following the submission's symlinks ------------------------------
    def _open(self, inside: str, flags: int) -> int:
        parts = [p for p in PurePosixPath(inside).parts if p != "/"]
        if not parts or ".." in parts:
            raise OSError(errno.EPERM, "not a plain path inside the sandbox", inside)
        fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY)
        try:
            for part in parts[:-1]:
                step = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = step
            return os.open(parts[-1], flags | os.O_NOFOLLOW, dir_fd=fd)
        finally:
            os.close(fd)

    def is_executable(self, inside: str) -> bool:
        """A regular file with an execute bit, reached without a symlink."""
        try:
            fd = self._open(inside, os.O_PATH)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        return stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)

    def read_folder(self, inside: str, limit: int = 4096) -> dict[str, str]:
        """name -> text of each regular file in folder `inside` (first `limit` bytes);
        {} when the folder is missing or reached through a symlink."""
        from course.cni.learner import read_folder

        return read_folder(Path(f"{self.root}/{inside.lstrip('/')}"), limit)


def current() -> Sandbox | None:
    """The sandbox the verifier is looking into now, or None (self-check: no sandbox).

    `grader.verify.use_root` points the namespace folder into the sandbox's root
    (`/proc/<kernel>/root/run/netns`) for each request; that is the one source of truth.
    """
    from course.kernel import netns

    match = _ROOT.match(str(netns.NETNS_DIR))
    return Sandbox(int(match.group(1))) if match else None
