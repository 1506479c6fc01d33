//! `gpuflow leases` and `gpuflow lease <id>`: the leases in the local store, their state from
//! the chain (the source of truth for money) and, for open ones, from the host.

use std::time::Duration;

use alloy::primitives::U256;
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use gpuflow_p2p::PeerId;
use gpuflow_protocol::escrow::GpuFlowEscrow;
use gpuflow_protocol::money::format_units;
use gpuflow_protocol::wire::{LeaseRequest, LeaseResponse, PortMap};
use serde::Serialize;

use crate::chain::{Chain, status};
use crate::net::{self, PeerArgs, Session};
use crate::output::{Amount, short_duration, table};
use crate::store::{LeaseRecord, LeaseStore};
use crate::{Failure, home};

/// Longest wait for a host's status answer in listings.
const HOST_TIMEOUT: Duration = Duration::from_secs(3);

/// List the leases rented from this machine.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "State comes from the escrow contract (pending, running, closed) and, \
for open leases, from the host (its workload state). PAID is what accrued to the host so far \
(fee included); REMAINING is what is left of the deposit."
)]
pub(crate) struct LeasesArgs {
    /// Print JSON: an array of the objects `gpuflow lease ID --json` prints.
    #[arg(long)]
    json: bool,
    /// Also list closed leases.
    #[arg(long, short = 'a')]
    all: bool,
    #[command(flatten)]
    peers: PeerArgs,
}

/// Show one lease.
#[derive(Debug, clap::Args)]
pub(crate) struct LeaseArgs {
    /// Lease id, or a unique prefix of it (as `gpuflow leases` shows).
    id: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    peers: PeerArgs,
}

/// The lease `id` (or prefix) from the store, and a chain connection checked to be its chain.
pub(crate) async fn target(
    id: &str,
    peers: &PeerArgs,
    signer: Option<PrivateKeySigner>,
) -> Result<(LeaseRecord, Chain), Failure> {
    let store = LeaseStore::new(&home::data_dir(&net::env).map_err(Failure::Usage)?);
    let rec = store.find(id).map_err(Failure::Usage)?;
    let chain = Chain::connect(&peers.rpc()?, signer).await?;
    chain.expect_chain(rec.chain_id, &format!("lease {}", rec.lease_id))?;
    Ok((rec, chain))
}

/// The escrow's view of a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainView {
    pub(crate) status: u8,
    pub(crate) deposit: U256,
    pub(crate) price: U256,
    /// openedAt while pending, startedAt once started.
    pub(crate) since: u64,
    /// Accrued to the host (fee included), as the escrow computes it now.
    pub(crate) accrued: U256,
    /// The chain's time.
    pub(crate) now: u64,
}

impl ChainView {
    pub(crate) async fn read(chain: &Chain, rec: &LeaseRecord) -> anyhow::Result<Self> {
        let e = chain.escrow(rec.escrow);
        let l = e.lease(rec.lease_id);
        let a = e.accrued(rec.lease_id);
        let (l, a, now) = tokio::join!(l.call(), a.call(), chain.block_time());
        let l = l?;
        Ok(Self {
            status: l.status,
            deposit: U256::from(l.deposit),
            price: U256::from(l.pricePerSecond),
            since: l.since.to::<u64>(),
            accrued: a?,
            now: now?,
        })
    }

    pub(crate) fn remaining(&self) -> U256 {
        self.deposit.saturating_sub(self.accrued)
    }

    /// Seconds of running time the deposit still pays for.
    pub(crate) fn time_left(&self) -> Option<u64> {
        (self.status == status::RUNNING && !self.price.is_zero())
            .then(|| (self.remaining() / self.price).saturating_to::<u64>())
    }
}

/// Most blocks one `eth_getLogs` call covers: public RPCs refuse wider ranges (often 10k).
const LOG_RANGE: u64 = 5_000;

/// The `LeaseClosed` event of a closed lease: searched from the block of the lease's `open`
/// transaction (nothing about the lease can be older), in ranges of [`LOG_RANGE`] blocks.
/// A lease file without its `open` transaction is searched from block 0.
pub(crate) async fn closed_event(
    chain: &Chain,
    rec: &LeaseRecord,
) -> anyhow::Result<Option<GpuFlowEscrow::LeaseClosed>> {
    let mut from = match rec.open_tx {
        Some(tx) => chain
            .provider
            .get_transaction_receipt(tx)
            .await?
            .and_then(|r| r.block_number)
            .unwrap_or(0),
        None => 0,
    };
    let head = chain.provider.get_block_number().await?;
    while from <= head {
        let to = from.saturating_add(LOG_RANGE - 1).min(head);
        let filter = Filter::new()
            .address(rec.escrow)
            .event_signature(GpuFlowEscrow::LeaseClosed::SIGNATURE_HASH)
            .topic1(rec.lease_id)
            .from_block(from)
            .to_block(to);
        let logs = chain.provider.get_logs(&filter).await?;
        if let Some(e) = logs
            .iter()
            .find_map(|l| GpuFlowEscrow::LeaseClosed::decode_log_data(&l.inner.data).ok())
        {
            return Ok(Some(e));
        }
        from = to.saturating_add(1);
    }
    Ok(None)
}

