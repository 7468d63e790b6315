# k8s-netlabs self-study image: JupyterLab with every lab, the `k8snet` CLI and the kernel tools
# the labs drive (iproute2, iptables/nftables, conntrack, BIRD, tcpdump).
#
# Based on debian:bookworm-slim so it also builds where no image registry is reachable:
# docker/seed-base-image.sh makes that tag locally with debootstrap + `docker import`.
# Works with both the classic builder and BuildKit (no BuildKit-only syntax), so older
# Compose clients can build it too. Layers go from slow-and-stable to fast-and-changing, so an
# edit to the course code rebuilds only the last few seconds of the image.
#
# Targets (the classic builder builds every stage up to the one asked for, none after it):
#   selfstudy  the default (docker-compose.yml asks for it): the whole course, solutions/ and
#              every answer key included; peeking is allowed, learning is the point
#   class      for a course that hands the image to students: no solutions/, no tests/ (they
#              hold reference answers), and the predict-then-observe answer keys withheld from
#              grader/labs (docker/withhold_answers.py); the exercise checks stay, so students
#              can still self-check their own work (see the README, "For instructors")
#
# No registry? A failure on the next line ("lookup registry-1.docker.io", "pull access denied",
# "failed to resolve source metadata") means Docker could not fetch the base image. Make it
# locally, once, then build again:   docker/seed-base-image.sh
# The stage's name says so too: Docker prints it next to that error, and it is all of this
# file a learner sees when the build stops there.
FROM debian:bookworm-slim AS if-this-fails-run-docker.seed-base-image.sh

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

# Organisation CA certificates (see docker/certs/README.md). They must be trusted before the
# first download: apt gets them through Acquire::https::CAInfo until ca-certificates exists,
# then update-ca-certificates merges them into the system bundle that pip also reads.
COPY docker/certs/ /usr/local/share/ca-certificates/k8snet-org/
COPY docker/apt-trust-org-certs.sh /usr/local/sbin/apt-trust-org-certs

# System tools from Debian: the same list the native path installs (system-packages.txt:
# kernel networking tools, BIRD for the BGP lab, graphviz, Python 3.11 with venv, make),
# plus tini as PID 1 (it reaps the processes labs start) and a few tools for exploring.
COPY system-packages.txt /opt/k8snet/system-packages.txt
RUN set -eux; \
    apt-trust-org-certs; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
        $(grep -v '^#' /opt/k8snet/system-packages.txt) \
        ca-certificates tini less ethtool; \
    update-ca-certificates; \
    rm -f /etc/apt/apt.conf.d/99k8snet-org-certs /etc/ssl/k8snet-org-bundle.pem; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*

# The project venv lives outside /workspace (the learner's volume) and outside the source
# tree, so neither a volume nor a bind mount can hide it.
# VENV tells the Makefile to use it, so `make test` in the image runs against this install.
ENV VIRTUAL_ENV=/opt/k8snet/venv \
    VENV=/opt/k8snet/venv
ENV PATH=/opt/k8snet/venv/bin:$PATH

# Dependencies first, from pyproject.toml alone: this layer is reused until they change.
COPY pyproject.toml /opt/k8s-netlabs/pyproject.toml
COPY docker/list-deps.py /opt/k8snet/list-deps.py
# A network that intercepts TLS fails here first (pip: CERTIFICATE_VERIFY_FAILED): the
# message says what to do (docker/certs/README.md), as the last line of the build's output.
RUN set -eux; \
    python3 -m venv "$VIRTUAL_ENV"; \
    fail() { set +x; echo; \
        echo "k8s-netlabs: pip could not download the course's Python packages."; \
        echo "If the lines above say CERTIFICATE_VERIFY_FAILED, your network intercepts TLS."; \
        echo "Let the build trust what this machine trusts, then build again:"; \
        echo "    cp /etc/ssl/certs/ca-certificates.crt docker/certs/host-ca-bundle.crt"; \
        echo "(docker/certs/README.md explains; the file stays out of git)"; exit 1; }; \
    pip install --upgrade pip setuptools wheel || fail; \
    python3 /opt/k8snet/list-deps.py /opt/k8s-netlabs/pyproject.toml > /opt/k8snet/deps.txt; \
    pip install -r /opt/k8snet/deps.txt || fail

