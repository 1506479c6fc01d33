//! The Docker runtime for real: a private Docker engine (`scripts/with-docker.sh`, which
//! `make test` runs), images built locally from Debian packages (`scripts/build-test-images.sh`:
//! a Debian root filesystem with bash and python3 but no sshd, and a busybox one with no C
//! library at all), a host node with `--runtime docker` and simulated GPUs, and the real CLI,
//! `ssh` and `scp`.
//!
//! Without the engine or the images these tests fail, saying how to get them; they do not skip.

use gpuflow_tests::engine::{docker_host, test_image};
use std::process::Stdio;
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use gpuflow_tests::chain::{RENTER, TestChain};
use gpuflow_tests::cli::{CliRenter, units};
use gpuflow_tests::host::{HostNode, HostOpts};
use gpuflow_tests::openssh::{self, forward, keygen, parse_ssh_line, scp, ssh};
use gpuflow_tests::rental::mint;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

mod host;
mod isolation;
mod lifecycle;
mod ssh;

/// `docker -H $DOCKER_HOST args…` → trimmed stdout.
fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .arg("-H")
        .arg(docker_host())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running the docker CLI (install docker.io)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Containers and networks of `lease` that the engine still has.
fn leftovers(lease: &str) -> (String, String) {
    let filter = format!("label=gpuflow.lease={lease}");
    (
        docker(&["ps", "-aq", "--filter", &filter]),
        docker(&["network", "ls", "-q", "--filter", &filter]),
    )
}

/// `gpuflow stop` of `lease`, then waits until the host has closed it and removed its
/// container and network; returns the stop's JSON.
async fn stop_clean(r: &CliRenter, host: &HostNode, lease: &str) -> Value {
    let stopped = r.json(&["stop", lease, "--json"]).await;
    let waited = r
        .run(&["wait", lease, "--until", "closed", "--timeout", "30"])
        .await;
    assert_eq!(waited.code(), 0, "{}", waited.stderr);
    let deadline = Instant::now() + Duration::from_secs(30);
    while leftovers(lease) != (String::new(), String::new()) {
        assert!(
            Instant::now() < deadline,
            "container or network left after stop: {:?}\n{}",
            leftovers(lease),
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stopped
}

/// Removes what a test's host node left on the shared engine when the test fails half-way
/// (containers and networks carrying its peer id).
struct EngineGuard(String);

impl Drop for EngineGuard {
    fn drop(&mut self) {
        let filter = format!("label=gpuflow.host={}", self.0);
        let ids = docker(&["ps", "-aq", "--filter", &filter]);
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids.lines());
            docker(&args);
        }
        let nets = docker(&["network", "ls", "-q", "--filter", &filter]);
        if !nets.is_empty() {
            let mut args = vec!["network", "rm"];
            args.extend(nets.lines());
            docker(&args);
        }
    }
}

/// A host node on the Docker runtime with simulated GPUs, offering any image.
async fn docker_host_node(chain: &TestChain, dir: &std::path::Path) -> HostNode {
    HostNode::start(chain, dir, &HostOpts::docker(&docker_host()))
        .await
        .unwrap()
}

/// What most Docker tests start from: a chain, a guarded Docker host, a funded renter CLI and
/// the renter's SSH key pair.
struct Setup {
    chain: TestChain,
    dir: tempfile::TempDir,
    host: HostNode,
    _guard: EngineGuard,
    r: CliRenter,
    key: std::path::PathBuf,
    public: std::path::PathBuf,
}

impl Setup {
    /// What the renter is given to spend, token base units.
    const FUNDS: U256 = U256::from_limbs([100_000_000, 0, 0, 0]);

    async fn start() -> Self {
        let chain = TestChain::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (host, guard) = guarded_host(&chain, &dir.path().join("host")).await;
        mint(&chain, RENTER, Self::FUNDS).await;
        let r = CliRenter::new(&chain, &dir.path().join("renter"), RENTER, &[&host]);
        let (key, public) = keygen(&dir.path().join("keys"));
        Self {
            chain,
            dir,
            host,
            _guard: guard,
            r,
            key,
            public,
        }
    }
}

/// [`docker_host_node`] with its [`EngineGuard`].
async fn guarded_host(chain: &TestChain, dir: &std::path::Path) -> (HostNode, EngineGuard) {
    let host = docker_host_node(chain, dir).await;
    let guard = EngineGuard(host.peer.to_string());
    (host, guard)
}

/// `gpuflow rent <offer> --image <image> --ssh-key <pub> --json` → the JSON answer.
async fn rent(r: &CliRenter, host: &HostNode, image: &str, public: &std::path::Path) -> Value {
    let public = public.display().to_string();
    r.json(&[
        "rent",
        &host.offer_id().to_string(),
        "--hours",
        "0.5",
        "--image",
        image,
        "--ssh-key",
        &public,
        "--yes",
        "--json",
    ])
    .await
}

