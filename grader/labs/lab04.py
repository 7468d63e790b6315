"""Checks of lab 04 "write a CNI plugin": the grader is the container runtime.

For the plugin exercises the grader builds its own bench inside the learner's run (a node
namespace `<prefix>-chkXXXX-node` and pod namespaces next to it, plus a private host-local
dataDir), runs the learner's plugin file (`/run/k8s-netlabs/state/<prefix>/cni/bin/my-bridge`)
through `course.cni.runtime` exactly as containerd would (CNI_* environment, the request
configuration on stdin, inside the node's namespace, 5 s per call), checks each result
against the spec's schema, sends real packets between the pods and the node, and runs DEL
and CHECK. The bench is deleted afterwards; the learner's own pods are never touched.

Graded in `k8snet grade`'s sandbox, the plugin file is learner code, so the bench lives
inside the submission's sandbox and every plugin call runs there (`grader.inside`: the
kernel's user, mount, PID and network namespaces, its capabilities): the plugin sees the
sandbox's files only, never the gradebook or the answer keys. Only the verdict is decided
here. Without a sandbox (`k8snet check`: the learner's own machine) it runs as before.

A failure shows the exact call (environment and stdin), the plugin's stdout, stderr and
exit code, what the spec requires, and a hint.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from course.cni.learner import PLUGIN_NAME, reservations
from course.cni.runtime import (
    DEBIAN_PLUGIN_DIR,
    Attachment,
    CNIError,
    ConfigError,
    PluginCall,
    PluginError,
    ProtocolError,
    Runtime,
    bridge_conflist,
    run_state,
)
from course.faults.lab04 import CATALOGUE, NETWORK, OUTSIDE, PODS, leaked
from course.kernel import KernelError, Netns
from grader import breakfix, inside, journey
from grader.labs import Check, CheckContext, Lab
from grader.labs.common import Failed, fail, judged, question
from grader.verdict import Verdict

LAB_ID = "04-cni-plugin"
GATEWAY = "10.244.1.1"
CALL_TIMEOUT = 5.0
LEAK_RANGE = ("10.244.1.240", "10.244.1.242")  # three addresses
LEAK_ROUNDS = 4  # on 3 addresses a leaking DEL makes the 4th ADD fail


# --- where the learner's code runs: the sandbox, when grading has one -------------------------
def where(path: str | Path) -> str:
    """`path` as the plugin sees it: inside the submission's sandbox, or as is without one."""
    sandbox = inside.current()
    return sandbox.inside(path) if sandbox else str(path)


def lab_reservations(data_dir: Path, network: str) -> dict[str, str]:
    """host-local's reservations (IP -> container id) in `data_dir`, a folder the
    submission writes; in a sandbox read without following its symlinks
    (course.cni.learner.read_folder)."""
    return reservations(data_dir, network)


class SandboxRuntime(Runtime):
    """The CNI runtime, with every plugin started inside the submission's sandbox.

    Paths (CNI_PATH, CNI_NETNS, the node namespace) are the sandbox's own names; the result
    cache the runtime trusts for DEL and CHECK stays on the grading side.
    """

    def __init__(
        self,
        sandbox: inside.Sandbox,
        netns: str,
        plugin_dirs: list[str],
        cache_dir: Path,
        timeout: float,
    ) -> None:
        super().__init__(netns, plugin_dirs, cache_dir, timeout)
        self.sandbox = sandbox

    def find_plugin(self, plugin_type: str) -> Path:
        for folder in self.plugin_dirs:
            candidate = f"{folder.rstrip('/')}/{plugin_type}"
            if "/" not in plugin_type and self.sandbox.is_executable(candidate):
                return Path(candidate)
        raise ConfigError(
            f"plugin type {plugin_type!r} not found: no executable {plugin_type} in "
            f"CNI_PATH {':'.join(self.plugin_dirs)} (symlinks are not followed when grading)"
        )

    def _start(self, exe: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.sandbox.argv([str(exe)], netns=self.netns),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **env},
            start_new_session=True,  # nsenter and the plugin share it: a timeout kills both
            cwd="/",
        )


