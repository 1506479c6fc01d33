//! The process runtime: a lease's command as a child process of the node.
//!
//! For development machines without Docker and for tests; it does not isolate the workload.
//! Each lease gets a directory `<data_dir>/workloads/<lease id>/` holding `workload.log`
//! (stdout and stderr) and `pid.json` (the [`WorkloadHandle`]: pid, its start time, ports).
//!
//! Each of the spec's ports is published on a free host port, which the workload listens on
//! itself: `PORT` is the first, `GPUFLOW_PORTS` lists them all, and `GPUFLOW_PORT_<n>` names
//! the one published for the spec's (container) port `n` (`GPUFLOW_PORT_22`: where to run
//! SSH). The handle's [`PortMapping`]s pair each spec port with its host port, as Docker's do.
//!
//! Every port is published on [`BIND_ADDR`] (127.0.0.1) and nowhere else: the workload gets it
//! as `GPUFLOW_BIND` and must listen there (the engine's readiness check connects there too).
//! This runtime is for development machines and the devnet, where renters are local; a host
//! that serves others runs the Docker runtime.
//!
//! The workload runs in its own process group, so `stop` reaches everything it spawned, and it
//! outlives the node: a restarted node finds it again through `pid.json`. Some programs leave
//! the group (`sshd` puts each SSH session in a session of its own, `setsid` does the same) and
//! some also drop the lease's environment, so the workload's first process is made a *child
//! subreaper* (`PR_SET_CHILD_SUBREAPER`, set by a `perl` shim before it executes the command,
//! since the setting survives `execve`): whatever its descendants orphan is re-parented to it,
//! not to init, and stays in its process tree however it detaches. `stop` ends the group, every
//! descendant of the first process (found through `/proc` parent links), every process of the
//! node's user whose environment carries the lease id, and what was last seen in the workload's
//! tree while its first process lived (for descendants left behind when it ended first). Without
//! `perl` the workload runs unshimmed and a warning says that detached processes can escape.
//! A pid alone is not proof (pids are reused), so a workload counts as alive only if
//! `/proc/<pid>/stat` shows the start time recorded at launch; re-adoption also checks that the
//! process environment carries the lease id. `stop` also deletes what the workload left in its
//! directory (an SSH host key, say), keeping only `workload.log`.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use alloy::primitives::B256;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::{
    PortMapping, Runtime, RuntimeError, RuntimeKind, WorkloadHandle, WorkloadStatus, free_ports,
    lease_label,
};
use crate::lease::spec::{InvalidSpec, LeaseSpec};

/// Settings of the process runtime.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// The node's data directory; workloads live under `workloads/` in it.
    pub data_dir: PathBuf,
    /// How long `stop` waits after SIGTERM before SIGKILL.
    pub stop_grace: Duration,
}

/// Runs leases as local processes. See the module docs.
#[derive(Debug)]
pub struct ProcessRuntime {
    dir: PathBuf,
    grace: Duration,
    /// Children this instance spawned, kept to read their exit status. Locked only for map
    /// operations, never across an await. A re-adopted workload is not here: it is not our
    /// child any more, and `/proc` is all we have.
    children: Mutex<HashMap<u32, Child>>,
    /// Per lease, the workload's processes (pid, start time) at the last `status` that found
    /// its first process alive: what `stop` must still end if that process ended first and its
    /// descendants were re-parented to init.
    seen: Mutex<HashMap<B256, Vec<(u32, u64)>>>,
}

/// The address every process workload port is published on, given to the workload as
/// `GPUFLOW_BIND`: loopback only (see the module docs).
pub const BIND_ADDR: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Runs `ARGV[2..]` (program path `ARGV[1]`, then its argv from argv[0]) after making this
/// process a child subreaper with `syscall(ARGV[0], PR_SET_CHILD_SUBREAPER = 36, 1)`: the
/// attribute survives `exec`, so the workload's first process is the subreaper. `perl` because
/// it is on practically every Linux host and `prctl` needs no module there; the node itself
/// cannot do it between fork and exec without unsafe code.
const SUBREAPER_SHIM: &str = r#"my $nr = 0 + shift @ARGV;
syscall($nr, 36, 1, 0, 0, 0) == 0
  or print STDERR "gpuflow: cannot make the workload a subreaper: $!\n";
