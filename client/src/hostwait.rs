//! Waiting for a host to run a lease's workload (`rent`, `wait --until running`), and how to
//! reach it once it runs.

use std::time::Duration;

use anyhow::anyhow;
use gpuflow_p2p::{Multiaddr, PeerId};
use gpuflow_protocol::templates::SSH_PORT;
use gpuflow_protocol::wire::{LeaseRequest, LeaseResponse, LeaseStatus, PortMap, code};
use serde::Serialize;

use crate::Failure;
use crate::chain::{Chain, status};
use crate::net::Session;
use crate::store::LeaseRecord;

/// How often the host is asked while waiting. The host sends no notification, and every
/// interval is latency the renter sees on `rent`; a status answer is a few hundred bytes.
const POLL: Duration = Duration::from_millis(50);
/// How often the chain is checked for a lease closed under us while waiting.
const CHAIN_POLL: Duration = Duration::from_secs(1);
/// Longest wait for one status answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// Host states after which the workload will never run.
const DEAD: &[&str] = &[
    "start_failed",
    "never_started",
    "closed",
    "cancelled",
    "quote_expired",
];

/// A running workload: where to connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Reached {
    /// Host name or IP.
    pub(crate) host: String,
    /// Published ports; container port 22 is SSH.
    pub(crate) ports: Vec<PortMap>,
    /// The SSH login the host names (`None`: an older host; Docker containers log in as root).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user: Option<String>,
}

impl Reached {
    /// `ssh -p PORT USER@HOST` when container port 22 is published (`root` when the host
    /// names no user).
    pub(crate) fn ssh_command(&self) -> Option<String> {
        let user = self.user.as_deref().unwrap_or("root");
        self.ports
            .iter()
            .find(|p| p.container == SSH_PORT)
            .map(|p| format!("ssh -p {} {user}@{}", p.host, self.host))
    }

    /// One line per way in: the SSH command, then every other port with a curl line.
    pub(crate) fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(ssh) = self.ssh_command() {
            out.push_str(&format!("  {ssh}\n"));
        }
        for p in self.ports.iter().filter(|p| p.container != SSH_PORT) {
            out.push_str(&format!(
                "  port {} → {}:{}   curl http://{}:{}/\n",
                p.container, self.host, p.host, self.host, p.host
            ));
        }
        out
    }
}

/// What the host says it is doing while it gets the workload ready, for people: `pulling the
/// image: 1.2 GiB of 4.8 GiB (25%)`, `creating the container`; `None` when it says nothing.
pub(crate) fn describe_preparing(s: &LeaseStatus) -> Option<String> {
    let phase = s.phase.as_deref()?;
    Some(match (phase, s.pull) {
        ("pulling", Some(p)) if p.total > 0 => format!(
            "host is pulling the image: {} of {} ({}%)",
            bytes(p.done),
            bytes(p.total),
            p.done.saturating_mul(100) / p.total
        ),
        ("pulling", Some(p)) if p.done > 0 => {
            format!("host is pulling the image: {}", bytes(p.done))
        }
        ("pulling", _) => "host is pulling the image".into(),
        (other, _) => format!("host is {other} the container"),
    })
}

/// Prints `what` on stderr when the part before its first `:` differs from `shown` (which it
/// then becomes): one line per phase of the host's preparation, not one per byte count.
pub(crate) fn line_per_phase(what: &str, shown: &mut String) {
    let head = what.split(':').next().unwrap_or(what);
    if head != shown {
        eprintln!("{what}");
        head.clone_into(shown);
    }
}

