//! The SSH gate: the node answers SSH for each Docker lease itself (russh) and runs every
//! session inside the lease's container through the engine's exec API, so any image with a
//! shell can be SSH'd into without an `sshd` in it (see ARCHITECTURE.md, "SSH into any image").
//!
//! One listener per lease, on the host port the lease's SSH mapping names. Only the lease's
//! renter key is accepted. What a session can ask for:
//!
//! - a shell (with or without a pty; window changes resize it) and `exec` of a command, each
//!   run as `/bin/sh` in the container, so `rsync` and `git` over SSH work when the image has
//!   them;
//! - the `sftp` subsystem (modern `scp`, `sftp`, VS Code) through the node's [`SshTools`];
//! - local port forwarding (`ssh -L`, VS Code's server connection): a `direct-tcpip` channel
//!   is carried by `busybox nc` *inside* the container, so services bound to its 127.0.0.1 are
//!   reachable, and nothing of the host's network is.
//!
//! Remote forwarding, agent and X11 forwarding are refused. Everything a stranger can open is
//! bounded: connections per lease, channels per connection, time to authenticate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use futures_util::StreamExt;
use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Handler, Msg, PublicKeyOffer, Session};
use russh::server::{VerifiedPublicKey, run_stream};
use russh::{Channel, ChannelId, ChannelMsg, MethodKind, MethodSet};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use super::ssh_tools::SshTools;

/// Connections one lease's gate serves at once.
const MAX_CONNECTIONS: usize = 16;
/// Channels (shells, commands, file transfers, forwarded connections) per connection.
const MAX_CHANNELS: usize = 32;
/// A connection that has not authenticated by then is closed.
const AUTH_DEADLINE: Duration = Duration::from_secs(20);
/// Environment variables a client may set (`SendEnv`); the rest are ignored, as OpenSSH's
/// default `AcceptEnv` does.
const ACCEPTED_ENV: &[&str] = &["LANG", "LANGUAGE", "TERM", "COLORTERM"];
/// The login shell: bash when the image has it, else sh.
const LOGIN_SHELL: &str =
    "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi";

/// What one lease's gate needs: the engine, the container, the renter's key and the tools.
#[derive(Clone)]
pub struct GateTarget {
    /// The engine the container runs on.
    pub docker: Docker,
    /// The container id.
    pub container: String,
    /// The only key that may log in.
    pub renter_key: PublicKey,
    /// What the tools mount offers.
    pub tools: SshTools,
}

impl std::fmt::Debug for GateTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateTarget")
            .field("container", &self.container)
            .finish_non_exhaustive()
    }
}

/// A running gate; dropping it closes the listener and disconnects every session.
#[derive(Debug)]
pub struct Gate {
    accept: JoinHandle<()>,
    shutdown: watch::Sender<bool>,
    /// The address it listens on.
    pub addr: SocketAddr,
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.accept.abort();
    }
}

/// The russh server settings for every gate, with the node's host key.
pub fn server_config(host_key: PrivateKey) -> Arc<russh::server::Config> {
    Arc::new(russh::server::Config {
        server_id: russh::SshId::Standard(
            format!("SSH-2.0-gpuflow_{}", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        max_auth_attempts: 6,
        inactivity_timeout: Some(Duration::from_secs(3600)),
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 4,
        nodelay: true,
        ..Default::default()
    })
}

/// Serves SSH for `target` on `listener` until the returned [`Gate`] is dropped.
pub fn serve(
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    target: GateTarget,
) -> std::io::Result<Gate> {
    let addr = listener.local_addr()?;
    let (shutdown, stop) = watch::channel(false);
    let accept = tokio::spawn(accept_loop(listener, config, Arc::new(target), stop));
    Ok(Gate {
        accept,
        shutdown,
        addr,
    })
}

async fn accept_loop(
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    target: Arc<GateTarget>,
    stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((socket, peer)) = listener.accept().await else {
            // EMFILE and the like: back off rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(target: "runtime", %peer, "SSH gate full; connection refused");
            continue;
        };
        let authed = Arc::new(AtomicBool::new(false));
        let handler = Conn {
            target: Arc::clone(&target),
            authed: Arc::clone(&authed),
            channels: Arc::new(Semaphore::new(MAX_CHANNELS)),
        };
        let config = Arc::clone(&config);
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let session = match run_stream(config, socket, handler).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(target: "runtime", %peer, error = %e, "SSH handshake failed");
                    return;
                }
            };
            let handle = session.handle();
            let deadline = tokio::time::sleep(AUTH_DEADLINE);
            tokio::pin!(session, deadline);
            let mut deadline_passed = false;
            let reason = loop {
                tokio::select! {
                    _ = &mut session => return,
                    _ = stop.changed() => break "the lease ended",
                    () = &mut deadline, if !deadline_passed => {
                        deadline_passed = true;
                        // Checked now, not when the wait began: a login may have just finished.
                        if !authed.load(Ordering::Relaxed) {
                            break "authentication timed out";
                        }
                    }
                }
            };
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, reason.into(), "en".into())
                .await;
        });
    }
}

