#!/usr/bin/env bash
# Local devnet: anvil, the escrow and a mock stablecoin deployed with the pinned forge, anvil's
# ten default accounts funded with 10,000 mUSD each, and two host nodes (gpuflow-node) offering
# simulated GPUs with the lease engine and the process runtime. Writes <state dir>/devnet.json
# (the deployment, "bootstrap": both hosts' multiaddrs, "rpcUrl") and runs until Ctrl-C, which
# stops the nodes, the workloads they started and anvil.
#
# Environment (all optional; a test runs a second devnet beside a user's one with them):
#   GPUFLOW_DEVNET_DIR       state dir (logs, configs, node data, devnet.json); default .devnet
#   GPUFLOW_DEVNET_PORT      anvil's port on 127.0.0.1; default 8545
#   GPUFLOW_DEVNET_CHAIN_ID  anvil's chain id; default 31337
#   GPUFLOW_DEVNET_P2P_PORT  host A's p2p port (TCP and QUIC), host B's is one more; default 0
#                            (the OS picks free ports)
#   GPUFLOW_DEVNET_API_PORT  host A's HTTP API port, host B's is one more; default 8686; 0 lets
#                            the OS pick (the chosen address is in <host dir>/api_addr)
#   GPUFLOW_BIN_DIR          directory with prebuilt gpuflow-node and gpuflow; default: build
#                            them with `cargo build` and use target/debug
#   GPUFLOW_DEVNET_RUNTIME   process (default: no Docker needed; workloads are unisolated child
#                            processes) or docker (a Docker engine, started privately by
#                            scripts/docker-engine.sh if none runs, the locally built test images
#                            standing in for the template images, simulated GPUs)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/contracts/bin"
port="${GPUFLOW_DEVNET_PORT:-8545}"
chain_id="${GPUFLOW_DEVNET_CHAIN_ID:-31337}"
p2p_port="${GPUFLOW_DEVNET_P2P_PORT:-0}"
api_port="${GPUFLOW_DEVNET_API_PORT:-8686}"
state_dir="${GPUFLOW_DEVNET_DIR:-$root/.devnet}"
runtime="${GPUFLOW_DEVNET_RUNTIME:-process}"
case "$runtime" in
  process | docker) ;;
  *)
    echo "error: GPUFLOW_DEVNET_RUNTIME=$runtime: use process or docker" >&2
    exit 2
    ;;
esac
# Set when this script started the Docker engine (and so stops it).
own_engine=""
rpc="http://127.0.0.1:$port"
# anvil's well-known keys: public test keys, never use them on a real chain.
# Account 0 deploys and mints; accounts 1 and 3 are the two hosts' wallets; account 2 is the
# renter the README uses (any of the ten can rent: all are funded).
deployer_key="0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
host_a_key="0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
renter_key="0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
host_b_key="0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"
# 10,000 mUSD in base units (6 decimals).
fund_amount=10000000000

next_port() { if [ "$1" = 0 ]; then echo 0; else echo $(($1 + 1)); fi; }

mkdir -p "$state_dir"
state_dir="$(cd "$state_dir" && pwd)"
if "$tools/cast" chain-id --rpc-url "$rpc" >/dev/null 2>&1; then
  echo "error: something already answers on $rpc; stop it or set GPUFLOW_DEVNET_PORT" >&2
  exit 1
fi

# Children we started, stopped in reverse order on exit: the nodes first (they withdraw their
# offers; they need the chain for that), then anvil.
anvil_pid=""
node_pids=()
node_dirs=()

