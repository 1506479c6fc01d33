use std::time::Duration;

use alloy::primitives::B256;
use tokio::net::TcpStream;

use super::*;

const LIMIT: Duration = Duration::from_secs(20);

fn runtime(dir: &Path, grace: Duration) -> ProcessRuntime {
    ProcessRuntime::new(&ProcessConfig {
        data_dir: dir.to_owned(),
        stop_grace: grace,
    })
    .unwrap()
}

fn sh(script: &str) -> LeaseSpec {
    LeaseSpec {
        command: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

/// Connects to 127.0.0.1:`port`, retrying while the workload starts (bounded).
async fn reachable(port: u16) -> bool {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `status` until it is no longer `Running` (bounded).
async fn ended(rt: &ProcessRuntime, h: &WorkloadHandle) -> WorkloadStatus {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let s = rt.status(h).await.unwrap();
        if s != WorkloadStatus::Running || tokio::time::Instant::now() >= deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn http_server_is_reachable_stopped_and_readopted_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let lease = B256::repeat_byte(0xab);
    let spec = sh("exec python3 -m http.server \"$PORT\" --bind 127.0.0.1");

    let rt = runtime(tmp.path(), Duration::from_secs(5));
    let handle = rt.launch(lease, &spec).await.unwrap();
    let port = handle.ports[0].host;
    assert!(
        reachable(port).await,
        "http.server never listened on {port}"
    );
    assert_eq!(rt.status(&handle).await.unwrap(), WorkloadStatus::Running);
    // A second launch for the same lease is refused while the first runs.
    assert!(matches!(
        rt.launch(lease, &spec).await,
        Err(RuntimeError::AlreadyRunning { .. })
    ));

    // The node restarts: a fresh runtime over the same directory finds the workload.
    drop(rt);
    let rt = runtime(tmp.path(), Duration::from_secs(5));
    let managed = rt.list_managed().await.unwrap();
    assert_eq!(managed, vec![handle.clone()]);
    assert_eq!(
        rt.status(&managed[0]).await.unwrap(),
        WorkloadStatus::Running
    );
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_ok());

    rt.stop(&managed[0]).await.unwrap();
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "still listening after stop"
    );
    assert!(rt.list_managed().await.unwrap().is_empty());
    assert_eq!(rt.status(&handle).await.unwrap(), WorkloadStatus::Missing);
    // Stopping again is fine.
    rt.stop(&handle).await.unwrap();
}

#[tokio::test]
async fn workload_gets_the_lease_environment_and_logs_to_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime(tmp.path(), Duration::from_secs(1));
    let lease = B256::repeat_byte(0x01);
    let mut spec = sh(
        "echo \"lease=$GPUFLOW_LEASE_ID port=$PORT ports=$GPUFLOW_PORTS gpus=$CUDA_VISIBLE_DEVICES \
         foo=$FOO key=$PUBLIC_KEY secret=${GPUFLOW_HOST_PRIVATE_KEY:-none}\"; \
         echo \"p8080=$GPUFLOW_PORT_8080 p22=$GPUFLOW_PORT_22\"; echo oops >&2; exit 3",
    );
    spec.env.insert("FOO".into(), "bar baz".into());
    spec.gpus = vec!["0".into(), "GPU-1234".into()];
    spec.ports = vec![8080, 22];
    spec.ssh_public_key = Some("ssh-ed25519 AAAA test".into());
    let h = rt.launch(lease, &spec).await.unwrap();
    assert_eq!(h.ports.len(), 2);
    // Each spec port is paired with the host port the workload listens on.
    assert_eq!(
        h.ports.iter().map(|p| p.workload).collect::<Vec<_>>(),
        vec![8080, 22]
    );
    assert_ne!(h.ports[0].host, h.ports[1].host);
    assert_eq!(
        ended(&rt, &h).await,
        WorkloadStatus::Exited { code: Some(3) }
    );
    let log = std::fs::read_to_string(rt.log_path(lease)).unwrap();
    let expected = format!(
        "lease={} port={} ports={},{} gpus=0,GPU-1234 foo=bar baz key=ssh-ed25519 AAAA test \
         secret=none\np8080={} p22={}\noops\n",
        lease_label(lease),
        h.ports[0].host,
        h.ports[0].host,
        h.ports[1].host,
        h.ports[0].host,
        h.ports[1].host
    );
    assert_eq!(log, expected);
    // An ended workload is still listed until stopped, so the engine can see how it ended.
    assert_eq!(rt.list_managed().await.unwrap(), vec![h.clone()]);
    rt.stop(&h).await.unwrap();
    assert!(rt.list_managed().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_workload_ignoring_sigterm_is_killed_after_the_grace_period() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime(tmp.path(), Duration::from_millis(300));
    let lease = B256::repeat_byte(0x02);
    // Ignores SIGTERM and keeps a child (sleep) alive in its group.
    let spec = sh("trap '' TERM; echo ready; while :; do sleep 1; done");
    let h = rt.launch(lease, &spec).await.unwrap();
    let (pid, start) = parse_id(&h).unwrap();
    // Wait for the trap to be installed before stopping.
    let deadline = tokio::time::Instant::now() + LIMIT;
    while std::fs::read_to_string(rt.log_path(lease)).unwrap_or_default() != "ready\n" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "workload never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::timeout(LIMIT, rt.stop(&h))
        .await
        .unwrap()
        .unwrap();
    assert!(!alive(pid, start));
}

#[tokio::test]
async fn readoption_after_the_workload_ended_reports_exited_and_stop_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let lease = B256::repeat_byte(0x03);
    let rt = runtime(tmp.path(), Duration::from_secs(1));
    let h = rt.launch(lease, &sh("exit 0")).await.unwrap();
    assert_eq!(
        ended(&rt, &h).await,
        WorkloadStatus::Exited { code: Some(0) }
    );
    drop(rt);
    let rt = runtime(tmp.path(), Duration::from_secs(1));
    let managed = rt.list_managed().await.unwrap();
    assert_eq!(managed, vec![h.clone()]);
    // Not our child any more: the exit code is unknown.
    assert_eq!(
        rt.status(&h).await.unwrap(),
        WorkloadStatus::Exited { code: None }
    );
    rt.stop(&h).await.unwrap();
    assert_eq!(rt.status(&h).await.unwrap(), WorkloadStatus::Missing);
}

