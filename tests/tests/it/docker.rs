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

/// The renter's whole journey on an image without sshd: rent → SSH in → run commands →
/// `scp` both ways → a port forward to a server bound to the container's 127.0.0.1 → the
/// isolation and limits seen from inside → stop → container and network gone, deposit back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_image_without_sshd_ssh_scp_forward_isolation_stop() {
    let Setup {
        chain: _chain,
        dir,
        host,
        _guard,
        r,
        key,
        public,
    } = Setup::start().await;

    let started = Instant::now();
    let rented = rent(&r, &host, &test_image("GPUFLOW_TEST_IMAGE_DEBIAN"), &public).await;
    let lease_id = rented["lease_id"].as_str().unwrap().to_owned();
    let (port, user, addr) = parse_ssh_line(rented["ssh"].as_str().unwrap_or_default());
    assert_eq!(
        (user.as_str(), addr.as_str()),
        ("root", "127.0.0.1"),
        "{rented}"
    );

    // A command in the container: the lease's environment, and no sshd anywhere in it.
    let out = ssh_ok(
        &key,
        port,
        "echo \"$GPUFLOW_LEASE_ID\"; test -e /usr/sbin/sshd && echo has-sshd || echo no-sshd",
    )
    .await;
    eprintln!(
        "docker: rent → first SSH command done in {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(out, format!("{lease_id}\nno-sshd\n"));
    // stdin reaches the command and its exit code comes back.
    let mut piped = ssh(&key, port, "root", "read x; echo got-$x; exit 7");
    piped.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = piped.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello\n")
        .await
        .unwrap();
    let done = tokio::time::timeout(openssh::SSH_TIMEOUT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&done.stdout), "got-hello\n");
    assert_eq!(done.status.code(), Some(7));

    scp_both_ways(&key, port, dir.path()).await;

    // rsync over the gate: the image's own rsync runs through `exec`.
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(tree.join("sub/b.txt"), "beta\n").unwrap();
    let remote_shell = format!(
        "ssh -F /dev/null -i {} -p {port} -o BatchMode=yes -o StrictHostKeyChecking=no \
         -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        key.display()
    );
    let synced = openssh::run({
        let mut c = tokio::process::Command::new("rsync");
        c.args(["-a", "-e", &remote_shell])
            .arg(format!("{}/", tree.display()))
            .arg("root@127.0.0.1:/tmp/tree/")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    })
    .await;
    assert!(synced.status.success(), "rsync: {synced:?}");
    assert_eq!(
        ssh_ok(&key, port, "cat /tmp/tree/a.txt /tmp/tree/sub/b.txt").await,
        "alpha\nbeta\n"
    );

    // A server bound to the container's loopback is reachable through `ssh -L`.
    ssh_ok(
        &key,
        port,
        "cd /tmp && echo forwarded-ok > index.html && \
         (nohup python3 -m http.server --bind 127.0.0.1 9000 >/dev/null 2>&1 &) ; sleep 1",
    )
    .await;
    let page = get_through_forward(&key, port, "127.0.0.1:9000").await;
    assert!(page.contains("forwarded-ok"), "{page}");

    // Isolation and limits, from inside: no privilege gain, no raw sockets, the pids limit.
    let status = ssh_ok(
        &key,
        port,
        "grep -E '^(NoNewPrivs|CapEff)' /proc/self/status",
    )
    .await;
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:\t"))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .unwrap();
    const CAP_NET_RAW: u64 = 1 << 13;
    const CAP_MKNOD: u64 = 1 << 27;
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    assert_eq!(
        cap_eff & (CAP_NET_RAW | CAP_MKNOD | CAP_SYS_ADMIN),
        0,
        "{status}"
    );
    let pids = ssh_ok(
        &key,
        port,
        "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max",
    )
    .await;
    assert_eq!(pids.trim(), "4096");
    // The node's key material never reaches the container.
    let env = ssh_ok(&key, port, "cat /proc/1/environ | tr '\\0' '\\n'").await;
    assert!(!env.contains("GPUFLOW_HOST_PRIVATE_KEY"), "{env}");
    assert!(env.contains("GPUFLOW_SIMULATED_GPUS="), "{env}");
    // Only the renter's key gets in.
    let (stranger, _) = keygen(&dir.path().join("stranger"));
    let refused = openssh::run(ssh(&stranger, port, "root", "true")).await;
    assert_eq!(refused.status.code(), Some(255), "{refused:?}");

    let stopped = stop_clean(&r, &host, &lease_id).await;
    assert!(units(&stopped["refund"]) > U256::ZERO, "{stopped}");
    let after = openssh::run(ssh(&key, port, "root", "true")).await;
    assert_eq!(after.status.code(), Some(255), "SSH after stop: {after:?}");
}

