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
         foo=$FOO key=$PUBLIC_KEY secret=${GPUFLOW_HOST_PRIVATE_KEY:-none}\"; echo oops >&2; exit 3",
    );
    spec.env.insert("FOO".into(), "bar baz".into());
    spec.gpus = vec!["0".into(), "GPU-1234".into()];
    spec.ports = vec![8080, 8081];
    spec.ssh_public_key = Some("ssh-ed25519 AAAA test".into());
    let h = rt.launch(lease, &spec).await.unwrap();
    assert_eq!(h.ports.len(), 2);
    assert_eq!(
        ended(&rt, &h).await,
        WorkloadStatus::Exited { code: Some(3) }
    );
    let log = std::fs::read_to_string(rt.log_path(lease)).unwrap();
    let expected = format!(
        "lease={} port={} ports={},{} gpus=0,GPU-1234 foo=bar baz key=ssh-ed25519 AAAA test \
         secret=none\noops\n",
        lease_label(lease),
        h.ports[0].host,
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
