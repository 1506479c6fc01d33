//! What a runtime is doing for each lease it is getting ready (pulling the image, creating and
//! starting the container), shared with the lease protocol's `Status` answer so the renter sees
//! progress while the host prepares the workload, before billing starts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use alloy::primitives::B256;

/// One lease's preparation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preparing {
    /// `pulling`, `creating` or `starting`.
    pub phase: &'static str,
    /// Image bytes downloaded (while pulling).
    pub done: u64,
    /// Image bytes in all, 0 when the registry has not said yet.
    pub total: u64,
}

/// The preparations in progress, by lease. Cheap to clone (one shared map).
#[derive(Debug, Clone, Default)]
pub struct LaunchBoard(Arc<Mutex<HashMap<B256, Preparing>>>);

impl LaunchBoard {
    /// Records that `lease` is in `phase` (bytes kept from the last update of the same phase).
    pub fn phase(&self, lease: B256, phase: &'static str) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(lease).or_insert(Preparing {
            phase,
            done: 0,
            total: 0,
        });
        entry.phase = phase;
    }

    /// Records pull progress of `lease`.
    pub fn pulled(&self, lease: B256, done: u64, total: u64) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.insert(
            lease,
            Preparing {
                phase: "pulling",
                done,
                total,
            },
        );
    }

    /// `lease` is no longer being prepared (it runs, or failed).
    pub fn done(&self, lease: B256) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&lease);
    }

    /// What `lease` is doing, if it is being prepared.
    pub fn get(&self, lease: B256) -> Option<Preparing> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&lease)
            .copied()
    }
}

/// Sums per-layer pull progress into one (done, total): the engine reports each layer's bytes
/// separately and repeats them as they grow.
#[derive(Debug, Default)]
pub struct PullTally {
    layers: HashMap<String, (u64, u64)>,
}

impl PullTally {
    /// Takes one progress item of `layer`; returns the new sums.
    pub fn update(&mut self, layer: &str, current: Option<i64>, total: Option<i64>) -> (u64, u64) {
        let entry = self.layers.entry(layer.to_owned()).or_default();
        let as_u64 = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
        if let Some(t) = as_u64(total).filter(|t| *t > 0) {
            entry.1 = t;
        }
        if let Some(c) = as_u64(current) {
            entry.0 = c;
        }
        self.sums()
    }

    /// A layer finished downloading: all of its bytes are done.
    pub fn complete(&mut self, layer: &str) -> (u64, u64) {
        if let Some(e) = self.layers.get_mut(layer) {
            e.0 = e.1;
        }
        self.sums()
    }

    fn sums(&self) -> (u64, u64) {
        self.layers.values().fold((0, 0), |(d, t), (ld, lt)| {
            (d.saturating_add(*ld), t.saturating_add(*lt))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_add_up_and_completed_layers_count_whole() {
        let mut t = PullTally::default();
        assert_eq!(t.update("a", Some(10), Some(100)), (10, 100));
        assert_eq!(t.update("b", Some(5), Some(50)), (15, 150));
        assert_eq!(t.update("a", Some(60), Some(100)), (65, 150));
        assert_eq!(t.complete("b"), (110, 150));
        // Garbage from the engine never goes negative or wraps.
        assert_eq!(t.update("c", Some(-1), Some(-5)), (110, 150));
    }

    #[test]
    fn the_board_tracks_each_lease_until_done() {
        let board = LaunchBoard::default();
        let lease = B256::repeat_byte(1);
        assert_eq!(board.get(lease), None);
        board.pulled(lease, 1, 2);
        board.phase(lease, "creating");
        assert_eq!(
            board.get(lease),
            Some(Preparing {
                phase: "creating",
                done: 1,
                total: 2
            })
        );
        board.done(lease);
        assert_eq!(board.get(lease), None);
    }
}
