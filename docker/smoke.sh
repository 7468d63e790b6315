#!/usr/bin/env bash
# Docker smoke test of the self-study environment (`make test-docker`, run by .ci/run).
#
# From a machine with nothing but Debian's package mirror, as root:
#   1. installs Debian's docker.io and a Compose client if missing, starts dockerd if none runs;
#   2. seeds debian:bookworm-slim with debootstrap when no image registry answers;
#   3. builds the image with Compose, `up -d`, waits for the healthcheck;
#   4. checks JupyterLab answers with the token and refuses without it (or with a wrong one),
#      that the port is bound to 127.0.0.1 only, and that the log prints the address;
#   5. runs `k8snet doctor` and a lab check inside the container, then the browser test
#      (tests/docker/test_browser.py: Debian's chromium driven by Playwright);
#   6. tears everything down (`down -v`) and proves no container, network or volume is left;
#   7. prints the timings: the issue's benchmarks.
#
# It runs under its own Compose project name, so a learner's own `docker compose up` (and the
# notebooks in its volume) is never touched. Options (environment):
#   K8SNET_PORT=8888            host port on 127.0.0.1
#   K8SNET_SMOKE_BROWSER=0      skip the browser test
#   K8SNET_SMOKE_KEEP=1         leave the stack running at the end (for debugging)
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT=k8snet-smoke
IMAGE=k8s-netlabs:latest
BASE_IMAGE=debian:bookworm-slim
export K8SNET_PORT=${K8SNET_PORT:-8888}
URL="http://127.0.0.1:${K8SNET_PORT}"
HEALTH_TIMEOUT=120
LOG_DIR=$(mktemp -d /tmp/k8snet-smoke.XXXXXX)
STARTED_DOCKERD_PID=""
COMPOSE=()
PRIVILEGE_MODE=""
declare -A TIMING=()
declare -a RESULTS=()

log() { printf '\n== %s\n' "$*"; }
note() { printf '   %s\n' "$*"; }
die() {
    printf '\nSMOKE FAILED: %s\n' "$*" >&2
    exit 1
}
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
passed() {
    RESULTS+=("ok    $*")
    note "ok: $*"
}
skipped() {
    RESULTS+=("skip  $*")
    note "SKIPPED: $*"
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
        >>"$LOG_DIR/apt.log" 2>&1 || {
        apt-get update -qq >>"$LOG_DIR/apt.log" 2>&1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
            >>"$LOG_DIR/apt.log" 2>&1
    }
}

# --- 1. Docker engine and Compose client ---------------------------------------------------
ensure_engine() {
    if ! command -v dockerd >/dev/null && ! docker info >/dev/null 2>&1; then
        note "installing Debian's docker.io"
        apt_install docker.io
    fi
    command -v docker >/dev/null || apt_install docker.io
    if docker info >/dev/null 2>&1; then
        note "a Docker daemon is already running"
        return
    fi
    note "starting dockerd (log: $LOG_DIR/dockerd.log)"
    dockerd >"$LOG_DIR/dockerd.log" 2>&1 &
    STARTED_DOCKERD_PID=$!
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && return
        kill -0 "$STARTED_DOCKERD_PID" 2>/dev/null || break
        sleep 0.5
    done
    tail -20 "$LOG_DIR/dockerd.log" >&2
    die "dockerd did not come up"
}

# `docker compose` (v2, what the README shows) when present, else Debian's docker-compose (v1).
ensure_compose() {
    if docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose)
    else
        command -v docker-compose >/dev/null || {
            note "no compose plugin; installing Debian's docker-compose"
            apt_install docker-compose
        }
        COMPOSE=(docker-compose)
    fi
    note "compose client: ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short 2>/dev/null || true))"
}

# Privileged is what docker-compose.yml asks for. A Docker engine that itself runs in a
# sandbox missing a capability cannot start privileged containers at all; there the
# restricted override grants the same pieces one by one (see docker/compose.restricted.yml).
choose_compose_files() {
    local err
    COMPOSE+=(-p "$PROJECT" -f docker-compose.yml)
    if err=$(docker run --rm --privileged --entrypoint true "$BASE_IMAGE" 2>&1); then
        note "privileged containers start here: using docker-compose.yml as it is"
        PRIVILEGE_MODE=privileged
    elif [[ "$err" == *"unable to apply caps"* ]]; then
        note "this engine refuses privileged containers: unable to apply caps"
        note "NOTE: falling back to docker/compose.restricted.yml (same powers, minus one cap)"
        COMPOSE+=(-f docker/compose.restricted.yml)
        PRIVILEGE_MODE=restricted
    else
        die "a privileged test container failed for another reason: $err"
    fi
}

# --- 2. base image, certificates, build -----------------------------------------------------
copy_host_certs() {
    if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
        # This machine intercepts TLS: its bundle holds the proxy's CA (gitignored copy).
        cp /etc/ssl/certs/ca-certificates.crt docker/certs/host-ca-bundle.crt
        note "copied the host CA bundle to docker/certs/host-ca-bundle.crt"
    fi
}

