"""Delegating address management to an IPAM plugin (spec section 4), e.g. `host-local`.

The main plugin does not pick addresses. It finds the executable named by `ipam.type` in
the `CNI_PATH` directories and runs it with the *same* environment and the *whole* request
configuration on stdin. For ADD the IPAM plugin answers with `ips` (address + gateway),
`routes` and `dns`; DEL releases the reservation; CHECK verifies it.
"""

from __future__ import annotations

import json
import os
import select
import time

from course.cni import errors

TYPE_CHECKING = False  # see course.cni.types
if TYPE_CHECKING:
    from typing import Any

    from course.cni.skel import CmdArgs

DELEGATE_TIMEOUT = 10.0


def find_in_path(plugin: str, cni_path: str) -> str:
    """The first executable `plugin` in the `:`-separated CNI_PATH (libcni's FindInPath)."""
    dirs = [d for d in cni_path.split(":") if d]
    if not plugin or "/" in plugin:
        raise errors.CniError(
            errors.INVALID_NETWORK_CONFIG, f"field 'ipam.type' {plugin!r} is not a plugin name"
        )
    for folder in dirs:
        candidate = os.path.join(folder, plugin)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise errors.CniError(
        errors.INVALID_NETWORK_CONFIG,
        f"failed to find IPAM plugin {plugin!r} (field 'ipam.type') in CNI_PATH {dirs}",
    )


def ipam_type(args: CmdArgs) -> str:
    ipam = args.conf.get("ipam")
    if not isinstance(ipam, dict) or not ipam.get("type"):
        raise errors.CniError(
            errors.INVALID_NETWORK_CONFIG, "field 'ipam.type' is missing: which IPAM plugin?"
        )
    return str(ipam["type"])


def delegate(args: CmdArgs, command: str) -> dict[str, Any] | None:
    """Run the IPAM plugin for `command` with our own call's environment and stdin."""
    exe = find_in_path(ipam_type(args), args.path)
    env = {**os.environ, **args.env(), "CNI_COMMAND": command}
    code, raw = run(exe, env, args.stdin, DELEGATE_TIMEOUT)
    if code is None:
        raise errors.CniError(
            errors.TRY_AGAIN_LATER, f"IPAM plugin {exe} did not answer {command} in time"
        )
    out = raw.decode(errors="replace").strip()
    if code != 0:
        raise _delegate_error(exe, command, out, code)
    if command != "ADD":
        return None
    try:
        result = json.loads(out)
    except ValueError:
        raise errors.CniError(
            errors.DECODING_FAILURE, f"IPAM plugin {exe} printed no JSON result for ADD: {out!r}"
        ) from None
    if not isinstance(result, dict) or not result.get("ips"):
        raise errors.CniError(errors.INTERNAL, "IPAM plugin returned missing IP config")
    return result


def run(exe: str, env: dict[str, str], stdin: bytes, timeout: float) -> tuple[int | None, bytes]:
    """Start `exe` with `stdin`, collect its stdout; its stderr goes to ours (the spec's advice).

    (exit code, stdout); exit code None when it was killed after `timeout` seconds.
    `posix_spawn` instead of `subprocess`, which would cost this plugin ~15 ms to import.
    """
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.posix_spawn(
        exe,
        [exe],
        env,
        file_actions=[(os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1)],
    )
    os.close(in_r)
    os.close(out_w)
    os.write(in_w, stdin)  # a request configuration is a few kB: fits the pipe buffer
    os.close(in_w)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([out_r], [], [], left)[0]:
                os.kill(pid, 9)  # SIGKILL (importing `signal` costs every call ~3 ms)
                os.waitpid(pid, 0)
                return None, b"".join(chunks)
            data = os.read(out_r, 65536)
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(out_r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks)


def _delegate_error(exe: str, command: str, out: str, code: int) -> errors.CniError:
    """Pass the delegate's own error object on, so the runtime sees host-local's words."""
    try:
        obj = json.loads(out)
        return errors.CniError(
            int(obj.get("code", errors.INTERNAL)),
            f"IPAM {os.path.basename(exe)} {command}: {obj.get('msg', '')}",
            str(obj.get("details", "")),
        )
    except (ValueError, AttributeError, TypeError):
        return errors.CniError(
            errors.INTERNAL, f"IPAM {os.path.basename(exe)} {command} failed (exit {code})", out
        )
