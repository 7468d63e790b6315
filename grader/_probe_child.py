"""What runs inside a probe process: enter a namespace, refresh Scapy's view, run a probe.

The forkserver imports Scapy and this module once (the caller's process never needs to); each probe is then a cheap fork
of a single-threaded process, so `setns` moves the whole probe process into the lab's
namespace, and Scapy's process-global interface and route tables describe that namespace.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from course.kernel import _libc


def enter(ns_path: str) -> None:
    fd = os.open(ns_path, os.O_RDONLY)
    try:
        _libc.setns(fd)
    finally:
        os.close(fd)
    import scapy.all  # noqa: F401  (free when the forkserver preloaded it; loud if it failed)
    from scapy.config import conf

    conf.ifaces.reload()
    conf.route.resync()


def main(
    ns_path: str,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    conn: Connection,
) -> None:
    try:
        enter(ns_path)
        conn.send(("ok", func(*args, **kwargs)))
    except BaseException as exc:  # report everything: the parent turns it into feedback
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))
    finally:
        conn.close()
