//! The Docker runtime against a real engine (the one `DOCKER_HOST` names: `make test` starts a
//! private one with `scripts/with-docker.sh`, and builds the test images it names in
//! `GPUFLOW_TEST_IMAGE_*`): bad workloads fail before billing with errors that say why, and
//! leave nothing behind; the quote's limits reach the container's cgroup.

use std::process::Command;
use std::time::Duration;

use alloy::primitives::B256;
use gpuflow_node::lease::spec::LeaseSpec;
use gpuflow_node::runtime::docker::{DockerConfig, DockerRuntime, container_name};
use gpuflow_node::runtime::{Runtime, RuntimeError};

fn docker_host() -> String {
    std::env::var("DOCKER_HOST").expect(
        "DOCKER_HOST is not set: run through `make test` or `scripts/with-docker.sh cargo test`",
    )
}

fn image(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run through `make test`"))
}

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .arg("-H")
        .arg(docker_host())
        .args(args)
        .output()
        .expect("the docker CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

async fn runtime(dir: &std::path::Path) -> DockerRuntime {
    let peer = format!("test-{}", std::process::id());
    DockerRuntime::connect(DockerConfig {
        socket: docker_host(),
        simulated_gpus: true,
        state_dir: dir.to_owned(),
        stop_grace: Duration::from_secs(2),
        ..DockerConfig::new(peer)
    })
    .await
    .expect("connecting to the engine")
}

fn lease(n: u8) -> B256 {
    let mut b = [n; 32];
    b[..4].copy_from_slice(&std::process::id().to_be_bytes());
    B256::from(b)
}

fn gone(lease: B256) -> bool {
    !docker(&["inspect", &container_name(lease)]).0
}

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@x";

#[tokio::test]
async fn a_command_that_exits_at_once_is_an_error_with_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path()).await;
    let id = lease(1);
    let spec = LeaseSpec {
        image: Some(image("GPUFLOW_TEST_IMAGE_BUSYBOX")),
        command: vec![
            "sh".into(),
            "-c".into(),
            "echo no-such-model; exit 3".into(),
        ],
        ..LeaseSpec::default()
    };
    let err = rt.launch(id, &spec).await.unwrap_err();
    assert!(matches!(err, RuntimeError::ExitedAtOnce { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("exit code 3"), "{msg}");
    assert!(msg.contains("no-such-model"), "{msg}");
    assert!(gone(id), "the failed container was left behind");
}

#[tokio::test]
async fn ssh_into_an_image_without_a_shell_is_refused_before_billing() {
    let dir = tempfile::tempdir().unwrap();
    // An image holding only a static busybox under another name: no /bin/sh.
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy("/bin/busybox", root.join("busybox")).expect("busybox-static");
    let tag = format!("gpuflow-test/no-shell:{}", std::process::id());
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    let mut import = Command::new("docker")
        .arg("-H")
        .arg(docker_host())
        .args(["import", "-", &tag])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(import.stdin.as_mut().unwrap(), &tar.stdout).unwrap();
    drop(import.stdin.take());
    assert!(import.wait().unwrap().success());

    let rt = runtime(&dir.path().join("state")).await;
    let id = lease(2);
    let spec = LeaseSpec {
        image: Some(tag.clone()),
        command: vec!["/busybox".into(), "sleep".into(), "600".into()],
        ssh_public_key: Some(KEY.into()),
        ..LeaseSpec::default()
    };
    let err = rt.launch(id, &spec).await.unwrap_err();
    assert!(matches!(err, RuntimeError::NoShell { .. }), "{err}");
    assert!(err.to_string().contains("has no /bin/sh"), "{err}");
    assert!(gone(id));
    docker(&["rmi", &tag]);
}

#[tokio::test]
async fn a_missing_image_names_itself() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path()).await;
    let spec = LeaseSpec {
        image: Some("gpuflow-test/absent:1".into()),
        ..LeaseSpec::default()
    };
    let err = rt.launch(lease(3), &spec).await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::ImageUnavailable { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("gpuflow-test/absent:1"), "{err}");
}

#[tokio::test]
async fn the_quotes_limits_reach_the_containers_cgroup() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path()).await;
    let id = lease(4);
    let spec = LeaseSpec {
        image: Some(image("GPUFLOW_TEST_IMAGE_BUSYBOX")),
        cpu_cores: Some(1),
        memory_bytes: Some(64 << 20),
        ..LeaseSpec::default()
    };
    let handle = rt.launch(id, &spec).await.unwrap();
    let read = |path_v2: &str, path_v1: &str| {
        let script = format!("cat {path_v2} 2>/dev/null || cat {path_v1}");
        docker(&["exec", &handle.id, "sh", "-c", &script]).1
    };
    let memory = read(
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    );
    assert_eq!(memory, (64u64 << 20).to_string());
    let cpu = read(
        "/sys/fs/cgroup/cpu.max",
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
    );
    // v2: "100000 100000"; v1: the quota over the default 100 ms period.
    assert!(cpu == "100000 100000" || cpu == "100000", "{cpu}");
    let pids = read("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max");
    assert_eq!(pids, "4096");
    rt.stop(&handle).await.unwrap();
    assert!(gone(id));
    let network = format!("gpuflow-{id:x}");
    assert!(!docker(&["network", "inspect", &network]).0, "network left");
}
