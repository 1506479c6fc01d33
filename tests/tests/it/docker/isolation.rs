//! What a lease cannot reach from inside its container, probed from inside real containers.

use super::*;

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