# JupyterLab defaults for a closed, self-contained environment: no news or update checks.
# jupyter_config.json: kernels get CurveZMQ keys from their manager (JupyterLab's and the
# grader's), so ipykernel has no reason to warn "Kernel is running over TCP without encryption".
# learner/: the config directory the entrypoint puts first unless K8SNET_INSTRUCTOR=1 (no
# nbgrader instructor tools for a self-learner).
COPY docker/jupyter/overrides.json /opt/k8snet/venv/share/jupyter/lab/settings/overrides.json
COPY docker/jupyter/jupyter_config.json /opt/k8snet/venv/etc/jupyter/jupyter_config.json
COPY docker/jupyter/learner/ /opt/k8snet/jupyter/learner/
# Login shells (JupyterLab's terminal is `bash -l`) get the venv back on PATH.
COPY docker/profile.sh /etc/profile.d/k8snet.sh
COPY docker/entrypoint.sh /usr/local/bin/k8snet-entrypoint
COPY docker/healthcheck.py /usr/local/bin/k8snet-healthcheck

# Lets `docker/smoke.sh` prune the dangling images its rebuilds leave, and nothing else.
LABEL org.k8s-netlabs.image="lab"
VOLUME ["/workspace"]
WORKDIR /opt/k8s-netlabs
EXPOSE 8888
HEALTHCHECK --interval=3s --timeout=3s --start-period=60s --retries=5 \
    CMD ["python3", "/usr/local/bin/k8snet-healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/k8snet-entrypoint"]
CMD ["jupyter-lab"]


# Everything but the course itself: what both images share.
FROM if-this-fails-run-docker.seed-base-image.sh AS runtime

# --- selfstudy: the whole project (course, grader, labs, solutions, tests) -------------------
# Installed in place (`pip install -e .`, as `make install` does): the code a learner reads in
# /opt/k8s-netlabs/course is the code that runs, and the grader finds labs/ and solutions/
# next to itself. /opt/k8s-netlabs is the pristine release; the learner works on copies in
# /workspace. Its bytecode is compiled here (PYTHONDONTWRITEBYTECODE keeps Python from
# writing any later): the grader's verifier copies each valid .pyc with its module, instead
# of compiling about a hundred modules at every start.
FROM runtime AS selfstudy
COPY . /opt/k8s-netlabs
RUN set -eux; \
    pip install --no-deps --no-build-isolation -e .; \
    rm -rf build *.egg-info; \
    python -m compileall -q course grader; \
    python -c 'import course, grader'; \
    command -v k8snet; \
    mkdir -p /workspace
LABEL org.k8s-netlabs.kind="selfstudy"


# --- class: what students get from an instructor -----------------------------------------------
# Built apart and copied over, so no layer of the class image ever held solutions/ (a file
# deleted in a later layer still ships in the earlier one).
FROM selfstudy AS class-source
RUN set -eux; \
    rm -rf solutions tests docker/certs/*.crt docker/certs/*.pem; \
    python3 docker/withhold_answers.py grader/labs; \
    python -c 'import grader.labs.lab01'

FROM runtime AS class
COPY --from=class-source /opt/k8s-netlabs /opt/k8s-netlabs
RUN set -eux; \
    pip install --no-deps --no-build-isolation -e .; \
    rm -rf build *.egg-info; \
    python -m compileall -q course grader; \
    python -c 'import course, grader'; \
    test ! -e solutions; \
    mkdir -p /workspace
LABEL org.k8s-netlabs.kind="class"