/// Runs `command` over SSH and returns its stdout, failing the test with stderr otherwise.
async fn ssh_ok(key: &std::path::Path, port: u16, command: &str) -> String {
    let out = openssh::run(ssh(key, port, "root", command)).await;
    assert!(
        out.status.success(),
        "ssh `{command}` failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Copies a file up and another down with `scp` (SFTP) and checks both byte for byte.
async fn scp_both_ways(key: &std::path::Path, port: u16, dir: &std::path::Path) {
    let up: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let local = dir.join("up.bin");
    std::fs::write(&local, &up).unwrap();
    let out = openssh::run(scp(
        key,
        port,
        &local.display().to_string(),
        "root@127.0.0.1:/tmp/up.bin",
    ))
    .await;
    assert!(out.status.success(), "scp up: {out:?}");
    // The copy up arrived whole: the container reads it back as it was sent.
    assert_eq!(
        ssh_ok(key, port, "wc -c < /tmp/up.bin").await.trim(),
        "200000"
    );
    let back = dir.join("back.bin");
    let out = openssh::run(scp(
        key,
        port,
        "root@127.0.0.1:/tmp/up.bin",
        &back.display().to_string(),
    ))
    .await;
    assert!(out.status.success(), "scp down: {out:?}");
    assert!(
        std::fs::read(&back).unwrap() == up,
        "the file came back changed"
    );
}

/// What a local port forward to `target` inside the container answers to an HTTP GET.
async fn get_through_forward(key: &std::path::Path, port: u16, target: &str) -> String {
    let local = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut tunnel = forward(key, port, "root", local, target)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let answer = loop {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", local)).await {
            s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
            if !buf.is_empty() {
                break String::from_utf8_lossy(&buf).into_owned();
            }
        }
        assert!(Instant::now() < deadline, "the forward never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = tunnel.kill().await;
    answer
}

/// Whether a TCP connection from inside the lease (bash's `/dev/tcp`) to `ip:port` opens.
async fn reaches(key: &std::path::Path, port: u16, ip: &str, target: u16) -> bool {
    let probe = format!(
        "timeout 3 bash -c 'exec 3<>/dev/tcp/{ip}/{target}' 2>/dev/null && echo open || echo closed"
    );
    match ssh_ok(key, port, &probe).await.trim() {
        "open" => true,
        "closed" => false,
        other => panic!("probe said {other:?}"),
    }
}

/// The lease network's gateway (the host's address on the lease's bridge).
fn gateway(lease: &str) -> String {
    let name = format!("gpuflow-{}", lease.trim_start_matches("0x"));
    docker(&[
        "network",
        "inspect",
        &name,
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
    ])
}

/// A Unix socket that forwards to the real engine until it is cut: the node's view of a
/// Docker engine that goes away (crash, upgrade) while containers keep running.
struct EngineProxy {
    path: std::path::PathBuf,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl EngineProxy {
    fn start(path: &std::path::Path) -> Self {
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        let real = docker_host().trim_start_matches("unix://").to_owned();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let real = real.clone();
                conns.spawn(async move {
                    if let Ok(mut engine) = tokio::net::UnixStream::connect(&real).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
            }
        });
        Self {
            path: path.to_owned(),
            task: Some(task),
        }
    }

    /// Cuts every connection and stops answering (the JoinSet of connections goes with it).
    fn cut(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// `gpuflow-node doctor --json` for a config, with `DOCKER_HOST` set to `docker_host`.
async fn doctor(chain: &TestChain, dir: &std::path::Path, docker_host: &str) -> (i32, Value) {
    let mut spec = gpuflow_tests::procs::NodeSpec::new("RTX_4090", 1, "0.40");
    spec.escrow = chain.escrow;
    spec.token = chain.token;
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("node.toml");
    std::fs::write(&config, spec.toml(dir)).unwrap();
    let key = format!("{:#x}", chain.signer(gpuflow_tests::chain::HOST).to_bytes());
    let out = gpuflow_tests::procs::command("gpuflow-node", dir)
        .unwrap()
        .env("DOCKER_HOST", docker_host)
        .env("GPUFLOW_HOST_PRIVATE_KEY", key)
        .arg("doctor")
        .arg("--config")
        .arg(&config)
        .args(["--runtime", "docker", "--gpu-simulated", "true", "--json"])
        .arg("--rpc-url")
        .arg(chain.anvil.endpoint())
        .output()
        .await
        .unwrap();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), json)
}

fn status_of<'a>(checks: &'a Value, name: &str) -> &'a Value {
    let c = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {checks}"));
    &c["status"]
}