my $path = shift @ARGV;
exec { $path } @ARGV;
die "gpuflow: cannot run $path: $!\n";
"#;

/// How often `stop` looks at `/proc` while waiting for a workload that is not our child.
const EXIT_POLL: Duration = Duration::from_millis(25);
/// How long `stop` waits for the kernel to remove a SIGKILLed workload.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// The handle file in each lease directory.
const PID_FILE: &str = "pid.json";
/// The log file in each lease directory.
pub(super) const LOG_FILE: &str = "workload.log";

impl ProcessRuntime {
    /// A runtime keeping its files under `config.data_dir/workloads`.
    pub fn new(config: &ProcessConfig) -> Result<Self, RuntimeError> {
        let dir = config.data_dir.join("workloads");
        std::fs::create_dir_all(&dir).map_err(|source| RuntimeError::Io {
            what: format!("creating the workload directory {}", dir.display()),
            source,
        })?;
        Ok(Self {
            dir,
            grace: config.stop_grace,
            children: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// The lease's directory (log and pid file).
    pub fn lease_dir(&self, lease: B256) -> PathBuf {
        self.dir.join(lease_label(lease))
    }

    /// The lease's log file (stdout and stderr of the workload).
    pub fn log_path(&self, lease: B256) -> PathBuf {
        self.lease_dir(lease).join(LOG_FILE)
    }

    fn take_child(&self, pid: u32) -> Option<Child> {
        self.children.lock().ok()?.remove(&pid)
    }

    fn put_child(&self, pid: u32, child: Child) {
        if let Ok(mut map) = self.children.lock() {
            map.insert(pid, child);
        }
    }

    fn remember(&self, lease: B256, procs: Vec<(u32, u64)>) {
        if let Ok(mut map) = self.seen.lock() {
            map.insert(lease, procs);
        }
    }

    fn forget(&self, lease: B256) -> Vec<(u32, u64)> {
        self.seen
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&lease))
            .unwrap_or_default()
    }

    /// Exit status of our own child, if it has ended; `None` while it runs or if not ours.
    fn child_exit(&self, pid: u32) -> Option<Option<i64>> {
        let mut map = self.children.lock().ok()?;
        let child = map.get_mut(&pid)?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.code().map(i64::from)),
            Ok(None) => None,
            // The child was reaped elsewhere; we cannot know how it ended.
            Err(_) => Some(None),
        }
    }
}

/// pid and `/proc` start time (clock ticks since boot) of a process runtime handle id.
fn parse_id(handle: &WorkloadHandle) -> Result<(u32, u64), RuntimeError> {
    if handle.kind != RuntimeKind::Process {
        return Err(RuntimeError::WrongRuntime {
            kind: handle.kind,
            id: handle.id.clone(),
        });
    }
    let parsed = handle
        .id
        .split_once(':')
        .and_then(|(p, s)| Some((p.parse().ok()?, s.parse().ok()?)));
    parsed.ok_or_else(|| RuntimeError::Io {
        what: format!("reading process workload id {:?}", handle.id),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "expected <pid>:<start>"),
    })
}

/// What the runtime reads from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy)]
struct ProcStat {
    /// `R`, `S`, … `Z` (zombie), `X` (dead).
    state: char,
    ppid: u32,
    /// Process group id.
    pgrp: u32,
    /// Start time, clock ticks since boot.
    start: u64,
}

/// `/proc/<pid>/stat`, or `None` if there is no such process.
fn read_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces or ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_ascii_whitespace();
    // `rest` starts at field 3 (state), then ppid, pgrp; the start time is field 22.
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    let start = fields.nth(16)?.parse().ok()?;
    Some(ProcStat {
        state,
        ppid,
        pgrp,
        start,
    })
}

/// `(state, start time)` from `/proc/<pid>/stat`, or `None` if there is no such process.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    read_stat(pid).map(|s| (s.state, s.start))
}

