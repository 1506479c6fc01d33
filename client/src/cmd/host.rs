//! `gpuflow host`: one host's history from the escrow's events (leases, outcomes, earnings
//! volume, score with its inputs), and the local reliability cache it shares with `search`.
//!
//! The cache is `<data dir>/reliability.db`, an index of every host's escrow events kept by
//! `gpuflow-reliability`. Each command syncs it from the chain RPC first (incremental: only new
//! blocks are read), so scores never depend on what a host says about itself.
//!
//! A peer id is resolved to a wallet by the peer's own signed offer first, the registry only
//! as an unverified fallback ([`peer`]).

mod peer;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use anyhow::anyhow;
use gpuflow_p2p::PeerId;
use gpuflow_protocol::money::format_units;
use gpuflow_protocol::offer::VerifiedOffer;
use gpuflow_reliability::view::HostView;
use gpuflow_reliability::{HostHistory, HostScore, Indexer, IndexerConfig, Params, ScoreReader};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::Failure;
use crate::bootstrap;
use crate::net::{self, NetArgs, env};
use crate::output::{short_duration, table};

/// How long a score sync may take by default before the cache is used as it is.
pub(crate) const SCORES_TIMEOUT_SECS: u64 = 60;

/// Where reliability scores come from: the chain RPC and the escrow whose events are indexed.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ScoreArgs {
    /// Chain RPC URL for reliability scores. Default: GPUFLOW_RPC_URL, then `rpc_url` in the
    /// config file, then "rpcUrl" in .devnet/devnet.json. Without one, every host shows the
    /// new-host prior, marked `*`.
    #[arg(long, value_name = "URL")]
    pub(crate) rpc_url: Option<String>,
    /// Escrow whose lease events the scores come from. Default: `[deployment]` in the config
    /// file, then the devnet file, then the escrow most offers name.
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) escrow: Option<Address>,
    /// First block to index: the escrow's deployment block. Default: "deployBlock" in the
    /// devnet file, else 0 (slow on a long chain the first time; later runs are incremental).
    #[arg(long, value_name = "BLOCK")]
    pub(crate) deploy_block: Option<u64>,
    /// Give up syncing scores after this many seconds and use what the cache has.
    #[arg(long, value_name = "SECS", default_value_t = SCORES_TIMEOUT_SECS)]
    pub(crate) scores_timeout: u64,
}

/// How fresh the scores are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub(crate) enum ScoreSource {
    /// Synced from the chain up to `block`.
    Chain { block: Option<u64> },
    /// The sync failed; the cache's scores up to `block`.
    Cache { block: Option<u64>, error: String },
    /// No scores: every host has the prior.
    Unavailable { reason: String },
}

/// Scores keyed by host wallet, and how they were obtained.
pub(crate) struct Scores {
    pub(crate) by_wallet: HashMap<Address, HostScore>,
    pub(crate) params: Params,
    pub(crate) source: ScoreSource,
    pub(crate) reader: Option<ScoreReader>,
}

impl Scores {
    /// The score of `wallet`: its own, or the prior.
    pub(crate) fn of(&self, wallet: Address) -> HostScore {
        self.by_wallet
            .get(&wallet)
            .cloned()
            .unwrap_or_else(|| HostScore::new_host(&self.params))
    }

    /// Whether real scores are shown (not only the prior).
    pub(crate) fn available(&self) -> bool {
        !matches!(self.source, ScoreSource::Unavailable { .. })
    }
}

/// `deployBlock` from the devnet file (the only field of it this module reads itself).
fn devnet_deploy_block(cwd: &std::path::Path) -> Option<u64> {
    let path = bootstrap::find_devnet_file(cwd)?;
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v.get("deployBlock")?.as_u64()
}

fn spinner(quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let s = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    s.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    s.enable_steady_tick(Duration::from_millis(100));
    s
}