# --- the bench: a private node and pods inside the learner's run ------------------------------
class Bench:
    """A node namespace, pods on demand, and a runtime running the learner's plugin there."""

    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.sandbox = inside.current()
        self.tag = f"chk{secrets.token_hex(2)}"
        self.plugin_dir = run_state(ctx.prefix) / "bin"
        self.state = run_state(ctx.prefix) / self.tag
        # sandboxed, the cache DEL and CHECK trust is kept out of the submission's reach
        self.cache = self.state / "cache"
        if self.sandbox:
            self.cache = Path(tempfile.mkdtemp(prefix="k8snet-cni-cache-"))
        self.namespaces: list[Netns] = []
        self.node = self._netns("node")
        self.node.sysctl("net.ipv4.ip_forward", 0)
        self.node.add_address("lo", f"{OUTSIDE}/32")  # outside the pod subnet
        dirs = [where(self.plugin_dir), str(DEBIAN_PLUGIN_DIR)]
        if self.sandbox:
            node = where(self.node.path)
            self.runtime = SandboxRuntime(self.sandbox, node, dirs, self.cache, CALL_TIMEOUT)
        else:
            self.runtime = Runtime(self.node.path, dirs, self.cache, CALL_TIMEOUT)

    def _netns(self, role: str) -> Netns:
        name = f"{self.ctx.prefix}-{self.tag}-{role}"
        if self.sandbox is None:
            ns = Netns.create(name)
        else:  # made inside, so it belongs to the sandbox (the plugin may enter it)
            made = self.sandbox.run(["ip", "netns", "add", name])
            if made.returncode != 0:
                raise KernelError(f"ip netns add {name} in the sandbox: {made.stderr.strip()}")
            ns = Netns(name)
        self.namespaces.append(ns)
        ns.up("lo")
        ns.sysctl("net.ipv4.conf.all.rp_filter", 0)
        return ns

    def pod(self, name: str) -> Netns:
        return self._netns(name)

    def conflist(self, network: str = "grader-net", **ipam: Any) -> dict[str, Any]:
        data_dir = where(self.state / "networks")
        conf = bridge_conflist(1, data_dir, plugin_type=PLUGIN_NAME, name=network)
        conf["plugins"][0]["ipam"].update(ipam)
        return conf

    def reservations(self, network: str = "grader-net") -> dict[str, str]:
        return lab_reservations(self.state / "networks", network)

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            ns.delete()  # also in a sandbox: unlinking the name there unmounts it
        if self.sandbox is None:
            shutil.rmtree(self.state, ignore_errors=True)
            return
        self.sandbox.run(["rm", "-rf", "--", where(self.state)])
        shutil.rmtree(self.cache, ignore_errors=True)


@contextmanager
def bench(ctx: CheckContext) -> Iterator[Bench]:
    plugin = run_state(ctx.prefix) / "bin" / PLUGIN_NAME
    sandbox = inside.current()
    found = sandbox.is_executable(sandbox.inside(plugin)) if sandbox else plugin.is_file()
    if not found:
        raise fail(
            "there is no plugin file to run",
            sent=f"looked for {where(plugin)}",
            observed="no such file",
            expected="your plugin, written by the cell after your exercise (lab.write_plugin)",
            hint="run your exercise cell, then the cell that writes the plugin file",
        )
    b = Bench(ctx)
    try:
        yield b
    finally:
        b.close()


def attach(pod: Netns, ifname: str = "eth0", container_id: str | None = None) -> Attachment:
    return Attachment(container_id or pod.name.rsplit("-", 1)[-1], where(pod.path), ifname)


# --- describing calls ------------------------------------------------------------------------
def _sent(call: PluginCall | None, what: str) -> str:
    if call is None:
        return what
    env = " ".join(f"{k}={v}" for k, v in call.env.items())
    return f"{what}: {env} {PLUGIN_NAME} <<< {call.stdin or '(empty stdin)'}"


def _observed(call: PluginCall | None, extra: str = "") -> str:
    if call is None:
        return extra
    status = "killed after timeout" if call.timed_out else f"exit {call.exit_code}"
    text = (
        f"{status}; stdout: {call.stdout.strip() or '(empty)'}; "
        f"stderr: {_tail(call.stderr) or '(empty)'}"
    )
    return f"{extra} {text}".strip()


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def call_failed(exc: CNIError, summary: str, what: str, expected: str, hint: str) -> Failed:
    first = str(exc).splitlines()[0]
    return fail(
        summary,
        sent=_sent(exc.call, what),
        observed=_observed(exc.call, f"runtime: {first}."),
        expected=expected + (f" (the spec: {exc.spec})" if exc.spec else ""),
        hint=hint,
    )


