//! EIP-2612 permits: a renter whose token supports them (USDC does) pays a deposit in one
//! transaction (`openWithPermit` / `topUpWithPermit`) instead of `approve` + `open`.
//!
//! A token is taken to support permits only when the EIP-712 domain we build from what it says
//! about itself (ERC-5267's `eip712Domain()`, else `name()` and `version()`, else version "1")
//! hashes to its own `DOMAIN_SEPARATOR()`: a signature under any other domain would be refused
//! on chain, and the escrow would then fall back to the allowance and revert `PermitFailed`.

use alloy::primitives::{Address, B256, U256};
use alloy::signers::SignerSync;
use alloy::sol_types::{Eip712Domain, SolStruct};
use anyhow::Context;

use crate::chain::Chain;

alloy::sol! {
    /// The EIP-2612 and ERC-5267 views of a token.
    #[allow(missing_docs)]
    #[sol(rpc)]
    interface IERC20Permit {
        function name() external view returns (string);
        function version() external view returns (string);
        function nonces(address owner) external view returns (uint256);
        function DOMAIN_SEPARATOR() external view returns (bytes32);
        function eip712Domain() external view returns (bytes1 fields, string name, string version, uint256 chainId, address verifyingContract, bytes32 salt, uint256[] extensions);
    }

    /// The EIP-2612 message.
    #[allow(missing_docs)]
    struct Permit {
        address owner;
        address spender;
        uint256 value;
        uint256 nonce;
        uint256 deadline;
    }
}

/// A signed permit, in the shape `openWithPermit` / `topUpWithPermit` take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PermitSig {
    pub(crate) deadline: U256,
    pub(crate) v: u8,
    pub(crate) r: B256,
    pub(crate) s: B256,
}

/// The token's EIP-712 domain if it supports permits (see the module docs), else `None`.
pub(crate) async fn permit_domain(chain: &Chain, token: Address) -> Option<Eip712Domain> {
    let t = IERC20Permit::new(token, chain.provider.clone());
    let separator = t.DOMAIN_SEPARATOR().call().await.ok()?;
    let (name, version) = match t.eip712Domain().call().await {
        Ok(d) => (d.name, d.version),
        Err(_) => {
            let name = t.name().call().await.ok()?;
            let version = t.version().call().await.unwrap_or_else(|_| "1".into());
            (name, version)
        }
    };
    let domain = Eip712Domain::new(
        Some(name.into()),
        Some(version.into()),
        Some(U256::from(chain.chain_id)),
        Some(token),
        None,
    );
    (domain.separator() == separator).then_some(domain)
}

/// Signs a permit letting `spender` take `value` of the token from this wallet until
/// `deadline` (unix seconds), or `None` when the token does not support permits.
pub(crate) async fn sign(
    chain: &Chain,
    token: Address,
    spender: Address,
    value: U256,
    deadline: u64,
) -> anyhow::Result<Option<PermitSig>> {
    let Some(signer) = &chain.signer else {
        return Ok(None);
    };
    let Some(domain) = permit_domain(chain, token).await else {
        return Ok(None);
    };
    let nonce = IERC20Permit::new(token, chain.provider.clone())
        .nonces(chain.me)
        .call()
        .await
        .context("reading the token's permit nonce")?;
    let deadline = U256::from(deadline);
    let msg = Permit {
        owner: chain.me,
        spender,
        value,
        nonce,
        deadline,
    };
    let sig = signer
        .sign_hash_sync(&msg.eip712_signing_hash(&domain))
        .context("signing the permit")?;
    Ok(Some(PermitSig {
        deadline,
        v: 27 + u8::from(sig.v()),
        r: sig.r().into(),
        s: sig.s().into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The EIP-2612 type every permit token (USDC included) signs.
    #[test]
    fn permit_type_is_the_eip2612_one() {
        assert_eq!(
            Permit::eip712_encode_type(),
            "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
        );
    }
}
