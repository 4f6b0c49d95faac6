#!/usr/bin/env bash
# Builds the docker runtime's base images offline-friendly, without pulling:
# a Debian bookworm root made by debootstrap, imported and tagged under the
# names the platform expects (settings docker_python_image / docker_node_image,
# and docker_data_image: PostgreSQL and redis for the swarm runtime's data services).
# Used by .ci/run and by developers; images that already exist are kept.
#
#   tests/docker/images.sh [--cache DIR] [--force]
#
# --cache DIR keeps each root as DIR/<name>.tar so a rerun imports it in
# seconds instead of running debootstrap again (default: no cache).
# Needs root, debootstrap, a running docker engine and a Debian mirror:
# $DEBIAN_MIRROR, else the main archive this machine's apt is configured with.
set -euo pipefail

cache=""
force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cache) cache="$2"; shift 2 ;;
    --force) force=1; shift ;;
    *) echo "usage: $0 [--cache DIR] [--force]" >&2; exit 2 ;;
  esac
done
apt_mirror() {  # the first main-archive URI in apt's sources (deb822 or one-line)
  { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
    grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '{print ($2 ~ /^\[/) ? $3 : $2}'
  } | grep -vE -- '-security|-updates|/updates' | grep -E '^https?://' | head -n1
}
mirror="${DEBIAN_MIRROR:-$(apt_mirror || true)}"
if [ -z "$mirror" ]; then
  echo "images: no Debian mirror in apt's sources; set DEBIAN_MIRROR" >&2
  exit 2
fi
python_image="${DOTCLOUD_DOCKER_PYTHON_IMAGE:-python:3.12-slim}"
node_image="${DOTCLOUD_DOCKER_NODE_IMAGE:-node:22-slim}"
data_image="${DOTCLOUD_DOCKER_DATA_IMAGE:-dotcloud/data:bookworm}"
common="ca-certificates"

build() {  # build NAME DEBOOTSTRAP_PACKAGES [APT_PACKAGES [SETUP]]
  # debootstrap cannot resolve some dependency chains (npm's), so those
  # packages are installed afterwards by apt inside a container of the root,
  # after the shell commands SETUP.
  local name="$1" packages="$2" extra="${3:-}" setup="${4:-true}" file root stage old
  if [ "$force" = 0 ] && docker image inspect "$name" >/dev/null 2>&1; then
    echo "images: $name already present"
    return
  fi
  if [ -n "$cache" ]; then
    mkdir -p "$cache"
    file="$cache/$(echo "$name" | tr ':/' '__').tar"
  else
    file="$(mktemp -u /var/tmp/dotcloud-image.XXXXXX)"
  fi
  if [ ! -s "$file" ]; then
    root="$(mktemp -d /var/tmp/dotcloud-root.XXXXXX)"
    echo "images: debootstrap bookworm for $name ($packages${extra:+, then $extra})"
    debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" \
      > "$root.log" 2>&1 || { tail -30 "$root.log" >&2; rm -rf "$root"; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
      "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/info "$root"/usr/share/locale
    tar -C "$root" -cf "$file.tmp" .
    rm -rf "$root" "$root.log"
    if [ -n "$extra" ]; then
      stage="dotcloud-stage-$$-$RANDOM"
      docker import "$file.tmp" "$stage:latest" >/dev/null
      docker run --network host --name "$stage" "$stage:latest" sh -c \
        "$setup && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
         --no-install-recommends $extra >/dev/null && apt-get clean && rm -rf /var/lib/apt/lists/*"
      docker export "$stage" > "$file.tmp"
      docker rm "$stage" >/dev/null
      docker rmi "$stage:latest" >/dev/null
    fi
    mv "$file.tmp" "$file"
  else
    echo "images: importing $name from $file"
  fi
  old="$(docker image inspect -f '{{.Id}}' "$name" 2>/dev/null || true)"
  docker import "$file" "$name" >/dev/null
  # The image replaced by --force, unless a container still uses it.
  if [ -n "$old" ] && [ "$old" != "$(docker image inspect -f '{{.Id}}' "$name")" ]; then
    docker rmi "$old" >/dev/null 2>&1 || true
  fi
  [ -n "$cache" ] || rm -f "$file"
  echo "images: $name ready"
}

build "$python_image" "$common,python3,python3-venv,python3-pip" &
py=$!
build "$node_image" "$common,nodejs" npm &
node=$!
# The data image: no cluster made by postgresql's postinst (a data service
# makes its own in its volume), /data (the volume's mount point) writable by
# any uid, as a new volume takes its mode, and nss_wrapper: initdb and
# postgres insist on a passwd entry for the app's uid.
build "$data_image" "$common" "postgresql redis-server libnss-wrapper" \
  "mkdir -p /etc/postgresql-common && echo create_main_cluster=false \
     > /etc/postgresql-common/createcluster.conf && mkdir -m 1777 /data" &
data=$!
status=0
wait "$py" || status=1
wait "$node" || status=1
wait "$data" || status=1
exit "$status"
