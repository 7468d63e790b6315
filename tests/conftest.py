"""Suite-wide guarantees: the suite runs as root, and it leaves the host exactly as it found it.

The island check snapshots the host's own network namespace (links, addresses, routes,
iptables, nftables, the list of named namespaces and the sysctls labs use) before the first
test and compares after the last one. Any difference fails the run.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
from pathlib import Path

import pytest

_BEFORE = pytest.StashKey[dict[str, str]]()

HOST_SYSCTLS = [
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.rp_filter",
    "net.ipv4.conf.all.proxy_arp",
    "net.bridge.bridge-nf-call-iptables",
]


def _run(argv: list[str]) -> str:
    out = subprocess.run(argv, capture_output=True, text=True)
    return out.stdout + out.stderr


def host_snapshot() -> dict[str, str]:
    """What the host namespace looks like, with counters and timers removed."""
    snap = {
        "links": _run(["ip", "-br", "link"]),
        "addresses": _run(["ip", "-br", "addr"]),
        "routes": _run(["ip", "route", "show", "table", "all"]),
        "routes6": _run(["ip", "-6", "route", "show", "table", "all"]),
        "iptables": _run(["iptables-save"]),
        "nft": _run(["nft", "list", "ruleset"]),
        "netns": _run(["ip", "netns", "list"]),
    }
    snap["iptables"] = re.sub(r"^#.*\n", "", snap["iptables"], flags=re.M)
    snap["iptables"] = re.sub(r"\[\d+:\d+\]", "[0:0]", snap["iptables"])
    snap["nft"] = re.sub(r"counter packets \d+ bytes \d+", "counter", snap["nft"])
    snap["routes6"] = re.sub(r"expires \d+sec", "", snap["routes6"])
    snap["netns"] = re.sub(r" \(id: \d+\)", "", snap["netns"])
    for key in HOST_SYSCTLS:
        path = "/proc/sys/" + key.replace(".", "/")
        snap[key] = Path(path).read_text() if os.path.exists(path) else "absent"
    return snap


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Snapshot the host once, in the process that owns the whole run.

    With pytest-xdist the workers run the tests and this (controller) process only collects
    their reports, so the snapshot brackets every worker's tests: taking it per worker would
    see the other workers' namespaces come and go.
    """
    if _is_xdist_worker(session.config):
        return
    if os.geteuid() != 0:
        pytest.exit("the k8s-netlabs suite builds real namespaces: run it as root", returncode=2)
    session.config.stash[_BEFORE] = host_snapshot()


def island_diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    diffs = []
    for key in before:
        if before[key] != after[key]:
            diff = difflib.unified_diff(
                before[key].splitlines(), after[key].splitlines(), "before", "after", lineterm=""
            )
            diffs.append(f"host {key} changed:\n" + "\n".join(diff))
    return diffs


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Every lab is an island: the host namespace must be identical after the suite."""
    before = session.config.stash.get(_BEFORE, None)
    if before is None:
        return
    diffs = island_diff(before, host_snapshot())
    if diffs:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = "the test suite changed the host's network namespace:\n" + "\n".join(diffs)
        if reporter is not None:
            reporter.write_sep("=", "island check FAILED", red=True)
            reporter.write_line(text)
        else:
            print(text)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
