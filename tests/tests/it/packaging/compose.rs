//! `docker-compose up` of the repository's compose file for real, on the private Docker engine of
//! `scripts/with-docker.sh` (what `make test` runs), without any registry:
//!
//! 1. the base images are built locally from Debian packages (`scripts/build-base-images.sh`)
//!    and passed as build arguments; the node image takes the `gpuflow-node` and `gpuflow`
//!    binaries cargo built for this test (target `node-prebuilt`, staged under
//!    `docker/prebuilt/<project>/`), and the chain image the installed `contracts/node_modules`
//!    (hard links in `docker/prebuilt/contracts/`; no `npm ci` in the build);
//! 2. `docker-compose -p <unique project> up -d --build`: anvil, the deploy job, the bootstrap
//!    node and the two Docker-runtime hosts (simulated GPUs) on the engine's socket, on free
//!    ports; the hosts must turn healthy;
//! 3. from OUTSIDE the compose network, the real CLI on this machine searches through the
//!    bootstrap node's published port, rents `--template pytorch` (the Debian test image tagged
//!    as the template's image) with a fresh key, runs a command over SSH in the leased
//!    container, stops the lease and sees its container, network and firewall rules go;
//! 4. `docker-compose down -v` leaves nothing with the project's label (containers, networks,
//!    volumes) and no lease container or network of its hosts.
//!
//! On failure the guard prints the services' logs and removes all of it. Without the engine
//! (`DOCKER_HOST`), the test images or docker-compose the test fails, saying what is missing; it
//! does not skip.

use gpuflow_tests::engine::{docker_host, test_image};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use gpuflow_tests::cli::gpuflow_in;
use gpuflow_tests::openssh::{self, keygen, parse_ssh_line, ssh};
use gpuflow_tests::procs::bin;
use serde_json::Value;

use super::docker::compose;
use super::repo_root;