/// Syncs the local cache and reads every host's score. Never fails: without an RPC or
/// escrow the scores are [`ScoreSource::Unavailable`], and when the sync fails the cache's
/// older scores are used ([`ScoreSource::Cache`]); either is said on stderr.
pub(crate) async fn load_scores(
    args: &ScoreArgs,
    config: Option<&std::path::Path>,
    offers: &[VerifiedOffer],
    quiet: bool,
) -> Scores {
    let unavailable = |reason: String| Scores {
        by_wallet: HashMap::new(),
        params: Params::default(),
        source: ScoreSource::Unavailable { reason },
        reader: None,
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    let rpc = match bootstrap::resolve_rpc(args.rpc_url.as_deref(), config, &env, &cwd) {
        Ok((url, _)) => url,
        Err(e) => return unavailable(format!("{e}")),
    };
    let deployment = bootstrap::resolve_deployment(config, &env, &cwd)
        .ok()
        .flatten();
    let escrow = args
        .escrow
        .or(deployment.map(|d| d.escrow))
        .or_else(|| most_named_escrow(offers));
    let Some(escrow) = escrow else {
        return unavailable("no escrow known: pass --escrow or configure [deployment]".into());
    };
    let deploy_block = args
        .deploy_block
        .or_else(|| devnet_deploy_block(&cwd))
        .unwrap_or(0);
    let db: PathBuf = match crate::home::data_dir(&env) {
        Ok(d) => d.join("reliability.db"),
        Err(e) => return unavailable(format!("{e:#}")),
    };
    // Every request bounded (GPUFLOW_RPC_TIMEOUT_SECS), so a frozen RPC costs one timeout.
    let provider = match crate::chain::read_provider(&rpc) {
        Ok(p) => p,
        Err(e) => return unavailable(format!("{e:#}")),
    };
    let mut indexer =
        match Indexer::open(&db, provider, IndexerConfig::new(escrow, deploy_block)).await {
            Ok(ix) => ix,
            Err(e) => return unavailable(e.to_string()),
        };
    let reader = indexer.reader();
    let bar = spinner(quiet);
    bar.set_message(format!("syncing reliability scores from {rpc}"));
    let sync = indexer.sync_to_head(|p| {
        bar.set_message(format!(
            "syncing reliability scores: block {} of {}",
            p.cursor.unwrap_or(0),
            p.target
        ));
    });
    let synced = tokio::time::timeout(Duration::from_secs(args.scores_timeout), sync).await;
    bar.finish_and_clear();
    let cursor = reader.cursor().await.ok().flatten();
    let source = match synced {
        Ok(Ok(p)) => ScoreSource::Chain { block: p.cursor },
        Ok(Err(e)) => ScoreSource::Cache {
            block: cursor,
            error: e.to_string(),
        },
        Err(_) => ScoreSource::Cache {
            block: cursor,
            error: format!("sync did not finish within {}s", args.scores_timeout),
        },
    };
    if let ScoreSource::Cache { error, .. } = &source {
        // Old scores of another deployment would be wrong, not stale.
        let same = matches!(reader.indexed().await, Ok(Some((_, e))) if e == escrow);
        if cursor.is_none() || !same {
            return unavailable(error.clone());
        }
        eprintln!(
            "warning: reliability scores from the local cache (up to block {}): {error}",
            cursor.unwrap_or(0)
        );
    }
    // Receipts in the offers, checked against the synced chain, refine the outcomes.
    crate::receipts::ingest(&reader, offers).await;
    let now = net::unix_now();
    match (reader.scores(now).await, reader.params().await) {
        (Ok(by_wallet), Ok(params)) => Scores {
            by_wallet,
            params,
            source,
            reader: Some(reader),
        },
        (Err(e), _) | (_, Err(e)) => unavailable(e.to_string()),
    }
}

/// The escrow named by the most offers (ties: the smallest address), if any offer.
fn most_named_escrow(offers: &[VerifiedOffer]) -> Option<Address> {
    let mut count: HashMap<Address, usize> = HashMap::new();
    for v in offers {
        *count.entry(v.offer.escrow).or_default() += 1;
    }
    count
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(e, _)| e)
}

/// Show a host's history: leases, outcomes, earnings volume, score with its inputs.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  gpuflow host 0x70997970C51812dc3A010C7d01b50e0d17dc79C8
  gpuflow host 12D3KooW… --json | jq .score

Exit status: 0 shown, 1 no chain RPC answered and nothing is cached, 2 not an address or peer id.")]
pub(crate) struct HostArgs {
    /// The host's wallet address (0x…) or libp2p peer id (12D3KooW…: the wallet its own signed
    /// offers are bound to; only for a peer with no offer in the book, the on-chain registry,
    /// shown as unverified).
    #[arg(value_name = "PEER_ID|ADDRESS")]
    host: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    scores: ScoreArgs,
    #[command(flatten)]
    net: NetArgs,
}

/// `--json`: the host's view as the node's API shows it too, and where the scores came from.
#[derive(Serialize)]
struct JsonHost {
    #[serde(flatten)]
    view: HostView,
    /// Where the wallet came from, when a peer id was asked for: its offer (verified) or the
    /// registry (unverified).
    wallet_source: peer::WalletSource,
    index: ScoreSource,
}

