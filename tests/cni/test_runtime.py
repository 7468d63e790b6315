"""The runtime's side of the protocol: conflists, requests, the cache, and plugins that
break the rules (wrong exit code, no error object, invalid result, hanging)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from course.cni import skel
from course.cni.errors import CniError
from course.cni.runtime import (
    Attachment,
    ConfigError,
    PluginTimeout,
    ProtocolError,
    Runtime,
    load_conflist,
)
from course.cni.schema import validate_result
from course.kernel import Netns
from course.topology import Cluster
from tests.cni.conftest import attach, conflist


def fake(plugin: str) -> dict:
    return {"cniVersion": "1.0.0", "name": "fake", "plugins": [{"type": plugin}]}


def test_load_conflist_names_the_bad_field() -> None:
    with pytest.raises(ConfigError, match="not JSON"):
        load_conflist("{")
    with pytest.raises(ConfigError, match="'name'"):
        load_conflist({"cniVersion": "1.0.0", "plugins": [{"type": "x"}]})
    with pytest.raises(ConfigError, match="'cniVersion'"):
        load_conflist({"cniVersion": "2.0.0", "name": "n", "plugins": [{"type": "x"}]})
    with pytest.raises(ConfigError, match="'plugins'"):
        load_conflist({"cniVersion": "1.0.0", "name": "n", "type": "bridge"})


def test_request_adds_name_version_runtime_config_and_prev_result() -> None:
    conf = {
        "cniVersion": "1.0.0",
        "name": "net",
        "plugins": [{"type": "portmap", "capabilities": {"portMappings": True}, "x": 1}],
    }
    att = Attachment("c", "/run/netns/p", capability_args={"portMappings": [1], "bandwidth": 2})
    req = Runtime.request(conf, conf["plugins"][0], att, {"cniVersion": "1.0.0"})
    assert req == {
        "type": "portmap",
        "x": 1,
        "name": "net",
        "cniVersion": "1.0.0",
        "runtimeConfig": {"portMappings": [1]},
        "prevResult": {"cniVersion": "1.0.0"},
    }


def test_schema_names_each_problem() -> None:
    good = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/x"}],
        "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 0}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {},
    }
    assert validate_result(good, "1.0.0", ("interfaces", "ips")) == []
    bad = dict(good, cniVersion="0.4.0", ips=[{"address": "10.0.0.2", "interface": 3}])
    problems = " | ".join(validate_result(bad, "1.0.0"))
    assert "cniVersion is '0.4.0'" in problems
    assert "ips[0].address '10.0.0.2' must be an IP with a prefix" in problems
    assert "ips[0].interface 3 must index the interfaces list" in problems
    assert "'interfaces' is missing" in " ".join(
        validate_result({"cniVersion": "1.0.0"}, "1.0.0", ("interfaces",))
    )


def test_skel_checks_the_call_like_libcni() -> None:
    base = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c",
        "CNI_NETNS": "/x",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/p",
    }
    conf = b'{"cniVersion": "1.0.0", "name": "n", "type": "t"}'
    cases = [
        ({"CNI_COMMAND": "NOPE"}, conf, 4, "CNI_COMMAND"),
        ({"CNI_IFNAME": ""}, conf, 4, "CNI_IFNAME"),
        ({"CNI_IFNAME": "eth0:1"}, conf, 4, "CNI_IFNAME"),
        ({"CNI_CONTAINERID": "-bad"}, conf, 4, "CNI_CONTAINERID"),
        ({}, b"[1]", 6, "JSON object"),
        ({"CNI_COMMAND": "CHECK"}, conf.replace(b"1.0.0", b"0.3.1"), 1, "CHECK"),
    ]
    for extra, stdin, code, word in cases:
        with pytest.raises(CniError) as err:
            skel.parse_call({**base, **extra}, stdin)
        assert err.value.code == code and word in str(err.value), (extra, err.value)


def test_error_text_with_exit_0_is_a_protocol_error(
    runtime: Runtime, new_pod: Callable[[], Netns]
) -> None:
    with pytest.raises(ProtocolError, match="exited 0 but stdout is not JSON") as err:
        runtime.add(fake("exit0-error"), attach(new_pod()))
    assert "error: something went wrong" in str(err.value) and "CNI_COMMAND=ADD" in str(err.value)


def test_failure_without_error_object_is_a_protocol_error(
    runtime: Runtime, new_pod: Callable[[], Netns]
) -> None:
    with pytest.raises(ProtocolError, match="without an error object") as err:
        runtime.add(fake("silent-fail"), attach(new_pod()))
    assert "it broke" in str(err.value)  # the plugin's stderr is shown


def test_result_without_ips_is_refused(runtime: Runtime, new_pod: Callable[[], Netns]) -> None:
    with pytest.raises(ProtocolError, match="'ips' is missing"):
        runtime.add(fake("no-ips"), attach(new_pod()))


def test_version_without_supported_versions(runtime: Runtime) -> None:
    with pytest.raises(ProtocolError, match="supportedVersions"):
        runtime.version("bad-version")


def test_hanging_plugin_is_cut(
    node: Netns, plugin_dir: Path, state: Path, new_pod: Callable[[], Netns]
) -> None:
    rt = Runtime(node.path, [plugin_dir], state / "cache", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(PluginTimeout, match=r"did not finish within 0\.5 s"):
        rt.add(fake("hang"), attach(new_pod()))
    assert time.monotonic() - started < 3


def test_missing_plugin_and_check_before_add(
    runtime: Runtime, state: Path, new_pod: Callable[[], Netns]
) -> None:
    with pytest.raises(ConfigError, match="'no-such' not found"):
        runtime.add(fake("no-such"), attach(new_pod()))
    with pytest.raises(ConfigError, match="only allowed after a successful ADD"):
        runtime.check(conflist(state, net="never-added"), attach(new_pod()))


def test_plugins_run_in_the_node_namespace_never_the_hosts(
    runtime: Runtime, node: Netns, state: Path, new_pod: Callable[[], Netns]
) -> None:
    pod = new_pod()
    result = runtime.add(conflist(state, net="where"), attach(pod))
    host_veth = result["interfaces"][1]["name"]
    assert node.has_link(host_veth)
    assert host_veth not in os.listdir("/sys/class/net")  # the machine's own namespace
    runtime.delete(conflist(state, net="where"), attach(pod))


def test_cluster_builds_pods_through_cni() -> None:
    from course.podnet.cni import run_dir

    with Cluster("sandbox", nodes=1, pods_per_node=2, pod_network="cni", underlay=False) as c:
        a, b = c.pod("a"), c.pod("b")
        assert (a.ip, b.ip) == ("10.244.1.2", "10.244.1.3")
        assert a.host_ifname and c.node(1).ns.link(a.host_ifname)["kind"] == "veth"
        assert a.ns.run(["ping", "-c1", "-W1", b.ip], check=False).returncode == 0
        state = run_dir(c.node(1))
        assert (state / "node1" / "networks" / "k8s-pod-network" / "10.244.1.2").exists()
    assert not state.exists()


def test_runtime_refuses_bad_input_with_the_spec_codes(
    runtime: Runtime, state: Path, new_pod: Callable[[], Netns]
) -> None:
    """Like libcni: a bad conflist or attachment is refused before any plugin runs, with
    the spec's code and a message naming the field."""
    pod = new_pod()
    good = conflist(state, net="refused")
    calls = len(runtime.calls)
    cases: list[tuple[Any, Attachment, int, str]] = [
        ("{not json", attach(pod), 6, "not JSON"),
        (dict(good, cniVersion="9.9.9"), attach(pod), 1, "'cniVersion'"),
        ({k: v for k, v in good.items() if k != "name"}, attach(pod), 7, "'name'"),
        (good, attach(pod, "a-very-long-ifname"), 4, "CNI_IFNAME 'a-very-long-ifname' is 18"),
        (good, attach(pod, "eth0:1"), 4, "CNI_IFNAME"),
        (good, Attachment("", str(pod.path)), 4, "CNI_CONTAINERID"),
        (good, Attachment("c1", ""), 4, "CNI_NETNS"),
        (fake("no-such"), attach(pod), 7, "'no-such' not found"),
    ]
    for conf, att, code, word in cases:
        with pytest.raises(ConfigError) as err:
            runtime.add(conf, att)
        assert err.value.code == code and word in str(err.value), (conf, att, str(err.value))
        assert f"CNI error {code}" in str(err.value)
    assert len(runtime.calls) == calls  # refused before any plugin ran
    assert not pod.has_link("eth0")