#[tokio::test]
async fn bad_specs_and_foreign_handles_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime(tmp.path(), Duration::from_secs(1));
    let lease = B256::repeat_byte(0x04);
    let err = rt.launch(lease, &LeaseSpec::default()).await.unwrap_err();
    assert!(err.to_string().contains("needs a command"), "{err}");
    let mut spec = sh("true");
    spec.env.insert("PORT".into(), "1".into());
    assert!(matches!(
        rt.launch(lease, &spec).await,
        Err(RuntimeError::InvalidSpec(_))
    ));
    let err = rt
        .launch(
            lease,
            &LeaseSpec {
                command: vec!["/nonexistent/program".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/program"), "{err}");
    let docker = WorkloadHandle {
        kind: RuntimeKind::Docker,
        lease,
        id: "abc".into(),
        ports: vec![],
    };
    assert!(matches!(
        rt.status(&docker).await,
        Err(RuntimeError::WrongRuntime { .. })
    ));
}

#[tokio::test]
async fn a_pid_file_pointing_at_an_unrelated_process_is_not_adopted() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime(tmp.path(), Duration::from_secs(1));
    let lease = B256::repeat_byte(0x05);
    // Our own test process: alive, but without the lease id in its environment.
    let me = std::process::id();
    let (_, start) = proc_stat(me).unwrap();
    let dir = rt.lease_dir(lease);
    std::fs::create_dir_all(&dir).unwrap();
    let fake = WorkloadHandle {
        kind: RuntimeKind::Process,
        lease,
        id: format!("{me}:{start}"),
        ports: vec![],
    };
    write_handle(&dir, &fake).unwrap();
    assert!(rt.list_managed().await.unwrap().is_empty());
    // A recycled pid (other start time) is not alive as far as the runtime is concerned.
    assert!(!alive(me, start + 1));
    assert!(alive(me, start));
}

#[tokio::test]
async fn stop_ends_processes_that_left_the_group() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime(tmp.path(), Duration::from_secs(2));
    let lease = B256::repeat_byte(0x06);
    // A child in a session of its own (as sshd gives each SSH session), and its own child.
    let spec = sh("python3 -c 'import os, subprocess, time; os.setsid(); \
         c = subprocess.Popen([\"sleep\", \"300\"]); print(os.getpid(), c.pid, flush=True); \
         time.sleep(300)' & exec sleep 300");
    let h = rt.launch(lease, &spec).await.unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    let pids: Vec<u32> = loop {
        let log = std::fs::read_to_string(rt.log_path(lease)).unwrap_or_default();
        if log.ends_with('\n') {
            break log.split_whitespace().map(|p| p.parse().unwrap()).collect();
        }
        assert!(tokio::time::Instant::now() < deadline, "no pids logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(pids.len(), 2);
    let (leader, _) = parse_id(&h).unwrap();
    let escaped: Vec<(u32, u64)> = pids
        .iter()
        .map(|&p| (p, read_stat(p).unwrap().start))
        .collect();
    assert!(
        escaped
            .iter()
            .all(|&(p, _)| read_stat(p).unwrap().pgrp != leader),
        "the test's processes should be outside the workload's group"
    );
    tokio::time::timeout(LIMIT, rt.stop(&h))
        .await
        .unwrap()
        .unwrap();
    for (p, start) in escaped {
        assert!(!alive(p, start), "process {p} outlived the lease");
    }
}

/// The renter key the stand-in tests install.
const STAND_IN_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl renter@test";

/// Launches the stand-in with HTTP on 8080 and SSH on 22; returns the handle, the HTTP and SSH
/// host ports (HTTP already answering) and whether this machine has an sshd.
async fn launch_stand_in(rt: &ProcessRuntime, lease: B256) -> (WorkloadHandle, u16, u16, bool) {
    let spec = LeaseSpec {
        command: crate::engine::default_command(),
        ports: vec![8080, 22],
        ssh_public_key: Some(STAND_IN_KEY.into()),
        ..Default::default()
    };
    let h = rt.launch(lease, &spec).await.unwrap();
    let (http, ssh) = (h.ports[0].host, h.ports[1].host);
    assert!(reachable(http).await, "no HTTP on {http}");
    let has_sshd = std::process::Command::new("sh")
        .args(["-c", "command -v sshd || test -x /usr/sbin/sshd"])
        .output()
        .unwrap()
        .status
        .success();
    (h, http, ssh, has_sshd)
}

#[tokio::test]
async fn the_stand_in_serves_http_and_ssh_on_the_published_ports_until_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime(tmp.path(), Duration::from_secs(5));
    let lease = B256::repeat_byte(0x07);
    let (h, http, ssh, has_sshd) = launch_stand_in(&rt, lease).await;
    let log = || std::fs::read_to_string(rt.log_path(lease)).unwrap_or_default();
    if has_sshd {
        assert!(reachable(ssh).await, "no sshd on {ssh}; log:\n{}", log());
        let mut banner = [0u8; 8];
        let mut conn = TcpStream::connect(("127.0.0.1", ssh)).await.unwrap();
        tokio::io::AsyncReadExt::read_exact(&mut conn, &mut banner)
            .await
            .unwrap();
        assert_eq!(&banner, b"SSH-2.0-", "log:\n{}", log());
        let ssh_dir = rt.lease_dir(lease).join("ssh");
        let keys = std::fs::read_to_string(ssh_dir.join("authorized_keys")).unwrap();
        assert_eq!(keys.trim_end(), STAND_IN_KEY);
        assert!(ssh_dir.join("ssh_host_ed25519_key").exists());
    } else {
        // No SSH, said in the log, and the lease still serves HTTP.
        let deadline = tokio::time::Instant::now() + LIMIT;
        while !log().contains("install openssh-server") {
            assert!(tokio::time::Instant::now() < deadline, "log:\n{}", log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    rt.stop(&h).await.unwrap();
    for port in [http, ssh] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).await.is_err(),
            "port {port} still open after stop"
        );
    }
}

#[test]
fn login_user_is_the_password_file_name_of_this_process() {
    let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                  # a comment\n\
                  gpu:x:1000:1000::/home/gpu:/bin/sh\n";
    assert_eq!(user_of(passwd, 0).as_deref(), Some("root"));
    assert_eq!(user_of(passwd, 1000).as_deref(), Some("gpu"));
    assert_eq!(user_of(passwd, 7), None);
    let id = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    let me = String::from_utf8(id.stdout).unwrap();
    assert_eq!(login_user().as_deref(), Some(me.trim()));
}

/// `GET path` over HTTP/1.0 on 127.0.0.1:`port`: the status code.
async fn http_status(port: u16, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok());
    code.unwrap_or_else(|| panic!("no HTTP status for {path}: {text:?}"))
}

