//! `gpuflow`: the GPUFlow renter CLI.
//!
//! This release ships the foundation (escrow contract, bindings, devnet). Search and renting
//! arrive with the offers and renting milestones.

use clap::Parser;

/// GPUFlow renter CLI: search GPU offers, rent, and pay from your own wallet.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!(
        "gpuflow {}: no subcommands yet; search and rent arrive with the next milestones",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
