//! The container request for a lease, as a pure function ([`create_body`]) so it is tested
//! exactly without a Docker engine: GPU device request, limits, isolation, labels, environment,
//! published ports and the SSH tools mount.

use std::collections::HashMap;

use alloy::primitives::B256;
use bollard::models::{
    ContainerCreateBody, DeviceRequest, HostConfig, Mount, MountType, PortBinding,
};

use super::ssh_tools::MOUNT_POINT;
use super::{PortMapping, lease_label};
use crate::lease::spec::{InvalidSpec, LeaseSpec};

/// Label naming the lease a container belongs to (`0x` + 64 hex digits).
pub const LEASE_LABEL: &str = "gpuflow.lease";
/// Label naming the host node (peer id) that manages the container.
pub const HOST_LABEL: &str = "gpuflow.host";
/// Label holding the host port the node's SSH gate listens on for the lease, so a restarted
/// node serves SSH on the same port again.
pub const SSH_PORT_LABEL: &str = "gpuflow.ssh_port";
/// The port a lease's SSH mapping names on the workload side (the gate stands for it).
pub const SSH_PORT: u16 = 22;
/// Processes one lease's container may hold: a fork bomb must not take the host down.
pub const PIDS_LIMIT: i64 = 4096;
/// Capabilities dropped from Docker's default set: raw sockets (ARP/ICMP spoofing on the
/// host's LAN), device nodes, audit log writes and file capabilities are not needed by
/// training jobs or notebooks; `apt-get`, `pip` and `chown` keep working.
pub const CAP_DROP: [&str; 4] = ["NET_RAW", "MKNOD", "AUDIT_WRITE", "SETFCAP"];
/// What runs when a lease gives no command: keeps the container (and so SSH) up for the whole
/// lease with any `/bin/sh`, and ends at once on the stop signal.
pub const KEEP_ALIVE: &str = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done";

/// What the node decides about a lease's container beyond the lease itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyOptions {
    /// This node's peer id, for [`HOST_LABEL`].
    pub host_peer: String,
    /// The lease's own network.
    pub network: String,
    /// The host directory mounted read-only at [`MOUNT_POINT`], when there is one.
    pub tools_dir: Option<String>,
    /// Limit the writable layer to the lease's disk size (`storage_opt size`); only some
    /// storage drivers support it.
    pub disk_quota: bool,
    /// The host's GPUs are simulated: no device request (an engine without the NVIDIA runtime
    /// refuses one), the ids in `GPUFLOW_SIMULATED_GPUS` instead.
    pub simulated_gpus: bool,
}

/// The container name for `lease`.
pub fn container_name(lease: B256) -> String {
    format!("gpuflow-{lease:x}")
}

/// The network name for `lease`.
pub fn network_name(lease: B256) -> String {
    format!("gpuflow-{lease:x}")
}

