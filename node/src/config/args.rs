//! Command-line flags for the configuration, the top layer.

use std::path::PathBuf;

use alloy::primitives::Address;

use super::RuntimeKind;
use super::daemon::{ApiLayer, ApiListen, EarningsLayer, RuntimeLayer};
use super::{
    ChainLayer, ConfigError, ConfigLayer, Detection, Env, MachineLayer, OffersLayer, WalletLayer,
    default_config_file, read_file,
};

/// Configuration flags. Each setting can also come from the config file (key in brackets) and
/// from a `GPUFLOW_*` variable; a flag beats the variable, which beats the file, which beats the
/// default.
#[derive(Debug, Clone, Default, PartialEq, clap::Args)]
#[command(next_help_heading = "Configuration (flag > GPUFLOW_* env > config file > default)")]
pub struct ConfigArgs {
    /// Config file (TOML; `gpuflow-node init` writes a commented one). [env: GPUFLOW_CONFIG]
    /// [default: $XDG_CONFIG_HOME/gpuflow/node.toml or ~/.config/gpuflow/node.toml, if present]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (database, identity key, listen_addrs). [file: data_dir]
    /// [env: GPUFLOW_DATA_DIR] [default: $XDG_DATA_HOME/gpuflow or ~/.local/share/gpuflow]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Identity key file, created with mode 0600 on first run. [file: identity_key]
    /// [env: GPUFLOW_IDENTITY_KEY] [default: <data_dir>/identity.key]
    #[arg(long, value_name = "FILE")]
    pub identity_key: Option<PathBuf>,
    /// Listen multiaddr; repeat for several. [file: listen] [env: GPUFLOW_LISTEN, comma-separated]
    /// [default: /ip4/0.0.0.0/tcp/4001 and /ip4/0.0.0.0/udp/4001/quic-v1]
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<String>,
    /// Bootstrap peer multiaddr with /p2p/PEER_ID; repeat for several. [file: bootstrap]
    /// [env: GPUFLOW_BOOTSTRAP, comma-separated] [default: none]
    #[arg(long, value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,
    /// Host wallet address; must match the key (GPUFLOW_HOST_PRIVATE_KEY or the keystore).
    /// [file: wallet.address]
    /// [env: GPUFLOW_HOST_WALLET] [default: the private key's address]
    #[arg(long, value_name = "ADDRESS")]
    pub host_wallet: Option<Address>,
    /// Deployment JSON (as `make devnet` writes to .devnet/devnet.json) giving chain id, escrow
    /// and token; explicit chain settings win over it. [file: chain.deployment]
    /// [env: GPUFLOW_DEPLOYMENT]
    #[arg(long, value_name = "FILE")]
    pub deployment: Option<PathBuf>,
    /// EVM chain id. [file: chain.chain_id] [env: GPUFLOW_CHAIN_ID]
    #[arg(long)]
    pub chain_id: Option<u64>,
    /// Escrow contract address. [file: chain.escrow] [env: GPUFLOW_ESCROW]
    #[arg(long, value_name = "ADDRESS")]
    pub escrow: Option<Address>,
    /// Payment token address. [file: chain.token] [env: GPUFLOW_TOKEN]
    #[arg(long, value_name = "ADDRESS")]
    pub token: Option<Address>,
    /// Payment token decimals. [file: chain.token_decimals] [env: GPUFLOW_TOKEN_DECIMALS]
    /// [default: the deployment file's, else 6]
    #[arg(long)]
    pub token_decimals: Option<u8>,
    /// Block the escrow was deployed in; the reliability index starts there.
    /// [file: chain.deploy_block] [env: GPUFLOW_DEPLOY_BLOCK]
    /// [default: the deployment file's `deployBlock`, else 0]
    #[arg(long, value_name = "BLOCK")]
    pub deploy_block: Option<u64>,
    /// ISO 3166-1 alpha-2 country code, e.g. DE. [file: machine.region] [env: GPUFLOW_REGION]
    /// (required)
    #[arg(long)]
    pub region: Option<String>,
    /// CPU cores for rent. [file: machine.cpu_cores] [env: GPUFLOW_CPU_CORES]
    /// [default: all cores]
    #[arg(long)]
    pub cpu_cores: Option<u32>,
    /// RAM for rent, MiB. [file: machine.ram_mib] [env: GPUFLOW_RAM_MIB]
    /// [default: all RAM, from /proc/meminfo]
    #[arg(long)]
    pub ram_mib: Option<u64>,
    /// Disk for rent, GiB. [file: machine.disk_gib] [env: GPUFLOW_DISK_GIB] [default: 50]
    #[arg(long)]
    pub disk_gib: Option<u64>,
    /// Upload bandwidth, Mbit/s. [file: machine.inet_up_mbps] [env: GPUFLOW_INET_UP_MBPS]
    /// [default: 100]
    #[arg(long)]
    pub inet_up_mbps: Option<u32>,
    /// Download bandwidth, Mbit/s. [file: machine.inet_down_mbps]
    /// [env: GPUFLOW_INET_DOWN_MBPS] [default: 100]
    #[arg(long)]
    pub inet_down_mbps: Option<u32>,
    /// Offer lifetime in seconds; re-announced at half of it. [file: offers.ttl_secs]
    /// [env: GPUFLOW_OFFER_TTL_SECS] [default: 600]
    #[arg(long)]
    pub offer_ttl_secs: Option<u64>,
    /// Shortest lease, seconds; signed into every quote, so the escrow refuses a smaller deposit.
    /// [file: offers.min_duration_secs] [env: GPUFLOW_MIN_DURATION_SECS] [default: 600]
    #[arg(long)]
    pub min_duration_secs: Option<u64>,
    /// Longest lease, seconds. [file: offers.max_duration_secs]
    /// [env: GPUFLOW_MAX_DURATION_SECS] [default: 604800]
    #[arg(long)]
    pub max_duration_secs: Option<u64>,
    /// How long a quote can be opened and its GPUs stay reserved for it, seconds.
    /// [file: offers.quote_ttl_secs] [env: GPUFLOW_QUOTE_TTL_SECS] [default: 300]
    #[arg(long)]
    pub quote_ttl_secs: Option<u64>,
    /// How long a quote holds its GPUs unless the renter says it is opening it (then: until
    /// the quote expires), seconds; at most the quote TTL. [file: offers.quote_hold_secs]
    /// [env: GPUFLOW_QUOTE_HOLD_SECS] [default: 30]
    #[arg(long)]
    pub quote_hold_secs: Option<u64>,
    /// Template or image offered; repeat for several. [file: offers.templates]
    /// [env: GPUFLOW_TEMPLATES, comma-separated] [default: none]
    #[arg(long = "template", value_name = "NAME")]
    pub templates: Vec<String>,
    /// Withdraw this host's offers when the node stops. [file: offers.withdraw_on_shutdown]
    /// [env: GPUFLOW_WITHDRAW_ON_SHUTDOWN] [default: true]
    #[arg(long, value_name = "BOOL")]
    pub withdraw_on_shutdown: Option<bool>,
    /// How GPUs are found: auto (NVML if the driver is there, else the declared GPUs), nvml, or
    /// declared. [file: gpu.detection] [env: GPUFLOW_GPU_DETECTION] [default: auto]
    #[arg(long, value_name = "MODE", value_parser = parse_detection)]
    pub gpu_detection: Option<Detection>,
    /// The GPUs are simulated (a development host, tests): offers say so (search shows
    /// `simulated`), and Docker containers get no GPU device, so an engine without the NVIDIA
    /// Container Toolkit can run them. [file: gpu.simulated] [env: GPUFLOW_GPU_SIMULATED]
    /// [default: false]
    #[arg(long, value_name = "BOOL")]
    pub gpu_simulated: Option<bool>,
    /// Keystore file (Web3 Secret Storage v3, as `gpuflow-node keystore new` or `cast wallet
    /// import` write) holding the host wallet's key, used when GPUFLOW_HOST_PRIVATE_KEY is not
    /// set. [file: wallet.keystore] [env: GPUFLOW_KEYSTORE]
    #[arg(long, value_name = "FILE")]
    pub keystore: Option<PathBuf>,
    /// File holding the keystore's password (one trailing newline ignored; keep it mode 0600).
    /// Without it the password comes from GPUFLOW_KEYSTORE_PASSWORD, else a prompt on the
    /// terminal. [file: wallet.password_file] [env: GPUFLOW_KEYSTORE_PASSWORD_FILE]
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Local HTTP API address, `off` to disable it; port 0 picks a free port (the address is
    /// printed as `api http://ADDR` and written to <data_dir>/api_addr). [file: api.addr]
    /// [env: GPUFLOW_API_ADDR] [default: 127.0.0.1:8686]
    #[arg(long, value_name = "ADDR|off")]
    pub api_addr: Option<ApiListen>,
    /// Where leased workloads run: `docker` (one isolated container per lease through the
    /// local Docker engine at DOCKER_HOST or unix:///var/run/docker.sock; start-up fails if it
    /// is unreachable) or `process` (child processes of the node, NOT isolated: a renter's code
    /// runs as your OS user and can read your wallet key, node identity and API token; a lease
    /// that names an image runs a stand-in HTTP server instead). `process` runs only on the
    /// devnet chain (31337) unless --process-runtime-gives-renters-my-account is set.
    /// [file: runtime.kind] [env: GPUFLOW_RUNTIME] [default: docker]
    #[arg(long, value_name = "KIND")]
    pub runtime: Option<RuntimeKind>,
    /// WARNING: lets the process runtime run on a real chain, where any stranger who rents
    /// from you runs code as your OS user (your wallet key, node identity and API token are
    /// theirs). For throw-away test machines only. [file:
    /// runtime.process_gives_renters_my_account] [env: GPUFLOW_PROCESS_GIVES_RENTERS_MY_ACCOUNT]
    /// [default: false]
    #[arg(long, value_name = "BOOL")]
    pub process_runtime_gives_renters_my_account: Option<bool>,
    /// Docker: hold each lease to its disk size with a storage quota; offers then say the disk
    /// is limited. Needs a storage driver with quotas (overlay2 on xfs mounted with pquota,
    /// btrfs, zfs); elsewhere the engine refuses the containers. [file: runtime.disk_quota]
    /// [env: GPUFLOW_DISK_QUOTA] [default: false]
    #[arg(long, value_name = "BOOL")]
    pub disk_quota: Option<bool>,
    /// Seconds between scheduled `withdrawMany` batches of accrued earnings; 0 = never on a
    /// schedule. [file: earnings.withdraw_interval_secs] [env: GPUFLOW_WITHDRAW_INTERVAL_SECS]
    /// [default: 3600]
    #[arg(long, value_name = "SECS")]
    pub withdraw_interval_secs: Option<u64>,
    /// Withdraw accrued earnings when the node stops (Ctrl-C, SIGTERM).
    /// [file: earnings.withdraw_on_shutdown] [env: GPUFLOW_WITHDRAW_EARNINGS_ON_SHUTDOWN]
    /// [default: true]
    #[arg(long, value_name = "BOOL")]
    pub withdraw_earnings_on_shutdown: Option<bool>,
}

fn parse_detection(s: &str) -> Result<Detection, String> {
    s.parse()
}

fn non_empty<T>(v: &[T]) -> Option<Vec<T>>
where
    T: Clone,
{
    (!v.is_empty()).then(|| v.to_vec())
}

impl ConfigArgs {
    /// The flags as a layer (pricing and declared GPUs come only from the file).
    pub fn layer(&self) -> ConfigLayer {
        ConfigLayer {
            data_dir: self.data_dir.clone(),
            identity_key: self.identity_key.clone(),
            listen: non_empty(&self.listen),
            bootstrap: non_empty(&self.bootstrap),
            wallet: WalletLayer {
                address: self.host_wallet,
                keystore: self.keystore.clone(),
                password_file: self.password_file.clone(),
            },
            chain: ChainLayer {
                deployment: self.deployment.clone(),
                chain_id: self.chain_id,
                escrow: self.escrow,
                token: self.token,
                token_decimals: self.token_decimals,
                deploy_block: self.deploy_block,
            },
            machine: MachineLayer {
                region: self.region.clone(),
                cpu_cores: self.cpu_cores,
                ram_mib: self.ram_mib,
                disk_gib: self.disk_gib,
                inet_up_mbps: self.inet_up_mbps,
                inet_down_mbps: self.inet_down_mbps,
            },
            offers: OffersLayer {
                ttl_secs: self.offer_ttl_secs,
                min_duration_secs: self.min_duration_secs,
                max_duration_secs: self.max_duration_secs,
                quote_ttl_secs: self.quote_ttl_secs,
                quote_hold_secs: self.quote_hold_secs,
                templates: non_empty(&self.templates),
                withdraw_on_shutdown: self.withdraw_on_shutdown,
            },
            pricing: None,
            gpu: super::GpuLayer {
                detection: self.gpu_detection,
                declared: None,
                simulated: self.gpu_simulated,
            },
            api: ApiLayer {
                addr: self.api_addr,
            },
            runtime: RuntimeLayer {
                kind: self.runtime,
                process_gives_renters_my_account: self.process_runtime_gives_renters_my_account,
                disk_quota: self.disk_quota,
            },
            earnings: EarningsLayer {
                withdraw_interval_secs: self.withdraw_interval_secs,
                withdraw_on_shutdown: self.withdraw_earnings_on_shutdown,
            },
        }
    }

    /// The config file to read and whether it must exist (it must when named explicitly).
    pub fn config_file(&self, env: Env<'_>) -> Option<(PathBuf, bool)> {
        if let Some(p) = &self.config {
            return Some((p.clone(), true));
        }
        if let Some(p) = env("GPUFLOW_CONFIG").filter(|p| !p.is_empty()) {
            return Some((PathBuf::from(p), true));
        }
        default_config_file(env).map(|p| (p, false))
    }

    /// All layers stacked: flags over environment over file.
    pub fn load(&self, env: Env<'_>) -> Result<ConfigLayer, ConfigError> {
        let file = match self.config_file(env) {
            Some((path, required)) => read_file(&path, required)?,
            None => ConfigLayer::default(),
        };
        Ok(self.layer().over(ConfigLayer::from_env(env)?.over(file)))
    }
}
