//! The renter's journeys into a container: SSH, commands, `scp`, `rsync`, `ssh -L`, logs,
//! on an image without sshd and on one without a C library.

use super::*;

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
