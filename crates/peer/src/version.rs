//! Publishing the model version on chain (issue 16): what a peer's axon signs into its answers
//! (`Nucleus::model_version`: a hash of the parameters and the training step) is announced with
//! a `publish_version` transaction when it changes, so validators can tell which model answered
//! and whose version appeared first ([`crate::copies`]).
//!
//! Rate: training changes the version every step, so publishing every change would cost one
//! transaction (and one fee, `serve`'s) per peer per step. A peer publishes its first version as
//! soon as it serves, then at most once every `interval` blocks ([`DEFAULT_VERSION_INTERVAL`]:
//! 100 blocks, 0.01 transactions per peer per block, 1e-7 token a block at the default fee), and
//! only if the version changed. Between publications its answers sign later steps of the same
//! lineage, which validators accept ([`crate::copies::VersionCheck::Agrees`]).

use ledger::{Call, Hash, PublishedModel};

/// Blocks between two publications of a changed model version.
pub const DEFAULT_VERSION_INTERVAL: u64 = 100;

/// Decides when a peer publishes its model version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionPublisher {
    /// At most one publication every this many blocks (at least 1).
    pub interval: u64,
}

impl VersionPublisher {
    /// A publisher that publishes at most once every `interval` blocks (at least 1).
    pub fn new(interval: u64) -> VersionPublisher {
        VersionPublisher { interval: interval.max(1) }
    }

    /// The `publish_version` to send at `head` for the model `(id, step)` the axon now serves,
    /// given what the chain holds (`published`); `None` if it is the same version, or the
    /// last publication is less than `interval` blocks old, or `id` names no model.
    pub fn due(&self, head: u64, id: [u8; 32], step: u64, published: Option<PublishedModel>) -> Option<Call> {
        if id == [0; 32] || self.resting(head, published) {
            return None;
        }
        match published {
            Some(p) if p.version.0 == id => None,
            _ => Some(Call::PublishVersion { version: Hash(id), step }),
        }
    }

    /// The last publication is less than `interval` blocks old, so nothing is due whatever the
    /// model: checked before hashing the parameters for [`VersionPublisher::due`], which the
    /// run loop would otherwise do at every training step.
    pub fn resting(&self, head: u64, published: Option<PublishedModel>) -> bool {
        published.is_some_and(|p| head < p.published_at.saturating_add(self.interval))
    }
}

impl Default for VersionPublisher {
    fn default() -> Self {
        VersionPublisher::new(DEFAULT_VERSION_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_published_first_at_once_then_at_most_once_per_interval_when_it_changed() {
        let p = VersionPublisher::new(10);
        let (a, b) = ([1; 32], [2; 32]);
        assert_eq!(p.due(3, a, 7, None), Some(Call::PublishVersion { version: Hash(a), step: 7 }));
        let on_chain = Some(PublishedModel { version: Hash(a), step: 7, published_at: 4 });
        assert_eq!(p.due(100, a, 7, on_chain), None, "unchanged: never again");
        assert_eq!(p.due(13, b, 9, on_chain), None, "changed, but 9 blocks after the last");
        assert_eq!(p.due(14, b, 9, on_chain), Some(Call::PublishVersion { version: Hash(b), step: 9 }));
        assert_eq!(p.due(14, [0; 32], 0, None), None, "no model, nothing to publish");
        assert_eq!(VersionPublisher::new(0).interval, 1);
        assert!(p.resting(13, on_chain) && !p.resting(14, on_chain) && !p.resting(0, None));
    }
}