def add(b: Bench, conf: dict[str, Any], att: Attachment, what: str) -> dict[str, Any]:
    """ADD through the runtime; any failure becomes a verdict naming the call."""
    try:
        return b.runtime.add(conf, att)
    except ProtocolError as exc:
        raise call_failed(
            exc,
            "ADD broke the CNI protocol",
            what,
            "exit 0 and one JSON result: cniVersion as asked, interfaces (the pod's with "
            "sandbox = CNI_NETNS), ips (address/prefix, gateway, interface index), routes",
            "compare your result with Debian's bridge result from exercise 0",
        ) from None
    except CNIError as exc:
        raise call_failed(
            exc,
            "ADD failed",
            what,
            "exit 0 and a result: a fresh pod namespace and a free address must work",
            "read the plugin's stdout/stderr above; run the same call from a shell cell",
        ) from None


def delete(b: Bench, conf: dict[str, Any], att: Attachment, what: str, hint: str) -> None:
    try:
        b.runtime.delete(conf, att)
    except CNIError as exc:
        raise call_failed(
            exc,
            f"DEL failed ({what})",
            what,
            "exit 0: DEL is best effort and idempotent; it succeeds when the namespace or the "
            "interface is already gone, and still releases the address",
            hint,
        ) from None


def ping(src: Netns, src_role: str, dst: str, why: str, hint: str) -> str:
    proc = src.run(["ping", "-c1", "-W1", dst], check=False, timeout=5)
    if proc.returncode != 0:
        route = src.route_get(dst)
        raise fail(
            f"{src_role} cannot reach {dst}",
            sent=f"ping -c1 {dst} from {src_role}",
            observed=f"{_tail(proc.stdout + proc.stderr, 2)}; route to {dst}: {route or 'none'}",
            expected=why,
            hint=hint,
        )
    return f"{src_role} -> {dst}: reply"


# --- exercise 0: Debian's bridge plugin, called by hand ----------------------------------------
def _lab_reservations(ctx: CheckContext) -> dict[str, str]:
    return lab_reservations(run_state(ctx.prefix) / "node1" / "networks", "k8s-pod-network")


def _manual_pod(ctx: CheckContext) -> Netns:
    pod = Netns(ctx.ns("pod-manual"))
    if not pod.exists():
        raise fail(
            "there is no pod-manual namespace",
            sent=f"looked for /run/netns/{pod.name}",
            observed="no such namespace",
            expected="the namespace the setup cell of exercise 0 creates",
            hint="run the cells of exercise 0 from the top",
        )
    return pod


@judged
def ex0_by_hand_add(ctx: CheckContext) -> Verdict:
    """pod-manual got eth0 with an address host-local reserved for container id `manual`."""
    pod = _manual_pod(ctx)
    held = {ip: who for ip, who in _lab_reservations(ctx).items() if who == "manual"}
    addrs = pod.addresses("eth0") if pod.has_link("eth0") else []
    if not addrs or not held:
        raise fail(
            "pod-manual has no interface from your ADD",
            sent="netlink: addresses of eth0 in pod-manual; host-local's files for 'manual'",
            observed=f"eth0 addresses: {addrs or 'none'}; reservations held by 'manual': "
            f"{sorted(held) or 'none'}",
            expected="eth0 with a 10.244.1.x/24 address that host-local reserved for "
            "CNI_CONTAINERID=manual",
            hint="CNI_COMMAND=ADD CNI_CONTAINERID=manual CNI_NETNS=<pod-manual path> "
            "CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni /usr/lib/cni/bridge < the config, run in node1",
        )
    ip = addrs[0].split("/")[0]
    node = Netns(ctx.ns("node1"))
    seen = ping(
        node, "node1", ip, f"an echo reply from pod-manual ({ip})", "is cni0 up with 10.244.1.1?"
    )
    return Verdict.ok(f"Debian's bridge gave pod-manual {addrs[0]}", observed=seen)


@judged
def ex0_by_hand_del(ctx: CheckContext) -> Verdict:
    """After DEL by hand: no eth0 in pod-manual, no reservation held by `manual`."""
    pod = _manual_pod(ctx)
    node = Netns(ctx.ns("node1"))
    if not node.has_link("cni0"):
        raise fail(
            "node1 has no cni0: no ADD ever ran",
            sent="netlink: links of node1",
            observed="no cni0",
            expected="cni0, made by the ADD of exercise 0 (DEL leaves the bridge in place)",
            hint="run the ADD cell first, then DEL",
        )
    held = [ip for ip, who in _lab_reservations(ctx).items() if who == "manual"]
    if pod.has_link("eth0") or held:
        raise fail(
            "DEL has not undone the ADD",
            sent="netlink: links of pod-manual; host-local's reservation files",
            observed=f"eth0 in pod-manual: {pod.has_link('eth0')}; still reserved: {held or 'none'}",
            expected="no eth0 and no address held by 'manual'",
            hint="the same call with CNI_COMMAND=DEL and the same config on stdin",
        )
    return Verdict.ok("DEL removed eth0 and released the address")


