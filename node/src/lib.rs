//! # gpuflow-node
//!
//! The host daemon. The node finds its GPUs ([`gpu`]: NVML, or the GPUs declared in its
//! config), prices them from its [`config`], signs one offer per GPU group with its identity
//! key ([`identity`], also its libp2p identity) and keeps them announced on the p2p network
//! ([`offers`]). It holds everyone's offers in the p2p layer's in-memory book and persists that
//! book to SQLite ([`store`]) so a restart starts warm. It answers renters' quote requests over
//! `/gpuflow/lease/1` with EIP-712 quotes signed by the host wallet, reserving the GPUs while
//! the quote is open ([`quote`]). [`node::run`] wires the parts together as tasks under one
//! cancellation token.
//!
//! With a chain RPC the node also runs the lease engine ([`engine`]): the lease state machine
//! and records ([`lease`]), the escrow event watcher and transaction sender ([`chain`]), workload
//! drivers ([`runtime`]: `process` or `docker`, chosen with `--runtime`), and batched
//! `withdrawMany` withdrawals of what the leases earned ([`earnings`] keeps the payouts). The
//! host wallet comes from the environment or an encrypted keystore ([`wallet`]). The local HTTP
//! API ([`api`]) serves the node's status, leases, earnings and metrics, and lets the operator
//! pause offers and withdraw (`node/view.rs` implements its `NodeView` over the live handles).
//! With an RPC the node also indexes every host's escrow events ([`scores`]) and serves
//! reliability scores from them (`GET /reliability`, `GET /hosts/{address}`).
//!
//! Code map: `config/` (layered settings and the example file), `identity.rs`, `gpu/` (probe
//! trait, selection, NVML driver), `offers.rs` + `offers/control.rs` (building, sequence
//! numbers, announcer, pause/resume), `store.rs` (SQLite, migrations in `node/migrations`),
//! `quote.rs`, `lease/`, `chain/`, `engine.rs` + `engine/` (worker, recovery, withdrawals),
//! `earnings.rs`, `runtime/`, `wallet.rs`, `api/`, `scores.rs` (reliability index task;
//! `scores_mock.rs` scripts an RPC for its tests), `secret_file.rs`, `node.rs` + `node/view.rs`
//! (start-up, shutdown, the API's view). The binary: `main.rs`, `cmd/` (keystore subcommands,
//! host wallet resolution, terminal prompts).
//!
//! Invariants: money is base units (`u128`/`U256`) from the config on; the identity key, API
//! token and keystore files are never group/world readable; private keys are never logged; an
//! offer's sequence number never repeats for the same id; a reverting transaction is never sent
//! twice (every transaction is simulated first).

pub mod api;
pub mod chain;
pub mod config;
pub mod earnings;
pub mod engine;
pub mod gpu;
pub mod identity;
pub mod lease;
pub mod node;
pub mod offers;
pub mod persist;
pub mod quote;
pub mod receipts;
pub mod runtime;
pub mod scores;
pub mod secret_file;
pub mod store;
pub mod wallet;
