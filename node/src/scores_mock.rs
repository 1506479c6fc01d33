//! A scripted chain RPC for the reliability index's tests: alloy's mock transport answering
//! the calls of one first `sync_once` (chain id, genesis, head, the range's blocks, the logs).

use alloy::primitives::{Address, Bytes, LogData, U64, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Block, Log};
use alloy::sol_types::SolEvent;
use alloy::transports::mock::Asserter;
use gpuflow_protocol::escrow::GpuFlowEscrow;
use gpuflow_reliability::{Indexer, IndexerConfig};

/// The escrow of the scripted chain.
pub(crate) const ESCROW: Address = Address::repeat_byte(0xee);
/// The block timestamp of every scripted block.
pub(crate) const BLOCK_TIME: u64 = 1_700_000_000;

/// A provider answering from `asserter`, in order.
pub(crate) fn provider(asserter: &Asserter) -> DynProvider {
    ProviderBuilder::new()
        .connect_mocked_client(asserter.clone())
        .erased()
}

fn block(n: u64) -> Block {
    let mut b: Block = Block::default();
    b.header.inner.number = n;
    b.header.inner.timestamp = BLOCK_TIME;
    b
}

/// `HostRegistered(host, peer_id)` in block 1, as the escrow would log it.
pub(crate) fn registered(host: Address, peer_id: &[u8]) -> Log {
    let e = GpuFlowEscrow::HostRegistered {
        host,
        peerId: Bytes::copy_from_slice(peer_id),
        registeredAt: U256::from(BLOCK_TIME),
        bond: U256::ZERO,
    };
    let data: LogData = e.encode_log_data();
    Log {
        inner: alloy::primitives::Log {
            address: ESCROW,
            data,
        },
        block_number: Some(1),
        block_timestamp: Some(BLOCK_TIME),
        log_index: Some(0),
        transaction_index: Some(0),
        ..Log::default()
    }
}

/// Queues the answers of a first `sync_once` over blocks 0..=1 (devnet chain id, 6 decimals
/// configured) that returns `logs`.
pub(crate) fn queue_first_sync(asserter: &Asserter, logs: &[Log]) {
    asserter.push_success(&U64::from(31_337u64)); // eth_chainId
    asserter.push_success(&block(0)); // genesis
    asserter.push_success(&U64::from(1u64)); // eth_blockNumber
    asserter.push_success(&block(1)); // the range's last block, before the logs
    asserter.push_success(&block(0)); // the range's first block
    asserter.push_success(&logs.to_vec()); // eth_getLogs
    asserter.push_success(&block(1)); // the last block again, after the logs
}

/// An index at `db` on the scripted chain, synced once over `logs`.
pub(crate) async fn synced_indexer(db: &std::path::Path, logs: &[Log]) -> (Indexer, Asserter) {
    let asserter = Asserter::new();
    let cfg = IndexerConfig {
        decimals: Some(6),
        ..IndexerConfig::new(ESCROW, 0)
    };
    let mut ix = Indexer::open(db, provider(&asserter), cfg).await.unwrap();
    queue_first_sync(&asserter, logs);
    let p = ix.sync_once().await.unwrap();
    assert!(p.caught_up, "{p:?}");
    (ix, asserter)
}