/// What the host says about the lease (`None` when it does not answer in time).
async fn host_view(
    session: &Session,
    rec: &LeaseRecord,
) -> Option<(String, Option<String>, Vec<PortMap>, Option<String>)> {
    let peer: PeerId = rec.host_peer.parse().ok()?;
    let addr = session.addr_of(peer, rec.host_addr.as_deref());
    let ask = LeaseRequest::Status {
        lease_id: rec.lease_id,
    };
    match session.ask(peer, addr, ask, HOST_TIMEOUT).await {
        Ok(LeaseResponse::Status(s)) => Some((s.state, s.host, s.ports, s.user)),
        _ => None,
    }
}

/// One lease for people and scripts.
#[derive(Debug, Serialize)]
struct View {
    lease_id: String,
    state: &'static str,
    /// The host's word on its workload (`running`, `launching`, …); null when not asked or
    /// unreachable.
    host_state: Option<String>,
    host_peer: String,
    host_wallet: String,
    gpu_name: String,
    gpus: u32,
    offer_id: String,
    started_at: Option<u64>,
    deposit: Amount,
    paid: Amount,
    remaining: Amount,
    time_left_secs: Option<u64>,
    price_per_second: Amount,
    host: Option<String>,
    ports: Vec<PortMap>,
    ssh: Option<String>,
    open_tx: Option<String>,
    closed: Option<Closed>,
}

#[derive(Debug, Serialize)]
struct Closed {
    closed_by: String,
    /// The `LeaseClosed` reason's name (`renter_closed`, …).
    reason: &'static str,
    /// Its number in the contract.
    reason_code: u8,
    host_amount: Amount,
    fee: Amount,
    refund: Amount,
    closed_at: u64,
}

async fn view(chain: &Chain, session: Option<&Session>, rec: &LeaseRecord) -> anyhow::Result<View> {
    let c = ChainView::read(chain, rec).await?;
    let d = rec.token_decimals;
    let open = matches!(c.status, status::PENDING | status::RUNNING);
    let host = match (open, session) {
        (true, Some(s)) => host_view(s, rec).await,
        _ => None,
    };
    let closed = if c.status == status::CLOSED {
        closed_event(chain, rec).await?.map(|e| Closed {
            closed_by: e.closedBy.to_string(),
            reason: crate::chain::reason_name(e.reason),
            reason_code: e.reason,
            host_amount: Amount::from_u256(e.hostAmount, d),
            fee: Amount::from_u256(e.fee, d),
            refund: Amount::from_u256(e.refund, d),
            closed_at: e.closedAt.saturating_to(),
        })
    } else {
        None
    };
    let (host_state, addr, ports, user) = match host {
        Some((s, h, p, u)) => (Some(s), h, p, u),
        None => (None, None, Vec::new(), None),
    };
    let reached = addr.clone().map(|h| crate::hostwait::Reached {
        host: h,
        ports: ports.clone(),
        user,
    });
    let started = c.status == status::RUNNING
        || (c.status == status::CLOSED && closed.as_ref().is_some_and(|_| c.accrued > U256::ZERO));
    Ok(View {
        lease_id: rec.lease_id.to_string(),
        state: status::name(c.status),
        host_state,
        host_peer: rec.host_peer.clone(),
        host_wallet: rec.quote.host.to_string(),
        gpu_name: rec.gpu_name.clone(),
        gpus: rec.gpus,
        offer_id: rec.offer_id.clone(),
        started_at: started.then_some(c.since),
        deposit: Amount::from_u256(c.deposit, d),
        paid: Amount::from_u256(c.accrued, d),
        remaining: Amount::from_u256(c.remaining(), d),
        time_left_secs: c.time_left(),
        price_per_second: Amount::from_u256(rec.quote.price_per_second, d),
        host: addr,
        ssh: reached
            .as_ref()
            .and_then(crate::hostwait::Reached::ssh_command),
        ports,
        open_tx: rec.open_tx.map(|h| h.to_string()),
        closed,
    })
}

fn host_session(peers: &PeerArgs, recs: &[LeaseRecord]) -> Result<Session, Failure> {
    let mut addrs = peers.bootstrap_or_none()?;
    addrs.extend(
        recs.iter()
            .filter_map(|r| r.host_addr.as_deref()?.parse().ok()),
    );
    Session::with_bootstrap(addrs)
}

