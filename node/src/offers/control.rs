//! Pausing and resuming this host's offers while the announcer runs, and reading what it has
//! published.
//!
//! The [`Announcer`](super::Announcer) task owns the offers; the rest of the node (the API)
//! holds an [`OfferControl`]: requests go to the task on a bounded channel with a reply, and
//! what is published is shared through a `watch`, so reading it never waits on the task.

use gpuflow_protocol::offer::{GpuSource, GpuSpec, OfferId};
use tokio::sync::{mpsc, oneshot, watch};

use super::AnnounceError;

/// Pause/resume requests waiting for the announcer. An operator sends one at a time; when full,
/// [`OfferControl::set_paused`] waits for room (under the API's request timeout).
pub(super) const CONTROL_QUEUE: usize = 8;

/// One offer as currently published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedOffer {
    /// Offer id.
    pub id: OfferId,
    /// Offer name.
    pub name: String,
    /// The GPUs offered.
    pub gpu: GpuSpec,
    /// Detected or declared.
    pub gpu_source: GpuSource,
    /// Price per GPU-hour, token base units.
    pub price_per_gpu_hour: u128,
    /// Sequence number of the published copy.
    pub seq: u64,
    /// When the published copy expires (unix seconds).
    pub expires_at: u64,
}

impl PublishedOffer {
    /// Price per hour of the whole offer (all its GPUs), token base units.
    pub fn price_per_hour(&self) -> u128 {
        self.price_per_gpu_hour
            .saturating_mul(u128::from(self.gpu.count))
    }
}

/// What the announcer has published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// An operator paused the offers: none are published or re-announced until resumed.
    pub paused: bool,
    /// The offers published now, by name.
    pub offers: Vec<PublishedOffer>,
}

impl Published {
    pub(super) fn upsert(&mut self, offer: PublishedOffer) {
        match self.offers.iter_mut().find(|o| o.name == offer.name) {
            Some(o) => *o = offer,
            None => {
                self.offers.push(offer);
                self.offers.sort_by(|a, b| a.name.cmp(&b.name));
            }
        }
    }

    pub(super) fn remove(&mut self, name: &str) {
        self.offers.retain(|o| o.name != name);
    }
}

/// A pause or resume request.
#[derive(Debug)]
pub(super) struct Control {
    pub(super) paused: bool,
    pub(super) reply: oneshot::Sender<Result<(), AnnounceError>>,
}

/// Why a pause or resume did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The announcer is not running (the node is stopping).
    #[error("the offer announcer is not running (the node is stopping); try again after a restart")]
    Stopped,
    /// Withdrawing or announcing failed; the pause state was changed anyway and the next round
    /// retries (a paused offer that could not be withdrawn expires by itself).
    #[error(transparent)]
    Announce(#[from] AnnounceError),
}

/// Pauses and resumes the announcer and reads what it published. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OfferControl {
    pub(super) tx: mpsc::Sender<Control>,
    pub(super) published: watch::Receiver<Published>,
}

impl OfferControl {
    /// What is published now.
    pub fn published(&self) -> Published {
        self.published.borrow().clone()
    }

    /// Pauses (withdraws the offers and stops re-announcing them) or resumes (announces them
    /// again at once). Returns once the announcer has handed the messages to the network.
    /// Idempotent.
    pub async fn set_paused(&self, paused: bool) -> Result<(), ControlError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Control { paused, reply })
            .await
            .map_err(|_| ControlError::Stopped)?;
        rx.await.map_err(|_| ControlError::Stopped)??;
        Ok(())
    }
}
