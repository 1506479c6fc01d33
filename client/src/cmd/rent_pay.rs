//! Paying into the escrow, shared by `rent` and `extend`: what the escrow says about itself,
//! the balance checks before anything is sent, the confirmation, and the exact approval.

use std::io::{BufRead, IsTerminal};

use alloy::primitives::{Address, U256};
use anyhow::{Context, anyhow, bail};
use gpuflow_protocol::money::format_units;

use crate::Failure;
use crate::chain::Chain;
use crate::permit::{self, PermitSig};

/// Gas budgeted for `approve` (an ERC-20 allowance write; ~46k measured, with headroom).
pub(crate) const APPROVE_GAS: u64 = 60_000;
/// Gas budgeted for `open` (~82–126k per the design, with headroom).
pub(crate) const OPEN_GAS: u64 = 160_000;
/// Gas budgeted for `topUp` (~55k, with headroom).
pub(crate) const TOPUP_GAS: u64 = 80_000;
/// How long a permit signed for a payment stays valid, seconds of chain time: the transaction
/// that uses it is sent right after.
const PERMIT_SECS: u64 = 3600;
/// Chain id of anvil, where tokens can be minted for free.
const DEVNET_CHAIN_ID: u64 = 31_337;

/// What `rent` needs to know about the escrow deployment.
#[derive(Debug, Clone)]
pub(crate) struct EscrowFacts {
    pub(crate) fee_bps: u16,
    pub(crate) token: Address,
    pub(crate) symbol: String,
    pub(crate) block_time: u64,
}

/// Reads the escrow's fee and token, the token's symbol and the chain's time, concurrently.
pub(crate) async fn escrow_facts(
    chain: &Chain,
    escrow: Address,
    token: Address,
) -> anyhow::Result<EscrowFacts> {
    let e = chain.escrow(escrow);
    let t = chain.token(token);
    let fee = e.feeBps();
    let tok = e.token();
    let sym = t.symbol();
    let (fee, tok, sym, time) =
        tokio::join!(fee.call(), tok.call(), sym.call(), chain.block_time());
    let no_escrow = |err: alloy::contract::Error| {
        anyhow!(
            "no GPUFlow escrow answers at {escrow} on chain {} ({err}); the offer names a \
             contract this RPC does not have: check --rpc-url",
            chain.chain_id
        )
    };
    Ok(EscrowFacts {
        fee_bps: fee.map_err(no_escrow)?,
        token: tok.map_err(no_escrow)?,
        symbol: sym.unwrap_or_else(|_| "tokens".into()),
        block_time: time?,
    })
}

/// The renter's token and gas, for one payment into `escrow`.
pub(crate) struct Funding<'a> {
    pub(crate) chain: &'a Chain,
    pub(crate) token: Address,
    pub(crate) escrow: Address,
    pub(crate) symbol: &'a str,
    pub(crate) decimals: u8,
}

impl Funding<'_> {
    /// Fails, naming the shortfall, unless the wallet holds `amount` of the token and gas for
    /// `approve` plus a call of `call_gas` at the current gas price. Sends nothing.
    pub(crate) async fn check(&self, amount: U256, call_gas: u64) -> anyhow::Result<()> {
        let me = self.chain.me;
        let t = self.chain.token(self.token);
        let bal = t.balanceOf(me);
        let (bal, gas, price) = tokio::join!(
            bal.call(),
            self.chain.gas_balance(me),
            self.chain.gas_price()
        );
        let bal = bal.context("reading the token balance")?;
        let f = |v: U256| format!("{} {}", format_units(v, self.decimals), self.symbol);
        if bal < amount {
            let missing = amount - bal;
            let mut msg = format!(
                "not enough {}: this needs {}, wallet {me} holds {}; {} more needed. Nothing was \
                 spent.",
                self.symbol,
                f(amount),
                f(bal),
                f(missing)
            );
            if self.chain.chain_id == DEVNET_CHAIN_ID {
                msg.push_str(&format!(
                    " On the devnet, mint test tokens with: cast send {} 'mint(address,uint256)' \
                     {me} {missing} --rpc-url {} --private-key <a funded anvil key>",
                    self.token, self.chain.rpc
                ));
            }
            bail!(msg);
        }
        let need = U256::from(price?) * U256::from(APPROVE_GAS + call_gas);
        let gas = gas?;
        if gas < need {
            bail!(
                "not enough gas token to pay for the transactions: about {} wei needed at the \
                 current gas price, wallet {me} holds {gas} wei ({} wei more needed). Nothing was \
                 spent.",
                need,
                need - gas
            );
        }
        Ok(())
    }

    /// Lets the escrow take `amount`: nothing to do when the allowance already covers it; else
    /// an EIP-2612 permit (a signature, no transaction) when the token supports it; else an
    /// `approve` for exactly `amount`. `chain_now` is the chain's time (the permit's deadline
    /// counts from it).
    pub(crate) async fn authorize(
        &self,
        amount: U256,
        chain_now: u64,
    ) -> anyhow::Result<Authorization> {
        if self.allowance().await? >= amount {
            return Ok(Authorization::Allowance);
        }
        let deadline = chain_now.saturating_add(PERMIT_SECS);
        if let Some(p) = permit::sign(self.chain, self.token, self.escrow, amount, deadline).await?
        {
            return Ok(Authorization::Permit(p));
        }
        self.approve(amount).await?;
        Ok(Authorization::Allowance)
    }

    async fn allowance(&self) -> anyhow::Result<U256> {
        self.chain
            .token(self.token)
            .allowance(self.chain.me, self.escrow)
            .call()
            .await
            .context("reading the allowance")
    }

    /// Approves the escrow for exactly `amount` (skipped when the allowance already covers it).
    pub(crate) async fn approve(&self, amount: U256) -> anyhow::Result<()> {
        if self.allowance().await? >= amount {
            return Ok(());
        }
        let t = self.chain.token(self.token);
        self.chain
            .send(
                t.approve(self.escrow, amount).into_transaction_request(),
                "approve",
            )
            .await?;
        Ok(())
    }
}

/// How the escrow may take a payment, from [`Funding::authorize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Authorization {
    /// The allowance covers it (it already did, or `approve` was sent): call `open` / `topUp`.
    Allowance,
    /// A signed permit: call `openWithPermit` / `topUpWithPermit`, one transaction in all.
    Permit(PermitSig),
}

impl Authorization {
    /// `permit` or `allowance`, for `--json` output.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Allowance => "allowance",
            Self::Permit(_) => "permit",
        }
    }
}

/// Asks `question` on the terminal; anything but yes is a refusal (exit 1, nothing spent).
/// Without a terminal it fails at once, telling to pass --yes.
pub(crate) fn confirm(question: &str) -> Result<(), Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::Usage(anyhow!(
            "no terminal to confirm on: pass --yes to confirm the payment shown above"
        )));
    }
    eprint!("{question} [y/N] ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::Runtime(e.into()))?;
    if matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(Failure::Runtime(anyhow!(
            "not confirmed; nothing was spent"
        )))
    }
}
