"""Which namespace a role names in a lab run, and which runs are alive to be entered.

A role is what the checks call a namespace: `node1`, `router`, `underlay`, `client`,
`pod-a` in lab 01, `node1-a` for the cluster's pod a on node 1. The namespace is
`<run prefix>-<role>`, exactly as `grader.labs.CheckContext.ns(role)` builds it, so a
`%%ns node1` cell, `k8snet shell node1` and a check of `node1` look at the same namespace.
Pods built by a `Cluster` are `node<N>-<pod>`; they also answer to `<pod>` and `pod-<pod>`,
the names a learner thinks in, unless a namespace has exactly that role.
"""

from __future__ import annotations

import re
from pathlib import Path

from course.runs import PREFIX, RunRecord, load_runs

NETNS_DIR = Path("/run/netns")
_CLUSTER_POD = re.compile(r"^node\d+-(?P<pod>.+)$")


class UnknownRole(LookupError):
    """No namespace of the run has that role; the message lists the roles that exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown role"


def roles(record: RunRecord) -> list[str]:
    """The roles of a run whose namespaces exist now, in the order they were made."""
    cut = len(record.prefix) + 1
    return [
        name[cut:]
        for name in dict.fromkeys(record.namespaces)
        if name.startswith(record.prefix + "-") and (NETNS_DIR / name).exists()
    ]


def aliases(record: RunRecord) -> dict[str, str]:
    """Friendly names of the cluster's pods: `a` and `pod-a` for role `node1-a`."""
    exact = set(roles(record))
    found: dict[str, str] = {}
    for role in exact:
        match = _CLUSTER_POD.match(role)
        if match:
            for alias in (match["pod"], f"pod-{match['pod']}"):
                if alias not in exact:
                    found[alias] = role
    return found


def resolve(record: RunRecord, role: str) -> str:
    """The namespace name for `role` in this run; UnknownRole lists what exists."""
    known = roles(record)
    if role in known:
        return f"{record.prefix}-{role}"
    alias = aliases(record).get(role)
    if alias is not None:
        return f"{record.prefix}-{alias}"
    raise UnknownRole(unknown_role_message(record, role))


def unknown_role_message(record: RunRecord, role: str) -> str:
    known = roles(record)
    if not known:
        return (
            f"no role {role!r}: run {record.prefix} of {record.lab} has no namespace left "
            "(run the setup cell again, or `k8snet up LAB`)"
        )
    friendly = sorted(aliases(record))
    also = f"; pods also answer to {', '.join(friendly)}" if friendly else ""
    return (
        f"no role {role!r} in run {record.prefix} ({record.lab}); roles: {', '.join(known)}{also}"
    )


def is_live(record: RunRecord) -> bool:
    """A run someone still holds (a kernel, or `k8snet up`) with a namespace left to enter."""
    return (record.detached or record.owner_alive()) and bool(roles(record))


def newest_live_run(lab: str | None = None) -> RunRecord | None:
    """The most recently changed live run under this K8SNET_NS_PREFIX (of `lab`, if given)."""
    live = [
        rec
        for rec in load_runs()
        if rec.prefix.startswith(PREFIX + "-") and (lab is None or rec.lab == lab) and is_live(rec)
    ]
    return max(live, key=_changed, default=None)


def _changed(record: RunRecord) -> int:
    try:
        return record.path.stat().st_mtime_ns
    except OSError:  # removed a moment ago
        return 0
