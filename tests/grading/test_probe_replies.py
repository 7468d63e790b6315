"""A responder forging echo replies cannot stand in for a topology (issue 14).

Two namespaces on one veth: the prober has no address (its source is 0.0.0.0), the other
end runs a Scapy responder that answers every echo request with a well-formed reply
(right id, sequence and payload). No probe may count that as an answer; a real kernel
answering a real address still counts.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

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
