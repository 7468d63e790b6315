#!/usr/bin/env bash
# Docker smoke test of the self-study environment (`make test-docker`, run by .ci/run).
#
# From a machine with nothing but Debian's package mirror, as root:
#   1. installs Debian's docker.io and a Compose client if missing, starts dockerd if none runs
#      (and then puts the host's links, iptables and forwarding sysctls back at the end);
#   2. seeds debian:bookworm-slim with debootstrap when no image registry answers;
#   3. builds the image with Compose, `up -d` with docker-compose.yml exactly as a learner
#      gets it (no override), waits for the healthcheck;
#   4. checks JupyterLab answers with the token and refuses without it (or with a wrong one),
#      that the port is bound to 127.0.0.1 only, that the log prints the address and none of
#      the misleading lines (0.0.0.0, nbgrader config, unencrypted kernel), and that nbgrader's
#      instructor tools are off;
#   5. runs `k8snet doctor`, the login shell's PATH and a lab check inside the container, then
#      the browser test (tests/docker/test_browser.py: Debian's chromium driven by Playwright);
#   6. builds the `class` image and proves it has no solutions and no answer keys but still
#      self-checks exercises;
#   7. tears everything down (`down -v`) and proves no container, network or volume is left;
#   8. prints the timings: the issue's benchmarks.
#
# It runs under its own Compose project name and volume name, so a learner's own `docker
# compose up` (and the notebooks in its volume) is never touched. Options (environment):
#   K8SNET_PORT=8888            host port on 127.0.0.1
#   K8SNET_SMOKE_BROWSER=0      skip the browser test
#   K8SNET_SMOKE_CLASS=0        skip the class image
#   K8SNET_SMOKE_KEEP=1         leave the stack (and dockerd) running at the end (debugging)
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT=k8snet-smoke
IMAGE=k8s-netlabs:latest
CLASS_IMAGE=k8s-netlabs:class-smoke
# Never the learner's volume (docker-compose.yml names it k8snet-work by default).
export K8SNET_VOLUME=k8snet-smoke-work
BASE_IMAGE=debian:bookworm-slim
export K8SNET_PORT=${K8SNET_PORT:-8888}
URL="http://127.0.0.1:${K8SNET_PORT}"
HEALTH_TIMEOUT=120
LOG_DIR=$(mktemp -d /tmp/k8snet-smoke.XXXXXX)
STARTED_DOCKERD_PID=""
COMPOSE=()
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
    snapshot_host
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

# dockerd changes the host's own network namespace: docker0, iptables chains (DOCKER,
# DOCKER-USER, a FORWARD policy of DROP, MASQUERADE), net.ipv4.ip_forward=1. Other test
# suites on this machine compare that namespace before and after; so when this script
# started dockerd, it puts all of it back once dockerd has stopped.
HOST_SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables)
snapshot_host() {
    ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' >"$LOG_DIR/host-links.before"
    for tool in iptables ip6tables; do
        "$tool-save" >"$LOG_DIR/host-$tool.before" 2>/dev/null || true
    done
    local key
    : >"$LOG_DIR/host-sysctl.before"
    for key in "${HOST_SYSCTLS[@]}"; do
        sysctl -n "$key" >/dev/null 2>&1 && echo "$key=$(sysctl -n "$key")" >>"$LOG_DIR/host-sysctl.before"
    done
}

restore_tables() {
    local tool=$1 family=$2 table
    local before="$LOG_DIR/host-$tool.before"
    [[ -f "$before" ]] || return 0
    for table in $("$tool-save" 2>/dev/null | sed -n 's/^\*//p'); do
        if grep -qx "\*$table" "$before"; then
            sed -n "/^\*$table\$/,/^COMMIT\$/p" "$before" | "$tool-restore" 2>/dev/null ||
                note "could not restore $tool table $table"
        elif "$tool" --version | grep -q nf_tables; then
            nft delete table "$family" "$table" 2>/dev/null || true
        else
            "$tool" -t "$table" -F && "$tool" -t "$table" -X
            "$tool-save" -t "$table" | sed -n 's/^:\([A-Z]*\) [A-Z]*.*/\1/p' |
                xargs -r -n1 "$tool" -t "$table" -P 2>/dev/null ACCEPT || true
        fi
    done
}

