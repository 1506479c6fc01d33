//! The host side: `gpuflow-node doctor`, and the start-up refusal without an NVIDIA runtime.

use super::*;

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
