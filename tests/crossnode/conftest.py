"""Shared helpers for the cross-node tests: one pod per node, every ordered pair of nodes."""

from __future__ import annotations

import itertools

from course.topology import Cluster, Pod
from grader.probes import Observation, ping


def first_pods(cluster: Cluster) -> list[Pod]:
    return [node.pods[0] for node in cluster.nodes]


def ping_pairs(
    cluster: Cluster, nodes: set[int] | None = None
) -> dict[tuple[str, str], Observation]:
    """Ping from the first pod of every node to the first pod of every other node."""
    pods = [p for p in first_pods(cluster) if nodes is None or p.node.index in nodes]
    return {(a.name, b.name): ping(a.ns, b.ip) for a, b in itertools.permutations(pods, 2)}


def failed(results: dict[tuple[str, str], Observation]) -> dict[tuple[str, str], str]:
    return {pair: obs.describe() for pair, obs in results.items() if not obs.ok}
