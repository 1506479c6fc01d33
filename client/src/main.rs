//! `gpuflow`: the GPUFlow renter CLI.
//!
//! The CLI is itself a short-lived libp2p peer: it dials bootstrap peers, pulls the offer book,
//! verifies every signature locally, and filters and ranks with the query language. One file
//! per subcommand under `cmd/`; stdout carries only the result (a table, or JSON with
//! `--json`), stderr carries progress, warnings and errors.

mod bootstrap;
mod chain;
mod cmd;
mod home;
mod hostwait;
mod net;
mod output;
mod permit;
mod receipts;
mod steps;
mod store;
mod wallet;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// GPUFlow renter CLI: find GPU offers, rent them from your own wallet, manage your leases.
///
/// Exit status: 0 success; 1 runtime failure (no peer answered, offer not found, not enough
/// funds, transaction reverted); 2 usage error (bad flag, bad query, nothing configured);
/// 3 timed out (`wait`, or `rent` waiting for the workload); 4 the lease is already closed
/// (`stop`, `extend`: nothing was sent). Set RUST_LOG=debug for details on stderr.
///
/// Every chain RPC request gives up after GPUFLOW_RPC_TIMEOUT_SECS seconds (default 20): a
/// chain RPC that does not answer fails the command (exit 1) with a message naming it, instead
/// of hanging it.
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
    /// Show a host's history from the chain: leases, outcomes, volume, score with its inputs.
    Host(cmd::host::HostArgs),
    /// Rent an offer: quote, pay the deposit into the escrow, wait for the workload.
    Rent(cmd::rent::RentArgs),
    /// List the leases rented from this machine, with their state on chain and at the host.
    Leases(cmd::leases::LeasesArgs),
    /// Show one lease (by id or a unique prefix of it).
    Lease(cmd::leases::LeaseArgs),
    /// Add hours to a lease (approve + topUp).
    Extend(cmd::extend::ExtendArgs),
    /// End a lease (close): the host is paid what accrued, the rest is refunded.
    Stop(cmd::stop::StopArgs),
    /// Wait until a lease is running or closed (exit 0 reached, 1 error, 3 timed out).
    Wait(cmd::wait::WaitArgs),
    /// Print a lease's workload output (--tail N, --follow); only its renter can.
    Logs(cmd::logs::LogsArgs),
    /// Manage wallets: encrypted keystores under the data directory.
    #[command(subcommand)]
    Wallet(cmd::wallet::WalletCommand),
    /// List the built-in workload templates.
    Templates(cmd::templates::TemplatesArgs),
}

/// A failed command, by what the exit code should tell a script.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The user asked for something invalid: exit 2.
    Usage(anyhow::Error),
    /// The request was fine but could not be served: exit 1.
    Runtime(anyhow::Error),
    /// What was awaited did not happen in time: exit 3.
    TimedOut(anyhow::Error),
    /// The lease is already closed; nothing was sent: exit 4.
    AlreadyClosed(anyhow::Error),
}

/// Any error that is not classified otherwise is a runtime failure (exit 1), so `?` works on
/// `anyhow` results; usage errors, timeouts and closed leases are still built explicitly.
impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
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
            Command::Host(args) => Box::pin(args.run()).await,
            Command::Rent(args) => Box::pin(args.run()).await,
            Command::Leases(args) => Box::pin(args.run()).await,
            Command::Lease(args) => Box::pin(args.run()).await,
            Command::Extend(args) => Box::pin(args.run()).await,
            Command::Stop(args) => Box::pin(args.run()).await,
            Command::Wait(args) => Box::pin(args.run()).await,
            Command::Logs(args) => Box::pin(args.run()).await,
            Command::Wallet(cmd) => Box::pin(cmd.run()).await,
            Command::Templates(args) => args.run(),
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
        Err(Failure::TimedOut(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
        Err(Failure::AlreadyClosed(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(4)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand's flags are consistent (no two flags share a name, defaults parse):
    /// clap checks this only when a command is first used, so a clash would reach users.
    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