/// The process `pid` exists, has not ended and is the one started at `start`.
///
/// "Ended" means every thread has: a multi-threaded program's main thread can be a zombie
/// while its other threads still exit, and until the last one does its files — listening
/// sockets included — stay open. So a zombie main thread counts as alive while any thread in
/// `/proc/<pid>/task` is not a zombie.
fn alive(pid: u32, start: u64) -> bool {
    let ended = |state: char| state == 'Z' || state == 'X';
    match proc_stat(pid) {
        Some((state, s)) if s == start => !ended(state) || threads_running(pid, ended),
        _ => false,
    }
}

/// Whether any thread of `pid` is in a state `ended` says is not ended.
fn threads_running(pid: u32, ended: impl Fn(char) -> bool) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .ok()
            .and_then(|stat| {
                // The state follows the command name, which ends at the last ')'.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.trim_start().chars().next())
            })
            .is_some_and(|state| !ended(state))
    })
}

/// Whether the process environment names `lease`. `None` if the environment is unreadable.
fn environ_names(pid: u32, lease: B256) -> Option<bool> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let marker = format!("GPUFLOW_LEASE_ID={}", lease_label(lease));
    Some(env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()))
}

fn signal_group(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    // ESRCH (already gone) is the expected outcome of a race with a normal exit.
    let _ = killpg(Pid::from_raw(raw), signal);
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> RuntimeError {
    move |source| RuntimeError::Io { what, source }
}

fn write_handle(dir: &Path, handle: &WorkloadHandle) -> Result<(), RuntimeError> {
    let tmp = dir.join(format!("{PID_FILE}.tmp"));
    let json = serde_json::to_vec(handle).map_err(|e| RuntimeError::Io {
        what: "encoding the pid file".into(),
        source: e.into(),
    })?;
    std::fs::write(&tmp, json).map_err(io(format!("writing {}", tmp.display())))?;
    // Rename so a crash never leaves a half-written pid file.
    std::fs::rename(&tmp, dir.join(PID_FILE)).map_err(io(format!("renaming {}", tmp.display())))
}

fn read_handle(dir: &Path) -> Option<WorkloadHandle> {
    let bytes = std::fs::read(dir.join(PID_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

impl Runtime for ProcessRuntime {
    fn log_reader(&self) -> super::logs::LogReader {
        super::logs::LogReader::Process(self.dir.clone())
    }

    async fn launch(&self, lease: B256, spec: &LeaseSpec) -> Result<WorkloadHandle, RuntimeError> {
        spec.validate()?;
        let Some((program, args)) = spec.command.split_first() else {
            return Err(InvalidSpec("the process runtime needs a command".into()).into());
        };
        let dir = self.lease_dir(lease);
        if let Some(old) = read_handle(&dir)
            && let Ok((pid, start)) = parse_id(&old)
            && alive(pid, start)
        {
            return Err(RuntimeError::AlreadyRunning { lease, id: old.id });
        }
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let log_path = dir.join(LOG_FILE);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(format!("opening {}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(io(format!("opening {}", log_path.display())))?;

        let ports = free_ports(spec.ports.len().max(1))?;
        let port_list = ports.iter().map(u16::to_string).collect::<Vec<_>>();
        // Spec port → host port; a spec without ports still gets one, named by itself.
        let mappings: Vec<PortMapping> = ports
            .iter()
            .enumerate()
            .map(|(i, &host)| PortMapping {
                workload: spec.ports.get(i).copied().unwrap_or(host),
                host,
            })
            .collect();
        let child_path = spec
            .env
            .get("PATH")
            .map(std::ffi::OsString::from)
            .or_else(|| std::env::var_os("PATH"));
        // Found here, as `exec` would find it: through the shim, a missing program would
        // otherwise start (the shim) and only then fail.
        let Some(exe) = resolve_program(program, child_path.as_deref(), &dir) else {
            return Err(RuntimeError::Io {
                what: format!("starting {program:?} for lease {lease}"),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such executable file (looked where the workload's PATH says)",
                ),
            });
        };
        let mut cmd = match perl() {
            Some(perl) => {
                let mut c = Command::new(perl);
                c.arg("-e")
                    .arg(SUBREAPER_SHIM)
                    .arg("--")
                    .arg(nix::libc::SYS_prctl.to_string())
                    .arg(&exe)
                    .arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args)
            .current_dir(&dir)
            // Only what the workload needs: a renter's program gets none of the node's secrets
            // (the wallet key is in the node's environment).
            .env_clear()
            .envs(std::env::var_os("PATH").map(|p| ("PATH", p)))
            .envs(std::env::var_os("HOME").map(|p| ("HOME", p)))
            .envs(&spec.env)
            .env("GPUFLOW_LEASE_ID", lease_label(lease))
            .env("GPUFLOW_BIND", BIND_ADDR.to_string())
            .env("PORT", &port_list[0])
            .env("GPUFLOW_PORTS", port_list.join(","))
            .envs(
                spec.ports
                    .iter()
                    .zip(&ports)
                    .map(|(n, host)| (format!("GPUFLOW_PORT_{n}"), host.to_string())),
            )
            // Exactly the leased GPUs; none when none were leased.
            .env("CUDA_VISIBLE_DEVICES", spec.gpus.join(","))
            .envs(spec.ssh_public_key.as_ref().map(|k| ("PUBLIC_KEY", k)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            // Own process group: `stop` signals the workload and everything it spawned, and a
            // Ctrl-C in the node's terminal does not reach it.
            .process_group(0)
            // The workload outlives the node; it is re-adopted after a restart.
            .kill_on_drop(false);
        let child = cmd
            .spawn()
            .map_err(io(format!("starting {program:?} for lease {lease}")))?;
        let pid = child.id().unwrap_or_default();
        // Zero if it already ended: then it is never "alive", and its exit code comes from
        // the child we keep.
        let start = proc_stat(pid).map(|(_, s)| s).unwrap_or(0);
        let handle = WorkloadHandle {
            kind: RuntimeKind::Process,
            lease,
            id: format!("{pid}:{start}"),
            ports: mappings,
        };
        self.put_child(pid, child);
        if let Err(e) = write_handle(&dir, &handle) {
            // Without a pid file the workload could not be found after a restart: do not
            // leave it running.
            signal_group(pid, Signal::SIGKILL);
            return Err(e);
        }
        tracing::info!(target: "runtime", lease = %lease, pid, ports = ?port_list, "process workload started");
        Ok(handle)
    }

    async fn status(&self, handle: &WorkloadHandle) -> Result<WorkloadStatus, RuntimeError> {
        let (pid, start) = parse_id(handle)?;
        if let Some(code) = self.child_exit(pid) {
            return Ok(WorkloadStatus::Exited { code });
        }
        if alive(pid, start) {
            // What to end at `stop` should the first process end before the rest.
            self.remember(handle.lease, workload_processes(&[pid], None));
            return Ok(WorkloadStatus::Running);
        }
        if self.lease_dir(handle.lease).join(PID_FILE).exists() {
            Ok(WorkloadStatus::Exited { code: None })
        } else {
            Ok(WorkloadStatus::Missing)
        }
    }

    async fn stop(&self, handle: &WorkloadHandle) -> Result<(), RuntimeError> {
        let (pid, start) = parse_id(handle)?;
        let mut child = self.take_child(pid);
        let was_alive = alive(pid, start);
        // Taken before any signal: once the first process ends, what it reaped for the
        // workload (orphans, SSH sessions) is re-parented to init and no longer in its tree.
        let leader: &[u32] = if was_alive { &[pid] } else { &[] };
        let mut others = workload_processes(leader, Some(handle.lease));
        for p in self.forget(handle.lease) {
            if !others.contains(&p) {
                others.push(p);
            }
        }
        if was_alive {
            signal_group(pid, Signal::SIGTERM);
            let exited = match child.as_mut() {
                Some(c) => tokio::time::timeout(self.grace, c.wait()).await.is_ok(),
                None => wait_gone(pid, start, self.grace).await,
            };
            if !exited {
                tracing::warn!(target: "runtime", lease = %handle.lease, pid, "workload ignored SIGTERM; killing it");
            }
            // Also reaches children that outlived the group leader.
            signal_group(pid, Signal::SIGKILL);
            match child.as_mut() {
                Some(c) => {
                    let _ = tokio::time::timeout(KILL_WAIT, c.wait()).await;
                }
                None => {
                    wait_gone(pid, start, KILL_WAIT).await;
                }
            }
        } else if let Some(c) = child.as_mut() {
            // Reap it so it does not linger as a zombie.
            let _ = c.try_wait();
        }
        // What left the group (SSH sessions, daemons) ends with the lease too.
        let stray = end_processes(&others, handle.lease, self.grace).await;
        if stray > 0 {
            tracing::info!(target: "runtime", lease = %handle.lease, stray, "ended processes that had left the workload's group");
        }
        let pid_file = self.lease_dir(handle.lease).join(PID_FILE);
        match std::fs::remove_file(&pid_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("removing {}", pid_file.display()))(e)),
        }
        // Keys, keyfiles and whatever else the workload wrote go with it; the log stays.
        clear_lease_dir(&self.lease_dir(handle.lease))?;
        tracing::info!(target: "runtime", lease = %handle.lease, pid, was_alive, "process workload stopped");
        Ok(())
    }

    async fn list_managed(&self) -> Result<Vec<WorkloadHandle>, RuntimeError> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(io(format!("listing {}", self.dir.display())))?;
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let Some(handle) = read_handle(&entry.path()) else {
                continue;
            };
            if entry.file_name().to_str() != Some(lease_label(handle.lease).as_str()) {
                tracing::warn!(target: "runtime", path = %entry.path().display(), "pid file names another lease; ignored");
                continue;
            }
            let Ok((pid, start)) = parse_id(&handle) else {
                continue;
            };
            if alive(pid, start) && environ_names(pid, handle.lease) == Some(false) {
                tracing::warn!(target: "runtime", lease = %handle.lease, pid, "process does not carry its lease id; not adopted");
                continue;
            }
            found.push(handle);
        }
        found.sort_by_key(|h| h.lease);
        Ok(found)
    }
}

/// The workload's processes other than this one, as (pid, start time): the groups `roots`
/// lead (pass the first process only while it is alive: only then is its group the
/// workload's), whatever carries the lease id in its environment, and every descendant of those
/// (the first process is a subreaper, so what its descendants detach stays below it; sshd gives
/// each SSH session a session of its own, and its renamed processes show no environment).
/// Processes of other users whose environment cannot be read are only found as descendants.
/// With `lease` `None` no environment is read (the cheap look `status` takes).
fn workload_processes(roots: &[u32], lease: Option<B256>) -> Vec<(u32, u64)> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let table: Vec<(u32, ProcStat)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, read_stat(pid)?)))
        .filter(|(_, s)| s.state != 'Z' && s.state != 'X')
        .collect();
    // The roots count even when the table left them out: a first process that has just
    // exited is a zombie (not in the table) while its orphans still name it as their parent.
    let mut found: HashSet<u32> = roots.iter().copied().collect();
    found.extend(
        table
            .iter()
            .filter(|(pid, s)| {
                roots.contains(&s.pgrp)
                    || lease.is_some_and(|l| environ_names(*pid, l) == Some(true))
            })
            .map(|(pid, _)| *pid),
    );
    // Descendants, level by level; ends because `found` only grows, bounded by the table.
    loop {
        let before = found.len();
        for (pid, s) in &table {
            if found.contains(&s.ppid) {
                found.insert(*pid);
            }
        }
        if found.len() == before {
            break;
        }
    }
    table
        .iter()
        .filter(|(pid, _)| *pid != me && found.contains(pid))
        .map(|(pid, s)| (*pid, s.start))
        .collect()
}

/// Ends `procs` (found before the workload's group was signalled) that are still alive:
/// SIGTERM, up to `grace` to exit, then SIGKILL for those still there and for any process
/// found carrying the lease id now. Returns how many of `procs` were still alive.
async fn end_processes(procs: &[(u32, u64)], lease: B256, grace: Duration) -> usize {
    let left: Vec<(u32, u64)> = procs
        .iter()
        .copied()
        .filter(|&(pid, start)| alive(pid, start))
        .collect();
    for &(pid, start) in &left {
        signal_one(pid, start, Signal::SIGTERM);
    }
    let deadline = tokio::time::Instant::now() + grace;
    for &(pid, start) in &left {
        let rest = deadline.saturating_duration_since(tokio::time::Instant::now());
        if !wait_gone(pid, start, rest).await {
            break;
        }
    }
    // A fresh look too: catches what was forked while the first ones were ending.
    let roots: Vec<u32> = left.iter().map(|&(pid, _)| pid).collect();
    let mut last = workload_processes(&roots, Some(lease));
    last.extend(left.iter().copied());
    for &(pid, start) in &last {
        signal_one(pid, start, Signal::SIGKILL);
    }
    for &(pid, start) in &last {
        wait_gone(pid, start, KILL_WAIT).await;
    }
    left.len()
}

/// Signals `pid` if it is still the process started at `start` (not a reused pid).
fn signal_one(pid: u32, start: u64, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    if alive(pid, start) {
        // ESRCH (gone since) is fine.
        let _ = nix::sys::signal::kill(Pid::from_raw(raw), signal);
    }
}

/// The executable file `program` names, as `execvp` would find it for a workload started in
/// `cwd`: a name with a `/` as it is (relative to `cwd`), else the first executable file of
/// that name in the directories of `path`. `None` if there is none.
fn resolve_program(program: &str, path: Option<&OsStr>, cwd: &Path) -> Option<PathBuf> {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.is_empty() {
        return None;
    }
    if program.contains('/') {
        let p = cwd.join(program);
        return executable(&p).then_some(p);
    }
    // An empty entry is the working directory, as for `execvp`.
    std::env::split_paths(path?)
        .map(|d| cwd.join(d).join(program))
        .find(|p| executable(p))
}

/// The `perl` the subreaper shim runs with, found once in the node's `PATH`; `None` (and one
/// warning) when there is none.
fn perl() -> Option<&'static Path> {
    static PERL: OnceLock<Option<PathBuf>> = OnceLock::new();
    PERL.get_or_init(|| {
        let found = resolve_program("perl", std::env::var_os("PATH").as_deref(), Path::new("/"));
        if found.is_none() {
            tracing::warn!(target: "runtime", "perl not found in PATH: process workloads run without a subreaper, so processes that detach and drop GPUFLOW_LEASE_ID can outlive `stop`");
        }
        found
    })
    .as_deref()
}

