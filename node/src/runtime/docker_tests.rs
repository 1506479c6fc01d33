use super::*;

fn lease() -> B256 {
    B256::repeat_byte(0x5a)
}

fn spec() -> LeaseSpec {
    LeaseSpec {
        gpus: vec![
            "1".into(),
            "GPU-8a1b2c3d-0000-1111-2222-333344445555".into(),
        ],
        image: Some("pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime".into()),
        command: vec!["python".into(), "train.py".into()],
        env: [("WANDB_MODE".into(), "offline".into())].into(),
        ssh_public_key: Some("ssh-ed25519 AAAAC3Nza renter@laptop".into()),
        ports: vec![8888, 22],
        cpu_cores: Some(8),
        memory_bytes: Some(32 << 30),
        disk_bytes: Some(100 << 30),
    }
}

fn config(disk_quota: bool) -> DockerConfig {
    DockerConfig {
        disk_quota,
        ..DockerConfig::new("12D3KooWHostPeer")
    }
}

#[test]
fn ssh_port_comes_first_and_is_not_published_twice() {
    assert_eq!(container_ports(&spec()), vec![22, 8888]);
    let no_key = LeaseSpec {
        ssh_public_key: None,
        ports: vec![8888],
        ..spec()
    };
    assert_eq!(container_ports(&no_key), vec![8888]);
}

#[test]
fn create_body_is_exactly_the_lease() {
    let ports = [
        PortMapping {
            workload: 22,
            host: 40022,
        },
        PortMapping {
            workload: 8888,
            host: 48888,
        },
    ];
    let body = create_body(lease(), &spec(), &config(true), &ports).unwrap();
    let lease_hex = format!("0x{}", "5a".repeat(32));
    let expected = ContainerCreateBody {
        image: Some("pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime".into()),
        entrypoint: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            ONSTART.into(),
            "gpuflow-onstart".into(),
        ]),
        cmd: Some(vec!["python".into(), "train.py".into()]),
        env: Some(vec![
            "WANDB_MODE=offline".into(),
            format!("GPUFLOW_LEASE_ID={lease_hex}"),
            "GPUFLOW_PORTS=22:40022,8888:48888".into(),
            "PUBLIC_KEY=ssh-ed25519 AAAAC3Nza renter@laptop".into(),
        ]),
        labels: Some(HashMap::from([
            ("gpuflow.lease".into(), lease_hex),
            ("gpuflow.host".into(), "12D3KooWHostPeer".into()),
        ])),
        exposed_ports: Some(vec!["22/tcp".into(), "8888/tcp".into()]),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([
                (
                    "22/tcp".into(),
                    Some(vec![PortBinding {
                        host_ip: Some("0.0.0.0".into()),
                        host_port: Some("40022".into()),
                    }]),
                ),
                (
                    "8888/tcp".into(),
                    Some(vec![PortBinding {
                        host_ip: Some("0.0.0.0".into()),
                        host_port: Some("48888".into()),
                    }]),
                ),
            ])),
            device_requests: Some(vec![DeviceRequest {
                driver: Some("nvidia".into()),
                count: None,
                device_ids: Some(vec![
                    "1".into(),
                    "GPU-8a1b2c3d-0000-1111-2222-333344445555".into(),
                ]),
                capabilities: Some(vec![vec!["gpu".into()]]),
                options: None,
            }]),
            nano_cpus: Some(8_000_000_000),
            memory: Some(32 * 1024 * 1024 * 1024),
            storage_opt: Some(HashMap::from([("size".into(), (100u64 << 30).to_string())])),
            init: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(body, expected);
    // The engine sees the JSON: check the names it expects are there.
    let json = serde_json::to_value(&body).unwrap();
    assert_eq!(
        json["HostConfig"]["DeviceRequests"][0]["Capabilities"],
        serde_json::json!([["gpu"]])
    );
    assert_eq!(
        json["HostConfig"]["PortBindings"]["22/tcp"][0]["HostPort"],
        "40022"
    );
}

#[test]
fn no_gpus_no_limits_no_key_means_none_requested() {
    let minimal = LeaseSpec {
        image: Some("ubuntu:24.04".into()),
        ..Default::default()
    };
    let body = create_body(lease(), &minimal, &config(false), &[]).unwrap();
    let hc = body.host_config.unwrap();
    assert_eq!(hc.device_requests, None);
    assert_eq!(hc.nano_cpus, None);
    assert_eq!(hc.memory, None);
    assert_eq!(hc.storage_opt, None);
    assert_eq!(body.cmd, Some(vec!["sleep".into(), "infinity".into()]));
    assert!(
        !body
            .env
            .unwrap()
            .iter()
            .any(|e| e.starts_with("PUBLIC_KEY="))
    );
}

#[test]
fn disk_limit_needs_the_quota_switch() {
    let body = create_body(lease(), &spec(), &config(false), &[]).unwrap();
    assert_eq!(body.host_config.unwrap().storage_opt, None);
}

#[test]
fn missing_image_and_bad_specs_are_refused() {
    let no_image = LeaseSpec {
        image: None,
        ..spec()
    };
    let err = create_body(lease(), &no_image, &config(false), &[]).unwrap_err();
    assert!(err.to_string().contains("needs an image"), "{err}");
    let huge = LeaseSpec {
        memory_bytes: Some(u64::MAX),
        ..spec()
    };
    let err = create_body(lease(), &huge, &config(false), &[]).unwrap_err();
    assert!(err.to_string().contains("memory"), "{err}");
}

#[test]
fn container_name_carries_the_lease() {
    assert_eq!(
        container_name(lease()),
        format!("gpuflow-{}", "5a".repeat(32))
    );
}

#[tokio::test]
async fn an_absent_engine_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = format!("unix://{}/docker.sock", tmp.path().display());
    let err = DockerRuntime::connect(DockerConfig {
        socket: socket.clone(),
        ..config(false)
    })
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("cannot reach Docker at {socket}: ")),
        "{msg}"
    );
    assert!(
        msg.contains("; install Docker or use --runtime process"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_socket_nobody_answers_is_a_clear_error() {
    // A listening Unix socket that never speaks HTTP: the ping times out.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("docker.sock");
    let _listener = tokio::net::UnixListener::bind(&path).unwrap();
    let socket = format!("unix://{}", path.display());
    let err = DockerRuntime::connect(DockerConfig {
        socket: socket.clone(),
        connect_timeout: Duration::from_millis(200),
        ..config(false)
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, RuntimeError::DockerUnreachable { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("use --runtime process"));
}

#[test]
fn docker_host_names_the_socket() {
    assert_eq!(socket_from_docker_host(None).unwrap(), DEFAULT_SOCKET);
    assert_eq!(socket_from_docker_host(Some(" ")).unwrap(), DEFAULT_SOCKET);
    assert_eq!(
        socket_from_docker_host(Some("unix:///run/d.sock")).unwrap(),
        "unix:///run/d.sock"
    );
    assert_eq!(
        socket_from_docker_host(Some("/run/d.sock")).unwrap(),
        "unix:///run/d.sock"
    );
    let err = socket_from_docker_host(Some("tcp://10.0.0.1:2375")).unwrap_err();
    assert!(
        err.to_string()
            .contains("DOCKER_HOST=tcp://10.0.0.1:2375 is not supported"),
        "{err}"
    );
}
