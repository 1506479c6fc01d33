#!/usr/bin/env bash
# The compose devnet's deploy job (image target `chain`): deploys the mock stablecoin and
# GpuFlowEscrow to $RPC_URL with the pinned forge, funds anvil's ten default accounts with
# 10,000 mUSD each, and writes /devnet/devnet.json (the deployment plus "rpcUrl") for the nodes.
# Same steps as scripts/devnet.sh, for a chain in another container.
set -euo pipefail
rpc="${RPC_URL:-http://anvil:8545}"
# anvil's well-known account 0: a public test key, never use it on a real chain.
deployer_key="${DEPLOYER_KEY:-0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80}"
out="${DEVNET_FILE:-/devnet/devnet.json}"
cd /opt/gpuflow/contracts
# The file the nodes wait for: a previous run's must not look like this one's.
rm -f "$out"
for _ in $(seq 1 120); do bin/cast chain-id --rpc-url "$rpc" >/dev/null 2>&1 && break; sleep 0.5; done
chain_id="$(bin/cast chain-id --rpc-url "$rpc")"
bin/forge script script/Deploy.s.sol --rpc-url "$rpc" --broadcast --private-key "$deployer_key"
token="$(node -p 'require(process.argv[1]).token' "$PWD/deployments/$chain_id.json")"
for a in $(bin/cast rpc eth_accounts --rpc-url "$rpc" | tr -d '[]" ' | tr ',' ' '); do
  bin/cast send "$token" "mint(address,uint256)" "$a" 10000000000 \
    --private-key "$deployer_key" --rpc-url "$rpc" >/dev/null
  echo "funded $a with 10,000 mUSD"
done
node -e '
const fs = require("fs");
const [src, out, rpc] = process.argv.slice(1);
const d = JSON.parse(fs.readFileSync(src, "utf8"));
d.rpcUrl = rpc;
fs.writeFileSync(out + ".tmp", JSON.stringify(d, null, 2) + "\n");
fs.renameSync(out + ".tmp", out);
' "$PWD/deployments/$chain_id.json" "$out" "$rpc"
echo "wrote $out"
