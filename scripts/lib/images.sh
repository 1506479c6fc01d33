# Shared by scripts/build-test-images.sh and scripts/build-base-images.sh (sourced; each sets
# `me` first): the image cache, root/sudo, Debian packages, the host's apt sources for
# mmdebstrap, content hashes. Its text is part of both scripts' image hashes.
# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # variables used by, or (codename) set by, the sourcing scripts

cache="${GPUFLOW_CACHE:-${XDG_CACHE_HOME:-${HOME:?set HOME or GPUFLOW_CACHE}/.cache}/gpuflow}"
images_dir="$cache/images"
std_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Tarballs of older hashes are dropped once unused this long (every edit of this script makes a
# new hash; a few days' grace keeps worktrees on other revisions from rebuilding each other's).
prune_days=14

: "${me:?scripts that source lib/images.sh set me first}"
log() { printf '%s: %s\n' "$me" "$*" >&2; }
die() {
  log "$*"
  exit 1
}

# mmdebstrap and apt-get need root; anyone else goes through sudo.
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "not root and sudo is missing: mmdebstrap needs root"
  as_root=(sudo)
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# Installs the missing packages among the arguments with a single `apt-get update`.
ensure_packages() {
  local missing=() p
  for p in "$@"; do installed "$p" || missing+=("$p"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing ${missing[*]} with apt-get"
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# The host's Debian apt sources as one-line entries, for mmdebstrap. apt itself reads
# /etc/apt/sources.list and sources.list.d/*.list and *.sources (deb822) and reports what it
# found with `apt-get indextargets`, which spares parsing both formats here (and honours
# "Enabled: no" and the file-name rules). Kept: binary (deb) entries of the Debian archive, i.e.
# Origin Debian, or, when `apt-get update` never ran, a suite named after the host's release
# (bookworm, bookworm-updates, bookworm-security…), which leaves out third-party repositories
# whose keys the image would not have. One line per repository and suite, its components in
# order, in apt's order.
host_sources() {
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg opts=""
  # signed-by keeps working inside the image: apt there depends on debian-archive-keyring.
  [ -r "$keyring" ] && opts=" [signed-by=$keyring]"
  # shellcheck disable=SC2016 # $(…) here are apt's format fields, not shell expansions
  apt-get indextargets --format '$(TARGET_OF)|$(IDENTIFIER)|$(ORIGIN)|$(REPO_URI)|$(RELEASE)|$(COMPONENT)' |
    awk -F'|' -v codename="$codename" -v opts="$opts" '
      $1 != "deb" || $2 != "Packages" { next }
      $3 != "Debian" && !($3 == "" && ($5 == codename || index($5, codename "-") == 1)) { next }
      {
        key = $4 " " $5
        if (!(key in comps)) { order[++n] = key; comps[key] = "" }
        if ((" " comps[key] " ") !~ (" " $6 " ")) comps[key] = comps[key] " " $6
      }
      END { for (i = 1; i <= n; i++) print "deb" opts " " order[i] comps[order[i]] }'
}

# Host apt settings the archive needs to be usable from here: a frozen or snapshot mirror needs
# Check-Valid-Until/Check-Date off, a proxied machine needs its proxy. mmdebstrap does not read
# the host's apt.conf, so they are passed on (and part of the hash).
host_aptopts() {
  apt-config dump | grep -E '^Acquire::(Check-Valid-Until|Check-Date|https?::Proxy) ' || true
}

hash_of() { sha256sum | cut -c1-12; }

engine_has() { docker image inspect "$1" >/dev/null 2>&1; }