impl LeasesArgs {
    pub(crate) async fn run(self) -> Result<(), Failure> {
        let store = LeaseStore::new(&home::data_dir(&net::env).map_err(Failure::Usage)?);
        let recs = store.all()?;
        if recs.is_empty() {
            if self.json {
                println!("[]");
            } else {
                eprintln!("no leases yet; rent one with `gpuflow rent OFFER_ID --hours H`");
            }
            return Ok(());
        }
        let chain = Chain::connect(&self.peers.rpc()?, None).await?;
        let session = host_session(&self.peers, &recs)?;
        let mut views = Vec::new();
        for rec in recs.iter().filter(|r| r.chain_id == chain.chain_id) {
            let v = view(&chain, Some(&session), rec).await?;
            if self.all || v.state != "closed" {
                views.push(v);
            }
        }
        let other = recs.iter().filter(|r| r.chain_id != chain.chain_id).count();
        if other > 0 {
            eprintln!(
                "({other} lease(s) on other chains not shown; point --rpc-url at their chain)"
            );
        }
        if self.json {
            let text =
                serde_json::to_string_pretty(&views).map_err(|e| Failure::Runtime(e.into()))?;
            println!("{text}");
            return Ok(());
        }
        if views.is_empty() {
            eprintln!("no open leases (--all shows closed ones too)");
            return Ok(());
        }
        let now = net::unix_now();
        let rows: Vec<Vec<String>> = views
            .iter()
            .map(|v| {
                vec![
                    v.lease_id[2..14].to_owned(),
                    match &v.host_state {
                        Some(h) if h != v.state => format!("{} ({h})", v.state),
                        _ => v.state.to_owned(),
                    },
                    short_peer(&v.host_peer),
                    format!("{} × {}", v.gpus, v.gpu_name),
                    v.started_at.map_or("-".into(), |t| {
                        format!("{} ago", short_duration(now.saturating_sub(t)))
                    }),
                    v.paid.formatted.clone(),
                    v.remaining.formatted.clone(),
                    v.time_left_secs.map_or("-".into(), short_duration),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "LEASE",
                    "STATE",
                    "HOST",
                    "GPU",
                    "STARTED",
                    "PAID",
                    "REMAINING",
                    "TIME LEFT"
                ],
                &rows
            )
        );
        Ok(())
    }
}

fn short_peer(p: &str) -> String {
    if p.len() > 16 {
        format!("{}…{}", &p[..8], &p[p.len() - 6..])
    } else {
        p.to_owned()
    }
}

impl LeaseArgs {
    pub(crate) async fn run(self) -> Result<(), Failure> {
        let (rec, chain) = target(&self.id, &self.peers, None).await?;
        let session = host_session(&self.peers, std::slice::from_ref(&rec))?;
        let v = view(&chain, Some(&session), &rec).await?;
        if self.json {
            let text = serde_json::to_string_pretty(&v).map_err(|e| Failure::Runtime(e.into()))?;
            println!("{text}");
            return Ok(());
        }
        let d = rec.token_decimals;
        let mut rows: Vec<(&str, String)> = vec![
            ("lease", v.lease_id.clone()),
            (
                "state",
                match &v.host_state {
                    Some(h) => format!("{} (host: {h})", v.state),
                    None => v.state.to_owned(),
                },
            ),
            (
                "host",
                format!("{} (wallet {})", v.host_peer, v.host_wallet),
            ),
            ("gpu", format!("{} × {}", v.gpus, v.gpu_name)),
            ("offer", v.offer_id.clone()),
            (
                "price",
                format!(
                    "{} per hour",
                    format_units(rec.quote.price_per_second * U256::from(3600u64), d)
                ),
            ),
            ("deposit", v.deposit.formatted.clone()),
            ("paid so far", v.paid.formatted.clone()),
            ("remaining", v.remaining.formatted.clone()),
        ];
        if let Some(t) = v.time_left_secs {
            rows.push(("time left", short_duration(t)));
        }
        if let Some(ssh) = &v.ssh {
            rows.push(("ssh", ssh.clone()));
        }
        if let Some(h) = &v.host {
            for p in v.ports.iter().filter(|p| p.container != 22) {
                rows.push(("port", format!("{} → http://{h}:{}/", p.container, p.host)));
            }
        }
        if let Some(c) = &v.closed {
            rows.push((
                "closed",
                format!(
                    "host paid {}, fee {}, refunded {} (base units {} / {} / {})",
                    c.host_amount.formatted,
                    c.fee.formatted,
                    c.refund.formatted,
                    c.host_amount.base_units,
                    c.fee.base_units,
                    c.refund.base_units
                ),
            ));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
        for (k, val) in rows {
            println!("{:<width$}  {val}", format!("{k}:"));
        }
        if v.state == "not opened" {
            eprintln!("(the quote was saved but never opened on chain; nothing was paid)");
        }
        Ok(())
    }
}
