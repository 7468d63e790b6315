"""ADD then DEL of 50 pods through the course CNI runtime: course plugin against Debian's.

Both plugins get the same conflist (bridge cni0, isGateway, hairpinMode, host-local IPAM,
a default route) on the same node namespace, through the same runtime, in one run:
  debian  - /usr/lib/cni/bridge (Go, containernetworking-plugins 1.1.1): the baseline
  course  - k8snet-bridge (course/cni/bridge.py, Python, installed by `k8snet cni install`)
Both delegate IPAM to the same Debian `host-local`. Rounds alternate the two plugins, and the
bridge is deleted before each round so both pay for creating it once. Reported: the median
time of one ADD and one DEL (the plugin process, as the runtime measured it), the wall time
of the whole 50-pod round, and the ratio course / debian (target: within 3x).

Run as root: .venv/bin/python benchmarks/cni.py [--pods N] [--rounds R]
Everything lives in lab namespaces and a temporary folder, removed on exit, Ctrl-C, SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from course.cni.install import install
from course.cni.runtime import DEBIAN_PLUGIN_DIR, Attachment, Runtime, bridge_conflist
from course.kernel import Netns
from course.topology import Cluster

TARGET_RATIO = 3.0
PLUGINS = {"debian": "bridge", "course": "k8snet-bridge"}


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the `with` blocks: namespaces and files go


def one_round(
    node: Netns, pods: list[Netns], plugin_dir: Path, state: Path, plugin: str
) -> dict[str, float | list[float]]:
    """ADD every pod, then DEL every pod; times per call and for the whole round."""
    if node.has_link("cni0"):
        node.delete_link("cni0")
    rt = Runtime(node.path, [plugin_dir, DEBIAN_PLUGIN_DIR], state / "cache")
    conf = bridge_conflist(1, state / "networks", plugin_type=plugin)
    atts = [Attachment(pod.name, str(pod.path)) for pod in pods]
    started = time.perf_counter()
    for att in atts:
        rt.add(conf, att)
    added = time.perf_counter()
    for att in atts:
        rt.delete(conf, att)
    ended = time.perf_counter()
    adds = [c.seconds for c in rt.calls if c.command == "ADD"]
    dels = [c.seconds for c in rt.calls if c.command == "DEL"]
    return {"add": adds, "del": dels, "add_wall": added - started, "del_wall": ended - added}


def main(pods: int, rounds: int) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    with (
        tempfile.TemporaryDirectory(prefix="k8snet-cni-bench-") as tmp,
        Cluster("sandbox", nodes=1, pod_network=None, underlay=False) as cluster,
    ):
        signal.signal(signal.SIGTERM, _exit_on_sigterm)  # Cluster installed its own
        plugin_dir = Path(tmp) / "bin"
        install(plugin_dir)
        node = cluster.node(1).ns
        pod_ns = [cluster.netns(f"p{k}") for k in range(pods)]
        samples: dict[str, dict[str, list[float]]] = {
            who: {"add": [], "del": [], "add_wall": [], "del_wall": []} for who in PLUGINS
        }
        for r in range(rounds):
            order = list(PLUGINS) if r % 2 == 0 else list(reversed(PLUGINS))
            for who in order:
                state = Path(tmp) / f"{who}-{r}"
                got = one_round(node, pod_ns, plugin_dir, state, PLUGINS[who])
                for key, value in got.items():
                    samples[who][key] += value if isinstance(value, list) else [value]
        report(samples, pods, rounds)
    return 0


def report(samples: dict[str, dict[str, list[float]]], pods: int, rounds: int) -> None:
    print(f"CNI ADD+DEL of {pods} pods, {rounds} rounds, same runtime, node and conflist")
    print(f"  {'':26} {'debian (Go)':>12} {'course (Py)':>12} {'ratio':>7}")
    worst = 0.0
    for key, label in (("add", "ADD, median per pod"), ("del", "DEL, median per pod")):
        d = statistics.median(samples["debian"][key]) * 1000
        c = statistics.median(samples["course"][key]) * 1000
        worst = max(worst, c / d)
        print(f"  {label:26} {d:9.1f} ms {c:9.1f} ms {c / d:6.2f}x")
    for key, label in (("add_wall", "ADD all pods (wall)"), ("del_wall", "DEL all pods (wall)")):
        d = statistics.median(samples["debian"][key])
        c = statistics.median(samples["course"][key])
        print(f"  {label:26} {d:10.2f} s {c:10.2f} s {c / d:6.2f}x")
    verdict = "within" if worst <= TARGET_RATIO else "OVER"
    print(f"  worst per-operation ratio {worst:.2f}x: {verdict} the {TARGET_RATIO:g}x target")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    sys.exit(main(args.pods, args.rounds))