/// The ports a lease's workload exposes, SSH first when a key was given.
pub fn container_ports(spec: &LeaseSpec) -> Vec<u16> {
    let mut ports = Vec::with_capacity(spec.ports.len() + 1);
    if spec.ssh_public_key.is_some() {
        ports.push(SSH_PORT);
    }
    for &p in &spec.ports {
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    ports
}

/// The container request for `lease`. `ports` maps each of [`container_ports`] to its host
/// port; the SSH mapping is served by the node's gate, not published by the engine.
pub fn create_body(
    lease: B256,
    spec: &LeaseSpec,
    options: &BodyOptions,
    ports: &[PortMapping],
) -> Result<ContainerCreateBody, InvalidSpec> {
    spec.validate()?;
    let image = spec
        .image
        .clone()
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| InvalidSpec("the docker runtime needs an image".into()))?;
    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.push(format!("GPUFLOW_LEASE_ID={}", lease_label(lease)));
    let published: Vec<String> = ports
        .iter()
        .map(|p| format!("{}:{}", p.workload, p.host))
        .collect();
    env.push(format!("GPUFLOW_PORTS={}", published.join(",")));
    if let Some(key) = &spec.ssh_public_key {
        // Public, and read back by a restarted node to serve the gate again.
        env.push(format!("PUBLIC_KEY={key}"));
    }
    if options.simulated_gpus && !spec.gpus.is_empty() {
        env.push(format!("GPUFLOW_SIMULATED_GPUS={}", spec.gpus.join(",")));
    }
    let ssh = spec
        .ssh_public_key
        .as_ref()
        .and_then(|_| ports.iter().find(|p| p.workload == SSH_PORT));
    let engine_ports: Vec<&PortMapping> = ports.iter().filter(|p| Some(*p) != ssh).collect();
    let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = engine_ports
        .iter()
        .map(|p| {
            let binding = PortBinding {
                host_ip: Some("0.0.0.0".into()),
                host_port: Some(p.host.to_string()),
            };
            (format!("{}/tcp", p.workload), Some(vec![binding]))
        })
        .collect();
    let device_requests = (!spec.gpus.is_empty() && !options.simulated_gpus).then(|| {
        vec![DeviceRequest {
            driver: Some("nvidia".into()),
            // Exactly these GPUs; `count` would let the driver pick any.
            device_ids: Some(spec.gpus.clone()),
            capabilities: Some(vec![vec!["gpu".into()]]),
            ..Default::default()
        }]
    });
    let too_big = |what: &str| InvalidSpec(format!("{what} limit is too large"));
    let nano_cpus = spec
        .cpu_cores
        .map(|c| {
            i64::from(c)
                .checked_mul(1_000_000_000)
                .ok_or_else(|| too_big("CPU"))
        })
        .transpose()?;
    let memory = spec
        .memory_bytes
        .map(|m| i64::try_from(m).map_err(|_| too_big("memory")))
        .transpose()?;
    let storage_opt = spec
        .disk_bytes
        .filter(|_| options.disk_quota)
        .map(|d| HashMap::from([("size".to_owned(), d.to_string())]));
    // No command: keep the container up for SSH, whatever the image's entrypoint does. A
    // command runs as `docker run IMAGE COMMAND` would, through the image's entrypoint.
    let (entrypoint, cmd) = if spec.command.is_empty() {
        (
            Some(vec!["/bin/sh".into(), "-c".into(), KEEP_ALIVE.into()]),
            None,
        )
    } else {
        (None, Some(spec.command.clone()))
    };
    let mut labels = HashMap::from([
        (LEASE_LABEL.to_owned(), lease_label(lease)),
        (HOST_LABEL.to_owned(), options.host_peer.clone()),
    ]);
    if let Some(ssh) = ssh {
        labels.insert(SSH_PORT_LABEL.to_owned(), ssh.host.to_string());
    }
    let mounts = options.tools_dir.as_ref().map(|dir| {
        vec![Mount {
            target: Some(MOUNT_POINT.into()),
            source: Some(dir.clone()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        }]
    });
    Ok(ContainerCreateBody {
        image: Some(image),
        entrypoint,
        cmd,
        env: Some(env),
        labels: Some(labels),
        exposed_ports: Some(
            engine_ports
                .iter()
                .map(|p| format!("{}/tcp", p.workload))
                .collect(),
        ),
        host_config: Some(HostConfig {
            port_bindings: Some(port_bindings),
            device_requests,
            nano_cpus,
            memory,
            // No swap beyond the memory limit: the quote sold RAM, not the host's disk.
            memory_swap: memory,
            pids_limit: Some(PIDS_LIMIT),
            storage_opt,
            privileged: Some(false),
            cap_drop: Some(CAP_DROP.iter().map(|c| (*c).to_owned()).collect()),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            network_mode: Some(options.network.clone()),
            mounts,
            // Reaps zombies of workloads whose command is not an init.
            init: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
#[path = "docker_body_tests.rs"]
mod tests;
