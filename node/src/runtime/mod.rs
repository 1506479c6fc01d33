//! Where leased workloads run: a [`Runtime`] trait and two drivers.
//!
//! - [`docker::DockerRuntime`] (bollard): the production driver. GPU device requests for exactly
//!   the leased GPUs, the renter's SSH key, published ports, CPU/RAM/disk limits, labels that tie
//!   each container to its lease so a restarted node can find its containers again.
//! - [`process::ProcessRuntime`]: runs the lease's command as a child process of the node, for
//!   development machines without Docker and for tests. It does not isolate the workload from
//!   the host: never offer it to strangers.
//!
//! Both drivers leave workloads running when the node stops; after a restart the engine calls
//! [`Runtime::list_managed`] and re-adopts what it finds (the lease record says which lease each
//! belongs to, and the runtime's own marker proves it).

pub mod docker;
pub mod docker_body;
pub mod firewall;
pub mod logs;
pub mod process;
pub mod progress;
pub mod ssh_gate;
pub mod ssh_key;
pub mod ssh_tools;

use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::time::Duration;

use alloy::primitives::B256;

use crate::lease::spec::{InvalidSpec, LeaseSpec};

pub use docker::{DockerConfig, DockerRuntime};
pub use process::{ProcessConfig, ProcessRuntime};

pub use crate::config::RuntimeKind;

pub use crate::lease::workload::{PortMapping, WorkloadHandle};

/// What a workload is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadStatus {
    /// Created but not running yet (Docker `created`, `restarting`).
    Starting,
    /// Running.
    Running,
    /// It ended; the exit code when the runtime knows it.
    Exited {
        /// Exit status, if known (a re-adopted process that ended has none).
        code: Option<i64>,
    },
    /// The runtime has no such workload (removed, or never existed).
    Missing,
}

/// A runtime driver failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The spec cannot run under this driver.
    #[error(transparent)]
    InvalidSpec(#[from] InvalidSpec),
    /// The lease already has a live workload.
    #[error("lease {lease} already has a running workload ({id}); stop it first")]
    AlreadyRunning {
        /// The lease.
        lease: B256,
        /// Its workload's id.
        id: String,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the runtime was doing, with the path or pid.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The Docker engine could not be reached.
    #[error(
        "cannot reach Docker at {socket}: {source}; install Docker or use --runtime process \
         (if Docker is installed: start it, or point DOCKER_HOST at its socket)"
    )]
    DockerUnreachable {
        /// The socket address tried.
        socket: String,
        /// The cause.
        #[source]
        source: bollard::errors::Error,
    },
    /// A Docker API call failed.
    #[error("docker {what}: {source}")]
    Docker {
        /// The call, with the image or container.
        what: String,
        /// The cause.
        #[source]
        source: bollard::errors::Error,
    },
    /// The image is neither on the host nor pullable.
    #[error(
        "image {image} is not on this host and cannot be pulled ({why}); check the name and tag, \
         or ask for an image the host has"
    )]
    ImageUnavailable {
        /// The image reference.
        image: String,
        /// Why the pull failed.
        why: String,
    },
    /// The container ended right after it started.
    #[error(
        "the container of image {image} exited right after it started ({report}); give a command \
         that keeps running, or none (the container then stays up for SSH)"
    )]
    ExitedAtOnce {
        /// The image reference.
        image: String,
        /// Exit code and last output.
        report: String,
    },
    /// SSH was asked for an image without `/bin/sh`.
    #[error(
        "image {image} has no /bin/sh, and SSH sessions run in the container's shell; use an \
         image with a shell, or rent without an SSH key"
    )]
    NoShell {
        /// The image reference.
        image: String,
    },
    /// The firewall rules that fence a lease's network could not be set.
    #[error("cannot fence the lease's network: {0}")]
    Firewall(String),
    /// `DOCKER_HOST` names something other than a Unix socket.
    #[error(
        "DOCKER_HOST={0} is not supported; the docker runtime talks to a local engine through a \
         Unix socket (unix:///var/run/docker.sock): unset DOCKER_HOST or point it at one"
    )]
    DockerHostUnsupported(String),
    /// The handle belongs to another driver.
    #[error("workload {id} was launched by the {kind:?} runtime, not this one")]
    WrongRuntime {
        /// The handle's driver.
        kind: RuntimeKind,
        /// The handle's id.
        id: String,
    },
}

/// A place to run leased workloads.
///
/// Methods return `Send` futures so the lease engine can run them from spawned tasks.
pub trait Runtime: Send + Sync {
    /// Where the driver says what each launch in progress is doing (pull bytes, phase), for
    /// the renter's progress display; `None` when it says nothing.
    fn board(&self) -> Option<progress::LaunchBoard> {
        None
    }

    /// Where the workloads' output can be read for `gpuflow logs`.
    fn log_reader(&self) -> logs::LogReader;

    /// Starts the workload of `lease`. The spec must have passed [`LeaseSpec::validate`]
    /// (drivers check again).
    fn launch(
        &self,
        lease: B256,
        spec: &LeaseSpec,
    ) -> impl Future<Output = Result<WorkloadHandle, RuntimeError>> + Send;

