"""The `%%ns` magic and quiet failures in a real Jupyter kernel, driven like JupyterLab.

One kernel runs a small notebook: the setup cell (`start_lab`), shell cells that work, fail,
time out or name a role that does not exist, a failed check, and a cell that starts a
server run twice. What the learner sees is read back from the cells' outputs.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from course.kernel import list_netns
from course.notebook import reap_leftovers

pytestmark = pytest.mark.slow

CELLS = {
    "setup": (
        "import os\n"
        "from course.notebook import start_lab\n"
        "from grader.nb import check\n"
        "cluster = start_lab('01-netns-veth')\n"
        "print(os.stat(f'/run/netns/{cluster.prefix}-node1').st_ino)\n"
        "print(cluster.prefix)"
    ),
    "addr": "%%ns node1\nip -br addr show lo\nreadlink /proc/self/ns/net",
    "fails": "%%ns node1\necho on-stdout\necho on-stderr >&2\nexit 2",
    "unknown": "%%ns node9\ntrue",
    "slow": "%%ns node1 --timeout 0.5\necho begun\nsleep 20",
    "check": "check('01-netns-veth', 'ex1-pod-namespace')",
    "server": "srv = cluster.node(1).ns.popen(['sleep', '300'])\nprint('server', srv.pid)",
    "server-again": "srv = cluster.node(1).ns.popen(['sleep', '300'])\nprint('server', srv.pid)",
    "bg": "%%ns node1\nsleep 300 &\necho bg $!",
    "bg-again": "%%ns node1\nsleep 300 &\necho bg $!",
    "stub": "%%ns node1\n# YOUR CODE HERE\nraise NotImplementedError()",
    "after": "print('still running')",
}


@pytest.fixture(scope="module")
def cells() -> dict[str, Any]:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src, metadata={"key": key}) for key, src in CELLS.items()]
    env = {k: v for k, v in os.environ.items() if k != "NBGRADER_EXECUTION"}
    client = NotebookClient(nb, kernel_name="python3", timeout=60, allow_errors=True)
    client.km = client.create_kernel_manager()
    client.km.extra_env = env  # type: ignore[attr-defined]
    client.execute()
    return {c.metadata["key"]: c for c in nb.cells}


def stream(cell: Any, name: str) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == name)


def error(cell: Any) -> Any:
    errors = [o for o in cell.outputs if o.output_type == "error"]
    return errors[0] if errors else None


def test_a_shell_cell_runs_in_the_roles_namespace(cells: dict[str, Any]) -> None:
    # node1's inode, as the kernel saw it (the lab itself went with the kernel's shutdown)
    inode, _prefix = stream(cells["setup"], "stdout").strip().splitlines()[-2:]
    out = stream(cells["addr"], "stdout")
    assert out.startswith("lo ")
    assert f"net:[{inode}]" in out
    assert os.readlink("/proc/self/ns/net") not in out
    assert error(cells["addr"]) is None


def test_a_failing_shell_cell_shows_its_output_and_one_line(cells: dict[str, Any]) -> None:
    cell = cells["fails"]
    assert stream(cell, "stdout") == "on-stdout\n"
    assert stream(cell, "stderr") == "on-stderr\n"
    err = error(cell)
    assert err is not None and err.ename == "ShellCellFailed"
    assert len(err.traceback) == 1 and "node1: exit status 2" in err.traceback[0]


def test_an_unknown_role_lists_the_roles(cells: dict[str, Any]) -> None:
    text = json.dumps(cells["unknown"].outputs)
    assert "no role 'node9'" in text and "roles: node1" in text


def test_a_hanging_cell_is_stopped_with_a_message(cells: dict[str, Any]) -> None:
    cell = cells["slow"]
    assert stream(cell, "stdout") == "begun\n"
    assert "stopped after 0.5 s" in stream(cell, "stderr")
    assert "timed out" in error(cell).traceback[0]


def test_a_failed_check_is_its_verdict_and_one_line(cells: dict[str, Any]) -> None:
    cell = cells["check"]
    assert "[FAIL] there is no pod-a namespace" in stream(cell, "stdout")
    err = error(cell)
    assert err.ename == "CheckFailed"
    assert len(err.traceback) == 1, err.traceback
    assert "grader/nb.py" not in json.dumps(cell.outputs)


def test_a_cell_run_again_stops_what_it_started_last_time(cells: dict[str, Any]) -> None:
    first = int(stream(cells["server"], "stdout").split()[1])
    assert "stopped 1 process this cell started last time" in stream(
        cells["server-again"], "stdout"
    )
    assert not os.path.exists(f"/proc/{first}"), "stopped and reaped"
    first_bg = int(stream(cells["bg"], "stdout").split()[1])
    assert f"pid {first_bg}" in stream(cells["bg-again"], "stdout")
    assert stream(cells["after"], "stdout") == "still running\n"


def test_a_released_shell_exercise_says_it_is_not_written_yet(cells: dict[str, Any]) -> None:
    err = error(cells["stub"])
    assert err is not None and "still holds its placeholder" in err.traceback[0]
    assert "syntax error" not in json.dumps(cells["stub"].outputs)


def test_run_all_stops_at_a_failing_shell_cell() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(CELLS["setup"]),
        nbformat.v4.new_code_cell(CELLS["fails"]),
        nbformat.v4.new_code_cell("print('not reached')"),
    ]
    with pytest.raises(CellExecutionError, match="exit status 2"):
        NotebookClient(nb, kernel_name="python3", timeout=60).execute()
    assert nb.cells[2].outputs == []
    prefix = nb.cells[0].outputs[-1].text.strip().splitlines()[-1]
    reap_when_gone(prefix)


def reap_when_gone(prefix: str) -> None:
    """nbclient may kill a failed notebook's kernel (no atexit): what start_lab would reap."""
    deadline = time.monotonic() + 10
    while list_netns(prefix + "-") and time.monotonic() < deadline:
        reap_leftovers("01-netns-veth")
        time.sleep(0.2)
    assert list_netns(prefix + "-") == []
