"""The image's entrypoint, healthcheck and token probe, run on the host without Docker.

The entrypoint decides two things a learner depends on: that their edited notebooks are never
overwritten by a newer image, and that JupyterLab never starts without a token. Both are
tested by running the real script with a stand-in `jupyter` on PATH that records how it was
called. The healthcheck and the token probe run against small HTTP servers on loopback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"

FAKE_JUPYTER = """#!/bin/bash
printf '%s\\n' "$@" > "$OUT/args"
printf '%s' "$JUPYTER_TOKEN" > "$OUT/token"
printf '%s' "${JUPYTER_CONFIG_PATH:-}" > "$OUT/config_path"
pwd > "$OUT/cwd"
"""


@pytest.fixture()
def sandbox(tmp_path: Path) -> dict[str, Path]:
    release, workspace, bin_dir, out = (tmp_path / n for n in ("release", "ws", "bin", "out"))
    for folder in (release / "labs" / "01-a", bin_dir, out):
        folder.mkdir(parents=True)
    (release / "labs" / "01-a" / "01-a.ipynb").write_text("release v1")
    jupyter = bin_dir / "jupyter"
    jupyter.write_text(FAKE_JUPYTER)
    jupyter.chmod(0o755)
    return {"release": release, "workspace": workspace, "bin": bin_dir, "out": out}


def run(
    box: dict[str, Path], *args: str, token: str = "", **extra: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{box['bin']}:{os.environ['PATH']}",
        "OUT": str(box["out"]),
        "K8SNET_RELEASE_DIR": str(box["release"]),
        "K8SNET_WORKSPACE": str(box["workspace"]),
        "JUPYTER_TOKEN": token,
        "K8SNET_JUPYTER_MARKER": str(box["out"] / "marker"),
        "K8SNET_LEARNER_CONFIG": "/opt/k8snet/jupyter/learner",
        # The power self-test makes a real namespace: not on the host running this suite.
        "K8SNET_SELFTEST": "0",
        **extra,
    }
    env.pop("JUPYTER_CONFIG_PATH", None)
    return subprocess.run(
        ["bash", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=30
    )


def test_empty_token_gets_a_random_one_printed_in_the_log(sandbox: dict[str, Path]) -> None:
    proc = run(sandbox)
    assert proc.returncode == 0, proc.stderr
    token = (sandbox["out"] / "token").read_text()
    assert re.fullmatch(r"[0-9a-f]{48}", token), token
    assert f"http://127.0.0.1:8888/lab/tree/labs?token={token}" in proc.stdout
    assert run(sandbox).returncode == 0
    assert (sandbox["out"] / "token").read_text() != token, "a fresh token per start"


def test_chosen_token_is_used_and_server_opens_on_labs(sandbox: dict[str, Path]) -> None:
    proc = run(sandbox, token="my-secret")
    assert proc.returncode == 0, proc.stderr
    assert (sandbox["out"] / "token").read_text() == "my-secret"
    args = (sandbox["out"] / "args").read_text().splitlines()
    assert args[0] == "lab"
    assert f"--ServerApp.root_dir={sandbox['workspace']}" in args
    assert "--LabApp.default_url=/lab/tree/labs" in args
    flags = [a.split("=", 1)[0].lower() for a in args]
    assert not [f for f in flags if "token" in f], "never a token flag on the command line"
    assert (sandbox["out"] / "cwd").read_text().strip() == str(sandbox["workspace"])
    assert (sandbox["out"] / "marker").exists(), "the healthcheck must know a server runs here"
    # Jupyter's own log line shows the address that works from the host, not 0.0.0.0.
    assert "--ServerApp.custom_display_url=http://127.0.0.1:8888" in args


def test_instructor_tools_only_on_request(sandbox: dict[str, Path]) -> None:
    """The learner config directory (nbgrader's tools off) comes first unless instructor."""
    assert run(sandbox).returncode == 0
    learner = (sandbox["out"] / "config_path").read_text()
    assert learner.split(":")[0] == "/opt/k8snet/jupyter/learner"
    proc = run(sandbox, K8SNET_INSTRUCTOR="1")
    assert proc.returncode == 0 and "instructor mode" in proc.stderr
    assert "learner" not in (sandbox["out"] / "config_path").read_text()


def test_learner_config_switches_nbgrader_off() -> None:
    folder = ROOT / "docker" / "jupyter" / "learner"
    server = json.loads((folder / "jupyter_server_config.d" / "k8snet-learner.json").read_text())
    enabled = server["ServerApp"]["jpserver_extensions"]
    installed = json.loads(
        (Path(sys.prefix) / "etc/jupyter/jupyter_server_config.d/nbgrader.json").read_text()
    )["ServerApp"]["jpserver_extensions"]
    assert set(enabled) == set(installed) and not any(enabled.values())
    page = json.loads((folder / "labconfig" / "page_config.json").read_text())
    assert page["disabledExtensions"] == {"@jupyter/nbgrader": True}


def test_login_shell_profile_puts_the_venv_first(tmp_path: Path) -> None:
    """What Debian's /etc/profile leaves (system PATH only) plus our profile.d script."""
    script = ROOT / "docker" / "profile.sh"
    argv = ["sh", "-c", f'PATH=/usr/sbin:/usr/bin:/sbin:/bin; . {script}; . {script}; echo "$PATH"']
    path = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    assert path == "/opt/k8snet/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin", "once, first"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY docker/profile.sh /etc/profile.d/k8snet.sh" in dockerfile


def test_release_notebooks_seeded_without_overwriting_edits(sandbox: dict[str, Path]) -> None:
    assert run(sandbox, "true").returncode == 0
    learner = sandbox["workspace"] / "labs" / "01-a" / "01-a.ipynb"
    assert learner.read_text() == "release v1"
    learner.write_text("my answers")
    # A newer image: lab 01 changed, lab 02 is new.
    (sandbox["release"] / "labs" / "01-a" / "01-a.ipynb").write_text("release v2")
    (sandbox["release"] / "labs" / "02-b").mkdir()
    (sandbox["release"] / "labs" / "02-b" / "02-b.ipynb").write_text("lab two")
    assert run(sandbox, "true").returncode == 0
    assert learner.read_text() == "my answers"
    assert (sandbox["workspace"] / "labs" / "02-b" / "02-b.ipynb").read_text() == "lab two"


def test_other_commands_run_as_given(sandbox: dict[str, Path]) -> None:
    proc = run(sandbox, "sh", "-c", "echo ran; exit 3")
    assert proc.returncode == 3 and proc.stdout.strip() == "ran"
    assert not (sandbox["out"] / "args").exists(), "jupyter must not start"
    assert not (sandbox["out"] / "marker").exists()


class _Jupyterish(BaseHTTPRequestHandler):
    """A server that is either shut like Jupyter (`secure`) or open to anyone."""

    secure = True
    token = "t0ken"

    def do_GET(self) -> None:
        authorised = not self.secure or (
            self.headers.get("Authorization") == f"token {self.token}"
            or f"token={self.token}" in self.path
        )
        if self.path == "/api":
            self._send(200, json.dumps({"version": "2.0"}))
        elif authorised:
            self._send(200, "{}")
        elif self.path.startswith("/lab"):
            self.send_response(302)
            self.send_header("Location", "/login?next=%2Flab")
            self.end_headers()
        else:
            self._send(403, "{}")

    def _send(self, code: int, body: str) -> None:
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=[True, False], ids=["secure", "open"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, bool]]:
    handler = type("Handler", (_Jupyterish,), {"secure": request.param})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", request.param
    httpd.shutdown()
    httpd.server_close()


