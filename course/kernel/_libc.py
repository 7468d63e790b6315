"""The four system calls behind `ip netns`: unshare, setns, mount and umount2.

Python 3.11 has no `os.setns`, so we call libc through ctypes. `setns` moves only the
calling *thread*, which is what lets us build many namespaces from one process without
forking a helper per namespace (the slow part of most lab tools).
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace behind `fd`."""
    _check(_libc.setns(fd, CLONE_NEWNET), "setns")


def unshare_net() -> None:
    """Give the calling thread a brand-new, empty network namespace."""
    _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")


def bind_mount(src: str, dst: str) -> None:
    _check(_libc.mount(src.encode(), dst.encode(), None, MS_BIND, None), f"mount {dst}")


def make_shared_mountpoint(path: str) -> None:
    """Turn `path` into a shared mount point, as `ip netns add` does for /run/netns.

    Shared propagation lets a namespace mounted later be seen from other mount
    namespaces (for example a process started by `ip netns exec`).
    """
    if _libc.mount(b"none", path.encode(), None, MS_SHARED | MS_REC, None) == 0:
        return
    bind_mount(path, path)
    _check(_libc.mount(b"none", path.encode(), None, MS_SHARED | MS_REC, None), "make-shared")


def umount_detach(path: str) -> None:
    _check(_libc.umount2(path.encode(), MNT_DETACH), f"umount {path}")
