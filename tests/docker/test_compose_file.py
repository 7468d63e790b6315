"""The safety properties of the Docker self-study setup, read from its files (no Docker needed).

The container holds NET_ADMIN and SYS_ADMIN (the privileged fallback holds everything), so
its door matters more than usual: these tests fail the normal suite the moment someone
publishes the port beyond loopback, switches token auth off, hands the container the host's
network, PID namespace or Docker socket, or makes the default file privileged again.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PRIVILEGED = ROOT / "docker" / "compose.privileged.yml"
DOCKERFILE = ROOT / "Dockerfile"

# "127.0.0.1:${K8SNET_PORT:-8888}:${K8SNET_PORT:-8888}" or "127.0.0.1:8888:8888/tcp"
SHORT_PORT = re.compile(
    r"^(?P<ip>[0-9.\[\]:a-f]+?):(?P<host>\$\{[^}]*\}|\d+):(?P<ctr>\$\{[^}]*\}|\d+)(/\w+)?$"
)
TOKEN_OFF = re.compile(
    r"(ServerApp|NotebookApp|IdentityProvider)\.(token|password)\s*=\s*(''|\"\"|$)"
)


def load(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        return yaml.safe_load(handle)


def lab(path: Path = COMPOSE) -> dict[str, Any]:
    return load(path)["services"]["lab"]


def published(port: Any) -> tuple[str, str]:
    """(host ip, container port) of a short- or long-syntax port entry."""
    if isinstance(port, dict):
        return str(port.get("host_ip", "")), str(port["target"])
    match = SHORT_PORT.match(str(port))
    assert match, f"port {port!r} does not name a host IP (it would listen on every address)"
    return match["ip"], match["ctr"]


def volume_sources(service: dict[str, Any]) -> list[str]:
    sources = []
    for volume in service.get("volumes", []):
        sources.append(
            volume.get("source", "") if isinstance(volume, dict) else volume.split(":")[0]
        )
    return sources


@pytest.mark.parametrize("path", [COMPOSE, PRIVILEGED], ids=["compose", "privileged"])
def test_never_host_namespaces_or_docker_socket(path: Path) -> None:
    service = lab(path)
    for key in ("network_mode", "pid", "ipc", "userns_mode", "uts", "cgroup"):
        assert service.get(key) != "host", f"{path.name}: {key}: host"
    mounted = " ".join(volume_sources(service))
    assert "docker.sock" not in mounted
    assert "/var/run" not in mounted and not re.search(r"(^| )/( |$)", mounted)
    assert "ports" not in service or path == COMPOSE, "only the main file publishes ports"


def test_port_published_on_loopback_only() -> None:
    ports = lab()["ports"]
    assert ports, "JupyterLab must be published"
    for port in ports:
        ip, target = published(port)
        assert ip == "127.0.0.1", f"{port!r} is reachable beyond this machine"
        assert target == "${K8SNET_PORT:-8888}", "inside as outside: Jupyter logs one port"


def test_token_auth_stays_on() -> None:
    service = lab()
    assert "JUPYTER_TOKEN" in service["environment"], "the token must be settable"
    command = " ".join(map(str, service.get("command") or []))
    assert not TOKEN_OFF.search(command), f"command switches token auth off: {command}"
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert not TOKEN_OFF.search(entrypoint)


def test_healthcheck_present() -> None:
    check = lab()["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1
    assert not check.get("disable", False)
    assert "HEALTHCHECK" in DOCKERFILE.read_text(), "the image carries its own healthcheck too"


def test_learner_work_in_a_named_volume() -> None:
    compose = load(COMPOSE)
    volumes = compose["services"]["lab"]["volumes"]
    named = [v.split(":") for v in volumes if isinstance(v, str) and not v.startswith((".", "/"))]
    assert ["k8snet-work", "/workspace"] in named
    assert "k8snet-work" in compose["volumes"], "declared at top level, so it outlives `down`"
    # One name whatever the clone's folder is called, and overridable for the smoke test.
    assert compose["volumes"]["k8snet-work"]["name"] == "${K8SNET_VOLUME:-k8snet-work}"


def test_least_privilege_by_default() -> None:
    """Explicit capabilities, not privileged: some engines refuse privileged outright."""
    service = lab()
    assert not service.get("privileged"), "privileged is the fallback file's job"
    assert sorted(service["cap_add"]) == ["NET_ADMIN", "SYS_ADMIN"]
    assert "ALL" not in service["cap_add"]
    for opt in ("apparmor=unconfined", "seccomp=unconfined", "label=disable"):
        assert opt in service["security_opt"]
    assert service["environment"]["K8SNET_UNMASK_SYSTEM_PATHS"] == "1"
    text = COMPOSE.read_text()
    for reason in ("ip netns", "/proc/sys", "127.0.0.1", "unable to apply caps"):
        assert reason in text, f"the comment should say why ({reason})"


def test_privileged_fallback_only_adds_privileged() -> None:
    service = lab(PRIVILEGED)
    assert service == {"privileged": True}
    text = PRIVILEGED.read_text()
    assert "docker compose -f docker-compose.yml -f docker/compose.privileged.yml up" in text
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert "-f docker/compose.privileged.yml up" in entrypoint, "the log names the fallback"


def test_selfstudy_target_and_instructor_switch() -> None:
    service = lab()
    assert service["build"]["target"] == "selfstudy"
    assert re.search(r"^FROM runtime AS selfstudy$", DOCKERFILE.read_text(), re.M)
    assert service["environment"]["K8SNET_INSTRUCTOR"] == "${K8SNET_INSTRUCTOR:-0}"


def test_dockerfile_base_and_venv_outside_the_volume() -> None:
    text = DOCKERFILE.read_text()
    # A failed pull prints this line: the stage's name points to the way out.
    assert re.search(
        r"^FROM debian:bookworm-slim AS if-this-fails-run-docker.seed-base-image.sh$", text, re.M
    )
    assert "docker/seed-base-image.sh" in text.split("FROM debian", 1)[0], (
        "the way out of no registry"
    )
    venv = re.search(r"VIRTUAL_ENV=(\S+)", text)
    assert venv and not venv[1].startswith("/workspace")
    assert "/var/run/docker.sock" not in text


def test_learner_id_survives_a_new_container():
    """Break/fix faults are drawn from a learner id: it must live in the notebooks' volume."""
    service = lab()
    state = service["environment"]["K8SNET_STATE_DIR"]
    mounts = [v.split(":")[1] if isinstance(v, str) else v["target"] for v in service["volumes"]]
    assert any(state.startswith(m.rstrip("/") + "/") for m in mounts), (state, mounts)
