// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// @notice Lease terms signed by the host wallet (EIP-712, domain "GpuFlowEscrow" version "1").
/// @dev The contract stores none of these fields except the price: every call after `open` passes
/// the quote again and the contract recomputes the lease id from it. The lease id is
/// keccak256(abi.encode(escrow address, EIP-712 struct hash of the quote)): unlike the EIP-712
/// digest the host signs, it does not contain the chain id, so a lease stays addressable if the
/// chain id ever changes (a fork), while a signature still only opens on the chain it names.
struct Quote {
    /// The host wallet; it signs the quote, starts the lease and is paid.
    address host;
    /// The only address that may open the quote, so nobody can front-run the renter.
    address renter;
    /// Token base units per second of running lease. Must fit in uint64.
    uint256 pricePerSecond;
    /// Seconds; the deposit at `open` must be at least pricePerSecond * minDuration (a host-signed
    /// minimum, against dust leases). 0 for no minimum. Top-ups are not checked against it.
    uint256 minDuration;
    /// Seconds; caps the total deposit (top-ups included) at pricePerSecond * maxDuration.
    uint256 maxDuration;
    /// Unix seconds; `open` must happen at or before this time.
    uint256 expiry;
    /// Host-chosen; the quote cannot be opened once the host raised minNonce above it.
    uint256 nonce;
    /// Hash of the lease spec (GPUs, image, SSH key); opaque to the contract.
    bytes32 specHash;
}

/// @notice Life cycle of a lease. `None` means no lease was ever opened with that id.
enum LeaseStatus {
    None,
    Pending,
    Running,
    Closed
}

/// @notice Why a lease ended, as recorded in `LeaseClosed`. Reliability scores read this.
/// @dev Values are part of the ABI: new reasons are only ever appended.
enum CloseReason {
    /// The renter closed a running lease that still had money left.
    RenterClosed,
    /// The host closed a running lease that still had money left.
    HostClosed,
    /// A running lease was closed (by either party) after its deposit was used up.
    Depleted,
    /// The renter closed a pending lease before the accept timeout passed (also when the host
    /// closes a self-rental, where host and renter are the same address).
    CancelledBeforeStart,
    /// A pending lease was closed (by either party) after the host let the accept timeout pass
    /// without starting it.
    NeverStarted,
    /// The host closed a pending lease before the accept timeout passed: it turned the lease down
    /// instead of starting it. The renter gets the whole deposit back, as for the other pending
    /// closes; the reason tells a reliability score that the host, not the renter, backed out.
    HostDeclined
}

/// @notice The one storage slot a lease occupies.
struct Lease {
    /// Token base units held for the lease, top-ups included. Never decreases.
    uint96 deposit;
    /// Copied from the quote so accrual needs no calldata beyond the id.
    uint64 pricePerSecond;
    /// openedAt while Pending; startedAt once started (a lease closed while Pending keeps openedAt).
    uint40 since;
    /// The host has been paid min(deposit, pricePerSecond * (paidUntil - since)), fee included.
    /// 0 while Pending; `since` at start; the time of each withdrawal; the close time when a
    /// running lease closes; `since` (paid nothing) when a pending lease closes.
    uint40 paidUntil;
    LeaseStatus status;
}

/// @title GPUFlow escrow: per-second GPU rental payments between a renter and a host.
/// @notice Holds the renter's deposit for a lease signed by the host, pays the host per second of
/// running time and refunds the rest. No owner, no proxy, no admin power over funds.
interface IGpuFlowEscrow {
    // ---------------------------------------------------------------- events

