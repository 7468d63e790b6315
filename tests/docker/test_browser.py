"""Browser test of the Docker self-study environment: what a learner sees in JupyterLab.

Run by docker/smoke.sh against the container it started, which sets K8SNET_DOCKER_URL and
K8SNET_DOCKER_TOKEN; skipped everywhere else (the normal suite, the image's `make test`).
Debian's chromium is driven by Playwright through `executable_path`: no browser download.

Why a browser and not only HTTP: the learner's path goes through JupyterLab's front end, its
token login, the kernel websocket and the notebook's own Python environment. A 200 from the
API proves none of these.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.docker

URL = os.environ.get("K8SNET_DOCKER_URL", "").rstrip("/")
TOKEN = os.environ.get("K8SNET_DOCKER_TOKEN", "")
if not URL or not TOKEN:
    pytest.skip(
        "needs a running container: docker/smoke.sh sets K8SNET_DOCKER_URL/K8SNET_DOCKER_TOKEN",
        allow_module_level=True,
    )

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("K8SNET_CHROMIUM", "/usr/bin/chromium")
# The chromium flags this machine needs: root (no sandbox), no GPU, and no background
# connections to Google's services, which a closed network refuses many at a time.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LAB01 = os.environ.get("K8SNET_DOCKER_LAB", "labs/01-netns-veth/01-netns-veth.ipynb")
LAB01_CODE_CELLS = int(os.environ.get("K8SNET_DOCKER_LAB_CELLS", "2"))
KERNEL_TIMEOUT_MS = 90_000
# The notebook in the active tab (JupyterLab hides the others with lm-mod-hidden).
VISIBLE_NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"


def api(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One authenticated call to Jupyter's REST API (for setup and cleanup, not for checks)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{URL}/api/{path}", data=data, method=method)
    request.add_header("Authorization", f"token {TOKEN}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def exists(path: str) -> bool:
    try:
        api("GET", f"contents/{path}?content=0")
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return False
        raise
    return True


def code_cell(source: str) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "metadata": {},
        "source": source,
        "outputs": [],
        "execution_count": None,
    }


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A logged-in JupyterLab tab: the printed address with `?token=` sets the login cookie.

    When a test fails, a screenshot goes to $K8SNET_DOCKER_ARTIFACTS (default /tmp) so a CI
    failure shows what the learner would have seen.
    """
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    # If JupyterLab asks which kernel to start, answer as a learner would: the default.
    ask = tab.locator(".jp-Dialog").filter(has_text="Select Kernel")
    tab.add_locator_handler(ask, lambda dialog: dialog.locator(".jp-mod-accept").click())
    tab.goto(f"{URL}/lab/tree/labs?token={TOKEN}")
    tab.wait_for_selector(".jp-DirListing-content")
    failed_before = request.session.testsfailed
    yield tab
    if request.session.testsfailed > failed_before:
        folder = os.environ.get("K8SNET_DOCKER_ARTIFACTS", "/tmp")
        shot = os.path.join(folder, f"k8snet-browser-{request.node.name}.png")
        tab.screenshot(path=shot)
        print(f"screenshot of the failure: {shot}")
    context.close()


@pytest.fixture()
def kernels_cleanup() -> Iterator[None]:
    """End the sessions (and so the kernels) a test started: a lab kernel holds namespaces.

    Sessions, not bare kernels: a session left pointing at a deleted kernel makes JupyterLab
    ask "Select Kernel" the next time the notebook opens.
    """
    before = {s["id"] for s in api("GET", "sessions")}
    yield
    for session in api("GET", "sessions"):
        if session["id"] not in before:
            api("DELETE", f"sessions/{session['id']}")