def test_token_probe_fails_on_an_open_server(server: tuple[str, bool]) -> None:
    url, secure = server
    argv = [sys.executable, str(ROOT / "docker" / "probe_auth.py"), url, _Jupyterish.token]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == (0 if secure else 1), proc.stdout


def healthcheck(url: str, marker: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "K8SNET_JUPYTER_MARKER": str(marker)}
    argv = [sys.executable, str(ROOT / "docker" / "healthcheck.py"), url]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)


def test_healthcheck_up_and_down(server: tuple[str, bool], tmp_path: Path) -> None:
    url, _ = server
    marker = tmp_path / "jupyter"
    marker.touch()
    assert healthcheck(f"{url}/api", marker).returncode == 0
    closed = healthcheck("http://127.0.0.1:9/api", marker)
    assert closed.returncode == 1 and "unhealthy" in closed.stdout


def test_healthcheck_passes_where_no_server_was_started(tmp_path: Path) -> None:
    """`compose run lab make test` serves nothing; it must not be reported unhealthy."""
    proc = healthcheck("http://127.0.0.1:9/api", tmp_path / "absent")
    assert proc.returncode == 0 and "another command" in proc.stdout


def test_too_few_powers_names_the_privileged_fallback(sandbox: dict[str, Path]) -> None:
    """An engine that did not grant enough: the log says so and gives the exact next command."""
    fake_ip = sandbox["bin"] / "ip"
    fake_ip.write_text(
        "#!/bin/sh\necho 'mount --make-shared /run/netns failed: Operation not permitted' >&2\n"
        "exit 1\n"
    )
    fake_ip.chmod(0o755)
    proc = run(sandbox, "true", K8SNET_SELFTEST="1")
    assert proc.returncode == 0, "the container still starts (the log explains)"
    assert "cannot build network namespaces" in proc.stderr
    assert "Operation not permitted" in proc.stderr
    assert "docker compose -f docker-compose.yml -f docker/compose.privileged.yml up" in proc.stderr
