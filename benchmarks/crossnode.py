"""From nothing to the first successful pod-to-pod ping on every node pair, per cross-node mode.

A 3-node cluster with 2 pods per node is built in each mode (host-gw, vxlan, bgp, underlay);
the clock stops when a pod on every node has answered a ping from a pod on every other
node (6 ordered pairs, kernel `ping`, retried until it works). host-gw (static routes
written at build time) is the baseline: BGP writes the same routes, so "bgp - host-gw" is
what running BIRD and waiting for its sessions costs (target: under 2 s). After every
teardown, no BIRD process of the run may be left.

Measured 2026-11-30 16:32 UTC on 2 shared cores (load average 5-7), median of 3:

    mode        build s  to ping s   x host-gw
    host-gw       0.288      0.316        1.0x
    vxlan         0.438      0.479        1.5x
    bgp           1.401      1.439        4.6x   (BIRD's sessions: +1.12 s, target < 2 s)
    underlay      0.192      0.234        0.7x

BGP's build includes waiting for every node's routes (`bgp.connect` -> `wait_converged`):
BIRD dials 1 s after it starts (`connect delay time 1`), which is most of the extra cost.

Run as root: .venv/bin/python benchmarks/crossnode.py [rounds]
SIGINT/SIGTERM tear the current cluster (and its BIRDs) down before exiting.
"""

from __future__ import annotations

import itertools
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from types import FrameType

from course.podnet import POD_NETWORK_OF
from course.topology import Cluster

MODES = ("host-gw", "vxlan", "bgp", "underlay")
BASELINE = "host-gw"
DEFAULT_ROUNDS = 3
GIVE_UP_S = 20.0


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the `with Cluster` block: teardown runs


def birds_of(prefix: str) -> list[int]:
    """Live BIRD processes whose files live in this run's state folder."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes()
            stat = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if cmd.startswith(b"bird\0") and f"/{prefix}/".encode() in cmd and stat[0] != "Z":
            pids.append(int(entry.name))
    return pids


def all_pairs_answer(cluster: Cluster) -> float:
    """Ping until every ordered pair of nodes has had one pod answer; seconds spent."""
    t0 = time.perf_counter()
    pods = [node.pods[0] for node in cluster.nodes]
    waiting = list(itertools.permutations(pods, 2))
    while waiting:
        if time.perf_counter() - t0 > GIVE_UP_S:
            names = [f"{a.name}->{b.name}" for a, b in waiting]
            raise RuntimeError(f"{cluster.cross_node}: no answer after {GIVE_UP_S:g} s: {names}")
        waiting = [
            (a, b)
            for a, b in waiting
            if a.ns.run(["ping", "-c1", "-W0.3", b.ip], check=False).returncode != 0
        ]
    return time.perf_counter() - t0


def one_round(mode: str) -> tuple[float, float]:
    """(build seconds, build + first ping on every pair seconds) for one fresh cluster."""
    t0 = time.perf_counter()
    spec = {"nodes": 3, "pods_per_node": 2, "router": True}
    with Cluster(
        "bench-crossnode", cross_node=mode, pod_network=POD_NETWORK_OF[mode], **spec
    ) as cluster:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)  # Cluster installed its own
        built = time.perf_counter() - t0
        all_pairs_answer(cluster)
        total = time.perf_counter() - t0
        prefix = cluster.prefix
    left = birds_of(prefix)
    if left:
        raise RuntimeError(f"teardown left BIRD running: pids {left}")
    return built, total


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_ROUNDS
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"3 nodes x 2 pods, nothing -> every node pair answers a ping; median of {rounds}")
    results: dict[str, tuple[float, float]] = {}
    for mode in MODES:
        samples = [one_round(mode) for _ in range(rounds)]
        results[mode] = (
            statistics.median(s[0] for s in samples),
            statistics.median(s[1] for s in samples),
        )
    base = results[BASELINE][1]
    print(f"{'mode':<10} {'build s':>8} {'to ping s':>10} {'x ' + BASELINE:>11}")
    for mode, (built, total) in results.items():
        print(f"{mode:<10} {built:8.3f} {total:10.3f} {total / base:10.1f}x")
    extra = results["bgp"][1] - base
    verdict = "ok" if extra < 2.0 else "OVER TARGET"
    print(f"BGP's extra cost over static routes: {extra:.2f} s (target < 2 s: {verdict})")
    print("teardown left no BIRD process in any round")


if __name__ == "__main__":
    main()
