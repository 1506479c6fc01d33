#!/usr/bin/env bash
# Entrypoint of the `node` image in docker-compose.yml: waits for what the compose devnet's other
# services write to the shared /devnet volume, then runs the given command.
#
#   $GPUFLOW_DEPLOYMENT          if set, the deployment file (the deploy job writes
#                                /devnet/devnet.json); waited for
#   $GPUFLOW_BOOTSTRAP_FROM      if set, a node's data dir on the shared volume: this node joins
#                                the network through the multiaddrs in its listen_addrs file
#                                (loopback ones left out: they mean this container, not that one)
#
# With neither set (outside compose) it just runs the command.
set -euo pipefail
if [ -n "${GPUFLOW_DEPLOYMENT:-}" ]; then
  for _ in $(seq 1 300); do [ -s "$GPUFLOW_DEPLOYMENT" ] && break; sleep 1; done
  [ -s "$GPUFLOW_DEPLOYMENT" ] || {
    echo "error: no $GPUFLOW_DEPLOYMENT after 300 s; did the deploy job fail?" >&2
    exit 1
  }
fi
if [ -n "${GPUFLOW_BOOTSTRAP_FROM:-}" ]; then
  addrs="$GPUFLOW_BOOTSTRAP_FROM/listen_addrs"
  for _ in $(seq 1 300); do [ -s "$addrs" ] && break; sleep 1; done
  GPUFLOW_BOOTSTRAP="$(grep -v '^/ip4/127\.' "$addrs" | paste -sd, -)" || {
    echo "error: no bootstrap multiaddrs in $addrs" >&2
    exit 1
  }
  export GPUFLOW_BOOTSTRAP
fi
exec "$@"
