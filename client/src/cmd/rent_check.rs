//! What `rent` checks before it spends anything: the host's quote against the offer and the
//! request ([`verify_quote`]), and what the lease will cost ([`Cost`]), computed exactly as the
//! escrow does.

use alloy::primitives::{Address, U256, keccak256};
use gpuflow_protocol::escrow::{self, Quote};
use gpuflow_protocol::money::format_units;
use gpuflow_protocol::wire::SignedQuote;

/// What the quote must say.
#[derive(Debug, Clone)]
pub(crate) struct Expect {
    /// The offer's wallet: the quote's host and signer.
    pub(crate) host_wallet: Address,
    /// This renter.
    pub(crate) renter: Address,
    /// The offer's price per GPU-hour.
    pub(crate) price_per_gpu_hour: u128,
    /// GPUs asked for.
    pub(crate) gpus: u32,
    /// The `duration_secs` asked for (the quote's `maxDuration`).
    pub(crate) max_duration: u64,
    /// Seconds the deposit pays for: the quote's `minDuration` must not exceed it, or `open`
    /// would revert.
    pub(crate) paid_secs: u64,
    /// The offer's chain and escrow (the signature's domain).
    pub(crate) chain_id: u64,
    pub(crate) escrow: Address,
    /// The SSH key sent.
    pub(crate) ssh_public_key: String,
    /// Unix seconds now (the later of the local clock and the chain's).
    pub(crate) now: u64,
}

/// Why a quote is refused. None of these should happen with an honest host.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum BadQuote {
    #[error("the quote is signed by {got}, not by the offer's wallet {want}")]
    Signer { got: Address, want: Address },
    #[error("the quote names host {got}, not the offer's wallet {want}")]
    Host { got: Address, want: Address },
    #[error("the quote is bound to renter {got}, not to your wallet {want}")]
    Renter { got: Address, want: Address },
    #[error("the quote's price is {got} base units per second; the offer's price makes {want}")]
    Price { got: U256, want: U256 },
    #[error("the quote's maximum duration is {got}s; {want}s was asked for")]
    MaxDuration { got: U256, want: u64 },
    #[error(
        "the host's shortest lease is {got}s, but you are paying for {paid}s; rent for at least \
         that long (--hours)"
    )]
    MinDuration { got: U256, paid: u64 },
    #[error("quote expired (at {expiry}, now {now}); just run the command again for a fresh quote")]
    Expired { expiry: U256, now: u64 },
    #[error("the quote's spec hash does not match the spec sent with it")]
    SpecHash,
    #[error("the lease spec does not match the request: {0}")]
    Spec(String),
    #[error("the quote's signature is unreadable: {0}")]
    Signature(#[from] escrow::QuoteSignatureError),
}

/// The escrow's price per second for `gpus` GPUs at `per_gpu_hour` (the quote desk's rule).
pub(crate) fn price_per_second(per_gpu_hour: u128, gpus: u32) -> U256 {
    U256::from(per_gpu_hour) * U256::from(gpus) / U256::from(3600u64)
}

/// Checks every term of `q` against `e`; returns the quote to open.
pub(crate) fn verify_quote(q: &SignedQuote, e: &Expect) -> Result<Quote, BadQuote> {
    let quote = Quote::from(q.quote.clone());
    let domain = escrow::domain(e.chain_id, e.escrow);
    let signer = escrow::recover_quote_signer(&quote, &q.signature, &domain)?;
    if signer != e.host_wallet {
        return Err(BadQuote::Signer {
            got: signer,
            want: e.host_wallet,
        });
    }
    if quote.host != e.host_wallet {
        return Err(BadQuote::Host {
            got: quote.host,
            want: e.host_wallet,
        });
    }
    if quote.renter != e.renter {
        return Err(BadQuote::Renter {
            got: quote.renter,
            want: e.renter,
        });
    }
    let want = price_per_second(e.price_per_gpu_hour, e.gpus);
    if quote.pricePerSecond != want {
        return Err(BadQuote::Price {
            got: quote.pricePerSecond,
            want,
        });
    }
    if quote.maxDuration != U256::from(e.max_duration) {
        return Err(BadQuote::MaxDuration {
            got: quote.maxDuration,
            want: e.max_duration,
        });
    }
    if quote.minDuration > U256::from(e.paid_secs) {
        return Err(BadQuote::MinDuration {
            got: quote.minDuration,
            paid: e.paid_secs,
        });
    }
    if quote.expiry <= U256::from(e.now) {
        return Err(BadQuote::Expired {
            expiry: quote.expiry,
            now: e.now,
        });
    }
    if keccak256(q.spec.as_bytes()) != quote.specHash {
        return Err(BadQuote::SpecHash);
    }
    let spec: serde_json::Value =
        serde_json::from_str(&q.spec).map_err(|err| BadQuote::Spec(err.to_string()))?;
    if spec["ssh_public_key"].as_str() != Some(e.ssh_public_key.as_str()) {
        return Err(BadQuote::Spec("it carries another SSH key".into()));
    }
    let gpus = spec["gpus"].as_array().map_or(0, Vec::len);
    if u32::try_from(gpus).ok() != Some(e.gpus) {
        return Err(BadQuote::Spec(format!("{gpus} GPUs instead of {}", e.gpus)));
    }
    Ok(quote)
}

