//! `gpuflow search`: find offers with the query language, cheapest first by default.

use std::fmt::Write;

use anyhow::anyhow;
use gpuflow_protocol::book::OfferBook;
use gpuflow_protocol::query::{EvalCtx, Query, SortSpec, fields};
use serde::Serialize;

use crate::Failure;
use crate::net::{self, NetArgs};
use crate::output::{JSON_FIELDS_HELP, JsonOffer, offers_table};

/// Search the offer book.
///
/// Joins the network as a short-lived peer, pulls the offer book from a bootstrap peer,
/// verifies every offer's signatures locally, then filters and ranks with the query. The table
/// (or JSON) goes to stdout; progress and errors go to stderr.
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
        "\n\nExit status: 0 results printed (possibly none), 1 runtime failure (no peer answered),
2 usage or query error (unknown field, bad value, no bootstrap peers configured).",
    );
    s
}

#[derive(Serialize)]
struct JsonResult {
    book_size: usize,
    offers: Vec<JsonOffer>,
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
        let mut book = OfferBook::new();
        for v in offers {
            book.insert(v);
        }
        let ctx = EvalCtx::new(net::unix_now());
        let hits = book.search(&query, &sort, self.limit, &ctx);
        if self.json {
            let out = JsonResult {
                book_size: book.len(),
                offers: hits.iter().map(|v| JsonOffer::new(v, &ctx)).collect(),
            };
            let text =
                serde_json::to_string_pretty(&out).map_err(|e| Failure::Runtime(e.into()))?;
            println!("{text}");
        } else if hits.is_empty() {
            eprintln!("no offer matches ({} offers in the book)", book.len());
        } else {
            print!("{}", offers_table(&hits, &ctx));
        }
        Ok(())
    }
}
