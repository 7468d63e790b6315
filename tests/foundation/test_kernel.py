"""course.kernel against the real kernel: every call checked by reading the state back."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from course.kernel import KernelError, Netns, list_netns


@pytest.fixture
def pair():
    tag = uuid.uuid4().hex[:6]
    a, b = Netns.create(f"knl-t{tag}-a"), Netns.create(f"knl-t{tag}-b")
    yield a, b
    a.delete()
    b.delete()


def test_create_and_delete_leave_nothing():
    ns = Netns.create(f"knl-t{uuid.uuid4().hex[:6]}")
    assert ns.name in list_netns("knl-")
    assert [link["name"] for link in ns.links()] == ["lo"]
    assert ns.link("lo")["up"] is False  # a fresh namespace's loopback is down
    ns.delete()
    assert ns.name not in list_netns("knl-")
    assert not ns.path.exists()


def test_duplicate_name_is_refused():
    ns = Netns.create(f"knl-t{uuid.uuid4().hex[:6]}")
    try:
        with pytest.raises(KernelError, match="already exists"):
            Netns.create(ns.name)
    finally:
        ns.delete()


def test_veth_spans_namespaces_and_dies_as_a_pair(pair):
    a, b = pair
    a.add_veth("eth0", b, "eth0")
    assert a.link("eth0")["kind"] == "veth"
    assert b.link("eth0")["kind"] == "veth"
    a.delete_link("eth0")
    assert not b.has_link("eth0"), "deleting one end of a veth must delete the other"


def test_addresses_routes_and_ping(pair):
    a, b = pair
    a.add_veth("eth0", b, "eth0")
    for ns, ip in ((a, "10.244.1.2/24"), (b, "10.244.1.3/24")):
        ns.up("lo")
        ns.add_address("eth0", ip)
        ns.up("eth0")
    assert a.addresses("eth0") == ["10.244.1.2/24"]
    a.add_route("10.96.0.0/12", via="10.244.1.3")
    a.add_route("192.168.1.0/24", via="10.244.1.3", dev="eth0", onlink=True)
    a.add_route("203.0.113.0/24", dev="eth0", scope="link")
    a.add_route("10.244.9.0/24", blackhole=True)
    routes = {r["dst"]: r for r in a.routes()}
    assert routes["10.96.0.0/12"]["gateway"] == "10.244.1.3"
    assert routes["192.168.1.0/24"]["onlink"] is True
    assert routes["203.0.113.0/24"]["scope"] == 253
    assert routes["10.244.9.0/24"]["type"] == 6  # RTN_BLACKHOLE
    assert a.route_get("10.244.1.3")["dev"] == "eth0"
    assert a.run(["ping", "-c1", "-W1", "10.244.1.3"], check=False).returncode == 0


def test_bridge_ports_flags_and_fdb(pair):
    a, b = pair
    a.add_bridge("cni0")
    a.add_veth("veth1", b, "eth0")
    a.set_master("veth1", "cni0")
    assert a.link("veth1")["master"] == a.index("cni0")
    a.bridge_port("veth1", hairpin=True, learning=False)
    assert a.bridge_port_flags("veth1") == {"hairpin": True, "learning": False}
    a.bridge_port("veth1", hairpin=False, learning=True)
    assert a.bridge_port_flags("veth1") == {"hairpin": False, "learning": True}


def test_vxlan_neighbour_and_fdb(pair):
    a, b = pair
    a.add_veth("eth0", b, "eth0")
    a.add_address("eth0", "192.168.1.11/24")
    a.up("eth0")
    a.add_vxlan("flannel.1", vni=1, local="192.168.1.11", dev="eth0", mtu=1450)
    a.up("flannel.1")
    assert a.link("flannel.1")["kind"] == "vxlan"
    assert a.link("flannel.1")["mtu"] == 1450
    a.add_neighbour("10.244.2.0", "aa:bb:cc:00:00:02", "flannel.1")
    assert {"ip": "10.244.2.0", "mac": "aa:bb:cc:00:00:02", "state": 0x80} in a.neighbours(
        "flannel.1"
    )
    a.add_fdb("aa:bb:cc:00:00:02", "flannel.1", dst="192.168.1.12")
    fdb = a.run(["bridge", "fdb", "show", "dev", "flannel.1"]).stdout
    assert "aa:bb:cc:00:00:02 dst 192.168.1.12" in fdb


def test_sysctls_are_per_namespace(pair):
    a, _ = pair
    host = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    flipped = "0" if host == "1" else "1"
    assert a.sysctl("net.ipv4.ip_forward", flipped) == flipped
    a.sysctl("net.ipv4.conf.all.proxy_arp", 1)
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == host
    assert a.sysctl("net.bridge.bridge-nf-call-iptables") in ("0", "1")
    with pytest.raises(KernelError, match=r"no\.such"):
        a.sysctl("net.ipv4.no.such", 1)


def test_iptables_restore_is_atomic(pair):
    a, _ = pair
    a.apply_iptables("*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -j RETURN\nCOMMIT\n")
    assert "-A KUBE-SERVICES -j RETURN" in a.iptables_save("nat")
    broken = "*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -j NOSUCHCHAIN\nCOMMIT\n"
    with pytest.raises(KernelError, match="iptables-restore"):
        a.apply_iptables(broken)
    assert "-A KUBE-SERVICES -j RETURN" in a.iptables_save("nat"), "old rules must survive"


def test_nft_apply_and_list(pair):
    a, _ = pair
    a.apply_nft("table ip lab {\n chain c {\n  type filter hook input priority 0;\n }\n}\n")
    assert "table ip lab" in a.nft_list()
    with pytest.raises(KernelError):
        a.apply_nft("table ip lab { nonsense }")


def test_delete_kills_processes_inside(pair):
    a, _ = pair
    proc = a.popen(["sleep", "60"])
    a.delete()
    assert proc.wait(5) != 0
    assert not a.exists()


def test_ctrl_c_in_the_middle_of_popen_loses_no_process(pair, monkeypatch):
    """A signal landing while Popen starts the child (the child exists, Popen has not
    returned) used to lose the child's pid: teardown then left it running (a BIRD outlived
    the benchmark it belonged to). Now the start finishes on a helper thread and is recorded."""
    a, _ = pair
    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    class InterruptedPopen(real_popen):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            started.append(self)
            os.kill(os.getpid(), signal.SIGINT)  # delivered to the main thread
            time.sleep(0.2)  # ...while this start is still "in Popen"

    monkeypatch.setattr(subprocess, "Popen", InterruptedPopen)
    # Not wrapped in nsenter: like a child that has not entered the namespace yet when
    # teardown looks for processes inside it, so only the record of the start can stop it.
    monkeypatch.setattr(a, "_argv", list)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own Ctrl-C
    try:
        with pytest.raises(KeyboardInterrupt):
            a.popen(["sleep", "60"])
    finally:
        signal.signal(signal.SIGINT, before)
    monkeypatch.undo()
    a.delete()
    try:
        assert started[0].wait(5) < 0, "teardown did not stop the interrupted start"
    finally:
        started[0].kill()


def test_missing_interface_is_a_clear_error(pair):
    a, _ = pair
    with pytest.raises(KernelError, match="no interface 'eth9'"):
        a.up("eth9")
    assert os.geteuid() == 0
