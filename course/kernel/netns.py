"""Named network namespaces, built the way `ip netns add` builds them, without forking.

A named namespace is just a file under /run/netns that a namespace is bind-mounted on.
The mount keeps the namespace alive after the thread that made it moves on, and lets any
later process or thread join it by opening the file. Kubernetes works the same way: the
container runtime (or the "pause" container) holds each pod's namespace, and the CNI
plugin is handed its path (`CNI_NETNS=/var/run/netns/cni-...`).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from course.kernel import _libc
from course.kernel.links import LinkOps

NETNS_DIR = Path("/run/netns")
_mount_lock = threading.Lock()
_netns_dir_ready = False

# Called as hook(ns, proc) after every `Netns.popen`: course.notebook uses it to stop the
# processes a notebook cell started when that cell is run again.
POPEN_HOOKS: list[Callable[[Netns, subprocess.Popen[Any]], None]] = []


class KernelError(RuntimeError):
    """The kernel or a kernel tool refused an operation; the message says which and why."""


def _ensure_netns_dir() -> None:
    """Create /run/netns as a shared mount point once, exactly as iproute2 does."""
    global _netns_dir_ready
    with _mount_lock:
        if _netns_dir_ready and NETNS_DIR.is_dir():
            return
        NETNS_DIR.mkdir(parents=True, exist_ok=True)
        mounts = Path("/proc/self/mountinfo").read_text()
        if f" {NETNS_DIR} " not in mounts:
            _libc.make_shared_mountpoint(str(NETNS_DIR))
        _netns_dir_ready = True


@contextmanager
def entered_path(path: str | Path) -> Iterator[None]:
    """Run the body with the *current thread* inside the namespace at `path`.

    Netlink sockets opened here stay bound to that namespace for their whole life, and
    `/proc/sys/net/...` opened here shows that namespace's sysctls.
    """
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(str(path), os.O_RDONLY)
    try:
        _libc.setns(target)
        yield
    finally:
        _libc.setns(home)
        os.close(target)
        os.close(home)


def netns_inode(path: str | Path) -> int:
    return os.stat(path).st_ino


def list_netns(prefix: str = "") -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


def pids_by_netns() -> dict[int, list[int]]:
    """Every process, grouped by the inode of its network namespace (one scan of /proc)."""
    found: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                ino = os.stat(f"/proc/{entry.name}/ns/net").st_ino
            except OSError:
                continue
            found.setdefault(ino, []).append(int(entry.name))
    return found


def pids_in_netns(path: str | Path) -> list[int]:
    """Processes whose network namespace is the one mounted at `path`.

    A namespace lives on while any process is inside it, so teardown must find them.
    """
    return pids_by_netns().get(netns_inode(path), [])


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


_NETLINK_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")


def _open_ipr(path: Path) -> IPRoute:
    with entered_path(path):
        return IPRoute()


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = fn(*args, **kwargs)
    return list(result) if isinstance(result, Iterator) else result


def _on_netlink_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` on the helper thread, or here once the interpreter is exiting.

    At exit, Python shuts every ThreadPoolExecutor down before atexit handlers run, so a
    lab's teardown (an atexit handler) could no longer close a socket through it: in a
    Jupyter kernel shut down by JupyterLab, every namespace, and lab 03's BIRDs, stayed.
    By then no asyncio loop runs in this thread, so the direct call is safe.
    """
    try:
        future = _NETLINK_THREAD.submit(fn, *args)
    except RuntimeError:  # "cannot schedule new futures after (interpreter) shutdown"
        return fn(*args)
    return future.result()


class LoopSafeIPRoute:
    """An IPRoute whose calls run on a helper thread, for threads that run an asyncio loop.

    pyroute2's synchronous API drives an event loop of its own, which asyncio refuses inside
    a thread whose loop is already running: a Jupyter kernel runs every cell that way ("This
    event loop is already running"). The socket is opened on the helper thread after it
    entered the namespace, so it is bound there exactly as in the direct case.
    """

    def __init__(self, path: Path) -> None:
        self._ipr = _on_netlink_thread(_open_ipr, path)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._ipr, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return _on_netlink_thread(_call, attr, args, kwargs)

        return call