    /// @notice A renter opened a host's quote; the lease waits for the host to start it.
    event LeaseOpened(
        bytes32 indexed leaseId,
        address indexed host,
        address indexed renter,
        uint256 pricePerSecond,
        uint256 deposit,
        uint256 maxDuration,
        uint256 nonce,
        bytes32 specHash
    );
    /// @notice The host started the lease; billing runs from `startedAt`.
    event LeaseStarted(bytes32 indexed leaseId, address indexed host, address indexed renter, uint256 startedAt);
    /// @notice `from` added `amount` to the deposit, which is now `newDeposit`.
    event LeaseToppedUp(bytes32 indexed leaseId, address indexed from, uint256 amount, uint256 newDeposit);
    /// @notice The host was paid `amount` (net of `fee`) for time accrued so far.
    event Withdrawn(bytes32 indexed leaseId, address indexed host, uint256 amount, uint256 fee);
    /// @notice The lease ended. `hostAmount` and `fee` are what this close paid (earlier withdrawals are
    /// in `Withdrawn`); `refund` went back to the renter. `startedAt` is 0 for a lease never started.
    event LeaseClosed(
        bytes32 indexed leaseId,
        address indexed host,
        address indexed renter,
        address closedBy,
        CloseReason reason,
        uint256 hostAmount,
        uint256 fee,
        uint256 refund,
        uint256 startedAt,
        uint256 closedAt
    );
    /// @notice `host` invalidated every quote of its own with a nonce below `newMinNonce`.
    event NoncesCancelled(address indexed host, uint256 newMinNonce);
    /// @notice `host` bound its wallet to a libp2p peer id; `bond` is its total bond now.
    event HostRegistered(address indexed host, bytes peerId, uint256 registeredAt, uint256 bond);
    /// @notice `host` left the registry; its bond can be withdrawn from `bondUnlockAt` on.
    event HostUnregistered(address indexed host, uint256 bondUnlockAt);
    /// @notice `host` took its bond back.
    event BondWithdrawn(address indexed host, uint256 amount);
    /// @notice A payout to `to` failed (e.g. a blocklisted address) and was credited to `claimable[to]`.
    /// @dev `leaseId` is the lease the payout belongs to, or bytes32(0) for a payout that belongs to
    /// no single lease: a fee sweep, a bond withdrawal, or a `withdrawMany` that paid several
    /// leases in its one transfer (its `Withdrawn` events, in the same transaction, split it up).
    event PayoutDeferred(bytes32 indexed leaseId, address indexed to, uint256 amount);
    /// @notice `account` took its claimable balance, sending it to `to`.
    event Claimed(address indexed account, address indexed to, uint256 amount);
    /// @notice Collected protocol fees went to the treasury (or, if the token refused the transfer,
    /// to `claimable[treasury]`, announced by a `PayoutDeferred` just before this event).
    event FeesSwept(address indexed treasury, uint256 amount);

    // ---------------------------------------------------------------- errors

