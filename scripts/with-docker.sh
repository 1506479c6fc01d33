#!/usr/bin/env bash
# Runs a command with a Docker engine and the test images:
#   scripts/with-docker.sh cargo test --workspace --locked
# exports DOCKER_HOST (scripts/docker-engine.sh start), GPUFLOW_TEST_IMAGE_DEBIAN and
# GPUFLOW_TEST_IMAGE_BUSYBOX (scripts/build-test-images.sh), runs the command and exits with its
# status. A private engine started here is stopped on the way out (also on Ctrl-C or SIGTERM); an
# engine that was already answering (the system's, $DOCKER_HOST's, a private one left running on
# purpose) is left running.
#
# GPUFLOW_NO_DOCKER=1 runs the command as it is, with no engine and no images (the docker tests
# then skip or fail as they do without Docker).
set -euo pipefail
# inherit_errexit: set -e also inside $(…) (bash drops it there otherwise).
shopt -s inherit_errexit

[ "$#" -gt 0 ] || {
  printf 'usage: %s CMD [ARGS...]\n' "$0" >&2
  exit 2
}
if [ "${GPUFLOW_NO_DOCKER:-0}" = 1 ]; then
  exec "$@"
fi

here="$(cd "$(dirname "$0")" && pwd)"
engine="$here/docker-engine.sh"

# Ours to stop only if no engine answered before `start`: otherwise start reuses that one.
stop_on_exit=0
if ! "$engine" env >/dev/null 2>&1; then stop_on_exit=1; fi
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  if [ "$stop_on_exit" = 1 ]; then "$engine" stop || true; fi
}
trap cleanup EXIT
# Exit on a signal, so the EXIT trap stops the engine; 128+signal as a shell would report it.
trap 'exit 130' INT
trap 'exit 143' TERM

# Captured first: `eval "$(failing)"` would eval nothing and succeed.
engine_env="$("$engine" start)"
eval "$engine_env"
images_env="$("$here/build-test-images.sh")"
eval "$images_env"

status=0
"$@" || status=$?
exit "$status"
