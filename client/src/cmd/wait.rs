//! `gpuflow wait <id> --until running|closed`: block until the lease gets there, for scripts.

use std::time::Duration;

use anyhow::anyhow;

use super::leases::{ChainView, target};
use crate::Failure;
use crate::chain::status;
use crate::hostwait;
use crate::net::{PeerArgs, Session};

/// How often the chain is read while waiting for `closed`.
const CLOSED_POLL: Duration = Duration::from_millis(500);

/// What to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Until {
    /// The host reports the workload running (ports published).
    Running,
    /// The escrow shows the lease closed.
    Closed,
}

/// Wait until a lease is running or closed.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 reached; 1 error (e.g. the lease closed while waiting \
for running, or the host reports it failed); 2 usage error; 3 timed out.

Example: gpuflow wait 3f1c --until running --timeout 300 && ssh -p …"
)]
pub(crate) struct WaitArgs {
    /// Lease id, or a unique prefix of it.
    id: String,
    /// The state to wait for.
    #[arg(long, value_enum)]
    until: Until,
    /// Give up after this many seconds (exit 3).
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    timeout: u64,
    #[command(flatten)]
    peers: PeerArgs,
    #[command(flatten)]
    receipts: crate::receipts::ReceiptArgs,
}

impl WaitArgs {
    pub(crate) async fn run(self) -> Result<(), Failure> {
        let (rec, chain) = target(&self.id, &self.peers, None).await?;
        let timeout = Duration::from_secs(self.timeout);
        match self.until {
            Until::Running => {
                let mut addrs = self.peers.bootstrap_or_none()?;
                addrs.extend(rec.host_addr.as_deref().and_then(|a| a.parse().ok()));
                let session = Session::with_bootstrap(addrs)?;
                let peer = rec.host_peer.parse().ok();
                let addr = peer.and_then(|p| session.addr_of(p, rec.host_addr.as_deref()));
                let mut shown = String::new();
                let reached =
                    hostwait::until_running(&session, &chain, &rec, addr, timeout, &mut |what| {
                        hostwait::line_per_phase(what, &mut shown)
                    })
                    .await?;
                println!("lease {} is running", rec.lease_id);
                print!("{}", reached.describe());
                Ok(())
            }
            Until::Closed => {
                let mut addrs = self.peers.bootstrap_or_none()?;
                addrs.extend(rec.host_addr.as_deref().and_then(|a| a.parse().ok()));
                // Signs and sends receipts while this waits; stops when it is dropped.
                let _prober = crate::receipts::start(&self.receipts, &rec, addrs);
                let deadline = tokio::time::Instant::now() + timeout;
                loop {
                    let v = ChainView::read(&chain, &rec).await?;
                    if v.status == status::CLOSED {
                        println!("lease {} is closed", rec.lease_id);
                        return Ok(());
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Failure::TimedOut(anyhow!(
                            "lease {} is still {} after {}s",
                            rec.lease_id,
                            status::name(v.status),
                            self.timeout
                        )));
                    }
                    tokio::time::sleep(CLOSED_POLL).await;
                }
            }
        }
    }
}