/// Longest `scripts/build-base-images.sh` may take (cold: mmdebstrap, well under a minute here).
const BASE_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest `up -d --build` may take (cold: apt-get in two images and forge build of the
/// contracts; cached: seconds).
const UP_TIMEOUT: Duration = Duration::from_secs(900);
/// Longest the hosts may take to turn healthy once their containers run.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest the CLI may take to see both hosts' offers.
const OFFERS_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest a lease's container and network may linger after the lease closed.
const GONE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `down -v` may take.
const DOWN_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest one docker CLI call may take.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(60);
/// Anvil account 2: the renter, funded with 10,000 mUSD by the deploy job.
const RENTER_KEY: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";
/// Tag of the images the compose file builds here (`gpuflow/node:…`, `gpuflow/chain:…`): kept
/// in the engine as a build cache, like the test images, and never the `dev` a developer's
/// own `up` would use.
const IMAGE_TAG: &str = "compose-test";

/// What a bounded run gave: the status (`None`: killed at its time limit) and the output.
#[derive(Debug)]
struct Ran {
    what: String,
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Stdout, failing the test with both streams unless the run succeeded.
    fn must(&self) -> &str {
        assert!(
            self.ok(),
            "{} failed ({}):\nstdout (tail): {}\nstderr (tail): {}",
            self.what,
            self.status
                .map_or_else(|| "killed at its time limit".to_owned(), |s| s.to_string()),
            tail(&self.stdout, 60),
            tail(&self.stderr, 60)
        );
        &self.stdout
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `cmd` (stdin closed, in a process group of its own) for at most `limit`; at the limit
/// the whole group is killed.
fn run_for(limit: Duration, cmd: &mut Command) -> Ran {
    use std::os::unix::process::CommandExt;
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Ran {
        what,
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// `export NAME=value` lines → (NAME, value) pairs.
fn exports(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}

/// `n` TCP ports that are free on every address now (the hosts bind 0.0.0.0).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("0.0.0.0:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// The compose project under test; dropped, it takes everything down (see the module docs).
struct Devnet {
    compose: Vec<String>,
    docker_host: String,
    project: String,
    /// The compose file's variables (ports, paths, images, build target).
    env: Vec<(String, String)>,
    /// `docker/prebuilt/<project>`: the staged binaries.
    stage: PathBuf,
    /// `docker/prebuilt/contracts/node_modules`, when this test staged it.
    node_modules: Option<PathBuf>,
    /// `$GPUFLOW_COMPOSE_DATA`: the hosts' data dirs (bind mounts).
    data: tempfile::TempDir,
    /// The template image tag this test added (removed again at the end).
    tagged: Option<String>,
    down: bool,
}

impl Devnet {
    /// `docker -H $DOCKER_HOST args…`, bounded.
    fn docker(&self, args: &[&str]) -> Ran {
        run_for(
            DOCKER_TIMEOUT,
            Command::new("docker")
                .arg("-H")
                .arg(&self.docker_host)
                .args(args),
        )
    }

    /// Trimmed stdout of a docker call that must succeed.
    fn docker_ok(&self, args: &[&str]) -> String {
        self.docker(args).must().trim().to_owned()
    }

    /// The compose tool on the repository's compose file and this project, in an environment
    /// of only PATH, HOME, DOCKER_HOST and the file's variables.
    fn compose(&self, limit: Duration, args: &[&str]) -> Ran {
        let root = repo_root();
        run_for(
            limit,
            Command::new(&self.compose[0])
                .args(&self.compose[1..])
                .arg("--file")
                .arg(root.join("docker-compose.yml"))
                .args(["--project-name", &self.project])
                .args(args)
                .current_dir(&root)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env(
                    "HOME",
                    std::env::var_os("HOME").unwrap_or_else(|| "/root".into()),
                )
                .env("DOCKER_HOST", &self.docker_host)
                .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        )
    }

    fn var(&self, key: &str) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The peer id of a host, from its listen_addrs (its data dir is on this machine).
    fn host_peer(&self, host: &str) -> Option<String> {
        let addrs =
            std::fs::read_to_string(self.data.path().join(host).join("listen_addrs")).ok()?;
        let first = addrs.lines().next()?;
        Some(first.rsplit_once("/p2p/")?.1.to_owned())
    }

    /// Containers and networks (ids) the engine has with `label`.
    fn labelled(&self, label: &str, volumes: bool) -> Vec<String> {
        let filter = format!("label={label}");
        let mut found = Vec::new();
        for kind in [&["ps", "-aq"][..], &["network", "ls", "-q"][..]]
            .into_iter()
            .chain(volumes.then_some(&["volume", "ls", "-q"][..]))
        {
            let mut args = kind.to_vec();
            args.extend(["--filter", &filter]);
            found.extend(
                self.docker_ok(&args)
                    .lines()
                    .map(|l| format!("{} {l}", kind[0])),
            );
        }
        found
    }

    /// Status of `service`'s healthcheck (`healthy`, `starting`, …), or its state when it has
    /// stopped.
    fn health(&self, service: &str) -> String {
        let id = self.compose(DOCKER_TIMEOUT, &["ps", "-q", service]);
        let id = id.stdout.trim();
        if id.is_empty() {
            return "no container".into();
        }
        self.docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
            id,
        ])
        .stdout
        .trim()
        .to_owned()
    }

    /// `down -v`, once.
    fn down(&mut self) -> Ran {
        self.down = true;
        self.compose(
            DOWN_TIMEOUT,
            &["down", "-v", "--remove-orphans", "--timeout", "10"],
        )
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let peers: Vec<String> = ["host-a", "host-b"]
            .iter()
            .filter_map(|h| self.host_peer(h))
            .collect();
        if std::thread::panicking() {
            let logs = self.compose(DOCKER_TIMEOUT, &["logs", "--no-color", "--tail", "60"]);
            eprintln!(
                "compose: the services' logs (tail):\n{}\n{}",
                logs.stdout, logs.stderr
            );
        }
        if !self.down {
            let down = self.down();
            if !down.ok() {
                eprintln!("compose: down failed: {}", tail(&down.stderr, 20));
            }
        }
        // Leases the hosts left running (the node leaves them to be adopted on restart).
        for peer in &peers {
            let filter = format!("label=gpuflow.host={peer}");
            let ids = self.docker(&["ps", "-aq", "--filter", &filter]).stdout;
            if !ids.trim().is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids.lines());
                self.docker(&args);
            }
            let nets = self
                .docker(&["network", "ls", "-q", "--filter", &filter])
                .stdout;
            if !nets.trim().is_empty() {
                let mut args = vec!["network", "rm"];
                args.extend(nets.lines());
                self.docker(&args);
            }
        }
        if let Some(tag) = &self.tagged {
            self.docker(&["rmi", tag]);
        }
        let _ = std::fs::remove_dir_all(&self.stage);
        if let Some(dir) = &self.node_modules {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Copies `from` to `to` without debug info (smaller build context), or as it is when `strip`
/// is missing.
fn stage_binary(from: &Path, to: &Path) {
    let stripped = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(to)
        .arg(from)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(from, to).unwrap();
    }
}

/// `contracts/node_modules` into `to`: hard links when the file system allows, else a copy.
fn stage_node_modules(from: &Path, to: &Path) {
    for flags in ["-al", "-a"] {
        let _ = std::fs::remove_dir_all(to);
        let ok = Command::new("cp")
            .arg(flags)
            .arg(from)
            .arg(to)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return;
        }
    }
    panic!("cannot copy {} to {}", from.display(), to.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_up_rent_from_outside_ssh_into_the_lease_stop_and_down_leaves_nothing() {
    let started = Instant::now();
    let docker_host = docker_host();
    let socket = docker_host
        .strip_prefix("unix://")
        .or_else(|| docker_host.starts_with('/').then_some(docker_host.as_str()))
        .unwrap_or_else(|| {
            panic!("DOCKER_HOST={docker_host}: the hosts need a Unix socket to mount")
        })
        .to_owned();
    let test_image = test_image("GPUFLOW_TEST_IMAGE_DEBIAN");
    let root = repo_root();

    // 1. Base images from Debian packages, and the staged binaries and node_modules.
    let t = Instant::now();
    let base = run_for(
        BASE_TIMEOUT,
        Command::new(root.join("scripts/build-base-images.sh")).env("DOCKER_HOST", &docker_host),
    );
    let base_env = exports(base.must());
    assert_eq!(base_env.len(), 2, "{}", base.stdout);
    eprintln!(
        "compose: base images ready in {} ms",
        t.elapsed().as_millis()
    );

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let project = format!("gfcompose{}x{}", std::process::id(), nanos % 1_000_000);
    let stage_rel = format!("docker/prebuilt/{project}");
    let ports = free_ports(6);
    let data = tempfile::tempdir().unwrap();
    let mut env = base_env;
    env.extend(
        [
            ("GPUFLOW_NODE_TARGET", "node-prebuilt".to_owned()),
            ("GPUFLOW_PREBUILT_DIR", stage_rel.clone()),
            ("GPUFLOW_TAG", IMAGE_TAG.to_owned()),
            ("GPUFLOW_ANVIL_PORT", ports[0].to_string()),
            ("GPUFLOW_BOOTSTRAP_PORT", ports[1].to_string()),
            ("GPUFLOW_HOST_A_PORT", ports[2].to_string()),
            ("GPUFLOW_HOST_B_PORT", ports[3].to_string()),
            ("GPUFLOW_HOST_A_API_PORT", ports[4].to_string()),
            ("GPUFLOW_HOST_B_API_PORT", ports[5].to_string()),
            ("GPUFLOW_DOCKER_SOCKET", socket),
            ("GPUFLOW_COMPOSE_DATA", data.path().display().to_string()),
            ("GPUFLOW_PUBLIC_HOST", "127.0.0.1".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let mut devnet = Devnet {
        compose: compose(),
        docker_host,
        project: project.clone(),
        env,
        stage: root.join(&stage_rel),
        data,
        node_modules: None,
        tagged: None,
        down: false,
    };
    std::fs::create_dir_all(&devnet.stage).unwrap();
    for name in ["gpuflow-node", "gpuflow"] {
        stage_binary(&bin(name).unwrap(), &devnet.stage.join(name));
    }
    // A fixed place (see the Dockerfile), so the chain image's layers stay cached between runs.
    let node_modules = root.join("contracts/node_modules");
    if node_modules.is_dir() {
        let staged = root.join("docker/prebuilt/contracts/node_modules");
        stage_node_modules(&node_modules, &staged);
        devnet.node_modules = Some(staged);
    } else {
        eprintln!("compose: no contracts/node_modules (`make tools`): the chain image runs npm ci");
    }
    // The hosts' data dirs: bind mounts at the same path, made here so they are ours.
    for host in ["host-a", "host-b"] {
        std::fs::create_dir_all(devnet.data.path().join(host)).unwrap();
    }
    // The pytorch template's image: the Debian test image under its name, unless the engine
    // has the real one.
    let pytorch = gpuflow_protocol::templates::find("pytorch")
        .expect("no pytorch template")
        .image;
    if !devnet.docker(&["image", "inspect", pytorch]).ok() {
        devnet.docker_ok(&["tag", &test_image, pytorch]);
        devnet.tagged = Some(pytorch.to_owned());
    }

    // 2. Up, built here.
    let t = Instant::now();
    devnet
        .compose(UP_TIMEOUT, &["up", "-d", "--build", "--no-color"])
        .must();
    eprintln!(
        "compose: up -d --build done in {} ms",
        t.elapsed().as_millis()
    );
    let t = Instant::now();
    let deadline = Instant::now() + HEALTHY_TIMEOUT;
    for service in ["anvil", "bootstrap", "host-a", "host-b"] {
        loop {
            let health = devnet.health(service);
            if health == "running healthy" {
                break;
            }
            assert!(
                Instant::now() < deadline
                    && (health.starts_with("running") || health.starts_with("restarting")),
                "{service} is not healthy: {health}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    eprintln!(
        "compose: all services healthy {} ms after up",
        t.elapsed().as_millis()
    );
    let deploy = devnet.health("deploy");
    assert_eq!(deploy, "exited", "the deploy job");

    // 3. The renter on this machine, outside the compose network.
    let logs = devnet.compose(DOCKER_TIMEOUT, &["logs", "--no-color", "bootstrap"]);
    let bootstrap_peer = logs
        .must()
        .lines()
        .find_map(|l| l.split_once("| ready ").map(|(_, p)| p.trim().to_owned()))
        .unwrap_or_else(|| panic!("no `ready` line in the bootstrap's log:\n{}", logs.stdout));
    let host_peers: Vec<String> = ["host-a", "host-b"]
        .iter()
        .map(|h| {
            devnet
                .host_peer(h)
                .unwrap_or_else(|| panic!("{h} wrote no listen_addrs"))
        })
        .collect();
    let home = tempfile::tempdir().unwrap();
    let cli_env: Vec<(String, String)> = vec![
        ("GPUFLOW_PRIVATE_KEY".into(), RENTER_KEY.into()),
        (
            "GPUFLOW_RPC_URL".into(),
            format!("http://127.0.0.1:{}", devnet.var("GPUFLOW_ANVIL_PORT")),
        ),
        (
            "GPUFLOW_BOOTSTRAP".into(),
            format!(
                "/ip4/127.0.0.1/tcp/{}/p2p/{bootstrap_peer}",
                devnet.var("GPUFLOW_BOOTSTRAP_PORT")
            ),
        ),
    ];
    let cli = async |args: &[&str]| {
        let out = gpuflow_in(home.path(), &cli_env, args).await.unwrap();
        assert_eq!(
            out.code(),
            0,
            "gpuflow {args:?} failed\nstdout: {}\nstderr: {}",
            out.stdout,
            out.stderr
        );
        out
    };
    let json = |text: &str| -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    // Both hosts' offers reach the bootstrap node's book.
    let t = Instant::now();
    let deadline = Instant::now() + OFFERS_TIMEOUT;
    loop {
        let found = json(&cli(&["search", "--json"]).await.stdout);
        let mut hosts: Vec<String> = found["offers"]
            .as_array()
            .map(|o| {
                o.iter()
                    .filter_map(|o| o["host"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        hosts.sort();
        hosts.dedup();
        let mut want = host_peers.clone();
        want.sort();
        if hosts == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hosts' offers never showed: {found}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "compose: both hosts' offers seen in {} ms",
        t.elapsed().as_millis()
    );

    let (key, public) = keygen(&home.path().join("keys"));
    let public = public.display().to_string();
    let t = Instant::now();
    let rented = json(
        &cli(&[
            "rent",
            "--query",
            "num_gpus>=1",
            "--hours",
            "0.5",
            "--template",
            "pytorch",
            "--ssh-key",
            &public,
            "--yes",
            "--json",
        ])
        .await
        .stdout,
    );
    let lease = rented["lease_id"].as_str().unwrap().to_owned();
    let host_peer = rented["host_peer"].as_str().unwrap_or_default();
    assert!(host_peers.iter().any(|p| p == host_peer), "{rented}");
    let (port, user, addr) = parse_ssh_line(rented["ssh"].as_str().unwrap_or_default());
    assert_eq!(
        (user.as_str(), addr.as_str()),
        ("root", "127.0.0.1"),
        "{rented}"
    );
    let out = openssh::run(ssh(
        &key,
        port,
        "root",
        "echo ok; echo \"$GPUFLOW_LEASE_ID\"",
    ))
    .await;
    assert!(
        out.status.success(),
        "ssh into the lease failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("ok\n{lease}\n")
    );
    eprintln!(
        "compose: rent → command over SSH in {} ms",
        t.elapsed().as_millis()
    );
    // The lease's container and network, on the engine, as the compose host's.
    let lease_label = format!("gpuflow.lease={lease}");
    let container = devnet.docker_ok(&["ps", "-q", "--filter", &format!("label={lease_label}")]);
    assert!(!container.is_empty(), "no container for lease {lease}");
    assert_eq!(
        devnet.docker_ok(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"gpuflow.host\"}}",
            &container
        ]),
        host_peer
    );
    let network = devnet.docker_ok(&[
        "network",
        "ls",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label={lease_label}"),
    ]);
    let bridge = format!("br-{}", &network[..network.len().min(12)]);
    // The containerized node fenced the lease's bridge in this machine's iptables (checked
    // where this test may read them).
    let fence = || {
        let out = Command::new("iptables")
            .args(["-w", "-S", "GPUFLOW-INPUT"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).contains(&format!("gpuflow {bridge}")))
    };
    if let Some(fenced) = fence() {
        assert!(fenced, "no GPUFLOW-INPUT rule for {bridge}");
    }

    // Stop: the host closes the lease and removes its container, network and rules.
    let stopped = json(&cli(&["stop", &lease, "--json"]).await.stdout);
    assert_eq!(
        stopped["lease_id"].as_str(),
        Some(lease.as_str()),
        "{stopped}"
    );
    cli(&["wait", &lease, "--until", "closed", "--timeout", "30"]).await;
    let deadline = Instant::now() + GONE_TIMEOUT;
    while !devnet.labelled(&lease_label, false).is_empty() {
        assert!(
            Instant::now() < deadline,
            "lease {lease} left {:?} after stop",
            devnet.labelled(&lease_label, false)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_ne!(
        fence(),
        Some(true),
        "the rules for {bridge} stayed after stop"
    );

    // 4. Down: nothing of the project, nor of its hosts' leases, is left.
    let t = Instant::now();
    devnet.down().must();
    eprintln!("compose: down -v in {} ms", t.elapsed().as_millis());
    let left = devnet.labelled(&format!("com.docker.compose.project={project}"), true);
    assert!(left.is_empty(), "down -v left {left:?}");
    for peer in &host_peers {
        let left = devnet.labelled(&format!("gpuflow.host={peer}"), false);
        assert!(left.is_empty(), "host {peer} left {left:?}");
    }
    eprintln!(
        "compose: whole test in {} ms",
        started.elapsed().as_millis()
    );
}