/// An image with nothing but a static busybox (no C library, no sshd, no sftp-server): SSH,
/// a command and `scp` still work, through the node's gate and its tools mount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busybox_image_gets_ssh_and_scp() {
    let Setup {
        chain: _chain,
        dir,
        host,
        _guard,
        r,
        key,
        public,
    } = Setup::start().await;
    // The offer says what the renter gets: simulated GPUs, a disk size that is not a quota
    // (overlay2 on ext4 has none), and `search` can filter on both.
    let found = r
        .json(&["search", "simulated=true disk_limited=false", "--json"])
        .await;
    let offer = &found["offers"][0];
    assert_eq!(offer["gpu_source"], "simulated", "{found}");
    assert_eq!(offer["disk_limited"], false, "{found}");
    let none = r.json(&["search", "simulated=false", "--json"]).await;
    assert_eq!(none["offers"].as_array().map(Vec::len), Some(0), "{none}");
    let rented = rent(
        &r,
        &host,
        &test_image("GPUFLOW_TEST_IMAGE_BUSYBOX"),
        &public,
    )
    .await;
    let lease_id = rented["lease_id"].as_str().unwrap().to_owned();
    let (port, _, _) = parse_ssh_line(rented["ssh"].as_str().unwrap_or_default());
    let out = ssh_ok(
        &key,
        port,
        "ls /lib /usr/lib 2>/dev/null | grep -c libc; echo ok",
    )
    .await;
    assert_eq!(out, "0\nok\n", "the image has no C library");
    scp_both_ways(&key, port, dir.path()).await;

    // `gpuflow logs`: the container's output (written to PID 1's stdout), over the lease
    // protocol, in several chunks when it is long, and followed as it grows.
    ssh_ok(
        &key,
        port,
        "for i in $(seq 1 1000); do echo line-$i; done > /proc/1/fd/1",
    )
    .await;
    let last = r.run(&["logs", &lease_id, "--tail", "3"]).await;
    assert_eq!(last.code(), 0, "{}", last.stderr);
    assert_eq!(last.stdout, "line-998\nline-999\nline-1000\n");
    let all = r.run(&["logs", &lease_id, "--tail", "0"]).await;
    let want: String = (1..=1000).map(|i| format!("line-{i}\n")).collect();
    assert!(want.len() > 2 * 4096, "more than one chunk");
    assert_eq!(all.stdout, want, "{}", all.stderr);
    let mut follow = r.spawn(&["logs", &lease_id, "--tail", "1", "--follow"]);
    let mut out = tokio::io::BufReader::new(follow.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(15), out.read_line(&mut line))
        .await
        .expect("follow printed nothing")
        .unwrap();
    assert_eq!(line, "line-1000\n");
    ssh_ok(&key, port, "echo after-follow > /proc/1/fd/1").await;
    line.clear();
    tokio::time::timeout(Duration::from_secs(15), out.read_line(&mut line))
        .await
        .expect("follow did not print the new line")
        .unwrap();
    assert_eq!(line, "after-follow\n");
    let _ = follow.kill().await;
    let stopped = stop_clean(&r, &host, &lease_id).await;
    assert!(units(&stopped["refund"]) > U256::ZERO, "{stopped}");
}

