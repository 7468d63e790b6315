"""A CNI runtime: what containerd (through libcni) does when the kubelet starts a pod.

    runtime = Runtime(node.ns.path, plugin_dirs=["/usr/lib/cni"], cache_dir=state / "cache")
    result = runtime.add(conflist, Attachment("pod-a", "/run/netns/knl-3fa2-node1-a"))
    runtime.check(conflist, attachment)
    runtime.delete(conflist, attachment)

- reads a network configuration list (`.conflist`): `name`, `cniVersion`, `plugins`;
- finds each plugin's `type` as an executable in the plugin directories (CNI_PATH);
- ADD runs the list in order, handing each plugin the previous result as `prevResult`;
  DEL runs it in reverse and CHECK in order, both with the cached final ADD result;
- checks every result against the spec's schema before believing it, and turns a plugin's
  error object (or a broken answer) into an exception that shows the exact call;
- runs every plugin **inside the node's network namespace** (the plugin's "host"), never
  in the machine's own namespace, and cuts a plugin that hangs after `timeout` seconds.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from course.cni import errors
from course.cni.schema import validate_result
from course.cni.types import SUPPORTED_VERSIONS, ifname_problem, valid_id, version_tuple
from course.kernel.netns import entered_path

DEBIAN_PLUGIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
DEFAULT_TIMEOUT = 10.0


def run_state(prefix: str) -> Path:
    """A run's CNI files: plugin dir `bin/`, host-local dataDirs, result caches.

    Inside the run's state folder (`course.runs.state_dir`), so they go with the run, also
    when `k8snet down` reaps a run whose process died.
    """
    from course.runs import state_dir

    return state_dir(prefix) / "cni"


# --- what the runtime tells the plugin, and what came back -------------------------------------
@dataclass
class Attachment:
    """One pod interface: libcni's RuntimeConf. The pair (container_id, ifname) names it."""

    container_id: str
    netns: str  # path of the pod's namespace; "" is allowed for DEL
    ifname: str = "eth0"
    args: dict[str, str] = field(default_factory=dict)  # CNI_ARGS, e.g. K8S_POD_NAME
    capability_args: dict[str, Any] = field(default_factory=dict)  # e.g. portMappings

    def cni_args(self) -> str:
        return ";".join(f"{k}={v}" for k, v in self.args.items())


@dataclass
class PluginCall:
    """One execution of one plugin: exactly what went in and what came out."""

    plugin: str
    path: str
    command: str
    env: dict[str, str]
    stdin: str
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    seconds: float = 0.0
    timed_out: bool = False
    result: dict[str, Any] | None = None  # an ADD's parsed, validated result

    def shell(self) -> str:
        """The same call typed in a shell inside the node's namespace."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        if not self.stdin:
            return f"{env} {self.path} </dev/null"
        return f"{env} {self.path} <<'EOF'\n{self.stdin}\nEOF"

    def describe(self) -> str:
        status = "killed after timeout" if self.timed_out else f"exit {self.exit_code}"
        return "\n".join(
            [
                f"call: {self.plugin} {self.command} ({status}, {self.seconds * 1000:.0f} ms)",
                "env: " + " ".join(f"{k}={v}" for k, v in self.env.items()),
                f"stdin: {self.stdin or '(empty)'}",
                f"stdout: {self.stdout.strip() or '(empty)'}",
                f"stderr: {self.stderr.strip() or '(empty)'}",
            ]
        )


class CNIError(Exception):
    """Base of everything the runtime raises; `call` is the plugin run that failed, if any.

    `code` is the spec's error code when there is one: a plugin's own, or the one the
    runtime gives a bad input it refuses before running anything (see ConfigError).
    """

    def __init__(
        self, message: str, call: PluginCall | None = None, spec: str = "", code: int | None = None
    ) -> None:
        super().__init__(message)
        self.call = call
        self.spec = spec  # what the spec requires, for learners
        self.code = code

    def __str__(self) -> str:
        parts = [self.args[0]]
        if self.spec:
            parts.append(f"the spec: {self.spec}")
        if self.call:
            parts.append(self.call.describe())
        return "\n".join(parts)


class ConfigError(CNIError):
    """Bad input the runtime refuses before it runs a plugin, with the spec's code:
    6 the conflist is not JSON, 1 a cniVersion this runtime does not speak, 7 a conflist
    that fails validation or names a plugin that is not installed, 4 an attachment whose
    CNI_CONTAINERID, CNI_NETNS or CNI_IFNAME would be invalid (libcni checks the same)."""

    def __init__(self, message: str, code: int = errors.INVALID_NETWORK_CONFIG) -> None:
        super().__init__(f"CNI error {code} ({errors.describe_code(code)}): {message}", code=code)


class PluginError(CNIError):
    """The plugin failed properly: non-zero exit and the spec's error object on stdout."""

    def __init__(self, call: PluginCall, code: int, msg: str, details: str) -> None:
        super().__init__(
            f"{call.plugin} {call.command} failed: CNI error {code} "
            f"({errors.describe_code(code)}): {msg}" + (f" ({details})" if details else ""),
            call,
            code=code,
        )
        self.msg, self.details = msg, details


