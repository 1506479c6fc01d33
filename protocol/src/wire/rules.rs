//! The rules a [`QuoteRequest`](super::QuoteRequest)'s free-form fields must follow, in one
//! place: the host checks them before it quotes, and the renter's CLI before it sends, so a
//! bad `--env`, `--port` or SSH key is a usage error on the renter's side, not a refusal.
//! Each check returns what is wrong, naming the value, as a sentence.

use std::collections::BTreeMap;

use super::lease::{MAX_REQUEST_ENV, MAX_REQUEST_PORTS, MAX_SSH_KEY_BYTES};

/// Longest environment variable name a request may set.
pub const MAX_ENV_NAME_BYTES: usize = 128;

/// Environment variable names the host sets itself; a request may not set them (nor any
/// `GPUFLOW_*` name).
pub const RESERVED_ENV: &[&str] = &[
    "GPUFLOW_LEASE_ID",
    "PORT",
    "GPUFLOW_PORTS",
    "PUBLIC_KEY",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
];

/// OpenSSH public key types a renter may send.
pub const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// At most [`MAX_REQUEST_ENV`] variables; names of A-Z a-z 0-9 _ (not starting with a digit,
/// at most [`MAX_ENV_NAME_BYTES`]), none reserved; no NUL in a value.
pub fn check_env(env: &BTreeMap<String, String>) -> Result<(), String> {
    if env.len() > MAX_REQUEST_ENV {
        return Err(format!(
            "{} variables, at most {MAX_REQUEST_ENV}",
            env.len()
        ));
    }
    for (k, v) in env {
        let valid = !k.is_empty()
            && k.len() <= MAX_ENV_NAME_BYTES
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "name {:?} must be 1 to {MAX_ENV_NAME_BYTES} of A-Z a-z 0-9 _, not starting with a digit",
                k.chars().take(64).collect::<String>()
            ));
        }
        if RESERVED_ENV.contains(&k.as_str()) || k.starts_with("GPUFLOW_") {
            return Err(format!("{k} is set by the host; pick another name"));
        }
        if v.contains('\0') {
            return Err(format!("{k} contains a NUL byte"));
        }
    }
    Ok(())
}

/// At most [`MAX_REQUEST_PORTS`] ports, none 0, none twice.
pub fn check_ports(ports: &[u16]) -> Result<(), String> {
    if ports.len() > MAX_REQUEST_PORTS {
        return Err(format!(
            "{} ports, at most {MAX_REQUEST_PORTS}",
            ports.len()
        ));
    }
    for (i, &p) in ports.iter().enumerate() {
        if p == 0 {
            return Err("port 0 cannot be published".into());
        }
        if ports[..i].contains(&p) {
            return Err(format!("port {p} listed twice"));
        }
    }
    Ok(())
}

/// One line of an OpenSSH `authorized_keys` entry: `<type> <base64> [comment]`, a known type,
/// at most [`MAX_SSH_KEY_BYTES`].
pub fn check_ssh_key(key: &str) -> Result<(), &'static str> {
    if key.len() > MAX_SSH_KEY_BYTES {
        return Err("too long");
    }
    if key.contains(['\n', '\r', '\0']) {
        return Err("must be one line");
    }
    let mut parts = key.split_ascii_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return Err("expected `<type> <base64> [comment]`");
    };
    if !SSH_KEY_TYPES.contains(&kind) {
        return Err("unknown key type");
    }
    let base64 = blob.len() >= 16
        && blob.len().is_multiple_of(4)
        && blob
            .trim_end_matches('=')
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/');
    if !base64 {
        return Err("key data is not base64");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_names_what_is_wrong() {
        let env = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        check_env(&env("HF_TOKEN", "x")).unwrap();
        assert!(
            check_env(&env("1A", "b"))
                .unwrap_err()
                .contains("not starting with a digit")
        );
        assert!(
            check_env(&env("PORT", "1"))
                .unwrap_err()
                .contains("set by the host")
        );
        assert!(
            check_env(&env("GPUFLOW_X", "1"))
                .unwrap_err()
                .contains("set by the host")
        );
        assert!(check_env(&env("A", "a\0b")).unwrap_err().contains("NUL"));
        let many: BTreeMap<_, _> = (0..=MAX_REQUEST_ENV)
            .map(|i| (format!("V{i}"), String::new()))
            .collect();
        assert!(check_env(&many).unwrap_err().contains("at most"));
        check_ports(&[22, 8080]).unwrap();
        assert!(check_ports(&[0]).unwrap_err().contains("port 0"));
        assert!(check_ports(&[22, 22]).unwrap_err().contains("twice"));
        assert!(
            check_ports(&[1; MAX_REQUEST_PORTS + 1])
                .unwrap_err()
                .contains("at most")
        );
        check_ssh_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMq r@x").unwrap();
        assert_eq!(
            check_ssh_key("ssh-dss AAAAB3NzaC1kc3MAAACB"),
            Err("unknown key type")
        );
        assert_eq!(
            check_ssh_key("-----BEGIN OPENSSH PRIVATE KEY-----"),
            Err("unknown key type")
        );
        assert_eq!(
            check_ssh_key("ssh-ed25519"),
            Err("expected `<type> <base64> [comment]`")
        );
    }
}