/// Bytes for people, binary units with one decimal.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Polls the host until it reports the workload running, the lease ends, or `timeout` passes
/// ([`Failure::TimedOut`], exit 3). `progress` gets each new description of what the host is
/// doing meanwhile ([`describe_preparing`]).
pub(crate) async fn until_running(
    session: &Session,
    chain: &Chain,
    rec: &LeaseRecord,
    addr: Option<Multiaddr>,
    timeout: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<Reached, Failure> {
    let peer: PeerId = rec.host_peer.parse().map_err(|e| {
        Failure::Runtime(anyhow!(
            "host id {} in the lease record: {e}",
            rec.host_peer
        ))
    })?;
    let short = format!("{:x}", rec.lease_id);
    let short = &short[..12];
    let deadline = tokio::time::Instant::now() + timeout;
    let mut next_chain_check = tokio::time::Instant::now();
    let mut last: String;
    let escrow = chain.escrow(rec.escrow);
    loop {
        let ask = LeaseRequest::Status {
            lease_id: rec.lease_id,
        };
        match session.ask(peer, addr.clone(), ask, ASK_TIMEOUT).await {
            Ok(LeaseResponse::Status(s)) => {
                if s.state == "running"
                    && let Some(host) = s.host.clone()
                    && !s.ports.is_empty()
                {
                    return Ok(Reached {
                        host,
                        ports: s.ports,
                        user: s.user,
                    });
                }
                if DEAD.contains(&s.state.as_str()) {
                    let why = s
                        .error
                        .as_deref()
                        .map(|e| format!(" The host says: {e}."))
                        .unwrap_or_default();
                    return Err(Failure::Runtime(anyhow!(
                        "the host reports lease {} as {}; it will not run.{why} `gpuflow stop \
                         {short}` refunds what is left of the deposit (all of it when the host \
                         never started)",
                        rec.lease_id,
                        s.state
                    )));
                }
                if let Some(d) = describe_preparing(&s) {
                    progress(&d);
                    last = d;
                } else {
                    last = format!("the host reports it {}", s.state);
                }
            }
            // `unsupported`: a host without the lease engine; others: not recorded yet.
            Ok(LeaseResponse::Error { code: c, message }) => {
                last = if c == code::UNSUPPORTED {
                    "the host does not report lease status (no lease engine)".into()
                } else {
                    format!("the host answered {c}: {message}")
                };
            }
            Ok(other) => last = format!("unexpected answer {other:?}"),
            Err(e) => last = e.to_string(),
        }
        let now = tokio::time::Instant::now();
        if now >= next_chain_check {
            next_chain_check = now + CHAIN_POLL;
            if let Ok(l) = escrow.lease(rec.lease_id).call().await
                && l.status == status::CLOSED
            {
                return Err(Failure::Runtime(anyhow!(
                    "lease {} was closed on chain before its workload ran; `gpuflow lease \
                     {short}` shows what was paid and refunded",
                    rec.lease_id
                )));
            }
        }
        if now >= deadline {
            return Err(Failure::TimedOut(anyhow!(
                "the workload of lease {} is not running after {}s ({last}). The lease stays \
                 open: wait more with `gpuflow wait {short} --until running`, or take the \
                 unused deposit back with `gpuflow stop {short}` (all of it if the host never \
                 started)",
                rec.lease_id,
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL.min(deadline - now)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preparation_reads_as_a_sentence_with_bytes_and_percent() {
        let mut s = LeaseStatus {
            phase: Some("pulling".into()),
            pull: Some(gpuflow_protocol::wire::PullProgress {
                done: 512 << 20,
                total: 2 << 30,
            }),
            ..LeaseStatus::default()
        };
        assert_eq!(
            describe_preparing(&s).unwrap(),
            "host is pulling the image: 512.0 MiB of 2.0 GiB (25%)"
        );
        s.pull = None;
        assert_eq!(describe_preparing(&s).unwrap(), "host is pulling the image");
        s.phase = Some("starting".into());
        assert_eq!(
            describe_preparing(&s).unwrap(),
            "host is starting the container"
        );
        s.phase = None;
        assert_eq!(describe_preparing(&s), None);
    }

    #[test]
    fn ssh_when_port_22_is_published_else_curl_lines() {
        let r = Reached {
            host: "10.0.0.5".into(),
            ports: vec![
                PortMap {
                    container: 22,
                    host: 40_022,
                },
                PortMap {
                    container: 8888,
                    host: 40_888,
                },
            ],
            user: None,
        };
        assert_eq!(r.ssh_command().unwrap(), "ssh -p 40022 root@10.0.0.5");
        let text = r.describe();
        assert!(text.contains("ssh -p 40022 root@10.0.0.5"), "{text}");
        assert!(text.contains("curl http://10.0.0.5:40888/"), "{text}");
        // The host names the login (a process-runtime host: its own OS user).
        let as_user = Reached {
            user: Some("gpu".into()),
            ..r
        };
        assert_eq!(as_user.ssh_command().unwrap(), "ssh -p 40022 gpu@10.0.0.5");
        assert!(as_user.describe().contains("ssh -p 40022 gpu@10.0.0.5"));
        let process = Reached {
            host: "127.0.0.1".into(),
            ports: vec![PortMap {
                container: 41_000,
                host: 41_000,
            }],
            user: None,
        };
        assert_eq!(process.ssh_command(), None);
        assert!(process.describe().contains("curl http://127.0.0.1:41000/"));
    }
}