/// The local addresses (`/proc/net/tcp` and `tcp6` hex, e.g. `0100007F`) of every listening
/// TCP socket on `port`.
fn listen_addresses(port: u16) -> Vec<String> {
    let port = format!("{port:04X}");
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl, local_address, rem_address, st (0A: LISTEN)
            if let (Some(local), Some("0A")) = (f.get(1), f.get(3).copied())
                && let Some((addr, p)) = local.split_once(':')
                && p == port
            {
                found.push(addr.to_owned());
            }
        }
    }
    found
}

#[tokio::test]
async fn the_stand_in_serves_none_of_the_lease_files_and_listens_on_loopback_only() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime(tmp.path(), Duration::from_secs(5));
    let lease = B256::repeat_byte(0x08);
    let (h, http, ssh, has_sshd) = launch_stand_in(&rt, lease).await;
    let log = || std::fs::read_to_string(rt.log_path(lease)).unwrap_or_default();
    if has_sshd {
        assert!(reachable(ssh).await, "no sshd on {ssh}; log:\n{}", log());
    }
    // The server answers, but none of the lease's files are there, wherever they are kept.
    assert_eq!(http_status(http, "/").await, 200);
    for path in [
        "/ssh_host_ed25519_key",
        "/authorized_keys",
        "/ssh/ssh_host_ed25519_key",
        "/ssh/authorized_keys",
        "/pid.json",
        "/workload.log",
        "/../workload.log",
        "/%2e%2e/pid.json",
    ] {
        assert_eq!(http_status(http, path).await, 404, "GET {path}");
    }
    // Both listen on the published address only: never 0.0.0.0 or [::].
    let ports: &[u16] = if has_sshd { &[http, ssh] } else { &[http] };
    for &port in ports {
        let addrs = listen_addresses(port);
        assert!(!addrs.is_empty(), "nothing listens on {port}");
        assert!(
            addrs.iter().all(|a| a == "0100007F"),
            "port {port} listens on {addrs:?}, not only 127.0.0.1; log:\n{}",
            log()
        );
    }
    rt.stop(&h).await.unwrap();
    // The host key is not left behind; the log is.
    let dir = rt.lease_dir(lease);
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, vec![LOG_FILE.to_owned()], "left in {}", dir.display());
}

