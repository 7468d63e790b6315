"""Interop with Debian's reference plugins (containernetworking-plugins 1.1.1).

- the course runtime runs Debian's bridge + host-local + portmap chain: pods work;
- the course plugin chained with Debian's tuning and portmap works;
- the course plugin and Debian's bridge, given the same config on twin nodes, build the
  same devices, addresses and routes and print the same result apart from MACs and the
  random host veth name.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from course.cni.runtime import DEBIAN_PLUGIN_DIR, Runtime
from course.kernel import Netns
from course.topology import Cluster
from tests.cni.conftest import attach, conflist

PORTMAP = {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
TUNING = {"type": "tuning", "sysctl": {"net.core.somaxconn": "512"}}
MAPPING = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]


def ping(src: Netns, dst: str) -> bool:
    return src.run(["ping", "-c1", "-W1", dst], check=False).returncode == 0


def serve(pod: Netns, port: int = 80) -> None:
    pod.popen(
        ["python3", "-m", "http.server", str(port), "--bind", "0.0.0.0"],
        stdout=-3,  # subprocess.DEVNULL
        stderr=-3,
    )
    for _ in range(100):
        if f":{port:04X} " in pod.run(["cat", "/proc/net/tcp"]).stdout:
            return
        time.sleep(0.05)
    raise AssertionError("the test server did not start")


def http_get(src: Netns, host: str, port: int) -> str:
    code = (
        "import urllib.request,sys;"
        f"print(urllib.request.urlopen('http://{host}:{port}/', timeout=2).status)"
    )
    return src.run(["python3", "-c", code], check=False).stdout.strip()


def with_chain(state: Path, plugin: str, *chain: dict[str, Any]) -> dict[str, Any]:
    return conflist(state, plugin_type=plugin, chain=[copy.deepcopy(c) for c in chain])


def test_debian_bridge_host_local_portmap_chain(
    runtime: Runtime, node: Netns, state: Path, new_pod: Callable[[], Netns]
) -> None:
    conf = with_chain(state, "bridge", PORTMAP)
    conf["name"] = "debian-chain"
    a, b = new_pod(), new_pod()
    att_a = attach(a)
    att_a.capability_args = {"portMappings": MAPPING}
    ra = runtime.add(conf, att_a)
    rb = runtime.add(conf, attach(b))
    ip_a = ra["ips"][0]["address"].split("/")[0]
    assert ping(b, ip_a) and ping(node, rb["ips"][0]["address"].split("/")[0])
    serve(a)
    assert http_get(node, ra["ips"][0]["gateway"], 8080) == "200"  # portmap's DNAT
    assert "CNI-HOSTPORT-DNAT" in node.iptables_save("nat")
    # (no CHECK: Debian's portmap 1.1.1 fails CHECK on IPv4-only pods, looking for ip6tables
    # rules it never made: containernetworking/plugins#819)
    runtime.delete(conf, att_a)
    runtime.delete(conf, attach(b))
    assert "CNI-DN-" not in node.iptables_save("nat")


def test_course_plugin_chained_with_tuning_and_portmap(
    runtime: Runtime, node: Netns, state: Path, new_pod: Callable[[], Netns]
) -> None:
    conf = with_chain(state, "k8snet-bridge", TUNING, PORTMAP)
    conf["name"] = "course-chain"
    pod = new_pod()
    att = attach(pod)
    att.capability_args = {"portMappings": MAPPING}
    result = runtime.add(conf, att)
    assert pod.sysctl("net.core.somaxconn") == "512"  # tuning ran inside the pod
    picture = runtime.picture(last=3)
    assert "node: cni0" in picture and f"in {pod.path}  10.244.1." in picture
    assert picture.count("passed prevResult on") == 2  # tuning and portmap add no interface
    serve(pod)
    assert http_get(node, result["ips"][0]["gateway"], 8080) == "200"
    runtime.delete(conf, att)
    assert not pod.has_link("eth0")


# --- the course plugin next to Debian's bridge on the same config -------------------------------
@pytest.fixture(scope="module")
def twins(
    plugin_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[Netns, Netns, dict[str, Any]]]]:
    """Two nodes, one pod each: one built by the course plugin, one by Debian's."""
    with Cluster("sandbox", nodes=2, pod_network=None, underlay=False, cross_node=None) as c:
        out = {}
        for node, plugin in zip(c.nodes, ("k8snet-bridge", "bridge"), strict=True):
            state = tmp_path_factory.mktemp(plugin)
            rt = Runtime(node.ns.path, [plugin_dir, DEBIAN_PLUGIN_DIR], state / "cache")
            pod = c.netns(f"{node.name}-twin")
            conf = conflist(state, plugin_type=plugin)
            conf["plugins"][0]["ipam"]["subnet"] = "10.244.1.0/24"
            result = rt.add(conf, attach(pod))
            out[plugin] = (node.ns, pod, result)
        yield out


def _device_view(ns: Netns) -> list[tuple[Any, ...]]:
    links = ns.links()
    names = {link["index"]: link["name"] for link in links}
    return sorted(
        (
            "veth*" if link["name"].startswith("veth") else link["name"],
            link["kind"],
            link["up"],
            names.get(link["master"]),
            link["mtu"],
        )
        for link in links
    )


def _routes(ns: Netns) -> list[tuple[Any, ...]]:
    return sorted((r["dst"], r["gateway"], r["dev"], r["scope"]) for r in ns.routes())


def test_same_devices_addresses_and_routes(twins: dict) -> None:
    (cnode, cpod, _), (dnode, dpod, _) = twins["k8snet-bridge"], twins["bridge"]
    assert _device_view(cnode) == _device_view(dnode)
    assert _device_view(cpod) == _device_view(dpod)
    assert cnode.addresses("cni0") == dnode.addresses("cni0")
    assert cpod.addresses("eth0") == dpod.addresses("eth0")
    assert _routes(cnode) == _routes(dnode) and _routes(cpod) == _routes(dpod)
    for ns in (cnode, dnode):
        veth = next(link["name"] for link in ns.links() if link["kind"] == "veth")
        assert ns.bridge_port_flags(veth)["hairpin"] is True
    assert cnode.sysctl("net.ipv4.ip_forward") == dnode.sysctl("net.ipv4.ip_forward") == "1"


def _normalized(result: dict[str, Any], pod: Netns) -> dict[str, Any]:
    text = re.sub(r'"mac": "[0-9a-f:]{17}"', '"mac": "MAC"', _dump(result))
    text = re.sub(r'"veth[0-9a-f]{8}"', '"vethXXXXXXXX"', text)
    return _load(text.replace(str(pod.path), "SANDBOX"))


def _dump(obj: Any) -> str:
    import json

    return json.dumps(obj, sort_keys=True)


def _load(text: str) -> Any:
    import json

    return json.loads(text)


def test_same_result_apart_from_macs(twins: dict) -> None:
    (_, cpod, course), (_, dpod, debian) = twins["k8snet-bridge"], twins["bridge"]
    assert _normalized(course, cpod) == _normalized(debian, dpod)