# Process workloads run in their own process group and deliberately outlive their node (a
# restarted node re-adopts them through <data_dir>/workloads/<lease>/pid.json). A devnet's
# chain dies with it, so its workloads must go too: kill each recorded process group whose
# leader is still the process that was started (same /proc start time, pids get reused).
kill_workloads() {
  local dir f id pid start now
  for dir in "${node_dirs[@]}"; do
    for f in "$dir"/workloads/*/pid.json; do
      [ -f "$f" ] || continue
      id="$(sed -n 's/.*"id":"\([0-9]*:[0-9]*\)".*/\1/p' "$f")"
      pid="${id%%:*}" start="${id##*:}"
      [ -n "$pid" ] || continue
      now="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f20)" || true
      if [ -n "$now" ] && [ "$now" = "$start" ]; then
        echo "stopping workload process group $pid ($(basename "$(dirname "$f")"))"
        kill -TERM -- "-$pid" 2>/dev/null || true
        for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
      fi
    done
  done
}

# Sends SIGTERM to the given pids, waits up to 20 s for them, then SIGKILLs what is left.
stop_pids() {
  local p
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 200); do
    local alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "$@"; do
    if kill -0 "$p" 2>/dev/null; then
      echo "pid $p ignored SIGTERM for 20 s; killing it" >&2
      kill -KILL "$p" 2>/dev/null || true
    fi
    wait "$p" 2>/dev/null || true
  done
}

