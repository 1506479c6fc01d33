//! Where the CLI finds peers to join through. First match wins:
//! 1. `--bootstrap ADDR` flags;
//! 2. `GPUFLOW_BOOTSTRAP` (comma- or space-separated multiaddrs);
//! 3. `bootstrap = [...]` in the config file (`--config`, default
//!    `$XDG_CONFIG_HOME/gpuflow/config.toml` or `~/.config/gpuflow/config.toml`);
//! 4. `"bootstrap": [...]` in `.devnet/devnet.json`, searched upward from the current
//!    directory (written by `make devnet` once its host node listens).
//!
//! The chain RPC URL is found the same way ([`resolve_rpc`]): `--rpc-url` > `GPUFLOW_RPC_URL` >
//! `rpc_url` in the config file > `"rpcUrl"` in the devnet file. The deployment (chain id,
//! escrow, token) comes from the offer being rented; commands without an offer (`wallet
//! balance`) read it from `[deployment]` in the config file or the devnet file
//! ([`resolve_deployment`]).

use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use gpuflow_p2p::Multiaddr;
use serde::Deserialize;

/// Reads one environment variable.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Where the addresses came from (said in errors and on `-v`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Flag,
    Env,
    ConfigFile(PathBuf),
    Devnet(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Flag => f.write_str("--bootstrap"),
            Self::Env => f.write_str("GPUFLOW_BOOTSTRAP"),
            Self::ConfigFile(p) => write!(f, "{}", p.display()),
            Self::Devnet(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The CLI's config file (only what this milestone reads).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientConfig {
    /// Bootstrap multiaddrs.
    #[serde(default)]
    pub(crate) bootstrap: Vec<String>,
    /// Chain RPC URL.
    #[serde(default)]
    pub(crate) rpc_url: Option<String>,
    /// The escrow deployment, for commands that rent nothing (`wallet balance`).
    #[serde(default)]
    pub(crate) deployment: Option<Deployment>,
}

/// Where the contracts live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Deployment {
    /// Chain id.
    #[serde(alias = "chain_id")]
    pub(crate) chain_id: u64,
    /// The `GpuFlowEscrow` contract.
    pub(crate) escrow: Address,
    /// The stablecoin.
    pub(crate) token: Address,
}

/// The part of a devnet file the CLI reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DevnetFile {
    #[serde(default)]
    bootstrap: Vec<String>,
    #[serde(default)]
    rpc_url: Option<String>,
    #[serde(default)]
    chain_id: Option<u64>,
    #[serde(default)]
    escrow: Option<Address>,
    #[serde(default)]
    token: Option<Address>,
}

/// Why no usable bootstrap address was found.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BootstrapError {
    #[error(
        "no bootstrap peers: pass --bootstrap /ip4/…/tcp/…/p2p/<peer id>, set GPUFLOW_BOOTSTRAP, \
         add `bootstrap = [\"…\"]` to {config}, or start a devnet with `make devnet`"
    )]
    None { config: String },
    #[error(
        "`{addr}` from {source_name} is not a multiaddr ({why}); write it as /ip4/1.2.3.4/tcp/4001/p2p/<peer id>"
    )]
    BadAddr {
        addr: String,
        source_name: String,
        why: String,
    },
    #[error("cannot read {path}: {why}")]
    File { path: PathBuf, why: String },
    #[error(
        "no chain RPC URL: pass --rpc-url http://…:8545, set GPUFLOW_RPC_URL, add `rpc_url = \"…\"` \
         to the config file, or start a devnet with `make devnet`"
    )]
    NoRpc,
    /// The RPC URL is not an http(s) URL, or the RPC timeout variable is bad.
    #[error("{why} (from {source_name})")]
    BadRpc { why: String, source_name: String },
}

