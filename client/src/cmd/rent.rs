//! `gpuflow rent`: from an offer id (or a query) to a running workload, paid from the renter's
//! wallet. The steps, each behind a spinner: find the offer, ask the host for a quote, check
//! it, check the balances, show the cost (and confirm), save the quote locally, approve and
//! `open`, tell the host, wait for the workload, print how to reach it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use alloy::primitives::{Address, U256};
use anyhow::{Context, anyhow};
use gpuflow_p2p::PeerId;
use gpuflow_protocol::book::OfferBook;
use gpuflow_protocol::escrow::{self, Quote};
use gpuflow_protocol::money::format_units;
use gpuflow_protocol::offer::{OfferId, VerifiedOffer};
use gpuflow_protocol::query::{EvalCtx, Query, SortSpec};
use gpuflow_protocol::request_auth;
use gpuflow_protocol::wire::{
    LeaseRequest, LeaseResponse, MAX_LEASE_REQUEST_BYTES, MAX_SSH_KEY_BYTES, QuoteRequest,
    SignedQuote, code, rules,
};
use gpuflow_reliability::rank::{Candidate, rank_for_rent};

use super::host::{SCORES_TIMEOUT_SECS, ScoreArgs, Scores, load_scores};
use super::rent_check::{self, Cost, Expect, hours_to_secs, verify_quote};
use super::rent_pay::{self, Authorization, Funding};
use crate::chain::Chain;
use crate::hostwait::{self, Reached};
use crate::net::{self, PeerArgs, Session};
use crate::steps::Steps;
use crate::store::{LeaseRecord, LeaseStore};
use crate::wallet::{self, WalletArgs};
use crate::{Failure, home};

/// The host a quote came from, for the messages about that quote's hold.
struct HostLink<'a> {
    session: &'a Session,
    peer: PeerId,
    addr: Option<gpuflow_p2p::Multiaddr>,
}

impl HostLink<'_> {
    /// Tells the host the renter is opening `lease` now, so it holds the GPUs until the quote
    /// expires. A host that no longer holds them (its short hold lapsed) fails the rent before
    /// anything is paid.
    async fn opening(&self, lease: alloy::primitives::B256) -> anyhow::Result<()> {
        let req = LeaseRequest::Opening { lease_id: lease };
        match self
            .session
            .ask(self.peer, self.addr.clone(), req, QUOTE_TIMEOUT)
            .await?
        {
            LeaseResponse::Ack => Ok(()),
            LeaseResponse::Error { code, message } if code == code::NO_HOLD => Err(anyhow!(
                "the host no longer holds the GPUs for this quote ({message}); nothing was \
                 spent: run the command again"
            )),
            // A host from before holds existed holds quotes until they expire anyway.
            LeaseResponse::Error { .. } => Ok(()),
            other => Err(anyhow!("the host answered {other:?} to `opening`")),
        }
    }

    /// Asks the host to free the quote's GPUs (best effort: the hold ends by itself soon).
    async fn release(&self, lease: alloy::primitives::B256) {
        let req = LeaseRequest::Release { lease_id: lease };
        match self
            .session
            .ask(self.peer, self.addr.clone(), req, QUOTE_TIMEOUT)
            .await
        {
            Ok(LeaseResponse::Ack) => tracing::debug!(%lease, "quote released"),
            other => tracing::debug!(?other, "quote not released; its hold ends by itself"),
        }
    }
}

/// How long the host may take to answer the quote request.
const QUOTE_TIMEOUT: Duration = Duration::from_secs(15);

