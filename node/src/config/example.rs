//! The commented example config that `gpuflow-node init` writes.

/// Example `node.toml`: every key, its meaning, its env variable and flag. Precedence:
/// flag > `GPUFLOW_*` env > this file > default.
pub const EXAMPLE: &str = r#"# gpuflow-node configuration.
# Precedence for every key: command-line flag > GPUFLOW_* environment variable > this file >
# built-in default. Run `gpuflow-node run --help` for the flag names.

# Data directory: node.db (SQLite), identity.key, listen_addrs, api.token, api_addr.
# env GPUFLOW_DATA_DIR, flag --data-dir; default $XDG_DATA_HOME/gpuflow or ~/.local/share/gpuflow
# data_dir = "/var/lib/gpuflow"

# Node identity (ed25519; also the libp2p peer id). Created with mode 0600 on first run; the
# node refuses to start if group or others can read it.
# env GPUFLOW_IDENTITY_KEY, flag --identity-key; default <data_dir>/identity.key
# identity_key = "/var/lib/gpuflow/identity.key"

# Where to listen. env GPUFLOW_LISTEN (comma-separated), flag --listen (repeat).
listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]

# Peers to join through: multiaddrs ending in /p2p/<peer id>.
# env GPUFLOW_BOOTSTRAP (comma-separated), flag --bootstrap (repeat).
bootstrap = []

[wallet]
# The host wallet receives payment, signs quotes and sends start/withdrawMany/close. Its
# private key is never written here and never logged. It comes from either
#  - the GPUFLOW_HOST_PRIVATE_KEY environment variable (development, CI), or
#  - an encrypted keystore file (Web3 Secret Storage v3, the format of geth and `cast wallet`):
#    `gpuflow-node keystore new` creates one, `gpuflow-node keystore import` stores an existing
#    key. Its password comes from `password_file`, else GPUFLOW_KEYSTORE_PASSWORD, else a
#    prompt on the terminal.
# Setting both is an error. If set, `address` must match the key.
# env GPUFLOW_HOST_WALLET, flag --host-wallet
# address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
# env GPUFLOW_KEYSTORE, flag --keystore
# keystore = "/var/lib/gpuflow/host-wallet.json"
# env GPUFLOW_KEYSTORE_PASSWORD_FILE, flag --password-file (keep it mode 0600)
# password_file = "/etc/gpuflow/keystore-password"

[chain]
# A deployment file gives chain id, escrow and token; the keys below override it.
# env GPUFLOW_DEPLOYMENT, flag --deployment
# deployment = ".devnet/devnet.json"
# chain_id = 31337                                         # GPUFLOW_CHAIN_ID, --chain-id
# escrow = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"     # GPUFLOW_ESCROW, --escrow
# token = "0x5FbDB2315678afecb367f032d93F642f64180aa3"      # GPUFLOW_TOKEN, --token
# token_decimals = 6                                       # GPUFLOW_TOKEN_DECIMALS; default 6
# Where the reliability index starts; default: the deployment file's deployBlock, else 0.
# deploy_block = 0                                         # GPUFLOW_DEPLOY_BLOCK, --deploy-block

[machine]
# What comes with the GPUs, split between offers by GPU count.
region = "DE"            # ISO country code; required. GPUFLOW_REGION, --region
# cpu_cores = 16         # default: all cores. GPUFLOW_CPU_CORES, --cpu-cores
# ram_mib = 65536        # default: all RAM. GPUFLOW_RAM_MIB, --ram-mib
disk_gib = 50            # GPUFLOW_DISK_GIB, --disk-gib
inet_up_mbps = 100       # GPUFLOW_INET_UP_MBPS, --inet-up-mbps
inet_down_mbps = 100     # GPUFLOW_INET_DOWN_MBPS, --inet-down-mbps

[offers]
ttl_secs = 600                 # offer lifetime; re-announced at half. --offer-ttl-secs
min_duration_secs = 600        # shortest lease, signed into quotes. --min-duration-secs
max_duration_secs = 604800     # longest lease (7 days). --max-duration-secs
quote_ttl_secs = 300           # a quote can be opened this long. --quote-ttl-secs
quote_hold_secs = 30           # its GPUs are held this long unless the renter is opening it. --quote-hold-secs
templates = ["pytorch"]        # GPUFLOW_TEMPLATES, --template (repeat)
withdraw_on_shutdown = true    # withdraw offers when the node stops

[pricing]
# Price per GPU-hour for each model, in token units as a string (converted exactly with the
# token's decimals: "0.40" is 400000 base units of a 6-decimal token) or as an integer of base
# units. A detected model without a price is not offered. File only.
RTX_4090 = "0.40"
# A100_80GB = 1200000

[gpu]
# auto: NVML (the NVIDIA driver's library) when present, else the GPUs declared below, marked
# self-declared in the offers. nvml: refuse to start without NVML. declared: only the list.
# env GPUFLOW_GPU_DETECTION, flag --gpu-detection
detection = "auto"
# Simulated GPUs (a development host, tests): offers are marked simulated and Docker containers
# get no GPU device, so no NVIDIA Container Toolkit is needed. Never on a host you rent out.
# env GPUFLOW_GPU_SIMULATED, flag --gpu-simulated
simulated = false

# GPUs to offer when NVML is not available (one offer per entry). File only.
# [[gpu.declared]]
# name = "rtx_4090"      # offer name, unique; default: the model in lower case
# model = "RTX_4090"
# count = 2
# vram_mib = 24564
# cuda = "12.4"
# driver = "550.54.14"

[api]
# Local HTTP API: GET /health /status /leases /earnings /metrics /openapi.json; POST
# /offers/pause /offers/resume /withdraw with the bearer token in <data_dir>/api.token (created
# with mode 0600 on first run). "off" disables it; port 0 picks a free port. The node prints
# `api http://ADDR` and writes ADDR to <data_dir>/api_addr. GETs are unauthenticated: keep it on
# loopback. env GPUFLOW_API_ADDR, flag --api-addr
addr = "127.0.0.1:8686"

[runtime]
# Where leased workloads run. "docker": one container per lease through the local Docker engine
# (DOCKER_HOST or unix:///var/run/docker.sock; start-up fails if it is unreachable).
# "process": child processes of the node, NOT isolated (a renter's code runs as your OS user and
# can read your wallet key): only on the devnet chain (31337), unless
# process_gives_renters_my_account = true. A lease naming an image runs a stand-in HTTP server.
# env GPUFLOW_RUNTIME, flag --runtime
kind = "docker"
# Docker: hold each lease to its disk size with a storage quota (offers then say the disk is
# limited). Needs overlay2 on xfs with pquota, btrfs or zfs; elsewhere containers are refused.
# env GPUFLOW_DISK_QUOTA, flag --disk-quota
disk_quota = false

[earnings]
# Accrued earnings are collected in one withdrawMany transaction per batch (leases are also paid
# at close). 0 = never on a schedule (POST /withdraw still works).
# env GPUFLOW_WITHDRAW_INTERVAL_SECS, flag --withdraw-interval-secs
withdraw_interval_secs = 3600
# Withdraw what accrued when the node stops (Ctrl-C, SIGTERM), before it leaves the network.
# env GPUFLOW_WITHDRAW_EARNINGS_ON_SHUTDOWN, flag --withdraw-earnings-on-shutdown
withdraw_on_shutdown = true
"#;
