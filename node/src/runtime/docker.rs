//! The Docker runtime (bollard): one container per lease, on its own network.
//!
//! The container request is built by the pure [`create_body`] (see `docker_body.rs`); this file
//! makes the engine calls: pull, network, create, start, inspect, stop, remove.
//!
//! SSH does not depend on the image: the node's [`ssh_gate`](super::ssh_gate) listens on the
//! lease's SSH host port, accepts only the renter's key and runs each session in the container
//! through the exec API. The container's own port 22 is never published.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::B256;
use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerStateStatusEnum, ExecConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, InspectContainerOptions,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::StreamExt;
use russh::keys::PublicKey;

pub use super::docker_body::{
    BodyOptions, CAP_DROP, HOST_LABEL, KEEP_ALIVE, LEASE_LABEL, PIDS_LIMIT, SSH_PORT,
    SSH_PORT_LABEL, container_name, container_ports, create_body, network_name,
};
use super::firewall;
use super::progress::{LaunchBoard, PullTally};
use super::ssh_gate::{self, Gate, GateTarget};
use super::ssh_tools::{self, SshTools};
use super::{
    PortMapping, Runtime, RuntimeError, RuntimeKind, WorkloadHandle, WorkloadStatus, free_ports,
    lease_label,
};
use crate::lease::spec::{InvalidSpec, LeaseSpec};

/// The default Docker engine socket.
pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// How long a new container must stay up before the lease counts as ready: a command that
/// exits at once is caught before `start`, so it costs the renter nothing.
const SETTLE: Duration = Duration::from_millis(500);

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
    /// The host's GPUs are simulated (`[gpu] simulated = true`): no device requests.
    pub simulated_gpus: bool,
    /// Where the runtime keeps its SSH host key and the SSH tools (under the node's data dir).
    pub state_dir: PathBuf,
}

impl DockerConfig {
    /// Defaults for `host_peer`: the standard socket, 10 s grace, no disk quota, real GPUs,
    /// state in a directory under the system's temporary directory.
    pub fn new(host_peer: impl Into<String>) -> Self {
        Self {
            socket: DEFAULT_SOCKET.into(),
            host_peer: host_peer.into(),
            stop_grace: Duration::from_secs(10),
            disk_quota: false,
            connect_timeout: Duration::from_secs(5),
            simulated_gpus: false,
            state_dir: std::env::temp_dir().join("gpuflow-docker"),
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
pub struct DockerRuntime {
    docker: Docker,
    config: DockerConfig,
    tools: SshTools,
    ssh: Arc<russh::server::Config>,
    /// The SSH gate of each lease whose container runs.
    gates: Mutex<HashMap<B256, Gate>>,
    /// What each launch in progress is doing.
    board: LaunchBoard,
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime")
            .field("config", &self.config)
            .field("tools", &self.tools)
            .finish_non_exhaustive()
    }
}

fn is_status(e: &BollardError, codes: &[u16]) -> bool {
    matches!(e, BollardError::DockerResponseServerError { status_code, .. } if codes.contains(status_code))
}

fn docker_err(what: String) -> impl FnOnce(BollardError) -> RuntimeError {
    move |source| RuntimeError::Docker { what, source }
}

impl DockerRuntime {
    /// Connects to the engine at `config.socket` and checks it answers; prepares the SSH host
    /// key and tools under `config.state_dir`.
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
        let host_key =
            super::ssh_key::load_or_create(&config.state_dir.join("ssh_host_ed25519_key"))?;
        let tools = ssh_tools::prepare(&config.state_dir.join("ssh-tools"));
        for missing in tools.missing() {
            tracing::warn!(target: "runtime", "{missing}");
        }
        Ok(Self {
            docker,
            ssh: ssh_gate::server_config(host_key),
            tools,
            config,
            gates: Mutex::new(HashMap::new()),
            board: LaunchBoard::default(),
        })
    }

    /// What the SSH tools mount offers (for `doctor` and the start-up log).
    pub fn ssh_tools(&self) -> &SshTools {
        &self.tools
    }

    /// How the engine can give containers GPUs (an `nvidia` runtime, or CDI), for the
    /// start-up check.
    pub async fn gpu_runtime(&self) -> Result<Option<String>, RuntimeError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(docker_err("reading the engine's info".into()))?;
        Ok(gpu_runtime_of(&info))
    }

    fn options(&self, lease: B256) -> BodyOptions {
        BodyOptions {
            host_peer: self.config.host_peer.clone(),
            network: network_name(lease),
            tools_dir: self
                .tools
                .dir
                .as_ref()
                .map(|d| d.to_string_lossy().into_owned()),
            disk_quota: self.config.disk_quota,
            simulated_gpus: self.config.simulated_gpus,
        }
    }