/// An image that is neither local nor pullable: the host never sends `start`, declines the
/// lease, and the renter gets every unit back and a message naming the image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_means_no_start_and_a_full_refund() {
    let Setup {
        chain,
        dir: _dir,
        host,
        _guard,
        r,
        public,
        ..
    } = Setup::start().await;
    let funds = Setup::FUNDS;
    let public = public.display().to_string();
    let missing = "gpuflow-test/no-such-image:0";
    let out = r
        .run(&[
            "rent",
            &host.offer_id().to_string(),
            "--hours",
            "0.5",
            "--image",
            missing,
            "--ssh-key",
            &public,
            "--yes",
        ])
        .await;
    assert_ne!(out.code(), 0, "{}", out.stderr);
    assert!(out.stderr.contains(missing), "{}", out.stderr);
    let me = chain.signer(RENTER).address();
    let deadline = Instant::now() + Duration::from_secs(30);
    while chain.balance(me).await.unwrap() != funds {
        assert!(
            Instant::now() < deadline,
            "the deposit did not come back: {}\n{}",
            chain.balance(me).await.unwrap(),
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(chain.balance(host.wallet).await.unwrap(), U256::ZERO);
    assert!(
        !host.log().contains("lease started on chain"),
        "{}",
        host.log()
    );
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

/// One lease's container, seen from inside another's: each isolation property of the Docker
/// runtime checked from inside a real container. Two host nodes share one engine (each keeps
/// to its own containers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_cannot_reach_the_host_its_lan_or_another_lease() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (host_a, _guard_a) = guarded_host(&chain, &dir.path().join("a")).await;
    let opts_b = HostOpts {
        key: gpuflow_tests::chain::HOST + 1,
        ..HostOpts::docker(&docker_host())
    };
    let host_b = HostNode::start(&chain, &dir.path().join("b"), &opts_b)
        .await
        .unwrap();
    let _guard_b = EngineGuard(host_b.peer.to_string());
    mint(&chain, RENTER, U256::from(100_000_000u64)).await;
    // One renter, one CLI home per host (each home bootstraps from its host).
    let ra = CliRenter::new(&chain, &dir.path().join("ra"), RENTER, &[&host_a]);
    let rb = CliRenter::new(&chain, &dir.path().join("rb"), RENTER, &[&host_b]);
    let (key, public) = keygen(&dir.path().join("keys"));
    let debian = test_image("GPUFLOW_TEST_IMAGE_DEBIAN");
    let a = rent(&ra, &host_a, &debian, &public).await;
    let b = rent(&rb, &host_b, &debian, &public).await;
    let (port_a, _, _) = parse_ssh_line(a["ssh"].as_str().unwrap_or_default());
    let (port_b, _, _) = parse_ssh_line(b["ssh"].as_str().unwrap_or_default());
    let lease_a = a["lease_id"].as_str().unwrap().to_owned();
    let lease_b = b["lease_id"].as_str().unwrap().to_owned();

    // A server in lease B, on every address of its container.
    ssh_ok(
        &key,
        port_b,
        "cd /tmp && (nohup python3 -m http.server 9000 >/dev/null 2>&1 &); sleep 1",
    )
    .await;
    let ip_b = ssh_ok(&key, port_b, "hostname -i").await.trim().to_owned();
    // The probe works: B reaches its own server.
    assert!(reaches(&key, port_b, "127.0.0.1", 9000).await);
    assert!(reaches(&key, port_b, &ip_b, 9000).await);
    // Lease A cannot reach lease B.
    assert!(
        !reaches(&key, port_a, &ip_b, 9000).await,
        "lease A reached lease B's container"
    );

    // A port the host listens on for everyone (like a home host's SSH or printer) is open
    // from the host itself, and closed from inside the lease: through the lease's gateway and
    // through the host's own private address.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let host_port = listener.local_addr().unwrap().port();
    assert!(std::net::TcpStream::connect(("127.0.0.1", host_port)).is_ok());
    let gw = gateway(&lease_a);
    assert!(!gw.is_empty(), "no gateway for {lease_a}");
    assert!(
        !reaches(&key, port_a, &gw, host_port).await,
        "lease reached the host through its gateway {gw}"
    );
    // Lease B's SSH gate and the host node's API are host ports too.
    assert!(!reaches(&key, port_a, &gw, port_b).await);
    let api_port: u16 = host_a
        .api
        .as_deref()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap();
    assert!(!reaches(&key, port_a, &gw, api_port).await);
    assert!(!reaches(&key, port_a, "127.0.0.1", api_port).await);

    // Nothing is left of either lease once both stop, rules included.
    let bridges: Vec<String> = [&lease_a, &lease_b]
        .iter()
        .map(|l| {
            let name = format!("gpuflow-{}", l.trim_start_matches("0x"));
            let id = docker(&["network", "inspect", &name, "-f", "{{.Id}}"]);
            format!("br-{}", &id[..12])
        })
        .collect();
    let rules = || {
        let out = std::process::Command::new("iptables")
            .args(["-w", "-S"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for bridge in &bridges {
        assert!(
            rules().contains(&format!("gpuflow {bridge}")),
            "no fence for {bridge}"
        );
    }
    for (r, host, id) in [(&ra, &host_a, &lease_a), (&rb, &host_b, &lease_b)] {
        let stopped = stop_clean(r, host, id).await;
        assert!(units(&stopped["refund"]) > U256::ZERO, "{stopped}");
    }
    let left = rules();
    for bridge in &bridges {
        let ours = format!("gpuflow {bridge}");
        assert!(!left.contains(&ours), "rules left for {bridge}: {left}");
    }
}

/// `kill -9` of the node while a container runs: the container lives on, the restarted node
/// re-adopts it and serves SSH on the same port again, and the lease is billed from its one
/// `start` to its close, to the unit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_readopts_its_container_and_ssh_comes_back() {
    let Setup {
        chain,
        dir: _dir,
        mut host,
        _guard,
        r,
        key,
        public,
    } = Setup::start().await;
    let rented = rent(&r, &host, &test_image("GPUFLOW_TEST_IMAGE_DEBIAN"), &public).await;
    let lease_id = rented["lease_id"].as_str().unwrap().to_owned();
    let (port, _, _) = parse_ssh_line(rented["ssh"].as_str().unwrap_or_default());
    ssh_ok(&key, port, "echo before > /tmp/mark").await;
    let container = leftovers(&lease_id).0;
    assert!(!container.is_empty());

    host.kill9().await;
    host.restart(&chain).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = openssh::run(ssh(&key, port, "root", "cat /tmp/mark")).await;
        if out.status.success() || Instant::now() >= deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        out.status.success(),
        "no SSH after the restart: {out:?}\n{}",
        host.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "before\n");
    assert_eq!(leftovers(&lease_id).0, container, "the same container");

    // The close lands 30 s (chain time) after the latest block: billed to the second, from the
    // one `start` to the close, across the restart.
    chain
        .set_next_timestamp(chain.now().await.unwrap() + 30)
        .await
        .unwrap();
    let stopped = stop_clean(&r, &host, &lease_id).await;
    let (paid, fee, refund) = (
        units(&stopped["host_amount"]),
        units(&stopped["fee"]),
        units(&stopped["refund"]),
    );
    let secs = stopped["closed_at"].as_u64().unwrap() - stopped["started_at"].as_u64().unwrap();
    assert!(secs >= 30, "{stopped}");
    assert_eq!(
        paid + fee,
        units(&rented["price_per_second"]) * U256::from(secs),
        "{stopped} {rented}"
    );
    assert_eq!(
        paid + fee + refund,
        units(&rented["deposit"]),
        "{stopped} {rented}"
    );
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

/// The engine goes away mid-lease: the host ends the lease as its own fault (billing stops,
/// the renter keeps the rest), and once the engine answers again the node stops the container
/// it could not stop before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_gone_mid_lease_ends_it_and_the_container_is_stopped_when_it_is_back() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("engine.sock");
    let mut proxy = EngineProxy::start(&sock);
    let opts = HostOpts::docker(&format!("unix://{}", sock.display()));
    let host = HostNode::start(&chain, &dir.path().join("host"), &opts)
        .await
        .unwrap();
    let _guard = EngineGuard(host.peer.to_string());
    mint(&chain, RENTER, U256::from(100_000_000u64)).await;
    let r = CliRenter::new(&chain, &dir.path().join("renter"), RENTER, &[&host]);
    let (key, public) = keygen(&dir.path().join("keys"));
    let rented = rent(
        &r,
        &host,
        &test_image("GPUFLOW_TEST_IMAGE_BUSYBOX"),
        &public,
    )
    .await;
    let lease_id = rented["lease_id"].as_str().unwrap().to_owned();
    let (port, _, _) = parse_ssh_line(rented["ssh"].as_str().unwrap_or_default());
    ssh_ok(&key, port, "true").await;

    proxy.cut();
    // Closed on chain by the host within the grace period and a few ticks.
    let waited = r
        .run(&["wait", &lease_id, "--until", "closed", "--timeout", "90"])
        .await;
    assert_eq!(waited.code(), 0, "{}\n{}", waited.stderr, host.log());
    let lease = r.json(&["lease", &lease_id, "--json"]).await;
    assert_eq!(lease["state"], "closed", "{lease}");
    assert_eq!(
        lease["closed"]["closed_by"],
        host.wallet.to_string(),
        "closed by the host: {lease}"
    );
    // The container outlived the engine's absence: nobody could stop it.
    assert!(!leftovers(&lease_id).0.is_empty(), "{}", host.log());

    let _back = EngineProxy::start(&sock);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !leftovers(&lease_id).0.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the container was not stopped after the engine came back\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        host.log().contains("ending the lease as the host's fault"),
        "{}",
        host.log()
    );
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

/// `gpuflow-node doctor` passes on this test host (engine, tools, firewall, chain, gas) and
/// fails, naming the fix, when the engine is not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_engine_the_chain_and_gas_and_names_fixes() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (code, checks) = doctor(&chain, &dir.path().join("ok"), &docker_host()).await;
    assert_eq!(code, 0, "{checks}");
    for name in ["docker", "sftp", "port forward", "firewall", "chain", "gas"] {
        assert_eq!(status_of(&checks, name), "ok", "{name}: {checks}");
    }
    assert_eq!(status_of(&checks, "nvidia runtime"), "warn", "{checks}");

    let dead = format!("unix://{}/none.sock", dir.path().display());
    let (code, checks) = doctor(&chain, &dir.path().join("dead"), &dead).await;
    assert_eq!(code, 1, "{checks}");
    assert_eq!(status_of(&checks, "docker"), "fail", "{checks}");
    let docker_check = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "docker")
        .unwrap();
    assert!(
        docker_check["fix"]
            .as_str()
            .unwrap()
            .contains("apt-get install docker.io"),
        "{checks}"
    );
}

