//! `gpuflow-node`: the GPUFlow host daemon.
//!
//! This release ships the foundation (escrow contract, bindings, devnet). The daemon's
//! networking, lease engine and API arrive with the offers and lease-engine milestones; until
//! then the binary only reports its version and what it will do.

use clap::Parser;

/// GPUFlow host node: advertises this machine's GPUs, answers quotes, runs paid leases.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!(
        "gpuflow-node {}: the host daemon is not built yet; `make devnet` runs the chain side",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
