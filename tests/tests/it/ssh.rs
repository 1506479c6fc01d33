//! The renter's whole journey to a shell: a host node under the process runtime on anvil,
//! `gpuflow rent --template pytorch --ssh-key …` with the real CLI, a real `ssh` login into the
//! lease (the stand-in workload runs OpenSSH's `sshd` as the node's user), then `gpuflow stop`:
//! the deposit left comes back, the open session ends and SSH is refused.
//!
//! Needs OpenSSH (`sshd`, `ssh`, `ssh-keygen`): `.ci/run` installs it; elsewhere
//! `apt-get install openssh-server openssh-client`. Without it the test fails, saying so.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use gpuflow_tests::chain::{RENTER, TestChain};
use gpuflow_tests::cli::{CliRenter, units};
use gpuflow_tests::host::{HostNode, HostOpts, assert_serves, wait_refused};
use gpuflow_tests::rental::mint;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Longest wait for sshd to accept a login once the lease runs, and for SSH to go away after
/// the lease is stopped.
const SSH_LIMIT: Duration = Duration::from_secs(20);
/// Longest one `ssh` command may take.
const SSH_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether `program` is on PATH or in `/usr/sbin` (where Debian puts sshd).
fn installed(program: &str) -> bool {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([Path::new("/usr/sbin").to_owned()])
        .any(|d| d.join(program).is_file())
}

/// Fails the test, naming the package, unless OpenSSH's programs are installed.
fn require_openssh() {
    for (program, package) in [
        ("sshd", "openssh-server"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
    ] {
        assert!(
            installed(program),
            "`{program}` not found: install {package} (`apt-get install {package}`); the \
             process runtime's SSH needs it and this test does not skip"
        );
    }
}

/// `ssh` to `user@127.0.0.1:port` with `key` running `command`: no config, agent, password
/// prompt or known-hosts file.
fn ssh(key: &Path, port: u16, user: &str, command: &str) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.arg("-F")
        .arg("/dev/null")
        .arg("-i")
        .arg(key)
        .args(["-p", &port.to_string()])
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg(format!("{user}@127.0.0.1"))
        .arg(command)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn run(mut cmd: Command) -> Output {
    tokio::time::timeout(SSH_TIMEOUT, cmd.output())
        .await
        .expect("ssh still running after its timeout")
        .expect("running ssh")
}

/// `ssh -p PORT USER@HOST` → (port, user, host).
fn parse_ssh(line: &str) -> (u16, String, String) {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.len(), 4, "{line}");
    assert_eq!((words[0], words[1]), ("ssh", "-p"), "{line}");
    let (user, host) = words[3].split_once('@').unwrap();
    (words[2].parse().unwrap(), user.to_owned(), host.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rent_pytorch_ssh_in_stop_and_ssh_is_refused() {
    require_openssh();
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host = HostNode::start(&chain, &dir.path().join("host"), &HostOpts::default())
        .await
        .unwrap();
    let _workloads = host.guard_workloads();
    mint(&chain, RENTER, U256::from(100_000_000u64)).await;
    let r = CliRenter::new(&chain, &dir.path().join("renter"), RENTER, &[&host]);

    // The renter's own key pair.
    let key = r.home.join("id_ed25519");
    let made = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "renter@ssh-test",
            "-f",
        ])
        .arg(&key)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(made.status.success(), "ssh-keygen: {made:?}");
    let public = format!("{}.pub", key.display());

    let rent_started = Instant::now();
    let rented = r
        .json(&[
            "rent",
            &host.offer_id().to_string(),
            "--hours",
            "0.5",
            "--template",
            "pytorch",
            "--ssh-key",
            &public,
            "--yes",
            "--json",
        ])
        .await;
    let rent_done = rent_started.elapsed();
    let lease_id = rented["lease_id"].as_str().unwrap().to_owned();

    // The stand-in's HTTP server is first (the engine waited for it); SSH comes after it.
    let ports = rented["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 2, "{rented}");
    assert_eq!(ports[0]["container"], 8080, "{rented}");
    assert_eq!(ports[1]["container"], 22, "{rented}");
    let http = u16::try_from(ports[0]["host"].as_u64().unwrap()).unwrap();
    assert_serves(http, "the stand-in's HTTP server").await;

    // The login is the node's own OS user (the node runs as this test's user).
    let ssh_line = rented["ssh"].as_str().unwrap_or_else(|| panic!("{rented}"));
    let (port, user, addr) = parse_ssh(ssh_line);
    assert_eq!(addr, "127.0.0.1");
    assert_eq!(u64::from(port), ports[1]["host"].as_u64().unwrap());
    let me = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    assert_eq!(user, String::from_utf8(me.stdout).unwrap().trim());

    // A real login runs a command and sees the lease. sshd starts before the HTTP server, so
    // it normally takes the first try; a refused connection is retried, bounded.
    let deadline = tokio::time::Instant::now() + SSH_LIMIT;
    let out = loop {
        let out = run(ssh(&key, port, &user, "echo \"$GPUFLOW_LEASE_ID\"")).await;
        if out.status.success() || tokio::time::Instant::now() >= deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let to_shell = rent_started.elapsed();
    let log = || {
        let w = host
            .data_dir
            .join("workloads")
            .join(&lease_id)
            .join("workload.log");
        std::fs::read_to_string(w).unwrap_or_default()
    };
    assert!(
        out.status.success(),
        "ssh {ssh_line} failed: {}\nworkload.log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), lease_id);
    eprintln!(
        "rent → reachable workload: {} ms (CLI), {} ms until rent returned; rent → first SSH \
         command done: {} ms",
        rented["elapsed_ms"],
        rent_done.as_millis(),
        to_shell.as_millis()
    );

    // A session that is still open when the lease stops.
    let mut session = ssh(&key, port, &user, "echo up; exec sleep 300")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(session.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(SSH_LIMIT, lines.next_line())
        .await
        .expect("the session never printed")
        .unwrap();
    assert_eq!(first.as_deref(), Some("up"));

    // Stop: the unused deposit comes back…
    let stopped = r.json(&["stop", &lease_id, "--json"]).await;
    assert!(units(&stopped["refund"]) > U256::ZERO, "{stopped}");
    let waited = r
        .run(&["wait", &lease_id, "--until", "closed", "--timeout", "30"])
        .await;
    assert_eq!(waited.code(), 0, "{}", waited.stderr);

    // …the open session ends, and SSH is refused.
    let ended = tokio::time::timeout(SSH_LIMIT, session.wait()).await;
    assert!(
        ended.is_ok(),
        "the SSH session outlived the lease; node log:\n{}",
        host.log()
    );
    assert!(
        wait_refused(port, SSH_LIMIT).await,
        "sshd still listening after stop; node log:\n{}",
        host.log()
    );
    let out = run(ssh(&key, port, &user, "true")).await;
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Connection refused"), "{err}");
}