# --- exercise 1: VERSION and errors ----------------------------------------------------------------
@judged
def ex1_version_and_errors(ctx: CheckContext) -> Verdict:
    """VERSION lists supportedVersions; bad input gets a non-zero exit and an error object."""
    with bench(ctx) as b:
        try:
            out = b.runtime.version(PLUGIN_NAME)
        except CNIError as exc:
            raise call_failed(
                exc,
                "VERSION is not answered as the spec says",
                "VERSION",
                'exit 0 and {"cniVersion": "1.0.0", "supportedVersions": ["1.0.0", ...]}',
                "main(): for CNI_COMMAND=VERSION print that object and return",
            ) from None
        if "1.0.0" not in out["supportedVersions"]:
            raise fail(
                "VERSION does not list 1.0.0",
                sent=_sent(b.runtime.calls[-1], "VERSION"),
                observed=_observed(b.runtime.calls[-1]),
                expected='"1.0.0" in supportedVersions (the version this lab uses)',
                hint="supportedVersions lists every cniVersion the plugin accepts",
            )
        pod = b.pod("a")
        conf = b.conflist()
        request = b.runtime.request(conf, conf["plugins"][0], attach(pod), None)
        for stdin, code, what in (
            ("{this is not json", 6, "ADD with stdin that is not JSON"),
            (json.dumps(dict(request, cniVersion="9.9.9")), 1, "ADD with cniVersion 9.9.9"),
        ):
            call = b.runtime.exec(PLUGIN_NAME, "ADD", attach(pod), stdin)
            _expect_error(call, code, what)
        call = b.runtime.exec(PLUGIN_NAME, "ADD", attach(pod, ifname=""), json.dumps(request))
        _expect_error(call, 4, "ADD with CNI_IFNAME empty")
    return Verdict.ok("VERSION answers; bad input gets the spec's error objects (6, 1, 4)")


def _expect_error(call: PluginCall, code: int, what: str) -> None:
    try:
        obj = json.loads(call.stdout)
    except ValueError:
        obj = None
    proper = isinstance(obj, dict) and isinstance(obj.get("code"), int) and "msg" in obj
    if call.exit_code == 0 or not proper:
        raise fail(
            f"{what}: no proper error",
            sent=_sent(call, what),
            observed=_observed(call),
            expected=f'a non-zero exit AND {{"code": {code}, "msg": "..."}} on stdout: exit 0 '
            "means success to the runtime, whatever the text says",
            hint="main(): catch CNIError (and any other exception), print the error object as "
            "JSON, then sys.exit(1)",
        )
    if obj and obj["code"] != code:
        raise fail(
            f"{what}: error code {obj['code']}, the spec says {code}",
            sent=_sent(call, what),
            observed=_observed(call),
            expected=f"code {code}: 1 incompatible version, 4 bad CNI_* variables, 6 undecodable stdin",
            hint="check the environment, then parse stdin, then the version, in main()",
        )


# --- exercise 2a: ADD with a fixed address -----------------------------------------------------
@judged
def ex2_fixed_address(ctx: CheckContext) -> Verdict:
    """One pod through the runtime: the result's address is on CNI_IFNAME and answers the node.

    Any address passes (the stand-in IPAM's 10.244.1.50, or host-local's once 2b is done):
    what is graded is that the kernel holds what the result says.
    """
    with bench(ctx) as b:
        pod = b.pod("a")
        result = add(b, b.conflist(), attach(pod), "ADD pod a with CNI_IFNAME=eth0")
        address = result["ips"][0]["address"]
        have = pod.addresses("eth0") if pod.has_link("eth0") else None
        if not have or address not in have:
            call = _add_call(b, result)
            raise fail(
                "the result's address is not on the pod's interface",
                sent=_sent(call, "ADD pod a") + "; then netlink: addresses of eth0 in pod a",
                observed=f"eth0 in pod a: {'missing' if have is None else have or 'no address'};"
                f" the result says {address}. The ADD: {_observed(call)}",
                expected=f"{address} on eth0 inside the pod, and eth0 up: the runtime (and "
                "`kubectl get pod -o wide`) believe the result",
                hint="ip('addr', 'add', ADDRESS, 'dev', IFNAME, netns=netns) and "
                "ip('link', 'set', IFNAME, 'up', netns=netns)",
            )
        ip = address.split("/")[0]
        seen = ping(
            b.node,
            "node",
            ip,
            f"an echo reply from pod a ({ip}) across cni0",
            "isGateway: the gateway address with the subnet's prefix on cni0 (the node's "
            "route to the pods), cni0 up, and the node end of the veth in cni0 and up",
        )
    return Verdict.ok(f"ADD gave pod a {address} on eth0", observed=seen)


