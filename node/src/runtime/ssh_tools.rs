//! The helper programs the SSH gate runs inside a lease's container: an SFTP server (for `scp`,
//! `sftp`, `rsync`-free file copies and VS Code) and a static `busybox` whose `nc` carries
//! forwarded TCP connections (`ssh -L`) from inside the container's network namespace, where a
//! service bound to 127.0.0.1 listens.
//!
//! Images such as `pytorch/pytorch` ship neither, and may not even have the C library these
//! programs were built against, so the node copies the host's programs into one directory —
//! OpenSSH's `sftp-server` with its dynamic loader and C library beside it, run through that
//! loader with `--library-path` — and mounts it read-only at [`MOUNT_POINT`] in every lease
//! container. The directory holds only public Debian binaries: nothing of the host's secrets.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the tools directory is mounted inside a lease container.
pub const MOUNT_POINT: &str = "/.gpuflow";

/// Where Debian's `openssh-sftp-server` installs the SFTP server.
const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";
/// Where Debian's `busybox-static` (and `busybox`) install busybox.
const BUSYBOX: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// What the tools directory offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshTools {
    /// The host directory mounted at [`MOUNT_POINT`], when anything could be copied.
    pub dir: Option<PathBuf>,
    /// `sftp-server` and its loader are there.
    pub sftp: bool,
    /// A static busybox is there (for `nc`).
    pub busybox: bool,
}

impl SshTools {
    /// The command that runs the SFTP server inside the container.
    pub fn sftp_command(&self) -> Option<Vec<String>> {
        self.sftp.then(|| {
            vec![
                format!("{MOUNT_POINT}/ld.so"),
                "--library-path".into(),
                format!("{MOUNT_POINT}/lib"),
                format!("{MOUNT_POINT}/sftp-server"),
            ]
        })
    }

    /// The command that connects stdin/stdout to `host:port` inside the container.
    pub fn connect_command(&self, host: &str, port: u16) -> Option<Vec<String>> {
        self.busybox.then(|| {
            vec![
                format!("{MOUNT_POINT}/busybox"),
                "nc".into(),
                host.to_owned(),
                port.to_string(),
            ]
        })
    }

    /// What is missing, each with the package that provides it, for the start-up warning and
    /// `gpuflow-node doctor`.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.sftp {
            out.push("SFTP (scp, sftp, VS Code) needs Debian's openssh-sftp-server");
        }
        if !self.busybox {
            out.push("port forwarding (ssh -L) needs Debian's busybox-static");
        }
        out
    }
}

/// Copies the tools into `dir` (created mode 0755: the container's user must read it), and
/// says which could be copied. Never fails: a missing tool only turns its feature off.
pub fn prepare(dir: &Path) -> SshTools {
    let mut tools = SshTools::default();
    if let Err(e) = std::fs::create_dir_all(dir.join("lib")) {
        tracing::warn!(target: "runtime", dir = %dir.display(), error = %e, "cannot create the SSH tools directory; SFTP and port forwarding are off");
        return tools;
    }
    tools.sftp = match copy_sftp(dir) {
        Ok(()) => true,
        Err(why) => {
            tracing::warn!(target: "runtime", %why, "SFTP into lease containers is off");
            false
        }
    };
    tools.busybox = match copy_busybox(dir) {
        Ok(()) => true,
        Err(why) => {
            tracing::warn!(target: "runtime", %why, "port forwarding into lease containers is off");
            false
        }
    };
    tools.dir = Some(dir.to_owned());
    tools
}

fn copy_sftp(dir: &Path) -> Result<(), String> {
    let server = Path::new(SFTP_SERVER);
    if !server.exists() {
        return Err(format!(
            "{SFTP_SERVER} not found: install it with `apt-get install openssh-sftp-server`"
        ));
    }
    let libs = shared_libraries(server)?;
    let loader = libs
        .iter()
        .find(|l| {
            l.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ld-linux"))
        })
        .ok_or_else(|| format!("no dynamic loader among the libraries of {SFTP_SERVER}"))?;
    copy(loader, &dir.join("ld.so"))?;
    for lib in libs.iter().filter(|l| *l != loader) {
        let name = lib.file_name().ok_or("a library path without a name")?;
        copy(lib, &dir.join("lib").join(name))?;
    }
    copy(server, &dir.join("sftp-server"))
}

/// The host's statically linked busybox, if it has one (a dynamically linked one would need
/// the image's C library).
pub fn static_busybox() -> Option<&'static Path> {
    BUSYBOX
        .iter()
        .map(Path::new)
        .filter(|p| p.exists())
        .find(|p| shared_libraries(p).is_ok_and(|l| l.is_empty()))
}

/// Whether the host has OpenSSH's SFTP server to copy.
pub fn has_sftp_server() -> bool {
    Path::new(SFTP_SERVER).exists()
}

fn copy_busybox(dir: &Path) -> Result<(), String> {
    match static_busybox() {
        Some(b) => copy(b, &dir.join("busybox")),
        None => Err(
            "no statically linked busybox: install it with `apt-get install busybox-static`".into(),
        ),
    }
}

/// The shared libraries `program` loads, by `ldd` (empty for a static program).
fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .map_err(|e| format!("running ldd on {}: {e}", program.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("not a dynamic executable") {
        // ldd exits 1 for a static program.
        return Ok(Vec::new());
    }
    Ok(parse_ldd(&text))
}

/// The absolute paths in `ldd` output: `libc.so.6 => /lib/…/libc.so.6 (0x…)` and the loader's
/// own line `/lib64/ld-linux-x86-64.so.2 (0x…)`.
pub fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    // Through a temporary name, so a running container never sees a half-written file.
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp)
        .and_then(|_| std::fs::rename(&tmp, to))
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_yields_the_library_and_loader_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn commands_run_from_the_mount_point_and_only_when_present() {
        let none = SshTools::default();
        assert_eq!(none.sftp_command(), None);
        assert_eq!(none.connect_command("127.0.0.1", 80), None);
        assert_eq!(none.missing().len(), 2);
        let all = SshTools {
            dir: Some("/x".into()),
            sftp: true,
            busybox: true,
        };
        assert_eq!(
            all.connect_command("127.0.0.1", 8888),
            Some(vec![
                "/.gpuflow/busybox".into(),
                "nc".into(),
                "127.0.0.1".into(),
                "8888".into()
            ])
        );
        assert_eq!(
            all.sftp_command().map(|c| c[0].clone()),
            Some("/.gpuflow/ld.so".into())
        );
        assert!(all.missing().is_empty());
    }
}
