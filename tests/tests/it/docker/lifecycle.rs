//! Leases whose workload cannot come up, whose image is pulled slowly, whose node is
//! killed, whose engine goes away.

use super::*;

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