/// What a lease of `seconds` costs, as the escrow computes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cost {
    pub(crate) price_per_second: U256,
    pub(crate) seconds: u64,
    /// `price_per_second × seconds`: what `open` (or `topUp`) takes from the wallet.
    pub(crate) deposit: U256,
    pub(crate) fee_bps: u16,
    /// The protocol fee if the whole deposit is used: `floor(deposit × fee_bps / 10000)`, taken
    /// from the host's pay, not added to the renter's.
    pub(crate) max_fee: U256,
    /// What the host gets if the whole deposit is used.
    pub(crate) host_max: U256,
}

impl Cost {
    pub(crate) fn new(price_per_second: U256, seconds: u64, fee_bps: u16) -> Self {
        let deposit = price_per_second * U256::from(seconds);
        let max_fee = deposit * U256::from(fee_bps) / U256::from(10_000u64);
        Self {
            price_per_second,
            seconds,
            deposit,
            fee_bps,
            max_fee,
            host_max: deposit - max_fee,
        }
    }

    /// The cost summary shown before the confirmation.
    pub(crate) fn describe(&self, decimals: u8, symbol: &str) -> String {
        let f = |v: U256| format!("{} {symbol}", format_units(v, decimals));
        let per_hour = self.price_per_second * U256::from(3600u64);
        format!(
            "  price     {} per hour ({} base units per second)\n\
             \x20 duration  {} s\n\
             \x20 deposit   {} (price × seconds; held by the escrow contract, not the host)\n\
             \x20 fee       up to {} ({}.{:02}% of what the host earns, taken from the host's pay)\n\
             \x20 host      up to {}\n\
             \x20 refund    billing is per second from the host's start; `gpuflow stop` refunds \
             what is unused, and all of it if the host never starts\n",
            f(per_hour),
            self.price_per_second,
            self.seconds,
            f(self.deposit),
            f(self.max_fee),
            self.fee_bps / 100,
            self.fee_bps % 100,
            f(self.host_max),
        )
    }
}

