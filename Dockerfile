# k8s-netlabs self-study image: JupyterLab with every lab, the `k8snet` CLI and the kernel tools
# the labs drive (iproute2, iptables/nftables, conntrack, BIRD, tcpdump).
#
# Based on debian:bookworm-slim so it also builds where no image registry is reachable:
# docker/seed-base-image.sh makes that tag locally with debootstrap + `docker import`.
# Works with both the classic builder and BuildKit (no BuildKit-only syntax), so older
# Compose clients can build it too. Layers go from slow-and-stable to fast-and-changing, so an
# edit to the course code rebuilds only the last few seconds of the image.
FROM debian:bookworm-slim

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
RUN set -eux; \
    python3 -m venv "$VIRTUAL_ENV"; \
    pip install --upgrade pip setuptools wheel; \
    python3 /opt/k8snet/list-deps.py /opt/k8s-netlabs/pyproject.toml > /opt/k8snet/deps.txt; \
    pip install -r /opt/k8snet/deps.txt

# The whole project (course, grader, labs, solutions, tests), installed in place (`pip install
# -e .`, as `make install` does): the code a learner reads in /opt/k8s-netlabs/course is the
# code that runs, and the grader finds labs/ and solutions/ next to itself.
# /opt/k8s-netlabs is the pristine release; the learner works on copies in /workspace.
COPY . /opt/k8s-netlabs
WORKDIR /opt/k8s-netlabs
RUN set -eux; \
    pip install --no-deps --no-build-isolation -e .; \
    rm -rf build *.egg-info; \
    python -c 'import course, grader'; \
    command -v k8snet; \
    mkdir -p /workspace

# JupyterLab defaults for a closed, self-contained environment: no news or update checks.
COPY docker/jupyter/overrides.json /opt/k8snet/venv/share/jupyter/lab/settings/overrides.json
COPY docker/entrypoint.sh /usr/local/bin/k8snet-entrypoint
COPY docker/healthcheck.py /usr/local/bin/k8snet-healthcheck

# Lets `docker/smoke.sh` prune the dangling images its rebuilds leave, and nothing else.
LABEL org.k8s-netlabs.image="lab"
VOLUME ["/workspace"]
EXPOSE 8888
HEALTHCHECK --interval=3s --timeout=3s --start-period=60s --retries=5 \
    CMD ["python3", "/usr/local/bin/k8snet-healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/k8snet-entrypoint"]
CMD ["jupyter-lab"]
