"""The NodePort path's extra cost, and the time of lab 07's 1,000-connection check.

One lab 07 cluster (course.nodeport), one run, two ways to reach the same pods b and c on
node2 from the outside client 203.0.113.10:

  nodeport - client -> router -> node1:30080 (DNAT + masquerade) -> node2 -> pod
  direct   - client -> router -> node2 -> pod, to the pods' own addresses (the router is
             given routes to the pod ranges for this baseline only; the lab's router has none)

Each way opens 1,000 new TCP connections (200 in flight), each with a unique tag that the
pod echoes with the source address it saw, so every connection is counted *at a pod*.
Reported (best of 5 rounds, the two ways alternating): connections per second both ways, the NodePort path's extra cost per connection
and as a ratio, and the whole check as lab 07 runs it (1,000 tagged connections, every
answer and source checked, node1's conntrack read for 1,000 SNATs). Target: < 3 s.

Run as root: .venv/bin/python benchmarks/nodeport.py [connections]
Ctrl-C or SIGTERM tears the lab down (course.topology's handlers and `with`).
"""

from __future__ import annotations

import signal
import statistics
import sys
import time

from course import nodeport
from course.topology import Cluster
from grader.nodeport_checks import Bulk, bulk, snat_count
from grader.probes import warm_up

CONNECTIONS = 1000
ROUNDS = 5  # the two ways alternate which goes first; the best round of each counts
TARGET_SECONDS = 3.0
CLIENT_IP = "203.0.113.10"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds the `with Cluster(...)` block: teardown happens


def counted(result: Bulk, expect_seen: str | None) -> str:
    """Every connection answered by b or c, and (NodePort) every pod saw `expect_seen`."""
    if result.failed:
        raise SystemExit(f"{len(result.failed)} connections failed: {result.failed[:3]}")
    seen = result.sources_seen()
    if expect_seen is not None and set(seen) != {expect_seen}:
        raise SystemExit(f"the pods saw {seen}, expected only {expect_seen}")
    return ", ".join(f"{pod} {n}" for pod, n in result.by_pod().items())


def check_once(lab: nodeport.NodePortLab, count: int, sport_base: int) -> tuple[float, str]:
    """Lab 07's check: tagged connections, answers and sources, conntrack's SNATs."""
    c = lab.cluster
    assert c.client is not None
    node1 = c.node(1)
    t0 = time.perf_counter()
    result = bulk(c.client.ns, node1.ip, nodeport.NODE_PORT, count, sport_base)
    pods = counted(result, node1.ip)
    snats = snat_count(node1.ns, CLIENT_IP, nodeport.NODE_PORT, node1.ip)
    elapsed = time.perf_counter() - t0
    if snats < count:
        raise SystemExit(f"node1's conntrack shows {snats} SNATs for {count} connections")
    return elapsed, pods


def flush_conntrack(c: Cluster) -> None:
    for node in c.nodes:
        node.ns.run(["conntrack", "-F"], check=False)


def main(count: int) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    warm_up()
    with Cluster(nodeport.LAB_ID, **nodeport.TOPOLOGY) as c:
        lab = nodeport.build(c)
        assert c.client is not None and c.router is not None
        for node in c.nodes:  # the baseline's routes, inside the lab's router only
            c.router.ns.add_route(node.pod_cidr, via=node.ip)
        node1, b, c_pod = c.node(1), c.pod("b"), c.pod("c")
        np_times, direct_times, check_times = [], [], []
        np_pods = direct_pods = check_pods = ""
        for r in range(ROUNDS):
            base = 20000 + r * 3 * count
            flush_conntrack(c)
            ways = [("nodeport", node1.ip, nodeport.NODE_PORT), ("direct", [b.ip, c_pod.ip], 8080)]
            for k, (way, dst, port) in enumerate(ways if r % 2 == 0 else ways[::-1]):
                res = bulk(c.client.ns, dst, port, count, base + k * count)
                if way == "nodeport":
                    np_pods = counted(res, node1.ip)
                    np_times.append(res.seconds)
                else:
                    direct_pods = counted(res, None)
                    direct_times.append(res.seconds)
            flush_conntrack(c)
            elapsed, check_pods = check_once(lab, count, base + 2 * count)
            check_times.append(elapsed)
        lab.dns.stop()
    np_s, direct_s = min(np_times), min(direct_times)
    check_s = statistics.median(check_times)
    extra_ms = (np_s - direct_s) / count * 1000
    print(f"lab 07 NodePort path, {count} new tagged connections each way, best of {ROUNDS}")
    print(f"  every round (s): nodeport {_list(np_times)}; direct {_list(direct_times)}")
    print(f"  nodeport  client -> node1:30080 -> node2 -> pod  {np_s:6.3f} s "
          f"({count / np_s:6.0f}/s)  counted at the pods: {np_pods}")  # fmt: skip
    print(f"  direct    client -> node2 -> pod                 {direct_s:6.3f} s "
          f"({count / direct_s:6.0f}/s)  counted at the pods: {direct_pods}")  # fmt: skip
    print(f"  extra cost of the NodePort path: {extra_ms:+.3f} ms per connection, "
          f"ratio nodeport/direct {np_s / direct_s:.2f}")  # fmt: skip
    ok = check_s < TARGET_SECONDS
    print(f"  the whole check (connections + answers + sources + conntrack SNATs): "
          f"{check_s:.2f} s (median; runs {_list(check_times)}); "
          f"target < {TARGET_SECONDS:g} s {'ok' if ok else 'MISSED'}; pods: {check_pods}")  # fmt: skip
    return 0 if ok else 1


def _list(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else CONNECTIONS))