# --- exercise 2: ADD --------------------------------------------------------------------------------
@judged
def ex2_add(ctx: CheckContext) -> Verdict:
    """Two pods (eth0 and net1) through the runtime: interfaces, routes, bridge, packets."""
    with bench(ctx) as b:
        conf = b.conflist()
        a, c = b.pod("a"), b.pod("c")
        ra = add(b, conf, attach(a), "ADD pod a with CNI_IFNAME=eth0")
        rc = add(b, conf, attach(c, "net1"), "ADD pod c with CNI_IFNAME=net1")
        _honours_ifname(b, c, rc)
        ip_a, ip_c = (r["ips"][0]["address"].split("/")[0] for r in (ra, rc))
        _on_bridge(b, ra)
        trip = _followed_ping(b, {"node": b.node, "pod-a": a, "pod-c": c}, "pod-a", ip_c)
        seen = [
            f"pod a -> {ip_c}: reply",
            ping(
                b.node,
                "node",
                ip_a,
                "a reply from pod a",
                "cni0 needs the gateway address 10.244.1.1/24 (isGateway) and must be up",
            ),
        ]
        _default_route(b, a, "pod a", ra)
        seen.append(
            ping(
                a,
                "pod a",
                OUTSIDE,
                f"a reply from {OUTSIDE}, an address of the node outside the pod subnet",
                "add the routes IPAM returned",
            )
        )
        _second_add_fails(b, conf, a)
    return journey.attach(Verdict.ok("ADD builds working pods", observed="; ".join(seen)), trip)


def _followed_ping(b: Bench, roles: dict[str, Netns], src: str, dst: str) -> journey.Journey:
    """Pod to pod across cni0, followed hop by hop: the verdict shows where it went."""
    obs, trip = journey.ping(roles, src, dst, timeout=1.5)
    if not obs.ok or obs.reply is None or obs.reply.src != dst:
        failed = fail(
            f"{src} cannot reach {dst}",
            sent=f"{obs.sent} from {src}",
            observed=obs.describe(),
            expected=f"a reply from {dst} across cni0",
            hint="both node ends must be ports of cni0 (`ip link set VETH master cni0`), up",
        )
        raise journey.attach(failed, trip)
    return trip


def _honours_ifname(b: Bench, pod: Netns, result: dict[str, Any]) -> None:
    names = [link["name"] for link in pod.links() if link["name"] != "lo"]
    if "net1" not in names:
        raise fail(
            "ADD ignored CNI_IFNAME",
            sent=_sent(b.runtime.calls[-1], "ADD pod c with CNI_IFNAME=net1"),
            observed=f"interfaces in pod c: {names or 'none'}; result interfaces: "
            f"{[i.get('name') for i in result.get('interfaces', [])]}",
            expected="an interface named net1 in pod c: the runtime picks the name (a pod may "
            "have eth0, net1, ...), the plugin must use it",
            hint="take the pod's interface name from os.environ['CNI_IFNAME']",
        )


def _add_call(b: Bench, result: dict[str, Any]) -> PluginCall | None:
    """The ADD call that printed `result` (its env, stdin, stdout go into the verdict)."""
    return next((c for c in reversed(b.runtime.calls) if c.result is result), None)


def _on_bridge(b: Bench, result: dict[str, Any]) -> None:
    links = b.node.links()
    bridge = next((link for link in links if link["name"] == "cni0"), None)
    loose = [
        link["name"]
        for link in links
        if link["kind"] == "veth" and (bridge is None or link["master"] != bridge["index"])
    ]
    if bridge is None or loose:
        call = _add_call(b, result)
        raise fail(
            "the node end of a pod's veth is not a port of cni0",
            sent=_sent(call, "ADD pod a") + "; then netlink: links of the node after two ADDs",
            observed=f"cni0: {'present' if bridge else 'missing'}; veths outside cni0: "
            f"{loose}; the result said: {_names(result)}. The ADD: {_observed(call)}",
            expected="every node-side veth enslaved to cni0, so the pods share one L2 segment",
            hint="ip link set VETH master cni0 up",
        )


def _names(result: dict[str, Any]) -> str:
    return ", ".join(
        str(i.get("name")) + (" (in the pod)" if i.get("sandbox") else " (node)")
        for i in result.get("interfaces", [])
    )


