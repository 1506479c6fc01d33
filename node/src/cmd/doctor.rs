//! `gpuflow-node doctor`: checks what a host needs before it rents anything out, and names the
//! command that fixes each problem (like `runpodctl doctor`). Read-only: it changes nothing.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::transports::http::reqwest::Url;
use bollard::Docker;
use gpuflow_node::config::{Config, ConfigArgs, DEVNET_CHAIN_ID, RuntimeKind};
use gpuflow_node::gpu::GpuProbe;
use gpuflow_node::gpu::nvml::NvmlProbe;
use gpuflow_node::runtime::docker::{gpu_runtime_of, socket_from_docker_host};
use gpuflow_node::runtime::ssh_tools;
use gpuflow_node::wallet::PRIVATE_KEY_ENV;
use serde::Serialize;

/// Free space below which image pulls are likely to fail (a CUDA image is 5–20 GB).
const MIN_FREE_GIB: u64 = 50;
/// Gas for this many host transactions (`start` + `close`, about 100k gas each) is "enough".
const GAS_TXS: u64 = 20;
/// How far the chain's clock may run ahead of this machine's before leases misbehave.
const MAX_SKEW_SECS: u64 = 30;

/// Check this host: Docker, NVIDIA runtime, GPUs, disk, chain RPC, gas, clock.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 every check passed (warnings allowed); 1 a check \
failed. Nothing is changed: each problem comes with the command that fixes it."
)]
pub(crate) struct DoctorArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Chain RPC (HTTP) to check, as `run --rpc-url`.
    #[arg(long, env = "GPUFLOW_RPC_URL")]
    rpc_url: Option<Url>,
    /// Print the checks as JSON (an array of {check, status, detail, fix}).
    #[arg(long)]
    json: bool,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Ok,
    Warn,
    Fail,
    Skipped,
}

#[derive(Debug, Serialize)]
struct Check {
    check: &'static str,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

fn check(check: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        check,
        status,
        detail: detail.into(),
        fix: None,
    }
}