impl HostArgs {
    pub(crate) async fn run(self) -> Result<(), Failure> {
        let wanted = if let Ok(a) = self.host.parse::<Address>() {
            Ok(a)
        } else if let Ok(p) = self.host.parse::<PeerId>() {
            Err(p)
        } else {
            return Err(Failure::Usage(anyhow!(
                "`{}` is neither a wallet address (0x…) nor a peer id (12D3KooW…)",
                self.host
            )));
        };
        // The book brings the receipts hosts publish (without it the cache's receipts count)
        // and the peers' own signed wallet bindings.
        let (offers, book_error) = match net::fetch(&self.net, true).await {
            Ok(offers) => (offers, None),
            Err(Failure::Usage(e) | Failure::Runtime(e))
            | Err(Failure::TimedOut(e) | Failure::AlreadyClosed(e)) => (Vec::new(), Some(e)),
        };
        let scores =
            load_scores(&self.scores, self.net.config.as_deref(), &offers, self.json).await;
        let reader = match (&scores.source, &scores.reader) {
            (ScoreSource::Unavailable { reason }, _) => {
                return Err(Failure::Runtime(anyhow!("no host history: {reason}")));
            }
            (_, Some(r)) => r,
            (_, None) => return Err(Failure::Runtime(anyhow!("no host history"))),
        };
        let (wallet, source) = match wanted {
            Ok(a) => (a, peer::WalletSource::argument()),
            Err(peer) => wallet_of(reader, &peer, &offers, book_error.as_ref()).await?,
        };
        if !source.verified
            && let Some(line) = peer::describe(&source)
        {
            eprintln!("warning: wallet {wallet} is from {line}");
        }
        let now = net::unix_now();
        let h = reader
            .host_history(wallet, now)
            .await
            .map_err(|e| Failure::Runtime(e.into()))?;
        if self.json {
            let text = serde_json::to_string_pretty(&json(&h, source, scores.source))
                .map_err(|e| Failure::Runtime(e.into()))?;
            println!("{text}");
        } else {
            print!("{}", text(&h, &source, now));
        }
        Ok(())
    }
}

/// The wallet of `peer`: the one its own signed offer binds (verified), else the registry's
/// longest-standing registration of the peer id (unverified), else a failure.
async fn wallet_of(
    reader: &ScoreReader,
    peer: &PeerId,
    offers: &[VerifiedOffer],
    book_error: Option<&anyhow::Error>,
) -> Result<(Address, peer::WalletSource), Failure> {
    let registrants = reader
        .registrants_of_peer(&peer.to_bytes())
        .await
        .map_err(|e| Failure::Runtime(e.into()))?;
    if let Some(found) = peer::resolve(peer, offers, &registrants) {
        return Ok(found);
    }
    let book = book_error.map_or_else(
        || "has no offer in the book".to_owned(),
        |e| format!("could not be looked up in the book ({e:#})"),
    );
    Err(Failure::Runtime(anyhow!(
        "peer {peer} {book} and no wallet is registered with it; pass its wallet address \
         instead"
    )))
}

fn json(h: &HostHistory, wallet_source: peer::WalletSource, index: ScoreSource) -> JsonHost {
    JsonHost {
        view: HostView::of(h),
        wallet_source,
        index,
    }
}

fn text(h: &HostHistory, source: &peer::WalletSource, now: u64) -> String {
    let s = &h.report.score;
    let d = h.params.decimals;
    let o = &s.outcomes;
    let fmt = |v: u128| format_units(U256::from(v), d);
    let mut out = format!(
        "host         {}\n{}first seen   {}\nleases       {} ({} normal end, {} host closed, {} never started, \
         {} host declined, {} cancelled, {} running)\nvolume       {} tokens paid for service\n\
         reliability  {:.4} (rank score {:.4} = {}th percentile of Beta(α={:.3}, β={:.3}))\n\
         evidence     {:.3} tokens after decay, credibility and caps (prior {} at {})\n",
        h.report.host,
        peer::describe(source).map_or(String::new(), |l| format!("wallet from  {l}\n")),
        s.first_seen.map_or("never".into(), |t| format!(
            "{} ago",
            short_duration(now.saturating_sub(t))
        )),
        s.leases,
        o.normal_end,
        o.host_closed,
        o.never_started,
        o.host_declined,
        o.cancelled,
        o.running,
        fmt(s.volume),
        s.reliability,
        s.rank,
        (h.params.rank_quantile * 100.0).round(),
        s.alpha,
        s.beta,
        s.evidence,
        fmt(h.params.prior_strength),
        h.params.prior_mean,
    );
    if let Some(p) = h.peer_id.as_ref().and_then(|p| PeerId::from_bytes(p).ok()) {
        out.push_str(&format!("peer id      {p} (registered)\n"));
    }
    if h.report.contributions.is_empty() {
        return out;
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = h
        .report
        .contributions
        .iter()
        .map(|c| {
            vec![
                c.lease_id.to_string()[..10].to_owned(),
                c.renter.to_string(),
                c.outcome.kind.name().into(),
                fmt(c.outcome.value),
                c.outcome.good.map_or("-".into(), |g| format!("{g:.3}")),
                format!("{:.3}", c.decay),
                format!("{:.3}", c.credibility),
                format!("{:.3}", c.cap_factor),
                format!("{:.3}", c.weight),
                c.closed_at.map_or("-".into(), |t| {
                    format!("{} ago", short_duration(now.saturating_sub(t)))
                }),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "LEASE", "RENTER", "OUTCOME", "VALUE", "O", "DECAY", "CRED", "CAP", "WEIGHT", "CLOSED",
        ],
        &rows,
    ));
    out
}
