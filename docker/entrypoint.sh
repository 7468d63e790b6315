#!/bin/bash
# Entry point of the k8s-netlabs image (runs under tini, which reaps what labs leave behind).
#
# 1. Seeds the learner's volume: the release notebooks in /opt/k8s-netlabs/labs are copied into
#    /workspace/labs, but only files that are not there yet. A learner's edited notebook is
#    never overwritten, and labs added by a newer image appear on the next start. To get a
#    pristine copy of a lab back, delete (or rename) it and restart the container.
# 2. `jupyter-lab` (the default command) starts JupyterLab on /workspace, opened on labs/,
#    with token authentication: $JUPYTER_TOKEN if set, otherwise a fresh random token, which
#    is printed below. Any other command (`make test`, `k8snet doctor`, `bash`) runs as given.
set -euo pipefail

# Overridable for the entrypoint's own tests (tests/docker/test_entrypoint.py).
RELEASE=${K8SNET_RELEASE_DIR:-/opt/k8s-netlabs}
WORKSPACE=${K8SNET_WORKSPACE:-/workspace}
JUPYTER_MARKER=${K8SNET_JUPYTER_MARKER:-/run/k8snet/jupyter}

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

# Labs write sysctls under /proc/sys. A privileged container has it read-write; the restricted
# setup (docker/compose.restricted.yml) asks for a remount, which touches only this
# container's mount namespace.
check_proc_sys() {
    if ! grep -qE '^[^ ]+ [^ ]+ [^ ]+ [^ ]+ /proc/sys ro[, ]' /proc/self/mountinfo; then
        return 0
    fi
    if [[ "${K8SNET_REMOUNT_PROC_SYS:-0}" == "1" ]] && mount -o remount,rw,bind /proc/sys; then
        echo "k8snet: /proc/sys remounted read-write for the labs' sysctls" >&2
        return 0
    fi
    echo "k8snet: WARNING /proc/sys is read-only: labs that set sysctls will fail." >&2
    echo "k8snet: run the container privileged (see docker-compose.yml)." >&2
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
    exec jupyter lab \
        --ip=0.0.0.0 --port=8888 --no-browser --allow-root \
        --ServerApp.root_dir="$WORKSPACE" \
        --LabApp.default_url=/lab/tree/labs \
        --ServerApp.terminado_settings='{"shell_command": ["/bin/bash", "-l"]}' \
        --LabApp.extension_manager=readonly \
        "$@"
}

main() {
    seed_workspace
    check_proc_sys
    if [[ $# -eq 0 || "$1" == "jupyter-lab" ]]; then
        shift || true
        run_jupyter "$@"
    fi
    exec "$@"
}

main "$@"
