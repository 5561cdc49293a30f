#!/usr/bin/env bash
# Build Tally's images (make images). Usage: images.sh [NAME ...] (default: all of them)
#
# BASE: the Debian bookworm image every image starts from. Unset, the public debian:bookworm-slim
# is used when it is here or a registry gives it; otherwise (no registry answers) a minimal
# bookworm is bootstrapped from Debian's packages with debootstrap and imported as tally/base.
# Every build uses BuildKit with the host's network (Debian and PyPI packages), and the host's CA
# bundle as a build secret when it has one (TLS-intercepting proxies); it is never in an image.
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER=${DOCKER:-/usr/bin/docker}  # Debian's client: its BuildKit builds (no buildx needed)
VERSION=${TALLY_VERSION:-dev}
CA_BUNDLE=${TALLY_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
LOCAL_BASE=tally/base:bookworm
mkdir -p .run

base_image() {
  if [ -n "${BASE:-}" ]; then echo "$BASE"; return; fi
  if "$DOCKER" image inspect debian:bookworm-slim >/dev/null 2>&1 \
    || timeout 60 "$DOCKER" pull -q debian:bookworm-slim >/dev/null 2>&1; then
    echo debian:bookworm-slim; return
  fi
  if ! "$DOCKER" image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
    echo "no registry gives debian:bookworm-slim: bootstrapping $LOCAL_BASE with debootstrap" >&2
    command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
    local root
    root=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian \
      > .run/debootstrap.log 2>&1 || { tail -n 20 .run/debootstrap.log >&2; exit 1; }
    # The suites debian:bookworm-slim follows (security and stable updates too); no
    # documentation, no apt lists or caches.
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      > "$root"/etc/apt/sources.list.d/debian.sources
    rm -f "$root"/etc/apt/sources.list
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
      "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/usr/share/info/*
    # ... and none from the packages images install on top of it.
    printf 'path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\npath-exclude /usr/share/info/*\n' \
      > "$root"/etc/dpkg/dpkg.cfg.d/excludes
    tar -C "$root" -c . | "$DOCKER" import \
      -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' - "$LOCAL_BASE" >/dev/null
    rm -rf "$root"
  fi
  echo "$LOCAL_BASE"
}

# name → Dockerfile directory under deploy/images; the context is the repository root for those
# that take files from it, the Dockerfile's own directory for the servers.
declare -A CONTEXT=(
  [tally]=. [triton-cpu]=. [edge]=. [s3]=.
  [rabbitmq]=deploy/images/rabbitmq [postgres]=deploy/images/postgres [redis]=deploy/images/redis
)
declare -A DOCKERFILE=(
  [tally]=deploy/images/tally/Dockerfile [triton-cpu]=deploy/images/triton/Dockerfile
  [edge]=deploy/images/edge/Dockerfile [s3]=deploy/images/s3/Dockerfile
  [rabbitmq]=deploy/images/rabbitmq/Dockerfile [postgres]=deploy/images/postgres/Dockerfile
  [redis]=deploy/images/redis/Dockerfile
)
ALL=(tally triton-cpu edge s3 rabbitmq postgres redis)

base=$(base_image)
secret=()
[ -s "$CA_BUNDLE" ] && secret=(--secret "id=ca_bundle,src=$CA_BUNDLE")
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)

for name in "${@:-${ALL[@]}}"; do
  [ -n "${DOCKERFILE[$name]:-}" ] || { echo "no image called $name (one of: ${ALL[*]})" >&2; exit 2; }
  echo "building tally/$name:$VERSION (from $base)"
  start=$SECONDS
  # The build's own facts are labelled here, once; each Dockerfile says what its image is.
  DOCKER_BUILDKIT=1 "$DOCKER" build --network host --progress "${PROGRESS:-plain}" "${secret[@]}" \
    --build-arg "BASE=$base" \
    --label "org.opencontainers.image.version=$VERSION" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "org.opencontainers.image.created=$created" \
    --label "org.opencontainers.image.vendor=Tally" \
    --label "org.opencontainers.image.base.name=$base" \
    -f "${DOCKERFILE[$name]}" -t "tally/$name:$VERSION" "${CONTEXT[$name]}" \
    > ".run/images-$name.log" 2>&1 || { tail -n 40 ".run/images-$name.log" >&2; exit 1; }
  echo "  tally/$name:$VERSION built in $((SECONDS - start)) s ($(
    "$DOCKER" image inspect -f '{{.Size}}' "tally/$name:$VERSION" | awk '{printf "%.0f MB", $1/1e6}'))"
done
