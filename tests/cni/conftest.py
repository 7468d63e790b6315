"""A node namespace, pod namespaces on demand, and a CNI runtime bound to the node.

The course plugin is installed into a temporary plugin directory next to a few fake
plugins (shell scripts) that break the protocol on purpose; Debian's plugins come from
/usr/lib/cni. host-local keeps its reservations in a temporary folder (its `dataDir`).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from course.cni.install import install
from course.cni.runtime import DEBIAN_PLUGIN_DIR, Attachment, Runtime, bridge_conflist
from course.kernel import Netns
from course.topology import Cluster

FAKE_PLUGINS = {
    # exits 0 with an error text: the runtime must not take it for success
    "exit0-error": 'cat >/dev/null; echo "error: something went wrong"; exit 0',
    # exits 1 with nothing on stdout
    "silent-fail": "cat >/dev/null; echo 'it broke' >&2; exit 1",
    # a valid-looking result without ips
    "no-ips": 'cat >/dev/null; echo \'{"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}]}\'',
    # answers VERSION without supportedVersions
    "bad-version": 'cat >/dev/null; echo \'{"cniVersion": "1.0.0"}\'',
    # never answers
    "hang": "sleep 60",
}


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cni-bin")
    install(folder)
    for name, body in FAKE_PLUGINS.items():
        script = folder / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        os.chmod(script, 0o755)
    return folder


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster("sandbox", nodes=1, pod_network=None, underlay=False) as c:
        yield c


@pytest.fixture(scope="module")
def node(cluster: Cluster) -> Netns:
    return cluster.node(1).ns


_counter = itertools.count()


@pytest.fixture(scope="module")
def new_pod(cluster: Cluster) -> Callable[[], Netns]:
    """A fresh, empty pod namespace (lo up), torn down with the cluster."""

    def make() -> Netns:
        ns = cluster.netns(f"p{next(_counter)}")
        ns.sysctl("net.ipv4.conf.all.rp_filter", 0)
        return ns

    return make


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cni-state")


@pytest.fixture(scope="module")
def runtime(node: Netns, plugin_dir: Path, state: Path) -> Runtime:
    return Runtime(node.path, [plugin_dir, DEBIAN_PLUGIN_DIR], state / "cache", timeout=10)


def conflist(
    state: Path, plugin_type: str = "k8snet-bridge", net: str = "k8s-pod-network", **kw: Any
) -> dict[str, Any]:
    return bridge_conflist(1, state / "networks", plugin_type=plugin_type, name=net, **kw)


def attach(pod: Netns, ifname: str = "eth0") -> Attachment:
    return Attachment(pod.name, str(pod.path), ifname)


def reservations(state: Path, net: str = "k8s-pod-network") -> list[str]:
    """host-local's reserved addresses: one file per IP in <dataDir>/<network name>/."""
    folder = state / "networks" / net
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name[0].isdigit())


def node_veths(node: Netns) -> list[str]:
    return sorted(link["name"] for link in node.links() if link["kind"] == "veth")
