"""The course bridge plugin with one planted fault: the "mystery plugin" of lab 04's break/fix.

Each fault is a mistake real plugin authors make; each shows in results, in the kernel or
on the wire, never in a crash. `install_faulty(DIR, fault)` writes an executable that runs
`course.cni.bridge` with that one fault patched in. (Yes, you can read this file. Finding
the fault by running the plugin is the exercise; reading the answer here teaches less.)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from course.cni import bridge, skel
from course.cni.install import SOURCE_ROOT

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

FAULT_IDS = (
    "ignores-ifname",
    "no-default-route",
    "veth-not-on-bridge",
    "exit-0-on-error",
    "releases-wrong-address",
)


def _ignores_ifname() -> None:
    add = bridge.cmd_add

    def cmd_add(args: skel.CmdArgs) -> dict[str, Any]:
        args.ifname = "eth0"  # whatever the runtime asked for
        return add(args)

    bridge.cmd_add = cmd_add


def _no_default_route() -> None:
    gateways = bridge._gateways

    def no_routes(got: dict[str, Any], conf: bridge.NetConf) -> Any:
        ips, _routes = gateways(got, conf)
        return ips, []  # the IPAM routes are dropped on the floor

    bridge._gateways = no_routes


def _veth_not_on_bridge() -> None:
    setup = bridge.setup_veth

    def setup_veth(node: Any, br: Any, args: Any, pod_fd: int, hairpin: bool) -> Any:
        host = setup(node, br, args, pod_fd, hairpin)
        node.set_master(host.index, 0)  # `ip link set VETH nomaster`
        return host

    bridge.setup_veth = setup_veth


def _exit_0_on_error() -> None:
    def fail(exc: Any, version: str | None) -> None:
        sys.stdout.write(f"error: {exc}\n")  # text, and success as far as exit codes go
        sys.exit(0)

    skel._fail = fail


def _releases_wrong_address() -> None:
    delete = bridge.cmd_del

    def cmd_del(args: skel.CmdArgs) -> None:
        args.container_id = args.container_id + "-old"  # host-local finds no such holder
        delete(args)

    bridge.cmd_del = cmd_del


def _forgets_ipam() -> None:
    """Not a break/fix fault: question 2's plugin, whose DEL never calls IPAM."""
    delegate = bridge.ipam.delegate

    def no_del(args: skel.CmdArgs, command: str) -> Any:
        return None if command == "DEL" else delegate(args, command)

    bridge.ipam.delegate = no_del


PATCHES: dict[str, Callable[[], None]] = {
    "forgets-ipam": _forgets_ipam,
    "ignores-ifname": _ignores_ifname,
    "no-default-route": _no_default_route,
    "veth-not-on-bridge": _veth_not_on_bridge,
    "exit-0-on-error": _exit_0_on_error,
    "releases-wrong-address": _releases_wrong_address,
}

LAUNCHER = """#!{python} -IS
# A CNI bridge plugin with a planted fault (lab 04 break/fix). Generated; do not edit.
import sys
sys.path.append({root!r})
from course.cni.faulty import main
main({token!r})
"""


def _token(fault: str) -> str:
    """Not a secret, just not the fault's name in plain sight in the launcher."""
    return fault.encode().hex()


def main(token: str) -> None:
    fault = bytes.fromhex(token).decode()
    PATCHES[fault]()
    skel.plugin_main(
        lambda a: bridge.cmd_add(a), lambda a: bridge.cmd_del(a), lambda a: bridge.cmd_check(a)
    )


def install_faulty(directory: str | Path, fault: str, name: str = "mystery-bridge") -> Path:
    if fault not in PATCHES:
        raise KeyError(f"no fault {fault!r}; faults: {', '.join(FAULT_IDS)}")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    tmp = folder / f".{name}.tmp"
    tmp.write_text(
        LAUNCHER.format(python=sys.executable, root=str(SOURCE_ROOT), token=_token(fault))
    )
    os.chmod(tmp, 0o755)
    tmp.replace(target)
    return target
