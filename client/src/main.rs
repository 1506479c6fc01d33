//! `gpuflow`: the GPUFlow renter CLI.
//!
//! The CLI is itself a short-lived libp2p peer: it dials bootstrap peers, pulls the offer book,
//! verifies every signature locally, and filters and ranks with the query language. One file
//! per subcommand under `cmd/`; stdout carries only the result (a table, or JSON with
//! `--json`), stderr carries progress, warnings and errors.

mod bootstrap;
mod cmd;
mod net;
mod output;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// GPUFlow renter CLI: find GPU offers on the GPUFlow network.
///
/// Exit status: 0 success; 1 runtime failure (no peer answered, offer not found); 2 usage
/// error (bad flag, bad query, no bootstrap peers configured). Set RUST_LOG=debug for details
/// on stderr.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Search the offer book with a query, e.g. `gpuflow search gpu_name=RTX_4090 'num_gpus>=2'`.
    Search(cmd::search::SearchArgs),
    /// Show one offer in full.
    Offer(cmd::offer::OfferArgs),
}

/// A failed command, by what the exit code should tell a script.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The user asked for something invalid: exit 2.
    Usage(anyhow::Error),
    /// The request was fine but could not be served: exit 1.
    Runtime(anyhow::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Search(args) => Box::pin(args.run()).await,
            Command::Offer(args) => Box::pin(args.run()).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