class ProtocolError(CNIError):
    """The plugin broke the protocol: bad result, no error object, wrong exit code..."""


class PluginTimeout(ProtocolError):
    """The plugin did not finish in time and was killed (with everything it started)."""


# --- configuration -------------------------------------------------------------------------------
def load_conflist(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A network configuration list from a file, JSON text or dict, checked like libcni does."""
    if isinstance(source, dict):
        conf = source
    else:
        text = Path(source).read_text() if isinstance(source, Path) else source
        try:
            conf = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"the conflist is not JSON: {exc}", errors.DECODING_FAILURE) from None
    if not isinstance(conf, dict):
        raise ConfigError("a conflist is one JSON object")
    name = conf.get("name")
    if not valid_id(name):
        raise ConfigError(f"field 'name' {name!r} must be a network name like k8s-pod-network")
    version = conf.get("cniVersion")
    if version not in SUPPORTED_VERSIONS:
        raise ConfigError(
            f"field 'cniVersion' {version!r}: this runtime speaks {list(SUPPORTED_VERSIONS)}",
            errors.INCOMPATIBLE_CNI_VERSION,
        )
    plugins = conf.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise ConfigError("field 'plugins' must be a non-empty list (the .conflist format)")
    for i, plugin in enumerate(plugins):
        if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str):
            raise ConfigError(f"plugins[{i}] has no 'type' (the plugin's executable name)")
    return conf


def bridge_conflist(
    node_index: int,
    data_dir: str | Path,
    plugin_type: str = "bridge",
    name: str = "k8s-pod-network",
    chain: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The pod network of node N as flannel writes it: a bridge, host-local IPAM, maybe more.

    `dataDir` keeps host-local's reservations inside this run's state folder (its default,
    /var/lib/cni/networks, would be shared by every run on the machine).
    """
    from course.addressing import pod_cidr

    return {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": plugin_type,
                "bridge": "cni0",
                "isGateway": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "subnet": pod_cidr(node_index),
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(data_dir),
                },
            },
            *chain,
        ],
    }


def check_attachment(att: Attachment, command: str) -> None:
    """Refuse an attachment libcni would refuse, before any plugin runs (error code 4)."""
    problem = None
    if not valid_id(att.container_id):
        problem = f"CNI_CONTAINERID {att.container_id!r} must start with a letter or digit, then letters, digits, '_.-'"
    elif command != "DEL" and not att.netns:
        problem = f"CNI_NETNS is empty: {command} needs the pod's namespace path"
    else:
        why = ifname_problem(att.ifname)
        problem = f"CNI_IFNAME {att.ifname!r} {why}" if why else None
    if problem:
        raise ConfigError(problem, errors.INVALID_ENVIRONMENT_VARIABLES)


