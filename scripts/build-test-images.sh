#!/usr/bin/env bash
# Builds the two local images the docker-runtime tests use, without any registry, and prints
# their references for `eval`:
#   export GPUFLOW_TEST_IMAGE_DEBIAN=gpuflow-test/debian:<hash>
#   export GPUFLOW_TEST_IMAGE_BUSYBOX=gpuflow-test/busybox:<hash>
#
#   gpuflow-test/busybox  Debian's busybox-static as /bin/busybox, a /bin symlink for each of its
#                         applets (/bin/sh among them), root in /etc/passwd and /etc/group, /root
#                         and /tmp (1777). Tiny; for tests that only need a shell.
#   gpuflow-test/debian   Debian (the host's release) made by mmdebstrap from the host's own apt
#                         sources: the apt variant plus bash, python3, procps and rsync; no openssh-server
#                         (asserted: the tests rely on a workload image without sshd).
# Both get CMD ["/bin/sh"] and the standard PATH.
#
# Cached by content: the tag is the first 12 hex digits of a sha256 over this script's text plus
# the inputs of that image (the apt sources and the apt options taken from the host for debian;
# the busybox-static version for busybox). The root filesystem tarballs are kept under
# $GPUFLOW_CACHE/images/<name>-<hash>.tar, so an engine with an empty data root re-imports in
# seconds instead of re-running mmdebstrap; an engine that already has the tag is left alone.
#
# Needs an engine: $DOCKER_HOST or /var/run/docker.sock (see scripts/docker-engine.sh start).
# Installs busybox-static and mmdebstrap with apt-get when they are missing.
#
# Environment (optional): GPUFLOW_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/gpuflow).
# Progress goes to stderr; stdout carries only the two export lines.
set -euo pipefail
# inherit_errexit: the images are built inside $(…), where bash would otherwise drop set -e.
shopt -s inherit_errexit

me="build-test-images.sh"
self="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
lib="$(dirname "$self")/lib/images.sh"
# shellcheck source-path=SCRIPTDIR source=lib/images.sh
. "$lib"

# Builds the tarball by running "$builder TMPDIR OUT.tar" in a temp dir inside $images_dir and
# renaming the result into place: a crash leaves no half-written tarball under the final name.
build_tarball() {
  local name="$1" tarball="$2" builder="$3" tmp start=$SECONDS
  tmp="$(mktemp -d "$images_dir/.build-$name.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: $tmp is local
  trap "${as_root[*]} rm -rf '$tmp'" EXIT
  log "$name: building $tarball"
  "$builder" "$tmp" "$tmp/out.tar"
  mv -f "$tmp/out.tar" "$tarball"
  "${as_root[@]}" rm -rf "$tmp"
  trap - EXIT
  log "$name: tarball built in $((SECONDS - start))s ($(du -h "$tarball" | cut -f1))"
}

build_busybox() {
  local tmp="$1" out="$2" bb rootfs="$1/rootfs" applet
  bb="$(dpkg -L busybox-static | grep -E '/bin/busybox$' | head -n 1)"
  [ -x "$bb" ] || die "busybox-static is installed but its /bin/busybox is missing"
  mkdir -p "$rootfs"/{bin,etc,root,tmp,dev,proc,sys,var}
  cp "$bb" "$rootfs/bin/busybox"
  # What `busybox --install -s` would do, all in /bin: one absolute symlink per applet.
  while IFS= read -r applet; do
    if [ -n "$applet" ] && [ "$applet" != busybox ]; then
      ln -sf /bin/busybox "$rootfs/bin/$applet"
    fi
  done < <("$rootfs/bin/busybox" --list)
  [ -L "$rootfs/bin/sh" ] || die "busybox $("$bb" | head -n 1) has no sh applet"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
    >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
  chmod 0700 "$rootfs/root"
  chmod 1777 "$rootfs/tmp"
  # Owned by root inside the image whoever builds it.
  tar --sort=name --numeric-owner --owner=0 --group=0 -C "$rootfs" -cf "$out" .
}

