"""What a lab notebook's setup cell calls, and the shell cells that follow it.

    cluster = start_lab("01-netns-veth")

`start_lab` builds the lab's cluster (`course.labs.topology`) and makes it the notebook's
*current run*; under IPython it also loads the `%%ns ROLE` cell magic, which runs a cell as
a bash script inside one namespace of that run:

    %%ns node1
    ip -br addr
    ip route

`sh("node1", "ip route")` does the same from Python and returns the CompletedProcess.

Learners re-run cells all the time, so everything here is safe to run again:
- the setup cell, run again in the same kernel, deletes this kernel's earlier run of the
  lab and builds a fresh one (a clean slate is what "start again" means; nothing of the
  old run is reused);
- runs of the same lab whose kernel is gone (a restarted kernel) are removed, and the
  setup cell says so in one line;
- a cell run again first stops the processes it started the previous time (a server
  started with `Netns.popen`, or put in the background in a `%%ns` cell), so the fixed cell
  does not collide with its earlier self on the same port.

Errors meant for the learner (a failed check, a shell cell's exit status) are shown as
one short line instead of a traceback into course code: `quiet_errors` registers them with
IPython's custom exception hook, and the cell still ends in an error, so "Run all" stops
there and nbgrader still scores it as failed. `grader.nb` registers its `CheckFailed` here.
"""

from __future__ import annotations

import argparse
import codecs
import os
import selectors
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import IO, Any

from course.kernel import Netns
from course.kernel import netns as kernel_netns
from course.labs import topology
from course.roles import UnknownRole, resolve
from course.runs import PREFIX, RunRecord, load_runs, remove_state_dir
from course.topology import Cluster

DEFAULT_TIMEOUT = 30.0
# What nbgrader leaves in a released solution cell; in a %%ns cell bash would only say
# "syntax error near unexpected token", so the magic says what it means instead.
NBGRADER_STUB = "raise NotImplementedError()"

_RUNS: dict[str, Cluster] = {}  # this kernel's run of each lab
_current: Cluster | None = None


class NoRun(LookupError):
    """No lab run in this kernel yet: the setup cell has not been run."""


class ShellCellFailed(RuntimeError):
    """A `%%ns` cell ended with a non-zero exit status or ran out of time."""


# --- the setup cell --------------------------------------------------------------------------------
def start_lab(lab: str, **overrides: Any) -> Cluster:
    """Build `lab`'s cluster and make it the current run (safe to run again).

    `overrides` change the lab's topology (`course.labs.LAB_TOPOLOGIES`), e.g. `nodes=2`.
    """
    global _current
    gone = reap_leftovers(lab)
    if gone:
        print(f"removed {_runs(gone)} of {lab} from {_kernels(gone)}")
    earlier = _forget_own_runs(lab)
    if earlier:
        print(f"started {lab} afresh: removed this kernel's earlier run {', '.join(earlier)}")
    cluster = Cluster(lab, **{**topology(lab), **overrides}).build()
    _RUNS[lab] = _current = cluster
    shell = _ipython()
    if shell is not None:
        _setup_ipython(shell)
    return cluster


def current_run() -> Cluster:
    """The cluster the last `start_lab` built in this kernel (what `%%ns` cells enter)."""
    if _current is None or not _current.built:
        raise NoRun("no lab is running in this kernel: run the notebook's setup cell first")
    return _current


def reap_leftovers(lab: str) -> int:
    """Delete runs of `lab` whose owning kernel is gone; return how many.

    Detached runs (`k8snet up`) have no owner to lose and stay; so do runs of another
    live kernel (the same lab open twice) and runs under another K8SNET_NS_PREFIX.
    """
    count = 0
    for rec in load_runs():
        if _mine_to_reap(rec, lab) and not rec.owner_alive():
            _delete_run(rec)
            count += 1
    return count


def _mine_to_reap(rec: RunRecord, lab: str) -> bool:
    return rec.lab == lab and not rec.detached and rec.prefix.startswith(PREFIX + "-")


def _forget_own_runs(lab: str) -> list[str]:
    """Tear down this kernel's earlier runs of `lab`; return their prefixes."""
    removed = []
    previous = _RUNS.pop(lab, None)
    if previous is not None and previous.built:
        previous.destroy()
        removed.append(previous.prefix)
    for rec in load_runs():  # e.g. built by an older setup cell with Cluster(...) directly
        if _mine_to_reap(rec, lab) and rec.owned_by(os.getpid()):
            _delete_run(rec)
            removed.append(rec.prefix)
    return removed


def _delete_run(rec: RunRecord) -> None:
    for name in kernel_netns.list_netns(rec.prefix + "-"):
        Netns(name).delete()
    remove_state_dir(rec.prefix)  # daemon files, CNI reservations: they go with the run
    rec.path.unlink(missing_ok=True)


def _runs(n: int) -> str:
    return f"{n} leftover run" + ("" if n == 1 else "s")


def _kernels(n: int) -> str:
    return "a kernel that was restarted" if n == 1 else "kernels that were restarted"


