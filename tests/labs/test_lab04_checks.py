"""Lab 04's checks against real plugin files: the solution passes, and each known mistake
(a mutant of one function of the solution) is caught by the check meant for it, with the
message meant for it. No notebook, no nbgrader: the plugin file is written directly, the
way `lab.write_plugin(globals())` writes it from the learner's functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from course.cni.learner import CniLab, write_plugin_source
from course.labs import topology
from course.topology import Cluster
from grader.labs import CheckContext
from grader.labs.lab04 import LAB, LAB_ID
from grader.verdict import Verdict
from tests.nbharness import REPO, run_check, verdict_caught

NOTEBOOK = REPO / "solutions" / LAB_ID / f"{LAB_ID}.ipynb"
CELLS = ("ex1-solution", "ex2-ipam-solution", "ex2-solution", "ex3-solution", "ex4-solution")
GIVEN = ("ex2-fixed-ipam",)  # the stand-in IPAM of exercise 2a (a given cell)


def solution_sources() -> dict[str, str]:
    """The solution's function sources, by exercise cell (and given cell), markers removed."""
    nb = json.loads(NOTEBOOK.read_text())
    out = {}
    for cell in nb["cells"]:
        gid = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if gid in CELLS + GIVEN:
            src = "".join(cell["source"])
            out[gid] = "\n".join(line for line in src.splitlines() if "### " not in line)
    return out


SOLUTION = solution_sources()
# exercise 2a: the plugin as it is before 2b, cmd_add on the stand-in IPAM (10.244.1.50)
FIXED = {**SOLUTION, "ex2-ipam-solution": SOLUTION["ex2-fixed-ipam"]}


def mutate(cell: str, old: str, new: str, base: dict[str, str] = SOLUTION) -> dict[str, str]:
    assert old in base[cell], f"{old!r} not in {cell}"
    return {**base, cell: base[cell].replace(old, new)}


MUTANTS = {
    # step 4 not done in the kernel (neither address nor routes), the result promises both
    "fixed-no-address": mutate(
        "ex2-solution",
        'ip("addr", "add", address, "dev", ifname, netns=netns)\n'
        '        for route in got.get("routes", []):',
        "pass\n        for route in []:",
        base=FIXED,
    ),
    "fixed-no-gateway": mutate(
        "ex2-solution", 'if conf.get("isGateway"):', "if False:", base=FIXED
    ),
    "version-without-supported": mutate(
        "ex1-solution", '"supportedVersions": ["1.0.0"]', '"versions": ["1.0.0"]'
    ),
    "error-text-exit-0": mutate(
        "ex1-solution",
        "        print(json.dumps(error))\n        sys.exit(1)",
        '        print(f"error: {err.msg}")\n        return',
    ),
    "ignores-ifname": mutate(
        "ex2-solution",
        'netns, ifname = os.environ["CNI_NETNS"], os.environ["CNI_IFNAME"]\n    bridge',
        'netns, ifname = os.environ["CNI_NETNS"], "eth0"\n    bridge',
    ),
    "no-default-route": mutate(
        "ex2-solution", 'for route in got.get("routes", []):', "for route in []:"
    ),
    "not-on-bridge": mutate(
        "ex2-solution",
        'ip("link", "set", host, "master", bridge, "up")\n    if conf.get("hairpinMode"):',
        'ip("link", "set", host, "up")\n    if False:',
    ),
    "result-without-ips": mutate(
        "ex2-solution", '"ips": [{"address": address, "gateway": gateway, "interface": 2}],', ""
    ),
    "result-without-interfaces": mutate(
        "ex2-solution",
        '"interfaces": [\n            {"name": bridge',
        '"links": [\n            {"name": bridge',
    ),
    "result-wrong-version": mutate(
        "ex2-solution", '"cniVersion": conf["cniVersion"],', '"cniVersion": "0.4.0",'
    ),
    "add-hangs": mutate(  # a plugin that never answers: cut after the runtime's 5 s
        "ex2-solution",
        '    bridge = conf.get("bridge", "cni0")',
        '    subprocess.run(["sleep", "60"])\n    bridge = conf.get("bridge", "cni0")',
    ),
    "second-add-takes-over": mutate(
        "ex2-solution",
        'raise CNIError(999, f"{ifname} already exists in {netns}")',
        'ip("link", "del", ifname, netns=netns)',
    ),
    "del-fails-netns-gone": mutate(
        "ex3-solution",
        "    if netns and os.path.exists(netns):",
        '    if not os.path.exists(netns):\n        raise CNIError(3, f"{netns} is gone")\n'
        "    if netns:",
    ),
    "del-leaks": mutate("ex3-solution", '    ipam("DEL", stdin)', "    pass"),
    "del-keeps-veth": mutate(  # releases the address, leaves the interface
        "ex3-solution",
        'ip("link", "del", ifname, netns=netns)  # the node\'s end goes with it',
        "pass",
    ),
    "del-skips-ipam-when-netns-gone": mutate(
        "ex3-solution",
        "    if netns and os.path.exists(netns):",
        "    if netns and not os.path.exists(netns):\n        return None\n    if netns:",
    ),
    "failed-add-keeps-address": mutate(  # allocates first, fails, never releases
        "ex2-solution",
        '        raise CNIError(999, f"{ifname} already exists in {netns}")',
        '        ipam("ADD", stdin)\n        raise CNIError(999, f"{ifname} already exists in {netns}")',
    ),
    "check-always-passes": mutate(  # only asks host-local, which still holds the address
        "ex4-solution",
        '    prev = conf.get("prevResult")',
        '    ipam("CHECK", stdin)\n    return None\n    prev = conf.get("prevResult")',
    ),
}


