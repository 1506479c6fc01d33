//! The Docker runtime (bollard): one container per lease.
//!
//! [`create_body`] builds the whole container request as a pure function (GPU device request,
//! SSH key, ports, limits, labels, environment), so it is tested exactly without a Docker engine;
//! the rest of this file is thin calls to the engine.
//!
//! SSH works like RunPod and Vast.ai images: the key is passed as `PUBLIC_KEY`, and an onstart
//! wrapper (the container's entrypoint) appends it to `~/.ssh/authorized_keys`, starts `sshd` if
//! the image has one, then `exec`s the lease's command. Container port 22 is published on a free
//! host port. The wrapper replaces the image's entrypoint, so images whose own start script
//! matters must be given it as the command.

use std::collections::HashMap;
use std::time::Duration;

use alloy::primitives::B256;
use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, DeviceRequest, HostConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::{
    PortMapping, Runtime, RuntimeError, RuntimeKind, WorkloadHandle, WorkloadStatus, free_ports,
    lease_label,
};
use crate::lease::spec::{InvalidSpec, LeaseSpec};

/// Label naming the lease a container belongs to (`0x` + 64 hex digits).
pub const LEASE_LABEL: &str = "gpuflow.lease";
/// Label naming the host node (peer id) that manages the container.
pub const HOST_LABEL: &str = "gpuflow.host";
/// The container port SSH listens on.
pub const SSH_PORT: u16 = 22;
/// The default Docker engine socket.
pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// The container entrypoint: installs `$PUBLIC_KEY`, starts sshd if present, runs the command.
pub const ONSTART: &str = r#"if [ -n "$PUBLIC_KEY" ]; then
  d="${HOME:-/root}/.ssh"
  mkdir -p "$d" && chmod 700 "$d"
  printf '%s\n' "$PUBLIC_KEY" >> "$d/authorized_keys" && chmod 600 "$d/authorized_keys"
  if [ -x /usr/sbin/sshd ]; then
    mkdir -p /run/sshd
    ssh-keygen -A >/dev/null 2>&1
    /usr/sbin/sshd
  fi
fi
exec "$@""#;

/// Settings of the Docker runtime.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// The engine's socket, e.g. [`DEFAULT_SOCKET`].
    pub socket: String,
    /// This node's peer id, written to [`HOST_LABEL`]; only containers with it are adopted, so
    /// two nodes sharing one engine never touch each other's containers.
    pub host_peer: String,
    /// Seconds Docker waits after SIGTERM before SIGKILL on stop.
    pub stop_grace: Duration,
    /// Limit the writable layer to the lease's disk size (`storage_opt size`). Only some storage
    /// drivers support it (overlay2 on xfs with pquota, btrfs, zfs); the engine refuses the
    /// container elsewhere, so it is off by default.
    pub disk_quota: bool,
    /// How long to wait for the engine to answer a ping when connecting.
    pub connect_timeout: Duration,
}

