//! One layer of configuration (a TOML file, the environment, or the command line), with every
//! field optional so layers can be stacked: a field set in a higher layer wins.

use std::collections::BTreeMap;
use std::path::PathBuf;

use alloy::primitives::Address;
use serde::Deserialize;

use super::daemon::{ApiLayer, EarningsLayer, RuntimeLayer};
use super::{ConfigError, DeclaredGpu, Detection, PriceSpec};

/// What the user may set, from any one source. Mirrors the TOML file: top-level keys plus the
/// `[wallet]`, `[chain]`, `[machine]`, `[offers]`, `[pricing]`, `[gpu]`, `[api]`, `[runtime]`
/// and `[earnings]` tables (see
/// [`super::EXAMPLE`] for each key's meaning and its env variable and flag).
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigLayer {
    /// Where the node keeps its database, identity key and listen-address file.
    pub data_dir: Option<PathBuf>,
    /// The node's ed25519 identity key file.
    pub identity_key: Option<PathBuf>,
    /// Multiaddrs to listen on.
    pub listen: Option<Vec<String>>,
    /// Multiaddrs (with `/p2p/<peer id>`) of peers to join through.
    pub bootstrap: Option<Vec<String>>,
    /// `[wallet]`.
    #[serde(default)]
    pub wallet: WalletLayer,
    /// `[chain]`.
    #[serde(default)]
    pub chain: ChainLayer,
    /// `[machine]`.
    #[serde(default)]
    pub machine: MachineLayer,
    /// `[offers]`.
    #[serde(default)]
    pub offers: OffersLayer,
    /// `[pricing]`: GPU model → price per GPU-hour.
    pub pricing: Option<BTreeMap<String, PriceSpec>>,
    /// `[gpu]`.
    #[serde(default)]
    pub gpu: GpuLayer,
    /// `[api]`.
    #[serde(default)]
    pub api: ApiLayer,
    /// `[runtime]`.
    #[serde(default)]
    pub runtime: RuntimeLayer,
    /// `[earnings]`.
    #[serde(default)]
    pub earnings: EarningsLayer,
}

/// `[wallet]`: the host wallet. Its private key comes from `GPUFLOW_HOST_PRIVATE_KEY` or from
/// an encrypted keystore file, never from this file.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletLayer {
    /// Expected wallet address; start-up fails if the private key belongs to another one.
    pub address: Option<Address>,
    /// Keystore file (Web3 Secret Storage v3) holding the key.
    pub keystore: Option<PathBuf>,
    /// File holding the keystore's password.
    pub password_file: Option<PathBuf>,
}

/// `[chain]`: where the host is paid.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainLayer {
    /// A deployment JSON file (`.devnet/devnet.json`, `contracts/deployments/<id>.json`).
    pub deployment: Option<PathBuf>,
    /// EVM chain id.
    pub chain_id: Option<u64>,
    /// Escrow contract address.
    pub escrow: Option<Address>,
    /// Payment token address.
    pub token: Option<Address>,
    /// Payment token decimals.
    pub token_decimals: Option<u8>,
    /// Block the escrow was deployed in (where the reliability index starts).
    pub deploy_block: Option<u64>,
}

/// `[machine]`: what comes with the GPUs.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineLayer {
    /// ISO 3166-1 alpha-2 country code.
    pub region: Option<String>,
    /// CPU cores for rent.
    pub cpu_cores: Option<u32>,
    /// RAM for rent, MiB.
    pub ram_mib: Option<u64>,
    /// Disk for rent, GiB.
    pub disk_gib: Option<u64>,
    /// Upload bandwidth, Mbit/s.
    pub inet_up_mbps: Option<u32>,
    /// Download bandwidth, Mbit/s.
    pub inet_down_mbps: Option<u32>,
}

/// `[offers]`: lease terms and announcement timing.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffersLayer {
    /// Offer lifetime, seconds.
    pub ttl_secs: Option<u64>,
    /// Shortest lease, seconds.
    pub min_duration_secs: Option<u64>,
    /// Longest lease, seconds.
    pub max_duration_secs: Option<u64>,
    /// Quote lifetime (and GPU reservation), seconds.
    pub quote_ttl_secs: Option<u64>,
    /// How long a quote holds its GPUs before the renter says it is opening, seconds.
    pub quote_hold_secs: Option<u64>,
    /// Templates or images offered.
    pub templates: Option<Vec<String>>,
    /// Whether to withdraw this host's offers when the node stops.
    pub withdraw_on_shutdown: Option<bool>,
}

/// `[gpu]`: how GPUs are found.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuLayer {
    /// `auto`, `nvml` or `declared`.
    pub detection: Option<Detection>,
    /// `[[gpu.declared]]` entries.
    pub declared: Option<Vec<DeclaredGpu>>,
    /// The GPUs are simulated: offered as such, no device given to containers.
    pub simulated: Option<bool>,
}

/// `high.field` if set, else `low.field`, for each named field.
macro_rules! overlay {
    ($high:expr, $low:expr; $($field:ident),+ $(,)?) => {
        $( $high.$field = $high.$field.take().or($low.$field); )+
    };
}

