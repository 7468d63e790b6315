"""Benchmarks of the Docker self-study environment (issue 5), printed as ratios to the targets.

Measures, with the Docker engine on this machine:
  - image build, cold (`--no-cache`: every apt and pip download again);
  - image rebuild with nothing changed (Docker's layer cache);
  - image rebuild after a one-line edit of the course code (the common case while writing
    labs: dependencies come from the cached layer, only the project layer is rebuilt);
  - image size, against the 1.5 GB target;
  - seconds from `compose up` to a healthy JupyterLab, against the 15 s target (3 runs).

Usage: python benchmarks/docker_env.py [--quick]   (--quick skips the cold build)
Prints "skipped" and exits 0 when no Docker engine answers: the native path has none.
Builds use a separate tag and Compose project, removed at the end; the learner's
k8s-netlabs:latest and their volume are left alone.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAG = "k8s-netlabs:bench"
PROJECT = "k8snet-bench"
SIZE_TARGET_MB = 1500.0
HEALTHY_TARGET_S = 15.0
UP_RUNS = 3
CONTEXT_SKIP = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", ".*_cache")


def sh(argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc.stdout


def timed(argv: list[str], **kwargs: object) -> float:
    start = time.perf_counter()
    sh(argv, **kwargs)  # type: ignore[arg-type]
    return time.perf_counter() - start


def engine_answers() -> bool:
    return (
        shutil.which("docker") is not None
        and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    )


def compose_base() -> list[str]:
    """`docker compose` when the plugin exists, else Debian's `docker-compose`."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"]


def build(context: Path, *extra: str) -> float:
    return timed(
        ["docker", "build", "-q", "--target", "selfstudy", "-t", TAG, *extra, str(context)]
    )


def image_id() -> str:
    return sh(["docker", "image", "inspect", "-f", "{{.Id}}", TAG]).strip()


@contextmanager
def edited_context() -> Iterator[Path]:
    """A copy of the build context with one line of course code changed."""
    with tempfile.TemporaryDirectory(prefix="k8snet-bench-") as tmp:
        context = Path(tmp) / "ctx"
        shutil.copytree(ROOT, context, ignore=CONTEXT_SKIP)
        init = context / "course" / "__init__.py"
        init.write_text(init.read_text() + f"\n# benchmark edit {secrets.token_hex(4)}\n")
        yield context


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(compose: list[str], env: dict[str, str], limit: float = 120.0) -> None:
    cid = sh([*compose, "ps", "-q", "lab"], env=env).strip()
    deadline = time.perf_counter() + limit
    fmt = "{{if .State.Health}}{{.State.Health.Status}}{{end}}"
    while sh(["docker", "inspect", "-f", fmt, cid]).strip() != "healthy":
        if time.perf_counter() > deadline:
            raise RuntimeError(f"not healthy after {limit:.0f} s")
        time.sleep(0.1)


def up_to_healthy(compose: list[str]) -> float:
    """One `compose up -d` on a fresh volume, timed until the healthcheck passes."""
    env = {**os.environ, "JUPYTER_TOKEN": secrets.token_hex(16), "K8SNET_PORT": str(free_port())}
    env["K8SNET_IMAGE"] = TAG
    env["K8SNET_VOLUME"] = f"{PROJECT}-work"  # never the learner's k8snet-work
    try:
        start = time.perf_counter()
        sh([*compose, "up", "-d", "--no-build"], env=env)
        wait_healthy(compose, env)
        return time.perf_counter() - start
    finally:
        sh([*compose, "down", "-v", "--remove-orphans"], env=env)


def row(name: str, value: float, unit: str, target: float | None = None) -> None:
    ratio = f"{value / target:6.2f} of target {target:g} {unit}" if target else ""
    print(f"  {name:<38} {value:9.1f} {unit:<3} {ratio}")


def _exit_on_signal(signum: int, frame: object) -> None:
    """SIGTERM/SIGHUP unwind like Ctrl+C: the `finally` blocks take the stack down."""
    signal.signal(signum, signal.SIG_IGN)  # a second signal must not cut the teardown short
    raise SystemExit(128 + signum)


def main(quick: bool) -> int:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    if not engine_answers():
        print("docker_env: skipped (no Docker engine answers; `make test-docker` starts one)")
        return 0
    sh(["bash", "docker/seed-base-image.sh"])
    print("k8s-netlabs Docker environment (2-core VM, classic builder, no registry)")
    try:
        if not quick:
            row("image build, cold (--no-cache)", build(ROOT, "--no-cache"), "s")
        row("image rebuild, nothing changed", build(ROOT), "s")
        unchanged = image_id()
        with edited_context() as context:
            row("image rebuild, one course line edited", build(context), "s")
        if image_id() == unchanged:
            raise RuntimeError("the edited build reused the old image: the edit was not seen")
        build(ROOT)
        size_mb = int(sh(["docker", "image", "inspect", "-f", "{{.Size}}", TAG])) / 1e6
        row("image size", size_mb, "MB", SIZE_TARGET_MB)
        compose = [*compose_base(), "-p", PROJECT, "-f", "docker-compose.yml"]
        runs = [up_to_healthy(compose) for _ in range(UP_RUNS)]
        row(f"up to healthy, median of {UP_RUNS}", statistics.median(runs), "s", HEALTHY_TARGET_S)
        row("up to healthy, worst", max(runs), "s", HEALTHY_TARGET_S)
    finally:
        subprocess.run(["docker", "rmi", TAG], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(quick="--quick" in sys.argv[1:]))
