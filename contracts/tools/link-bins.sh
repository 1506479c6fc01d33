#!/usr/bin/env bash
# Links contracts/bin/{forge,anvil,cast} to the native Foundry binaries that npm installed.
#
# Why not node_modules/.bin/forge: that is a Node wrapper which spawns the binary and exits 0
# even when the tool fails, so `forge test` failures, `cast` errors and `forge snapshot --check`
# differences would pass unnoticed. It also leaves anvil running when its parent is killed.
set -euo pipefail
cd "$(dirname "$0")/.."
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) platform=linux-amd64 ;;
  Linux-aarch64 | Linux-arm64) platform=linux-arm64 ;;
  Darwin-arm64) platform=darwin-arm64 ;;
  Darwin-x86_64) platform=darwin-amd64 ;;
  *) echo "error: no pinned Foundry build for $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac
mkdir -p bin
for tool in forge anvil cast; do
  target="node_modules/@foundry-rs/$tool-$platform/bin/$tool"
  if [[ ! -x $target ]]; then
    echo "error: $target missing; run 'npm ci' in contracts/ (package @foundry-rs/$tool-$platform)" >&2
    exit 1
  fi
  ln -sfn "../$target" "bin/$tool"
done