    /// Pulls `image` for `lease`, logging each layer state change and putting the bytes on the
    /// launch board for the renter's progress bar.
    async fn pull(&self, lease: B256, image: &str) -> Result<(), RuntimeError> {
        let options = CreateImageOptionsBuilder::new().from_image(image).build();
        let mut stream = self.docker.create_image(Some(options), None, None);
        let mut last: HashMap<String, String> = HashMap::new();
        let mut tally = PullTally::default();
        self.board.pulled(lease, 0, 0);
        while let Some(item) = stream.next().await {
            let info = item.map_err(docker_err(format!("pulling image {image}")))?;
            if let Some(e) = info.error_detail.and_then(|d| d.message) {
                return Err(RuntimeError::ImageUnavailable {
                    image: image.to_owned(),
                    why: e,
                });
            }
            let (Some(id), Some(status)) = (info.id, info.status) else {
                continue;
            };
            let (done, total) = match (&info.progress_detail, status.as_str()) {
                (_, "Download complete" | "Pull complete" | "Already exists") => {
                    tally.complete(&id)
                }
                (Some(p), "Downloading") => tally.update(&id, p.current, p.total),
                _ => tally.update(&id, None, None),
            };
            self.board.pulled(lease, done, total);
            // Downloading/Extracting repeat with byte counts; log each state once per layer.
            if last.get(&id) != Some(&status) {
                tracing::info!(target: "runtime", image, layer = %id, status = %status, "image pull");
                last.insert(id, status);
            }
        }
        Ok(())
    }

    /// The image, pulled unless it is here already (a registry outage, or no registry at all,
    /// must not stop a lease whose image is local).
    async fn ensure_image(&self, lease: B256, image: &str) -> Result<(), RuntimeError> {
        if self.docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        self.pull(lease, image).await.map_err(|e| match e {
            e @ RuntimeError::ImageUnavailable { .. } => e,
            e => RuntimeError::ImageUnavailable {
                image: image.to_owned(),
                why: e.to_string(),
            },
        })
    }

    /// The lease's own bridge network (created if missing), fenced off from the host and its
    /// LAN ([`firewall`]).
    async fn ensure_network(&self, lease: B256) -> Result<String, RuntimeError> {
        let name = network_name(lease);
        let id = match self.docker.inspect_network(&name, None).await {
            Ok(n) => n.id.unwrap_or_default(),
            Err(_) => self.create_network(lease, &name).await?,
        };
        if let Err(e) = firewall::isolate(&firewall::bridge_name(&id)) {
            self.remove_network(lease).await;
            return Err(e);
        }
        Ok(name)
    }

