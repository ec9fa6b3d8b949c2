#!/usr/bin/env bash
# Builds the Docker image the docker backend's tests use, without pulling anything from a registry:
# a minimal Debian bookworm made by debootstrap from Debian's mirror, imported with `docker import`.
#
#   scripts/docker-test-image.sh [IMAGE]        (default IMAGE: innovator-test:bookworm)
#
# The image holds no Python of its own: the docker backend bind-mounts the harness's Python
# installation read-only and runs the session server with it. The image therefore needs only bash,
# the usual tools, and the C libraries that Python's modules link against (libssl3 for ssl, which
# uvicorn imports; sqlite, expat, readline for the rest of the standard library).
# Needs root, debootstrap (apt-get install debootstrap) and a running Docker daemon.
set -euo pipefail

image="${1:-innovator-test:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages="procps,libssl3,libsqlite3-0,libexpat1,libreadline8,libffi8,zlib1g,libbz2-1.0,liblzma5"

command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "no Docker daemon answers: start dockerd (see docs/backends.md)" >&2; exit 1; }

rootfs="$(mktemp -d "${TMPDIR:-/tmp}/innovator-rootfs.XXXXXX")"
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    tail -20 "$rootfs.log" >&2
    echo "debootstrap failed (full log: $rootfs.log)" >&2
    exit 1
}
rm -f "$rootfs.log"
# Package caches and lists are of no use in the image.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
echo "built $image"