def _default_route(b: Bench, pod: Netns, role: str, result: dict[str, Any]) -> None:
    routes = pod.routes()
    if not any(r["dst"] == "default" for r in routes):
        call = _add_call(b, result)
        raise fail(
            f"{role} has no default route",
            sent=_sent(call, f"ADD {role}") + f"; then netlink: routes of {role}",
            observed="routes: "
            + ("; ".join(_route(r) for r in routes) or "none")
            + f"; the result's routes: {result.get('routes')}. The ADD: {_observed(call)}",
            expected="default via 10.244.1.1: host-local returned routes [{dst: 0.0.0.0/0}], "
            "and a route without gw goes via the IP's gateway",
            hint="for each route in the IPAM result: ip route add DST via GW dev IFNAME (in the pod)",
        )


def _route(r: dict[str, Any]) -> str:
    return f"{r['dst']}" + (f" via {r['gateway']}" if r.get("gateway") else "") + f" dev {r['dev']}"


def _second_add_fails(b: Bench, conf: dict[str, Any], pod: Netns) -> None:
    held = b.reservations()
    try:
        b.runtime.add(conf, attach(pod, container_id="again"))
    except PluginError:
        if b.reservations() != held:
            raise fail(
                "a failed ADD kept an address",
                sent=_sent(b.runtime.calls[-1], "a second ADD for pod a's eth0"),
                observed=_observed(
                    b.runtime.calls[-1],
                    f"reservations before {sorted(held)}, after {sorted(b.reservations())}. ADD:",
                ),
                expected="nothing held after a failed ADD",
                hint="on failure after IPAM ADD, call IPAM DEL before reporting the error",
            ) from None
        return
    except CNIError as exc:
        raise call_failed(
            exc,
            "a second ADD of an existing interface did not fail properly",
            "a second ADD for pod a's eth0",
            "a non-zero exit and an error object",
            "check for CNI_IFNAME in the pod first",
        ) from None
    raise fail(
        "a second ADD of an existing interface succeeded",
        sent=_sent(b.runtime.calls[-1], "ADD again for pod a with CNI_IFNAME=eth0 (it exists)"),
        observed=_observed(b.runtime.calls[-1]),
        expected="an error: the spec says ADD must fail if CNI_IFNAME already exists in the pod",
        hint="before creating the veth, look for CNI_IFNAME in the pod and raise CNIError",
    )


# --- exercise 3: DEL --------------------------------------------------------------------------------
@judged
def ex3_del(ctx: CheckContext) -> Verdict:
    """DEL removes the veth and releases the address; repeats; works with the netns gone."""
    hint_gone = "if CNI_NETNS is empty or gone, skip the interface but still call IPAM DEL"
    with bench(ctx) as b:
        rounds = _leak_rounds(b)
        conf = b.conflist()
        a, c = b.pod("a"), b.pod("c")
        ra = add(b, conf, attach(a), "ADD pod a")
        add(b, conf, attach(c), "ADD pod c")
        delete(b, conf, attach(a), "DEL pod a", "delete CNI_IFNAME in the pod, then IPAM DEL")
        ip_a = ra["ips"][0]["address"].split("/")[0]
        host = ra["interfaces"][1]["name"] if len(ra.get("interfaces", [])) > 1 else None
        left = [
            x
            for x in (
                a.has_link("eth0") and "eth0 in pod a",
                host and b.node.has_link(host) and f"{host} on the node",
                ip_a in b.reservations() and f"{ip_a} reserved",
            )
            if x
        ]
        if left:
            raise fail(
                "DEL left things behind",
                sent=_sent(b.runtime.calls[-1], "DEL pod a"),
                observed=_observed(b.runtime.calls[-1], f"still there: {', '.join(left)}. DEL:"),
                expected="no veth (both ends) and no reservation after DEL",
                hint="ip link del CNI_IFNAME inside the pod removes both ends; then IPAM DEL",
            )
        delete(b, conf, attach(a), "DEL pod a again", "DEL must succeed when the interface is gone")
        ip_c = b.runtime.cached_result(conf, attach(c))["ips"][0]["address"].split("/")[0]  # type: ignore[index]
        c.delete()  # the pod's namespace is gone, e.g. after a node reboot
        delete(b, conf, attach(c), "DEL pod c after its namespace was deleted", hint_gone)
        if ip_c in b.reservations():
            raise fail(
                "DEL with the namespace gone did not release the address",
                sent=_sent(b.runtime.calls[-1], "DEL pod c (namespace deleted)"),
                observed=_observed(
                    b.runtime.calls[-1],
                    f"{ip_c} still reserved for {b.reservations()[ip_c]}. DEL:",
                ),
                expected="the address released: only IPAM knows it, and nobody else will free it",
                hint=hint_gone,
            )
    return Verdict.ok(
        "DEL cleans up, repeats, works with the namespace gone",
        observed=f"{rounds} ADD/DEL rounds on a 3-address range: no address leaked",
    )