/// Rent a GPU offer: quote, pay into the escrow, wait for the workload, print how to reach it.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct RentArgs {
    /// Offer id (32 hex digits, as `gpuflow search` prints it). Or use --query.
    #[arg(
        value_name = "OFFER_ID",
        required_unless_present = "query",
        conflicts_with = "query"
    )]
    offer: Option<String>,
    /// Rent the best offer matching this query: the lowest expected cost for --hours given each
    /// host's reliability score (price × hours ÷ chance of no interruption; see
    /// docs/reliability.md), skipping hosts that failed you before.
    /// E.g. --query 'gpu_name=RTX_4090 num_gpus>=1 reliability>0.9'.
    #[arg(long, value_name = "QUERY")]
    query: Option<String>,
    /// Hours to pay for now (decimals allowed: 0.5). `gpuflow extend` adds more later.
    #[arg(long)]
    hours: f64,
    /// Container image to run (offers that list no templates).
    #[arg(long, value_name = "IMAGE", conflicts_with = "template")]
    image: Option<String>,
    /// Template to run (one the offer lists; `gpuflow templates` shows them). Default: the
    /// offer's first template.
    #[arg(long, value_name = "NAME")]
    template: Option<String>,
    /// SSH public key to install. Default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub.
    #[arg(long, value_name = "FILE")]
    ssh_key: Option<PathBuf>,
    /// Environment variable for the workload; repeat for several.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Extra container port to publish; repeat for several.
    #[arg(long = "port", value_name = "PORT")]
    ports: Vec<u16>,
    /// GPUs to rent. Default: all of the offer's.
    #[arg(long)]
    gpus: Option<u32>,
    /// Do not ask for confirmation (needed without a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Print one JSON object (lease id, amounts in base units, host, ports) instead of text.
    #[arg(long)]
    json: bool,
    /// Seconds to wait for the host to start the workload.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    timeout: u64,
    /// Print how long each step took (stderr).
    #[arg(long)]
    timings: bool,
    #[command(flatten)]
    peers: PeerArgs,
    #[command(flatten)]
    wallet: WalletArgs,
}

const AFTER_HELP: &str = "\
Examples:
  gpuflow rent 3f1c…e2 --hours 2 --template pytorch
  gpuflow rent --query 'gpu_name=RTX_4090 num_gpus>=2' --hours 1 --yes --json

Money: the deposit is price per second × seconds, paid into the escrow contract (approve, then
open). Billing runs per second from the host's start; the protocol fee comes out of the host's
pay. `gpuflow stop` refunds the unused part, and all of it if the host never started.
Nothing is spent before the cost is shown and confirmed (--yes confirms).

Exit status: 0 running; 1 failed (see the message; no money moved unless it says so);
2 usage error; 3 the host did not start the workload within --timeout (the lease is open:
`gpuflow wait ID --until running`, or `gpuflow stop ID` for a refund).";

/// `K=V` pairs into a map; a repeated name is a usage error.
fn parse_env(pairs: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| Failure::Usage(anyhow!("--env {p:?}: write it as NAME=VALUE")))?;
        if out.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(Failure::Usage(anyhow!("--env {k} given twice")));
        }
    }
    // The host's own rules, checked here so a bad value is a usage error and nothing is sent.
    rules::check_env(&out).map_err(|why| Failure::Usage(anyhow!("--env: {why}")))?;
    Ok(out)
}

/// The renter's SSH public key: `--ssh-key`, else the usual files under ~/.ssh.
fn read_ssh_key(flag: Option<&Path>) -> Result<String, Failure> {
    let candidates: Vec<PathBuf> = match flag {
        Some(f) => vec![f.to_owned()],
        None => {
            let home = net::env("HOME").unwrap_or_default();
            ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"]
                .iter()
                .map(|f| Path::new(&home).join(".ssh").join(f))
                .collect()
        }
    };
    for c in &candidates {
        // Only a small regular file is read: a FIFO or a device would block `rent`.
        let Ok(meta) = std::fs::metadata(c) else {
            continue;
        };
        let cap = u64::try_from(4 * MAX_SSH_KEY_BYTES).unwrap_or(u64::MAX);
        if !meta.is_file() || meta.len() > cap {
            return Err(Failure::Usage(anyhow!(
                "{} is not an SSH public key file (not a regular file, or over {cap} bytes)",
                c.display()
            )));
        }
        if let Ok(text) = std::fs::read_to_string(c) {
            if text.contains("PRIVATE KEY") {
                return Err(Failure::Usage(anyhow!(
                    "{} is a private key; pass the .pub file next to it",
                    c.display()
                )));
            }
            let key = text.lines().next().unwrap_or_default().trim().to_owned();
            if key.is_empty() {
                return Err(Failure::Usage(anyhow!("{} is empty", c.display())));
            }
            rules::check_ssh_key(&key).map_err(|why| {
                Failure::Usage(anyhow!(
                    "{} is not an OpenSSH public key ({why}); pass e.g. ~/.ssh/id_ed25519.pub",
                    c.display()
                ))
            })?;
            return Ok(key);
        }
    }
    Err(Failure::Usage(match flag {
        Some(f) => anyhow!("cannot read the SSH public key {}", f.display()),
        None => anyhow!(
            "no SSH public key in ~/.ssh: pass --ssh-key FILE.pub or create one with \
             `ssh-keygen -t ed25519`"
        ),
    }))
}

