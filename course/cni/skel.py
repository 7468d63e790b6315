"""The part every CNI plugin shares: read the call, dispatch, print the answer.

Like libcni's `pkg/skel`: the runtime starts the plugin with `CNI_*` environment variables
and the request configuration on stdin; `plugin_main` checks them in the same order and with
the same error codes as the reference plugins, then calls `cmd_add`, `cmd_del` or `cmd_check`.
A result goes to stdout with exit 0; a failure goes to stdout as the spec's error object
with exit 1. stderr is free-form log text.
"""

from __future__ import annotations

import json
import os
import sys

from course.cni import errors
from course.cni.types import (
    CURRENT_VERSION,
    SUPPORTED_VERSIONS,
    ifname_problem,
    valid_id,
    version_tuple,
)

TYPE_CHECKING = False  # no `typing`/`dataclasses` at run time: they cost every call ~10 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Command = Callable[["CmdArgs"], dict[str, Any] | None]

# Which variables each command needs (libcni's skel also requires CNI_PATH; the spec lists
# it as optional, but a plugin that delegates to IPAM cannot work without it).
REQUIRED_ENV = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "VERSION": (),
}


class CmdArgs:
    """One call, as the plugin sees it (libcni's `skel.CmdArgs`)."""

    def __init__(
        self,
        command: str,
        container_id: str,
        netns: str,
        ifname: str,
        args: str,
        path: str,
        stdin: bytes,
        conf: dict[str, Any],
    ) -> None:
        self.command, self.container_id, self.netns, self.ifname = (
            command,
            container_id,
            netns,
            ifname,
        )
        self.args, self.path, self.stdin, self.conf = args, path, stdin, conf

    @property
    def cni_version(self) -> str:
        return str(self.conf.get("cniVersion", "0.1.0"))

    def env(self) -> dict[str, str]:
        """The same CNI_* variables, for delegating to an IPAM plugin."""
        return {
            "CNI_COMMAND": self.command,
            "CNI_CONTAINERID": self.container_id,
            "CNI_NETNS": self.netns,
            "CNI_IFNAME": self.ifname,
            "CNI_ARGS": self.args,
            "CNI_PATH": self.path,
        }


def parse_call(environ: dict[str, str], stdin: bytes) -> CmdArgs:
    """Check the environment and stdin the way libcni's skel does; raise CniError if wrong."""
    command = environ.get("CNI_COMMAND", "")
    if command not in REQUIRED_ENV:
        raise errors.CniError(
            errors.INVALID_ENVIRONMENT_VARIABLES,
            f"unknown CNI_COMMAND: {command!r}"
            if command
            else "required env variables [CNI_COMMAND] missing",
        )
    missing = [k for k in REQUIRED_ENV[command] if not environ.get(k)]
    if missing:
        raise errors.CniError(
            errors.INVALID_ENVIRONMENT_VARIABLES,
            f"required env variables [{' '.join(missing)}] missing",
        )
    conf: dict[str, Any] = {}
    if command != "VERSION":
        try:
            conf = json.loads(stdin)
        except ValueError as exc:
            raise errors.CniError(
                errors.DECODING_FAILURE, f"error unmarshalling network config from stdin: {exc}"
            ) from None
        if not isinstance(conf, dict):
            raise errors.CniError(errors.DECODING_FAILURE, "stdin must be one JSON object")
    args = CmdArgs(
        command,
        environ.get("CNI_CONTAINERID", ""),
        environ.get("CNI_NETNS", ""),
        environ.get("CNI_IFNAME", ""),
        environ.get("CNI_ARGS", ""),
        environ.get("CNI_PATH", ""),
        stdin,
        conf,
    )
    if command != "VERSION":
        _validate(args)
    return args


def _validate(args: CmdArgs) -> None:
    if not valid_id(args.container_id):
        raise errors.CniError(
            errors.INVALID_ENVIRONMENT_VARIABLES,
            f"invalid characters in CNI_CONTAINERID {args.container_id!r}",
        )
    problem = ifname_problem(args.ifname)
    if problem:
        raise errors.CniError(
            errors.INVALID_ENVIRONMENT_VARIABLES, f"CNI_IFNAME {args.ifname!r} {problem}"
        )
    name = args.conf.get("name")
    if not isinstance(name, str) or not name:
        raise errors.CniError(errors.INVALID_NETWORK_CONFIG, "missing network name (field 'name')")
    version = args.conf.get("cniVersion", "0.1.0")
    try:
        parsed = version_tuple(version)
    except ValueError as exc:
        raise errors.CniError(errors.DECODING_FAILURE, f"field 'cniVersion': {exc}") from None
    if version not in SUPPORTED_VERSIONS:
        raise errors.CniError(
            errors.INCOMPATIBLE_CNI_VERSION,
            "incompatible CNI versions",
            f"config is {version!r} (field 'cniVersion'), plugin supports {list(SUPPORTED_VERSIONS)}",
        )
    if args.command == "CHECK" and parsed < (0, 4, 0):
        raise errors.CniError(
            errors.INCOMPATIBLE_CNI_VERSION,
            "config version does not allow CHECK",
            f"CHECK needs cniVersion 0.4.0 or later, the config says {version!r}",
        )


def version_info() -> dict[str, Any]:
    return {"cniVersion": CURRENT_VERSION, "supportedVersions": list(SUPPORTED_VERSIONS)}


def plugin_main(cmd_add: Command, cmd_del: Command, cmd_check: Command) -> None:
    """What `main()` of every plugin calls: one operation, then exit 0 or 1."""
    version = None
    try:
        stdin = sys.stdin.buffer.read()
    except OSError as exc:
        _fail(errors.CniError(errors.IO_FAILURE, f"error reading from stdin: {exc}"), None)
    try:
        args = parse_call(dict(os.environ), stdin)
        version = args.cni_version if args.command != "VERSION" else None
        if args.command == "VERSION":
            out: dict[str, Any] | None = version_info()
        else:
            handler = {"ADD": cmd_add, "DEL": cmd_del, "CHECK": cmd_check}[args.command]
            out = handler(args)
    except errors.CniError as exc:
        _fail(exc, version)
    except Exception as exc:  # any other failure is still reported as the spec says
        _fail(errors.CniError(errors.INTERNAL, str(exc) or type(exc).__name__), version)
    if out is not None:
        sys.stdout.write(json.dumps(out, indent=4))
        sys.stdout.flush()
    sys.exit(0)


def _fail(exc: errors.CniError, version: str | None) -> None:
    sys.stdout.write(exc.to_json(version))
    sys.stdout.flush()
    sys.exit(1)
