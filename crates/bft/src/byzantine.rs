//! A faulty validator for tests (feature `test-utils`): it equivocates. Never used by a node.

use crate::{Scheme, ValidatorKey};
use commonware_codec::{DecodeExt, Encode};
use commonware_consensus::simplex::types::{Finalize, Notarize, Proposal, Vote};
use commonware_consensus::types::Round;
use commonware_p2p::{Receiver, Recipients, Sender};

/// Runs on the votes channel of a validator that signs with `scheme`: for every notarize or
/// finalize vote it hears, it signs one for the heard proposal and then one for another
/// payload in the same view, and sends both to everyone. In that order: a validator that
/// already knows the view's proposal drops a vote for another one without keeping it (it only
/// blocks the sender), so the conflicting vote must come second to become evidence. Ends when
/// the channel closes. It also signs, for the view after each it hears a notarize in, a
/// notarize for a made-up payload: it reaches the others before that view's leader proposes
/// (a view on loopback closes before a reply to its votes arrives, so only a vote sent ahead
/// of the proposal reliably meets the real one while the view is open).
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
                // Also a vote for the next view before its leader proposes: that view's real
                // proposal, voted for when heard, then conflicts with it at every validator.
                let round = n.round();
                let next = Round::new(round.epoch(), round.view().next());
                let early = Proposal::new(next, round.view(), other(&n.proposal));
                [n.proposal.clone(), Proposal::new(round, n.proposal.parent, other(&n.proposal)), early]
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
