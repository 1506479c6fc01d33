//! `gpuflow search`: find offers with the query language, cheapest first by default.

use std::collections::HashMap;
use std::fmt::Write;

use anyhow::anyhow;
use gpuflow_protocol::book::OfferBook;
use gpuflow_protocol::offer::VerifiedOffer;
use gpuflow_protocol::query::{EvalCtx, Query, SortSpec, fields};
use serde::Serialize;

use super::host::{ScoreArgs, ScoreSource, Scores, load_scores};
use crate::Failure;
use crate::net::{self, NetArgs};
use crate::output::{HostCols, JSON_FIELDS_HELP, JsonOffer, offers_table};

/// Search the offer book.
///
/// Joins the network as a short-lived peer, pulls the offer book from a bootstrap peer,
/// verifies every offer's signatures locally, then filters and ranks with the query. Host
/// reliability comes from the escrow's lease events, indexed into a local cache
/// (<data dir>/reliability.db) synced from the chain RPC before each search; offers map to
/// hosts by the wallet they are bound to. The table (or JSON) goes to stdout; progress and
/// errors go to stderr.
#[derive(Debug, clap::Args)]
#[command(after_help = help_text())]
pub(crate) struct SearchArgs {
    /// Query clauses `field OP value`, all of which must hold (quote clauses with spaces or
    /// shell characters such as < and >). Operators: < <= = == != >= > in notin; `field=any`
    /// removes a filter. No query lists every offer.
    #[arg(value_name = "QUERY")]
    query: Vec<String>,
    /// Sort order: comma-separated fields (or `score`) each with + (ascending, default) or -
    /// (descending), e.g. `num_gpus-,dph+`. [default: dph+]
    #[arg(short = 'o', long = "order", value_name = "FIELD(+|-)")]
    order: Option<String>,
    /// Show at most this many offers.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print JSON instead of a table (fields below).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    scores: ScoreArgs,
}

/// The field list (from the query module, so it never drifts), examples, JSON and exit codes.
fn help_text() -> String {
    let mut s = String::from("Query fields:\n");
    for f in fields() {
        let _ = writeln!(s, "  {:<15} {:<8} {}", f.name, f.kind.name(), f.meaning);
    }
    s.push_str(
        "\nExamples:
  gpuflow search gpu_name=RTX_4090 'num_gpus>=2'
  gpuflow search 'gpu_ram>=20 reliability>0.98 dph<=0.6 geolocation in [DE,NL]' -o 'score-'
  gpuflow search 'cuda_vers>=12.4' verified=true -o 'num_gpus-,dph+' --limit 5
  gpuflow search --json | jq -r '.offers[0].id'

",
    );
    s.push_str(JSON_FIELDS_HELP);
    s.push_str(
        "\nSearch adds to each offer: score (the rank: 10th percentile of the host's Beta; what
  `-o score-` sorts by), leases (on chain), host_first_seen (unix seconds, on chain, or null),
  scored (false: no scores could be read and reliability is the new-host prior 0.6); and at
  the top \"scores\": {\"source\": \"chain\" | \"cache\" | \"unavailable\", ...}.
Reliability: `reliability` (filter and sort) is the host's mean, `score` the rank; see
docs/reliability.md for the formula.",
    );
    s.push_str(
        "\n\nExit status: 0 results printed (possibly none), 1 runtime failure (no peer answered),
2 usage or query error (unknown field, bad value, no bootstrap peers configured).",
    );
    s
}

#[derive(Serialize)]
struct JsonResult {
    book_size: usize,
    offers: Vec<SearchOffer>,
    scores: ScoreSource,
}

/// One offer in search's JSON: the offer fields plus its host's chain facts.
#[derive(Serialize)]
struct SearchOffer {
    #[serde(flatten)]
    offer: JsonOffer,
    score: f64,
    leases: u64,
    host_first_seen: Option<u64>,
    scored: bool,
}

/// Scores keyed by peer id, as the query evaluator wants them: the mean (for `reliability`
/// filters) and the rank (for the `score` sort).
fn by_peer(
    offers: &[VerifiedOffer],
    scores: &Scores,
) -> (HashMap<String, f64>, HashMap<String, f64>) {
    let mut mean = HashMap::new();
    let mut rank = HashMap::new();
    for v in offers {
        let s = scores.of(v.offer.wallet);
        mean.insert(v.offer.host.clone(), s.reliability);
        rank.insert(v.offer.host.clone(), s.rank);
    }
    (mean, rank)
}

impl SearchArgs {
    pub(crate) async fn run(self) -> Result<(), Failure> {
        // Parse before touching the network: a typo fails at once, with exit code 2.
        let query = Query::parse(&self.query.join(" ")).map_err(|e| Failure::Usage(anyhow!(e)))?;
        let sort = match &self.order {
            Some(o) => SortSpec::parse(o).map_err(|e| Failure::Usage(anyhow!(e)))?,
            None => SortSpec::default(),
        };
        let offers = net::fetch(&self.net, self.json).await?;
        let scores =
            load_scores(&self.scores, self.net.config.as_deref(), &offers, self.json).await;
        if let ScoreSource::Unavailable { reason } = &scores.source {
            eprintln!(
                "note: reliability scores unavailable ({reason}); every host shows the new-host \
                 prior, marked *"
            );
        }
        let (mean, rank) = by_peer(&offers, &scores);
        let mut book = OfferBook::new();
        for v in offers {
            book.insert(v);
        }
        let now = net::unix_now();
        // `reliability` filters and sorts read the means, `score` sorts the ranks.
        let ctx = EvalCtx::with_scores(now, &mean).with_ranks(&rank);
        let hits = book.search(&query, &sort, self.limit, &ctx);
        let host = |v: &VerifiedOffer| {
            let s = scores.of(v.offer.wallet);
            HostCols {
                reliability: s.reliability,
                leases: s.leases,
                age_secs: now.saturating_sub(s.first_seen.unwrap_or(v.offer.host_since)),
                scored: scores.available(),
            }
        };
        if self.json {
            let out = JsonResult {
                book_size: book.len(),
                offers: hits
                    .iter()
                    .map(|v| {
                        let s = scores.of(v.offer.wallet);
                        SearchOffer {
                            offer: JsonOffer::new(v, &ctx),
                            score: s.rank,
                            leases: s.leases,
                            host_first_seen: s.first_seen,
                            scored: scores.available(),
                        }
                    })
                    .collect(),
                scores: scores.source.clone(),
            };
            let text =
                serde_json::to_string_pretty(&out).map_err(|e| Failure::Runtime(e.into()))?;
            println!("{text}");
        } else if hits.is_empty() {
            eprintln!("no offer matches ({} offers in the book)", book.len());
        } else {
            print!("{}", offers_table(&hits, &host));
        }
        Ok(())
    }
}
