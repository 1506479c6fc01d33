//! Node configuration: defaults < TOML file < `GPUFLOW_*` environment < command-line flags.
//!
//! Every source is read into a [`ConfigLayer`] (all fields optional); the layers are stacked
//! with [`ConfigLayer::over`] and [`Config::resolve`] fills the gaps with defaults and checks
//! the result. Environment access goes through a lookup function so tests never touch the
//! process environment.

mod args;
mod daemon;
mod example;
mod layer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use gpuflow_protocol::money;
use libp2p::Multiaddr;
use serde::Deserialize;

pub use args::ConfigArgs;
pub use daemon::{
    ApiLayer, ApiListen, DEFAULT_API_ADDR, DEFAULT_WITHDRAW_INTERVAL_SECS, EarningsLayer,
    EarningsSettings, KeystoreSettings, RuntimeKind, RuntimeLayer,
};
pub use example::EXAMPLE;
pub use layer::{ChainLayer, ConfigLayer, GpuLayer, MachineLayer, OffersLayer, WalletLayer};

/// Reads one environment variable (the process environment, or a map in tests).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Default offer lifetime; the node re-announces at half of it.
pub const DEFAULT_OFFER_TTL_SECS: u64 = 600;
/// Default shortest lease, seconds (10 minutes): below it, a lease costs the host a launch and
/// two transactions for less than it earns.
pub const DEFAULT_MIN_DURATION_SECS: u64 = 600;
/// Default quote lifetime, seconds: how long a quote can be opened.
pub const DEFAULT_QUOTE_TTL_SECS: u64 = 300;
/// Default hold of a quote's GPUs before the renter says it is opening it, seconds: the CLI
/// sends "opening" about a second after the quote, so an abandoned quote frees them soon.
pub const DEFAULT_QUOTE_HOLD_SECS: u64 = 30;
/// Shortest TTL accepted: shorter ones would flood the network with re-announcements.
pub const MIN_OFFER_TTL_SECS: u64 = 10;
/// Shortest quote lifetime: the renter must approve and `open` within it.
pub const MIN_QUOTE_TTL_SECS: u64 = 5;
/// Longest quote lifetime: GPUs held for a renter who never opens are idle this long.
pub const MAX_QUOTE_TTL_SECS: u64 = 3600;

/// The node's complete, checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Data directory: database `node.db`, identity key, `listen_addrs`.
    pub data_dir: PathBuf,
    /// Identity key file (ed25519; also the libp2p identity).
    pub identity_key: PathBuf,
    /// Multiaddrs to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to join through.
    pub bootstrap: Vec<Multiaddr>,
    /// Wallet address the private key must match, if configured.
    pub wallet_address: Option<Address>,
    /// Where the host is paid.
    pub chain: ChainConfig,
    /// What comes with the GPUs.
    pub machine: MachineConfig,
    /// Lease terms and announcement timing.
    pub offers: OfferSettings,
    /// GPU model → price per GPU-hour in token base units.
    pub pricing: BTreeMap<String, u128>,
    /// How GPUs are found.
    pub detection: Detection,
    /// GPUs written in the config.
    pub declared: Vec<DeclaredGpu>,
    /// The GPUs are simulated (`[gpu] simulated`).
    pub gpu_simulated: bool,
    /// Where the local HTTP API listens.
    pub api: ApiListen,
    /// Where leased workloads run.
    pub runtime: RuntimeKind,
    /// The process runtime was allowed off the devnet chain (renters get the node's account).
    pub process_unisolated: bool,
    /// Docker: each lease's disk is held to its size by a storage quota.
    pub disk_quota: bool,
    /// When earnings are withdrawn.
    pub earnings: EarningsSettings,
    /// The host wallet's keystore, if the key is not in the environment.
    pub keystore: KeystoreSettings,
}

