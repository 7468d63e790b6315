"""kube-proxy rule generation against the kernel applying the same rules.

For 1,000 / 5,000 / 10,000 ClusterIP Services with 5 endpoints each, one run measures:
  generate - course.kubeproxy.Proxier.sync_proxy_rules(): Services + EndpointSlices ->
             the whole iptables-restore payload (the Python side of a kube-proxy sync)
  apply    - the real `iptables-restore --noflush` loading that payload into a fresh
             namespace (the kernel side of the same sync)
Each is the best of several rounds (the least disturbed by other work on the machine). Target (issue 6): generate < 25% of apply, i.e.
the reference implementation never dominates the cost of a sync.

Then the lab 06 distribution check (grader.kubeproxy_checks): 1,500 new connections from
a client pod to a 3-endpoint ClusterIP, counted and judged. Target: under 3 s.

Run as root: .venv/bin/python benchmarks/kubeproxy.py [sizes...]
"""

from __future__ import annotations

import ipaddress
import statistics
import sys
import time
import uuid

from _namespaces import bench_prefix, clean_up_on_exit, run

from course.kernel import Netns
from course.kubeproxy import Proxier, ProxierOptions
from course.kubeproxy.objects import (
    Endpoint,
    EndpointConditions,
    EndpointPort,
    EndpointSlice,
    Service,
    ServicePort,
)
from grader.kubeproxy_checks import DEFAULT_CONNECTIONS

SIZES = (1000, 5000, 10000)
ENDPOINTS = 5
TARGET = 0.25
GEN_ROUNDS = 5
APPLY_ROUNDS = 3  # for 1,000 Services; bigger sets are applied once (minutes each)
APPLY_TIMEOUT = 1800.0
# Every namespace of this run starts with it; killed or not, none outlives the run.
PREFIX = bench_prefix("kp")
SERVICE_BASE = int(ipaddress.IPv4Address("10.96.0.1"))
POD_BASE = int(ipaddress.IPv4Address("10.244.0.2"))


def make_objects(n: int) -> tuple[list[Service], list[EndpointSlice]]:
    """n Services (10.96.x.y:80 -> 8080), each with one slice of 5 ready endpoints."""
    services, slices = [], []
    ready = EndpointConditions(ready=True, serving=True, terminating=False)
    for i in range(n):
        name = f"svc-{i}"
        services.append(
            Service(
                namespace="bench", name=name,
                cluster_ip=str(ipaddress.IPv4Address(SERVICE_BASE + i)),
                ports=(ServicePort("http", "TCP", 80, 8080),), selector={"app": name},
            )
        )  # fmt: skip
        eps = tuple(
            Endpoint(
                addresses=(str(ipaddress.IPv4Address(POD_BASE + i * ENDPOINTS + k)),),
                conditions=ready, node_name=f"node{1 + k % 3}",
            )
            for k in range(ENDPOINTS)
        )  # fmt: skip
        slices.append(
            EndpointSlice(
                namespace="bench", name=f"{name}-abcde", service_name=name,
                endpoints=eps, ports=(EndpointPort("http", 8080, "TCP"),),
            )
        )  # fmt: skip
    return services, slices


def make_proxier(n: int) -> Proxier:
    proxier = Proxier(options=ProxierOptions(node_name="node1", cluster_cidr="10.244.0.0/16"))
    services, slices = make_objects(n)
    for svc in services:
        proxier.on_service_add(svc)
    for es in slices:
        proxier.on_endpoint_slice_add(es)
    return proxier


def time_generate(proxier: Proxier) -> tuple[float, str]:
    times, payload = [], ""
    for _ in range(GEN_ROUNDS):
        t0 = time.perf_counter()
        payload = proxier.sync_proxy_rules()
        times.append(time.perf_counter() - t0)
    return min(times), payload