def _leak_rounds(b: Bench) -> int:
    conf = b.conflist("leak-net", rangeStart=LEAK_RANGE[0], rangeEnd=LEAK_RANGE[1])
    for n in range(LEAK_ROUNDS):
        # a new pod each round: an interface DEL leaves behind is judged by its own verdict
        att = attach(b.pod(f"l{n}"), container_id=f"leak{n}")
        if n == 0:  # a plugin whose ADD fails is not leaking: say so
            add(b, conf, att, "ADD the first pod of the leak test")
            delete(b, conf, att, "DEL in the leak test", "IPAM DEL with the same env and stdin")
            continue
        try:
            b.runtime.add(conf, att)
        except CNIError as exc:
            raise fail(
                f"DEL leaks addresses: ADD failed after {n} pods on a 3-address range",
                sent=f"{n} rounds of ADD + DEL on range {LEAK_RANGE[0]}-{LEAK_RANGE[1]}, then "
                + _sent(exc.call, "ADD"),
                observed=_observed(exc.call, f"reserved: {b.reservations('leak-net')}."),
                expected="each DEL frees its address, so the range never runs out",
                hint="cmd_del must call IPAM DEL with the same env and stdin (same container id)",
            ) from None
        delete(b, conf, att, "DEL in the leak test", "IPAM DEL with the same env and stdin")
    return LEAK_ROUNDS


# --- exercise 4: CHECK ------------------------------------------------------------------------------
@judged
def ex4_check(ctx: CheckContext) -> Verdict:
    """CHECK passes on a healthy pod and fails once the pod's interface is deleted."""
    with bench(ctx) as b:
        conf = b.conflist()
        pod = b.pod("d")
        add(b, conf, attach(pod), "ADD pod d")
        try:
            b.runtime.check(conf, attach(pod))
        except CNIError as exc:
            raise call_failed(
                exc,
                "CHECK fails on a healthy pod",
                "CHECK right after ADD",
                "exit 0 and no output when the pod matches prevResult",
                "compare with prevResult's ips; call IPAM CHECK (host-local knows the reservation)",
            ) from None
        pod.delete_link("eth0")
        try:
            b.runtime.check(conf, attach(pod))
        except PluginError:
            return Verdict.ok("CHECK passes on a healthy pod and fails without its interface")
        except CNIError as exc:
            raise call_failed(
                exc,
                "CHECK did not report the missing interface properly",
                "CHECK after `ip link del eth0` in the pod",
                "a non-zero exit and an error object",
                "raise CNIError when CNI_IFNAME is missing",
            ) from None
        raise fail(
            "CHECK passed with the pod's interface deleted",
            sent=_sent(b.runtime.calls[-1], "CHECK after `ip link del eth0` in pod d"),
            observed=_observed(b.runtime.calls[-1]),
            expected="an error: CHECK verifies that what prevResult lists still exists",
            hint="look for CNI_IFNAME inside CNI_NETNS and for each prevResult ips[].address on it",
        )


# --- questions --------------------------------------------------------------------------------------
q1_del_namespace_gone = question(
    "q1",
    "b",
    "DEL must still release the address (IPAM keeps it in a file on the node, not in the "
    "namespace) and then succeed; the interface went away with the namespace.",
    "a: fail with code 3; b: release the address through IPAM and exit 0; c: exit 0 at once, "
    "there is nothing left to clean",
    evidence="the observe cell shows",
    hint="which part of a pod's network lives outside its namespace?",
    why={
        "a": "code 3 tells the runtime that no cleanup is needed, and that is not true: "
        "host-local's reservation lives in a file on the node and outlives the namespace. "
        "The spec wants DEL to clean up what it can and succeed when things are already gone.",
        "c": "the namespace took the pod's interfaces with it, but not the node's state: "
        "host-local keeps one file per reserved address on the node, so without an IPAM DEL "
        "that address is never handed out again.",
    },
)