seed_base() {
    command -v debootstrap >/dev/null || apt_install debootstrap debian-archive-keyring
    local t0
    t0=$(now)
    bash docker/seed-base-image.sh
    TIMING["seed base image (s)"]=$(since "$t0")
}

build_image() {
    local t0
    t0=$(now)
    "${COMPOSE[@]}" build lab >"$LOG_DIR/build.log" 2>&1 || {
        tail -40 "$LOG_DIR/build.log" >&2
        die "image build failed"
    }
    TIMING["image build (s)"]=$(since "$t0")
    local bytes
    bytes=$(docker image inspect -f '{{.Size}}' "$IMAGE")
    TIMING["image size (MB)"]=$((bytes / 1000000))
    passed "image $IMAGE built ($((bytes / 1000000)) MB)"
}

# --- 3. up and healthy ----------------------------------------------------------------------
container_id() { "${COMPOSE[@]}" ps -q lab; }

wait_healthy() {
    local cid=$1 t0=$2 status
    while :; do
        status=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$cid")
        [[ "$status" == healthy ]] && return 0
        [[ "$(docker inspect -f '{{.State.Running}}' "$cid")" == true ]] || {
            docker logs "$cid" 2>&1 | tail -30 >&2
            die "the lab container stopped"
        }
        if python3 -c "import sys; sys.exit(float(sys.argv[1]) < $HEALTH_TIMEOUT)" "$(since "$t0")"; then
            docker logs "$cid" 2>&1 | tail -30 >&2
            die "not healthy after ${HEALTH_TIMEOUT}s (status: $status)"
        fi
        sleep 0.2
    done
}

start_stack() {
    JUPYTER_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    export JUPYTER_TOKEN
    local t0
    t0=$(now)
    "${COMPOSE[@]}" up -d >"$LOG_DIR/up.log" 2>&1 || {
        cat "$LOG_DIR/up.log" >&2
        die "compose up failed"
    }
    local cid
    cid=$(container_id)
    wait_healthy "$cid" "$t0"
    TIMING["up to healthy (s)"]=$(since "$t0")
    passed "container healthy (${PRIVILEGE_MODE})"
}

# --- 4. the door: token, loopback, log --------------------------------------------------------
check_access() {
    python3 docker/probe_auth.py "$URL" "$JUPYTER_TOKEN" || die "token checks failed"
    passed "JupyterLab answers with the token, refuses without or with a wrong one"
    local bound
    bound=$(docker port "$(container_id)" 8888/tcp)
    [[ "$bound" == "127.0.0.1:${K8SNET_PORT}" ]] || die "port published as '$bound'"
    passed "port published on 127.0.0.1 only ($bound)"
    "${COMPOSE[@]}" logs --no-color lab >"$LOG_DIR/lab.log" 2>&1
    grep -qF "127.0.0.1:${K8SNET_PORT}/lab/tree/labs?token=${JUPYTER_TOKEN}" "$LOG_DIR/lab.log" ||
        die "the log does not print the address with the token"
    passed "the log prints the address with the token"
}

# --- 5. inside the container ----------------------------------------------------------------
in_lab() { "${COMPOSE[@]}" exec -T lab "$@"; }

check_tools() {
    in_lab k8snet doctor >"$LOG_DIR/doctor.log" 2>&1 || {
        cat "$LOG_DIR/doctor.log"
        die "k8snet doctor failed inside the container"
    }
    passed "k8snet doctor inside the container"
    in_lab bash -c 'ip netns add knl-smoke && ip netns exec knl-smoke sysctl -qw \
        net.ipv4.ip_forward=1 && ip netns del knl-smoke' || die "netns + sysctl failed"
    passed "ip netns add/exec and a sysctl inside the container"
}

check_lab() {
    if [[ ! -d labs/01-netns-veth ]]; then
        skipped "lab check: labs/01-netns-veth does not exist yet (step runs once it does)"
        return
    fi
    in_lab test -f /workspace/labs/01-netns-veth/01-netns-veth.ipynb ||
        die "lab 01 was not seeded into the learner's volume"
    passed "lab 01 seeded into /workspace/labs"
    local lab=01-netns-veth rc
    in_lab k8snet check "$lab" "/opt/k8s-netlabs/solutions/$lab/$lab.ipynb" \
        >"$LOG_DIR/check-solution.log" 2>&1 && rc=0 || rc=$?
    tail -3 "$LOG_DIR/check-solution.log"
    [[ $rc -eq 0 ]] || {
        cat "$LOG_DIR/check-solution.log"
        die "the solution of $lab did not get full marks inside the container (exit $rc)"
    }
    passed "k8snet check $lab: the solution gets full marks inside the container"
    # The learner's untouched copy earns no exercise points: a score line and exit 1.
    in_lab k8snet check "$lab" "/workspace/labs/$lab/$lab.ipynb" \
        >"$LOG_DIR/check-release.log" 2>&1 && rc=0 || rc=$?
    tail -1 "$LOG_DIR/check-release.log"
    if [[ $rc -ne 1 ]] || ! grep -q '^score: ' "$LOG_DIR/check-release.log"; then
        cat "$LOG_DIR/check-release.log"
        die "k8snet check on the learner's untouched $lab: expected a score and exit 1, got $rc"
    fi
    passed "k8snet check $lab on the learner's untouched copy: scored, not full marks"
}