/// The default CLI config file location.
pub(crate) fn default_config_file(env: Env<'_>) -> Option<PathBuf> {
    if let Some(x) = env("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("gpuflow/config.toml"));
    }
    env("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".config/gpuflow/config.toml"))
}

fn parse(addrs: &[String], source: &Source) -> Result<Vec<Multiaddr>, BootstrapError> {
    addrs
        .iter()
        .map(|a| {
            a.parse::<Multiaddr>().map_err(|e| BootstrapError::BadAddr {
                addr: a.clone(),
                source_name: source.to_string(),
                why: e.to_string(),
            })
        })
        .collect()
}

fn read_json_or_toml<T: for<'de> Deserialize<'de>>(
    path: &Path,
    json: bool,
) -> Result<T, BootstrapError> {
    let file_err = |why: String| BootstrapError::File {
        path: path.to_owned(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    if json {
        serde_json::from_str(&text).map_err(|e| file_err(e.to_string()))
    } else {
        toml::from_str(&text).map_err(|e| file_err(e.to_string()))
    }
}

/// `.devnet/devnet.json` in `start` or the nearest ancestor that has one.
pub(crate) fn find_devnet_file(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|d| d.join(".devnet/devnet.json"))
        .find(|p| p.is_file())
}

/// Resolves the bootstrap addresses by the order in the module docs.
pub(crate) fn resolve(
    flags: &[String],
    config: Option<&Path>,
    env: Env<'_>,
    cwd: &Path,
) -> Result<(Vec<Multiaddr>, Source), BootstrapError> {
    let split = |s: &str| -> Vec<String> {
        s.split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect()
    };
    if !flags.is_empty() {
        return Ok((parse(flags, &Source::Flag)?, Source::Flag));
    }
    if let Some(v) = env("GPUFLOW_BOOTSTRAP")
        .map(|v| split(&v))
        .filter(|v| !v.is_empty())
    {
        return Ok((parse(&v, &Source::Env)?, Source::Env));
    }
    // An explicitly named config file must exist; the default one may not.
    let (config_path, required) = match config {
        Some(p) => (Some(p.to_owned()), true),
        None => (default_config_file(env), false),
    };
    if let Some(path) = &config_path
        && (required || path.is_file())
    {
        let c: ClientConfig = read_json_or_toml(path, false)?;
        if !c.bootstrap.is_empty() {
            let source = Source::ConfigFile(path.clone());
            return Ok((parse(&c.bootstrap, &source)?, source));
        }
    }
    if let Some(path) = find_devnet_file(cwd) {
        let d: DevnetFile = read_json_or_toml(&path, true)?;
        if !d.bootstrap.is_empty() {
            let source = Source::Devnet(path);
            return Ok((parse(&d.bootstrap, &source)?, source));
        }
    }
    Err(BootstrapError::None {
        config: config_path.map_or_else(
            || "~/.config/gpuflow/config.toml".into(),
            |p| p.display().to_string(),
        ),
    })
}

/// The config file to read: the named one (which must exist) or the default one if it exists.
fn config_file(
    config: Option<&Path>,
    env: Env<'_>,
) -> Result<Option<ClientConfig>, BootstrapError> {
    let (path, required) = match config {
        Some(p) => (Some(p.to_owned()), true),
        None => (default_config_file(env), false),
    };
    match path {
        Some(p) if required || p.is_file() => Ok(Some(read_json_or_toml(&p, false)?)),
        _ => Ok(None),
    }
}

/// The chain RPC URL and where it came from, by the order in the module docs. Only an http(s)
/// URL is accepted, and `GPUFLOW_RPC_TIMEOUT_SECS` must be valid if set: either is a usage
/// error here, before anything is sent.
pub(crate) fn resolve_rpc(
    flag: Option<&str>,
    config: Option<&Path>,
    env: Env<'_>,
    cwd: &Path,
) -> Result<(String, String), BootstrapError> {
    let (url, from) = find_rpc(flag, config, env, cwd)?;
    crate::chain::parse_rpc_url(&url).map_err(|why| BootstrapError::BadRpc {
        why,
        source_name: from.clone(),
    })?;
    crate::chain::rpc_timeout(env).map_err(|why| BootstrapError::BadRpc {
        why,
        source_name: "the environment".into(),
    })?;
    Ok((url, from))
}

fn find_rpc(
    flag: Option<&str>,
    config: Option<&Path>,
    env: Env<'_>,
    cwd: &Path,
) -> Result<(String, String), BootstrapError> {
    if let Some(u) = flag.filter(|u| !u.is_empty()) {
        return Ok((u.to_owned(), "--rpc-url".into()));
    }
    if let Some(u) = env("GPUFLOW_RPC_URL").filter(|u| !u.is_empty()) {
        return Ok((u, "GPUFLOW_RPC_URL".into()));
    }
    if let Some(u) = config_file(config, env)?.and_then(|c| c.rpc_url) {
        return Ok((u, "the config file".into()));
    }
    if let Some(path) = find_devnet_file(cwd) {
        let d: DevnetFile = read_json_or_toml(&path, true)?;
        if let Some(u) = d.rpc_url {
            return Ok((u, path.display().to_string()));
        }
    }
    Err(BootstrapError::NoRpc)
}

/// The deployment from the config file's `[deployment]`, else the devnet file.
pub(crate) fn resolve_deployment(
    config: Option<&Path>,
    env: Env<'_>,
    cwd: &Path,
) -> Result<Option<Deployment>, BootstrapError> {
    Ok(resolve_deployment_from(config, env, cwd)?.map(|(d, _)| d))
}

/// [`resolve_deployment`] and the file it came from (said in "wrong chain" errors).
pub(crate) fn resolve_deployment_from(
    config: Option<&Path>,
    env: Env<'_>,
    cwd: &Path,
) -> Result<Option<(Deployment, String)>, BootstrapError> {
    let (path, required) = match config {
        Some(p) => (Some(p.to_owned()), true),
        None => (default_config_file(env), false),
    };
    if let Some(p) = path.filter(|p| required || p.is_file()) {
        let c: ClientConfig = read_json_or_toml(&p, false)?;
        if let Some(d) = c.deployment {
            return Ok(Some((d, p.display().to_string())));
        }
    }
    if let Some(path) = find_devnet_file(cwd) {
        let d: DevnetFile = read_json_or_toml(&path, true)?;
        if let (Some(chain_id), Some(escrow), Some(token)) = (d.chain_id, d.escrow, d.token) {
            let deployment = Deployment {
                chain_id,
                escrow,
                token,
            };
            return Ok(Some((deployment, path.display().to_string())));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWKd6HU184f65avu7C5Udo4uTcA9iGAc7FtLrgJXmzNJvm";
    const B: &str = "/ip4/127.0.0.1/tcp/2";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn flag_beats_env_beats_config_beats_devnet() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::create_dir_all(dir.path().join(".devnet")).unwrap();
        std::fs::write(
            dir.path().join(".devnet/devnet.json"),
            format!(r#"{{"chainId": 31337, "bootstrap": ["{B}"]}}"#),
        )
        .unwrap();
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, format!("bootstrap = [\"{A}\"]\n")).unwrap();
        let env = |k: &str| (k == "GPUFLOW_BOOTSTRAP").then(|| format!("{B}, {A}"));

        let (addrs, src) = resolve(&[A.into()], Some(&cfg), &env, &nested).unwrap();
        assert_eq!((addrs.len(), src), (1, Source::Flag));
        let (addrs, src) = resolve(&[], Some(&cfg), &env, &nested).unwrap();
        assert_eq!((addrs.len(), src), (2, Source::Env));
        let (addrs, src) = resolve(&[], Some(&cfg), &no_env, &nested).unwrap();
        assert_eq!(addrs[0].to_string(), A);
        assert_eq!(src, Source::ConfigFile(cfg));
        let (addrs, src) = resolve(&[], None, &no_env, &nested).unwrap();
        assert_eq!(addrs[0].to_string(), B);
        assert!(matches!(src, Source::Devnet(_)), "found upward from a/b");
    }

    #[test]
    fn rpc_and_deployment_come_from_flag_env_config_or_devnet() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".devnet")).unwrap();
        std::fs::write(
            dir.path().join(".devnet/devnet.json"),
            r#"{"chainId": 31337, "escrow": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
                "token": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512", "feeBps": 100,
                "rpcUrl": "http://127.0.0.1:8545", "bootstrap": []}"#,
        )
        .unwrap();
        let (url, from) = resolve_rpc(None, None, &no_env, dir.path()).unwrap();
        assert_eq!(url, "http://127.0.0.1:8545");
        assert!(from.ends_with("devnet.json"), "{from}");
        let env = |k: &str| (k == "GPUFLOW_RPC_URL").then(|| "http://env:1".to_owned());
        assert_eq!(
            resolve_rpc(None, None, &env, dir.path()).unwrap().0,
            "http://env:1"
        );
        let flag = resolve_rpc(Some("http://flag:1"), None, &env, dir.path()).unwrap();
        assert_eq!(flag.0, "http://flag:1");
        let d = resolve_deployment(None, &no_env, dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(d.chain_id, 31_337);

        let cfg = dir.path().join("c.toml");
        std::fs::write(
            &cfg,
            "rpc_url = \"http://cfg:1\"\n[deployment]\nchain_id = 5\n\
             escrow = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n\
             token = \"0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512\"\n",
        )
        .unwrap();
        assert_eq!(
            resolve_rpc(None, Some(&cfg), &no_env, dir.path())
                .unwrap()
                .0,
            "http://cfg:1"
        );
        let d = resolve_deployment(Some(&cfg), &no_env, dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(d.chain_id, 5);
        let empty = tempfile::tempdir().unwrap();
        let err = resolve_rpc(None, None, &no_env, empty.path()).unwrap_err();
        assert!(err.to_string().contains("--rpc-url"), "{err}");
    }

    /// D11: `--rpc-url ftp://x` used to pass here and fail later as "does not answer"
    /// (exit 1); a bad `GPUFLOW_RPC_TIMEOUT_SECS` is refused here too.
    #[test]
    fn rpc_url_must_be_http_and_the_timeout_a_number() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "ftp://x",
            "x:8545",
            "127.0.0.1:8545",
            "http://",
            "file:///tmp/x",
        ] {
            let err = resolve_rpc(Some(bad), None, &no_env, dir.path()).unwrap_err();
            assert!(matches!(err, BootstrapError::BadRpc { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("http"), "{bad}: {err}");
            assert!(err.to_string().contains("--rpc-url"), "{bad}: {err}");
        }
        let env = |k: &str| (k == "GPUFLOW_RPC_URL").then(|| "ftp://env".to_owned());
        let err = resolve_rpc(None, None, &env, dir.path()).unwrap_err();
        assert!(err.to_string().contains("GPUFLOW_RPC_URL"), "{err}");
        for good in ["http://127.0.0.1:8545", "https://rpc.example.org/v1/key"] {
            assert_eq!(
                resolve_rpc(Some(good), None, &no_env, dir.path())
                    .unwrap()
                    .0,
                good
            );
        }
        for (v, ok) in [
            ("5", true),
            (" 2 ", true),
            ("0", false),
            ("x", false),
            ("1.5", false),
        ] {
            let env = |k: &str| (k == "GPUFLOW_RPC_TIMEOUT_SECS").then(|| v.to_owned());
            let r = resolve_rpc(Some("http://a:1"), None, &env, dir.path());
            assert_eq!(r.is_ok(), ok, "{v:?}: {r:?}");
        }
    }

    #[test]
    fn nothing_found_and_bad_addresses_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve(&[], None, &no_env, dir.path()).unwrap_err();
        assert!(err.to_string().contains("--bootstrap"), "{err}");
        let err = resolve(&["localhost:4001".into()], None, &no_env, dir.path()).unwrap_err();
        assert!(err.to_string().contains("localhost:4001"), "{err}");
    }
}
