//! The renter's OpenSSH client in tests: a fresh key pair, `ssh` and `scp` with no config,
//! agent, password prompt or known-hosts file, and a bounded run.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;

/// Longest one `ssh` or `scp` may take.
pub const SSH_TIMEOUT: Duration = Duration::from_secs(20);

/// Options every test client uses: key only, no host-key checks (each lease is new), quiet.
const OPTIONS: [&str; 12] = [
    "BatchMode=yes",
    "IdentitiesOnly=yes",
    "StrictHostKeyChecking=no",
    "UserKnownHostsFile=/dev/null",
    "ConnectTimeout=5",
    "LogLevel=ERROR",
    "ServerAliveInterval=5",
    "ServerAliveCountMax=2",
    "ExitOnForwardFailure=yes",
    "ControlMaster=no",
    "AddKeysToAgent=no",
    "ForwardAgent=no",
];

fn with_options(cmd: &mut Command, key: &Path) {
    cmd.arg("-F").arg("/dev/null").arg("-i").arg(key);
    for o in OPTIONS {
        cmd.args(["-o", o]);
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
}

/// A new Ed25519 key pair at `dir/id_ed25519`; returns (private key, public key file).
pub fn keygen(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("creating the key directory");
    let key = dir.join("id_ed25519");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "renter@test", "-f"])
        .arg(&key)
        .stdin(Stdio::null())
        .output()
        .expect("running ssh-keygen (install openssh-client)");
    assert!(made.status.success(), "ssh-keygen: {made:?}");
    let public = PathBuf::from(format!("{}.pub", key.display()));
    (key, public)
}

/// `ssh -p port user@127.0.0.1 command` with `key`.
pub fn ssh(key: &Path, port: u16, user: &str, command: &str) -> Command {
    let mut cmd = Command::new("ssh");
    with_options(&mut cmd, key);
    cmd.args(["-p", &port.to_string()])
        .arg(format!("{user}@127.0.0.1"))
        .arg(command);
    cmd
}

/// `scp -P port from to` with `key` (OpenSSH ≥ 9 copies over SFTP); a remote path is written
/// `user@127.0.0.1:/path`.
pub fn scp(key: &Path, port: u16, from: &str, to: &str) -> Command {
    let mut cmd = Command::new("scp");
    with_options(&mut cmd, key);
    cmd.args(["-P", &port.to_string(), "-q", from, to]);
    cmd
}

/// `ssh -N -L local:target_host:target_port` to the lease: a local port forward that lives
/// until the returned child is killed.
pub fn forward(key: &Path, port: u16, user: &str, local: u16, target: &str) -> Command {
    let mut cmd = Command::new("ssh");
    with_options(&mut cmd, key);
    cmd.args(["-N", "-p", &port.to_string(), "-L"])
        .arg(format!("127.0.0.1:{local}:{target}"))
        .arg(format!("{user}@127.0.0.1"));
    cmd
}

/// Runs `cmd` to completion within [`SSH_TIMEOUT`].
pub async fn run(mut cmd: Command) -> Output {
    tokio::time::timeout(SSH_TIMEOUT, cmd.output())
        .await
        .expect("ssh/scp still running after its timeout")
        .expect("running ssh/scp")
}

/// `ssh -p PORT USER@HOST` (the CLI's `ssh` line) → (port, user, host).
pub fn parse_ssh_line(line: &str) -> (u16, String, String) {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.len(), 4, "{line}");
    assert_eq!((words[0], words[1]), ("ssh", "-p"), "{line}");
    let (user, host) = words[3].split_once('@').expect("user@host");
    (
        words[2].parse().expect("a port"),
        user.to_owned(),
        host.to_owned(),
    )
}