# --- the runtime -------------------------------------------------------------------------------
class Runtime:
    """libcni's CNIConfig, bound to one node: plugins run in `netns` (a namespace path)."""

    def __init__(
        self,
        netns: str | Path | None,
        plugin_dirs: Sequence[str | Path],
        cache_dir: str | Path,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.netns = str(netns) if netns else None  # None only for tests of bad input
        self.plugin_dirs = [str(d) for d in plugin_dirs]
        self.cache_dir = Path(cache_dir)
        self.timeout = timeout
        self.calls: list[PluginCall] = []

    # --- the three operations ------------------------------------------------------------
    def add(self, conflist: dict[str, Any], att: Attachment) -> dict[str, Any]:
        """ADD: the chain in order; the last result is cached and returned."""
        conf = load_conflist(conflist)
        check_attachment(att, "ADD")
        prev: dict[str, Any] | None = None
        for i, plugin in enumerate(conf["plugins"]):
            request = self.request(conf, plugin, att, prev)
            call = self.exec(plugin["type"], "ADD", att, json.dumps(request))
            require = ("interfaces", "ips") if i == 0 else ()
            prev = call.result = self._parse_result(call, conf["cniVersion"], require)
        assert prev is not None
        self._save_cache(conf, att, prev)
        return prev

    def delete(self, conflist: dict[str, Any], att: Attachment) -> None:
        """DEL: the chain in reverse, each plugin given the cached ADD result."""
        conf = load_conflist(conflist)
        check_attachment(att, "DEL")
        cached = self.cached_result(conf, att)
        for plugin in reversed(conf["plugins"]):
            request = self.request(conf, plugin, att, cached)
            call = self.exec(plugin["type"], "DEL", att, json.dumps(request))
            self._expect_success(call)
        self._cache_path(conf, att).unlink(missing_ok=True)

    def check(self, conflist: dict[str, Any], att: Attachment) -> None:
        """CHECK: the chain in order with the cached ADD result (never before ADD)."""
        conf = load_conflist(conflist)
        if version_tuple(conf["cniVersion"]) < (0, 4, 0):
            raise ConfigError(
                f"CHECK needs cniVersion 0.4.0 or later, not {conf['cniVersion']}",
                errors.INCOMPATIBLE_CNI_VERSION,
            )
        if conf.get("disableCheck"):
            return
        check_attachment(att, "CHECK")
        cached = self.cached_result(conf, att)
        if cached is None:
            raise ConfigError(
                f"no cached result for {conf['name']}/{att.container_id}/{att.ifname}: "
                "CHECK is only allowed after a successful ADD"
            )
        for plugin in conf["plugins"]:
            request = self.request(conf, plugin, att, cached)
            call = self.exec(plugin["type"], "CHECK", att, json.dumps(request))
            self._expect_success(call)

    def version(self, plugin_type: str, cni_version: str = "1.0.0") -> dict[str, Any]:
        """VERSION: which spec versions the plugin speaks."""
        att = Attachment("", "", "")
        call = self.exec(plugin_type, "VERSION", att, json.dumps({"cniVersion": cni_version}))
        out = self._json_stdout(call, "VERSION")
        if not isinstance(out.get("supportedVersions"), list) or not out["supportedVersions"]:
            raise ProtocolError(
                f"{plugin_type} VERSION printed no 'supportedVersions' list",
                call,
                spec='VERSION prints {"cniVersion": ..., "supportedVersions": ["0.4.0", "1.0.0"]}',
            )
        return out

    def picture(self, last: int | None = None) -> str:
        """The calls so far (or the `last` N) and what each ADD created, as text.

        ADD k8snet-bridge  pod-a/eth0  exit 0  112 ms
            node: cni0 86:2c:..  vethd2408964 da:38:..
            pod:  eth0 0a:d6:.. in /run/netns/..-pod-a  10.244.1.2/24 gw 10.244.1.1
            routes: 0.0.0.0/0
        """
        lines = [
            f"plugins run in {self.netns or 'this namespace'}, CNI_PATH {':'.join(self.plugin_dirs)}"
        ]
        prev_names: set[str] = set()
        for call in self.calls[-last:] if last else self.calls:
            who = f"{call.env.get('CNI_CONTAINERID', '')}/{call.env.get('CNI_IFNAME', '')}"
            status = "killed (timeout)" if call.timed_out else f"exit {call.exit_code}"
            lines.append(
                f"{call.command:7} {call.plugin:16} {who if call.command != 'VERSION' else '':28} "
                f"{status:8} {call.seconds * 1000:5.0f} ms"
            )
            if call.result is not None:
                if '"prevResult"' not in call.stdin:  # the first plugin of a chain
                    prev_names = set()
                lines += _picture_result(call.result, prev_names)
                prev_names = {i.get("name", "") for i in call.result.get("interfaces", [])}
            elif call.exit_code:
                lines.append(f"        {call.stdout.strip()[:200]}")
        return "\n".join(lines)

    # --- building blocks -----------------------------------------------------------------
    @staticmethod
    def request(
        conf: dict[str, Any], plugin: dict[str, Any], att: Attachment, prev: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The request configuration a plugin gets on stdin (libcni's buildOneConfig)."""
        req = {k: v for k, v in plugin.items() if k != "capabilities"}
        req["name"] = conf["name"]
        req["cniVersion"] = conf["cniVersion"]
        caps = plugin.get("capabilities") or {}
        runtime_config = {k: v for k, v in att.capability_args.items() if caps.get(k)}
        if runtime_config:
            req["runtimeConfig"] = runtime_config
        if prev is not None:
            req["prevResult"] = prev
        return req

    def find_plugin(self, plugin_type: str) -> Path:
        for folder in self.plugin_dirs:
            candidate = Path(folder) / plugin_type
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
        raise ConfigError(
            f"plugin type {plugin_type!r} not found: no executable {plugin_type} in "
            f"CNI_PATH {':'.join(self.plugin_dirs)}"
        )

    def exec(self, plugin_type: str, command: str, att: Attachment, stdin: str) -> PluginCall:
        """Run one plugin once, inside the node's namespace, and record the call."""
        exe = self.find_plugin(plugin_type)
        env = {"CNI_COMMAND": command}
        if command != "VERSION":
            env |= {
                "CNI_CONTAINERID": att.container_id,
                "CNI_NETNS": att.netns,
                "CNI_IFNAME": att.ifname,
                "CNI_ARGS": att.cni_args(),
            }
        env["CNI_PATH"] = ":".join(self.plugin_dirs)
        call = PluginCall(plugin_type, str(exe), command, env, stdin)
        self.calls.append(call)
        started = time.monotonic()
        proc = self._start(exe, env)
        try:
            out, err = proc.communicate(stdin.encode(), timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            call.timed_out = True
        call.seconds = time.monotonic() - started
        call.stdout = out.decode(errors="replace")
        call.stderr = err.decode(errors="replace")
        call.exit_code = proc.returncode
        if call.timed_out:
            raise PluginTimeout(
                f"{plugin_type} {command} did not finish within {self.timeout:g} s and was killed",
                call,
                spec="a plugin must answer and exit; the runtime waits a bounded time",
            )
        return call

    def _start(self, exe: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start the plugin inside the node's namespace, in a process group of its own.

        A runtime that must start it somewhere else (the grader's, inside a submission's
        sandbox) overrides this one method.
        """
        where = entered_path(self.netns) if self.netns else nullcontext()
        with where:  # a child forked from this thread starts in the node's namespace
            return subprocess.Popen(
                [str(exe)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **env},
                start_new_session=True,  # its own process group: a timeout kills the lot
            )

    def _error_object(self, call: PluginCall) -> CNIError:
        """What a non-zero exit means: the error object on stdout, or a protocol error."""
        try:
            obj = json.loads(call.stdout)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("code"), int) and "msg" in obj:
            return PluginError(call, obj["code"], str(obj["msg"]), str(obj.get("details", "")))
        return ProtocolError(
            f"{call.plugin} {call.command} exited {call.exit_code} without an error object on stdout",
            call,
            spec='a failing plugin exits non-zero AND prints {"code": N, "msg": "..."} on stdout',
        )

    def _expect_success(self, call: PluginCall) -> None:
        if call.exit_code != 0:
            raise self._error_object(call)

    def _json_stdout(self, call: PluginCall, what: str) -> dict[str, Any]:
        self._expect_success(call)
        try:
            out = json.loads(call.stdout)
        except ValueError:
            raise ProtocolError(
                f"{call.plugin} {what} exited 0 but stdout is not JSON",
                call,
                spec="on success a plugin prints its result as one JSON object on stdout; "
                "errors need a non-zero exit",
            ) from None
        if not isinstance(out, dict):
            raise ProtocolError(
                f"{call.plugin} {what} printed {type(out).__name__}, not an object", call
            )
        return out

    def _parse_result(
        self, call: PluginCall, version: str, require: tuple[str, ...]
    ) -> dict[str, Any]:
        result = self._json_stdout(call, "ADD")
        if "code" in result and "msg" in result and "interfaces" not in result:
            raise ProtocolError(
                f"{call.plugin} ADD printed an error object but exited 0",
                call,
                spec="exit 0 means success to the runtime; an error needs a non-zero exit",
            )
        problems = validate_result(result, version, require)
        if problems:
            raise ProtocolError(
                f"{call.plugin} ADD printed an invalid result: " + "; ".join(problems),
                call,
                spec="the result lists interfaces (with sandbox for the pod's), ips "
                "(address with prefix, interface index), routes, dns, and the requested cniVersion",
            )
        return result

    # --- the result cache (libcni keeps it under /var/lib/cni/results) ---------------------
    def _cache_path(self, conf: dict[str, Any], att: Attachment) -> Path:
        return self.cache_dir / "results" / f"{conf['name']}-{att.container_id}-{att.ifname}"

    def cached_result(self, conf: dict[str, Any], att: Attachment) -> dict[str, Any] | None:
        try:
            entry = json.loads(self._cache_path(conf, att).read_text())
        except (OSError, ValueError):
            return None
        result = entry.get("result")
        return result if isinstance(result, dict) else None

    def _save_cache(self, conf: dict[str, Any], att: Attachment, result: dict[str, Any]) -> None:
        path = self._cache_path(conf, att)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {
            "kind": "cniCacheV1",
            "containerId": att.container_id,
            "ifName": att.ifname,
            "networkName": conf["name"],
            "config": conf,
            "cniArgs": att.args,
            "capabilityArgs": att.capability_args,
            "result": result,
        }
        path.write_text(json.dumps(entry, indent=2))


def _picture_result(result: dict[str, Any], before: set[str]) -> list[str]:
    """What one ADD result says it created (interfaces new since the previous plugin's)."""
    interfaces = result.get("interfaces", [])
    ips = result.get("ips", [])
    node = [f"{i['name']} {i.get('mac', '')}" for i in interfaces if not i.get("sandbox")]
    pod = []
    for index, iface in enumerate(interfaces):
        if iface.get("sandbox"):
            addrs = [
                f"{ip['address']} gw {ip.get('gateway', '-')}"
                for ip in ips
                if ip.get("interface") == index
            ]
            pod.append(
                f"{iface['name']} {iface.get('mac', '')} in {iface['sandbox']}  {' '.join(addrs)}"
            )
    new = {i.get("name") for i in interfaces} - before
    if before and not new:
        return ["        (changed nothing in the result: passed prevResult on)"]
    out = []
    if node:
        out.append("        node: " + "  ".join(node))
    if pod:
        out.append("        pod:  " + "  ".join(pod))
    routes = [
        f"{r['dst']}" + (f" via {r['gw']}" if r.get("gw") else "") for r in result.get("routes", [])
    ]
    if routes:
        out.append("        routes: " + ", ".join(routes))
    return out


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
