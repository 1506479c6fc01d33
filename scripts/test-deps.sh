#!/usr/bin/env bash
# Installs the Debian packages `make test` needs when they are missing, so a fresh machine
# (Debian, Rust, Node/npm) needs nothing but the README's two commands:
#   rsync                           renters copy with rsync over the SSH gate (a test does)
#   openssh-server, openssh-client  the process runtime's stand-in runs sshd; tests log in with
#                                   ssh/scp/ssh-keygen; the Docker runtime's SSH gate copies
#                                   sftp-server (openssh-sftp-server) into lease containers
#   busybox-static                  the SSH gate's port forwarding inside any image; the tiny
#                                   test image
#   iptables                        the node fences lease networks off the host and its LAN
#   docker-compose                  the compose file is validated and brought up in the tests
# docker.io and mmdebstrap are installed by scripts/docker-engine.sh and
# scripts/build-test-images.sh when they need them.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have sshd || need+=(openssh-server)
{ have ssh && have ssh-keygen && have scp; } || need+=(openssh-client)
[ -x /usr/lib/openssh/sftp-server ] || need+=(openssh-sftp-server)
if ! { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; }; then
  need+=(busybox-static)
fi
have iptables || need+=(iptables)
have rsync || need+=(rsync)
{ have docker-compose || docker compose version >/dev/null 2>&1; } || need+=(docker-compose)

if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "test-deps.sh: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
