"""A responder forging echo replies cannot stand in for a topology (issue 14).

Two namespaces on one veth. A Scapy responder answers every echo request with a
well-formed reply (right addresses, id, sequence and payload): to a prober without an
address (its source is 0.0.0.0); from the pod's end of the cable while the pod's kernel
has no address to answer with; from the prober's own namespace, out of its own cable;
across a veth whose two ends are both in the prober's namespace. No probe may count any of
that as an answer, each says why; a real kernel answering a real address still counts,
also while the grader itself captures at the far end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest

from course.kernel import Netns
from course.runs import PREFIX
from grader import probes

pytestmark = pytest.mark.slow
RESPONDER = r"""
from scapy.all import ICMP, IP, Ether, Raw, sendp, sniff
def forge(p):
    if ICMP in p and p[ICMP].type == 8:
        sendp(Ether(src=p[Ether].dst, dst=p[Ether].src) / IP(src=p[IP].dst, dst=p[IP].src)
              / ICMP(type=0, id=p[ICMP].id, seq=p[ICMP].seq) / Raw(bytes(p[ICMP].payload)),
              iface="eth0", verbose=False)
print("ready", flush=True)
sniff(iface="eth0", filter="icmp", prn=forge, store=False, timeout=30)
"""
POD = "10.244.1.3"


@pytest.fixture
def cable() -> Iterator[tuple[Netns, Netns]]:
    node = Netns.create(f"{PREFIX}-forge-node")
    pod = Netns.create(f"{PREFIX}-forge-pod")
    try:
        node.add_veth("veth0", pod, "eth0")
        for ns, ifname in ((node, "veth0"), (pod, "eth0")):
            ns.up(ifname)
            ns.up("lo")
        yield node, pod
    finally:
        node.delete()
        pod.delete()


def test_forged_replies_to_an_address_less_prober_do_not_count(
    cable: tuple[Netns, Netns],
) -> None:
    node, pod = cable
    node.add_route("10.244.1.3/32", dev="veth0")  # a route, but no address of its own
    pod.add_address("eth0", "10.244.1.3/24")
    pod.run(["ip", "link", "set", "eth0", "arp", "on"])
    responder = pod.popen([sys.executable, "-c", RESPONDER], stdout=subprocess.PIPE, text=True)
    try:
        assert responder.stdout is not None and "ready" in responder.stdout.readline()
        time.sleep(0.3)
        obs = probes.ping(node, "10.244.1.3", timeout=1.5)
    finally:
        responder.kill()
    # the pod's own kernel also answers to 0.0.0.0: neither is an answer to "this node"
    assert not obs.ok, obs.describe()
    assert any(f.kind == "ICMP echo-reply" for f in obs.frames), "the forgeries were sent"


def test_a_real_reply_to_a_real_address_still_counts(cable: tuple[Netns, Netns]) -> None:
    node, pod = cable
    node.add_address("veth0", "10.244.1.1/24")
    pod.add_address("eth0", "10.244.1.3/24")
    obs = probes.ping(node, "10.244.1.3", timeout=2)
    assert obs.ok, obs.describe()
    assert obs.reply is not None and obs.reply.src == "10.244.1.3"


@contextmanager
def responder(ns: Netns, iface: str) -> Iterator[int]:
    """The forger, detached as a notebook's would be (not a child of the grading process)."""
    detach = "import os, sys\nif os.fork():\n    os._exit(0)\nprint(os.getpid(), flush=True)\n"
    code = detach + RESPONDER.replace('"eth0"', repr(iface))
    proc = ns.popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pid = int(proc.stdout.readline())
    try:
        assert "ready" in proc.stdout.readline()
        yield pid
    finally:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        ns.stop(proc)


def addressed(cable: tuple[Netns, Netns], pod_address: bool) -> tuple[Netns, Netns]:
    """The node has 10.244.1.1 and a neighbour entry for the pod (no ARP to forge)."""
    node, pod = cable
    node.add_address("veth0", "10.244.1.1/24")
    mac = next(lk["mac"] for lk in pod.links() if lk["name"] == "eth0")
    node.run(["ip", "neigh", "replace", POD, "lladdr", mac, "dev", "veth0"])
    if pod_address:
        pod.add_address("eth0", f"{POD}/24")
    return node, pod


def test_a_responder_in_the_pod_does_not_count(cable: tuple[Netns, Netns]) -> None:
    """The replies cross the cable and reach the node's kernel; a process made them."""
    node, pod = addressed(cable, pod_address=False)
    with responder(pod, "eth0") as forger:
        obs = probes.ping(node, POD, timeout=1.5)
    assert not obs.ok, obs.describe()
    assert f"process {forger} " in obs.describe(), obs.describe()
    assert f"holds a packet socket in {pod.name}" in obs.describe()
    assert "does not count" in obs.describe()


def test_replies_sent_out_of_the_probers_own_cable_do_not_count(
    cable: tuple[Netns, Netns],
) -> None:
    """The prober's sniffer sees frames its own namespace sends; its kernel never gets them."""
    node, _ = addressed(cable, pod_address=False)
    with responder(node, "veth0"):
        obs = probes.ping(node, POD, timeout=1.5)
    assert not obs.ok, obs.describe()
    assert any(f.kind == "ICMP echo-reply" for f in obs.frames), "the forgeries were seen"
    assert "never reached this namespace's kernel" in obs.describe(), obs.describe()


def test_a_cable_looping_back_into_the_prober_does_not_count(
    cable: tuple[Netns, Netns],
) -> None:
    """veth1 <-> veth1p both in the node: a responder on veth1p answers from the wire."""
    node, _ = cable
    node.run(["ip", "link", "add", "veth1", "type", "veth", "peer", "name", "veth1p"])
    for name in ("veth1", "veth1p"):
        node.up(name)
    node.add_address("veth1", "10.244.2.1/24")
    mac = next(lk["mac"] for lk in node.links() if lk["name"] == "veth1p")
    node.run(["ip", "neigh", "replace", "10.244.2.3", "lladdr", mac, "dev", "veth1"])
    with responder(node, "veth1p"):
        obs = probes.ping(node, "10.244.2.3", timeout=1.5)
    assert not obs.ok, obs.describe()
    assert "veth1 is a veth whose other end is in this same namespace" in obs.describe()


def test_the_graders_own_capture_at_the_far_end_is_not_a_responder(
    cable: tuple[Netns, Netns],
) -> None:
    node, pod = addressed(cable, pod_address=True)
    obs, frames = probes.sniff_while(pod, "eth0", lambda: probes.ping(node, POD, timeout=2))
    assert obs.ok, obs.describe()
    assert any(f.kind == "ICMP echo-request" for f in frames)