impl Check {
    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl DoctorArgs {
    pub(crate) fn run(&self, env: Env<'_>) -> anyhow::Result<bool> {
        let config = Config::resolve(self.config.load(env)?, env)?;
        let rt = tokio::runtime::Runtime::new()?;
        let checks = rt.block_on(self.checks(&config, env));
        if self.json {
            println!("{}", serde_json::to_string_pretty(&checks)?);
        } else {
            for c in &checks {
                let mark = match c.status {
                    Status::Ok => "ok  ",
                    Status::Warn => "warn",
                    Status::Fail => "FAIL",
                    Status::Skipped => "skip",
                };
                println!("{mark}  {:<14} {}", c.check, c.detail);
                if let Some(f) = &c.fix {
                    println!("      {:<14} fix: {f}", "");
                }
            }
        }
        Ok(checks.iter().all(|c| c.status != Status::Fail))
    }

    async fn checks(&self, config: &Config, env: Env<'_>) -> Vec<Check> {
        let mut out = Vec::new();
        let docker = config.runtime == RuntimeKind::Docker;
        out.push(runtime_kind(config));
        let engine = if docker {
            engine(env, &mut out).await
        } else {
            None
        };
        out.push(gpus(config));
        if let Some((d, root)) = &engine {
            out.push(nvidia_runtime(d, config).await);
            out.push(disk(root));
        }
        if docker {
            out.extend(ssh_tools());
            out.push(iptables());
        }
        match &self.rpc_url {
            Some(url) => out.extend(chain(url, config, env).await),
            None => out.push(
                check(
                    "chain",
                    Status::Skipped,
                    "no --rpc-url / GPUFLOW_RPC_URL given",
                )
                .fix("gpuflow-node doctor --rpc-url https://…"),
            ),
        }
        out
    }
}

fn runtime_kind(config: &Config) -> Check {
    match config.runtime {
        RuntimeKind::Docker => check("runtime", Status::Ok, "docker: one container per lease"),
        RuntimeKind::Process => check(
            "runtime",
            if config.chain.chain_id == DEVNET_CHAIN_ID {
                Status::Warn
            } else {
                Status::Fail
            },
            "process: renters' code runs as this OS user, unisolated",
        )
        .fix("set [runtime] kind = \"docker\" (or --runtime docker)"),
    }
}

async fn engine(env: Env<'_>, out: &mut Vec<Check>) -> Option<(Docker, String)> {
    let socket = match socket_from_docker_host(env("DOCKER_HOST").as_deref()) {
        Ok(s) => s,
        Err(e) => {
            out.push(check("docker", Status::Fail, e.to_string()).fix("unset DOCKER_HOST"));
            return None;
        }
    };
    let fix = "apt-get install docker.io && systemctl start docker (or point DOCKER_HOST at \
               the engine's socket)";
    let docker = match Docker::connect_with_unix(&socket, 5, bollard::API_DEFAULT_VERSION) {
        Ok(d) => d,
        Err(e) => {
            out.push(check("docker", Status::Fail, format!("{socket}: {e}")).fix(fix));
            return None;
        }
    };
    match tokio::time::timeout(Duration::from_secs(5), docker.info()).await {
        Ok(Ok(info)) => {
            let version = info.server_version.unwrap_or_default();
            let root = info.docker_root_dir.unwrap_or_default();
            out.push(check(
                "docker",
                Status::Ok,
                format!(
                    "engine {version} at {socket}, storage {}",
                    info.driver.unwrap_or_default()
                ),
            ));
            Some((docker, root))
        }
        Ok(Err(e)) => {
            out.push(check("docker", Status::Fail, format!("{socket}: {e}")).fix(fix));
            None
        }
        Err(_) => {
            out.push(
                check(
                    "docker",
                    Status::Fail,
                    format!("{socket}: no answer in 5 s"),
                )
                .fix(fix),
            );
            None
        }
    }
}

async fn nvidia_runtime(docker: &Docker, config: &Config) -> Check {
    let info = match docker.info().await {
        Ok(i) => i,
        Err(e) => return check("nvidia runtime", Status::Fail, e.to_string()),
    };
    let found = gpu_runtime_of(&info).is_some();
    let runtimes: Vec<String> = info.runtimes.unwrap_or_default().into_keys().collect();
    match (found, config.gpu_simulated) {
        (true, _) => check(
            "nvidia runtime",
            Status::Ok,
            format!("runtimes: {}", runtimes.join(", ")),
        ),
        (false, true) => check(
            "nvidia runtime",
            Status::Warn,
            "none, and [gpu] simulated = true: containers get no GPU (development only)",
        ),
        (false, false) => check(
            "nvidia runtime",
            Status::Fail,
            format!(
                "the engine has no NVIDIA runtime (runtimes: {})",
                runtimes.join(", ")
            ),
        )
        .fix(
            "install the NVIDIA Container Toolkit, then `nvidia-ctk runtime configure \
             --runtime=docker && systemctl restart docker`",
        ),
    }
}

fn gpus(config: &Config) -> Check {
    let declared: u32 = config.declared.iter().map(|d| d.count).sum();
    match NvmlProbe.probe() {
        Ok(report) => {
            let seen = report.gpus.len();
            let mut models: Vec<&str> = report.gpus.iter().map(|g| g.model.as_str()).collect();
            models.dedup();
            let status = if report.faulty.is_empty() {
                Status::Ok
            } else {
                Status::Warn
            };
            check(
                "gpus",
                status,
                format!(
                    "NVML sees {seen} GPUs ({}); {} left out",
                    models.join(", "),
                    report.faulty.len()
                ),
            )
        }
        Err(e) if config.gpu_simulated || declared > 0 => check(
            "gpus",
            Status::Warn,
            format!(
                "NVML: {e}; offering the {declared} GPUs declared in the config ({})",
                if config.gpu_simulated {
                    "simulated"
                } else {
                    "marked self-declared"
                }
            ),
        ),
        Err(e) => check("gpus", Status::Fail, format!("NVML: {e}; no GPUs declared either"))
            .fix("install the NVIDIA driver (nvidia-smi must work), or declare GPUs under [[gpu.declared]]"),
    }
}

/// Free GiB on the filesystem holding `path`, by `df`.
fn free_gib(path: &str) -> Option<u64> {
    let out = Command::new("df").args(["-Pk", path]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib / (1024 * 1024))
}

fn disk(root: &str) -> Check {
    match free_gib(root) {
        Some(g) if g >= MIN_FREE_GIB => {
            check("disk", Status::Ok, format!("{g} GiB free at {root}"))
        }
        Some(g) => check(
            "disk",
            Status::Warn,
            format!("{g} GiB free at {root}: images of {MIN_FREE_GIB}+ GiB may not fit"),
        )
        .fix("docker system prune -a (removes unused images), or grow the disk"),
        None => check(
            "disk",
            Status::Warn,
            format!("cannot read free space at {root}"),
        ),
    }
}

fn ssh_tools() -> Vec<Check> {
    let sftp = ssh_tools::has_sftp_server();
    let busybox = ssh_tools::static_busybox().is_some();
    vec![
        if sftp {
            check(
                "sftp",
                Status::Ok,
                "scp/sftp into any image (openssh-sftp-server)",
            )
        } else {
            check(
                "sftp",
                Status::Warn,
                "no /usr/lib/openssh/sftp-server: renters cannot scp",
            )
            .fix("apt-get install openssh-sftp-server")
        },
        if busybox {
            check(
                "port forward",
                Status::Ok,
                "ssh -L into any image (static busybox)",
            )
        } else {
            check(
                "port forward",
                Status::Warn,
                "no static busybox: renters cannot ssh -L",
            )
            .fix("apt-get install busybox-static")
        },
    ]
}

fn iptables() -> Check {
    match Command::new("iptables")
        .args(["-w", "-S", "INPUT"])
        .output()
    {
        Ok(o) if o.status.success() => check(
            "firewall",
            Status::Ok,
            "iptables works: lease networks are fenced off the host and its LAN",
        ),
        Ok(o) => check(
            "firewall",
            Status::Fail,
            format!("iptables: {}", String::from_utf8_lossy(&o.stderr).trim()),
        )
        .fix("run the node as root (it sets the rules that keep containers off your LAN)"),
        Err(e) => check("firewall", Status::Fail, format!("iptables: {e}"))
            .fix("apt-get install iptables"),
    }
}

/// The host wallet's address without unlocking anything: the config's, the env key's, or the
/// keystore file's `address` field.
fn wallet_address(config: &Config, env: Env<'_>) -> Option<Address> {
    if let Some(a) = config.wallet_address {
        return Some(a);
    }
    if let Some(k) = env(PRIVATE_KEY_ENV) {
        return super::wallet::parse_key(&k, PRIVATE_KEY_ENV)
            .ok()
            .map(|w| w.address());
    }
    let path = config.keystore.keystore.as_ref()?;
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    format!("0x{}", json["address"].as_str()?.trim_start_matches("0x"))
        .parse()
        .ok()
}

async fn chain(url: &Url, config: &Config, env: Env<'_>) -> Vec<Check> {
    let provider = gpuflow_node::chain::tx::read_provider(url.clone());
    let mut out = Vec::new();
    match provider.get_chain_id().await {
        Ok(id) if id == config.chain.chain_id => {
            out.push(check("chain", Status::Ok, format!("{url}: chain id {id}")));
        }
        Ok(id) => {
            out.push(
                check(
                    "chain",
                    Status::Fail,
                    format!(
                        "{url} is chain {id}, the config says {}",
                        config.chain.chain_id
                    ),
                )
                .fix("point --rpc-url at the configured chain, or fix chain.chain_id"),
            );
            return out;
        }
        Err(e) => {
            out.push(check("chain", Status::Fail, format!("{url}: {e}")).fix("check the RPC URL"));
            return out;
        }
    }
    match wallet_address(config, env) {
        Some(host) => {
            let balance = provider.get_balance(host).await.unwrap_or_default();
            let price = provider.get_gas_price().await.unwrap_or(1);
            let need = U256::from(price) * U256::from(100_000u64 * GAS_TXS);
            out.push(if balance >= need {
                check("gas", Status::Ok, format!("{host} holds {balance} wei"))
            } else {
                check(
                    "gas",
                    Status::Fail,
                    format!(
                        "{host} holds {balance} wei; {GAS_TXS} start/close transactions need \
                         about {need}"
                    ),
                )
                .fix(format!("send the chain's native token to {host}"))
            });
        }
        None => out.push(
            check("gas", Status::Skipped, "host wallet unknown").fix(format!(
                "set {PRIVATE_KEY_ENV}, wallet.address or wallet.keystore"
            )),
        ),
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match provider
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
    {
        Ok(Some(b)) if b.header.timestamp > now + MAX_SKEW_SECS => out.push(
            check(
                "clock",
                Status::Fail,
                format!(
                    "the chain's latest block is {} s ahead of this machine's clock",
                    b.header.timestamp - now
                ),
            )
            .fix("sync the clock: timedatectl set-ntp true"),
        ),
        Ok(Some(b)) => out.push(check(
            "clock",
            Status::Ok,
            format!(
                "latest block {} s old",
                now.saturating_sub(b.header.timestamp)
            ),
        )),
        _ => out.push(check("clock", Status::Warn, "cannot read the latest block")),
    }
    out
}