# --- shell cells -------------------------------------------------------------------------------------
def namespace_of(role: str) -> tuple[str, RunRecord]:
    """The namespace name of `role` in the current run (UnknownRole lists the roles)."""
    record = current_run().record
    return resolve(record, role), record


def sh(
    role: str, script: str, timeout: float = DEFAULT_TIMEOUT, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run `script` with bash inside `role`'s namespace of the current run; capture output.

    Like `subprocess.run`: `check=True` raises CalledProcessError on a non-zero exit, and a
    script still running after `timeout` seconds is stopped and raises TimeoutExpired.
    """
    name, record = namespace_of(role)
    out: list[str] = []
    err: list[str] = []
    status = run_script(name, script, record, role, timeout, out.append, err.append)
    if status is None:
        raise subprocess.TimeoutExpired(["%%ns", role], timeout, "".join(out), "".join(err))
    done = subprocess.CompletedProcess([role, script], status, "".join(out), "".join(err))
    if check:
        done.check_returncode()
    return done


def run_script(
    name: str,
    script: str,
    record: RunRecord,
    role: str,
    timeout: float,
    on_stdout: Callable[[str], Any],
    on_stderr: Callable[[str], Any],
) -> int | None:
    """bash -c SCRIPT inside namespace `name`, output passed on as it comes.

    Returns the exit status, or None when the script was stopped after `timeout` seconds.
    Processes the script leaves in the background keep running (a server started with
    `&`); a helper thread keeps reading their output so they never write to a closed pipe.
    """
    env = {**os.environ, "RUN": record.prefix, "LAB": record.lab, "ROLE": role, "NS": name}
    proc = subprocess.Popen(
        [
            "nsenter",
            f"--net=/run/netns/{name}",
            "--",
            "bash",
            "--noprofile",
            "--norc",
            "-c",
            script,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: a timeout stops it and its children
        env=env,
    )
    _track_group(name, proc.pid)
    assert proc.stdout is not None and proc.stderr is not None
    pipes: dict[int, tuple[IO[bytes], Callable[[str], Any], codecs.IncrementalDecoder]] = {
        proc.stdout.fileno(): (proc.stdout, on_stdout, _decoder()),
        proc.stderr.fileno(): (proc.stderr, on_stderr, _decoder()),
    }
    try:
        finished = _pump(proc, pipes, time.monotonic() + timeout)
    except BaseException:  # an interrupted kernel: stop the script, then let it propagate
        _kill_group(proc.pid)
        proc.wait()
        raise
    if not finished:
        _kill_group(proc.pid)
        proc.wait()
        _pump(proc, pipes, time.monotonic() + 0.2)
        return None
    return proc.returncode


def _decoder() -> codecs.IncrementalDecoder:
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


def _pump(
    proc: subprocess.Popen[bytes],
    pipes: dict[int, tuple[IO[bytes], Callable[[str], Any], codecs.IncrementalDecoder]],
    deadline: float,
) -> bool:
    """Pass output on until bash exits (True) or the deadline passes (False)."""
    sel = selectors.DefaultSelector()
    for fd in pipes:
        sel.register(fd, selectors.EVENT_READ)
    exited_at: float | None = None
    try:
        while sel.get_map():
            now = time.monotonic()
            if proc.poll() is not None:
                exited_at = exited_at or now
                if now - exited_at > 0.1:  # bash is done; what is left is background jobs'
                    break
            elif now > deadline:
                return False
            for key, _ in sel.select(timeout=0.05):
                data = os.read(key.fd, 65536)
                _, emit, decoder = pipes[key.fd]
                if not data:
                    sel.unregister(key.fd)
                    continue
                emit(decoder.decode(data))
        remaining = [pipes[fd][0] for fd in sel.get_map()]
        if remaining:
            threading.Thread(target=_drain, args=(remaining,), daemon=True).start()
        try:  # the pipes may close before bash exits (`exec >&-; sleep 60`)
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
        return True
    finally:
        sel.close()


def _drain(pipes: list[IO[bytes]]) -> None:
    """Read (and drop) what background jobs of a finished shell cell still print."""
    sel = selectors.DefaultSelector()
    for pipe in pipes:
        sel.register(pipe, selectors.EVENT_READ)
    while sel.get_map():
        for key, _ in sel.select():
            if not os.read(key.fd, 65536):
                sel.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]


def _kill_group(pgid: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# --- the %%ns magic ------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="%%ns", add_help=False, exit_on_error=False)
    parser.add_argument("role")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    return parser


def ns_magic(line: str, cell: str) -> None:
    """%%ns ROLE [--timeout S]: run the cell with bash inside ROLE's namespace."""
    from IPython.core.error import UsageError

    try:
        args = _parser().parse_args(shlex.split(line))
    except (argparse.ArgumentError, SystemExit, ValueError):
        raise UsageError("usage: %%ns ROLE [--timeout SECONDS]   e.g. %%ns node1") from None
    try:
        name, record = namespace_of(args.role)
    except (NoRun, UnknownRole) as exc:
        raise UsageError(str(exc)) from None
    if NBGRADER_STUB in cell.splitlines():  # a released exercise cell, not written yet
        raise ShellCellFailed(
            f"{args.role}: this exercise cell still holds its placeholder; "
            "replace it with your commands (keep the %%ns line)"
        )
    status = run_script(
        name, cell, record, args.role, args.timeout, _writer(sys.stdout), _writer(sys.stderr)
    )
    if status is None:
        print(
            f"stopped after {args.timeout:g} s (a command waited too long; "
            "give it a limit such as ping -c 1 -W 1, or use %%ns ROLE --timeout S)",
            file=sys.stderr,
        )
        raise ShellCellFailed(f"{args.role}: timed out after {args.timeout:g} s")
    if status != 0:
        raise ShellCellFailed(f"{args.role}: exit status {status}")


def _writer(stream: IO[str]) -> Callable[[str], None]:
    def write(text: str) -> None:
        stream.write(text)
        stream.flush()

    return write


# --- processes started by a cell: stopped when the same cell runs again ----------------------------
_cell_key: str | None = None
_cell_procs: dict[str, list[tuple[Netns, subprocess.Popen[Any]]]] = {}
_cell_groups: dict[str, list[tuple[str, int]]] = {}


def _on_popen(ns: Netns, proc: subprocess.Popen[Any]) -> None:
    if _cell_key is not None:
        _cell_procs.setdefault(_cell_key, []).append((ns, proc))


def _track_group(name: str, pgid: int) -> None:
    if _cell_key is not None:
        _cell_groups.setdefault(_cell_key, []).append((name, pgid))


def _before_cell(info: Any) -> None:
    """IPython pre_run_cell: stop what this same cell started the last time it ran.

    A cell is known by its id (JupyterLab sends one) or, without one, by its text.
    """
    global _cell_key
    _cell_key = getattr(info, "cell_id", None) or getattr(info, "raw_cell", None)
    if _cell_key is None:
        return
    stopped = []
    for ns, proc in _cell_procs.pop(_cell_key, []):
        if proc.poll() is None:
            ns.stop(proc)
            stopped.append(f"pid {proc.pid} in {ns.name}")
    for name, pgid in _cell_groups.pop(_cell_key, []):
        stopped += [f"pid {pid} in {name}" for pid in _stop_group_in(name, pgid)]
    if stopped:
        what = "process" if len(stopped) == 1 else "processes"
        print(f"stopped {len(stopped)} {what} this cell started last time ({', '.join(stopped)})")


def _stop_group_in(name: str, pgid: int) -> list[int]:
    """Kill the processes of group `pgid` that still live in namespace `name`.

    Checking the namespace as well as the group makes sure a reused process id never
    makes us kill anything but what the cell left behind.
    """
    try:
        inode = os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return []  # the namespace is gone, and its processes with it
    killed = []
    for pid in kernel_netns.pids_by_netns().get(inode, []):
        try:
            if os.getpgid(pid) == pgid:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        except ProcessLookupError:
            continue
    return killed


# --- quiet errors --------------------------------------------------------------------------------------
_QUIET: dict[type[BaseException], Callable[[BaseException], str]] = {
    ShellCellFailed: lambda exc: str(exc),
}


def quiet_errors(exc_type: type[BaseException], render: Callable[[BaseException], str]) -> None:
    """Show `exc_type` as the one line `render(exc)` instead of a traceback.

    The cell still fails (the kernel reports an error, so "Run all" stops and nbgrader
    scores the cell 0); only the traceback wall into course code is gone.
    """
    _QUIET[exc_type] = render
    shell = _ipython()
    if shell is not None:
        _install_quiet(shell)


def _install_quiet(shell: Any) -> None:
    shell.set_custom_exc(tuple(_QUIET), _show_quietly)


def _show_quietly(
    shell: Any, etype: type[BaseException], value: BaseException, tb: Any, tb_offset: Any = None
) -> list[str]:
    render = next(r for cls, r in _QUIET.items() if isinstance(value, cls))
    stb = [f"\x1b[0;31m{etype.__name__}\x1b[0m: {render(value)}"]
    shell._showtraceback(etype, value, stb)  # ipykernel: an `error` output, one line
    return stb


# --- IPython wiring ------------------------------------------------------------------------------------
def _ipython() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _setup_ipython(shell: Any) -> None:
    """Load %%ns, the quiet errors and the per-cell process tracking (once per kernel)."""
    shell.register_magic_function(ns_magic, magic_kind="cell", magic_name="ns")
    _install_quiet(shell)
    if _before_cell not in shell.events.callbacks["pre_run_cell"]:
        shell.events.register("pre_run_cell", _before_cell)
    if _on_popen not in kernel_netns.POPEN_HOOKS:
        kernel_netns.POPEN_HOOKS.append(_on_popen)


def load_ipython_extension(shell: Any) -> None:
    """`%load_ext course.notebook`: the magic without building a lab (e.g. after `k8snet up`)."""
    _setup_ipython(shell)
