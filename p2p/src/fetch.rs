//! The renter CLI's short-lived peer: start a client-mode node, pull the book from the first
//! bootstrap peer that answers, shut down.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use gpuflow_protocol::book::OfferBook;
use gpuflow_protocol::offer::VerifiedOffer;
use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::config::P2pConfig;
use crate::error::P2pError;

/// Dials every address in `bootstrap` at once, syncs the whole book from the first peer that
/// answers (trying the next on failure) and returns it, every offer verified. Gives up after
/// `timeout` with [`P2pError::NoBootstrapAnswered`].
///
/// The node uses a fresh random identity, listens nowhere and stays out of the DHT, so nothing
/// of the renter outlives the call.
pub async fn fetch_book(
    bootstrap: &[Multiaddr],
    timeout: Duration,
) -> Result<Vec<VerifiedOffer>, P2pError> {
    if bootstrap.is_empty() {
        return Err(P2pError::NoBootstrap);
    }
    let config = P2pConfig::new(Keypair::generate_ed25519());
    // The event receiver is dropped: the loop then discards events, which is what we want.
    let (client, event_loop, _) = crate::new(config, OfferBook::new())?;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(event_loop.run(shutdown.clone()));

    let pull = async {
        let mut dials: FuturesUnordered<_> = bootstrap
            .iter()
            .map(|addr| {
                let client = client.clone();
                let addr = addr.clone();
                async move { (client.dial(addr.clone()).await, addr) }
            })
            .collect();
        while let Some((dialled, addr)) = dials.next().await {
            let peer = match dialled {
                Ok(peer) => peer,
                Err(e) => {
                    debug!(target: "p2p", %addr, error = %e, "bootstrap peer unreachable");
                    continue;
                }
            };
            match client.sync_book(peer).await {
                Ok(report) => {
                    debug!(target: "p2p", %peer, ?report, "book fetched");
                    return client.book().await;
                }
                Err(e) => debug!(target: "p2p", %peer, error = %e, "book sync failed"),
            }
        }
        Err(P2pError::NoBootstrapAnswered {
            addrs: bootstrap.to_vec(),
        })
    };
    let result = tokio::time::timeout(timeout, pull).await;
    shutdown.cancel();
    // The loop ends at its next poll; a panic in it has already failed the calls above.
    let _ = task.await;
    result.unwrap_or_else(|_| {
        Err(P2pError::NoBootstrapAnswered {
            addrs: bootstrap.to_vec(),
        })
    })
}