build_debian() {
  local tmp="$1" out="$2" opts=() line
  printf '%s\n' "$debian_sources" >"$tmp/sources.list"
  while IFS= read -r line; do
    if [ -n "$line" ]; then opts+=("--aptopt=$line"); fi
  done <<<"$debian_aptopts"
  # --variant=apt: Essential plus apt, far smaller than debootstrap's set. The maybe-merged-usr
  # hook merges /usr itself and installs usr-is-merged; without it the Essential
  # init-system-helpers ("usrmerge | usr-is-merged") brings usrmerge and with it perl (~55 MB).
  # Documentation, man pages and translations are left out to keep the image small (copyrights
  # stay). The mirror argument is a file: mmdebstrap pastes it in as the image's sources.list.
  "${as_root[@]}" mmdebstrap --variant=apt --include=bash,python3,procps,rsync \
    --hook-dir=/usr/share/mmdebstrap/hooks/maybe-merged-usr \
    --aptopt='APT::Install-Recommends "false"' "${opts[@]}" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    "$codename" "$out" "$tmp/sources.list" >&2
  # Made by root through sudo: hand it to the caller, who renames, touches and prunes it.
  if [ "${#as_root[@]}" -gt 0 ]; then "${as_root[@]}" chown "$(id -u):$(id -g)" "$out"; fi
}

# Imports the tarball as REF, then checks the image ("$check" runs in it with sh -c); a failing
# check removes the image and the tarball, so the next run rebuilds.
import_checked() {
  local ref="$1" tarball="$2" check="$3" start=$SECONDS
  log "$ref: importing $tarball"
  docker import --change 'CMD ["/bin/sh"]' --change "ENV PATH=$std_path" \
    "$tarball" "$ref" >/dev/null
  if ! docker run --rm --network none "$ref" sh -c "$check" >&2; then
    docker rmi "$ref" >/dev/null 2>&1 || true
    rm -f "$tarball"
    die "$ref: the image check failed ($check); image and tarball removed"
  fi
  log "$ref: imported and checked in $((SECONDS - start))s"
}

# Tarball (built unless cached) and image for one name.
ensure_image() {
  local name="$1" hash="$2" builder="$3" check="$4"
  local ref="gpuflow-test/$name:$hash" tarball="$images_dir/$name-$hash.tar"
  if ! engine_has "$ref"; then
    if [ -s "$tarball" ]; then
      log "$name: using the cached $tarball"
    else
      build_tarball "$name" "$tarball" "$builder"
    fi
    import_checked "$ref" "$tarball" "$check"
  else
    log "$ref: already in the engine"
  fi
  # Mark it used (pruning goes by age) and drop this name's tarballs unused for $prune_days days.
  if [ -e "$tarball" ]; then touch "$tarball"; fi
  find "$images_dir" -maxdepth 1 -name "$name-*.tar" ! -name "$name-$hash.tar" \
    -mtime "+$prune_days" -print -delete 2>/dev/null | sed "s/^/$me: pruned /" >&2 || true
  printf '%s\n' "$ref"
}

command -v docker >/dev/null 2>&1 ||
  die "no docker client; start an engine first: eval \"\$(scripts/docker-engine.sh start)\""
if ! timeout 10 docker info >/dev/null 2>&1; then
  die "no Docker engine answers at ${DOCKER_HOST:-unix:///var/run/docker.sock}; start one first:" \
    "eval \"\$(scripts/docker-engine.sh start)\""
fi

ensure_packages busybox-static mmdebstrap
mkdir -p "$images_dir"
# One build at a time per cache: parallel runs (worktrees, CI jobs) wait instead of racing.
exec 9>"$images_dir/.lock"
flock 9
# With the lock held no build is under way, so a temp dir here is what a killed build left.
"${as_root[@]}" rm -rf "$images_dir"/.build-*

# The host's release (bookworm…): the image's suite, and the filter for its apt sources.
# shellcheck source=/dev/null
codename="$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")"
[ -n "$codename" ] || die "no VERSION_CODENAME in /etc/os-release: not a Debian release?"
debian_sources="$(host_sources)"
[ -n "$debian_sources" ] || die "no Debian archive found in the apt sources (apt-get indextargets)"
debian_aptopts="$(host_aptopts)"
arch="$(dpkg --print-architecture)"
debian_hash="$(printf 'debian\n%s\n%s\n%s\n' "$arch" "$debian_sources" "$debian_aptopts" |
  cat "$self" "$lib" - | hash_of)"
busybox_hash="$(printf 'busybox\n%s\n%s\n' "$arch" "$(dpkg-query -W -f='${Version}' busybox-static)" |
  cat "$self" "$lib" - | hash_of)"

debian_ref="$(ensure_image debian "$debian_hash" build_debian \
  'test ! -e /usr/sbin/sshd && command -v bash >/dev/null && command -v python3 >/dev/null')"
busybox_ref="$(ensure_image busybox "$busybox_hash" build_busybox 'test -x /bin/sh && test -d /root')"

printf 'export GPUFLOW_TEST_IMAGE_DEBIAN=%s\n' "$debian_ref"
printf 'export GPUFLOW_TEST_IMAGE_BUSYBOX=%s\n' "$busybox_ref"