@pytest.fixture(scope="module")
def lab() -> Iterator[CniLab]:
    with Cluster(LAB_ID, **topology(LAB_ID)) as c:
        yield CniLab(c)


def run(lab: CniLab, sources: dict[str, str], check_id: str) -> Verdict:
    write_plugin_source(lab.plugin, [sources[c] for c in CELLS])
    return run_check(LAB_ID, lab.cluster, check_id)


def caught(verdict: Verdict, summary: str, *details: str) -> None:
    verdict_caught(verdict, summary, *details)
    assert verdict.observed, verdict.render()


@pytest.mark.parametrize("check_id", ["ex1-version", "ex2-add", "ex3-del", "ex4-check"])
def test_solution_passes(lab: CniLab, check_id: str) -> None:
    assert run(lab, SOLUTION, check_id).passed


def test_fixed_address_step_passes_before_and_after_host_local(lab: CniLab) -> None:
    """Exercise 2a's check takes the stand-in's 10.244.1.50 and, re-run after 2b, host-local's."""
    verdict = run(lab, FIXED, "ex2-fixed")
    assert verdict.passed and "10.244.1.50/24" in verdict.summary, verdict.render()
    assert run(lab, SOLUTION, "ex2-fixed").passed


def test_no_plugin_file(lab: CniLab) -> None:
    lab.plugin.unlink(missing_ok=True)
    c = lab.cluster
    ctx = CheckContext(LAB_ID, c.prefix, tuple(c.record.namespaces), {})
    caught(LAB.check("ex2-add").run(ctx), "there is no plugin file")


CASES = [
    (
        "fixed-no-address",
        "ex2-fixed",
        "the result's address is not on the pod's interface",
        ("the result says 10.244.1.50/24", "CNI_COMMAND=ADD"),
    ),
    ("fixed-no-gateway", "ex2-fixed", "node cannot reach 10.244.1.50", "isGateway"),
    ("version-without-supported", "ex1-version", "VERSION is not answered", "supportedVersions"),
    ("error-text-exit-0", "ex1-version", "no proper error", "exit 0"),
    ("ignores-ifname", "ex2-add", "ADD ignored CNI_IFNAME", "CNI_IFNAME=net1"),
    (  # the verdict shows the ADD call that built the pod, and what its result said
        "no-default-route",
        "ex2-add",
        "pod a has no default route",
        (
            "routes: 10.244.1.0/24 dev eth0; the result's routes: [{'dst': '0.0.0.0/0'}]",
            "CNI_IFNAME=eth0",
        ),
    ),
    ("not-on-bridge", "ex2-add", "not a port of cni0", ("veths outside cni0", "CNI_COMMAND=ADD")),
    ("result-without-ips", "ex2-add", "ADD broke the CNI protocol", "'ips' is missing"),
    (
        "result-without-interfaces",
        "ex2-add",
        "ADD broke the CNI protocol",
        "'interfaces' is missing",
    ),
    ("result-wrong-version", "ex2-add", "ADD broke the CNI protocol", "cniVersion is '0.4.0'"),
    ("add-hangs", "ex2-add", "ADD broke the CNI protocol", "did not finish within 5 s"),
    (
        "second-add-takes-over",
        "ex2-add",
        "second ADD of an existing interface succeeded",
        "CNI_IFNAME=eth0",
    ),
    ("del-fails-netns-gone", "ex3-del", "DEL failed (DEL pod c after its namespace", "CNI error 3"),
    ("del-keeps-veth", "ex3-del", "DEL left things behind", "eth0 in pod a"),
    (
        "del-skips-ipam-when-netns-gone",
        "ex3-del",
        "DEL with the namespace gone did not release the address",
        "CNI_COMMAND=DEL",
    ),
    (
        "failed-add-keeps-address",
        "ex2-add",
        "a failed ADD kept an address",
        "reservations before",
    ),
    (
        "del-leaks",
        "ex3-del",
        "DEL leaks addresses: ADD failed after 3 pods",
        "no IP addresses available",
    ),
    (
        "check-always-passes",
        "ex4-check",
        "CHECK passed with the pod's interface deleted",
        "CNI_COMMAND=CHECK",
    ),
]


@pytest.mark.parametrize(
    ("mutant", "check_id", "summary", "detail"), CASES, ids=[c[0] for c in CASES]
)
def test_mutant_is_caught(
    lab: CniLab, mutant: str, check_id: str, summary: str, detail: str | tuple[str, ...]
) -> None:
    details = (detail,) if isinstance(detail, str) else detail
    caught(run(lab, MUTANTS[mutant], check_id), summary, *details)


def test_checks_leave_no_bench_behind(lab: CniLab) -> None:
    from course.kernel import list_netns

    assert not [n for n in list_netns(lab.cluster.prefix) if "-chk" in n]
    assert not list(Path(lab.base).glob("chk*"))


def test_calling_the_course_plugin_is_flagged_statically() -> None:
    """Exercise code that hands ADD to course.cni.bridge earns nothing (grader.executor)."""
    import nbformat

    from grader.executor import reference_calls

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert reference_calls(nb.cells, LAB) == {}  # the solution uses only the workbench
    cell = next(c for c in nb.cells if c.get("id") == "ex2-solution")
    cell.source = (
        "from course.cni import bridge, skel\n\n\ndef cmd_add(conf, stdin):\n"
        "    return bridge.cmd_add(skel.parse_call(dict(os.environ), stdin))\n"
    )
    flagged = reference_calls(nb.cells, LAB)
    assert "check-ex2" in flagged and any("course.cni.bridge" in u for u in flagged["check-ex2"])