    async fn create_network(&self, lease: B256, name: &str) -> Result<String, RuntimeError> {
        let name = name.to_owned();
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            labels: Some(HashMap::from([
                (LEASE_LABEL.to_owned(), lease_label(lease)),
                (HOST_LABEL.to_owned(), self.config.host_peer.clone()),
            ])),
            // No traffic between containers on one bridge; each lease has its own anyway.
            options: Some(HashMap::from([(
                "com.docker.network.bridge.enable_icc".to_owned(),
                "false".to_owned(),
            )])),
            ..Default::default()
        };
        let created = self
            .docker
            .create_network(request)
            .await
            .map_err(docker_err(format!("creating network {name}")))?;
        Ok(created.id)
    }

    async fn remove_network(&self, lease: B256) {
        let name = network_name(lease);
        if let Ok(n) = self.docker.inspect_network(&name, None).await {
            firewall::release(&firewall::bridge_name(&n.id.unwrap_or_default()));
        }
        if let Err(e) = self.docker.remove_network(&name).await
            && !is_status(&e, &[404])
        {
            tracing::warn!(target: "runtime", network = %name, error = %e, "cannot remove a lease network");
        }
    }

    /// Removes a container that did not become a workload, and its network.
    async fn discard(&self, lease: B256, id: &str) {
        let rm = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        let _ = self.docker.remove_container(id, Some(rm)).await;
        self.remove_network(lease).await;
    }

    /// Runs `/bin/sh -c true` in the container: SSH sessions need a shell.
    async fn has_shell(&self, id: &str) -> bool {
        let config = ExecConfig {
            cmd: Some(vec!["/bin/sh".into(), "-c".into(), "true".into()]),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let Ok(exec) = self.docker.create_exec(id, config).await else {
            return false;
        };
        if let Ok(bollard::exec::StartExecResults::Attached { mut output, .. }) =
            self.docker.start_exec(&exec.id, None).await
        {
            while output.next().await.is_some() {}
        }
        ssh_gate::exec_exit_code(&self.docker, &exec.id).await == Some(0)
    }

    /// The container's exit code and last lines of output, for a launch that failed.
    async fn exit_report(&self, id: &str) -> String {
        let info = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .ok();
        let state = info.and_then(|i| i.state).unwrap_or_default();
        let mut logs = String::new();
        let options = bollard::query_parameters::LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail("5")
            .build();
        let mut stream = self.docker.logs(id, Some(options));
        while let Some(Ok(line)) = stream.next().await {
            logs.push_str(&String::from_utf8_lossy(&line.into_bytes()));
            if logs.len() > 2000 {
                break;
            }
        }
        let logs = logs.trim();
        match (state.exit_code, state.error.filter(|e| !e.is_empty())) {
            (_, Some(err)) => format!("the engine says: {err}"),
            (Some(code), None) if logs.is_empty() => format!("exit code {code}, no output"),
            (Some(code), None) => format!("exit code {code}; last output: {logs}"),
            (None, None) => "no exit code".into(),
        }
    }

    /// Serves SSH for a running container of `lease`, unless its gate is already up.
    fn open_gate(
        &self,
        lease: B256,
        container: &str,
        listener: std::net::TcpListener,
        renter_key: &str,
    ) -> Result<(), RuntimeError> {
        let key = PublicKey::from_openssh(renter_key.trim())
            .map_err(|e| InvalidSpec(format!("the renter's SSH key cannot be read: {e}")))?;
        let io = |what: &str| {
            let what = format!("{what} for lease {lease}");
            move |source| RuntimeError::Io { what, source }
        };
        listener
            .set_nonblocking(true)
            .map_err(io("setting up the SSH gate"))?;
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(io("setting up the SSH gate"))?;
        let target = GateTarget {
            docker: self.docker.clone(),
            container: container.to_owned(),
            renter_key: key,
            tools: self.tools.clone(),
        };
        let gate = ssh_gate::serve(listener, Arc::clone(&self.ssh), target)
            .map_err(io("starting the SSH gate"))?;
        tracing::info!(target: "runtime", %lease, addr = %gate.addr, "SSH gate open");
        self.gates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(lease, gate);
        Ok(())
    }

    fn has_gate(&self, lease: B256) -> bool {
        self.gates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(&lease)
    }

    fn close_gate(&self, lease: B256) {
        self.gates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&lease);
    }

    /// A re-adopted running container gets its gate back on the port its label names.
    async fn reopen_gate(&self, lease: B256, id: &str, ssh_port: u16) {
        if self.has_gate(lease) {
            return;
        }
        let info = match self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(i) => i,
            Err(_) => return,
        };
        let running = info.state.as_ref().and_then(|s| s.running) == Some(true);
        let key = info
            .config
            .and_then(|c| c.env)
            .unwrap_or_default()
            .into_iter()
            .find_map(|e| e.strip_prefix("PUBLIC_KEY=").map(str::to_owned));
        let (true, Some(key)) = (running, key) else {
            return;
        };
        let opened = std::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, ssh_port))
            .map_err(|source| RuntimeError::Io {
                what: format!("binding SSH port {ssh_port} again"),
                source,
            })
            .and_then(|l| self.open_gate(lease, id, l, &key));
        if let Err(e) = opened {
            tracing::warn!(target: "runtime", %lease, error = %e, "cannot serve SSH for a re-adopted container");
        }
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
            let labels = c.labels.unwrap_or_default();
            let lease = labels.get(LEASE_LABEL).and_then(|l| l.parse::<B256>().ok());
            let ssh_port = labels
                .get(SSH_PORT_LABEL)
                .and_then(|p| p.parse::<u16>().ok());
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
            if let Some(host) = ssh_port {
                ports.push(PortMapping {
                    workload: SSH_PORT,
                    host,
                });
            }
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
    async fn launch_inner(
        &self,
        lease: B256,
        spec: &LeaseSpec,
    ) -> Result<WorkloadHandle, RuntimeError> {
        // Check the spec before pulling anything.
        create_body(lease, spec, &self.options(lease), &[])?;
        if let Some(old) = self.managed(Some(lease)).await?.into_iter().next() {
            return Err(RuntimeError::AlreadyRunning { lease, id: old.id });
        }
        let image = spec.image.as_deref().unwrap_or_default();
        self.ensure_image(lease, image).await?;
        let wanted = container_ports(spec);
        // The gate's port is bound now and held, so nothing can take it before the gate runs.
        let ssh_listener = if spec.ssh_public_key.is_some() {
            Some(
                std::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, 0)).map_err(
                    |source| RuntimeError::Io {
                        what: "binding the SSH gate's port".into(),
                        source,
                    },
                )?,
            )
        } else {
            None
        };
        let engine_ports: Vec<u16> = wanted
            .iter()
            .copied()
            .filter(|p| ssh_listener.is_none() || *p != SSH_PORT)
            .collect();
        let mut ports: Vec<PortMapping> = engine_ports
            .iter()
            .zip(free_ports(engine_ports.len())?)
            .map(|(&workload, host)| PortMapping { workload, host })
            .collect();
        if let Some(l) = &ssh_listener {
            let host = l
                .local_addr()
                .map_err(|source| RuntimeError::Io {
                    what: "reading the SSH gate's port".into(),
                    source,
                })?
                .port();
            ports.insert(
                0,
                PortMapping {
                    workload: SSH_PORT,
                    host,
                },
            );
        }
        self.board.phase(lease, "creating");
        self.ensure_network(lease).await?;
        let body = create_body(lease, spec, &self.options(lease), &ports)?;
        let name = container_name(lease);
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = match self.docker.create_container(Some(options), body).await {
            Ok(c) => c,
            Err(e) => {
                self.remove_network(lease).await;
                return Err(docker_err(format!("creating container {name}"))(e));
            }
        };
        self.board.phase(lease, "starting");
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            // A created but unstartable container would block the next launch.
            self.discard(lease, &created.id).await;
            return Err(docker_err(format!("starting container {name}"))(e));
        }
        tokio::time::sleep(SETTLE).await;
        let handle = WorkloadHandle {
            kind: RuntimeKind::Docker,
            lease,
            id: created.id,
            ports,
        };
        if matches!(self.status(&handle).await?, WorkloadStatus::Exited { .. }) {
            let report = self.exit_report(&handle.id).await;
            self.discard(lease, &handle.id).await;
            return Err(RuntimeError::ExitedAtOnce {
                image: image.to_owned(),
                report,
            });
        }
        if let (Some(listener), Some(key)) = (ssh_listener, &spec.ssh_public_key) {
            if !self.has_shell(&handle.id).await {
                self.discard(lease, &handle.id).await;
                return Err(RuntimeError::NoShell {
                    image: image.to_owned(),
                });
            }
            if let Err(e) = self.open_gate(lease, &handle.id, listener, key) {
                self.discard(lease, &handle.id).await;
                return Err(e);
            }
        }
        tracing::info!(target: "runtime", lease = %lease, container = %handle.id, ports = ?handle.ports, "container started");
        Ok(handle)
    }
}

