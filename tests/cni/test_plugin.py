"""The course bridge plugin in real namespaces, called by the course runtime.

What ADD builds (bridge, veth, addresses, routes, gateway, hairpin), real pings, CHECK
against prevResult, DEL's idempotence, and every bad input answered with the spec's error
code and nothing left half-built.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from course.cni.runtime import Attachment, PluginError, Runtime
from course.kernel import Netns
from course.kernel.netns import entered_path
from tests.cni.conftest import attach, conflist, node_veths, reservations

PLUGIN = "k8snet-bridge"


def ping(src: Netns, dst: str) -> bool:
    return src.run(["ping", "-c1", "-W1", dst], check=False).returncode == 0


@pytest.fixture(scope="module")
def two_pods(
    runtime: Runtime, state: Path, new_pod: Callable[[], Netns]
) -> tuple[Netns, Netns, dict, dict]:
    a, b = new_pod(), new_pod()
    ra = runtime.add(conflist(state), attach(a))
    rb = runtime.add(conflist(state), attach(b))
    return a, b, ra, rb


def test_add_builds_the_bridge_veth_addresses_and_routes(node: Netns, two_pods: tuple) -> None:
    a, _b, ra, _rb = two_pods
    names = [i["name"] for i in ra["interfaces"]]
    assert names[0] == "cni0" and names[1].startswith("veth") and names[2] == "eth0"
    assert ra["interfaces"][2]["sandbox"] == str(a.path)
    assert ra["ips"] == [{"address": "10.244.1.2/24", "gateway": "10.244.1.1", "interface": 2}]
    assert a.addresses("eth0") == ["10.244.1.2/24"]
    assert any(r["dst"] == "default" and r["gateway"] == "10.244.1.1" for r in a.routes())
    assert node.addresses("cni0") == ["10.244.1.1/24"]
    host = node.link(names[1])
    assert host["master"] == node.index("cni0") and host["kind"] == "veth"
    assert node.bridge_port_flags(names[1])["hairpin"] is True
    assert node.sysctl("net.ipv4.ip_forward") == "1"
    assert ra["interfaces"][0]["mac"] == node.link("cni0")["mac"]


def test_pods_reach_each_other_and_the_node(node: Netns, two_pods: tuple) -> None:
    a, b, _ra, rb = two_pods
    assert ping(a, rb["ips"][0]["address"].split("/")[0])
    assert ping(node, "10.244.1.2") and ping(b, "10.244.1.1")


def test_check_passes_then_fails_when_the_interface_is_gone(
    runtime: Runtime, state: Path, new_pod: Callable[[], Netns]
) -> None:
    pod = new_pod()
    runtime.add(conflist(state), attach(pod))
    runtime.check(conflist(state), attach(pod))
    pod.delete_link("eth0")
    with pytest.raises(PluginError) as err:
        runtime.check(conflist(state), attach(pod))
    assert "eth0 not found" in str(err.value)
    runtime.delete(conflist(state), attach(pod))


def test_check_fails_when_the_default_route_is_gone(
    runtime: Runtime, state: Path, new_pod: Callable[[], Netns]
) -> None:
    pod = new_pod()
    runtime.add(conflist(state), attach(pod))
    pod.del_route("0.0.0.0/0")
    with pytest.raises(PluginError, match=r"route 0\.0\.0\.0/0 via 10\.244\.1\.1 is missing"):
        runtime.check(conflist(state), attach(pod))
    runtime.delete(conflist(state), attach(pod))


def test_second_add_of_the_same_interface_fails_and_leaks_nothing(
    runtime: Runtime, node: Netns, state: Path, new_pod: Callable[[], Netns]
) -> None:
    pod = new_pod()
    runtime.add(conflist(state), attach(pod))
    veths, held = node_veths(node), reservations(state)
    with pytest.raises(PluginError) as err:
        runtime.add(conflist(state), Attachment("other-id", str(pod.path)))
    assert "already exists" in err.value.msg
    assert node_veths(node) == veths and reservations(state) == held
    runtime.delete(conflist(state), attach(pod))


def test_del_releases_the_address_and_repeats_safely(
    runtime: Runtime, node: Netns, state: Path, new_pod: Callable[[], Netns]
) -> None:
    pod = new_pod()
    result = runtime.add(conflist(state), attach(pod))
    ip = result["ips"][0]["address"].split("/")[0]
    assert ip in reservations(state)
    runtime.delete(conflist(state), attach(pod))
    assert ip not in reservations(state)
    assert not pod.has_link("eth0") and result["interfaces"][1]["name"] not in node_veths(node)
    runtime.delete(conflist(state), attach(pod))  # again: still success


def test_del_after_the_namespace_is_gone_releases_the_address(
    runtime: Runtime, state: Path, new_pod: Callable[[], Netns]
) -> None:
    pod = new_pod()
    ip = runtime.add(conflist(state), attach(pod))["ips"][0]["address"].split("/")[0]
    pod.delete()  # a node reboot: the namespace (and the veth) are gone
    runtime.delete(conflist(state), attach(pod))
    assert ip not in reservations(state)
    runtime.delete(conflist(state), Attachment(pod.name, "", "eth0"))  # no CNI_NETNS at all


# --- bad input: the spec's codes, a message naming the field, nothing half-built ----------------
def test_bad_input_gets_the_spec_codes(
    runtime: Runtime, state: Path, new_pod: Callable[[], Netns], plugin_dir: Path
) -> None:
    pod = new_pod()
    conf = runtime.request(conflist(state), conflist(state)["plugins"][0], attach(pod), None)
    base = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": str(pod.path),
        "CNI_IFNAME": "eth0",
        "CNI_PATH": f"{plugin_dir}:/usr/lib/cni",
    }

    cases = [
        ({}, "{not json", 6, "unmarshalling"),
        ({}, json.dumps(dict(conf, cniVersion="9.9.9")), 1, "incompatible CNI versions"),
        ({}, json.dumps(dict(conf, cniVersion="one")), 6, "cniVersion"),
        ({"CNI_NETNS": ""}, json.dumps(conf), 4, "CNI_NETNS"),
        ({"CNI_IFNAME": "a-very-long-ifname"}, json.dumps(conf), 4, "CNI_IFNAME"),
        ({}, json.dumps({k: v for k, v in conf.items() if k != "name"}), 7, "name"),
        ({}, json.dumps(dict(conf, ipam={"type": "host-locl"})), 7, "ipam.type"),
    ]
    for extra, stdin, code, word in cases:
        obj = _exec_env(runtime, {**base, **extra}, stdin)
        assert obj["code"] == code, (extra, stdin, obj)
        assert word in obj["msg"] + obj.get("details", ""), obj
    assert not pod.has_link("eth0") and not reservations(state, "k8s-pod-network-x")


def _exec_env(runtime: Runtime, env: dict[str, str], stdin: str) -> dict:
    """Call the plugin with exactly this environment (inputs the runtime itself refuses)."""
    assert runtime.netns is not None
    exe = runtime.find_plugin(PLUGIN)
    with entered_path(runtime.netns):
        proc = subprocess.run([str(exe)], input=stdin, env=env, capture_output=True, text=True)
    assert proc.returncode == 1, proc
    return json.loads(proc.stdout)


def test_failed_add_leaves_no_veth_and_no_reservation(
    runtime: Runtime, node: Netns, state: Path, new_pod: Callable[[], Netns]
) -> None:
    """IPAM succeeds, then the plugin fails (a route it cannot add): everything is undone."""
    pod = new_pod()
    conf = conflist(state)
    conf["plugins"][0]["ipam"]["routes"] = [{"dst": "10.9.0.0/16", "gw": "192.0.2.1"}]
    veths, held = node_veths(node), reservations(state)
    with pytest.raises(PluginError, match=r"route 10\.9\.0\.0/16"):
        runtime.add(conf, attach(pod))
    assert node_veths(node) == veths, "a veth was left behind"
    assert reservations(state) == held, "the address is still reserved"
    assert not pod.has_link("eth0")


def test_missing_ipam_binary_leaves_nothing(
    runtime: Runtime, node: Netns, state: Path, new_pod: Callable[[], Netns]
) -> None:
    pod = new_pod()
    conf = conflist(state)
    conf["plugins"][0]["ipam"]["type"] = "no-such-ipam"
    veths = node_veths(node)
    with pytest.raises(PluginError) as err:
        runtime.add(conf, attach(pod))
    assert err.value.code == 7 and "ipam.type" in err.value.msg
    assert node_veths(node) == veths and not pod.has_link("eth0")


def test_version(runtime: Runtime) -> None:
    out = runtime.version(PLUGIN)
    assert out["cniVersion"] == "1.0.0" and "1.0.0" in out["supportedVersions"]