class Netns(LinkOps):
    """One named network namespace: a node, a pod, a router or a switch in a lab."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = NETNS_DIR / name
        self._ipr: IPRoute | None = None
        self._procs: list[subprocess.Popen[Any]] = []
        self._starting = threading.Lock()  # held while popen() starts a process

    def __repr__(self) -> str:
        return f"Netns({self.name!r})"

    # --- lifecycle ---------------------------------------------------------------------
    @classmethod
    def create(cls, name: str, replace: bool = False) -> Netns:
        """`ip netns add NAME`: unshare a new namespace in this thread, pin it, come back.

        With `replace`, an existing namespace of that name is deleted first (its processes
        stopped, its veths gone with it), so the caller starts from an empty namespace.
        """
        _ensure_netns_dir()
        path = NETNS_DIR / name
        if replace and path.exists():
            old = cls(name)
            old.delete_links()
            old.delete()
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0)
        except FileExistsError:
            raise KernelError(
                f"network namespace {name!r} already exists "
                "(Netns.create(name, replace=True) starts it afresh)"
            ) from None
        os.close(fd)
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _libc.unshare_net()
            _libc.bind_mount("/proc/thread-self/ns/net", str(path))
        except OSError as exc:
            path.unlink(missing_ok=True)
            raise KernelError(f"cannot create namespace {name!r}: {exc}") from exc
        finally:
            _libc.setns(home)
            os.close(home)
        ns = cls(name)
        return ns

    def exists(self) -> bool:
        return self.path.exists()

    def delete_links(self) -> None:
        """`ip link del` every interface but `lo`, now.

        The kernel frees a deleted namespace, and the veths in it, a little later, in the
        background; a cable's other end in a node would linger meanwhile. A namespace about
        to be replaced by one of the same name loses its links first, so the new one can
        be cabled to the same names at once.
        """
        for entry in self.links():
            if entry["name"] != "lo":
                with suppress(NetlinkError):  # gone with its veth peer a moment ago
                    self.ipr.link("del", index=entry["index"])

    @contextmanager
    def entered(self) -> Iterator[None]:
        with entered_path(self.path):
            yield

    @property
    def ipr(self) -> IPRoute:
        """A netlink socket bound to this namespace (opened once, from inside it)."""
        if self._ipr is None:
            if not self.exists():
                raise KernelError(f"network namespace {self.name!r} does not exist")
            if _loop_running():
                self._ipr = LoopSafeIPRoute(self.path)  # type: ignore[assignment]
            else:
                with self.entered():
                    self._ipr = IPRoute()
        assert self._ipr is not None
        return self._ipr

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    def delete(self, pids_by_inode: dict[int, list[int]] | None = None) -> None:
        """Stop what runs inside, close our sockets, unmount and remove the name.

        Order matters: a namespace outlives its name while any process or socket holds it,
        and so do its veths (and their peers in other namespaces).
        """
        self.close()
        with self._starting:  # a process being started is recorded before we look
            procs, self._procs = self._procs, []
        for proc in procs:
            if proc.poll() is None:  # an exited process's pid may belong to someone else now
                _kill_group(proc.pid)
                _reap(proc)
        if not self.exists():
            return
        if pids_by_inode is None:
            pids_by_inode = pids_by_netns()
        for pid in pids_by_inode.get(netns_inode(self.path), []):
            if pid != os.getpid():
                _kill(pid)
        with suppress(OSError):  # not mounted (a half-made namespace): unlinking is enough
            _libc.umount_detach(str(self.path))
        self.path.unlink(missing_ok=True)

    # --- sysctls -------------------------------------------------------------------------
    def sysctl(self, key: str, value: int | str | None = None) -> str:
        """Read or write a per-namespace sysctl, e.g. `net.ipv4.ip_forward`.

        Writes go through /proc/sys from a thread inside the namespace, so the host's own
        value is never touched.
        """
        path = "/proc/sys/" + key.replace(".", "/")
        with self.entered():
            try:
                if value is not None:
                    with open(path, "w") as f:
                        f.write(f"{value}\n")
                with open(path) as f:
                    return f.read().strip()
            except OSError as exc:
                raise KernelError(f"sysctl {key} in {self.name}: {exc.strerror}") from exc

    # --- processes -----------------------------------------------------------------------
    def _argv(self, argv: Sequence[str]) -> list[str]:
        return ["nsenter", f"--net={self.path}", "--", *argv]

    def run(
        self,
        argv: Sequence[str],
        input: str | None = None,
        check: bool = True,
        timeout: float = 30.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run a program inside this namespace (only the network namespace changes)."""
        proc = subprocess.run(
            self._argv(argv), input=input, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip()
            raise KernelError(f"{' '.join(argv)} in {self.name} failed: {msg}")
        return proc

    def popen(
        self, argv: Sequence[str], *, daemon: bool = False, **kwargs: Any
    ) -> subprocess.Popen[Any]:
        """Start a long-running process inside this namespace; it is stopped at delete().

        A `daemon` (a node's BIRD) belongs to the lab run, not to the code that started it:
        POPEN_HOOKS are not told, so running a notebook cell again does not stop it.

        The start happens on a helper thread. Python runs signal handlers on the main
        thread only, so a Ctrl-C or SIGTERM arriving in the middle of `Popen` can no longer
        lose the new child's pid: the helper finishes and records it, and delete(), which
        waits for a start in progress, stops it. (Started in the main thread, such a child,
        e.g. a BIRD, went on running after teardown: nothing knew it existed.)
        """
        kwargs.setdefault("start_new_session", True)
        outcome: list[subprocess.Popen[Any] | BaseException] = []

        def start() -> None:
            with self._starting:
                try:
                    outcome.append(subprocess.Popen(self._argv(argv), **kwargs))
                except BaseException as exc:  # handed to the caller below
                    outcome.append(exc)
                    return
                self._procs.append(outcome[0])  # type: ignore[arg-type]

        starter = threading.Thread(target=start, name=f"popen-{self.name}", daemon=True)
        starter.start()
        starter.join()
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        proc = outcome[0]
        for hook in POPEN_HOOKS if not daemon else []:
            hook(self, proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any]) -> None:
        """Stop a process started with `popen` (its whole process group) and reap it."""
        if proc.poll() is None:
            _kill_group(proc.pid)
            _reap(proc)
        if proc in self._procs:
            self._procs.remove(proc)

    # --- netfilter -----------------------------------------------------------------------
    def apply_iptables(
        self, payload: str, noflush: bool = False, ipv6: bool = False, timeout: float = 30.0
    ) -> None:
        """Apply a whole `iptables-restore` payload in one atomic transaction.

        This is how kube-proxy writes its rules: all tables at once, never rule by rule,
        so a packet never sees half a rule set.
        """
        tool = "ip6tables-restore" if ipv6 else "iptables-restore"
        argv = [tool, "--noflush"] if noflush else [tool]
        proc = self.run(argv, input=payload, timeout=timeout, check=False)
        note_restore(self.name, proc, payload)

    def iptables_save(self, table: str | None = None) -> str:
        argv = ["iptables-save"] + (["-t", table] if table else [])
        return self.run(argv).stdout

    def apply_nft(self, ruleset: str) -> None:
        """Load an nftables rule set with `nft -f -` (atomic: all or nothing)."""
        self.run(["nft", "-f", "-"], input=ruleset)

    def nft_list(self) -> str:
        return self.run(["nft", "list", "ruleset"]).stdout