/// What `rent --query` ranks by besides the offers: the hosts' scores, the hosts that failed
/// this renter before, and the lease length.
struct Ranking {
    scores: Scores,
    failed: HashSet<Address>,
    secs: u64,
}

impl Ranking {
    /// Syncs the reliability cache (like `search`) and looks up the hosts that failed `me`.
    async fn load(
        peers: &PeerArgs,
        offers: &[VerifiedOffer],
        me: Address,
        secs: u64,
        quiet: bool,
    ) -> Self {
        let args = ScoreArgs {
            rpc_url: peers.rpc_url.clone(),
            escrow: None,
            deploy_block: None,
            scores_timeout: SCORES_TIMEOUT_SECS,
        };
        let scores = load_scores(&args, peers.config.as_deref(), offers, quiet).await;
        let failed = match &scores.reader {
            Some(r) => r.hosts_that_failed(me).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read this renter's lease history");
                HashSet::new()
            }),
            None => HashSet::new(),
        };
        Self {
            scores,
            failed,
            secs,
        }
    }
}

/// The offer to rent: by id, or the best match of the query (and why it was picked).
fn pick(
    offers: Vec<VerifiedOffer>,
    id: Option<&str>,
    query: Option<(&Query, &Ranking)>,
    quiet: bool,
) -> Result<VerifiedOffer, Failure> {
    if let Some(id) = id {
        let id: OfferId = id.parse().map_err(|e| Failure::Usage(anyhow!("{e}")))?;
        return offers.into_iter().find(|o| o.id == id).ok_or_else(|| {
            Failure::Runtime(anyhow!(
                "offer {id} is not in the book: the host withdrew it or it expired; \
                 `gpuflow search` lists the current offers"
            ))
        });
    }
    let (query, ranking) =
        query.ok_or_else(|| Failure::Usage(anyhow!("give an offer id or --query")))?;
    let mut book = OfferBook::new();
    let total = offers.len();
    let means: HashMap<String, f64> = offers
        .iter()
        .map(|v| {
            (
                v.offer.host.clone(),
                ranking.scores.of(v.offer.wallet).reliability,
            )
        })
        .collect();
    for o in offers {
        book.insert(o);
    }
    // The query's filters (`reliability>…` included) read the hosts' means.
    let ctx = EvalCtx::with_scores(net::unix_now(), &means);
    let hits = book.search(query, &SortSpec::default(), usize::MAX, &ctx);
    let matching = hits.len();
    let candidates = hits.into_iter().map(|v| Candidate {
        host: v.offer.wallet,
        price_per_hour: v.offer.price_per_hour(),
        item: v.clone(),
    });
    let ranked = rank_for_rent(
        candidates,
        &ranking.scores.by_wallet,
        &ranking.failed,
        ranking.secs,
        &ranking.scores.params,
    );
    let skipped = matching - ranked.len();
    let Some(best) = ranked.into_iter().next() else {
        return Err(Failure::Runtime(if matching > 0 {
            anyhow!(
                "the {matching} matching offer(s) are all from hosts that failed you before \
                 (closed a funded lease or never started one); rent one by id to override"
            )
        } else {
            anyhow!(
                "no offer matches the query ({total} offers in the book); loosen it and check \
                 with `gpuflow search`"
            )
        }));
    };
    if !quiet {
        let o = &best.item.offer;
        let d = o.token_decimals;
        eprintln!(
            "picked offer {} ({} × {} at {} per hour, host {}, score {:.3}): lowest expected cost \
             of {} matching offers for {} s ({} nominal, {} expected given the chance of an \
             interruption){}",
            best.item.id,
            o.gpu.count,
            o.gpu.model,
            format_units(U256::from(o.price_per_hour()), d),
            o.host,
            best.rank_score,
            matching,
            ranking.secs,
            format_units(U256::from(best.cost.nominal), d),
            format_units(U256::from(best.cost.expected), d),
            if skipped > 0 {
                format!("; skipped {skipped} offer(s) from hosts that failed you before")
            } else {
                String::new()
            }
        );
    }
    Ok(best.item)
}

