"""The `class` image's answer-key withholding, run on the real grader/labs (no Docker needed).

docker/withhold_answers.py rewrites grader/labs/lab*.py for the class image. These tests run
it on a copy of every lab and prove: every question check is replaced by one that says "not
judged in this image"; none of the answer keys' definitions is left; every exercise check is
untouched (students still self-check their work); and the rewritten modules still import.
A new lab whose question checks the script cannot handle fails here, not in an instructor's
build.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from grader.labs import CheckContext

ROOT = Path(__file__).resolve().parents[2]
LAB_FILES = sorted(
    p for p in (ROOT / "grader" / "labs").glob("lab*.py") if re.fullmatch(r"lab\d+", p.stem)
)
DOCKERFILE = (ROOT / "Dockerfile").read_text()

sys.path.insert(0, str(ROOT / "docker"))
withhold_answers = importlib.import_module("withhold_answers")


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=LAB_FILES, ids=[p.stem for p in LAB_FILES])
def rewritten(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ModuleType, ModuleType, str]:
    path: Path = request.param
    original = importlib.import_module(f"grader.labs.{path.stem}")
    text, _removed = withhold_answers.withhold(path.read_text(), original)
    copy = tmp_path_factory.mktemp("class") / path.name
    copy.write_text(text)
    return original, load(copy, f"class_{path.stem}"), text


def test_same_checks_in_the_same_order(rewritten: tuple[ModuleType, ModuleType, str]) -> None:
    original, withheld, _ = rewritten
    before = [(c.id, c.grade_id, c.points, c.answers) for c in original.LAB.checks]
    after = [(c.id, c.grade_id, c.points, c.answers) for c in withheld.LAB.checks]
    assert after == before


def test_questions_say_not_judged_here(rewritten: tuple[ModuleType, ModuleType, str]) -> None:
    """Every question check with a module-level function is withheld; the others are made by
    a factory from the course's own model (lab 05), which is not a literal key."""
    original, withheld, _ = rewritten
    ctx = CheckContext(lab=withheld.LAB.id, prefix="nobody", namespaces=(), answers={"q1": "b"})
    named = {id(v) for v in vars(original).values()}
    for before, chk in zip(original.LAB.checks, withheld.LAB.checks, strict=True):
        if chk.answers and id(before.run) not in named:
            assert before.run.__closure__, f"{chk.id}: neither a named function nor a factory's"
        elif chk.answers:
            verdict = chk.run(ctx)
            text = verdict.render()
            assert not verdict.passed, f"{chk.id} must not pass without its key"
            assert "not judged in this image" in text and "instructor" in text, text


def test_exercise_checks_untouched(rewritten: tuple[ModuleType, ModuleType, str]) -> None:
    original, withheld, _ = rewritten
    for before, after in zip(original.LAB.checks, withheld.LAB.checks, strict=True):
        if not before.answers:
            assert after.run.__name__ == before.run.__name__
            assert after.run.__code__.co_code == before.run.__code__.co_code


def test_no_key_definition_left(rewritten: tuple[ModuleType, ModuleType, str]) -> None:
    """The keys' definitions are gone: question(...) calls, *_RIGHT constants, wrappers."""
    original, _, text = rewritten
    tree = ast.parse(text)
    calls = [
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    ]
    assert not [c for c in calls if c.endswith("question")], "a question(...) call is left"
    assert not re.search(r"^\w*RIGHT\w*\s*=", text, re.M), "an answer constant is left"
    for chk in original.LAB.checks:
        if chk.answers and chk.run.__doc__:
            assert chk.run.__doc__ not in text, f"{chk.id}'s check function is left"


def test_dockerfile_class_target_strips_solutions_tests_and_keys() -> None:
    """The class stage copies from a stage that removed them: no layer ever held them."""
    stage = DOCKERFILE.split("AS class-source", 1)[1].split("FROM runtime AS class", 1)[0]
    assert "rm -rf solutions tests" in stage
    assert "withhold_answers.py grader/labs" in stage
    final = DOCKERFILE.split("FROM runtime AS class", 1)[1]
    assert "COPY --from=class-source" in final and "COPY . " not in final
    assert "test ! -e solutions" in final
