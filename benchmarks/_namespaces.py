"""Every benchmark's namespaces live under one prefix and are gone however the run ends.

Why a module of its own: a benchmark is a long script run from a terminal or under `timeout`,
so it ends by Ctrl+C (SIGINT), SIGTERM or SIGHUP at least as often as normally. Python's
default for SIGTERM and SIGHUP kills the process without running `finally` blocks or atexit
hooks, which left `knl-bench-kp-...` namespaces on the host. Here:

- `bench_prefix()` names one prefix per run, under K8SNET_NS_PREFIX (so `k8snet down --all`
  and the test suite's prefix isolation see it like any lab run);
- `clean_up_on_exit(prefix)` turns SIGTERM and SIGHUP into SystemExit (SIGINT raises
  KeyboardInterrupt, and is noted for `run`), so the benchmark's own `with`/`finally` teardown runs, and registers an
  atexit sweep that deletes whatever namespace under the prefix is still there (a half-made
  one, say, when the signal landed between `ip netns add` and the bookkeeping).

course.topology.Cluster has its own SIGTERM handler; it destroys its clusters and then calls
the handler installed here, so both cooperate in either order.
"""

from __future__ import annotations

import atexit
import os
import secrets
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

from course.kernel import Netns, list_netns
from course.runs import PREFIX, RUN_DIR

EXIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def bench_prefix(name: str) -> str:
    """`<K8SNET_NS_PREFIX>-bench<name><4 hex>`: one run of one benchmark, no other."""
    return f"{PREFIX}-bench{name}{secrets.token_hex(2)}"


def stop_inheritors(prefix: str) -> list[int]:
    """SIGKILL every other process whose environment has K8SNET_NS_PREFIX=`prefix`...

    ...which is what a benchmark that exports its prefix hands down to the tools it runs:
    nbgrader starts kernels in sessions of their own, so a killed benchmark does not take
    them down, and a kernel left running would make new namespaces after the sweep.
    """
    marker = f"K8SNET_NS_PREFIX={prefix}".encode()
    stopped = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as handle:
                found = marker in handle.read().split(b"\0")
            if found:
                os.kill(int(entry.name), signal.SIGKILL)
                stopped.append(int(entry.name))
        except OSError:
            continue
    return stopped


def sweep(prefix: str) -> list[str]:
    """Stop what inherited `prefix`, delete every namespace (and run record) under it."""
    stop_inheritors(prefix)
    removed = []
    for name in list_netns(prefix):
        Netns(name).delete()
        removed.append(name)
    for record in RUN_DIR.glob(f"{prefix}*.json") if RUN_DIR.is_dir() else []:
        record.unlink(missing_ok=True)
    return removed


_received: list[int] = []


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def run(main: Callable[..., int | None], *args: object) -> NoReturn:
    """`sys.exit(main(*args))`, but never 0 after a Ctrl+C.

    A KeyboardInterrupt raised while Python runs a weakref callback or a `__del__` is printed
    ("Exception ignored in ...") and dropped: the benchmark then ran on to the end and
    reported success (seen in CI). The signal handler notes every SIGINT, so it is not lost.
    """
    try:
        code = main(*args) or 0
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    if _received and not code:
        print("interrupted (the Ctrl+C was dropped inside a finalizer)", file=sys.stderr)
        code = 128 + _received[0]
    sys.exit(code)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds the stack: `finally` blocks and context managers tear down first.
    signal.signal(signum, signal.SIG_IGN)  # a second signal must not interrupt the teardown
    raise SystemExit(128 + signum)


def clean_up_on_exit(prefix: str) -> None:
    """Make sure nothing under `prefix` outlives this process, however it ends (but SIGKILL)."""

    def final_sweep() -> None:
        left = sweep(prefix)
        if left:
            print(f"cleanup: removed {len(left)} namespace(s) under {prefix}", file=sys.stderr)

    atexit.register(final_sweep)
    for sig in EXIT_SIGNALS:
        signal.signal(sig, _exit_on_signal)
    signal.signal(signal.SIGINT, _interrupt)