def test_faulty_plugin_exit_0_on_error_is_caught_by_the_runtime(
    runtime: Runtime, plugin_dir: Path, state: Path, new_pod: Callable[[], Netns]
) -> None:
    """course.cni.faulty's "exit-0-on-error" (not drawn in break/fix: a working scenario
    shows no failing call): a failure printed as text with exit 0 is a protocol error."""
    from course.cni.faulty import install_faulty

    install_faulty(plugin_dir, "exit-0-on-error", "exit0-bridge")
    conf = conflist(state, plugin_type="exit0-bridge", net="exit0")
    conf["plugins"][0]["ipam"]["type"] = "no-such-ipam"
    pod = new_pod()
    with pytest.raises(ProtocolError, match="exited 0 but stdout is not JSON") as err:
        runtime.add(conf, attach(pod))
    assert "error: failed to find IPAM plugin 'no-such-ipam'" in str(err.value)
    assert not pod.has_link("eth0")


def test_cluster_builds_pods_through_a_given_plugin_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kubelet-like step with another plugin: Debian's Go bridge, then tuning."""
    from course.podnet import cni

    monkeypatch.setattr(cni, "PLUGIN_TYPE", "bridge")
    monkeypatch.setattr(cni, "CHAIN", [{"type": "tuning", "sysctl": {"net.core.somaxconn": "512"}}])
    with Cluster("sandbox", nodes=1, pods_per_node=2, pod_network="cni", underlay=False) as c:
        a, b = c.pod("a"), c.pod("b")
        assert (a.ip, b.ip) == ("10.244.1.2", "10.244.1.3")
        assert a.ns.sysctl("net.core.somaxconn") == "512"  # the chain's second plugin ran
        assert a.ns.run(["ping", "-c1", "-W1", b.ip], check=False).returncode == 0
        cached = cni.runtime(c.node(1)).cached_result(cni.conflist(c.node(1)), cni.attachment(a))
        assert cached is not None and cached["interfaces"][0]["name"] == "cni0"
        assert not (cni.run_dir(c.node(1)) / "bin" / "bridge").exists()  # Debian's, from CNI_PATH