/// Chain, escrow and token of the host's offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainConfig {
    /// EVM chain id.
    pub chain_id: u64,
    /// Escrow contract.
    pub escrow: Address,
    /// Payment token.
    pub token: Address,
    /// Payment token decimals.
    pub token_decimals: u8,
    /// Block the escrow was deployed in: the reliability index scans from here (0 when
    /// unknown: slower the first time on a long chain, same result).
    pub deploy_block: u64,
}

/// Machine resources offered with the GPUs (shared by all offers, split by GPU count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineConfig {
    /// ISO 3166-1 alpha-2 country code, upper case.
    pub region: String,
    /// CPU cores.
    pub cpu_cores: u32,
    /// RAM, MiB.
    pub ram_mib: u64,
    /// Disk, GiB.
    pub disk_gib: u64,
    /// Upload, Mbit/s.
    pub inet_up_mbps: u32,
    /// Download, Mbit/s.
    pub inet_down_mbps: u32,
}

/// Lease terms and announcement timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSettings {
    /// Offer lifetime, seconds; re-announced at half of it.
    pub ttl_secs: u64,
    /// Shortest lease, seconds. Signed into every quote as `minDuration`, so the escrow refuses
    /// a deposit below price × this (no dust leases); the engine declines a lease below it.
    pub min_duration_secs: u64,
    /// Longest lease, seconds.
    pub max_duration_secs: u64,
    /// How long a quote can be opened, seconds; its GPUs are reserved exactly that long.
    pub quote_ttl_secs: u64,
    /// How long a quote holds its GPUs unless the renter says it is opening it, seconds.
    pub quote_hold_secs: u64,
    /// Templates or images offered.
    pub templates: Vec<String>,
    /// Withdraw this host's offers when the node stops.
    pub withdraw_on_shutdown: bool,
}

/// How the node finds its GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detection {
    /// NVML when the NVIDIA driver is present, else the declared GPUs.
    #[default]
    Auto,
    /// NVML only; start-up fails without it.
    Nvml,
    /// Only the declared GPUs, even when NVML works (testing, simulation).
    Declared,
}

impl std::str::FromStr for Detection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "nvml" => Ok(Self::Nvml),
            "declared" => Ok(Self::Declared),
            _ => Err("expected auto, nvml or declared".into()),
        }
    }
}

/// A GPU group written in the config (`[[gpu.declared]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredGpu {
    /// Offer name (default: the model in lower case); must be unique.
    pub name: Option<String>,
    /// Model as `RTX_4090`.
    pub model: String,
    /// Number of cards.
    pub count: u32,
    /// Memory per card, MiB.
    pub vram_mib: u64,
    /// CUDA version the driver supports, e.g. `12.4`.
    pub cuda: String,
    /// Driver version.
    pub driver: String,
}

/// A price as written in `[pricing]`: a decimal string in token units (`"0.40"`, converted
/// exactly) or an integer of base units (`400000`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceSpec {
    /// Base units per GPU-hour.
    BaseUnits(u64),
    /// Token units per GPU-hour as decimal text.
    Decimal(String),
}