    /// What the workload is doing now.
    fn status(
        &self,
        handle: &WorkloadHandle,
    ) -> impl Future<Output = Result<WorkloadStatus, RuntimeError>> + Send;

    /// Stops the workload (graceful signal, then kill after the grace period) and removes it.
    /// Stopping a workload that is already gone succeeds.
    fn stop(
        &self,
        handle: &WorkloadHandle,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Takes charge again of a workload found after a node restart (Docker: serves SSH for it
    /// again on its port). Nothing to do by default.
    fn adopt(&self, handle: &WorkloadHandle) -> impl Future<Output = ()> + Send {
        let _ = handle;
        async {}
    }

    /// Every workload this runtime manages on this host (running, or ended but not removed),
    /// for re-adoption after a node restart. Each handle names its lease.
    fn list_managed(
        &self,
    ) -> impl Future<Output = Result<Vec<WorkloadHandle>, RuntimeError>> + Send;
}

/// The runtime chosen in the node's config. An enum rather than `dyn Runtime`: the trait's
/// methods return `impl Future`, which trait objects cannot.
#[derive(Debug)]
pub enum AnyRuntime {
    /// See [`ProcessRuntime`].
    Process(ProcessRuntime),
    /// See [`DockerRuntime`].
    Docker(DockerRuntime),
}

/// Grace the process runtime gives a workload between SIGTERM and SIGKILL.
const PROCESS_STOP_GRACE: Duration = Duration::from_secs(5);

/// The runtime of `kind`: the process runtime keeps its files under `data_dir`; the Docker
/// runtime connects to the engine `docker_host` names (the value of `DOCKER_HOST`; unset: the
/// standard socket) and fails with [`RuntimeError::DockerUnreachable`] when nobody answers
/// there, labelling containers with `host_peer`.
pub async fn connect(
    kind: RuntimeKind,
    data_dir: &Path,
    host_peer: &str,
    docker_host: Option<&str>,
    simulated_gpus: bool,
    disk_quota: bool,
) -> Result<AnyRuntime, RuntimeError> {
    match kind {
        RuntimeKind::Process => Ok(AnyRuntime::Process(ProcessRuntime::new(&ProcessConfig {
            data_dir: data_dir.to_owned(),
            stop_grace: PROCESS_STOP_GRACE,
        })?)),
        RuntimeKind::Docker => {
            let socket = docker::socket_from_docker_host(docker_host)?;
            let config = DockerConfig {
                socket,
                simulated_gpus,
                disk_quota,
                state_dir: data_dir.join("docker"),
                ..DockerConfig::new(host_peer)
            };
            Ok(AnyRuntime::Docker(DockerRuntime::connect(config).await?))
        }
    }
}

impl AnyRuntime {
    /// Which driver this is.
    pub fn kind(&self) -> RuntimeKind {
        match self {
            AnyRuntime::Process(_) => RuntimeKind::Process,
            AnyRuntime::Docker(_) => RuntimeKind::Docker,
        }
    }
}

impl Runtime for AnyRuntime {
    fn board(&self) -> Option<progress::LaunchBoard> {
        match self {
            AnyRuntime::Process(r) => r.board(),
            AnyRuntime::Docker(r) => r.board(),
        }
    }

    fn log_reader(&self) -> logs::LogReader {
        match self {
            AnyRuntime::Process(r) => r.log_reader(),
            AnyRuntime::Docker(r) => r.log_reader(),
        }
    }

    async fn launch(&self, lease: B256, spec: &LeaseSpec) -> Result<WorkloadHandle, RuntimeError> {
        match self {
            AnyRuntime::Process(r) => r.launch(lease, spec).await,
            AnyRuntime::Docker(r) => r.launch(lease, spec).await,
        }
    }

    async fn status(&self, handle: &WorkloadHandle) -> Result<WorkloadStatus, RuntimeError> {
        match self {
            AnyRuntime::Process(r) => r.status(handle).await,
            AnyRuntime::Docker(r) => r.status(handle).await,
        }
    }

    async fn stop(&self, handle: &WorkloadHandle) -> Result<(), RuntimeError> {
        match self {
            AnyRuntime::Process(r) => r.stop(handle).await,
            AnyRuntime::Docker(r) => r.stop(handle).await,
        }
    }

    async fn adopt(&self, handle: &WorkloadHandle) {
        match self {
            AnyRuntime::Process(r) => r.adopt(handle).await,
            AnyRuntime::Docker(r) => r.adopt(handle).await,
        }
    }

    async fn list_managed(&self) -> Result<Vec<WorkloadHandle>, RuntimeError> {
        match self {
            AnyRuntime::Process(r) => r.list_managed().await,
            AnyRuntime::Docker(r) => r.list_managed().await,
        }
    }
}

/// `n` distinct free TCP ports (the OS does not hand out one port twice while all are bound).
/// Another program can take one before the workload binds it; the engine treats a workload
/// that fails to come up like any launch failure.
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>, RuntimeError> {
    let io = |source| RuntimeError::Io {
        what: "finding free TCP ports".into(),
        source,
    };
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(io))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(io))
        .collect()
}

/// The lease id as written in labels, file names and environment: `0x` + 64 hex digits.
pub fn lease_label(lease: B256) -> String {
    format!("{lease:#x}")
}
