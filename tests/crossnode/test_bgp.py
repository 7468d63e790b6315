"""Calico-style BGP with one BIRD 2 per node: config, sessions, routes, the wire, restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from course.kernel import list_netns
from course.podnet import bgp
from course.podnet.picture import draw_crossnode
from course.runs import state_dir
from course.topology import Cluster
from grader.encap import about, sniff_wire_while
from grader.probes import ping

from .conftest import failed, ping_pairs

K8SNET = str(Path(sys.executable).with_name("k8snet"))


def birds_of(prefix: str) -> list[int]:
    """BIRD processes whose command line names this run's state folder (or any folder of
    runs under this namespace prefix, when given `kl3x-` with the dash)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ")
                state = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            folder = f"/{prefix}" + ("" if prefix.endswith("-") else "/")
            if cmd.startswith(b"bird ") and folder.encode() in cmd and state != "Z":
                found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def calico():
    with Cluster(
        "t-bgp", nodes=3, pods_per_node=2, pod_network="routed", cross_node="bgp", router=True
    ) as c:
        yield c


# --- configuration --------------------------------------------------------------------------
def test_generated_config_parses_and_follows_calicos_mesh(tmp_path):
    text = bgp.bird_config("192.168.1.12", "10.244.2.0/24", ["192.168.1.11", "192.168.1.13"])
    conf = tmp_path / "bird.conf"
    conf.write_text(text)
    bgp.parse_check(conf)  # raises if BIRD disagrees
    assert "local 192.168.1.12 as 64512;" in text
    # the lower IP of a pair waits, the higher one dials
    assert "protocol bgp Mesh_192_168_1_11 from mesh { neighbor 192.168.1.11 as 64512; }" in text
    assert "Mesh_192_168_1_13 from mesh { neighbor 192.168.1.13 as 64512; passive on; }" in text
    assert "route 10.244.2.0/24 blackhole;" in text


def test_a_config_that_does_not_parse_starts_nothing(calico, tmp_path):
    node = calico.node(1)
    bird = bgp.Bird(node.ns, tmp_path / "broken")
    before = set(birds_of(calico.prefix))
    with pytest.raises(bgp.BirdConfigError, match=r"bird\.conf:3:\d+ Local AS number must be set"):
        bird.start("router id 192.168.1.11;\nprotocol device {}\nprotocol bgp x { neighbor ; }\n")
    assert not bird.running() and set(birds_of(calico.prefix)) == before


# --- sessions and routes ---------------------------------------------------------------------
def test_sessions_established_and_routes_are_proto_bird(calico):
    for node in calico.nodes:
        protos = bgp.bird_of(calico, node).protocols()
        peers = [p for p in calico.nodes if p is not node]
        for peer in peers:
            assert protos[bgp.protocol_name(peer.ip)]["info"] == "Established"
        routes = bgp.bird_routes(node.ns)
        for peer in peers:
            assert routes[peer.pod_cidr]["gateway"] == peer.ip
            assert routes[peer.pod_cidr]["dev"] == "eth0"
        assert routes[node.pod_cidr]["type"] == 6  # RTN_BLACKHOLE: the node's own block


def test_every_node_pair(calico):
    results = ping_pairs(calico)
    assert not failed(results)
    assert {obs.reply.ttl for obs in results.values()} == {62}


def test_pod_ips_travel_unencapsulated(calico):
    a, c = calico.pod("a"), calico.pod("c")
    obs, wire = sniff_wire_while(calico.underlay.ns, "node1", lambda: ping(a.ns, c.ip))
    assert obs.ok, obs.describe()
    flow = about(wire, a.ip, c.ip)
    assert flow and not any(p.encapsulated for p in flow)
    request = next(p for p in flow if p.src == a.ip)
    assert (request.dst, request.kind, request.ttl) == (c.ip, "ICMP echo-request", 63)


