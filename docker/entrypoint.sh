#!/bin/bash
# Entry point of the k8s-netlabs image (runs under tini, which reaps what labs leave behind).
#
# 1. Seeds the learner's volume: the release notebooks in /opt/k8s-netlabs/labs are copied into
#    /workspace/labs, but only files that are not there yet. A learner's edited notebook is
#    never overwritten, and labs added by a newer image appear on the next start. To get a
#    pristine copy of a lab back, delete (or rename) it and restart the container.
# 2. Lifts Docker's masks over /proc and /sys, and tries what every lab does first (a namespace, a sysctl
#    in it); if the engine did not grant enough, the log says so with the exact next command.
# 3. `jupyter-lab` (the default command) starts JupyterLab on /workspace, opened on labs/,
#    with token authentication: $JUPYTER_TOKEN if set, otherwise a fresh random token, which
#    is printed below; nbgrader's instructor tools only with K8SNET_INSTRUCTOR=1.
#    Any other command (`make test`, `k8snet doctor`, `bash`) runs as given.
set -euo pipefail

# Overridable for the entrypoint's own tests (tests/docker/test_entrypoint.py).
RELEASE=${K8SNET_RELEASE_DIR:-/opt/k8s-netlabs}
WORKSPACE=${K8SNET_WORKSPACE:-/workspace}
JUPYTER_MARKER=${K8SNET_JUPYTER_MARKER:-/run/k8snet/jupyter}
LEARNER_CONFIG=${K8SNET_LEARNER_CONFIG:-/opt/k8snet/jupyter/learner}

seed_workspace() {
    mkdir -p "$WORKSPACE/labs"
    if [[ -d "$RELEASE/labs" ]]; then
        # File by file: copy only what is missing; -p keeps the release timestamps.
        (cd "$RELEASE/labs" && find . -name .ipynb_checkpoints -prune -o -type f -print0 |
            while IFS= read -r -d '' f; do
                if [[ ! -e "$WORKSPACE/labs/$f" ]]; then
                    mkdir -p "$WORKSPACE/labs/$(dirname "$f")"
                    cp -p "$f" "$WORKSPACE/labs/$f"
                fi
            done)
    fi
}

# Docker masks parts of /proc and /sys in an unprivileged container: /proc/sys read-only,
# /dev/null over /proc/kcore and friends, an empty /sys/firmware. Labs write sysctls under
# /proc/sys, and the grading sandbox (bubblewrap, in a user namespace) may mount a fresh sysfs
# only where nothing is hidden. docker-compose.yml asks (K8SNET_UNMASK_SYSTEM_PATHS=1) to lift
# the masks inside this container's own mount namespace: what `--security-opt
# systempaths=unconfined` does, which only Compose v2 understands. A privileged container has
# none. The cgroup mounts are Docker's view of the container's own cgroups: they stay.
unmask_system_paths() {
    [[ "${K8SNET_UNMASK_SYSTEM_PATHS:-0}" == "1" ]] || return 0
    local mount_point
    awk '$5 ~ /^\/(proc|sys)\// && $5 !~ /^\/sys\/fs\/cgroup/ {print $5}' /proc/self/mountinfo |
        sort -r | while read -r mount_point; do
        umount "$mount_point" 2>/dev/null || true
    done
}

proc_sys_writable() {
    ! grep -qE '^[^ ]+ [^ ]+ [^ ]+ [^ ]+ /proc/sys ro[, ]' /proc/self/mountinfo
}

# What every lab does first: a named namespace and a sysctl inside it. ~30 ms. When the
# engine did not grant enough, say so at the top of the log with the exact next command,
# instead of letting the learner's first cell fail with a kernel error.
check_lab_powers() {
    [[ "${K8SNET_SELFTEST:-1}" == "1" ]] || return 0
    local ns="k8snet-selftest-$$" err=""
    proc_sys_writable || err="/proc/sys is read-only"
    if [[ -z "$err" ]]; then
        if err=$(ip netns add "$ns" 2>&1); then
            err=$(ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1 2>&1) || true
            ip netns del "$ns" 2>/dev/null || true
        fi
    fi
    if [[ -z "$err" ]]; then
        return 0
    fi
    cat >&2 <<WARN

  k8snet: WARNING the labs cannot build network namespaces in this container:
      ${err}
  This Docker engine needs the privileged fallback. Stop this container, then start it with
      docker compose -f docker-compose.yml -f docker/compose.privileged.yml up
  (with the standalone client: docker-compose -f docker-compose.yml -f docker/compose.privileged.yml up)

WARN
}

# nbgrader's instructor tools (Create Assignment, Formgrader, the Nbgrader menu) confuse a
# self-learner, and their server extensions log "No nbgrader_config.py file found" because
# /workspace is not a course folder. They stay off unless K8SNET_INSTRUCTOR=1: the learner
# config directory switches the server extensions and the JupyterLab plugins off.
configure_jupyter() {
    if [[ "${K8SNET_INSTRUCTOR:-0}" == "1" ]]; then
        echo "k8snet: instructor mode: nbgrader's Create Assignment and Formgrader are on" >&2
        return 0
    fi
    export JUPYTER_CONFIG_PATH="${LEARNER_CONFIG}${JUPYTER_CONFIG_PATH:+:$JUPYTER_CONFIG_PATH}"
}

new_token() {
    python3 -c 'import secrets; print(secrets.token_hex(24))'
}

run_jupyter() {
    if [[ -z "${JUPYTER_TOKEN:-}" ]]; then
        JUPYTER_TOKEN=$(new_token)
    fi
    export JUPYTER_TOKEN
    # Start from the learner's folder: nbgrader's extensions then treat /workspace as the
    # course root (the instructor's nbgrader_config.py lives with the release, not here).
    cd "$WORKSPACE"
    cat <<BANNER

  k8s-netlabs JupyterLab is starting. Open this address in your browser:

      http://127.0.0.1:${K8SNET_PORT:-8888}/lab/tree/labs?token=${JUPYTER_TOKEN}

  Your work is saved in the volume mounted at ${WORKSPACE}.

BANNER
    # Tells the healthcheck this container serves JupyterLab (see docker/healthcheck.py).
    mkdir -p "$(dirname "$JUPYTER_MARKER")" && : >"$JUPYTER_MARKER"
    configure_jupyter
    # --ip=0.0.0.0 inside the container is what Docker's port mapping needs; the host side is
    # 127.0.0.1 only (docker-compose.yml). custom_display_url makes Jupyter's own log print
    # the address that works from the host, not the container's name; the port is the host's
    # (docker-compose.yml maps K8SNET_PORT to the same port inside).
    exec jupyter lab \
        --ip=0.0.0.0 --port="${K8SNET_PORT:-8888}" --no-browser --allow-root \
        --ServerApp.custom_display_url="http://127.0.0.1:${K8SNET_PORT:-8888}" \
        --ServerApp.root_dir="$WORKSPACE" \
        --LabApp.default_url=/lab/tree/labs \
        --ServerApp.terminado_settings='{"shell_command": ["/bin/bash", "-l"]}' \
        --LabApp.extension_manager=readonly \
        "$@"
}

main() {
    seed_workspace
    unmask_system_paths
    check_lab_powers
    if [[ $# -eq 0 || "$1" == "jupyter-lab" ]]; then
        shift || true
        run_jupyter "$@"
    fi
    exec "$@"
}

main "$@"
