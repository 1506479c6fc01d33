//! Firewall rules that keep a lease's container away from the host and its network: a renter
//! gets the host's GPU, not its LAN.
//!
//! Each lease runs on its own Docker bridge (`br-<network id prefix>`). For each bridge the node
//! adds, with `iptables`:
//!
//! - in its chain `GPUFLOW-INPUT` (jumped to from `INPUT`): packets from the bridge to the host
//!   itself are dropped unless they belong to a connection the host opened (Docker's port
//!   proxy answering a renter) — so the node's API, the host's SSH and every other listening
//!   port are unreachable from inside;
//! - in its chain `GPUFLOW-FORWARD` (jumped to from Docker's `DOCKER-USER`): new connections
//!   from the bridge to private, shared and link-local ranges (the home LAN, other leases'
//!   bridges, cloud metadata at 169.254.169.254) are dropped. The internet stays reachable and
//!   published ports keep working (replies are established connections).
//!
//! Rules carry the comment `gpuflow <bridge>` and are removed with the lease's network.

use std::process::Command;

use super::RuntimeError;

/// The node's chain for traffic to the host.
pub const INPUT_CHAIN: &str = "GPUFLOW-INPUT";
/// The node's chain for forwarded traffic.
pub const FORWARD_CHAIN: &str = "GPUFLOW-FORWARD";
/// Destinations a lease may not open connections to: RFC 1918, carrier-grade NAT, link-local
/// (cloud metadata) and multicast.
pub const BLOCKED_RANGES: [&str; 6] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "224.0.0.0/4",
];

/// The Linux bridge Docker makes for a user-defined network with id `network_id`.
pub fn bridge_name(network_id: &str) -> String {
    format!("br-{}", &network_id[..network_id.len().min(12)])
}

/// The rules for `bridge`, each as `iptables` arguments after `-A`/`-D`.
pub fn rules(bridge: &str) -> Vec<Vec<String>> {
    let comment = format!("gpuflow {bridge}");
    let with = |chain: &str, middle: &[&str]| {
        let mut r: Vec<String> = vec![chain.into(), "-i".into(), bridge.into()];
        r.extend(middle.iter().map(|s| (*s).to_owned()));
        r.extend(["-m", "comment", "--comment", &comment].map(String::from));
        r
    };
    let mut out = vec![
        with(
            INPUT_CHAIN,
            &[
                "-m",
                "conntrack",
                "--ctstate",
                "ESTABLISHED,RELATED",
                "-j",
                "RETURN",
            ],
        ),
        with(INPUT_CHAIN, &["-j", "DROP"]),
    ];
    for range in BLOCKED_RANGES {
        out.push(with(
            FORWARD_CHAIN,
            &[
                "-d",
                range,
                "-m",
                "conntrack",
                "!",
                "--ctstate",
                "ESTABLISHED,RELATED",
                "-j",
                "DROP",
            ],
        ));
    }
    out
}

fn iptables(args: &[String]) -> Result<(), String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .map_err(|e| format!("running iptables: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

fn setup_error(why: &str) -> RuntimeError {
    RuntimeError::Firewall(format!(
        "{why}; the node must run as root with iptables (Debian: `apt-get install iptables`) to \
         keep lease containers off the host and its LAN"
    ))
}

/// Creates the node's chains and their jumps once (idempotent).
fn ensure_chains() -> Result<(), RuntimeError> {
    for (chain, parent) in [(INPUT_CHAIN, "INPUT"), (FORWARD_CHAIN, "DOCKER-USER")] {
        // `-N` fails when the chain exists; that is fine.
        let _ = iptables(&["-N".into(), chain.into()]);
        let jump = [parent.to_owned(), "-j".into(), chain.into()];
        let check: Vec<String> = std::iter::once("-C".to_owned())
            .chain(jump.clone())
            .collect();
        if iptables(&check).is_err() {
            let insert: Vec<String> = ["-I".to_owned(), parent.to_owned(), "1".into()]
                .into_iter()
                .chain(jump[1..].iter().cloned())
                .collect();
            iptables(&insert).map_err(|e| setup_error(&format!("jumping from {parent}: {e}")))?;
        }
    }
    Ok(())
}

/// Adds the rules for `bridge` (replacing any left from before a crash).
pub fn isolate(bridge: &str) -> Result<(), RuntimeError> {
    ensure_chains()?;
    release(bridge);
    for rule in rules(bridge) {
        let args: Vec<String> = std::iter::once("-A".to_owned()).chain(rule).collect();
        iptables(&args).map_err(|e| setup_error(&format!("adding a rule for {bridge}: {e}")))?;
    }
    Ok(())
}

/// Removes the rules for `bridge`; rules already gone are fine.
pub fn release(bridge: &str) {
    for rule in rules(bridge) {
        let args: Vec<String> = std::iter::once("-D".to_owned()).chain(rule).collect();
        // A rule added twice is deleted twice (bounded: a broken iptables cannot loop us).
        for _ in 0..16 {
            if iptables(&args).is_err() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names_follow_docker() {
        assert_eq!(bridge_name("0123456789abcdef0123"), "br-0123456789ab");
    }

    #[test]
    fn host_traffic_is_dropped_after_replies_and_private_ranges_are_closed() {
        let r = rules("br-x");
        assert_eq!(r.len(), 2 + BLOCKED_RANGES.len());
        assert_eq!(r[0][..3], ["GPUFLOW-INPUT", "-i", "br-x"]);
        assert!(r[0].contains(&"RETURN".to_owned()));
        assert_eq!(r[1][3..5], ["-j", "DROP"]);
        assert!(r[2].contains(&"10.0.0.0/8".to_owned()));
        assert!(r.iter().all(|rule| rule.last().unwrap() == "gpuflow br-x"));
    }
}
