#!/usr/bin/env bash
# Builds local stand-ins for the public base images of the Dockerfile, without any registry, and
# prints their references for `eval` (docker-compose.yml passes them on as build arguments):
#   export GPUFLOW_DEBIAN_IMAGE=gpuflow-local/debian:<hash>
#   export GPUFLOW_NODEJS_IMAGE=gpuflow-local/nodejs:<hash>
#
#   gpuflow-local/debian  for debian:<release>-slim: Debian (the host's release) made by
#                         mmdebstrap's minbase variant (Essential, Priority: required and apt,
#                         what debian:*-slim holds) from the host's own apt sources, which stay
#                         in the image so `apt-get install` works in the Dockerfile's stages;
#                         docs, man pages and translations left out as in the slim images.
#                         CMD ["bash"].
#   gpuflow-local/nodejs  for node:<major>-<release>-slim: that Debian image plus this machine's
#                         Node.js (`command -v node`, as /usr/local/bin/node) and npm (as
#                         /usr/local/lib/node_modules/npm, with npm and npx in /usr/local/bin),
#                         and the user `node` (uid and gid 1000, home /home/node) of the
#                         official image. Checked: `node --version` and `npm --version` run in it.
# The Rust image (rust:<version>-slim-<release>) has no stand-in: a release build inside Docker
# takes far too long on a small machine anyway; build the binaries outside and use the
# Dockerfile's `node-prebuilt` target (see docker-compose.yml).
#
# Cached by content: each tag is the first 12 hex digits of a sha256 over this script's text
# plus that image's inputs (the apt sources and options taken from the host, the architecture
# and release for debian; the debian tag, the node binary and npm's version for nodejs). The
# debian root filesystem tarball is kept under $GPUFLOW_CACHE/images/base-debian-<hash>.tar, so
# an engine with an empty data root re-imports in seconds instead of re-running mmdebstrap; an
# engine that already has a tag is left alone.
#
# Needs an engine: $DOCKER_HOST or /var/run/docker.sock (see scripts/docker-engine.sh start).
# Installs mmdebstrap with apt-get when it is missing. Shares the image cache and its lock with
# scripts/build-test-images.sh.
#
# Environment (optional): GPUFLOW_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/gpuflow).
# Progress goes to stderr; stdout carries only the two export lines.
set -euo pipefail
# inherit_errexit: the images are built inside $(…), where bash would otherwise drop set -e.
shopt -s inherit_errexit

me="build-base-images.sh"
self="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
lib="$(dirname "$self")/lib/images.sh"
# shellcheck source-path=SCRIPTDIR source=lib/images.sh
. "$lib"

# Checks image REF by running "$2" in it (no network); a failure removes the image (and the
# tarball "$3", when given) so the next run rebuilds.
check_image() {
  local ref="$1" check="$2" tarball="${3:-}"
  if ! docker run --rm --network none "$ref" sh -c "$check" >&2; then
    docker rmi "$ref" >/dev/null 2>&1 || true
    if [ -n "$tarball" ]; then rm -f "$tarball"; fi
    die "$ref: the image check failed ($check); image removed"
  fi
}

build_debian_tarball() {
  local tarball="$1" tmp opts=() line start=$SECONDS
  tmp="$(mktemp -d "$images_dir/.build-base-debian.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: $tmp is local
  trap "${as_root[*]} rm -rf '$tmp'" EXIT
  log "debian: building $tarball with mmdebstrap (minbase)"
  printf '%s\n' "$debian_sources" >"$tmp/sources.list"
  while IFS= read -r line; do
    if [ -n "$line" ]; then opts+=("--aptopt=$line"); fi
  done <<<"$debian_aptopts"
  # The maybe-merged-usr hook merges /usr itself (no usrmerge, hence no perl); the dpkg
  # path-excludes stay in the image (/etc/dpkg/dpkg.cfg.d), as in debian:*-slim, so packages
  # installed later leave their docs out too.
  "${as_root[@]}" mmdebstrap --variant=minbase \
    --hook-dir=/usr/share/mmdebstrap/hooks/maybe-merged-usr \
    --aptopt='APT::Install-Recommends "false"' "${opts[@]}" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    "$codename" "$tmp/out.tar" "$tmp/sources.list" >&2
  if [ "${#as_root[@]}" -gt 0 ]; then "${as_root[@]}" chown "$(id -u):$(id -g)" "$tmp/out.tar"; fi
  mv -f "$tmp/out.tar" "$tarball"
  "${as_root[@]}" rm -rf "$tmp"
  trap - EXIT
  log "debian: tarball built in $((SECONDS - start))s ($(du -h "$tarball" | cut -f1))"
}

