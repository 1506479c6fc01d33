#!/usr/bin/env bash
# Exports the ABI and bytecode of the escrow and the devnet token for the Rust side.
#
#   tools/export-abi.sh          build, then write ../protocol/abi/{GpuFlowEscrow,MockStablecoin}.json
#   tools/export-abi.sh --check  build into a temporary directory and fail if the committed files
#                                differ (run in CI so the bindings never drift from the contracts)
#
# Each file is {"abi": [...], "bytecode": {"object": "0x..."}, "deployedBytecode": {"object": "0x..."}},
# pretty-printed with two spaces and a final newline. The bytecode is deterministic because
# foundry.toml turns off the metadata hash and CBOR tail. jq is not available here: node does the JSON.
set -euo pipefail

cd "$(dirname "$0")/.."
FORGE=bin/forge
DEST=../protocol/abi
CONTRACTS=(GpuFlowEscrow MockStablecoin)

mode=write
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

if [[ ! -x $FORGE ]]; then
  echo "error: $FORGE not found; run 'make tools' first" >&2
  exit 1
fi

# Extracts the three fields from a forge artifact into the export format.
extract() { # artifact -> stdout
  node -e '
    const a = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const out = { abi: a.abi, bytecode: { object: a.bytecode.object }, deployedBytecode: { object: a.deployedBytecode.object } };
    process.stdout.write(JSON.stringify(out, null, 2) + "\n");
  ' "$1"
}

if [[ $mode == write ]]; then
  # Only src/ is needed; skipping tests and scripts keeps this fast.
  "$FORGE" build --skip test --skip script >&2
  mkdir -p "$DEST"
  for c in "${CONTRACTS[@]}"; do
    extract "out/$c.sol/$c.json" > "$DEST/$c.json"
    echo "wrote $DEST/$c.json" >&2
  done
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A separate out and cache, so the check neither trusts nor disturbs the working build.
"$FORGE" build --skip test --skip script --out "$tmp/out" --cache-path "$tmp/cache" >&2
status=0
for c in "${CONTRACTS[@]}"; do
  extract "$tmp/out/$c.sol/$c.json" > "$tmp/$c.json"
  if [[ ! -f $DEST/$c.json ]]; then
    echo "error: $DEST/$c.json is missing; run contracts/tools/export-abi.sh and commit it" >&2
    status=1
  elif ! cmp -s "$tmp/$c.json" "$DEST/$c.json"; then
    echo "error: $DEST/$c.json is out of date with contracts/src; run contracts/tools/export-abi.sh and commit it" >&2
    status=1
  fi
done
[[ $status == 0 ]] && echo "ok: protocol/abi matches contracts/src" >&2
exit $status