cleanup() {
  trap - INT TERM EXIT
  # Whoever read our stdout may be gone (a test that failed and exited): a write to the closed
  # pipe must not kill the clean-up half way and orphan the workloads.
  trap '' PIPE
  set +e
  echo
  echo "stopping devnet..."
  [ "${#node_pids[@]}" -gt 0 ] && stop_pids "${node_pids[@]}"
  kill_workloads
  [ -n "$anvil_pid" ] && stop_pids "$anvil_pid"
  [ -n "$own_engine" ] && "$root/scripts/docker-engine.sh" stop
  echo "devnet stopped"
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap cleanup EXIT

if [ "$runtime" = docker ]; then
  "$root/scripts/docker-engine.sh" env >/dev/null 2>&1 || own_engine=1
  eval "$("$root/scripts/docker-engine.sh" start)"
  eval "$("$root/scripts/build-test-images.sh")"
  # No registry here: the pytorch template runs the local Debian image (bash, python3, no sshd;
  # the node's SSH gate serves SSH). The other templates' images are not available.
  pytorch="$(sed -n 's/.*image: "\(pytorch[^"]*\)".*/\1/p' "$root/protocol/src/templates.rs")"
  docker tag "$GPUFLOW_TEST_IMAGE_DEBIAN" "$pytorch"
  echo "docker runtime: engine $DOCKER_HOST, $pytorch = $GPUFLOW_TEST_IMAGE_DEBIAN"
fi

echo "starting anvil on $rpc, chain id $chain_id (log: $state_dir/anvil.log)"
# Own session (setsid): a Ctrl-C in the terminal reaches only this script, whose clean-up stops
# the nodes first (they withdraw offers and earnings while the chain is still up), then anvil.
setsid "$tools/anvil" --port "$port" --host 127.0.0.1 --chain-id "$chain_id" \
  >"$state_dir/anvil.log" 2>&1 &
anvil_pid=$!
for _ in $(seq 1 100); do
  "$tools/cast" chain-id --rpc-url "$rpc" >/dev/null 2>&1 && break
  kill -0 "$anvil_pid" 2>/dev/null || {
    echo "error: anvil exited; see $state_dir/anvil.log" >&2
    exit 1
  }
  sleep 0.1
done
"$tools/cast" chain-id --rpc-url "$rpc" >/dev/null

echo "deploying the mock stablecoin and GpuFlowEscrow (log: $state_dir/deploy.log)"
: >"$state_dir/deploy.log"
# The deploy script deploys the freely mintable mock by itself only on chain id 31337; on any
# other id it needs every role named, so a devnet on another id creates the mock here first.
deploy_env=()
if [ "$chain_id" != 31337 ]; then
  deployer_addr="$("$tools/cast" wallet address --private-key "$deployer_key")"
  mock="$(cd "$root/contracts" && "$tools/forge" create src/MockStablecoin.sol:MockStablecoin \
    --rpc-url "$rpc" --private-key "$deployer_key" --broadcast 2>>"$state_dir/deploy.log" |
    tee -a "$state_dir/deploy.log" | sed -n 's/^Deployed to: *//p')"
  [ -n "$mock" ] || {
    echo "error: deploying the mock stablecoin failed; see $state_dir/deploy.log" >&2
    exit 1
  }
  deploy_env=("TOKEN=$mock" "TREASURY=$deployer_addr" "GUARDIAN=$deployer_addr")
fi
(cd "$root/contracts" && env "${deploy_env[@]}" "$tools/forge" script script/Deploy.s.sol \
  --rpc-url "$rpc" --broadcast --private-key "$deployer_key" >>"$state_dir/deploy.log" 2>&1) || {
  echo "error: deployment failed; see $state_dir/deploy.log" >&2
  exit 1
}
deployment="$root/contracts/deployments/$chain_id.json"
cp "$deployment" "$state_dir/devnet.json"
# Only the default chain's file is git-ignored; a test's chain leaves nothing in the tree.
[ "$chain_id" = 31337 ] || rm -f "$deployment"
token="$(sed -n 's/.*"token": *"\(0x[0-9a-fA-F]*\)".*/\1/p' "$state_dir/devnet.json")"

echo "funding anvil's ten accounts with 10,000 mUSD each"
accounts="$("$tools/cast" rpc eth_accounts --rpc-url "$rpc" | tr -d '[]" ' | tr ',' ' ')"
for a in $accounts; do
  "$tools/cast" send "$token" "mint(address,uint256)" "$a" "$fund_amount" \
    --private-key "$deployer_key" --rpc-url "$rpc" >>"$state_dir/deploy.log" 2>&1 || {
    echo "error: minting to $a failed; see $state_dir/deploy.log" >&2
    exit 1
  }
done

if [ -n "${GPUFLOW_BIN_DIR:-}" ]; then
  bin="$GPUFLOW_BIN_DIR"
else
  echo "building gpuflow-node and gpuflow (cargo build; log: $state_dir/build.log)"
  (cd "$root" && cargo build -p gpuflow-node -p gpuflow >"$state_dir/build.log" 2>&1) || {
    echo "error: cargo build failed; see $state_dir/build.log" >&2
    exit 1
  }
  bin="$root/target/debug"
fi

# Settings the node may not have yet: written only if `run --help` lists their flag, because
# the node rejects unknown config keys.
run_help="$("$bin/gpuflow-node" run --help)"
has_flag() { grep -q -- "$1" <<<"$run_help"; }

# Writes <state dir>/<name>.toml. Args: name p2p-port api-port region bootstrap-toml-array,
# then the [pricing] and [[gpu.declared]] tables on stdin.
write_config() {
  local name="$1" p="$2" api="$3" region="$4" boot="$5" dir="$state_dir/$1"
  # Each devnet is a new chain: the node's leases and chain cursor from the last one would point
  # at blocks and leases that no longer exist, so every host starts from a clean data dir.
  rm -rf "$dir"
  mkdir -p "$dir"
  {
    echo "# Written by scripts/devnet.sh: devnet host $name."
    echo "data_dir = \"$dir\""
    echo "listen = [\"/ip4/127.0.0.1/tcp/$p\", \"/ip4/127.0.0.1/udp/$p/quic-v1\"]"
    echo "bootstrap = $boot"
    echo
    echo "[chain]"
    echo "deployment = \"$state_dir/devnet.json\""
    echo
    echo "[machine]"
    echo "region = \"$region\""
    echo "cpu_cores = 16"
    echo "ram_mib = 65536"
    echo "disk_gib = 200"
    echo "inet_up_mbps = 1000"
    echo "inet_down_mbps = 1000"
    echo
    echo "[offers]"
    echo 'templates = ["pytorch", "jupyter", "vllm", "ollama"]'
    if has_flag --api-addr; then
      echo
      echo "[api]"
      echo "addr = \"127.0.0.1:$api\""
    fi
    if has_flag --runtime; then
      echo
      echo "[runtime]"
      echo "kind = \"$runtime\""
      # A devnet on another chain id is as local as one on 31337.
      if [ "$runtime" = process ] && [ "$chain_id" != 31337 ] &&
        has_flag --process-runtime-gives-renters-my-account; then
        echo "process_gives_renters_my_account = true"
      fi
    fi
    echo
    echo "[gpu]"
    echo 'detection = "declared"'
    [ "$runtime" = docker ] && echo 'simulated = true'
    echo
    cat
  } >"$state_dir/$name.toml"
}

# Starts host $1 with wallet key $2 and waits for its `ready` line.
start_host() {
  local name="$1" key="$2" dir="$state_dir/$1" pid
  # Own session, like anvil: the clean-up stops it before the chain goes away.
  GPUFLOW_HOST_PRIVATE_KEY="$key" GPUFLOW_RPC_URL="$rpc" setsid "$bin/gpuflow-node" run \
    --config "$state_dir/$name.toml" >"$dir/node.out" 2>"$dir/node.log" &
  pid=$!
  node_pids+=("$pid")
  node_dirs+=("$dir")
  # The node prints `ready <peer id>` once it listens and its offers are announced.
  for _ in $(seq 1 300); do
    grep -q '^ready ' "$dir/node.out" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || {
      echo "error: host $name exited; see $dir/node.log" >&2
      exit 1
    }
    sleep 0.1
  done
  echo "error: host $name was not ready after 30 s; see $dir/node.log" >&2
  exit 1
}

# A TOML/JSON array of the lines of file $1.
array_of() { sed 's/.*/"&"/' "$1" | paste -sd, | sed 's/^/[/; s/$/]/'; }

write_config host-a "$p2p_port" "$api_port" DE "[]" <<'TOML'
[pricing]
RTX_4090 = "0.40"

[[gpu.declared]]
model = "RTX_4090"
count = 2
vram_mib = 24564
cuda = "12.4"
driver = "550.54.14"
TOML
echo "starting host A: 2x RTX_4090 (simulated) at 0.40 mUSD/GPU-hour, DE (log: $state_dir/host-a/node.log)"
start_host host-a "$host_a_key"

write_config host-b "$(next_port "$p2p_port")" "$(next_port "$api_port")" US \
  "$(array_of "$state_dir/host-a/listen_addrs")" <<'TOML'
[pricing]
RTX_3090 = "0.25"

[[gpu.declared]]
model = "RTX_3090"
count = 1
vram_mib = 24576
cuda = "12.2"
driver = "535.104.05"
TOML
echo "starting host B: 1x RTX_3090 (simulated) at 0.25 mUSD/GPU-hour, US (log: $state_dir/host-b/node.log)"
start_host host-b "$host_b_key"

# Both hosts' multiaddrs and the RPC URL in devnet.json, so `gpuflow` needs no flags. Written
# to a temporary file and renamed: a reader never sees half a file.
node -e '
const fs = require("fs");
const [file, a, b, rpc] = process.argv.slice(1);
const lines = (f) => fs.readFileSync(f, "utf8").split("\n").filter(Boolean);
const d = JSON.parse(fs.readFileSync(file, "utf8"));
d.bootstrap = [...lines(a), ...lines(b)];
d.rpcUrl = rpc;
fs.writeFileSync(file + ".tmp", JSON.stringify(d, null, 2) + "\n");
fs.renameSync(file + ".tmp", file);
' "$state_dir/devnet.json" "$state_dir/host-a/listen_addrs" "$state_dir/host-b/listen_addrs" "$rpc"

# Each host must know both hosts' offers before the devnet counts as up: `gpuflow search` takes
# the book of the first peer that answers, and host B pulls host A's offers only after its own
# `ready`. Asks each host's book directly until it holds offers from two hosts (30 s at most).
books_complete() {
  local a n
  for a in $(grep -h '/tcp/' "$state_dir/host-a/listen_addrs" "$state_dir/host-b/listen_addrs"); do
    n="$("$bin/gpuflow" search --json --timeout 5 --bootstrap "$a" 2>/dev/null |
      node -e 'let s="";process.stdin.on("data",c=>s+=c).on("end",()=>{try{
        console.log(new Set(JSON.parse(s).offers.map(o=>o.host)).size)}catch{console.log(0)}})')"
    [ "$n" = 2 ] || return 1
  done
}
books_ok=0
for _ in $(seq 1 60); do
  if books_complete; then books_ok=1; break; fi
  sleep 0.5
