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
//! The lease engine's parts are built and tested on their own: the lease state machine and
//! records ([`lease`]), the escrow event watcher and transaction sender ([`chain`]), workload
//! drivers ([`runtime`]: `process` and `docker`), the host wallet keystore ([`wallet`]) and the
//! local HTTP API ([`api`]).
//!
//! Code map: `config/` (layered settings and the example file), `identity.rs`, `gpu/` (probe
//! trait, selection, NVML driver), `offers.rs` (building, sequence numbers, announcer),
//! `store.rs` (SQLite, migrations in `node/migrations`), `quote.rs`, `lease/`, `chain/`,
//! `runtime/`, `wallet.rs`, `api/`, `secret_file.rs`, `node.rs` (start-up and shutdown).
//!
//! Invariants: money is base units (`u128`/`U256`) from the config on; the identity key, API
//! token and keystore files are never group/world readable; private keys are never logged; an
//! offer's sequence number never repeats for the same id; a reverting transaction is never sent
//! twice (every transaction is simulated first).

pub mod api;
pub mod chain;
pub mod config;
pub mod engine;
pub mod gpu;
pub mod identity;
pub mod lease;
pub mod node;
pub mod offers;
pub mod persist;
pub mod quote;
pub mod runtime;
pub mod secret_file;
pub mod store;
pub mod wallet;