/// A host that offers real (not simulated) GPUs on an engine without the NVIDIA runtime never
/// joins the market: it stops at start-up naming the NVIDIA Container Toolkit, instead of
/// taking leases it cannot run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_gpus_on_an_engine_without_nvidia_refuse_to_start() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = HostOpts {
        args: vec!["--runtime".into(), "docker".into()],
        ..HostOpts::docker(&docker_host())
    };
    let err = HostNode::start(&chain, &dir.path().join("host"), &opts)
        .await
        .expect_err("the node started");
    let msg = format!("{err:#}");
    assert!(msg.contains("NVIDIA Container Toolkit"), "{msg}");
    assert!(msg.contains("simulated = true"), "{msg}");
}

/// A registry on 127.0.0.1 (`tests/tools/registry.py`) serving the busybox test image slowly:
/// the host pulls it for the lease, the renter sees the pull while it waits, and billing starts
/// only after it (the `start` block comes seconds after the `open` block).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_pull_is_shown_to_the_renter_and_not_billed() {
    use alloy::providers::Provider;
    use tokio::io::AsyncBufReadExt;

    let Setup {
        chain,
        dir,
        host,
        _guard,
        r,
        key,
        public,
    } = Setup::start().await;
    // The busybox image's root filesystem, as the registry's one layer.
    let rootfs = dir.path().join("rootfs.tar");
    let made = docker(&["create", &test_image("GPUFLOW_TEST_IMAGE_BUSYBOX")]);
    docker(&["export", "-o", &rootfs.display().to_string(), &made]);
    docker(&["rm", &made]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/registry.py");
    let tag = format!("p{}", std::process::id());
    let mut registry = tokio::process::Command::new("python3")
        .arg(script)
        .arg("--rootfs")
        .arg(&rootfs)
        .args(["--name", "gpuflow-test/pulled", "--tag", &tag])
        .args(["--bytes-per-sec", "250000"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut first = String::new();
    tokio::io::BufReader::new(registry.stdout.take().unwrap())
        .read_line(&mut first)
        .await
        .unwrap();
    let port = first.trim().strip_prefix("listening ").unwrap().to_owned();
    let image = format!("127.0.0.1:{port}/gpuflow-test/pulled:{tag}");

    let public = public.display().to_string();
    let out = r
        .run(&[
            "rent",
            &host.offer_id().to_string(),
            "--hours",
            "0.5",
            "--image",
            &image,
            "--ssh-key",
            &public,
            "--yes",
            "--json",
        ])
        .await;
    docker(&["rmi", &image]);
    assert_eq!(out.code(), 0, "{}\n{}", out.stderr, host.log());
    assert!(
        out.stderr.contains("host is pulling the image"),
        "no pull progress shown: {}",
        out.stderr
    );
    assert!(host.log().contains("image pull"), "{}", host.log());
    let rented: Value = serde_json::from_str(&out.stdout).unwrap();
    let lease_id = rented["lease_id"].as_str().unwrap().to_owned();
    let (ssh_port, _, _) = parse_ssh_line(rented["ssh"].as_str().unwrap_or_default());
    assert_eq!(ssh_ok(&key, ssh_port, "echo pulled").await, "pulled\n");

    // Billing from ready: the pull (about 4 s at 250 kB/s) lies between `open` and `start`.
    let open_tx: alloy::primitives::B256 = rented["open_tx"].as_str().unwrap().parse().unwrap();
    let p = chain.provider(0);
    let receipt = p.get_transaction_receipt(open_tx).await.unwrap().unwrap();
    let block = p
        .get_block_by_number(receipt.block_number.unwrap().into())
        .await
        .unwrap()
        .unwrap();
    let lease = r.json(&["lease", &lease_id, "--json"]).await;
    let started = lease["started_at"].as_u64().unwrap();
    assert!(
        started >= block.header.timestamp + 2,
        "opened at {}, started at {started}: the pull was billed\n{lease}",
        block.header.timestamp
    );
    stop_clean(&r, &host, &lease_id).await;
}