impl<'de> Deserialize<'de> for PriceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PriceSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a decimal string such as \"0.40\" or an integer of base units")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PriceSpec, E> {
                Ok(PriceSpec::BaseUnits(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PriceSpec, E> {
                u64::try_from(v)
                    .map(PriceSpec::BaseUnits)
                    .map_err(|_| E::custom("a price cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PriceSpec, E> {
                Ok(PriceSpec::Decimal(v.to_owned()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<PriceSpec, E> {
                Err(E::custom(format!(
                    "{v} is a float; write prices as a string (\"{v}\") so they convert exactly"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A deployment file as written by the Foundry deploy script and `make devnet`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentFile {
    chain_id: u64,
    escrow: Address,
    token: Address,
    token_decimals: Option<u8>,
    deploy_block: Option<u64>,
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML of the expected shape.
    #[error("config file {path} is invalid: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        #[source]
        source: Box<toml::de::Error>,
    },
    /// The deployment file could not be read or parsed.
    #[error("deployment file {path} is unusable ({source}); pass the JSON `make devnet` writes")]
    Deployment {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A required setting has no value anywhere.
    #[error("{what} is not set; {how}")]
    Missing {
        /// What is missing.
        what: &'static str,
        /// Where to set it.
        how: &'static str,
    },
    /// A value is out of range or malformed.
    #[error("invalid {field}: {why}")]
    Invalid {
        /// The setting (file key or env variable).
        field: String,
        /// What is wrong.
        why: String,
    },
}

fn invalid(field: impl Into<String>, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        why: why.into(),
    }
}

/// The chain id of the local devnet (anvil's and Hardhat's default): the only chain the
/// process runtime runs on without being told that renters get the node's account.
pub const DEVNET_CHAIN_ID: u64 = 31337;

/// The default data directory: `$XDG_DATA_HOME/gpuflow`, else `~/.local/share/gpuflow`.
pub fn default_data_dir(env: Env<'_>) -> Result<PathBuf, ConfigError> {
    if let Some(x) = env("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("gpuflow"));
    }
    match env("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/gpuflow")),
        None => Err(ConfigError::Missing {
            what: "data_dir",
            how: "HOME is not set either; pass --data-dir or set GPUFLOW_DATA_DIR",
        }),
    }
}

/// The default config file: `$XDG_CONFIG_HOME/gpuflow/node.toml`, else
/// `~/.config/gpuflow/node.toml` (`None` without a home directory).
pub fn default_config_file(env: Env<'_>) -> Option<PathBuf> {
    if let Some(x) = env("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("gpuflow/node.toml"));
    }
    env("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".config/gpuflow/node.toml"))
}

/// Reads a config file into a layer. A missing file is an error only when `required` (it was
/// named explicitly); the default location may simply not exist.
pub fn read_file(path: &Path, required: bool) -> Result<ConfigLayer, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => ConfigLayer::from_toml(&text, path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            Ok(ConfigLayer::default())
        }
        Err(source) => Err(ConfigError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Paths the node needs before anything else (for `gpuflow-node id` and `init`).
pub fn resolve_paths(layer: &ConfigLayer, env: Env<'_>) -> Result<(PathBuf, PathBuf), ConfigError> {
    let data_dir = match &layer.data_dir {
        Some(d) => d.clone(),
        None => default_data_dir(env)?,
    };
    let key = layer
        .identity_key
        .clone()
        .unwrap_or_else(|| data_dir.join("identity.key"));
    Ok((data_dir, key))
}

fn parse_addrs(field: &str, addrs: &[String]) -> Result<Vec<Multiaddr>, ConfigError> {
    addrs
        .iter()
        .map(|a| a.parse().map_err(|e| invalid(field, format!("`{a}`: {e}"))))
        .collect()
}

fn default_listen() -> Vec<String> {
    vec![
        "/ip4/0.0.0.0/tcp/4001".into(),
        "/ip4/0.0.0.0/udp/4001/quic-v1".into(),
    ]
}

/// Total RAM from `/proc/meminfo`, MiB.
fn system_ram_mib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

impl Config {
    /// Fills `layer`'s gaps with defaults and checks everything `gpuflow-node run` needs.
    pub fn resolve(layer: ConfigLayer, env: Env<'_>) -> Result<Self, ConfigError> {
        let (data_dir, identity_key) = resolve_paths(&layer, env)?;
        let chain = resolve_chain(&layer.chain)?;
        let m = layer.machine;
        let region = m.region.ok_or(ConfigError::Missing {
            what: "machine.region",
            how: "set `region = \"DE\"` under [machine], GPUFLOW_REGION or --region",
        })?;
        if region.len() != 2 || !region.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid(
                "machine.region",
                format!("`{region}` is not an ISO 3166-1 alpha-2 code such as DE"),
            ));
        }
        let cpu_cores = match m.cpu_cores {
            Some(c) => c,
            None => std::thread::available_parallelism()
                .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
                .unwrap_or(1),
        };
        let ram_mib = m
            .ram_mib
            .or_else(system_ram_mib)
            .ok_or(ConfigError::Missing {
                what: "machine.ram_mib",
                how: "/proc/meminfo is unreadable; set it under [machine] or with --ram-mib",
            })?;
        let o = layer.offers;
        let offers = OfferSettings {
            ttl_secs: o.ttl_secs.unwrap_or(DEFAULT_OFFER_TTL_SECS),
            min_duration_secs: o.min_duration_secs.unwrap_or(DEFAULT_MIN_DURATION_SECS),
            max_duration_secs: o.max_duration_secs.unwrap_or(7 * 86_400),
            quote_ttl_secs: o.quote_ttl_secs.unwrap_or(DEFAULT_QUOTE_TTL_SECS),
            // A hold never outlives its quote: the default shrinks with a short TTL.
            quote_hold_secs: o.quote_hold_secs.unwrap_or_else(|| {
                DEFAULT_QUOTE_HOLD_SECS.min(o.quote_ttl_secs.unwrap_or(DEFAULT_QUOTE_TTL_SECS))
            }),
            templates: o.templates.unwrap_or_default(),
            withdraw_on_shutdown: o.withdraw_on_shutdown.unwrap_or(true),
        };
        let max_ttl = gpuflow_protocol::offer::MAX_OFFER_TTL_SECS;
        if !(MIN_OFFER_TTL_SECS..=max_ttl).contains(&offers.ttl_secs) {
            return Err(invalid(
                "offers.ttl_secs",
                format!("must be {MIN_OFFER_TTL_SECS} to {max_ttl}"),
            ));
        }
        if !(MIN_QUOTE_TTL_SECS..=MAX_QUOTE_TTL_SECS).contains(&offers.quote_ttl_secs) {
            return Err(invalid(
                "offers.quote_ttl_secs",
                format!("must be {MIN_QUOTE_TTL_SECS} to {MAX_QUOTE_TTL_SECS}"),
            ));
        }
        if !(1..=offers.quote_ttl_secs).contains(&offers.quote_hold_secs) {
            return Err(invalid(
                "offers.quote_hold_secs",
                "must be 1 to offers.quote_ttl_secs",
            ));
        }
        if offers.max_duration_secs == 0 || offers.min_duration_secs > offers.max_duration_secs {
            return Err(invalid(
                "offers.max_duration_secs",
                "must be positive and at least offers.min_duration_secs",
            ));
        }
        let runtime = layer.runtime.kind.unwrap_or(RuntimeKind::Docker);
        let process_unisolated = layer
            .runtime
            .process_gives_renters_my_account
            .unwrap_or(false);
        if runtime == RuntimeKind::Process
            && chain.chain_id != DEVNET_CHAIN_ID
            && !process_unisolated
        {
            return Err(invalid(
                "runtime.kind",
                format!(
                    "the process runtime does not isolate renters (their code runs as your OS \
                     user and can read your wallet key), so it runs only on the devnet chain \
                     ({DEVNET_CHAIN_ID}), not chain {}; use `--runtime docker`, or on a \
                     throw-away machine set --process-runtime-gives-renters-my-account true",
                    chain.chain_id
                ),
            ));
        }
        let mut pricing = BTreeMap::new();
        for (model, spec) in layer.pricing.unwrap_or_default() {
            let units = resolve_price(&model, &spec, chain.token_decimals)?;
            pricing.insert(model, units);
        }
        Ok(Self {
            listen: parse_addrs("listen", &layer.listen.unwrap_or_else(default_listen))?,
            bootstrap: parse_addrs("bootstrap", &layer.bootstrap.unwrap_or_default())?,
            data_dir,
            identity_key,
            wallet_address: layer.wallet.address,
            chain,
            machine: MachineConfig {
                region,
                cpu_cores,
                ram_mib,
                disk_gib: m.disk_gib.unwrap_or(50),
                inet_up_mbps: m.inet_up_mbps.unwrap_or(100),
                inet_down_mbps: m.inet_down_mbps.unwrap_or(100),
            },
            offers,
            pricing,
            detection: layer.gpu.detection.unwrap_or_default(),
            declared: layer.gpu.declared.unwrap_or_default(),
            gpu_simulated: layer.gpu.simulated.unwrap_or(false),
            api: layer.api.addr.unwrap_or_default(),
            runtime,
            process_unisolated,
            disk_quota: layer.runtime.disk_quota.unwrap_or(false),
            earnings: EarningsSettings {
                withdraw_interval_secs: layer
                    .earnings
                    .withdraw_interval_secs
                    .unwrap_or(DEFAULT_WITHDRAW_INTERVAL_SECS),
                withdraw_on_shutdown: layer.earnings.withdraw_on_shutdown.unwrap_or(true),
            },
            keystore: KeystoreSettings {
                keystore: layer.wallet.keystore,
                password_file: layer.wallet.password_file,
            },
        })
    }

    /// The node's SQLite database.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("node.db")
    }

    /// Where the node writes its listen multiaddrs, one a line, once it listens.
    pub fn addrs_path(&self) -> PathBuf {
        self.data_dir.join("listen_addrs")
    }

    /// Where the node writes the API's address (`127.0.0.1:40123`) once it listens.
    pub fn api_addr_path(&self) -> PathBuf {
        self.data_dir.join("api_addr")
    }
}

/// Chain settings: explicit keys win over the deployment file's values.
fn resolve_chain(c: &ChainLayer) -> Result<ChainConfig, ConfigError> {
    let dep = match &c.deployment {
        Some(path) => {
            let wrap = |source: Box<dyn std::error::Error + Send + Sync>| ConfigError::Deployment {
                path: path.clone(),
                source,
            };
            let text = std::fs::read_to_string(path).map_err(|e| wrap(Box::new(e)))?;
            Some(serde_json::from_str::<DeploymentFile>(&text).map_err(|e| wrap(Box::new(e)))?)
        }
        None => None,
    };
    let how = "set chain.deployment (e.g. .devnet/devnet.json, --deployment) or chain.chain_id, \
               chain.escrow and chain.token";
    let chain_id = c.chain_id.or(dep.as_ref().map(|d| d.chain_id));
    let escrow = c.escrow.or(dep.as_ref().map(|d| d.escrow));
    let token = c.token.or(dep.as_ref().map(|d| d.token));
    let (Some(chain_id), Some(escrow), Some(token)) = (chain_id, escrow, token) else {
        return Err(ConfigError::Missing {
            what: "the payment chain",
            how,
        });
    };
    let token_decimals = c
        .token_decimals
        .or(dep.as_ref().and_then(|d| d.token_decimals))
        .unwrap_or(6);
    if token_decimals > 36 {
        return Err(invalid("chain.token_decimals", "must be at most 36"));
    }
    let deploy_block = c
        .deploy_block
        .or(dep.as_ref().and_then(|d| d.deploy_block))
        .unwrap_or(0);
    Ok(ChainConfig {
        chain_id,
        escrow,
        token,
        token_decimals,
        deploy_block,
    })
}

/// A `[pricing]` entry in base units, exactly.
fn resolve_price(model: &str, spec: &PriceSpec, decimals: u8) -> Result<u128, ConfigError> {
    let field = format!("pricing.{model}");
    let units = match spec {
        PriceSpec::BaseUnits(u) => u128::from(*u),
        PriceSpec::Decimal(text) => {
            let v =
                money::parse_units(text, decimals).map_err(|e| invalid(&field, e.to_string()))?;
            u128::try_from(v).map_err(|_| invalid(&field, "too large"))?
        }
    };
    if units == 0 {
        return Err(invalid(field, "a price must be above zero"));
    }
    Ok(units)
}

#[cfg(test)]
mod tests;