def time_apply(payload: str, rounds: int) -> float:
    """What Netns.apply_iptables does, with a timeout long enough for big rule sets."""
    times = []
    for _ in range(rounds):
        ns = Netns.create(f"{PREFIX}-{uuid.uuid4().hex[:6]}")
        try:
            t0 = time.perf_counter()
            ns.run(["iptables-restore", "--noflush"], input=payload, timeout=APPLY_TIMEOUT)
            times.append(time.perf_counter() - t0)
            if "KUBE-SERVICES" not in ns.iptables_save("nat"):
                raise SystemExit("sanity: the payload did not land in the namespace")
        finally:
            ns.delete()
    return min(times)


def time_distribution_check() -> tuple[float, float, str]:
    """Build node1 with pods a, b, c (+ client d), sync kube-proxy's rules, time the check."""
    from course.kubeproxy.endpointslice import EndpointSliceController
    from course.kubeproxy.objects import ContainerPort, Pod
    from course.topology import Cluster
    from grader.kubeproxy_checks import Expectation, check_cluster_ip_distribution

    svc = Service(
        namespace="default", name="web", cluster_ip="10.96.0.10",
        ports=(ServicePort("http", "TCP", 80, 8080),), selector={"app": "web"},
    )  # fmt: skip
    with Cluster("06-kube-proxy", nodes=1, pods_per_node=4, underlay=False, prefix=PREFIX) as c:
        pods = [
            Pod("default", p.name, {"app": "web"}, "node1", p.ip, ready=True,
                ports=(ContainerPort("http", 8080),))
            for p in c.pods if p.name != "d"
        ]  # fmt: skip
        proxier = Proxier(c.node(1).ns, ProxierOptions("node1", cluster_cidr="10.244.0.0/16"))
        proxier.on_service_add(svc)
        for es in EndpointSliceController([svc], pods).endpoint_slices():
            proxier.on_endpoint_slice_add(es)
        proxier.sync()
        exp = Expectation("10.96.0.10", 80, 8080, {p.name: p.pod_ip for p in pods}, {})
        times, verdict = [], None
        for _ in range(3):  # the first includes starting the probe forkserver (Scapy import)
            t0 = time.perf_counter()
            verdict = check_cluster_ip_distribution(c.pod("d").ns, c.pod("d").ip, c.node(1).ns, exp)
            times.append(time.perf_counter() - t0)
        assert verdict is not None
        return times[0], statistics.median(times[1:]), verdict.render().splitlines()[0]


def main(sizes: tuple[int, ...]) -> int:
    clean_up_on_exit(PREFIX)
    print(f"kube-proxy iptables mode: {ENDPOINTS} endpoints per Service, "
          f"best of {GEN_ROUNDS} generations, {APPLY_ROUNDS} applies (1 above 1,000)")  # fmt: skip
    print(f"{'services':>9} {'rules':>8} {'generate':>10} {'apply':>10} {'gen/apply':>10}  target")
    ok = True
    for n in sizes:
        gen, payload = time_generate(make_proxier(n))
        rules = sum(line.startswith(("-A", "-X")) for line in payload.splitlines())
        apply = time_apply(payload, APPLY_ROUNDS if n <= 1000 else 1)
        ratio = gen / apply
        ok &= ratio < TARGET
        verdict = "ok" if ratio < TARGET else "MISSED"
        print(f"{n:>9} {rules:>8} {gen * 1000:>8.0f}ms {apply * 1000:>8.0f}ms {ratio:>9.1%}"
              f"  < {TARGET:.0%} {verdict}")  # fmt: skip
    print("generation stays under 25% of apply" if ok else "target missed")
    cold, warm, verdict = time_distribution_check()
    check_ok = warm < 3.0 and verdict.startswith("[PASS]")
    ok &= check_ok
    print(f"distribution check, {DEFAULT_CONNECTIONS} connections: {warm:.2f} s warm, {cold:.2f} s cold "
          f"(first probe starts the forkserver); target < 3 s {'ok' if check_ok else 'MISSED'}"
          f": {verdict}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    args = tuple(int(a) for a in sys.argv[1:]) or SIZES
    run(main, args)