/// One SSH connection.
struct Conn {
    target: Arc<GateTarget>,
    authed: Arc<AtomicBool>,
    channels: Arc<Semaphore>,
}

impl Conn {
    fn is_renter(&self, key: &PublicKey) -> bool {
        key.key_data() == self.target.renter_key.key_data()
    }
}

impl Handler for Conn {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.is_renter(offer.public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.is_renter(key.public_key) {
            self.authed.store(true, Ordering::Relaxed);
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Dropping `reply` refuses the channel.
        let Ok(slot) = Arc::clone(&self.channels).try_acquire_owned() else {
            return Ok(());
        };
        reply.accept().await;
        let target = Arc::clone(&self.target);
        tokio::spawn(async move {
            let _slot = slot;
            session_channel(target, channel).await;
        });
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let port = u16::try_from(port_to_connect).ok().filter(|p| *p != 0);
        let command = match (forward_host(host_to_connect), port) {
            (Some(host), Some(port)) => self.target.tools.connect_command(host, port),
            _ => None,
        };
        let (Some(command), Ok(slot)) = (command, Arc::clone(&self.channels).try_acquire_owned())
        else {
            return Ok(());
        };
        reply.accept().await;
        let target = Arc::clone(&self.target);
        tokio::spawn(async move {
            let _slot = slot;
            let (rx, tx) = channel.split();
            let spec = ExecSpec {
                command,
                tty: None,
                env: Vec::new(),
                stderr: false,
            };
            run_exec(&target, spec, rx, tx).await;
        });
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == "sftp" && self.target.tools.sftp {
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
        }
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }
}

/// The host a forwarded connection may name: a plain name or address, never something `nc`
/// would read as an option.
fn forward_host(host: &str) -> Option<&str> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && !host.starts_with('-')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:_[]%".contains(&b));
    ok.then_some(host.trim_start_matches('[').trim_end_matches(']'))
}

/// A pty's size, columns and rows.
#[derive(Debug, Clone, Copy)]
struct Pty {
    cols: u16,
    rows: u16,
}

fn pty_size(cols: u32, rows: u32) -> Pty {
    let clamp = |v: u32| u16::try_from(v.clamp(1, 1000)).unwrap_or(80);
    Pty {
        cols: clamp(cols),
        rows: clamp(rows),
    }
}

/// What to run for a channel.
struct ExecSpec {
    command: Vec<String>,
    tty: Option<Pty>,
    env: Vec<String>,
    /// Whether the channel carries stderr as extended data (not for forwarded connections).
    stderr: bool,
}

/// A session channel: collects pty and environment requests, then runs the shell, command or
/// subsystem it asks for.
async fn session_channel(target: Arc<GateTarget>, channel: Channel<Msg>) {
    let (mut rx, tx) = channel.split();
    let mut tty = None;
    let mut env = Vec::new();
    let command = loop {
        match rx.wait().await {
            Some(ChannelMsg::RequestPty {
                term,
                col_width,
                row_height,
                ..
            }) => {
                tty = Some(pty_size(col_width, row_height));
                env.push(format!("TERM={term}"));
            }
            Some(ChannelMsg::SetEnv {
                variable_name,
                variable_value,
                ..
            }) if ACCEPTED_ENV.contains(&variable_name.as_str()) && env.len() < 16 => {
                env.push(format!("{variable_name}={variable_value}"));
            }
            Some(ChannelMsg::RequestShell { .. }) => {
                break vec!["/bin/sh".into(), "-c".into(), LOGIN_SHELL.into()];
            }
            Some(ChannelMsg::Exec { command, .. }) => {
                let command = String::from_utf8_lossy(&command).into_owned();
                break vec!["/bin/sh".into(), "-c".into(), command];
            }
            Some(ChannelMsg::RequestSubsystem { name, .. }) => {
                match (name == "sftp")
                    .then(|| target.tools.sftp_command())
                    .flatten()
                {
                    Some(c) => break c,
                    None => {
                        let _ = tx.close().await;
                        return;
                    }
                }
            }
            Some(ChannelMsg::Close | ChannelMsg::Eof) | None => return,
            Some(_) => {}
        }
    };
    let spec = ExecSpec {
        command,
        tty,
        env,
        stderr: true,
    };
    run_exec(&target, spec, rx, tx).await;
}

