//! Multi-node tests of gpuflow-p2p: real TCP (and QUIC) on 127.0.0.1 with OS-assigned ports,
//! many nodes in one process. Every wait is on an event or answer, bounded by a timeout.

#![allow(clippy::unwrap_used)]

mod common;
mod fetch;
mod flood;
mod gossip;
mod invalid;
mod lease;
mod sync;
