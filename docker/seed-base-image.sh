#!/usr/bin/env bash
# Make the base image `debian:bookworm-slim` available to `docker build`.
#
# Why this exists: the Dockerfile starts FROM debian:bookworm-slim, which normally comes from
# Docker Hub. Some machines (this project's CI among them) reach the Debian package mirror but
# no image registry. There we build the same kind of image ourselves: a minimal Debian
# bookworm root filesystem from debootstrap, trimmed the way the official "-slim" variant is
# trimmed, then `docker import`ed under the same tag. The Dockerfile cannot tell the
# difference, so one Dockerfile serves both worlds.
#
# Order of preference: an image already present locally, then `docker pull`, then debootstrap.
# Usage: docker/seed-base-image.sh [--force]   (--force rebuilds with debootstrap)
set -euo pipefail

TAG="debian:bookworm-slim"
ROOTFS=""
SUITE="bookworm"

log() { printf '[seed-base] %s\n' "$*" >&2; }

# The Debian mirror apt on this machine already uses (it is the one we know is reachable).
detect_mirror() {
    local uri
    uri=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list \
        /etc/apt/sources.list.d/ 2>/dev/null | grep -oE 'https?://[^ ]+' | head -n1 || true)
    echo "${DEBIAN_MIRROR:-${uri:-http://deb.debian.org/debian}}"
}

# The same trimming the official slim image applies: no man pages, docs or locales.
write_slim_config() {
    local root=$1
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
CFG
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
    echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
}

write_sources() {
    local root=$1 mirror=$2
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: ${mirror}
Suites: ${SUITE} ${SUITE}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: ${SUITE}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
}

trim_rootfs() {
    local root=$1
    rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
        "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
        "$root"/var/cache/apt/archives/*.deb "$root"/var/log/* "$root"/tmp/*
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias \
        -exec rm -rf {} + 2>/dev/null || true
}

debootstrap_image() {
    local mirror
    mirror=$(detect_mirror)
    command -v debootstrap >/dev/null || {
        log "installing debootstrap from Debian"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    }
    ROOTFS=$(mktemp -d /var/tmp/k8snet-rootfs.XXXXXX)
    trap 'rm -rf "$ROOTFS"' EXIT
    log "debootstrap --variant=minbase $SUITE from $mirror"
    debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$mirror" >/dev/null
    write_slim_config "$ROOTFS"
    write_sources "$ROOTFS" "$mirror"
    trim_rootfs "$ROOTFS"
    log "docker import as $TAG"
    tar --numeric-owner -C "$ROOTFS" -c . | docker import \
        --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - "$TAG" >/dev/null
}

main() {
    if [[ "${1:-}" != "--force" ]]; then
        if docker image inspect "$TAG" >/dev/null 2>&1; then
            log "$TAG already present"
            return 0
        fi
        if timeout 60 docker pull -q "$TAG" >/dev/null 2>&1; then
            log "pulled $TAG from a registry"
            return 0
        fi
        log "no registry answered for $TAG; building it locally"
    fi
    debootstrap_image
    log "done: $(docker image inspect -f '{{.Size}}' "$TAG") bytes"
}

main "$@"
