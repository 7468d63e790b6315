"""Every helper that creates something can run again: a re-run cell just works."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from course.kernel import KernelError, Netns
from course.topology import Cluster


@pytest.fixture
def pair() -> Iterator[tuple[Netns, Netns]]:
    tag = uuid.uuid4().hex[:6]
    a, b = Netns.create(f"knl-t{tag}-a"), Netns.create(f"knl-t{tag}-b")
    yield a, b
    a.delete()
    b.delete()


def test_the_same_veth_again_is_kept(pair: tuple[Netns, Netns]) -> None:
    a, b = pair
    a.add_veth("eth0", b, "eth0")
    index = a.index("eth0")
    a.add_veth("eth0", b, "eth0", up=True)
    assert a.index("eth0") == index and a.link("eth0")["up"]


def test_a_veth_name_in_use_by_another_cable_is_replaced(pair: tuple[Netns, Netns]) -> None:
    a, b = pair
    a.add_veth("eth0", a, "stray")  # a wrong first try: both ends in a
    a.add_veth("eth0", b, "eth0")
    assert not a.has_link("stray")
    assert b.link("eth0")["link"] == a.index("eth0")


def test_addresses_routes_and_deletes_run_twice(pair: tuple[Netns, Netns]) -> None:
    a, b = pair
    a.add_veth("eth0", b, "eth0", up=True)
    for _ in range(2):
        a.add_address("eth0", "10.244.1.2/24")
        a.add_route("10.96.0.0/12", via="10.244.1.3")
    assert a.addresses("eth0") == ["10.244.1.2/24"]
    a.add_address("eth0", "10.244.1.2/16")  # the fixed cell: the prefix length changes
    assert a.addresses("eth0") == ["10.244.1.2/16"]
    a.add_route("10.96.0.0/12", via="10.244.1.4")  # like `ip route replace`
    routes = [r for r in a.routes() if r["dst"] == "10.96.0.0/12"]
    assert [r["gateway"] for r in routes] == ["10.244.1.4"]
    a.delete_link("eth0")
    a.delete_link("eth0")
    assert not b.has_link("eth0")


def test_bridges_and_fdb_entries_run_twice(pair: tuple[Netns, Netns]) -> None:
    a, b = pair
    a.add_bridge("cni0")
    a.add_veth("veth1", b, "eth0", master="cni0")
    a.add_bridge("cni0", up=True)
    assert a.link("veth1")["master"] == a.index("cni0"), "the bridge kept its ports"
    a.add_veth("eth1", b, "eth1")
    with pytest.raises(KernelError, match="not a bridge"):
        a.add_bridge("eth1")
    a.add_address("eth1", "192.168.1.11/24")
    a.add_vxlan("flannel.1", vni=1, local="192.168.1.11", dev="eth1", mtu=1450)
    a.add_fdb("aa:bb:cc:00:00:02", "flannel.1", dst="192.168.1.12")
    a.add_fdb("aa:bb:cc:00:00:02", "flannel.1", dst="192.168.1.12")
    entries = [e["dst"] for e in a.fdb("flannel.1") if e["mac"] == "aa:bb:cc:00:00:02"]
    assert entries == ["192.168.1.12"]


def test_a_role_asked_for_again_is_a_fresh_namespace() -> None:
    with Cluster("t-rerun", nodes=1, underlay=False, pod_network=None) as c:
        pod = c.netns("pod-a", lo_up=False)
        pod.add_veth("eth0", c.node(1).ns, "veth-a")
        proc = pod.popen(["sleep", "30"])
        again = c.netns("pod-a", lo_up=False)
        assert [ln["name"] for ln in again.links()] == ["lo"]
        assert not c.node(1).ns.has_link("veth-a"), "the old pod's cable went with it"
        assert proc.wait(timeout=2) != 0, "the old pod's processes were stopped"
        assert c.record.namespaces.count(f"{c.prefix}-pod-a") == 1
        again.add_veth("eth0", c.node(1).ns, "veth-a")  # the cell's next line works again
        again.delete()  # a cell that deletes its own scratch namespace, run twice
        assert c.netns("pod-a").exists()