def test_stopping_bird_withdraws_routes_and_starting_it_restores_them(calico):
    a, c = calico.pod("a"), calico.pod("c")
    node1, node2 = calico.node(1), calico.node(2)
    bird2 = bgp.bird_of(calico, node2)
    bird2.stop()
    assert not bird2.running()
    deadline = time.monotonic() + 5
    while node2.pod_cidr in bgp.bird_routes(node1.ns) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert node2.pod_cidr not in bgp.bird_routes(node1.ns)  # withdrawn at once (Cease)
    assert bgp.bird_routes(node2.ns) == {}  # BIRD took its own kernel routes along
    assert not ping(a.ns, c.ip).ok
    t0 = time.monotonic()
    bgp.setup_node(calico, node2)
    assert bgp.wait_converged(calico, timeout=10) == []
    assert time.monotonic() - t0 < 5
    assert ping(a.ns, c.ip).ok


# --- across subnets ------------------------------------------------------------------------
def test_other_subnet_routes_via_the_router_and_the_router_drops_them():
    with Cluster(
        "t-bgp2",
        nodes=3,
        pods_per_node=1,
        pod_network="routed",
        cross_node="bgp",
        router=True,
        subnets=2,
    ) as c:
        assert c.cross_node_errors == []  # the iBGP sessions come up through the router
        node1 = c.node(1)
        route = bgp.bird_routes(node1.ns)["10.244.3.0/24"]
        assert route["gateway"] == "192.168.1.1"  # next hop 192.168.2.13 resolved recursively
        assert not failed(ping_pairs(c, {1, 2}))
        a, e = c.pod("a"), c.pod("c")  # one pod per node: c is on node3
        obs, wire = sniff_wire_while(c.router.ns, "eth0", lambda: ping(a.ns, e.ip))
        assert not obs.ok
        seen = about(wire, a.ip, e.ip)
        assert seen and seen[0].src == a.ip and not seen[0].encapsulated
        assert c.router.ns.route_get(e.ip) is None  # the router knows no pod routes
    assert birds_of(c.prefix) == []


# --- teardown ------------------------------------------------------------------------------
def test_teardown_stops_every_bird_before_the_namespaces_go():
    with Cluster("t-bgp3", nodes=2, pods_per_node=1, pod_network="routed", cross_node="bgp") as c:
        assert len(birds_of(c.prefix)) == 2
        prefix = c.prefix
    assert birds_of(prefix) == [] and list_netns(prefix + "-") == []
    assert not state_dir(prefix).exists()


BUILD = """
from course.topology import Cluster
c = Cluster("t-bgp-kill", nodes=2, pods_per_node=1, pod_network="routed", cross_node="bgp")
c.build()
print(c.prefix, flush=True)
import time; time.sleep(60)
"""


def test_a_node_deleted_while_bird_runs(calico_pair):
    """`ip netns del` on a node (a terminal) while its BIRD runs: BIRD keeps the nameless
    namespace alive; it is still found and stopped, and starting it again says why not."""
    c = calico_pair
    node1 = c.node(1)
    subprocess.run(["ip", "netns", "del", node1.ns.name], check=True)
    bird = bgp.bird_of(c, node1)
    assert bird.running() and len(birds_of(c.prefix)) == 2
    with pytest.raises(bgp.BirdError, match=r"node1's namespace .* no longer exists"):
        bgp.setup_node(c, node1)
    c.destroy()
    assert birds_of(c.prefix) == []


@pytest.fixture
def calico_pair():
    c = Cluster("t-bgp-del", nodes=2, pods_per_node=1, pod_network="routed", cross_node="bgp")
    with c:
        yield c


