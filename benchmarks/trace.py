"""What tracing costs: one probe traced end to end against the same probe untraced.

Lab 05's topology (node1 with pod a on cni0, pod b on node2), every iptables table with its
built-in chains in node1, and a DNAT rule for a virtual IP, so the traced walk is a real
one (9 chains, a rule hit, a rule name looked up). In one run, alternating:
  untraced - grader.probes.tcp_syn from pod a to the virtual IP (Scapy SYN, reply sniffed)
  traced   - grader.tracing.trace_probe for the same probe, traced in node1: start the
             monitor, load the trace table, send, delete the table, read every event,
             name the rules (the whole cost a check or `k8snet trace` pays)
Reported: medians, the overhead (traced - untraced) per probe, the ratio, and where the
traced time goes (phases from Trace.timings). Target (issue 12): overhead under 300 ms.

Run as root: .venv/bin/python benchmarks/trace.py [--rounds N]
Everything lives in lab namespaces, removed on exit, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time
from types import FrameType

from course.labs import topology
from course.netfilter import declare_builtin_chains, path, trace_tables
from course.topology import Cluster
from grader import probes
from grader.tracing import trace_probe

TARGET_MS = 300.0
VIP, VPORT, PORT = "10.96.0.50", 80, 8080
SERVER = (
    "import socket\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    f"s.bind(('0.0.0.0', {PORT})); s.listen(64)\n"
    "while True:\n"
    "    c, _ = s.accept(); c.close()\n"
)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the `with` block: the namespaces go


def prepare(cluster: Cluster) -> None:
    node, b = cluster.node(1).ns, cluster.pod("b")
    b.exec([sys.executable, "-c", SERVER])
    declare_builtin_chains(node)
    node.run(["iptables", "-t", "nat", "-A", "PREROUTING", "-d", VIP, "-p", "tcp",
              "--dport", str(VPORT), "-j", "DNAT", "--to-destination", f"{b.ip}:{PORT}"])  # fmt: skip


def main(rounds: int) -> int:
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with Cluster("sandbox", **topology("05-netfilter-order")) as cluster:
        signal.signal(signal.SIGTERM, _exit_on_signal)  # Cluster installed its own
        prepare(cluster)
        node, a = cluster.node(1).ns, cluster.pod("a").ns
        probes.warm_up()
        probes.tcp_syn(a, VIP, VPORT)  # ARP and routes settled before measuring
        plain: list[float] = []
        traced: list[float] = []
        phases: dict[str, list[float]] = {}
        for r in range(rounds):
            for which in ("plain", "traced") if r % 2 == 0 else ("traced", "plain"):
                t0 = time.perf_counter()
                if which == "plain":
                    obs = probes.tcp_syn(a, VIP, VPORT)
                    plain.append((time.perf_counter() - t0) * 1000)
                    assert obs.ok, obs.describe()
                    continue
                t = trace_probe(node, a, VIP, VPORT, settle=0.0)
                traced.append((time.perf_counter() - t0) * 1000)
                assert t.result.ok and t.path() == path("forward"), t.render()
                for k, v in t.timings.items():
                    phases.setdefault(k, []).append(v)
        assert trace_tables(node) == [], "a trace table was left behind"
        report(plain, traced, phases, rounds)
    return 0


def report(
    plain: list[float], traced: list[float], phases: dict[str, list[float]], rounds: int
) -> None:
    p, t = statistics.median(plain), statistics.median(traced)
    over = t - p
    print(f"one TCP SYN probe, pod a -> {VIP}:{VPORT} (DNAT), {rounds} rounds each, alternating")
    print(f"  untraced probe          {p:8.1f} ms (median)")
    print(f"  traced, end to end      {t:8.1f} ms (median)")
    print(f"  tracing adds            {over:8.1f} ms per probe; ratio traced/untraced {t / p:.2f}x")
    print("  where the traced time goes (medians):")
    for name, values in phases.items():
        print(f"    {name:10} {statistics.median(values):8.1f} ms")
    verdict = "within" if over < TARGET_MS else "OVER"
    print(f"  overhead {over:.0f} ms: {verdict} the {TARGET_MS:.0f} ms target")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    try:
        sys.exit(main(parser.parse_args().rounds))
    except KeyboardInterrupt:  # the `with` block has already removed the namespaces
        sys.exit(130)
