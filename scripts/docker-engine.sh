#!/usr/bin/env bash
# A Docker engine for the tests and the devnet, without touching the machine's own Docker set-up.
#
#   scripts/docker-engine.sh start   use a running engine, or start a private dockerd; prints one
#                                    line, `export DOCKER_HOST=unix:///…/docker.sock`, so callers
#                                    can `eval "$(scripts/docker-engine.sh start)"`
#   scripts/docker-engine.sh stop    stop the private dockerd that `start` started (idempotent;
#                                    never touches an engine this script did not start)
#   scripts/docker-engine.sh env     print the export line for the engine that answers; exit 1 if
#                                    none does
#
# `start` prefers an engine that already answers: the one $DOCKER_HOST names, then the system's
# /var/run/docker.sock. Only when neither answers does it start its own dockerd (installing
# docker.io with apt-get if dockerd is missing), with
#   - its data root in $GPUFLOW_CACHE/docker-data, so images imported by
#     scripts/build-test-images.sh survive between runs;
#   - its socket, pidfile, exec root (containerd state, container bundles) and log under a short
#     run dir, $GPUFLOW_DOCKERD_RUN (default /tmp/gpuflow-dockerd): Unix socket paths (the engine's
#     and the ones containerd makes under the exec root) are limited to 108 bytes;
#   - cgroupfs as cgroup driver (no systemd needed), overlay2 storage (vfs when overlay2 fails),
#     the default bridge and iptables left on: the node adds DOCKER-USER rules.
# A private engine left running by an earlier `start` is reused.
#
# Environment (all optional):
#   GPUFLOW_CACHE        cache dir; default ${XDG_CACHE_HOME:-$HOME/.cache}/gpuflow
#   GPUFLOW_DOCKERD_RUN  run dir of the private engine; default /tmp/gpuflow-dockerd
#   DOCKER_HOST          an engine to use instead of starting one (when it answers)
#
# Diagnostics go to stderr; stdout carries only the export line.
set -euo pipefail
# inherit_errexit: set -e also inside $(…) (bash drops it there otherwise).
shopt -s inherit_errexit

me="docker-engine.sh"
cache="${GPUFLOW_CACHE:-${XDG_CACHE_HOME:-${HOME:?set HOME or GPUFLOW_CACHE}/.cache}/gpuflow}"
run_dir="${GPUFLOW_DOCKERD_RUN:-/tmp/gpuflow-dockerd}"
data_root="$cache/docker-data"
# Held by a flock process wrapping the private dockerd for its whole life: two engines on one data
# root (two run dirs, one cache) would corrupt it.
data_lock="$cache/docker-data.lock"
sock="$run_dir/docker.sock"
pidfile="$run_dir/dockerd.pid"
logfile="$run_dir/dockerd.log"
# Present only while a dockerd that this script started may be running: `stop` acts on nothing else.
marker="$run_dir/started-by-gpuflow"
system_sock="/var/run/docker.sock"
start_timeout_s=60
stop_timeout_s=20

note() { printf '%s: %s\n' "$me" "$*" >&2; }
die() {
  note "$*"
  exit 1
}

# Root runs everything directly; anyone else goes through sudo (dockerd and apt-get need root).
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "not root and sudo is missing: dockerd needs root"
  as_root=(sudo)
fi

# Installs Debian packages with one `apt-get update`.
apt_install() {
  note "installing $* with apt-get"
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@" >&2
}

# True when the engine at the given address answers `docker info` (bounded: a wedged engine must
# not hang the caller).
answers() {
  timeout 10 docker -H "$1" info >/dev/null 2>&1
}

# The pid in the pidfile when it names a live dockerd (a recycled pid running something else does
# not count); fails otherwise.
live_private_pid() {
  local pid comm
  [ -r "$pidfile" ] || return 1
  pid="$(tr -dc '0-9' <"$pidfile")"
  [ -n "$pid" ] || return 1
  comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
  [ "$comm" = dockerd ] || return 1
  printf '%s\n' "$pid"
}

print_export() { printf 'export DOCKER_HOST=%s\n' "$1"; }