/// Turns the host's refusal into an error that says what to do.
fn refused(code_: &str, message: &str, offer: OfferId) -> Failure {
    Failure::Runtime(match code_ {
        code::UNKNOWN_OFFER => anyhow!(
            "the host no longer offers {offer} (withdrawn or expired): {message}; \
             `gpuflow search` lists the current offers"
        ),
        code::NO_CAPACITY => anyhow!("the host has no free GPUs for this offer: {message}"),
        code::BUSY | code::TIMEOUT => {
            anyhow!("the host is busy ({message}); try again in a few seconds")
        }
        _ => anyhow!("the host refused the quote ({code_}): {message}"),
    })
}

impl RentArgs {
    pub(crate) async fn run(self) -> Result<(), Failure> {
        // The figure `rent` reports: from the command's start to a reachable workload.
        let started = std::time::Instant::now();
        let usage = |e: anyhow::Error| Failure::Usage(e);
        let runtime = |e: anyhow::Error| Failure::Runtime(e);
        // Everything the user typed is checked before any network or wallet access.
        let secs = hours_to_secs(self.hours).map_err(|e| usage(anyhow!(e)))?;
        let env_map = parse_env(&self.env)?;
        rules::check_ports(&self.ports).map_err(|why| usage(anyhow!("--port: {why}")))?;
        let query = self
            .query
            .as_deref()
            .map(Query::parse)
            .transpose()
            .map_err(|e| usage(anyhow!(e)))?;
        let ssh_key = read_ssh_key(self.ssh_key.as_deref())?;
        let rpc = self.peers.rpc()?;
        let signer = wallet::load(&self.wallet, &net::env)?;
        let me = signer.address();
        let store = LeaseStore::new(&home::data_dir(&net::env).map_err(usage)?);

        let mut steps = Steps::new(self.timings);
        steps.step("fetching the offer book");
        let session = Session::start(&self.peers.net())?;
        let (book, chain) = tokio::join!(
            session.book(net::BOOK_TIMEOUT),
            Chain::connect(&rpc, Some(signer))
        );
        let (mut book, chain) = (book?, chain?);
        // An offer asked for by id but missing from the first answer gets one more sync before
        // `rent` says it is gone: a peer's book can lag a fresh announcement by a gossip round.
        if let Some(id) = self.offer.as_deref()
            && !book
                .iter()
                .any(|o| o.id.to_string() == id.to_ascii_lowercase())
        {
            tracing::debug!(
                offer = id,
                offers = book.len(),
                "offer not in the book; syncing once more"
            );
            book = session.book(net::BOOK_TIMEOUT).await?;
        }
        let ranking = match &query {
            Some(_) => {
                steps.step("ranking offers by expected cost (reliability scores)");
                Some(Ranking::load(&self.peers, &book, me, secs, self.json).await)
            }
            None => None,
        };
        let query = query.as_ref().zip(ranking.as_ref());
        let offer = steps.suspend(|| pick(book, self.offer.as_deref(), query, self.json))?;
        let o = &offer.offer;
        chain.expect_chain(o.chain_id, &format!("offer {}", offer.id))?;
        let gpus = self.gpus.unwrap_or(o.gpu.count);
        if gpus == 0 || gpus > o.gpu.count {
            return Err(usage(anyhow!(
                "--gpus {gpus}: the offer has {} GPU(s)",
                o.gpu.count
            )));
        }
        if secs < o.min_duration_secs || secs > o.max_duration_secs {
            return Err(usage(anyhow!(
                "--hours {}: this offer rents for {}s to {}s",
                self.hours,
                o.min_duration_secs,
                o.max_duration_secs
            )));
        }
        let image_or_template = match (&self.template, &self.image, o.templates.first()) {
            (Some(t), _, _) if !o.templates.contains(t) => {
                return Err(usage(anyhow!(
                    "template {t} is not offered here; pick one of {:?}",
                    o.templates
                )));
            }
            (Some(t), _, _) => t.clone(),
            (None, Some(i), None) => i.clone(),
            (None, Some(_), Some(_)) => {
                return Err(usage(anyhow!(
                    "this offer runs only its templates {:?}; pass --template NAME",
                    o.templates
                )));
            }
            (None, None, Some(first)) => first.clone(),
            (None, None, None) => {
                return Err(usage(anyhow!(
                    "this offer lists no templates: pass --image IMAGE"
                )));
            }
        };

        // Everything that can be checked without the host comes first, so a renter who cannot
        // or will not pay never makes the host hold a GPU: the price is the offer's (the quote
        // must match it), the balances are read, the cost confirmed.
        steps.step("checking balances");
        let facts = rent_pay::escrow_facts(&chain, o.escrow, o.token).await?;
        if facts.token != o.token {
            return Err(runtime(anyhow!(
                "the escrow {} takes token {}, but the offer names {}; the offer is \
                 inconsistent, rent another",
                o.escrow,
                facts.token,
                o.token
            )));
        }
        let cost = Cost::new(
            rent_check::price_per_second(o.price_per_gpu_hour, gpus),
            secs,
            facts.fee_bps,
        );
        let funding = Funding {
            chain: &chain,
            token: o.token,
            escrow: o.escrow,
            symbol: &facts.symbol,
            decimals: o.token_decimals,
        };
        funding.check(cost.deposit, rent_pay::OPEN_GAS).await?;
        let _ = steps.finish();
        eprintln!(
            "Renting offer {} ({} × {}, host {}):\n{}",
            offer.id,
            gpus,
            o.gpu.model,
            o.host,
            cost.describe(o.token_decimals, &facts.symbol)
        );
        if !self.yes {
            rent_pay::confirm("Pay the deposit and open the lease?")?;
        }

        let mut steps = Steps::new(self.timings);
        steps.step("asking the host for a quote");
        let host_peer: PeerId = o
            .host
            .parse()
            .map_err(|e| runtime(anyhow!("the offer's host id {}: {e}", o.host)))?;
        let host_addr = session.addr_of(host_peer, None);
        let domain = escrow::domain(o.chain_id, o.escrow);
        let mut request = QuoteRequest {
            offer_id: offer.id,
            renter: me,
            // The quote's maxDuration caps the deposit including top-ups: ask for the offer's
            // longest, so `gpuflow extend` can add time; only `--hours` is paid now.
            duration_secs: o.max_duration_secs,
            image_or_template,
            ssh_public_key: ssh_key.clone(),
            gpus,
            env: env_map,
            ports: self.ports.clone(),
            auth: Default::default(),
        };
        let signer = chain.signer.as_ref().context("no signing wallet")?;
        request_auth::sign(&mut request, signer, &o.host, net::unix_now(), &domain)
            .context("signing the quote request")?;
        let request = LeaseRequest::Quote(request);
        let size = request.encode().len();
        if size > MAX_LEASE_REQUEST_BYTES {
            return Err(usage(anyhow!(
                "the quote request is {size} bytes, over the {MAX_LEASE_REQUEST_BYTES}-byte limit \
                 of /gpuflow/lease/1 (--env values and the SSH key count); nothing was sent"
            )));
        }
        let answer = session
            .ask(host_peer, host_addr.clone(), request, QUOTE_TIMEOUT)
            .await;
        let signed: SignedQuote = match answer.map_err(|e| runtime(e.into()))? {
            LeaseResponse::Quote(q) => q,
            LeaseResponse::Error { code, message } => {
                return Err(refused(&code, &message, offer.id));
            }
            other => {
                return Err(runtime(anyhow!(
                    "the host answered {other:?} to a quote request"
                )));
            }
        };
        let host = HostLink {
            session: &session,
            peer: host_peer,
            addr: host_addr.clone(),
        };
        let lease_id = escrow::lease_id(&Quote::from(signed.quote.clone()), &domain);
        let sending = AtomicBool::new(false);

        // From here the host holds GPUs for us: whatever stops `rent` before `open` (a bad
        // quote, an error, Ctrl-C) releases them.
        let opened = tokio::select! {
            r = async {
                steps.step("checking the quote");
                let quote = verify_quote(
                    &signed,
                    &Expect {
                        host_wallet: o.wallet,
                        renter: me,
                        price_per_gpu_hour: o.price_per_gpu_hour,
                        gpus,
                        max_duration: o.max_duration_secs,
                        paid_secs: secs,
                        chain_id: o.chain_id,
                        escrow: o.escrow,
                        ssh_public_key: ssh_key,
                        // The chain's clock decides `open`; a renter's clock running late must
                        // not let an expired quote through.
                        now: net::unix_now().max(facts.block_time),
                    },
                )
                .map_err(|e| runtime(e.into()))?;
                steps.step("telling the host we are opening");
                host.opening(lease_id).await?;
                let mut rec = LeaseRecord {
                    lease_id,
                    chain_id: o.chain_id,
                    escrow: o.escrow,
                    token: o.token,
                    token_decimals: o.token_decimals,
                    offer_id: offer.id.to_string(),
                    host_peer: o.host.clone(),
                    host_addr: host_addr.as_ref().map(ToString::to_string),
                    gpu_name: o.gpu.model.clone(),
                    gpus,
                    renter: me,
                    quote: signed.quote.clone(),
                    signature: signed.signature.clone(),
                    spec: signed.spec.clone(),
                    deposit: cost.deposit,
                    created_at: net::unix_now(),
                    open_tx: None,
                };
                // Saved before anything is sent: every later call on the lease needs the quote.
                store.save(&rec)?;

                steps.step("authorizing the deposit (permit, or approve)");
                let auth = funding
                    .authorize(cost.deposit, facts.block_time)
                    .await
                    ?;
                steps.step("opening the lease");
                let sig = signed.signature.clone();
                let escrow_c = chain.escrow(o.escrow);
                let open = match &auth {
                    Authorization::Allowance => escrow_c
                        .open(quote.clone(), sig, cost.deposit)
                        .into_transaction_request(),
                    Authorization::Permit(p) => escrow_c
                        .openWithPermit(quote.clone(), sig, cost.deposit, p.deadline, p.v, p.r, p.s)
                        .into_transaction_request(),
                };
                // Past this point the transaction may be on its way: Ctrl-C no longer
                // releases anything (the lease may open), it only stops waiting.
                sending.store(true, Ordering::SeqCst);
                let receipt = chain.send(open, "open").await?;
                rec.open_tx = Some(receipt.transaction_hash);
                Ok::<_, Failure>((rec, auth, receipt))
            } => r,
            _ = tokio::signal::ctrl_c() => Err(Failure::Runtime(anyhow!(
                "interrupted{}",
                if sending.load(Ordering::SeqCst) {
                    "; the open transaction may have been sent: check `gpuflow leases`"
                } else {
                    " before paying; nothing was spent"
                }
            ))),
        };
        let (rec, auth, receipt) = match opened {
            Ok(done) => done,
            Err(e) => {
                if !sending.load(Ordering::SeqCst) {
                    host.release(lease_id).await;
                }
                return Err(e);
            }
        };
        store
            .save(&rec)
            .with_context(|| format!("lease {lease_id} is open, but its record was not updated"))?;

        steps.step("telling the host");
        let hint = LeaseRequest::Opened {
            lease_id,
            tx_hash: receipt.transaction_hash,
        };
        match session
            .ask(host_peer, host_addr.clone(), hint, QUOTE_TIMEOUT)
            .await
        {
            Ok(LeaseResponse::Ack) => {}
            // The host's chain watcher finds the lease anyway; the hint only saves time.
            Ok(other) => tracing::debug!(?other, "Opened hint not acknowledged"),
            Err(e) => {
                tracing::warn!(error = %e, "could not tell the host; it will see the lease on chain")
            }
        }

        steps.step("waiting for the host to start the workload");
        let mut shown = String::new();
        let reached = hostwait::until_running(
            &session,
            &chain,
            &rec,
            host_addr,
            Duration::from_secs(self.timeout),
            &mut |what| steps.progress(what, &mut shown),
        )
        .await?;
        let elapsed = started.elapsed();
        let _ = steps.finish();
        tracing::debug!(ms = elapsed.as_millis(), "rent done");
        print_result(&rec, &cost, &auth, &reached, self.json, elapsed).map_err(runtime)
    }
}

