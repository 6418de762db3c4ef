//! A faulty validator for tests (feature `test-utils`): it equivocates. Never used by a node.

use crate::{Scheme, ValidatorKey};
use commonware_codec::{DecodeExt, Encode};
use commonware_consensus::simplex::types::{Finalize, Notarize, Proposal, Vote};
use commonware_p2p::{Receiver, Recipients, Sender};

/// Runs on the votes channel of a validator that signs with `scheme`: for every notarize or
/// finalize vote it hears, it signs one for the heard proposal and then one for another
/// payload in the same view, and sends both to everyone. In that order: a validator that
/// already knows the view's proposal drops a vote for another one without keeping it (it only
/// blocks the sender), so the conflicting vote must come second to become evidence. Ends when
/// the channel closes.
pub async fn equivocate<S, R>(scheme: Scheme, (mut sender, mut receiver): (S, R))
where
    S: Sender<PublicKey = ValidatorKey>,
    R: Receiver<PublicKey = ValidatorKey>,
{
    while let Ok((_, message)) = receiver.recv().await {
        let Ok(vote) = Vote::<Scheme, crate::Digest>::decode(message) else { continue };
        let other = |p: &Proposal<crate::Digest>| crate::payload::digest(p.payload.as_ref());
        let votes: Vec<Vote<Scheme, crate::Digest>> = match vote {
            Vote::Notarize(n) => {
                [n.proposal.clone(), Proposal::new(n.round(), n.proposal.parent, other(&n.proposal))]
                    .into_iter()
                    .filter_map(|p| Notarize::sign(&scheme, p).map(Vote::Notarize))
                    .collect()
            }
            Vote::Finalize(f) => {
                [f.proposal.clone(), Proposal::new(f.round(), f.proposal.parent, other(&f.proposal))]
                    .into_iter()
                    .filter_map(|p| Finalize::sign(&scheme, p).map(Vote::Finalize))
                    .collect()
            }
            _ => continue,
        };
        for v in votes {
            let _ = sender.send(Recipients::All, v.encode(), true);
        }
    }
}