# Clears what a dockerd that did not shut down cleanly (SIGKILL, a failed start) leaves behind:
# its pidfile and socket (a stale pidfile stops the next one from starting) and the bind mount of
# the data root onto itself that dockerd makes when that mount's propagation is not shared. It
# records that mount in <exec root>/unmount-on-shutdown and undoes it only on a clean shutdown;
# left in place, the next dockerd takes it for a mount of the user's and never removes it.
clean_after_exit() {
  local flag="$run_dir/exec/unmount-on-shutdown"
  if [ -e "$flag" ]; then
    if mountpoint -q "$data_root"; then
      "${as_root[@]}" umount "$data_root" || note "could not unmount $data_root"
    fi
    "${as_root[@]}" rm -f "$flag"
  fi
  "${as_root[@]}" rm -f "$pidfile" "$sock"
}

# Line count of the log when the latest launch began, to quote only that attempt's errors.
attempt_line=0

# Starts dockerd in the background with the given storage driver and waits until it answers.
# Returns 0 when it answers, 2 when it exited early (so another driver may be tried), 1 when it is
# still not answering after the timeout (it is then killed).
launch() {
  local driver="$1" pid waited=0
  clean_after_exit
  attempt_line=0
  if [ -e "$logfile" ]; then attempt_line="$(wc -l <"$logfile")"; fi
  printf '\n=== %s: dockerd --storage-driver %s at %s ===\n' "$me" "$driver" "$(date -u +%FT%TZ)" \
    >>"$logfile"
  # setsid: the engine must outlive this script and must not get the caller's Ctrl-C; it is
  # stopped by `stop`, which lets it shut its containers down cleanly.
  # flock -o: the lock stays with the flock process (dockerd's parent), not with dockerd's children
  # (containerd, shims). --config-file: an empty one, so /etc/docker/daemon.json (hosts,
  # data-root…) cannot clash with these flags.
  "${as_root[@]}" setsid flock -n -o "$data_lock" dockerd \
    --config-file "$run_dir/daemon.json" \
    --data-root "$data_root" \
    --exec-root "$run_dir/exec" \
    --pidfile "$pidfile" \
    -H "unix://$sock" \
    --group "$(id -gn)" \
    --exec-opt native.cgroupdriver=cgroupfs \
    --storage-driver "$driver" \
    </dev/null >>"$logfile" 2>&1 &
  pid=$!
  # The marker goes down before the engine answers, so an interrupted start is still stoppable.
  printf 'started %s by %s (launcher pid %s)\n' "$(date -u +%FT%TZ)" "$me" "$pid" >"$marker"
  note "starting a private dockerd (storage driver $driver; log $logfile)"
  while [ "$waited" -lt "$start_timeout_s" ]; do
    if answers "unix://$sock"; then
      printf '\n' >&2
      return 0
    fi
    # Exited early: dockerd writes its pidfile at once, so no live one plus a gone launcher
    # means it is gone (/proc rather than kill -0, which says EPERM for sudo's root process).
    if [ ! -e "/proc/$pid" ] && ! live_private_pid >/dev/null; then
      printf '\n' >&2
      return 2
    fi
    printf '.' >&2
    sleep 1
    waited=$((waited + 1))
  done
  printf '\n' >&2
  note "dockerd did not answer within ${start_timeout_s}s; stopping it"
  stop_private || true
  return 1
}