fn print_result(
    rec: &LeaseRecord,
    cost: &Cost,
    auth: &Authorization,
    reached: &Reached,
    json: bool,
    elapsed: Duration,
) -> anyhow::Result<()> {
    let short = format!("{:x}", rec.lease_id);
    let short = &short[..12];
    if json {
        let amount = |v: U256| crate::output::Amount::from_u256(v, rec.token_decimals);
        let out = serde_json::json!({
            "lease_id": rec.lease_id.to_string(),
            "offer_id": rec.offer_id,
            "host_peer": rec.host_peer,
            "host_wallet": rec.quote.host.to_string(),
            "renter": rec.renter.to_string(),
            "gpu_name": rec.gpu_name,
            "gpus": rec.gpus,
            "host": reached.host,
            "ports": reached.ports,
            "ssh": reached.ssh_command(),
            "seconds": cost.seconds,
            "price_per_second": amount(cost.price_per_second),
            "deposit": amount(cost.deposit),
            "max_fee": amount(cost.max_fee),
            "fee_bps": cost.fee_bps,
            "chain_id": rec.chain_id,
            "escrow": rec.escrow.to_string(),
            "token": rec.token.to_string(),
            "open_tx": rec.open_tx.map(|h| h.to_string()),
            "payment": auth.name(),
            "elapsed_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "lease {} is running on host {} ({} × {}), reachable after {:.1} s",
        rec.lease_id,
        rec.host_peer,
        rec.gpus,
        rec.gpu_name,
        elapsed.as_secs_f64()
    );
    print!("{}", reached.describe());
    println!(
        "paid {} for {} s; add time with `gpuflow extend {short} --hours H`, end it with \
         `gpuflow stop {short}`",
        format_units(cost.deposit, rec.token_decimals),
        cost.seconds
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage_message(r: Result<impl std::fmt::Debug, Failure>) -> String {
        match r {
            Err(Failure::Usage(e)) => e.to_string(),
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn bad_env_values_are_usage_errors_before_anything_is_sent() {
        parse_env(&["HF_TOKEN=abc".into()]).unwrap();
        assert!(usage_message(parse_env(&["1A=b".into()])).contains("not starting with a digit"));
        assert!(usage_message(parse_env(&["PORT=1".into()])).contains("set by the host"));
        assert!(usage_message(parse_env(&["A".into()])).contains("NAME=VALUE"));
        assert!(usage_message(parse_env(&["A=1".into(), "A=2".into()])).contains("twice"));
    }

    #[test]
    fn ssh_key_files_are_checked_before_anything_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("id.pub");
        std::fs::write(
            &good,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl r@x\n",
        )
        .unwrap();
        assert!(
            read_ssh_key(Some(&good))
                .unwrap()
                .starts_with("ssh-ed25519 ")
        );
        let private = dir.path().join("id");
        std::fs::write(&private, "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n").unwrap();
        assert!(usage_message(read_ssh_key(Some(&private))).contains("private key"));
        let junk = dir.path().join("junk.pub");
        std::fs::write(&junk, "hello world\n").unwrap();
        assert!(usage_message(read_ssh_key(Some(&junk))).contains("not an OpenSSH public key"));
        assert!(usage_message(read_ssh_key(Some(dir.path()))).contains("not a regular file"));
    }
}