RESTORE_ERRORS = Path("/run/k8s-netlabs/restore-errors")  # (grader.verify re-roots it)


def note_restore(ns_name: str, proc: subprocess.CompletedProcess[str], payload: str) -> None:
    """Raise a readable error for a rejected payload, naming the line iptables-restore refused.

    iptables-restore says only "line 14 failed" (or "Error occurred at line: 14"); the line
    itself is what a learner needs to see. The last rejection per namespace is also kept
    under /run/k8s-netlabs/restore-errors, so a check that finds an empty chain can say why;
    a successful restore clears it.
    """
    note = RESTORE_ERRORS / f"{ns_name}.txt"
    if proc.returncode == 0:
        note.unlink(missing_ok=True)
        return
    message = restore_failure(proc.stderr or proc.stdout, payload)
    with suppress(OSError):
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text(message + "\n")
    raise KernelError(f"iptables-restore in {ns_name} rejected the payload: {message}")


def restore_failure(stderr: str, payload: str) -> str:
    """iptables-restore's complaint, plus the payload line it names."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and "Try `" not in ln]
    why = "; ".join(ln for ln in lines if not ln.startswith("Error occurred at line"))
    match = re.search(r"line:? (\d+)", stderr)
    if not match:
        return why or "no reason given"
    number = int(match.group(1))
    text = payload.splitlines()[number - 1] if 0 < number <= len(payload.splitlines()) else "?"
    return f"line {number}: {text}  <- {why or 'refused'}"


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        _kill(pid)


def _kill(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _reap(proc: subprocess.Popen[Any]) -> None:
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=2)
