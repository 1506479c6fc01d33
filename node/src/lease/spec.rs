//! What the renter asked to run: GPUs, image or command, SSH key, ports, limits.
//!
//! The spec arrives over the network, so [`LeaseSpec::validate`] checks it before any runtime
//! sees it; runtimes may assume a validated spec. Its hash is the quote's `specHash` (computed by
//! the quote protocol, not here), so the fields are plain data with a stable serialized form.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Environment variable names the node sets itself; a spec may not override them.
pub use gpuflow_protocol::wire::rules::RESERVED_ENV;

/// Most ports one lease may expose (Vast.ai allows up to 64).
pub const MAX_PORTS: usize = 64;
/// Most environment variables one lease may set.
pub const MAX_ENV: usize = 256;

/// The workload of one lease.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseSpec {
    /// The leased GPUs on this host: NVIDIA indices ("0") or UUIDs ("GPU-…"). The workload sees
    /// exactly these and no others.
    pub gpus: Vec<String>,
    /// Container image (Docker runtime). The process runtime ignores it.
    pub image: Option<String>,
    /// Program and arguments. Required by the process runtime; for Docker it replaces the
    /// image's command (empty: keep the container alive with `sleep infinity`).
    pub command: Vec<String>,
    /// Extra environment for the workload.
    pub env: BTreeMap<String, String>,
    /// The renter's SSH public key (`ssh-ed25519 AAAA… comment`), installed in the container.
    pub ssh_public_key: Option<String>,
    /// Ports the workload listens on, each published on a free host port.
    pub ports: Vec<u16>,
    /// CPU cores the workload may use (whole cores); `None`: no limit.
    pub cpu_cores: Option<u32>,
    /// Memory limit in bytes; `None`: no limit.
    pub memory_bytes: Option<u64>,
    /// Writable-layer disk limit in bytes (Docker, where the storage driver supports it).
    pub disk_bytes: Option<u64>,
}

/// Why a spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid lease spec: {0}; ask the renter for a corrected request")]
pub struct InvalidSpec(pub String);

impl LeaseSpec {
    /// Checks what a runtime relies on: sane env names, no reserved variables, bounded lists,
    /// an SSH key on one line, non-zero ports.
    pub fn validate(&self) -> Result<(), InvalidSpec> {
        let bad = |why: String| Err(InvalidSpec(why));
        if self.env.len() > MAX_ENV {
            return bad(format!(
                "{} environment variables (at most {MAX_ENV})",
                self.env.len()
            ));
        }
        for (k, v) in &self.env {
            let valid_name = !k.is_empty()
                && !k.starts_with(|c: char| c.is_ascii_digit())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                return bad(format!("environment variable name {k:?} (use A-Z, 0-9, _)"));
            }
            if RESERVED_ENV.contains(&k.as_str()) {
                return bad(format!("environment variable {k} is set by the host"));
            }
            if v.contains('\0') {
                return bad(format!("environment variable {k} contains a NUL byte"));
            }
        }
        if self.command.iter().any(|a| a.contains('\0')) {
            return bad("command contains a NUL byte".into());
        }
        if self.ports.len() > MAX_PORTS {
            return bad(format!("{} ports (at most {MAX_PORTS})", self.ports.len()));
        }
        if self.ports.contains(&0) {
            return bad("port 0".into());
        }
        for (i, p) in self.ports.iter().enumerate() {
            if self.ports[..i].contains(p) {
                return bad(format!("port {p} listed twice"));
            }
        }
        if let Some(key) = &self.ssh_public_key
            && (key.trim().is_empty() || key.contains(['\n', '\r', '\0']))
        {
            return bad("SSH public key must be one non-empty line".into());
        }
        if self
            .gpus
            .iter()
            .any(|g| g.is_empty() || !g.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return bad("GPU ids must be indices or UUIDs".into());
        }
        if self.cpu_cores == Some(0) || self.memory_bytes == Some(0) || self.disk_bytes == Some(0) {
            return bad("a resource limit of 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_is_valid_and_bad_fields_are_named() {
        assert_eq!(LeaseSpec::default().validate(), Ok(()));
        let cases: Vec<(LeaseSpec, &str)> = vec![
            (
                LeaseSpec {
                    env: [("PORT".into(), "1".into())].into(),
                    ..Default::default()
                },
                "PORT",
            ),
            (
                LeaseSpec {
                    env: [("A=B".into(), "1".into())].into(),
                    ..Default::default()
                },
                "A=B",
            ),
            (
                LeaseSpec {
                    ports: vec![22, 22],
                    ..Default::default()
                },
                "twice",
            ),
            (
                LeaseSpec {
                    ssh_public_key: Some("ssh-ed25519 AAA\nevil".into()),
                    ..Default::default()
                },
                "SSH",
            ),
            (
                LeaseSpec {
                    gpus: vec!["0;rm".into()],
                    ..Default::default()
                },
                "GPU",
            ),
            (
                LeaseSpec {
                    memory_bytes: Some(0),
                    ..Default::default()
                },
                "limit",
            ),
        ];
        for (spec, needle) in cases {
            let err = spec.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }
}