done
[ "$books_ok" = 1 ] || echo "warning: the hosts do not see each other's offers after 30 s; see the node logs" >&2

api_of() { cat "$state_dir/$1/api_addr" 2>/dev/null || echo "(not running in this build)"; }
# The CLI finds .devnet/devnet.json upward from its current directory; elsewhere it needs the
# bootstrap peers and RPC in its environment.
envs=""
if [ "$state_dir" = "$root/.devnet" ]; then
  where="in this checkout"
elif [ "$(basename "$state_dir")" = .devnet ]; then
  where="in $(dirname "$state_dir")"
else
  where="anywhere"
  envs="  export GPUFLOW_BOOTSTRAP=$(node -p 'require(process.argv[1]).bootstrap.join(",")' \
    "$state_dir/devnet.json") GPUFLOW_RPC_URL=$rpc"
fi
node -e '
const [file, rpc, bin, apiA, apiB, stateDir, renterKey, where, envs] = process.argv.slice(1);
const d = require(file);
const l = (s) => console.log(s);
l("");
l("GPUFlow devnet is up");
l("  rpc             " + rpc + " (chain id " + d.chainId + ")");
l("  escrow          " + d.escrow);
l("  token (mUSD)    " + d.token + " (6 decimals)");
l("  fee             " + d.feeBps + " bps to " + d.treasury);
l("  accept timeout  " + d.acceptTimeout + " s");
l("  host A          2x RTX_4090 at 0.40/GPU-h, DE, wallet = anvil account 1, API " + apiA);
l("  host B          1x RTX_3090 at 0.25/GPU-h, US, wallet = anvil account 3, API " + apiB);
l("  bootstrap       " + d.bootstrap.join("\n                  "));
l("  accounts        anvil 0..9 hold 10,000 mUSD each");
l("  written to      " + stateDir + "/devnet.json");
l("");
l("try, in another terminal " + where + ":");
if (envs) l(envs);
l("  export PATH=\"" + bin + ":$PATH\"");
l("  export GPUFLOW_PRIVATE_KEY=" + renterKey + "   # anvil account 2, a renter");
l("  gpuflow search");
l("  gpuflow search \x27gpu_name=RTX_4090 num_gpus>=2\x27 -o dph+");
l("  gpuflow wallet balance");
l("  gpuflow rent <offer id from search> --hours 1 --template pytorch --ssh-key ~/.ssh/id_ed25519.pub --yes");
l("  ssh -p <port> <user>@127.0.0.1      # the ssh line rent prints (needs sshd: apt-get install openssh-server)");
l("  gpuflow rent --query \x27gpu_name=RTX_3090\x27 --hours 1 --yes");
l("  gpuflow leases");
l("  gpuflow stop <lease id>");
l("");
l("Press Ctrl-C to stop (nodes, their workloads and anvil).");
' "$state_dir/devnet.json" "$rpc" "$bin" "$(api_of host-a)" "$(api_of host-b)" "$state_dir" \
  "$renter_key" "$where" "$envs"

# Runs until Ctrl-C, or until anvil or a node exits.
set +e
wait -n "$anvil_pid" "${node_pids[@]}"
echo "a devnet process exited; see the logs in $state_dir" >&2
exit 1
