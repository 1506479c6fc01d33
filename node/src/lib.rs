//! # gpuflow-node
//!
//! The host daemon. This milestone: offers. The node finds its GPUs ([`gpu`]: NVML, or the GPUs
//! declared in its config), prices them from its [`config`], signs one offer per GPU group with
//! its identity key ([`identity`], also its libp2p identity) and keeps them announced on the p2p
//! network ([`offers`]). It holds everyone's offers in the p2p layer's in-memory book and
//! persists that book to SQLite ([`store`]) so a restart starts warm. [`node::run`] wires the
//! parts together as tasks under one cancellation token.
//!
//! Code map: `config/` (layered settings and the example file), `identity.rs`, `gpu/` (probe
//! trait, selection, NVML driver), `offers.rs` (building, sequence numbers, announcer),
//! `store.rs` (SQLite, migrations in `node/migrations`), `node.rs` (start-up and shutdown).
//!
//! Invariants: money is base units (`u128`) from the config on; the identity key file is never
//! group/world readable; the host wallet's private key comes only from the environment and is
//! never logged; an offer's sequence number never repeats for the same id.

pub mod api;
pub mod chain;
pub mod config;
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