start() {
  if [ -n "${DOCKER_HOST:-}" ]; then
    if answers "$DOCKER_HOST"; then
      note "using the engine at DOCKER_HOST=$DOCKER_HOST"
      print_export "$DOCKER_HOST"
      return 0
    fi
    note "DOCKER_HOST=$DOCKER_HOST does not answer; looking for another engine"
  fi
  if [ -S "$system_sock" ] && answers "unix://$system_sock"; then
    note "using the system engine at $system_sock"
    print_export "unix://$system_sock"
    return 0
  fi

  if ! command -v docker >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then
    apt_install docker.io
  fi
  # Created as the caller, so the marker and daemon.json can be written without root.
  mkdir -p "$run_dir" "$data_root"

  if live_private_pid >/dev/null; then
    # Reuse only when it answers; a live one that does not (still starting, wedged) gets the
    # same wait as a fresh start.
    local waited=0
    until answers "unix://$sock"; do
      [ "$waited" -lt "$start_timeout_s" ] ||
        die "the private dockerd (pid $(live_private_pid)) does not answer; see $logfile or run: $0 stop"
      printf '.' >&2
      sleep 1
      waited=$((waited + 1))
    done
    note "reusing the private engine at unix://$sock (pid $(live_private_pid))"
    print_export "unix://$sock"
    return 0
  fi

  [ -e "$run_dir/daemon.json" ] || printf '{}\n' >"$run_dir/daemon.json"
  if ! flock -n "$data_lock" true; then
    die "another dockerd is using $data_root (it holds $data_lock): stop it, or give this one" \
      "another GPUFLOW_CACHE"
  fi

  local rc=0
  launch overlay2 || rc=$?
  if [ "$rc" -eq 2 ]; then
    note "dockerd failed to start with overlay2; its errors:"
    tail -n "+$((attempt_line + 1))" "$logfile" | grep -E 'level=(error|fatal)|failed to start' |
      tail -n 5 >&2 || true
    note "retrying once with --storage-driver vfs"
    rc=0
    launch vfs || rc=$?
  fi
  if [ "$rc" -ne 0 ]; then
    note "dockerd did not start; last 30 lines of $logfile:"
    tail -n 30 "$logfile" >&2 || true
    clean_after_exit
    rm -f "$marker"
    exit 1
  fi
  note "private engine up at unix://$sock (pid $(live_private_pid || echo '?'), data root $data_root)"
  print_export "unix://$sock"
}

# Stops the private dockerd named by the pidfile: SIGTERM (dockerd then stops its containers and
# its containerd), SIGKILL after $stop_timeout_s.
stop_private() {
  local pid waited=0
  if pid="$(live_private_pid)"; then
    note "stopping the private dockerd (pid $pid)"
    "${as_root[@]}" kill -TERM "$pid" 2>/dev/null || true
    # Polled every 0.2 s: a clean shutdown takes a second or two.
    while [ "$waited" -lt $((stop_timeout_s * 5)) ] && [ -e "/proc/$pid" ]; do
      sleep 0.2
      waited=$((waited + 1))
    done
    if [ -e "/proc/$pid" ]; then
      note "dockerd (pid $pid) still running after ${stop_timeout_s}s; sending SIGKILL"
      "${as_root[@]}" kill -KILL "$pid" 2>/dev/null || true
      sleep 1
      # A killed dockerd cannot stop the containerd it started; do it here, by its pidfile.
      local cpid="" cpidfile="$run_dir/exec/containerd/containerd.pid"
      [ -r "$cpidfile" ] && cpid="$(tr -dc '0-9' <"$cpidfile")"
      if [ -n "$cpid" ] && [ "$(cat "/proc/$cpid/comm" 2>/dev/null)" = containerd ]; then
        "${as_root[@]}" kill -TERM "$cpid" 2>/dev/null || true
      fi
    fi
  fi
  clean_after_exit
  rm -f "$marker"
}

stop() {
  if [ ! -e "$marker" ]; then
    note "no private engine started by this script is running (nothing to stop)"
    return 0
  fi
  stop_private
  note "private engine stopped"
}

env_cmd() {
  if [ -n "${DOCKER_HOST:-}" ] && answers "$DOCKER_HOST"; then
    print_export "$DOCKER_HOST"
  elif [ -S "$sock" ] && answers "unix://$sock"; then
    print_export "unix://$sock"
  elif [ -S "$system_sock" ] && answers "unix://$system_sock"; then
    print_export "unix://$system_sock"
  else
    note "no Docker engine answers (start one with: eval \"\$($0 start)\")"
    return 1
  fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
env) env_cmd ;;
*)
  printf 'usage: %s start|stop|env\n' "$0" >&2
  exit 2
  ;;
esac