/// Runs `spec` in the container and joins it to the channel until either side ends: channel
/// data to the program's stdin (EOF closes it), its stdout to channel data, its stderr to
/// extended data, its exit code as the exit status.
async fn run_exec(
    target: &GateTarget,
    spec: ExecSpec,
    mut rx: russh::ChannelReadHalf,
    tx: russh::ChannelWriteHalf<Msg>,
) {
    let docker = &target.docker;
    let config = ExecConfig {
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(spec.tty.is_some()),
        env: Some(spec.env),
        cmd: Some(spec.command.clone()),
        console_size: spec
            .tty
            .map(|p| vec![usize::from(p.rows), usize::from(p.cols)]),
        ..Default::default()
    };
    let started = async {
        let exec = docker.create_exec(&target.container, config).await?;
        let options = StartExecOptions {
            detach: false,
            tty: spec.tty.is_some(),
            output_capacity: Some(64 * 1024),
        };
        let results = docker.start_exec(&exec.id, Some(options)).await?;
        Ok::<_, bollard::errors::Error>((exec.id, results))
    };
    let (exec_id, output, mut input) = match started.await {
        Ok((id, StartExecResults::Attached { output, input })) => (id, output, input),
        Ok((_, StartExecResults::Detached)) => return,
        Err(e) => {
            tracing::debug!(target: "runtime", container = %target.container, error = %e, "SSH exec failed");
            if spec.stderr {
                let msg = format!(
                    "gpuflow: cannot run {:?} in the lease's container: {e}\r\n",
                    spec.command.first().map_or("", String::as_str)
                );
                let _ = tx.extended_data_bytes(1, msg.into_bytes()).await;
                let _ = tx.exit_status(127).await;
            }
            let _ = tx.eof().await;
            let _ = tx.close().await;
            return;
        }
    };
    // Client → program.
    let resize_docker = docker.clone();
    let resize_id = exec_id.clone();
    let to_program = tokio::spawn(async move {
        while let Some(msg) = rx.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    let written = input.write_all(&data).await;
                    if written.is_err() {
                        break;
                    }
                }
                ChannelMsg::Eof => {
                    let _ = input.shutdown().await;
                }
                ChannelMsg::WindowChange {
                    col_width,
                    row_height,
                    ..
                } => {
                    let p = pty_size(col_width, row_height);
                    let size = ResizeExecOptions {
                        height: p.rows,
                        width: p.cols,
                    };
                    let _ = resize_docker.resize_exec(&resize_id, size).await;
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        // The client is gone: closing stdin (and the pty) ends most programs.
        let _ = input.shutdown().await;
    });
    // Program → client.
    let mut output = output;
    while let Some(item) = output.next().await {
        let sent = match item {
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                tx.data_bytes(message).await
            }
            Ok(LogOutput::StdErr { message }) if spec.stderr => {
                tx.extended_data_bytes(1, message).await
            }
            Ok(_) => Ok(()),
            Err(_) => break,
        };
        if sent.is_err() {
            break;
        }
    }
    if spec.stderr {
        let code = exec_exit_code(docker, &exec_id)
            .await
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(255);
        let _ = tx.exit_status(code).await;
    }
    let _ = tx.eof().await;
    let _ = tx.close().await;
    to_program.abort();
}

/// The exit code of a finished exec, waiting up to a second for the engine to record it;
/// `None` when it does not say.
pub(super) async fn exec_exit_code(docker: &Docker, exec_id: &str) -> Option<i64> {
    for _ in 0..40 {
        match docker.inspect_exec(exec_id).await {
            Ok(info) if info.running == Some(false) => return info.exit_code,
            Ok(_) => tokio::time::sleep(Duration::from_millis(25)).await,
            Err(_) => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_hosts_cannot_be_options() {
        assert_eq!(forward_host("127.0.0.1"), Some("127.0.0.1"));
        assert_eq!(forward_host("localhost"), Some("localhost"));
        assert_eq!(forward_host("[::1]"), Some("::1"));
        assert_eq!(forward_host("-e/bin/sh"), None);
        assert_eq!(forward_host("a b"), None);
        assert_eq!(forward_host(""), None);
        assert_eq!(forward_host("x;rm"), None);
    }

    #[test]
    fn pty_sizes_are_clamped() {
        let p = pty_size(0, 100_000);
        assert_eq!((p.cols, p.rows), (1, 1000));
        let p = pty_size(120, 40);
        assert_eq!((p.cols, p.rows), (120, 40));
    }
}