restore_host() {
    [[ -f "$LOG_DIR/host-links.before" ]] || return 0
    local link
    for link in $(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//'); do
        grep -qx "$link" "$LOG_DIR/host-links.before" && continue
        case $link in docker0 | br-* | veth*) ip link delete "$link" 2>/dev/null || true ;; esac
    done
    restore_tables iptables ip
    restore_tables ip6tables ip6
    local setting
    while read -r setting; do
        sysctl -qw "$setting" >/dev/null 2>&1 || note "could not put back $setting"
    done <"$LOG_DIR/host-sysctl.before"
    note "host links, iptables and forwarding sysctls put back as before dockerd"
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

# docker-compose.yml as a learner gets it, no override: its capabilities are enough on an
# engine that refuses privileged containers (this project's CI machine) and on a standard one.
choose_compose_files() {
    COMPOSE+=(-p "$PROJECT" -f docker-compose.yml)
    if docker run --rm --privileged --entrypoint true "$BASE_IMAGE" >/dev/null 2>&1; then
        note "this engine would start privileged containers too; the default file does not ask"
    else
        note "this engine refuses privileged containers; the default file does not need them"
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
        die "image build failed (base image missing? run: docker/seed-base-image.sh)"
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
    passed "container healthy (docker-compose.yml as it is: capabilities, not privileged)"
}

# --- 4. the door: token, loopback, log --------------------------------------------------------
check_access() {
    python3 docker/probe_auth.py "$URL" "$JUPYTER_TOKEN" || die "token checks failed"
    passed "JupyterLab answers with the token, refuses without or with a wrong one"
    local bound
    bound=$(docker port "$(container_id)" "${K8SNET_PORT}/tcp")
    [[ "$bound" == "127.0.0.1:${K8SNET_PORT}" ]] || die "port published as '$bound'"
    passed "port published on 127.0.0.1 only ($bound)"
    "${COMPOSE[@]}" logs --no-color lab >"$LOG_DIR/lab.log" 2>&1
    grep -qF "127.0.0.1:${K8SNET_PORT}/lab/tree/labs?token=${JUPYTER_TOKEN}" "$LOG_DIR/lab.log" ||
        die "the log does not print the address with the token"
    passed "the log prints the address with the token"
    local line
    for line in "0.0.0.0" "No nbgrader_config.py" "without encryption" "Traceback"; do
        if grep -F "$line" "$LOG_DIR/lab.log"; then
            die "the log has a misleading line ($line): see $LOG_DIR/lab.log"
        fi
    done
    passed "the log has no 0.0.0.0 address, nbgrader config or unencrypted-kernel warning"
    instructor_tools_off
}

# nbgrader's server extensions answer under /formgrader and /assignments; for a learner they
# are switched off (docker/jupyter/learner), so those answer 404 even with the token.
instructor_tools_off() {
    local path code
    for path in formgrader assignments; do
        code=$(python3 - "$URL/$path" "$JUPYTER_TOKEN" <<'PY'
import sys, urllib.error, urllib.request
request = urllib.request.Request(sys.argv[1], headers={"Authorization": f"token {sys.argv[2]}"})
try:
    print(urllib.request.urlopen(request, timeout=10).status)
except urllib.error.HTTPError as error:
    print(error.code)
PY
        )
        [[ "$code" == 404 ]] || die "/$path answered $code: nbgrader's instructor tools are on"
    done
    passed "nbgrader's instructor tools are off for a learner (/formgrader, /assignments: 404)"
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
    # The grading sandbox (bubblewrap) mounts a fresh sysfs: only where Docker's masks are lifted.
    in_lab python -c 'import sys; from grader.sandbox import unavailable_reason as why
r = why(); print(r); sys.exit(bool(r))' || die "k8snet grade's sandbox cannot run in the container"
    passed "the grading sandbox (bubblewrap) runs inside the container"
    # JupyterLab's terminal runs `bash -l`; Debian's /etc/profile resets PATH there.
    # shellcheck disable=SC2016 # expanded by the container's login shell
    in_lab bash -lc 'for t in k8snet ip birdc iptables tcpdump jupyter pytest; do
        command -v "$t" >/dev/null || { echo "missing in a login shell: $t"; exit 1; }; done' ||
        die "a login shell (JupyterLab's terminal) misses a course tool on PATH"
    passed "k8snet, ip, birdc, iptables, tcpdump, jupyter, pytest on PATH in a login shell"
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
    if grep -F "without encryption" "$LOG_DIR/check-solution.log"; then
        die "k8snet check prints the unencrypted-kernel warning"
    fi
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

# --- 6. the class image -------------------------------------------------------------------------
check_class_image() {
    if [[ "${K8SNET_SMOKE_CLASS:-1}" == 0 ]]; then
        skipped "class image (K8SNET_SMOKE_CLASS=0)"
        return
    fi
    local t0 rc lab=01-netns-veth
    t0=$(now)
    docker build -q --force-rm --target class -t "$CLASS_IMAGE" . >"$LOG_DIR/class-build.log" 2>&1 || {
        tail -30 "$LOG_DIR/class-build.log" >&2
        die "the class image did not build"
    }
    TIMING["class image build (s)"]=$(since "$t0")
    docker run --rm --entrypoint bash "$CLASS_IMAGE" -c '
        cd /opt/k8s-netlabs && test ! -e solutions && test ! -e tests &&
        ! grep -rqE "^\w*RIGHT\w* *=|question\(" grader/labs/lab*.py' ||
        die "the class image still holds solutions/, tests/ or an answer key"
    passed "class image: no solutions/, no tests/, no answer key in grader/labs"
    [[ -d "solutions/$lab" ]] || return 0
    # The solution, brought in from outside: exercises full marks, questions not judged.
    docker run --rm --cap-add NET_ADMIN --cap-add SYS_ADMIN -e K8SNET_UNMASK_SYSTEM_PATHS=1 \
        -v "$PWD/solutions/$lab:/solution:ro" "$CLASS_IMAGE" \
        k8snet check "$lab" "/solution/$lab.ipynb" >"$LOG_DIR/class-check.log" 2>&1 && rc=0 || rc=$?
    tail -1 "$LOG_DIR/class-check.log"
    if ! grep -q "not judged in this image" "$LOG_DIR/class-check.log" ||
        grep -qE "^ex[^ ]* +0/" "$LOG_DIR/class-check.log" || [[ $rc -ne 1 ]]; then
        cat "$LOG_DIR/class-check.log"
        die "class image: exercises should pass and questions say 'not judged in this image'"
    fi
    passed "class image: k8snet check judges exercises, says questions are not judged here"
}

# --- 7. teardown ------------------------------------------------------------------------------
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
        docker rmi "$CLASS_IMAGE" >/dev/null 2>&1 || true
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
        restore_host
    fi
    report "$rc"
    exit "$rc"
}

# --- 8. the numbers ---------------------------------------------------------------------------
report() {
    local rc=$1 key
    log "docker smoke results (logs in $LOG_DIR)"
    printf '   %s\n' "${RESULTS[@]}"
    printf '\n   %-26s %10s   %s\n' "benchmark" "value" "target"
    for key in "seed base image (s)" "image build (s)" "image size (MB)" "up to healthy (s)" \
        "browser test (s)" "class image build (s)" "smoke total (s)"; do
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
    log "class image"
    check_class_image
    TIMING["smoke total (s)"]=$(since "$t0")
    note "total: ${TIMING["smoke total (s)"]} s"
}

main "$@"
