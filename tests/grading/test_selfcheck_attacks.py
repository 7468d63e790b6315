"""Issue 14's attacks against the learner's self-check (`k8snet check`, no sandbox).

Without a sandbox the kernel is root on the same machine as the verifier: it can see it,
kill it, and write to its files. What the grader promises there is weaker but still
definite: no points from it, and the interference is named in every later verdict.
"""

from __future__ import annotations

import json
import os
import site
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader import integrity
from grader.grading import self_check
from grader.nbtools import REPO
from tests.grading import attacks
from tests.nbharness import find_cell

pytestmark = pytest.mark.slow
FIXTURES = REPO / "tests" / "fixtures"
SOLUTION = FIXTURES / "solutions" / "00-fixture" / "00-fixture.ipynb"
DO_EX1 = (
    'subprocess.run(["ip", "netns", "add", pod_name], check=True)\n'
    'subprocess.run(["ip", "-n", pod_name, "link", "set", "lo", "up"], check=True)\n'
)


@pytest.fixture(autouse=True)
def fixture_labs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K8SNET_EXTRA_LABS", str(FIXTURES / "labs"))


@pytest.fixture
def site_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A scratch folder the grading process takes for its site-packages (so a hook planted
    there is one the integrity check must notice, and no concurrent test is touched)."""
    folder = tmp_path / "site-packages"
    folder.mkdir()
    real = site.getsitepackages
    monkeypatch.setattr(site, "getsitepackages", lambda: [str(folder), *real()])
    yield folder


def write(tmp_path: Path, replacements: dict[str, str]) -> Path:
    nb = json.loads(SOLUTION.read_text())
    for grade_id, source in replacements.items():
        find_cell(nb, grade_id)["source"] = source
    path = tmp_path / "00-fixture.ipynb"
    path.write_text(json.dumps(nb))
    return path


def test_killed_verifier_and_planted_hook_flag_every_later_check(
    tmp_path: Path, site_dir: Path
) -> None:
    attack = attacks.PLANT_AND_KILL.replace("@SITE@", str(site_dir))
    nb = write(tmp_path, {"ex1-solution": DO_EX1 + attack})
    outcomes = self_check("00-fixture", nb)
    assert (site_dir / "sitecustomize.py").exists()  # no sandbox: planting worked
    for o in outcomes:
        assert not o.verdict.passed
        assert "grading was interfered with" in o.verdict.summary, o.verdict.render()
    assert "the verifier process" in outcomes[0].verdict.observed
    # the planted hook alone (verifier alive) is noticed too
    plant = f"open({str(site_dir / 'another.pth')!r}, 'w').write('import os')\n"
    hooked = self_check("00-fixture", write(tmp_path, {"ex1-solution": DO_EX1 + plant}))
    assert "new start-up hook" in hooked[0].verdict.observed, hooked[0].verdict.render()
    (site_dir / "another.pth").unlink()
    # with the hook still planted, the next notebook is graded by a fresh verifier (-I -S,
    # from its own copy): the untouched release scores nothing, the solution everything
    release = write(tmp_path, {"ex1-solution": "pass", "answer-q1": "pass"})
    assert [o.points for o in self_check("00-fixture", release)] == [0, 0]
    assert sum(o.points for o in self_check("00-fixture", SOLUTION)) == 3


def test_verifier_copy_edited_keeping_size_and_mtime_is_noticed(tmp_path: Path) -> None:
    nb = write(tmp_path, {"ex1-solution": attacks.EDIT_VERIFIER_COPY})
    outcomes = self_check("00-fixture", nb)
    first = outcomes[0].verdict
    assert not first.passed and "grading was interfered with" in first.summary
    assert "verdict.py" in first.observed


def test_verifier_finds_tools_only_in_system_folders(tmp_path: Path) -> None:
    """A fake `iptables-save` earlier in PATH (or in /usr/local) is never what a check runs."""
    copy = integrity.make_copy()
    try:
        env = integrity.verifier_env(copy)
        assert env["PATH"] == integrity.FIXED_PATH
        assert "/usr/local" not in env["PATH"]
        assert integrity.tool("iptables-save").startswith(("/usr/sbin/", "/usr/bin/", "/sbin/"))
        assert any(p.endswith("xtables-nft-multi") or "iptables" in p for p in copy.files)
    finally:
        integrity.remove_copy(copy)


def test_the_bytecode_the_verifier_runs_is_in_the_manifest() -> None:
    """The copy carries each module's valid .pyc (what Python runs instead of the .py) and
    the standard library's .pyc are hashed too, so a rewritten .pyc fails the next verdict."""
    import importlib.util
    import json.decoder

    copy = integrity.make_copy()
    try:
        scapy_pyc = [p for p in copy.files if "/scapy/__pycache__/" in p]
        assert scapy_pyc and all(p.startswith(str(copy.root)) for p in scapy_pyc)
        stdlib_pyc = importlib.util.cache_from_source(json.decoder.__file__)
        if os.path.exists(stdlib_pyc):
            assert stdlib_pyc in copy.files
        assert copy.changed() == []
        assert copy.changed() == []  # stamps known: nothing hashed again, nothing changed
    finally:
        integrity.remove_copy(copy)


def test_a_changed_tool_or_library_file_is_noticed_even_with_size_and_mtime_kept(
    tmp_path: Path,
) -> None:
    tool = tmp_path / "iptables-save"
    tool.write_bytes(b"#!/bin/sh\necho real\n")
    hooks = {integrity.HOOK_MARK + h: "present" for h in integrity.startup_hooks()}
    copy = integrity.Integrity(tmp_path, {str(tool): integrity._sha256(tool), **hooks})
    assert copy.changed() == []
    st = tool.stat()
    tool.write_bytes(b"#!/bin/sh\necho fake\n")  # same size
    os.utime(tool, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert copy.changed() == [str(tool)]
