#!/usr/bin/env bash
# Local devnet: anvil + the escrow and a mock stablecoin, deployed with the pinned forge, and one
# host node (gpuflow-node) offering simulated GPUs. Writes .devnet/devnet.json (what the CLI and
# nodes read, with the host node's multiaddrs under "bootstrap") and keeps running until Ctrl-C.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/contracts/bin"
port="${GPUFLOW_DEVNET_PORT:-8545}"
rpc="http://127.0.0.1:$port"
state_dir="$root/.devnet"
# anvil's well-known account 0: public test key, never use it on a real chain.
deployer_key="0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
# anvil's well-known account 1: the devnet host's wallet.
host_key="0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
# The host node's p2p port on 127.0.0.1 (TCP and QUIC); 0 lets the OS pick one.
p2p_port="${GPUFLOW_DEVNET_P2P_PORT:-0}"

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

echo "building gpuflow-node and gpuflow (cargo build; log: .devnet/build.log)"
(cd "$root" && cargo build -p gpuflow-node -p gpuflow >"$state_dir/build.log" 2>&1) || {
  echo "error: cargo build failed; see .devnet/build.log" >&2
  exit 1
}

# Simulated GPUs: no NVIDIA driver is needed, and the offers say they are self-declared.
node_dir="$state_dir/node"
# Each devnet is a new chain: the node's leases and chain cursor from the last one would point
# at blocks and leases that no longer exist, so the host starts from a clean data dir.
rm -rf "$node_dir"
mkdir -p "$node_dir"
cat >"$state_dir/node.toml" <<TOML
# Written by scripts/devnet.sh: the devnet's host node.
data_dir = "$node_dir"
listen = ["/ip4/127.0.0.1/tcp/$p2p_port", "/ip4/127.0.0.1/udp/$p2p_port/quic-v1"]

[chain]
deployment = "$state_dir/devnet.json"

[machine]
region = "DE"
cpu_cores = 32
ram_mib = 131072
disk_gib = 500
inet_up_mbps = 1000
inet_down_mbps = 1000

[offers]
templates = ["pytorch", "ubuntu"]

[pricing]
RTX_4090 = "0.40"

[gpu]
detection = "declared"

[[gpu.declared]]
model = "RTX_4090"
count = 2
vram_mib = 24564
cuda = "12.4"
driver = "550.54.14"
TOML

echo "starting the host node: 2x RTX_4090 (simulated) at 0.40 mUSD/GPU-hour, process runtime (log: .devnet/node.log)"
rm -f "$node_dir/listen_addrs" "$state_dir/node.out"
GPUFLOW_HOST_PRIVATE_KEY="$host_key" GPUFLOW_RPC_URL="$rpc" "$root/target/debug/gpuflow-node" run \
  --config "$state_dir/node.toml" >"$state_dir/node.out" 2>"$state_dir/node.log" &
pids+=($!)
# The node prints `ready <peer id>` once it listens and its offers are announced.
for _ in $(seq 1 300); do
  grep -q '^ready ' "$state_dir/node.out" 2>/dev/null && break
  kill -0 "${pids[1]}" 2>/dev/null || {
    echo "error: the host node exited; see .devnet/node.log" >&2
    exit 1
  }
  sleep 0.1
done
grep -q '^ready ' "$state_dir/node.out" || {
  echo "error: the host node did not become ready in 30 s; see .devnet/node.log" >&2
  exit 1
}

# Record the node's multiaddrs in devnet.json so `gpuflow` finds them without flags.
node -e '
const fs = require("fs");
const [file, addrsFile] = process.argv.slice(1);
const d = JSON.parse(fs.readFileSync(file, "utf8"));
d.bootstrap = fs.readFileSync(addrsFile, "utf8").split("\n").filter(Boolean);
fs.writeFileSync(file, JSON.stringify(d, null, 2) + "\n");
' "$state_dir/devnet.json" "$node_dir/listen_addrs"

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
console.log("  host node       " + d.bootstrap.join("\n                  "));
console.log("  written to      .devnet/devnet.json");
console.log("");
console.log("try:");
console.log("  cargo run -q -p gpuflow -- search");
console.log("  cargo run -q -p gpuflow -- search \x27gpu_name=RTX_4090 num_gpus>=2\x27 --json");
console.log("");
console.log("Press Ctrl-C to stop.");
' "$state_dir/devnet.json" "$rpc"

# Runs until Ctrl-C, or until anvil or the node exits.
wait -n "${pids[@]}"
