//! Settings of the node's services beyond offers: the local API, the workload runtime, the
//! host wallet's keystore and the earnings batch. Each is read like every other key (flag >
//! `GPUFLOW_*` env > file > default); see [`super::EXAMPLE`] for the names.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where the local API listens unless configured: loopback only.
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:8686";

/// Default seconds between two scheduled `withdrawMany` batches.
pub const DEFAULT_WITHDRAW_INTERVAL_SECS: u64 = 3600;

/// Where the local HTTP API listens: `[api] addr`, `GPUFLOW_API_ADDR`, `--api-addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum ApiListen {
    /// `off`: no API.
    Off,
    /// An address; port 0 lets the system pick a free port.
    At(SocketAddr),
}

impl Default for ApiListen {
    fn default() -> Self {
        // The constant is a literal socket address; the fallback is the same value.
        DEFAULT_API_ADDR.parse().map_or(
            ApiListen::At(SocketAddr::from(([127, 0, 0, 1], 8686))),
            ApiListen::At,
        )
    }
}

impl FromStr for ApiListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(ApiListen::Off);
        }
        s.parse().map(ApiListen::At).map_err(|_| {
            format!("`{s}` is not `off` or an IP address with a port, e.g. 127.0.0.1:8686")
        })
    }
}

impl TryFrom<String> for ApiListen {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for ApiListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiListen::Off => f.write_str("off"),
            ApiListen::At(a) => fmt::Display::fmt(a, f),
        }
    }
}

/// When the host collects what its leases earned (`[earnings]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarningsSettings {
    /// Seconds between scheduled `withdrawMany` batches; 0: never on a schedule (leases are
    /// still paid at close, and `POST /withdraw` works).
    pub withdraw_interval_secs: u64,
    /// Withdraw everything accrued when the node is stopped (Ctrl-C, SIGTERM).
    pub withdraw_on_shutdown: bool,
}

impl Default for EarningsSettings {
    fn default() -> Self {
        Self {
            withdraw_interval_secs: DEFAULT_WITHDRAW_INTERVAL_SECS,
            withdraw_on_shutdown: true,
        }
    }
}

/// Where the host wallet's key lives when it is not in `GPUFLOW_HOST_PRIVATE_KEY`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeystoreSettings {
    /// A Web3 Secret Storage v3 keystore file (`[wallet] keystore`, `GPUFLOW_KEYSTORE`,
    /// `--keystore`).
    pub keystore: Option<PathBuf>,
    /// A file holding its password (`[wallet] password_file`,
    /// `GPUFLOW_KEYSTORE_PASSWORD_FILE`, `--password-file`).
    pub password_file: Option<PathBuf>,
}

/// `[api]`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiLayer {
    /// `off`, or the address to listen on.
    pub addr: Option<ApiListen>,
}

/// `[runtime]`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeLayer {
    /// `process` or `docker`.
    pub kind: Option<RuntimeKind>,
    /// Run the process runtime on a chain other than the devnet's: renters' code then runs as
    /// the node's own OS user.
    pub process_gives_renters_my_account: Option<bool>,
    /// Docker: limit each lease's writable layer to its disk size (needs a storage driver with
    /// quotas: overlay2 on xfs with `pquota`, btrfs, zfs).
    pub disk_quota: Option<bool>,
}

/// `[earnings]`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarningsLayer {
    /// Seconds between scheduled batches; 0: off.
    pub withdraw_interval_secs: Option<u64>,
    /// Withdraw what accrued when the node stops.
    pub withdraw_on_shutdown: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_listen_parses_off_and_addresses() {
        assert_eq!("off".parse::<ApiListen>(), Ok(ApiListen::Off));
        assert_eq!(" OFF ".parse::<ApiListen>(), Ok(ApiListen::Off));
        assert_eq!(
            "127.0.0.1:0".parse::<ApiListen>(),
            Ok(ApiListen::At(SocketAddr::from(([127, 0, 0, 1], 0))))
        );
        assert_eq!(
            ApiListen::default(),
            ApiListen::At(SocketAddr::from(([127, 0, 0, 1], 8686)))
        );
        let err = "localhost".parse::<ApiListen>().unwrap_err();
        assert!(err.contains("127.0.0.1:8686"), "{err}");
        assert_eq!(ApiListen::Off.to_string(), "off");
    }
}

/// Which driver a workload runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// A child process of the node.
    Process,
    /// A Docker container.
    Docker,
}

impl FromStr for RuntimeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "process" => Ok(RuntimeKind::Process),
            "docker" => Ok(RuntimeKind::Docker),
            other => Err(format!("`{other}` is not a runtime; use process or docker")),
        }
    }
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuntimeKind::Process => "process",
            RuntimeKind::Docker => "docker",
        })
    }
}