/// How an engine with `info` can give containers GPUs: the name of an NVIDIA runtime, or
/// `cdi` when it has CDI spec directories; `None` when it cannot.
pub fn gpu_runtime_of(info: &bollard::models::SystemInfo) -> Option<String> {
    let runtimes = info.runtimes.as_ref();
    runtimes
        .and_then(|r| r.keys().find(|k| k.contains("nvidia")).cloned())
        .or_else(|| {
            info.cdi_spec_dirs
                .as_ref()
                .is_some_and(|d| !d.is_empty())
                .then(|| "cdi".to_owned())
        })
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
    fn board(&self) -> Option<LaunchBoard> {
        Some(self.board.clone())
    }

    fn log_reader(&self) -> super::logs::LogReader {
        super::logs::LogReader::Docker(self.docker.clone())
    }

    async fn launch(&self, lease: B256, spec: &LeaseSpec) -> Result<WorkloadHandle, RuntimeError> {
        let launched = self.launch_inner(lease, spec).await;
        self.board.done(lease);
        launched
    }

    async fn status(&self, handle: &WorkloadHandle) -> Result<WorkloadStatus, RuntimeError> {
        let id = container_id(handle)?;
        let info = match self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
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
        self.close_gate(handle.lease);
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
                self.remove_network(handle.lease).await;
                tracing::info!(target: "runtime", lease = %handle.lease, container = %id, "container removed");
                Ok(())
            }
        }
    }

    async fn adopt(&self, handle: &WorkloadHandle) {
        if let Some(ssh) = handle.ports.iter().find(|p| p.workload == SSH_PORT) {
            self.reopen_gate(handle.lease, &handle.id, ssh.host).await;
        }
    }

    async fn list_managed(&self) -> Result<Vec<WorkloadHandle>, RuntimeError> {
        self.managed(None).await
    }
}

#[cfg(test)]
#[path = "docker_tests.rs"]
mod tests;