/// Deletes everything in the lease directory `dir` except the workload's log. A missing
/// directory is fine.
fn clear_lease_dir(dir: &Path) -> Result<(), RuntimeError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(format!("listing {}", dir.display()))(e)),
    };
    for entry in entries.flatten() {
        if entry.file_name() == LOG_FILE {
            continue;
        }
        let path = entry.path();
        // Not following links: a link is removed, never what it points at.
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let res = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match res {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("removing {}", path.display()))(e)),
        }
    }
    Ok(())
}

/// The OS user this node runs as, and so the process runtime's workloads: the login name for
/// SSH into them. From the password file (the user id of this process), else `USER` or
/// `LOGNAME`; `None` when neither names it.
pub fn login_user() -> Option<String> {
    static USER: OnceLock<Option<String>> = OnceLock::new();
    USER.get_or_init(|| {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        std::fs::metadata("/proc/self")
            .ok()
            .and_then(|m| user_of(&passwd, m.uid()))
            .or_else(|| std::env::var("USER").ok())
            .or_else(|| std::env::var("LOGNAME").ok())
            .filter(|u| !u.is_empty())
    })
    .clone()
}

/// The name of user `uid` in password-file text (`name:x:uid:gid:…` lines).
fn user_of(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

/// Waits until `pid` (started at `start`) is gone or a zombie, up to `limit`. True if it is.
async fn wait_gone(pid: u32, start: u64, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    // Not our child, so there is nothing to await; polling /proc is cheap and bounded.
    while alive(pid, start) {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(EXIT_POLL).await;
    }
    true
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;
