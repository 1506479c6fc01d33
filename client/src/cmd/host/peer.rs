//! Which wallet a peer id names, for `gpuflow host <peer id>`.
//!
//! The proof is the peer's own signed offer: it is signed by the peer's node key (the key the
//! peer id is derived from) and carries a wallet binding signed by the wallet, both verified
//! when the book is fetched ([`gpuflow_protocol::offer::SignedOffer::verify`]). Nobody else can
//! make an offer for that peer id, so its wallet wins over anything the registry says.
//!
//! The on-chain registry is only the fallback for a peer without an offer in the book, and is
//! shown as unverified: `registerHost` takes any peer id bytes, so a squatter can register a
//! victim's peer id. Of the wallets registered with the peer id now, the registry's choice is
//! the longest-standing registration ([`gpuflow_reliability::ScoreReader::host_of_peer`]).

use alloy::primitives::Address;
use gpuflow_p2p::PeerId;
use gpuflow_protocol::offer::VerifiedOffer;
use serde::Serialize;

/// Where `gpuflow host` got the wallet it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Origin {
    /// The wallet address was given.
    Argument,
    /// The wallet binding of the peer's own signed offer.
    Offer,
    /// The on-chain registry (anyone can register any peer id).
    Registry,
}

/// The wallet shown, and why: the `wallet_source` of `gpuflow host --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct WalletSource {
    /// Where it came from.
    pub(crate) from: Origin,
    /// Whether the peer proved it (true for an offer, false for the registry).
    pub(crate) verified: bool,
    /// The peer id asked for, if one was.
    pub(crate) peer_id: Option<String>,
    /// How many wallets are registered with the peer id now (registry only; more than one
    /// means someone registered a peer id that is not theirs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) registrants: Option<usize>,
}

impl WalletSource {
    /// A wallet address given on the command line.
    pub(crate) fn argument() -> Self {
        Self {
            from: Origin::Argument,
            verified: true,
            peer_id: None,
            registrants: None,
        }
    }
}

/// The wallet `peer`'s own offers in `offers` bind it to. A peer may publish several offers
/// (one per GPU group), each signed by its key; if they name different wallets, the most
/// recently issued offer's wins (ties: the smaller offer id), so the choice does not depend on
/// the book's order.
pub(crate) fn wallet_from_offers(peer: &PeerId, offers: &[VerifiedOffer]) -> Option<Address> {
    offers
        .iter()
        .filter(|v| v.offer.peer_id().ok().as_ref() == Some(peer))
        .max_by(|a, b| {
            a.offer
                .issued_at
                .cmp(&b.offer.issued_at)
                .then(b.id.0.cmp(&a.id.0))
        })
        .map(|v| v.offer.wallet)
}

/// The wallet of `peer`: its offer's, else the registry's first registrant (`registrants` as
/// [`gpuflow_reliability::ScoreReader::registrants_of_peer`] orders them), else none.
pub(crate) fn resolve(
    peer: &PeerId,
    offers: &[VerifiedOffer],
    registrants: &[Address],
) -> Option<(Address, WalletSource)> {
    if let Some(wallet) = wallet_from_offers(peer, offers) {
        return Some((
            wallet,
            WalletSource {
                from: Origin::Offer,
                verified: true,
                peer_id: Some(peer.to_string()),
                registrants: None,
            },
        ));
    }
    let wallet = *registrants.first()?;
    Some((
        wallet,
        WalletSource {
            from: Origin::Registry,
            verified: false,
            peer_id: Some(peer.to_string()),
            registrants: Some(registrants.len()),
        },
    ))
}

/// Where the wallet came from, as `gpuflow host` says it after "wallet from" (none for an
/// address given on the command line).
pub(crate) fn describe(source: &WalletSource) -> Option<String> {
    let peer = source.peer_id.as_deref()?;
    Some(match source.from {
        Origin::Argument => return None,
        Origin::Offer => format!("peer {peer}'s own signed offer (verified)"),
        Origin::Registry => {
            let others = source.registrants.unwrap_or(1).saturating_sub(1);
            let claim = if others == 0 {
                String::new()
            } else {
                format!(
                    "; {others} other wallet(s) also registered this peer id, the \
                     longest-standing registration is shown"
                )
            };
            format!(
                "the on-chain registry, UNVERIFIED: peer {peer} has no offer in the book and \
                 anyone can register any peer id{claim}; pass the wallet address if you know it"
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use gpuflow_protocol::offer::fixture::TestHost;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn verified(h: &TestHost, name: &str, issued_at: u64) -> VerifiedOffer {
        h.sign(&h.offer(name, issued_at)).verify(NOW).unwrap()
    }

    #[test]
    fn the_offers_wallet_wins_over_a_squatting_registry_entry() {
        let host = TestHost::from_seed(1);
        let squatter = TestHost::from_seed(2).wallet.address();
        let peer = host.peer_id();
        let other = TestHost::from_seed(3);
        let book = [verified(&other, "x", NOW), verified(&host, "a", NOW)];
        // The squatter is the registry's only (or first) registrant of the host's peer id.
        for registrants in [vec![squatter], vec![squatter, host.wallet.address()]] {
            let (wallet, source) = resolve(&peer, &book, &registrants).unwrap();
            assert_eq!(wallet, host.wallet.address());
            assert_eq!(source.from, Origin::Offer);
            assert!(source.verified);
        }
        let text = describe(&resolve(&peer, &book, &[squatter]).unwrap().1).unwrap();
        assert!(text.contains("verified"), "{text}");
        assert!(!text.contains("UNVERIFIED"), "{text}");
    }

    #[test]
    fn without_an_offer_the_registry_is_used_and_marked_unverified() {
        let host = TestHost::from_seed(1);
        let peer = host.peer_id();
        let other = TestHost::from_seed(3);
        let book = [verified(&other, "x", NOW)];
        let (a, b) = (Address::repeat_byte(0xaa), Address::repeat_byte(0x0b));
        let (wallet, source) = resolve(&peer, &book, &[a, b]).unwrap();
        assert_eq!(
            wallet, a,
            "the first registrant: the longest-standing registration"
        );
        assert_eq!(source.from, Origin::Registry);
        assert!(!source.verified);
        assert_eq!(source.registrants, Some(2));
        let text = describe(&source).unwrap();
        assert!(text.contains("registry, UNVERIFIED"), "{text}");
        assert!(text.contains("1 other wallet(s)"), "{text}");
        let json = serde_json::to_value(&source).unwrap();
        assert_eq!(json["from"], "registry");
        assert_eq!(json["verified"], false);
        assert_eq!(json["peer_id"], peer.to_string());
        // Nothing in the book or the registry: no wallet.
        assert_eq!(resolve(&peer, &book, &[]), None);
        assert_eq!(describe(&WalletSource::argument()), None);
    }

    #[test]
    fn a_peer_with_several_offers_names_the_newest_ones_wallet_whatever_the_order() {
        let old = TestHost::from_seed(1);
        // The same node key with another wallet (it re-bound its offers to a new wallet).
        let mut new = old.clone();
        new.wallet = TestHost::from_seed(9).wallet;
        let peer = old.peer_id();
        let a = verified(&old, "a", NOW - 100);
        let b = verified(&new, "b", NOW);
        for book in [[a.clone(), b.clone()], [b, a]] {
            assert_eq!(wallet_from_offers(&peer, &book), Some(new.wallet.address()));
        }
    }
}
