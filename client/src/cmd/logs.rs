//! `gpuflow logs <id> [--tail N] [--follow]`: the workload's output, from the host over the
//! lease protocol, each request signed by the renter wallet (only the lease's renter may read
//! it).

use std::io::Write;
use std::time::Duration;

use anyhow::anyhow;
use gpuflow_p2p::PeerId;
use gpuflow_protocol::escrow;
use gpuflow_protocol::request_auth;
use gpuflow_protocol::wire::{LeaseRequest, LeaseResponse, LogsRequest, MAX_LOG_TAIL, RequestAuth};

use super::leases::target;
use crate::Failure;
use crate::net::{self, PeerArgs, Session};
use crate::wallet::{self, WalletArgs};

/// Longest wait for one answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `--follow` asks when the host has nothing new.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

/// Print a lease's workload output (stdout and stderr).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The host keeps a container's output while the lease runs. Each \
request is signed by the renter wallet, so only the lease's renter can read it.

Exit status: 0 done (or --follow ended by Ctrl-C or the lease ending); 1 error; 2 usage error.

Examples:
  gpuflow logs 3f1c --tail 50
  gpuflow logs 3f1c --follow"
)]
pub(crate) struct LogsArgs {
    /// Lease id, or a unique prefix of it.
    id: String,
    /// Start this many lines before the end (0: all the output kept).
    #[arg(long, value_name = "N", default_value_t = 100)]
    tail: u32,
    /// Keep printing new output until the lease ends or Ctrl-C.
    #[arg(long, short = 'f')]
    follow: bool,
    #[command(flatten)]
    peers: PeerArgs,
    #[command(flatten)]
    wallet: WalletArgs,
}

impl LogsArgs {
    pub(crate) async fn run(self) -> Result<(), Failure> {
        if self.tail > MAX_LOG_TAIL {
            return Err(Failure::Usage(anyhow!(
                "--tail {}: at most {MAX_LOG_TAIL} lines",
                self.tail
            )));
        }
        let signer = wallet::load(&self.wallet, &net::env)?;
        let (rec, _chain) = target(&self.id, &self.peers, None).await?;
        if signer.address() != rec.renter {
            return Err(Failure::Usage(anyhow!(
                "lease {} was rented by {}, not by this wallet ({}); only its renter can read \
                 its output",
                rec.lease_id,
                rec.renter,
                signer.address()
            )));
        }
        let peer: PeerId = rec.host_peer.parse().map_err(|e| {
            Failure::Runtime(anyhow!(
                "host id {} in the lease record: {e}",
                rec.host_peer
            ))
        })?;
        let mut addrs = self.peers.bootstrap_or_none()?;
        addrs.extend(rec.host_addr.as_deref().and_then(|a| a.parse().ok()));
        let session = Session::with_bootstrap(addrs)?;
        let addr = session.addr_of(peer, rec.host_addr.as_deref());
        let domain = escrow::domain(rec.chain_id, rec.escrow);
        let mut cursor = 0u64;
        let mut stdout = std::io::stdout();
        loop {
            let mut req = LogsRequest {
                lease_id: rec.lease_id,
                renter: rec.renter,
                tail: self.tail,
                cursor,
                auth: RequestAuth::default(),
            };
            request_auth::sign_logs(&mut req, &signer, &rec.host_peer, net::unix_now(), &domain)
                .map_err(|e| Failure::Runtime(anyhow!("signing the request: {e}")))?;
            let answer = session
                .ask(peer, addr.clone(), LeaseRequest::Logs(req), ASK_TIMEOUT)
                .await
                .map_err(|e| Failure::Runtime(anyhow!("asking the host for logs: {e}")))?;
            let chunk = match answer {
                LeaseResponse::Logs(c) => c,
                LeaseResponse::Error { code, message } if self.follow && cursor > 0 => {
                    // The lease ended while following: what was printed is all there is.
                    tracing::debug!(%code, %message, "follow ended");
                    return Ok(());
                }
                LeaseResponse::Error { code, message } => {
                    return Err(Failure::Runtime(anyhow!(
                        "the host refused ({code}): {message}"
                    )));
                }
                other => return Err(Failure::Runtime(anyhow!("unexpected answer {other:?}"))),
            };
            stdout
                .write_all(chunk.text.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|e| Failure::Runtime(anyhow!("writing to stdout: {e}")))?;
            // Never 0 (the host's answers continue where they ended; 0 would ask for the tail).
            cursor = chunk.cursor.max(1);
            if chunk.more {
                continue;
            }
            if !self.follow {
                return Ok(());
            }
            tokio::select! {
                () = tokio::time::sleep(FOLLOW_POLL) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    }
}