ensure_debian() {
  local ref="gpuflow-local/debian:$debian_hash" tarball="$images_dir/base-debian-$debian_hash.tar"
  local start
  if engine_has "$ref"; then
    log "$ref: already in the engine"
  else
    if [ -s "$tarball" ]; then
      log "debian: using the cached $tarball"
    else
      build_debian_tarball "$tarball"
    fi
    start=$SECONDS
    docker import --change 'CMD ["bash"]' --change "ENV PATH=$std_path" \
      "$tarball" "$ref" >/dev/null
    check_image "$ref" \
      'command -v apt-get >/dev/null && command -v useradd >/dev/null &&
       grep -qs "^deb " /etc/apt/sources.list /etc/apt/sources.list.d/*.list' "$tarball"
    log "$ref: imported and checked in $((SECONDS - start))s"
  fi
  if [ -e "$tarball" ]; then touch "$tarball"; fi
  find "$images_dir" -maxdepth 1 -name 'base-debian-*.tar' ! -name "base-debian-$debian_hash.tar" \
    -mtime "+$prune_days" -print -delete 2>/dev/null | sed "s/^/$me: pruned /" >&2 || true
  printf '%s\n' "$ref"
}

# The node image: the debian one plus this machine's node and npm, built with the engine's
# classic builder (no BuildKit or buildx needed) from a throw-away context.
ensure_nodejs() {
  local debian_ref="$1" ref="gpuflow-local/nodejs:$nodejs_hash" tmp start=$SECONDS
  if engine_has "$ref"; then
    log "$ref: already in the engine"
    printf '%s\n' "$ref"
    return 0
  fi
  tmp="$(mktemp -d "$images_dir/.build-base-nodejs.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: $tmp is local
  trap "rm -rf '$tmp'" EXIT
  cp "$node_bin" "$tmp/node"
  cp -a "$npm_dir" "$tmp/npm"
  cat >"$tmp/Dockerfile" <<EOF
FROM $debian_ref
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && groupadd --gid 1000 node \\
 && useradd --uid 1000 --gid node --shell /bin/bash --create-home node
CMD ["node"]
EOF
  log "$ref: building from $debian_ref, $node_bin ($node_version) and npm $npm_version"
  # The classic builder: DOCKER_BUILDKIT=1 would need the buildx plugin.
  env -u DOCKER_BUILDKIT docker build -q -t "$ref" "$tmp" >/dev/null
  rm -rf "$tmp"
  trap - EXIT
  # shellcheck disable=SC2016 # expanded by sh inside the image
  check_image "$ref" 'node --version >/dev/null && npm --version >/dev/null && test "$(id -u node)" = 1000'
  log "$ref: built and checked in $((SECONDS - start))s"
  printf '%s\n' "$ref"
}

command -v docker >/dev/null 2>&1 ||
  die "no docker client; start an engine first: eval \"\$(scripts/docker-engine.sh start)\""
if ! timeout 10 docker info >/dev/null 2>&1; then
  die "no Docker engine answers at ${DOCKER_HOST:-unix:///var/run/docker.sock}; start one first:" \
    "eval \"\$(scripts/docker-engine.sh start)\""
fi

node_bin="$(command -v node || true)"
[ -n "$node_bin" ] || die "no node on PATH: the nodejs image copies this machine's Node.js (Debian: apt-get install nodejs npm)"
node_bin="$(readlink -f "$node_bin")"
node_version="$("$node_bin" --version)"
npm_dir=""
if command -v npm >/dev/null 2>&1; then npm_dir="$(npm root -g 2>/dev/null)/npm"; fi
[ -f "$npm_dir/package.json" ] || die "no npm found beside $node_bin (npm root -g)"
npm_version="$("$node_bin" -p 'require(process.argv[1]).version' "$npm_dir/package.json")"

ensure_packages mmdebstrap
mkdir -p "$images_dir"
# The lock of scripts/build-test-images.sh: one build at a time per cache.
exec 9>"$images_dir/.lock"
flock 9
"${as_root[@]}" rm -rf "$images_dir"/.build-base-*

# shellcheck source=/dev/null
codename="$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")"
[ -n "$codename" ] || die "no VERSION_CODENAME in /etc/os-release: not a Debian release?"
debian_sources="$(host_sources)"
[ -n "$debian_sources" ] || die "no Debian archive found in the apt sources (apt-get indextargets)"
debian_aptopts="$(host_aptopts)"
arch="$(dpkg --print-architecture)"
debian_hash="$(printf 'debian\n%s\n%s\n%s\n%s\n' "$arch" "$codename" "$debian_sources" "$debian_aptopts" |
  cat "$self" "$lib" - | hash_of)"
nodejs_hash="$(printf 'nodejs\n%s\n%s\n%s\n' "$debian_hash" "$(sha256sum <"$node_bin" | cut -d' ' -f1)" \
  "$npm_version" | cat "$self" "$lib" - | hash_of)"

debian_ref="$(ensure_debian)"
nodejs_ref="$(ensure_nodejs "$debian_ref")"

printf 'export GPUFLOW_DEBIAN_IMAGE=%s\n' "$debian_ref"
printf 'export GPUFLOW_NODEJS_IMAGE=%s\n' "$nodejs_ref"
