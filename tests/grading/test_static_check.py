"""The static check: exercise cells that use the topic's reference implementation score 0."""

from __future__ import annotations

import nbformat
from nbformat import NotebookNode

from grader.executor import reference_calls
from grader.labs import load_lab
from grader.nbtools import REPO, lab_ids

LAB02 = "02-bridge-vs-routed"
LAB06 = "06-kube-proxy"
# Exercise 1 of lab 02 done by the course's own bridge plugin.
BRIDGE_BY_REFERENCE = "setup_bridge_node = bridge.setup_node\nadd_bridge_pod = bridge.add_pod\n"


def solution(lab: str, replacements: dict[str, str] | None = None) -> list[NotebookNode]:
    nb = nbformat.read(REPO / "solutions" / lab / f"{lab}.ipynb", as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in (replacements or {}):
            cell.source = (replacements or {})[gid]
    return list(nb.cells)


def test_no_solution_uses_its_reference() -> None:
    for lab in lab_ids():
        assert reference_calls(solution(lab), load_lab(lab)) == {}, lab


def test_bridge_plugin_in_exercise_1_zeroes_exercise_1_only() -> None:
    found = reference_calls(solution(LAB02, {"ex1-solution": BRIDGE_BY_REFERENCE}), load_lab(LAB02))
    assert set(found) == {"check-ex1-switched", "check-ex1-gateway"}
    assert found["check-ex1-switched"] == [
        "course.podnet.bridge.setup_node",
        "course.podnet.bridge.add_pod",
    ]


def test_allowed_helpers_and_aliases_are_resolved() -> None:
    allowed = "name = bridge.host_veth_name('x')\n"
    assert reference_calls(solution(LAB02, {"ex1-solution": allowed}), load_lab(LAB02)) == {}
    aliased = "import course.podnet.routed as r\nadd_routed_pod = r.add_pod\n"
    found = reference_calls(solution(LAB02, {"ex2-solution": aliased}), load_lab(LAB02))
    assert set(found) == {"check-ex2-routed", "check-ex2-node"}


def test_proxier_in_lab_06_is_caught_in_later_checked_exercise() -> None:
    proxier = (
        "from course.kubeproxy import Proxier\n"
        "def service_rules(svc, endpoints):\n    return Proxier(None).rules()\n"
    )
    found = reference_calls(solution(LAB06, {"ex3-solution": proxier}), load_lab(LAB06))
    assert set(found) == {"check-ex3-names", "check-ex3-cascade", "check-ex3-spread"}
    assert "course.kubeproxy.Proxier" in found["check-ex3-names"]
    # exercise 1 has no check of its own: its functions are judged by exercise 3's
    early = "from course.kubeproxy.proxier import compute_probability as cascade\n"
    found = reference_calls(solution(LAB06, {"ex1-solution": early}), load_lab(LAB06))
    assert "check-ex3-cascade" in found


HIDDEN = {  # exercise 1 of lab 02 handed to the course's bridge plugin, hidden from a reader
    "importlib": (
        "import importlib\nb = importlib.import_module('course.podnet.' + 'bridge')\n"
        "setup_bridge_node = b.setup_node\n",
        "course.podnet.bridge (named in a string)",
    ),
    "getattr": (
        "import course.podnet.bridge\nadd_bridge_pod = getattr(course.podnet.bridge, 'add_pod')\n",
        "course.podnet.bridge.add_pod",
    ),
    "sys.modules": (
        "import sys\nb = sys.modules[f'course.podnet.bridge']\nadd_bridge_pod = b.add_pod\n",
        "course.podnet.bridge (named in a string)",
    ),
    "computed __import__": (
        "name = ''.join(reversed('egdirb.tendop.esruoc'))\n"
        "b = __import__(name, fromlist=['add_pod'])\nadd_bridge_pod = b.add_pod\n",
        "__import__() of a computed name",
    ),
    "computed getattr": (
        "import course.podnet\nwhat = 'bri' + input()\nb = getattr(course.podnet, what)\n",
        "getattr(course.podnet, ...) of a computed name",
    ),
    "exec": ("exec(open('/tmp/helper.py').read())\n", "exec() (code the static check cannot read)"),
}


def test_hidden_uses_of_the_reference_are_caught() -> None:
    lab = load_lab(LAB02)
    for how, (source, named) in HIDDEN.items():
        found = reference_calls(solution(LAB02, {"ex1-solution": source}), lab)
        assert set(found) == {"check-ex1-switched", "check-ex1-gateway"}, how
        assert any(named in use for use in found["check-ex1-switched"]), (how, found)


def test_an_alias_bound_in_another_cell_is_followed() -> None:
    cells = solution(LAB02, {"ex1-solution": "add_bridge_pod = b.add_pod\n"})
    cells.insert(0, nbformat.v4.new_code_cell("import course.podnet\nb = course.podnet.bridge\n"))
    found = reference_calls(cells, load_lab(LAB02))
    assert "course.podnet.bridge.add_pod" in found["check-ex1-switched"]


def test_dynamic_python_outside_the_reference_is_not_flagged() -> None:
    honest = (
        "import json\nfield = 'na' + 'me'\nvalue = getattr(json, 'dumps')({field: 1})\n"
        "mod = __import__('json')\ntext = 'course.podnet.bridge is the reference, read it'\n"
    )
    found = reference_calls(solution(LAB02, {"ex1-solution": honest}), load_lab(LAB02))
    assert found == {}, found