/// Reads `pid` and its start time from the file `name` in the lease directory, once the
/// workload wrote it (bounded).
async fn pid_from(rt: &ProcessRuntime, lease: B256, name: &str) -> (u32, u64) {
    let path = rt.lease_dir(lease).join(name);
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(pid) = text.strip_suffix('\n').and_then(|p| p.parse().ok())
            && let Some(stat) = read_stat(pid)
        {
            return (pid, stat.start);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts `(pid, start)` has ended; kills it first if not, so a failing test leaves nothing.
fn assert_gone(pid: u32, start: u64, what: &str) {
    let survived = alive(pid, start);
    if survived {
        signal_one(pid, start, Signal::SIGKILL);
    }
    assert!(!survived, "{what} (pid {pid}) outlived the lease");
}

/// A double fork into a session of its own with an empty environment: `sleep` ends up with no
/// parent in the workload, no lease id and another group and session.
const DETACH: &str = "env -i setsid sh -c 'sleep 300 & echo $! > escaped.pid' &";

#[tokio::test]
async fn stop_ends_a_process_that_detached_and_dropped_the_lease_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime(tmp.path(), Duration::from_secs(2));
    let lease = B256::repeat_byte(0x09);
    let h = rt
        .launch(lease, &sh(&format!("{DETACH} exec sleep 300")))
        .await
        .unwrap();
    let (escaped, start) = pid_from(&rt, lease, "escaped.pid").await;
    let (leader, _) = parse_id(&h).unwrap();
    let stat = read_stat(escaped).unwrap();
    assert_ne!(stat.pgrp, leader, "outside the workload's group");
    assert_eq!(environ_names(escaped, lease), Some(false), "no lease id");
    tokio::time::timeout(LIMIT, rt.stop(&h))
        .await
        .unwrap()
        .unwrap();
    assert_gone(escaped, start, "the detached process");
}

#[tokio::test]
async fn stop_ends_what_a_workload_detached_before_its_first_process_exited() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime(tmp.path(), Duration::from_secs(2));
    let lease = B256::repeat_byte(0x0a);
    // The first process detaches a process, waits to be told, and exits.
    let h = rt
        .launch(
            lease,
            &sh(&format!(
                "{DETACH} while [ ! -e go ]; do sleep 0.05; done; exit 0"
            )),
        )
        .await
        .unwrap();
    let (escaped, start) = pid_from(&rt, lease, "escaped.pid").await;
    // The engine polls the status of a running workload.
    assert_eq!(rt.status(&h).await.unwrap(), WorkloadStatus::Running);
    std::fs::write(rt.lease_dir(lease).join("go"), "").unwrap();
    assert_eq!(
        ended(&rt, &h).await,
        WorkloadStatus::Exited { code: Some(0) }
    );
    assert!(alive(escaped, start), "the detached process still runs");
    tokio::time::timeout(LIMIT, rt.stop(&h))
        .await
        .unwrap()
        .unwrap();
    assert_gone(escaped, start, "the detached process");
}