    /// A constructor address (token, treasury) was zero.
    error ZeroAddress();
    /// The fee asked at deployment is above the hard cap.
    error FeeAboveCap(uint256 feeBps, uint256 maxFeeBps);
    /// The accept timeout must be at least one second.
    error ZeroAcceptTimeout();
    /// Only the quote's renter may open it.
    error NotRenter(address caller, address renter);
    /// Only the quote's host may do this.
    error NotHost(address caller, address host);
    /// Only the lease's renter or host may close it.
    error NotParty(address caller);
    /// Only the guardian may pause or unpause.
    error NotGuardian(address caller);
    /// The quote's expiry has passed.
    error QuoteExpired(uint256 expiry, uint256 now);
    /// The host cancelled this quote's nonce with `cancelNonces`.
    error NonceCancelled(uint256 nonce, uint256 minNonce);
    /// `cancelNonces` can only raise the minimum nonce.
    error NonceNotIncreased(uint256 current, uint256 requested);
    /// The quote's price per second does not fit in uint64.
    error PriceTooHigh(uint256 pricePerSecond);
    /// Deposits, top-ups and bonds must be above zero.
    error ZeroAmount();
    /// The deposit (top-ups included) would exceed pricePerSecond * maxDuration.
    error DepositAboveCap(uint256 deposit, uint256 cap);
    /// The deposit at `open` is below the host's minimum, pricePerSecond * minDuration.
    error DepositBelowMinimum(uint256 deposit, uint256 minimum);
    /// The deposit (top-ups included) or bond would not fit in uint96.
    error AmountTooLarge(uint256 amount);
    /// The signature is not 65 bytes or does not recover to any address.
    error SignatureMalformed();
    /// The signature's s value is in the upper half of the curve order (malleable form).
    error SignatureHighS();
    /// The signature is valid but was made by `signer`, not by the quote's host.
    error WrongSigner(address signer, address host);
    /// This quote was already opened (a quote opens at most one lease).
    error LeaseExists(bytes32 leaseId);
    /// No lease was opened with this quote at this deployment.
    error LeaseNotFound(bytes32 leaseId);
    /// The lease is closed; nothing can change it any more.
    error LeaseAlreadyClosed(bytes32 leaseId);
    /// The lease is already running.
    error LeaseAlreadyStarted(bytes32 leaseId);
    /// The lease is pending; the host has not started it.
    error LeaseNotStarted(bytes32 leaseId);
    /// The host did not start the lease within the accept timeout.
    error AcceptTimeoutPassed(uint256 deadline, uint256 now);
    /// The deposit is used up; a top-up would bill the renter for the gap.
    error DepositExhausted(bytes32 leaseId);
    /// Nothing accrued since the last withdrawal.
    error NothingToWithdraw();
    /// The token moved a different amount than asked (fee-on-transfer or rebasing token).
    error FeeOnTransferToken(uint256 expected, uint256 received);
    /// The peer id must be 1 to MAX_PEER_ID_LENGTH bytes.
    error PeerIdLength(uint256 length);
    /// The caller is not a registered host.
    error HostNotRegistered(address host);
    /// The bond stays locked while the host is registered; call `unregisterHost` first.
    error HostStillRegistered(address host);
    /// The bond unlocks at `unlockAt`.
    error BondLocked(uint256 unlockAt, uint256 now);
    /// The caller has no bond.
    error NoBond(address host);
    /// The caller has no claimable balance.
    error NothingToClaim(address account);
    /// No fees were collected since the last sweep.
    error NoFeesToSweep();
    /// The EIP-2612 permit failed and the caller's allowance does not cover the amount either.
    error PermitFailed();

    // ---------------------------------------------------------------- leases

    /// @notice Opens a lease on a host-signed quote and pulls `deposit` tokens from the caller.
    /// @dev Approve the escrow for `deposit` first (or use `openWithPermit`). Blocked while the
    /// guardian has paused opening.
    /// @param q The quote exactly as the host signed it.
    /// @param sig The host's 65-byte EIP-712 signature (r, s, v) over `q`, i.e. over
    /// `quoteDigest(q)`, which binds this chain id and this deployment.
    /// @param deposit Token base units to hold; 0 < deposit, q.pricePerSecond * q.minDuration <=
    /// deposit <= q.pricePerSecond * q.maxDuration.
    /// @return leaseId `leaseIdOf(q)`, which identifies the lease from now on.
    function open(Quote calldata q, bytes calldata sig, uint256 deposit) external returns (bytes32 leaseId);