/// Seconds from `--hours` (decimal hours allowed, e.g. 0.5), at least one, at most a year.
pub(crate) fn hours_to_secs(hours: f64) -> Result<u64, String> {
    /// The longest `--hours` (a year): more is a typo, and a lease that long needs no more.
    const MAX_HOURS: f64 = 24.0 * 365.0;
    if hours.is_finite() && hours > MAX_HOURS {
        return Err(format!(
            "--hours {hours}: at most {MAX_HOURS} hours (1 year) at a time; `gpuflow extend` \
             adds more later"
        ));
    }
    if !hours.is_finite() || hours <= 0.0 {
        return Err(format!(
            "--hours {hours}: give a positive number of hours (e.g. 1 or 0.5), at most \
             {MAX_HOURS} (1 year)"
        ));
    }
    // Bounded above, so the cast cannot truncate; rounding to the second is intended.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let secs = (hours * 3600.0).round() as u64;
    Ok(secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::signers::local::PrivateKeySigner;
    use gpuflow_protocol::wire::QuoteTerms;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl r@x";

    fn setup() -> (SignedQuote, Expect, PrivateKeySigner) {
        let host = PrivateKeySigner::random();
        let escrow_addr = Address::repeat_byte(0xee);
        let spec = format!(r#"{{"gpus":["0"],"ssh_public_key":"{KEY}"}}"#);
        let quote = Quote {
            host: host.address(),
            renter: Address::repeat_byte(2),
            pricePerSecond: U256::from(111u64),
            minDuration: U256::from(600u64),
            maxDuration: U256::from(7200u64),
            expiry: U256::from(1_000u64),
            nonce: U256::from(1u64),
            specHash: keccak256(spec.as_bytes()),
        };
        let sig = escrow::sign_quote(&host, &quote, &escrow::domain(31_337, escrow_addr)).unwrap();
        let signed = SignedQuote {
            quote: QuoteTerms::from(quote),
            signature: sig,
            reserved_until: 1_000,
            spec,
        };
        let e = Expect {
            host_wallet: host.address(),
            renter: Address::repeat_byte(2),
            price_per_gpu_hour: 400_000,
            gpus: 1,
            max_duration: 7200,
            paid_secs: 3600,
            chain_id: 31_337,
            escrow: escrow_addr,
            ssh_public_key: KEY.into(),
            now: 900,
        };
        (signed, e, host)
    }

    #[test]
    fn honest_quote_passes_and_each_wrong_term_is_named() {
        let (q, e, _) = setup();
        verify_quote(&q, &e).unwrap();
        let check = |f: &dyn Fn(&mut Expect), want: &dyn Fn(&BadQuote) -> bool| {
            let mut e = e.clone();
            f(&mut e);
            let err = verify_quote(&q, &e).unwrap_err();
            assert!(want(&err), "{err:?}");
        };
        check(&|e| e.host_wallet = Address::repeat_byte(9), &|x| {
            matches!(x, BadQuote::Signer { .. })
        });
        check(&|e| e.renter = Address::repeat_byte(9), &|x| {
            matches!(x, BadQuote::Renter { .. })
        });
        check(&|e| e.price_per_gpu_hour = 500_000, &|x| {
            matches!(x, BadQuote::Price { .. })
        });
        check(&|e| e.max_duration = 3600, &|x| {
            matches!(x, BadQuote::MaxDuration { .. })
        });
        check(&|e| e.paid_secs = 599, &|x| {
            matches!(x, BadQuote::MinDuration { .. })
        });
        check(&|e| e.now = 1_000, &|x| {
            matches!(x, BadQuote::Expired { .. })
        });
        check(&|e| e.chain_id = 1, &|x| {
            matches!(x, BadQuote::Signer { .. })
        });
        check(&|e| e.escrow = Address::ZERO, &|x| {
            matches!(x, BadQuote::Signer { .. })
        });
        check(&|e| e.ssh_public_key = "ssh-ed25519 other".into(), &|x| {
            matches!(x, BadQuote::Spec(_))
        });
        check(&|e| e.gpus = 2, &|x| matches!(x, BadQuote::Price { .. }));
        let mut tampered = q.clone();
        tampered.spec = tampered.spec.replace("\"0\"", "\"1\"");
        assert_eq!(verify_quote(&tampered, &e), Err(BadQuote::SpecHash));
        assert!(
            BadQuote::Expired {
                expiry: U256::ZERO,
                now: 1
            }
            .to_string()
            .contains("run the command again")
        );
    }

    #[test]
    fn cost_matches_the_escrow_arithmetic() {
        // 0.40 per GPU-hour → 111 per second; an hour at 1%: fee floor(399600/100) = 3996.
        let c = Cost::new(price_per_second(400_000, 1), 3600, 100);
        assert_eq!(c.deposit, U256::from(399_600u64));
        assert_eq!(c.max_fee, U256::from(3_996u64));
        assert_eq!(c.host_max, U256::from(395_604u64));
        let text = c.describe(6, "USDC");
        assert!(text.contains("0.3996 USDC"), "{text}");
        assert!(text.contains("1.00%"), "{text}");
        assert_eq!(hours_to_secs(0.5), Ok(1800));
        assert!(hours_to_secs(0.0).is_err());
        assert!(hours_to_secs(f64::NAN).is_err());
    }

    /// D11: `--hours 100000` said "give a positive number of hours"; the limit is a year.
    #[test]
    fn hours_above_a_year_name_the_cap() {
        assert_eq!(hours_to_secs(8760.0), Ok(8760 * 3600));
        for h in [8760.5, 100_000.0, 1e6, 1e30] {
            let e = hours_to_secs(h).unwrap_err();
            assert!(e.contains("at most 8760 hours (1 year)"), "{h}: {e}");
            assert!(!e.contains("positive"), "{h}: {e}");
        }
        for h in [0.0, -1.0, f64::INFINITY, f64::NAN] {
            let e = hours_to_secs(h).unwrap_err();
            assert!(e.contains("positive") && e.contains("8760"), "{h}: {e}");
        }
    }
}
