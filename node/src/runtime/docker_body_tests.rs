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

fn options(disk_quota: bool) -> BodyOptions {
    BodyOptions {
        host_peer: "12D3KooWHostPeer".into(),
        network: network_name(lease()),
        tools_dir: Some("/var/lib/gpuflow/docker/ssh-tools".into()),
        disk_quota,
        simulated_gpus: false,
    }
}

#[test]
fn ssh_port_comes_first_and_is_not_listed_twice() {
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
    let body = create_body(lease(), &spec(), &options(true), &ports).unwrap();
    let lease_hex = format!("0x{}", "5a".repeat(32));
    let expected = ContainerCreateBody {
        image: Some("pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime".into()),
        // A command runs through the image's own entrypoint.
        entrypoint: None,
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
            ("gpuflow.ssh_port".into(), "40022".into()),
        ])),
        // Port 22 is the node's SSH gate, not the container's.
        exposed_ports: Some(vec!["8888/tcp".into()]),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                "8888/tcp".into(),
                Some(vec![PortBinding {
                    host_ip: Some("0.0.0.0".into()),
                    host_port: Some("48888".into()),
                }]),
            )])),
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
            memory_swap: Some(32 * 1024 * 1024 * 1024),
            pids_limit: Some(4096),
            storage_opt: Some(HashMap::from([("size".into(), (100u64 << 30).to_string())])),
            privileged: Some(false),
            cap_drop: Some(vec![
                "NET_RAW".into(),
                "MKNOD".into(),
                "AUDIT_WRITE".into(),
                "SETFCAP".into(),
            ]),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            network_mode: Some(format!("gpuflow-{}", "5a".repeat(32))),
            mounts: Some(vec![Mount {
                target: Some("/.gpuflow".into()),
                source: Some("/var/lib/gpuflow/docker/ssh-tools".into()),
                typ: Some(MountType::BIND),
                read_only: Some(true),
                ..Default::default()
            }]),
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
        json["HostConfig"]["PortBindings"]["8888/tcp"][0]["HostPort"],
        "48888"
    );
    assert_eq!(json["HostConfig"]["Mounts"][0]["ReadOnly"], true);
}

#[test]
fn simulated_gpus_request_no_device_and_are_named_in_the_environment() {
    let opts = BodyOptions {
        simulated_gpus: true,
        ..options(false)
    };
    let body = create_body(lease(), &spec(), &opts, &[]).unwrap();
    assert_eq!(body.host_config.unwrap().device_requests, None);
    assert!(
        body.env.unwrap().contains(
            &"GPUFLOW_SIMULATED_GPUS=1,GPU-8a1b2c3d-0000-1111-2222-333344445555".to_owned()
        )
    );
}

#[test]
fn no_command_keeps_the_container_up_and_no_key_means_no_gate() {
    let minimal = LeaseSpec {
        image: Some("ubuntu:24.04".into()),
        ..Default::default()
    };
    let body = create_body(lease(), &minimal, &options(false), &[]).unwrap();
    assert_eq!(
        body.entrypoint,
        Some(vec!["/bin/sh".into(), "-c".into(), KEEP_ALIVE.into()])
    );
    assert_eq!(body.cmd, None);
    let hc = body.host_config.unwrap();
    assert_eq!(hc.device_requests, None);
    assert_eq!(hc.nano_cpus, None);
    assert_eq!(hc.memory, None);
    assert_eq!(hc.storage_opt, None);
    // Isolation does not depend on what the renter asked for.
    assert_eq!(hc.pids_limit, Some(PIDS_LIMIT));
    assert_eq!(hc.privileged, Some(false));
    assert!(!body.labels.unwrap().contains_key(SSH_PORT_LABEL));
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
    let body = create_body(lease(), &spec(), &options(false), &[]).unwrap();
    assert_eq!(body.host_config.unwrap().storage_opt, None);
}

#[test]
fn missing_image_and_bad_specs_are_refused() {
    let no_image = LeaseSpec {
        image: None,
        ..spec()
    };
    let err = create_body(lease(), &no_image, &options(false), &[]).unwrap_err();
    assert!(err.to_string().contains("needs an image"), "{err}");
    let huge = LeaseSpec {
        memory_bytes: Some(u64::MAX),
        ..spec()
    };
    let err = create_body(lease(), &huge, &options(false), &[]).unwrap_err();
    assert!(err.to_string().contains("memory"), "{err}");
}

#[test]
fn container_and_network_names_carry_the_lease() {
    assert_eq!(
        container_name(lease()),
        format!("gpuflow-{}", "5a".repeat(32))
    );
    assert_eq!(network_name(lease()), container_name(lease()));
}