impl DockerConfig {
    /// Defaults for `host_peer`: the standard socket, 10 s grace, no disk quota.
    pub fn new(host_peer: impl Into<String>) -> Self {
        Self {
            socket: DEFAULT_SOCKET.into(),
            host_peer: host_peer.into(),
            stop_grace: Duration::from_secs(10),
            disk_quota: false,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The engine socket named by `DOCKER_HOST` (its value passed in), as bollard and the docker
/// CLI read it: unset or empty means [`DEFAULT_SOCKET`]; `unix://PATH` and a bare absolute path
/// name a Unix socket. Anything else (`tcp://`, `ssh://`) is refused with a message saying so.
pub fn socket_from_docker_host(docker_host: Option<&str>) -> Result<String, RuntimeError> {
    match docker_host.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(DEFAULT_SOCKET.to_owned()),
        Some(v) if v.starts_with("unix://") => Ok(v.to_owned()),
        Some(v) if v.starts_with('/') => Ok(format!("unix://{v}")),
        Some(v) => Err(RuntimeError::DockerHostUnsupported(v.to_owned())),
    }
}

/// Runs leases as Docker containers. See the module docs.
#[derive(Debug)]
pub struct DockerRuntime {
    docker: Docker,
    config: DockerConfig,
}

/// The container name for `lease`.
pub fn container_name(lease: B256) -> String {
    format!("gpuflow-{lease:x}")
}

/// The container ports a lease publishes, SSH first when a key was given.
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

/// The container request for `lease`: pure, so it can be checked field by field.
///
/// `ports` maps each of [`container_ports`] to the host port it is published on.
pub fn create_body(
    lease: B256,
    spec: &LeaseSpec,
    config: &DockerConfig,
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
        env.push(format!("PUBLIC_KEY={key}"));
    }
    let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = ports
        .iter()
        .map(|p| {
            let binding = PortBinding {
                host_ip: Some("0.0.0.0".into()),
                host_port: Some(p.host.to_string()),
            };
            (format!("{}/tcp", p.workload), Some(vec![binding]))
        })
        .collect();
    let device_requests = (!spec.gpus.is_empty()).then(|| {
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
        .filter(|_| config.disk_quota)
        .map(|d| HashMap::from([("size".to_owned(), d.to_string())]));
    let command = if spec.command.is_empty() {
        vec!["sleep".to_owned(), "infinity".to_owned()]
    } else {
        spec.command.clone()
    };
    Ok(ContainerCreateBody {
        image: Some(image),
        entrypoint: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            ONSTART.into(),
            "gpuflow-onstart".into(),
        ]),
        cmd: Some(command),
        env: Some(env),
        labels: Some(HashMap::from([
            (LEASE_LABEL.to_owned(), lease_label(lease)),
            (HOST_LABEL.to_owned(), config.host_peer.clone()),
        ])),
        exposed_ports: Some(
            ports
                .iter()
                .map(|p| format!("{}/tcp", p.workload))
                .collect(),
        ),
        host_config: Some(HostConfig {
            port_bindings: Some(port_bindings),
            device_requests,
            nano_cpus,
            memory,
            storage_opt,
            // Reaps zombies of workloads whose command is not an init.
            init: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn is_status(e: &BollardError, codes: &[u16]) -> bool {
    matches!(e, BollardError::DockerResponseServerError { status_code, .. } if codes.contains(status_code))
}

fn docker_err(what: String) -> impl FnOnce(BollardError) -> RuntimeError {
    move |source| RuntimeError::Docker { what, source }
}

impl DockerRuntime {
    /// Connects to the engine at `config.socket` and checks it answers.
    pub async fn connect(config: DockerConfig) -> Result<Self, RuntimeError> {
        let unreachable = |source| RuntimeError::DockerUnreachable {
            socket: config.socket.clone(),
            source,
        };
        let timeout_s = config.connect_timeout.as_secs().max(1);
        let docker =
            Docker::connect_with_unix(&config.socket, timeout_s, bollard::API_DEFAULT_VERSION)
                .map_err(unreachable)?;
        match tokio::time::timeout(config.connect_timeout, docker.ping()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(unreachable(e)),
            Err(_) => return Err(unreachable(BollardError::RequestTimeoutError)),
        }
        Ok(Self { docker, config })
    }

    /// Pulls `image`, logging progress (one line per layer state change).
    async fn pull(&self, image: &str) -> Result<(), RuntimeError> {
        let options = CreateImageOptionsBuilder::new().from_image(image).build();
        let mut stream = self.docker.create_image(Some(options), None, None);
        let mut last: HashMap<String, String> = HashMap::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(docker_err(format!("pulling image {image}")))?;
            let (Some(id), Some(status)) = (info.id, info.status) else {
                continue;
            };
            // Downloading/Extracting repeat with byte counts; log each state once per layer.
            if last.get(&id) != Some(&status) {
                tracing::info!(target: "runtime", image, layer = %id, status = %status, "image pull");
                last.insert(id, status);
            }
        }
        Ok(())
    }

    /// Managed containers of this host, optionally only the one of `lease`.
    async fn managed(&self, lease: Option<B256>) -> Result<Vec<WorkloadHandle>, RuntimeError> {
        let mut labels = vec![format!("{HOST_LABEL}={}", self.config.host_peer)];
        labels.push(match lease {
            Some(l) => format!("{LEASE_LABEL}={}", lease_label(l)),
            None => LEASE_LABEL.to_owned(),
        });
        let filters = HashMap::from([("label", labels)]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(docker_err("listing containers".into()))?;
        let mut found = Vec::new();
        for c in list {
            let lease = c
                .labels
                .as_ref()
                .and_then(|l| l.get(LEASE_LABEL))
                .and_then(|l| l.parse::<B256>().ok());
            let (Some(lease), Some(id)) = (lease, c.id) else {
                continue;
            };
            let mut ports: Vec<PortMapping> = c
                .ports
                .unwrap_or_default()
                .iter()
                .filter_map(|p| {
                    Some(PortMapping {
                        workload: p.private_port,
                        host: p.public_port?,
                    })
                })
                .collect();
            // The engine lists each binding once per address family.
            ports.sort_by_key(|p| (p.workload != SSH_PORT, p.workload));
            ports.dedup();
            found.push(WorkloadHandle {
                kind: RuntimeKind::Docker,
                lease,
                id,
                ports,
            });
        }
        Ok(found)
    }
}

fn container_id(handle: &WorkloadHandle) -> Result<&str, RuntimeError> {
    if handle.kind != RuntimeKind::Docker {
        return Err(RuntimeError::WrongRuntime {
            kind: handle.kind,
            id: handle.id.clone(),
        });
    }
    Ok(&handle.id)
}

impl Runtime for DockerRuntime {
    async fn launch(&self, lease: B256, spec: &LeaseSpec) -> Result<WorkloadHandle, RuntimeError> {
        // Check the spec before pulling anything.
        create_body(lease, spec, &self.config, &[])?;
        if let Some(old) = self.managed(Some(lease)).await?.into_iter().next() {
            return Err(RuntimeError::AlreadyRunning { lease, id: old.id });
        }
        let image = spec.image.as_deref().unwrap_or_default();
        if let Err(e) = self.pull(image).await {
            // A registry outage should not stop a lease whose image is already here.
            if self.docker.inspect_image(image).await.is_err() {
                return Err(e);
            }
            tracing::warn!(target: "runtime", image, error = %e, "image pull failed; using the local copy");
        }
        let wanted = container_ports(spec);
        let host_ports = free_ports(wanted.len())?;
        let ports: Vec<PortMapping> = wanted
            .iter()
            .zip(host_ports)
            .map(|(&workload, host)| PortMapping { workload, host })
            .collect();
        let body = create_body(lease, spec, &self.config, &ports)?;
        let name = container_name(lease);
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(docker_err(format!("creating container {name}")))?;
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            // A created but unstartable container would block the next launch.
            let rm = RemoveContainerOptionsBuilder::new().force(true).build();
            let _ = self.docker.remove_container(&created.id, Some(rm)).await;
            return Err(docker_err(format!("starting container {name}"))(e));
        }
        tracing::info!(target: "runtime", lease = %lease, container = %created.id, ?ports, "container started");
        Ok(WorkloadHandle {
            kind: RuntimeKind::Docker,
            lease,
            id: created.id,
            ports,
        })
    }

    async fn status(&self, handle: &WorkloadHandle) -> Result<WorkloadStatus, RuntimeError> {
        let id = container_id(handle)?;
        let info = match self.docker.inspect_container(id, None).await {
            Ok(info) => info,
            Err(e) if is_status(&e, &[404]) => return Ok(WorkloadStatus::Missing),
            Err(e) => return Err(docker_err(format!("inspecting container {id}"))(e)),
        };
        let state = info.state.unwrap_or_default();
        Ok(match state.status {
            Some(ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::PAUSED) => {
                WorkloadStatus::Running
            }
            Some(ContainerStateStatusEnum::CREATED | ContainerStateStatusEnum::RESTARTING) => {
                WorkloadStatus::Starting
            }
            Some(
                ContainerStateStatusEnum::EXITED
                | ContainerStateStatusEnum::DEAD
                | ContainerStateStatusEnum::REMOVING
                | ContainerStateStatusEnum::STOPPING,
            ) => WorkloadStatus::Exited {
                code: state.exit_code,
            },
            Some(ContainerStateStatusEnum::EMPTY) | None => WorkloadStatus::Missing,
        })
    }

    async fn stop(&self, handle: &WorkloadHandle) -> Result<(), RuntimeError> {
        let id = container_id(handle)?;
        let grace = i32::try_from(self.config.stop_grace.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::new().t(grace).build();
        match self.docker.stop_container(id, Some(options)).await {
            // 304: already stopped; 404: already gone.
            Err(e) if !is_status(&e, &[304, 404]) => {
                return Err(docker_err(format!("stopping container {id}"))(e));
            }
            _ => {}
        }
        let rm = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(rm)).await {
            Err(e) if !is_status(&e, &[404]) => {
                Err(docker_err(format!("removing container {id}"))(e))
            }
            _ => {
                tracing::info!(target: "runtime", lease = %handle.lease, container = %id, "container removed");
                Ok(())
            }
        }
    }

    async fn list_managed(&self) -> Result<Vec<WorkloadHandle>, RuntimeError> {
        self.managed(None).await
    }
}

#[cfg(test)]
#[path = "docker_tests.rs"]
mod tests;