    /// @notice `open`, with an EIP-2612 permit for `deposit` instead of a prior approval, so a
    /// first-time renter needs one transaction.
    /// @dev Calls token.permit(msg.sender, escrow, deposit, permitDeadline, v, r, s). If that call
    /// fails (e.g. someone front-ran the same permit, which then is already used), the open goes
    /// ahead as long as the allowance covers `deposit`; otherwise it reverts with `PermitFailed`.
    /// Blocked while opening is paused, like `open`.
    /// @param q The quote exactly as the host signed it.
    /// @param sig The host's signature over `q`.
    /// @param deposit Token base units to hold, as for `open`; also the permit's value.
    /// @param permitDeadline The permit's deadline (unix seconds).
    /// @param v The renter's permit signature, v.
    /// @param r The renter's permit signature, r.
    /// @param s The renter's permit signature, s.
    /// @return leaseId `leaseIdOf(q)`.
    function openWithPermit(
        Quote calldata q,
        bytes calldata sig,
        uint256 deposit,
        uint256 permitDeadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external returns (bytes32 leaseId);

    /// @notice The host accepts a pending lease; billing starts now.
    /// @dev Only `q.host`, and only within `acceptTimeout` seconds of `open`.
    /// @param q The quote the lease was opened with.
    function start(Quote calldata q) external;

    /// @notice Adds `amount` to a pending or running lease's deposit. Anyone may pay; the money
    /// then belongs to the lease: what the host does not earn is refunded to the renter, not to
    /// the payer.
    /// @dev Reverts once the deposit is used up, so the host is never paid for a gap in service.
    /// Works while opening is paused: it only adds money to a lease that already exists, and
    /// blocking it could cut off a running workload.
    /// @param q The quote the lease was opened with.
    /// @param amount Token base units to pull from the caller; the total stays within the quote's cap.
    function topUp(Quote calldata q, uint256 amount) external;

    /// @notice `topUp`, with an EIP-2612 permit for `amount` instead of a prior approval.
    /// @dev Same permit rule as `openWithPermit`: a failed permit is fine if the allowance covers
    /// `amount`, else `PermitFailed`. Works while opening is paused, like `topUp`.
    /// @param q The quote the lease was opened with.
    /// @param amount Token base units to add, as for `topUp`; also the permit's value.
    /// @param permitDeadline The permit's deadline (unix seconds).
    /// @param v The payer's permit signature, v.
    /// @param r The payer's permit signature, r.
    /// @param s The payer's permit signature, s.
    function topUpWithPermit(Quote calldata q, uint256 amount, uint256 permitDeadline, uint8 v, bytes32 r, bytes32 s)
        external;

    /// @notice Pays the host what accrued since its last withdrawal, minus the protocol fee.
    /// @dev Only `q.host`; the lease must be running and something must have accrued. The fee is
    /// charged on cumulative earnings: fee(accrued now) - fee(paid before), each rounded down, so
    /// a lease's fees total exactly floor(total * feeBps / 10000) whatever the payout schedule.
    /// @param q The quote the lease was opened with.
    function withdraw(Quote calldata q) external;

    /// @notice `withdraw` for many leases with one token transfer.
    /// @dev Every entry must name the caller as host and an existing lease. Entries that are
    /// pending, closed or have nothing new are skipped rather than reverting the batch, because
    /// a renter can close or a lease can change state between signing and mining; the call
    /// reverts with `NothingToWithdraw` only when the whole batch paid nothing.
    /// @param qs The quotes the leases were opened with.
    function withdrawMany(Quote[] calldata qs) external;

    /// @notice Ends a lease. Either the renter or the host may call it at any time.
    /// @dev Pending: the renter gets the whole deposit back (reason CancelledBeforeStart when the
    /// renter closes before the accept timeout, HostDeclined when the host does, NeverStarted
    /// after it). Running: the host gets what accrued and was not yet withdrawn (minus the fee, on
    /// cumulative earnings as in `withdraw`), the renter gets deposit - accrued.
    /// A payout that fails is credited to `claimable` so the other party is still paid.
    /// @param q The quote the lease was opened with.
    function close(Quote calldata q) external;

    /// @notice Invalidates every quote of the caller (as host) with a nonce below `newMinNonce`.
    /// @dev Leases already opened are unaffected. The minimum only goes up.
    /// @param newMinNonce The lowest nonce that stays valid.
    function cancelNonces(uint256 newMinNonce) external;

    // ---------------------------------------------------------------- host registry

    /// @notice Binds the caller's wallet to its libp2p peer id and optionally adds to its bond.
    /// @dev Re-registering replaces the peer id, keeps the first registration time, and cancels a
    /// pending unregistration (the bond stays locked). The registry does not prove the caller owns
    /// the peer id: clients must also check that the peer's signed offer names this wallet.
    /// @param peerId The libp2p peer id bytes (1 to MAX_PEER_ID_LENGTH bytes).
    /// @param bond Token base units to add to the bond (0 for none); pulled from the caller.
    function registerHost(bytes calldata peerId, uint256 bond) external;

    /// @notice Leaves the registry and starts the bond's unlock delay.
    /// @dev The bond is a public, time-locked commitment (nothing can slash it): it can only be
    /// taken back BOND_UNLOCK_DELAY after the host visibly left the registry, so a bond cannot be
    /// shown to renters and pulled out right after.
    function unregisterHost() external;

    /// @notice Pays the caller's bond back once it has unlocked after `unregisterHost`.
    function withdrawBond() external;

    // ---------------------------------------------------------------- payouts and fees

    /// @notice Pays the caller its claimable balance (payouts that failed earlier).
    function claim() external;

    /// @notice Pays the caller's claimable balance to `to`, e.g. when the caller's own address
    /// is blocklisted by the token.
    /// @param to The recipient.
    function claimTo(address to) external;

    /// @notice Sends the collected protocol fees to the treasury. Anyone may call it.
    /// @dev If the token refuses the transfer (a blocklisted treasury), the fees are credited to
    /// `claimable[treasury]` instead, like every other payout; the treasury takes them with
    /// `claim` or `claimTo`.
    function sweepFees() external;

    // ---------------------------------------------------------------- guardian

    /// @notice Stops new leases from being opened. Everything else keeps working.
    /// @dev Guardian only.
    function pause() external;

    /// @notice Allows opening leases again. Guardian only.
    function unpause() external;

    // ---------------------------------------------------------------- views

    /// @notice Token base units the host has earned on the lease so far, fee included
    /// (withdrawn or not): min(deposit, price * seconds running). Final value once closed.
    /// @param leaseId The lease id (see `leaseIdOf`).
    function accrued(bytes32 leaseId) external view returns (uint256);

    /// @notice Token base units the host could withdraw now, fee included.
    /// @param leaseId The lease id (see `leaseIdOf`).
    function withdrawable(bytes32 leaseId) external view returns (uint256);

    /// @notice The lease's storage slot, unpacked.
    /// @param leaseId The lease id (see `leaseIdOf`).
    function lease(bytes32 leaseId) external view returns (Lease memory);

    /// @notice The EIP-712 digest of `q` on this chain and deployment: what the host signs.
    /// @dev It contains the current chain id, so it changes if the chain id does; the lease id
    /// (`leaseIdOf`) does not.
    /// @param q A quote.
    function quoteDigest(Quote calldata q) external view returns (bytes32);

    /// @notice The id of the lease opened (or to be opened) with `q` at this deployment:
    /// keccak256(abi.encode(address(this), structHash)), where structHash is the quote's EIP-712
    /// struct hash, keccak256(abi.encode(QUOTE_TYPEHASH, q.host, ..., q.specHash)).
    /// @dev Independent of the chain id, so leases survive a chain-id change.
    /// @param q A quote.
    function leaseIdOf(Quote calldata q) external view returns (bytes32);

    /// @notice Quotes of `host` with a nonce below this cannot be opened.
    function minNonce(address host) external view returns (uint256);

    /// @notice The registry entry of `host`; an empty peer id means not (or no longer) registered.
    /// @return peerId libp2p peer id bytes.
    /// @return registeredAt First registration time (kept across re-registrations), 0 if never.
    /// @return bond Bond held, in token base units.
    function hosts(address host) external view returns (bytes memory peerId, uint256 registeredAt, uint256 bond);

    /// @notice When the bond of an unregistered host unlocks; 0 while registered or never unregistered.
    function bondUnlockAt(address host) external view returns (uint256);

    /// @notice Token base units `account` can take with `claim` (payouts that failed).
    function claimable(address account) external view returns (uint256);

    /// @notice Protocol fees collected and not yet swept to the treasury.
    function feesAccrued() external view returns (uint256);

    /// @notice The EIP-712 domain separator for this chain and deployment.
    function DOMAIN_SEPARATOR() external view returns (bytes32);

    /// @notice The ERC-20 used for every deposit, payout and bond.
    function token() external view returns (IERC20);

    /// @notice Receives the protocol fees.
    function treasury() external view returns (address);

    /// @notice Protocol fee in basis points of what the host is paid.
    function feeBps() external view returns (uint16);

    /// @notice Seconds the host has after `open` to `start` a lease.
    function acceptTimeout() external view returns (uint64);

    /// @notice May pause and unpause `open`; has no other power.
    function guardian() external view returns (address);
}