ensure_browser_tools() {
    [[ -x /usr/bin/chromium ]] || {
        note "installing Debian's chromium"
        apt_install chromium
    }
    [[ -x .venv/bin/python ]] || make install >"$LOG_DIR/install.log" 2>&1
    .venv/bin/python -c 'import playwright' 2>/dev/null ||
        .venv/bin/pip install -q playwright >>"$LOG_DIR/install.log" 2>&1
}

check_browser() {
    if [[ "${K8SNET_SMOKE_BROWSER:-1}" == 0 ]]; then
        skipped "browser test (K8SNET_SMOKE_BROWSER=0)"
        return
    fi
    ensure_browser_tools
    local t0
    t0=$(now)
    # --noconftest: the suite's host-island guard belongs to the native suite. This test only
    # talks to the container over HTTP, and on a shared machine the guard would also see
    # namespaces that unrelated processes create meanwhile.
    K8SNET_DOCKER_URL=$URL K8SNET_DOCKER_TOKEN=$JUPYTER_TOKEN \
        .venv/bin/python -m pytest -q -m docker tests/docker/test_browser.py -p no:cacheprovider \
        --noconftest ||
        die "browser test failed"
    TIMING["browser test (s)"]=$(since "$t0")
    passed "browser test"
}

# --- 6. teardown ------------------------------------------------------------------------------
leftovers() {
    local label="label=com.docker.compose.project=$PROJECT"
    docker ps -aq --filter "$label"
    docker network ls -q --filter "$label"
    docker volume ls -q --filter "$label"
}

teardown() {
    local rc=$?
    trap - EXIT
    if [[ ${#COMPOSE[@]} -gt 0 && "${K8SNET_SMOKE_KEEP:-0}" != 1 ]] && docker info >/dev/null 2>&1; then
        log "teardown"
        "${COMPOSE[@]}" down -v --remove-orphans >"$LOG_DIR/down.log" 2>&1 || cat "$LOG_DIR/down.log"
        # Earlier builds of this image that a rebuild left untagged (only ours, by label).
        docker image prune -f --filter label=org.k8s-netlabs.image >/dev/null 2>&1 || true
        if [[ -n "$(leftovers)" ]]; then
            echo "left behind: $(leftovers | tr '\n' ' ')" >&2
            rc=1
        else
            note "no container, network or volume of project $PROJECT left"
        fi
    fi
    if [[ -n "$STARTED_DOCKERD_PID" && "${K8SNET_SMOKE_KEEP:-0}" != 1 ]]; then
        note "stopping the dockerd this script started (pid $STARTED_DOCKERD_PID)"
        kill "$STARTED_DOCKERD_PID" 2>/dev/null || true
        wait "$STARTED_DOCKERD_PID" 2>/dev/null || true
    fi
    report "$rc"
    exit "$rc"
}

# --- 7. the numbers ---------------------------------------------------------------------------
report() {
    local rc=$1 key
    log "docker smoke results (logs in $LOG_DIR)"
    printf '   %s\n' "${RESULTS[@]}"
    printf '\n   %-26s %10s   %s\n' "benchmark" "value" "target"
    for key in "seed base image (s)" "image build (s)" "image size (MB)" "up to healthy (s)" \
        "browser test (s)" "smoke total (s)"; do
        [[ -n "${TIMING[$key]:-}" ]] || continue
        case $key in
        "image size (MB)") target="< 1500" ;;
        "up to healthy (s)") target="< 15" ;;
        *) target="" ;;
        esac
        printf '   %-26s %10s   %s\n' "$key" "${TIMING[$key]}" "$target"
    done
    local ok skip
    ok=$(printf '%s\n' "${RESULTS[@]}" | grep -c '^ok' || true)
    skip=$(printf '%s\n' "${RESULTS[@]}" | grep -c '^skip' || true)
    if [[ $rc -eq 0 ]]; then
        echo "docker smoke: $ok passed, 0 failed, $skip skipped"
    else
        echo "docker smoke: $ok passed, 1 failed, $skip skipped"
    fi
}

main() {
    trap teardown EXIT
    local t0
    t0=$(now)
    log "docker engine and compose"
    ensure_engine
    ensure_compose
    log "base image $BASE_IMAGE"
    seed_base
    choose_compose_files
    "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
    log "build"
    copy_host_certs
    build_image
    log "up"
    start_stack
    log "access"
    check_access
    log "inside the container"
    check_tools
    check_lab
    log "browser"
    check_browser
    TIMING["smoke total (s)"]=$(since "$t0")
    note "total: ${TIMING["smoke total (s)"]} s"
}

main "$@"
