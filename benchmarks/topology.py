"""Build + teardown of a cluster: course (netlink, no forks) against two `ip`-based ways.

The same topology (N nodes x M pods, bridge pods, an underlay switch, host-gw routes) is
built three ways in one run:
  course    - course.topology.Cluster: one process, pyroute2 sockets opened after setns
  ip-each   - one `ip` process per command (how most lab tools and tutorials do it)
  ip-batch  - one `ip -batch` process per namespace (close to the kernel's own cost)
Each way is timed over several rounds (median). Sanity: every way must produce the same
namespaces with the same interface names, or the comparison would be unfair.
Targets (issue 2): course >= 3x faster than ip-each, and <= 1.5x ip-batch.

Run as root: .venv/bin/python benchmarks/topology.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections import defaultdict

from _namespaces import bench_prefix, clean_up_on_exit, run

from course import addressing
from course.kernel import Netns, list_netns
from course.podnet.bridge import host_veth_name
from course.topology import Cluster

ROUNDS = 5
# Every namespace of this run starts with it; killed or not, none outlives the run.
PREFIX = bench_prefix("topo")


def plan(prefix: str, nodes: int, pods: int) -> tuple[list[str], dict[str, list[str]]]:
    """The same cluster as `Cluster(nodes, pods, underlay=True)`, as ip commands per namespace.

    Returns the namespace names (in creation order) and, per namespace, `ip` commands to
    run inside it (without the `-n NS`), plus sysctls as `sysctl k=v` pseudo-commands.
    """
    names = Cluster._default_pods(nodes, pods)
    order = [f"{prefix}-underlay"]
    cmds: dict[str, list[str]] = defaultdict(list)
    u = f"{prefix}-underlay"
    cmds[u] += ["link set lo up", "link add br0 type bridge", "link set br0 up"]
    for n in range(1, nodes + 1):
        node = f"{prefix}-node{n}"
        order.append(node)
        cmds[u] += [
            f"link add node{n} type veth peer name eth0 netns {node}",
            f"link set node{n} master br0",
            f"link set node{n} up",
        ]
        cmds[node] += [
            "link set lo up",
            f"addr add {addressing.node_ip(n)}/24 dev eth0",
            "link set eth0 up",
            "link add cni0 type bridge",
            f"addr add {addressing.pod_gateway(n)}/24 dev cni0",
            "link set cni0 up",
            "sysctl net.ipv4.ip_forward=1",
            "sysctl net.ipv4.conf.all.rp_filter=0",
            "sysctl net.ipv4.conf.default.rp_filter=0",
        ]
        for k, name in enumerate(names[n]):
            pod = f"{prefix}-node{n}-{name}"
            order.append(pod)
            veth = host_veth_name(pod)
            cmds[node] += [
                f"link add {veth} type veth peer name eth0 netns {pod}",
                f"link set {veth} master cni0",
                f"link set {veth} up",
            ]
            cmds[pod] += [
                "link set lo up",
                f"addr add {addressing.pod_ip(n, k)}/24 dev eth0",
                "link set eth0 up",
                f"route add default via {addressing.pod_gateway(n)}",
                "sysctl net.ipv4.conf.all.rp_filter=0",
            ]
        for m in range(1, nodes + 1):
            if m != n:
                cmds[node].append(f"route add {addressing.pod_cidr(m)} via {addressing.node_ip(m)}")
    return order, cmds


def _run(argv: list[str], stdin: str | None = None) -> None:
    subprocess.run(argv, input=stdin, text=True, check=True, capture_output=True)


def build_ip_each(prefix: str, nodes: int, pods: int) -> None:
    order, cmds = plan(prefix, nodes, pods)
    for ns in order:
        _run(["ip", "netns", "add", ns])
    for ns in order:  # underlay, then each node before its pods: peers exist when needed
        for cmd in cmds[ns]:
            if cmd.startswith("sysctl "):
                _run(["ip", "netns", "exec", ns, "sysctl", "-qw", cmd.split()[1]])
            else:
                _run(["ip", "-n", ns, *cmd.split()])


def build_ip_batch(prefix: str, nodes: int, pods: int) -> None:
    order, cmds = plan(prefix, nodes, pods)
    _run(["ip", "-batch", "-"], "".join(f"netns add {ns}\n" for ns in order))
    for ns in order:
        lines = [c for c in cmds[ns] if not c.startswith("sysctl ")]
        sysctls = [c.split()[1] for c in cmds[ns] if c.startswith("sysctl ")]
        _run(["ip", "-n", ns, "-batch", "-"], "\n".join(lines) + "\n")
        if sysctls:
            _run(["ip", "netns", "exec", ns, "sysctl", "-qw", *sysctls])


def teardown_ip_each(prefix: str) -> None:
    for ns in list_netns(prefix + "-"):
        _run(["ip", "netns", "del", ns])


def teardown_ip_batch(prefix: str) -> None:
    _run(["ip", "-batch", "-"], "".join(f"netns del {ns}\n" for ns in list_netns(prefix + "-")))


def shape(prefix: str) -> dict[str, list[str]]:
    """Interface names per namespace (role), to prove the three ways built the same thing."""
    out = {}
    for name in list_netns(prefix + "-"):
        ns = Netns(name)
        # host-side veth names hash the pod's namespace name, which differs per run
        names = (
            "veth*" if link["kind"] == "veth" and link["name"].startswith("veth") else link["name"]
            for link in ns.links()
        )
        out[name.removeprefix(prefix + "-")] = sorted(names)
        ns.close()
    return out


def measure(nodes: int, pods: int) -> dict[str, float]:
    times: dict[str, list[float]] = defaultdict(list)
    shapes = {}
    for r in range(ROUNDS):
        t0 = time.perf_counter()
        c = Cluster(
            "bench", nodes=nodes, pods_per_node=pods, pod_network="bridge", prefix=f"{PREFIX}c{r}"
        ).build()
        if r == 0:
            shapes["course"] = shape(c.prefix)
        c.destroy()
        times["course"].append(time.perf_counter() - t0)
        for way, build, teardown in (
            ("ip-each", build_ip_each, teardown_ip_each),
            ("ip-batch", build_ip_batch, teardown_ip_batch),
        ):
            prefix = f"{PREFIX}{way[3]}{r}"
            t0 = time.perf_counter()
            try:
                build(prefix, nodes, pods)
                if r == 0:
                    shapes[way] = shape(prefix)
            finally:
                teardown(prefix)
            times[way].append(time.perf_counter() - t0)
    if not shapes["course"] == shapes["ip-each"] == shapes["ip-batch"]:
        sys.exit("the three ways built different topologies: the comparison would be unfair")
    return {way: statistics.median(ts) for way, ts in times.items()}


def main() -> None:
    clean_up_on_exit(PREFIX)
    print(f"build + teardown, median of {ROUNDS} rounds (underlay, bridge pods, host-gw routes)")
    print(
        f"{'topology':>14} {'course':>10} {'ip-each':>10} {'ip-batch':>10}"
        f" {'ip-each/course':>15} {'course/ip-batch':>16}"
    )
    results = {}
    for nodes, pods in ((3, 3), (10, 10)):
        t = measure(nodes, pods)
        results[(nodes, pods)] = t
        print(
            f"{f'{nodes} x {pods}':>14} {t['course'] * 1000:>8.0f}ms {t['ip-each'] * 1000:>8.0f}ms"
            f" {t['ip-batch'] * 1000:>8.0f}ms {t['ip-each'] / t['course']:>14.1f}x"
            f" {t['course'] / t['ip-batch']:>15.2f}x"
        )
    t = results[(3, 3)]
    faster, vs_batch = t["ip-each"] / t["course"], t["course"] / t["ip-batch"]
    print(
        f"targets (3 x 3): >= 3x faster than ip-each: {'met' if faster >= 3 else 'NOT met'}"
        f" ({faster:.1f}x); <= 1.5x ip-batch: {'met' if vs_batch <= 1.5 else 'NOT met'}"
        f" ({vs_batch:.2f}x)"
    )


if __name__ == "__main__":
    run(main)