def run_cells(tab: Any, code_cells: int) -> list[str]:
    """Run the first `code_cells` code cells, in order, each selected and run in place.

    Returns the text of each cell's output area, after its execution count appeared (the
    kernel's reply), so a cell whose kernel never answered fails here. A key press that got
    lost (the prompt still shows `[ ]`, not the queued `[*]`) is pressed once more.
    """
    panel = tab.locator(VISIBLE_NOTEBOOK)
    panel.locator(".jp-Cell").first.wait_for()
    # Keys pressed before the kernel connected can be lost: wait for its idle indicator.
    panel.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for(
        timeout=KERNEL_TIMEOUT_MS
    )
    cells = panel.locator(".jp-Cell.jp-CodeCell")
    outputs: list[str] = []
    for index in range(code_cells):
        cell = cells.nth(index)
        cell.wait_for()  # JupyterLab renders long notebooks progressively
        prompt = cell.locator(".jp-InputArea-prompt")
        for _attempt in range(2):
            cell.locator(".jp-InputPrompt").click()
            tab.keyboard.press("Control+Enter")
            try:
                sync_api.expect(prompt).not_to_have_text(re.compile(r"^\[ \]"), timeout=5_000)
                break
            except AssertionError:
                continue
        sync_api.expect(prompt).to_have_text(re.compile(r"\[\d+\]"), timeout=KERNEL_TIMEOUT_MS)
        outputs.append(cell.locator(".jp-OutputArea").inner_text())
    return outputs


def open_notebook(tab: Any, path: str) -> None:
    """Open one notebook alone: `?reset` drops the tabs JupyterLab would restore from the
    server-side workspace (an earlier test's notebook, for instance)."""
    tab.goto(f"{URL}/lab/tree/{path}?reset")
    tab.locator(VISIBLE_NOTEBOOK).locator(".jp-Cell").first.wait_for()


def errors_in(tab: Any) -> list[str]:
    """Tracebacks shown in the notebook (error outputs render with this mime type)."""
    stderr = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
    shown = tab.locator(VISIBLE_NOTEBOOK).locator(stderr)
    return [text for text in shown.all_inner_texts() if "Traceback" in text or "Error" in text]


def test_token_address_opens_jupyterlab_on_labs(page: Any) -> None:
    """The printed address lands in JupyterLab with the file browser in labs/."""
    crumbs = page.locator(".jp-BreadCrumbs").inner_text()
    assert "labs" in crumbs, f"file browser is not in labs/: breadcrumbs {crumbs!r}"


def test_without_token_the_browser_gets_a_login_page(browser: Any) -> None:
    context = browser.new_context()
    tab = context.new_page()
    tab.goto(f"{URL}/lab")
    assert "/login" in tab.url
    assert tab.locator("input[type=password]").count() >= 1, "no token/password form"
    assert tab.locator(".jp-DirListing-content").count() == 0
    context.close()


def test_a_notebook_runs_the_course_code(page: Any, kernels_cleanup: None) -> None:
    """A fresh notebook's kernel imports the course and sees the kernel tools and root."""
    name = f"browser-test-{secrets.token_hex(4)}.ipynb"
    source = (
        "import os, shutil, course, grader\n"
        "print('uid', os.getuid(), 'ip', bool(shutil.which('ip')), 'bird', bool(shutil.which('bird')))\n"
        "print('answer', 6 * 7)"
    )
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook = {
        "cells": [code_cell(source)],
        "metadata": {"kernelspec": kernelspec},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    api("PUT", f"contents/{name}", {"type": "notebook", "format": "json", "content": notebook})
    try:
        open_notebook(page, name)
        [output] = run_cells(page, 1)
        assert "answer 42" in output
        assert "uid 0 ip True bird True" in output
        assert errors_in(page) == []
    finally:
        api("DELETE", f"contents/{name}")


def test_lab01_first_cells_run_and_show_output(page: Any, kernels_cleanup: None) -> None:
    """Lab 01 is in the learner's volume, opens, and its first code cells run cleanly."""
    if not exists(LAB01):
        pytest.skip(f"{LAB01} is not in the image yet")
    open_notebook(page, LAB01)
    outputs = run_cells(page, LAB01_CODE_CELLS)
    assert len(outputs) == LAB01_CODE_CELLS, f"only {len(outputs)} code cells in {LAB01}"
    assert any(text.strip() for text in outputs), f"no output from the first cells: {outputs}"
    assert errors_in(page) == []
