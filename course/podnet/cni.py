"""Pods through CNI: the node's "kubelet" asks a CNI runtime to ADD each pod's network.

`Cluster(..., pod_network="cni")` builds nodes whose pods get their interface the way a
real kubelet gives it: the runtime (`course.cni.runtime`, libcni's behaviour) runs the
plugins of a network configuration list inside the node's namespace. The default list is
the course's bridge plugin with Debian's `host-local` IPAM (`course.cni.runtime.bridge_conflist`);
set `PLUGIN_TYPE = "bridge"` to run Debian's Go plugin instead, or `CHAIN` to append plugins
such as `portmap`. Each pod's IP and host-side veth come from the plugin's result.

Per-run state (the plugin directory, host-local's reservations, the result cache) lives in
the run's state folder (`course.cni.runtime.run_state`) and is removed with the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from course.cni.install import PLUGIN_NAME, install
from course.cni.runtime import (
    DEBIAN_PLUGIN_DIR,
    Attachment,
    Runtime,
    bridge_conflist,
    run_state,
)

if TYPE_CHECKING:
    from course.topology import Node, Pod

PLUGIN_TYPE = PLUGIN_NAME  # "k8snet-bridge"; "bridge" selects Debian's plugin
CHAIN: list[dict[str, Any]] = []


def run_dir(node: Node) -> Path:
    """The run's CNI folder: node namespaces are named <prefix>-nodeN."""
    return run_state(node.ns.name.rsplit("-", 1)[0])


def runtime(node: Node) -> Runtime:
    base = run_dir(node)
    return Runtime(node.ns.path, [base / "bin", DEBIAN_PLUGIN_DIR], base / node.name / "cache")


def conflist(node: Node) -> dict[str, Any]:
    ipam_dir = run_dir(node) / node.name / "networks"
    return bridge_conflist(node.index, ipam_dir, plugin_type=PLUGIN_TYPE, chain=CHAIN)


def attachment(pod: Pod) -> Attachment:
    """What the kubelet hands the runtime: the sandbox id, its netns path, CNI_ARGS."""
    return Attachment(
        container_id=pod.ns.name,
        netns=str(pod.ns.path),
        args={
            "IgnoreUnknown": "1",
            "K8S_POD_NAMESPACE": "default",
            "K8S_POD_NAME": pod.name,
            "K8S_POD_INFRA_CONTAINER_ID": pod.ns.name,
        },
    )


def setup_node(node: Node) -> None:
    """Install the course plugin where this run's runtime looks; the plugin makes cni0."""
    install(run_dir(node) / "bin")


def add_pod(node: Node, pod: Pod) -> dict[str, Any]:
    """CNI ADD for the pod; its IP and node-side veth are read back from the result."""
    result = runtime(node).add(conflist(node), attachment(pod))
    pod.ip = result["ips"][0]["address"].split("/")[0]
    host = [i for i in result.get("interfaces", []) if not i.get("sandbox")]
    pod.host_ifname = host[-1]["name"] if host else None
    return result


def delete_pod(node: Node, pod: Pod) -> None:
    """CNI DEL: the runtime hands the plugins the cached ADD result."""
    runtime(node).delete(conflist(node), attachment(pod))