q2_forgetful_del = question(
    "q2",
    "c",
    "every deleted pod keeps its address in host-local's files; with 3 addresses the 4th ADD "
    "fails with 'no IP addresses available'.",
    "a: ADD keeps working, addresses are reused when a namespace is deleted; b: ADD hands out "
    "a duplicate address; c: ADD fails once the range is used up",
    evidence="the observe cell shows",
    hint="run the observe cell: count the ADDs that worked",
    why={
        "a": "deleting a namespace frees nothing in IPAM: host-local forgets an address only "
        "when it gets a DEL for it, and this plugin never sends one, so every pod's file "
        "stays in host-local's directory.",
        "b": "host-local never hands out an address it still has a file for, so no duplicate "
        "is possible; the files that are never removed are what runs the range dry.",
    },
)


# --- break/fix: the mystery plugin ------------------------------------------------------------------
def mystery_probe(ctx: CheckContext) -> Verdict:
    """pod-x has eth0 and pod-y net1; they reach each other and, through their default
    routes, an address outside the subnet; nothing is held for pod-z. Symptoms only (what
    a runtime or a ping shows), never the kernel object at fault: finding it is the task."""
    try:
        return _mystery(ctx)
    except Failed as exc:
        return exc.verdict


def _mystery(ctx: CheckContext) -> Verdict:
    roles = breakfix.CtxRoles(ctx)
    try:
        for role in ("pod-x", "pod-y"):
            pod = roles[role]
            want = PODS[role]
            if not pod.has_link(want):
                names = [link["name"] for link in pod.links()]
                raise fail(
                    f"{role} has no {want}",
                    sent=f"netlink: links of {role}",
                    observed=f"links: {names}",
                    expected=f"{want}: the CNI_IFNAME its ADD asked for",
                    hint="",
                )
        x_ip = roles["pod-x"].addresses("eth0")[0].split("/")[0]
        obs, trip = journey.ping(ctx, "pod-y", x_ip, timeout=1.5)
        if not obs.ok:
            failed = fail(
                "pod-y cannot reach pod-x",
                sent=f"{obs.sent} from pod-y",
                observed=obs.describe(),
                expected="a reply from pod-x",
                hint="",
            )
            raise journey.attach(failed, trip)
        seen = [
            f"pod-y -> pod-x ({x_ip}): reply",
            ping(
                roles["pod-x"], "pod-x", OUTSIDE, f"a reply from {OUTSIDE} (outside the subnet)", ""
            ),
            ping(
                roles["pod-y"], "pod-y", OUTSIDE, f"a reply from {OUTSIDE} (outside the subnet)", ""
            ),
        ]
        stuck = leaked(roles)
        if stuck:
            raise fail(
                "an address is still held for a deleted pod",
                sent=f"read host-local's reservations of {NETWORK}",
                observed=f"held for pod-z (deleted): {stuck}",
                expected="addresses only for live pods: pod-x and pod-y",
                hint="",
            )
        done = Verdict.ok("pod-x and pod-y work as their ADD results say", observed="; ".join(seen))
        return journey.attach(done, trip)
    finally:
        roles.close()


LAB = Lab(
    id=LAB_ID,
    title="write a CNI plugin",
    checks=(
        Check("ex0-add", "check-ex0-add", 1, "exercise 0: ADD by hand", ex0_by_hand_add),
        Check("ex0-del", "check-ex0-del", 1, "exercise 0: DEL by hand", ex0_by_hand_del),
        Check(
            "ex1-version", "check-ex1", 2, "exercise 1: VERSION and errors", ex1_version_and_errors
        ),
        Check(
            "ex2-fixed",
            "check-ex2-fixed",
            1,
            "exercise 2a: ADD with a fixed address",
            ex2_fixed_address,
        ),
        Check("ex2-add", "check-ex2", 3, "exercise 2b: ADD with host-local", ex2_add),
        Check("ex3-del", "check-ex3", 3, "exercise 3: DEL", ex3_del),
        Check("ex4-check", "check-ex4", 2, "exercise 4: CHECK", ex4_check),
        Check(
            "q1-del-namespace-gone",
            "check-q1",
            1,
            "question 1: DEL without a namespace",
            q1_del_namespace_gone,
            answers=("q1",),
        ),
        Check(
            "q2-forgetful-del",
            "check-q2",
            1,
            "question 2: a DEL that forgets IPAM",
            q2_forgetful_del,
            answers=("q2",),
        ),
        Check(
            "breakfix",
            "check-breakfix",
            2,
            "break/fix: the mystery plugin",
            breakfix.check(CATALOGUE, mystery_probe),
        ),
    ),
    # the plugin must be the learner's: calling the course's plugin (course.cni.bridge,
    # skel, netlink, ...) from an exercise scores zero; the workbench helpers are allowed
    reference=("course.cni",),
    reference_allowed=("course.cni.learner",),
)