impl ConfigLayer {
    /// Parses a TOML file's text; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &std::path::Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::File {
            path: origin.to_owned(),
            source: Box::new(source),
        })
    }

    /// This layer with `low`'s values filling the fields it leaves unset.
    pub fn over(mut self, low: Self) -> Self {
        overlay!(self, low; data_dir, identity_key, listen, bootstrap, pricing);
        overlay!(self.wallet, low.wallet; address, keystore, password_file);
        overlay!(self.chain, low.chain;
            deployment, chain_id, escrow, token, token_decimals, deploy_block);
        overlay!(self.machine, low.machine;
            region, cpu_cores, ram_mib, disk_gib, inet_up_mbps, inet_down_mbps);
        overlay!(self.offers, low.offers;
            ttl_secs, min_duration_secs, max_duration_secs, quote_ttl_secs, quote_hold_secs,
            templates, withdraw_on_shutdown);
        overlay!(self.gpu, low.gpu; detection, declared, simulated);
        overlay!(self.api, low.api; addr);
        overlay!(self.runtime, low.runtime; kind, process_gives_renters_my_account, disk_quota);
        overlay!(self.earnings, low.earnings; withdraw_interval_secs, withdraw_on_shutdown);
        self
    }

    /// The `GPUFLOW_*` variables, read through `env` (the process environment in the binary, a
    /// map in tests). Lists are comma-separated.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let parse = EnvParser { env };
        Ok(Self {
            data_dir: parse.get("GPUFLOW_DATA_DIR").map(PathBuf::from),
            identity_key: parse.get("GPUFLOW_IDENTITY_KEY").map(PathBuf::from),
            listen: parse.list("GPUFLOW_LISTEN"),
            bootstrap: parse.list("GPUFLOW_BOOTSTRAP"),
            wallet: WalletLayer {
                address: parse.value("GPUFLOW_HOST_WALLET")?,
                keystore: parse.get("GPUFLOW_KEYSTORE").map(PathBuf::from),
                password_file: parse
                    .get("GPUFLOW_KEYSTORE_PASSWORD_FILE")
                    .map(PathBuf::from),
            },
            chain: ChainLayer {
                deployment: parse.get("GPUFLOW_DEPLOYMENT").map(PathBuf::from),
                chain_id: parse.value("GPUFLOW_CHAIN_ID")?,
                escrow: parse.value("GPUFLOW_ESCROW")?,
                token: parse.value("GPUFLOW_TOKEN")?,
                token_decimals: parse.value("GPUFLOW_TOKEN_DECIMALS")?,
                deploy_block: parse.value("GPUFLOW_DEPLOY_BLOCK")?,
            },
            machine: MachineLayer {
                region: parse.get("GPUFLOW_REGION"),
                cpu_cores: parse.value("GPUFLOW_CPU_CORES")?,
                ram_mib: parse.value("GPUFLOW_RAM_MIB")?,
                disk_gib: parse.value("GPUFLOW_DISK_GIB")?,
                inet_up_mbps: parse.value("GPUFLOW_INET_UP_MBPS")?,
                inet_down_mbps: parse.value("GPUFLOW_INET_DOWN_MBPS")?,
            },
            offers: OffersLayer {
                ttl_secs: parse.value("GPUFLOW_OFFER_TTL_SECS")?,
                min_duration_secs: parse.value("GPUFLOW_MIN_DURATION_SECS")?,
                max_duration_secs: parse.value("GPUFLOW_MAX_DURATION_SECS")?,
                quote_ttl_secs: parse.value("GPUFLOW_QUOTE_TTL_SECS")?,
                quote_hold_secs: parse.value("GPUFLOW_QUOTE_HOLD_SECS")?,
                templates: parse.list("GPUFLOW_TEMPLATES"),
                withdraw_on_shutdown: parse.value("GPUFLOW_WITHDRAW_ON_SHUTDOWN")?,
            },
            pricing: None,
            gpu: GpuLayer {
                detection: parse.value("GPUFLOW_GPU_DETECTION")?,
                declared: None,
                simulated: parse.value("GPUFLOW_GPU_SIMULATED")?,
            },
            api: ApiLayer {
                addr: parse.value("GPUFLOW_API_ADDR")?,
            },
            runtime: RuntimeLayer {
                kind: parse.value("GPUFLOW_RUNTIME")?,
                process_gives_renters_my_account: parse
                    .value("GPUFLOW_PROCESS_GIVES_RENTERS_MY_ACCOUNT")?,
                disk_quota: parse.value("GPUFLOW_DISK_QUOTA")?,
            },
            earnings: EarningsLayer {
                withdraw_interval_secs: parse.value("GPUFLOW_WITHDRAW_INTERVAL_SECS")?,
                withdraw_on_shutdown: parse.value("GPUFLOW_WITHDRAW_EARNINGS_ON_SHUTDOWN")?,
            },
        })
    }
}

struct EnvParser<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl EnvParser<'_> {
    /// A set, non-empty variable.
    fn get(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.trim().is_empty())
    }

    fn list(&self, name: &str) -> Option<Vec<String>> {
        self.get(name).map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
    }

    fn value<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        self.get(name)
            .map(|v| {
                v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
                    field: name.to_owned(),
                    why: format!("`{v}`: {e}"),
                })
            })
            .transpose()
    }
}
