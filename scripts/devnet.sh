#!/usr/bin/env bash
# Local devnet: anvil + the escrow and a mock stablecoin, deployed with the pinned forge.
# Writes .devnet/devnet.json (what the CLI and nodes read) and keeps running until Ctrl-C.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/contracts/bin"
port="${GPUFLOW_DEVNET_PORT:-8545}"
rpc="http://127.0.0.1:$port"
state_dir="$root/.devnet"
# anvil's well-known account 0: public test key, never use it on a real chain.
deployer_key="0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"

mkdir -p "$state_dir"
if "$bin/cast" chain-id --rpc-url "$rpc" >/dev/null 2>&1; then
  echo "error: something already answers on $rpc; stop it or set GPUFLOW_DEVNET_PORT" >&2
  exit 1
fi

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "stopping devnet..."
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

echo "starting anvil on $rpc (log: .devnet/anvil.log)"
"$bin/anvil" --port "$port" --host 127.0.0.1 >"$state_dir/anvil.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 100); do
  "$bin/cast" chain-id --rpc-url "$rpc" >/dev/null 2>&1 && break
  sleep 0.1
done
chain_id="$("$bin/cast" chain-id --rpc-url "$rpc")"

echo "deploying the mock stablecoin and GpuFlowEscrow (log: .devnet/deploy.log)"
(cd "$root/contracts" && "$bin/forge" script script/Deploy.s.sol --rpc-url "$rpc" \
  --broadcast --private-key "$deployer_key" >"$state_dir/deploy.log" 2>&1) || {
  echo "error: deployment failed; see .devnet/deploy.log" >&2
  exit 1
}
deployment="$root/contracts/deployments/$chain_id.json"
cp "$deployment" "$state_dir/devnet.json"

node -e '
const d = require(process.argv[1]);
console.log("");
console.log("GPUFlow devnet is up");
console.log("  rpc             " + process.argv[2]);
console.log("  chain id        " + d.chainId);
console.log("  escrow          " + d.escrow);
console.log("  token (mUSD)    " + d.token);
console.log("  fee             " + d.feeBps + " bps to " + d.treasury);
console.log("  accept timeout  " + d.acceptTimeout + " s");
console.log("  written to      .devnet/devnet.json");
console.log("");
console.log("Press Ctrl-C to stop.");
' "$deployment" "$rpc"

wait "${pids[0]}"