def test_sigkill_then_k8snet_down_leaves_no_bird_and_no_namespace():
    """The owner is SIGKILLed after node1's namespace lost its name (`ip netns del`): node2's
    BIRD is found through its namespace, node1's only through its state folder."""
    private = f"kl3k{uuid.uuid4().hex[:3]}"
    env = {**os.environ, "K8SNET_NS_PREFIX": private}
    proc = subprocess.Popen(
        [sys.executable, "-c", BUILD], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        prefix = proc.stdout.readline().strip()
        assert prefix.startswith(private) and len(birds_of(prefix)) == 2
        subprocess.run(["ip", "netns", "del", f"{prefix}-node1"], check=True)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert len(birds_of(prefix)) == 2  # nobody stopped them: the owner died
        down = subprocess.run([K8SNET, "down", "t-bgp-kill"], env=env, capture_output=True)
        assert down.returncode == 0, down.stderr
        deadline = time.monotonic() + 3
        while birds_of(prefix) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert birds_of(prefix) == []
        assert list_netns(prefix + "-") == [] and not state_dir(prefix).exists()
    finally:
        proc.kill()
        subprocess.run([K8SNET, "down", "--all"], env=env, capture_output=True)


def test_picture_shows_sessions_and_bird_routes(calico):
    text = str(draw_crossnode(calico))
    for x, y in (("node1", "node2"), ("node1", "node3"), ("node2", "node3")):
        assert f"{x} <-> {y}: iBGP Established" in text, text
    assert "route 10.244.2.0/24 via 192.168.1.12 dev eth0 proto bird" in text
    assert "BGP to 192.168.1.12: Established" in text and "tunnel" not in text


def test_setup_node_again_restarts_bird_and_no_cell_owns_it(calico, monkeypatch):
    """A notebook cell run again stops what it started through Netns.popen (POPEN_HOOKS);
    BIRD is the lab's daemon, not the cell's: re-running `bgp.setup_node` in a cell restarts
    it once (the old one stopped first, no 'already runs' error) and nothing tracks it."""
    from course.kernel import netns as kernel_netns

    told = []
    monkeypatch.setattr(kernel_netns, "POPEN_HOOKS", [lambda ns, proc: told.append(proc.pid)])
    node1 = calico.node(1)
    before = bgp.bird_of(calico, node1).pid()
    for _ in range(2):
        bgp.setup_node(calico, node1)
    assert told == [] and len(birds_of(calico.prefix)) == 3
    assert bgp.bird_of(calico, node1).pid() != before
    assert bgp.wait_converged(calico, timeout=10) == []


KERNEL_LAB = """
from course.notebook import start_lab
from course.podnet import bgp
lab = start_lab("03-across-nodes", cross_node=None, subnets=2)
for n in lab.nodes:
    bgp.setup_node(lab, n)
print(lab.prefix)
"""


def test_a_jupyter_kernel_shut_down_leaves_no_bird_and_no_namespace():
    """JupyterLab's "shut down kernel": the lab's teardown runs at the kernel's exit (atexit),
    after Python has shut its thread pools down. A kernel sends netlink calls through one
    (an asyncio loop runs there); those calls failed at exit, so every namespace of the lab
    and its three BIRDs stayed behind (until the next setup cell or `k8snet down`)."""
    from jupyter_client.manager import start_new_kernel

    private = f"kl3j{uuid.uuid4().hex[:3]}"  # never another test's lab 03 (k8snet down below)
    env = {**os.environ, "K8SNET_NS_PREFIX": private}
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    out: list[str] = []
    try:

        def hook(msg):
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])

        reply = kc.execute_interactive(KERNEL_LAB, timeout=60, output_hook=hook)
        assert reply["content"]["status"] == "ok", reply["content"]
        prefix = "".join(out).split()[-1]
        assert prefix.startswith(private) and len(birds_of(prefix)) == 3
        kc.stop_channels()
        km.shutdown_kernel(now=False)
        assert birds_of(prefix) == [] and list_netns(prefix + "-") == []
    finally:
        if km.is_alive():
            km.shutdown_kernel(now=True)
        subprocess.run([K8SNET, "down", "--all"], env=env, capture_output=True)
