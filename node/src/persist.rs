//! The store task: writes the p2p layer's book changes to SQLite, in batches.
//!
//! The p2p layer never waits for us: when its event channel is full it drops events and counts
//! them. This task notices the counter moving (on its periodic tick) and then rewrites the
//! stored book from a fresh snapshot, so a slow disk costs freshness, never correctness.

use std::collections::HashSet;
use std::time::Duration;

use gpuflow_protocol::offer::OfferId;

use gpuflow_p2p::{Client, Event};
use tokio::sync::mpsc;

use crate::offers::unix_now;
use crate::store::{Change, Store};

/// Most events written in one transaction.
const MAX_BATCH: usize = 512;
/// How often expired rows are deleted and the drop counter checked.
const TICK: Duration = Duration::from_secs(30);

/// Persists book changes from `events` until the p2p event loop ends (its sender is dropped),
/// then writes what is left. `client` is used to re-read the book after dropped events.
pub async fn run(store: Store, client: Client, mut events: mpsc::Receiver<Event>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dropped_seen = 0u64;
    let mut batch: Vec<Change> = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                collect(ev, &mut batch);
                while batch.len() < MAX_BATCH {
                    match events.try_recv() {
                        Ok(ev) => collect(ev, &mut batch),
                        Err(_) => break,
                    }
                }
                write(&store, &mut batch).await;
            }
            _ = tick.tick() => {
                match store.prune_expired(unix_now()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(target: "store", pruned = n, "expired offers deleted"),
                    Err(e) => tracing::warn!(target: "store", error = %e, "pruning failed"),
                }
                if let Ok(stats) = client.stats().await
                    && stats.dropped_events > dropped_seen
                {
                    dropped_seen = stats.dropped_events;
                    resync(&store, &client).await;
                }
            }
        }
    }
    write(&store, &mut batch).await;
    tracing::debug!(target: "store", "store task finished");
}

fn collect(ev: Event, batch: &mut Vec<Change>) {
    match ev {
        Event::OfferStored(v) => batch.push(Change::Put(Box::new(v))),
        Event::OfferRemoved(id) => batch.push(Change::Remove(id)),
        Event::PeerConnected(peer) => tracing::debug!(target: "p2p", %peer, "peer connected"),
        Event::PeerDisconnected(peer) => tracing::debug!(target: "p2p", %peer, "peer disconnected"),
        Event::Rejected { peer, reason } => {
            tracing::debug!(target: "p2p", %peer, %reason, "message from peer rejected");
        }
    }
}

async fn write(store: &Store, batch: &mut Vec<Change>) {
    if batch.is_empty() {
        return;
    }
    match store.apply(batch).await {
        Ok(()) => tracing::trace!(target: "store", changes = batch.len(), "book changes written"),
        // The in-memory book is unaffected; the next restart is merely less warm.
        Err(e) => {
            tracing::error!(target: "store", error = %e, changes = batch.len(), "writing book changes failed")
        }
    }
    batch.clear();
}

/// Rewrites the stored book from the p2p layer's snapshot after events were lost.
async fn resync(store: &Store, client: &Client) {
    let Ok(book) = client.book().await else {
        return;
    };
    let held = book.len();
    let live: HashSet<OfferId> = book.iter().map(|b| b.id).collect();
    let mut changes: Vec<Change> = match store.offer_ids().await {
        Ok(stored) => stored
            .into_iter()
            .filter(|id| !live.contains(id))
            .map(Change::Remove)
            .collect(),
        Err(_) => Vec::new(),
    };
    changes.extend(book.into_iter().map(|v| Change::Put(Box::new(v))));
    match store.apply(&changes).await {
        Ok(()) => {
            tracing::info!(target: "store", offers = held, "stored book rewritten after dropped events")
        }
        Err(e) => tracing::error!(target: "store", error = %e, "rewriting the stored book failed"),
    }
}
