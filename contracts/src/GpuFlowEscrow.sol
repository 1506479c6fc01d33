// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IGpuFlowEscrow, Quote, Lease, LeaseStatus, CloseReason} from "./IGpuFlowEscrow.sol";
import {PackedLease, PackedLeaseLib} from "./PackedLease.sol";

/// @title GpuFlowEscrow
/// @notice Escrow for GPUFlow leases. See IGpuFlowEscrow for the interface and DESIGN.md §6 for
/// the requirements.
/// @notice Time: billing is per second of `block.timestamp`, and the contract trusts the chain's
/// clock. On rollups the sequencer sets block timestamps within the chain's bounds (Arbitrum
/// accepts up to 1 hour into the future and several hours into the past; OP-stack chains such as
/// Base let the sequencer set them too), so there a sequencer can shift billed time, and with it
/// the accept timeout and quote expiry. Renters and hosts accept the clock of the chain they use.
/// @dev Gas shapes the storage: a lease is one packed slot and its id is a hash of the host's quote
/// (keccak256(abi.encode(address(this), EIP-712 struct hash)), see `leaseIdOf`), so the quote's
/// other terms never touch storage. Every call after `open` passes the quote again; recomputing the
/// id proves the terms, because only `open` with a valid host signature over the quote's EIP-712
/// digest can create a slot at that id. The id leaves out the chain id (the signature binds it),
/// so leases stay reachable if the chain id changes. Money owed by the contract is, at all times:
///   sum over live leases of (deposit - paid to host) + sum of claimable + fees + bonds,
/// and the token balance never drops below it (tested as an invariant).
contract GpuFlowEscrow is IGpuFlowEscrow, EIP712, Pausable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice The hard cap on the protocol fee: 10 %.
    uint256 public constant MAX_FEE_BPS = 1000;
    /// @notice How long a bond stays locked after its host unregisters.
    uint256 public constant BOND_UNLOCK_DELAY = 7 days;
    /// @notice Longest accepted libp2p peer id (an ed25519 peer id is 38 bytes).
    uint256 public constant MAX_PEER_ID_LENGTH = 128;
    /// @notice keccak256 of the EIP-712 Quote type string.
    bytes32 public constant QUOTE_TYPEHASH = keccak256(
        "Quote(address host,address renter,uint256 pricePerSecond,uint256 minDuration,uint256 maxDuration,uint256 expiry,uint256 nonce,bytes32 specHash)"
    );

    uint256 private constant BPS = 10_000;

    /// @inheritdoc IGpuFlowEscrow
    IERC20 public immutable token;
    /// @inheritdoc IGpuFlowEscrow
    address public immutable treasury;
    /// @inheritdoc IGpuFlowEscrow
    uint16 public immutable feeBps;
    /// @inheritdoc IGpuFlowEscrow
    uint64 public immutable acceptTimeout;
    /// @inheritdoc IGpuFlowEscrow
    address public immutable guardian;

    /// @dev Host registry entry. The fixed fields share one slot; the peer id takes its own.
    struct HostEntry {
        uint40 registeredAt;
        uint40 bondUnlockAt;
        uint96 bond;
        bytes peerId;
    }

    /// @dev One packed slot per lease; see PackedLease for the layout.
    mapping(bytes32 leaseId => PackedLease) private _leases;
    /// @inheritdoc IGpuFlowEscrow
    mapping(address host => uint256) public minNonce;
    /// @inheritdoc IGpuFlowEscrow
    mapping(address account => uint256) public claimable;
    mapping(address host => HostEntry) private _hosts;
    /// @dev Fees collected plus one. The slot never returns to zero, so the first withdrawal after
    /// a sweep pays a 2.9k storage update instead of a 20k storage creation.
    uint256 private _feesPlusOne = 1;

    /// @param token_ The ERC-20 every amount is denominated in (no fee-on-transfer tokens).
    /// @param treasury_ Receives the protocol fees.
    /// @param feeBps_ Protocol fee in basis points of host earnings, at most MAX_FEE_BPS.
    /// @param acceptTimeout_ Seconds the host has to start a lease after it is opened.
    /// @param guardian_ May pause `open`; address(0) for a deployment that can never be paused.
    constructor(IERC20 token_, address treasury_, uint16 feeBps_, uint64 acceptTimeout_, address guardian_)
        EIP712("GpuFlowEscrow", "1")
    {
        if (address(token_) == address(0) || treasury_ == address(0)) revert ZeroAddress();
        if (feeBps_ > MAX_FEE_BPS) revert FeeAboveCap(feeBps_, MAX_FEE_BPS);
        if (acceptTimeout_ == 0) revert ZeroAcceptTimeout();
        token = token_;
        treasury = treasury_;
        feeBps = feeBps_;
        acceptTimeout = acceptTimeout_;
        guardian = guardian_;
    }

    modifier onlyGuardian() {
        if (msg.sender != guardian) revert NotGuardian(msg.sender);
        _;
    }

    // ================================================================ leases

    /// @inheritdoc IGpuFlowEscrow
    function open(Quote calldata q, bytes calldata sig, uint256 deposit)
        external
        nonReentrant
        whenNotPaused
        returns (bytes32 leaseId)
    {
        leaseId = _open(q, sig, deposit);
    }

    /// @inheritdoc IGpuFlowEscrow
    function openWithPermit(
        Quote calldata q,
        bytes calldata sig,
        uint256 deposit,
        uint256 permitDeadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external nonReentrant whenNotPaused returns (bytes32 leaseId) {
        _permit(deposit, permitDeadline, v, r, s);
        leaseId = _open(q, sig, deposit);
    }

    /// @inheritdoc IGpuFlowEscrow
    /// @dev Guarded although it makes no external call: otherwise a host contract could start a
    /// lease from a token hook inside `open`'s pull, before `open` emitted `LeaseOpened`.
    function start(Quote calldata q) external nonReentrant {
        if (msg.sender != q.host) revert NotHost(msg.sender, q.host);
        bytes32 leaseId = _leaseId(q);
        PackedLease l = _leases[leaseId];
        if (l.status() != LeaseStatus.Pending) _revertStatus(leaseId, l.status());
        uint256 deadline = l.since() + acceptTimeout;
        if (block.timestamp > deadline) revert AcceptTimeoutPassed(deadline, block.timestamp);

        // paidUntil = since: nothing paid yet.
        _leases[leaseId] =
            PackedLeaseLib.pack(l.deposit(), l.pricePerSecond(), block.timestamp, block.timestamp, LeaseStatus.Running);
        emit LeaseStarted(leaseId, q.host, q.renter, block.timestamp);
    }

    /// @inheritdoc IGpuFlowEscrow
    function topUp(Quote calldata q, uint256 amount) external nonReentrant {
        _topUp(q, amount);
    }

    /// @inheritdoc IGpuFlowEscrow
    function topUpWithPermit(Quote calldata q, uint256 amount, uint256 permitDeadline, uint8 v, bytes32 r, bytes32 s)
        external
        nonReentrant
    {
        _permit(amount, permitDeadline, v, r, s);
        _topUp(q, amount);
    }

    /// @inheritdoc IGpuFlowEscrow
    function withdraw(Quote calldata q) external nonReentrant {
        if (msg.sender != q.host) revert NotHost(msg.sender, q.host);
        bytes32 leaseId = _leaseId(q);
        PackedLease l = _leases[leaseId];
        if (l.status() != LeaseStatus.Running) _revertStatus(leaseId, l.status());
        uint256 paidBefore = l.paid();
        uint256 accruedNow = l.accruedAt(block.timestamp);
        if (accruedNow == paidBefore) revert NothingToWithdraw();

        _leases[leaseId] = _withPaidUntilNow(l);
        // Fee on cumulative earnings, so rounding cannot be gamed by withdrawing often.
        uint256 fee = _fee(accruedNow) - _fee(paidBefore);
        uint256 net = accruedNow - paidBefore - fee;
        if (fee != 0) _feesPlusOne += fee;
        _push(leaseId, msg.sender, net);
        emit Withdrawn(leaseId, msg.sender, net, fee);
    }

    /// @inheritdoc IGpuFlowEscrow
    function withdrawMany(Quote[] calldata qs) external nonReentrant {
        uint256 totalNet;
        uint256 totalFee;
        // The lease the one payout belongs to: the first lease paid, reset to 0 by a second one.
        bytes32 payoutLease;
        for (uint256 i; i < qs.length; ++i) {
            Quote calldata q = qs[i];
            if (msg.sender != q.host) revert NotHost(msg.sender, q.host);
            bytes32 leaseId = _leaseId(q);
            PackedLease l = _leases[leaseId];
            LeaseStatus status = l.status();
            if (status != LeaseStatus.Running) {
                // A typo'd quote is a caller bug worth surfacing; pending and closed leases are
                // states the host does not control, so they must not sink the whole batch.
                if (status == LeaseStatus.None) revert LeaseNotFound(leaseId);
                continue;
            }
            uint256 paidBefore = l.paid();
            uint256 accruedNow = l.accruedAt(block.timestamp);
            if (accruedNow == paidBefore) continue;

            _leases[leaseId] = _withPaidUntilNow(l);
            payoutLease = totalNet + totalFee == 0 ? leaseId : bytes32(0);
            uint256 fee = _fee(accruedNow) - _fee(paidBefore);
            uint256 net = accruedNow - paidBefore - fee;
            totalFee += fee;
            totalNet += net;
            emit Withdrawn(leaseId, msg.sender, net, fee);
        }
        if (totalNet + totalFee == 0) revert NothingToWithdraw();
        if (totalFee != 0) _feesPlusOne += totalFee;
        _push(payoutLease, msg.sender, totalNet);
    }

    /// @inheritdoc IGpuFlowEscrow
    function close(Quote calldata q) external nonReentrant {
        if (msg.sender != q.renter && msg.sender != q.host) revert NotParty(msg.sender);
        bytes32 leaseId = _leaseId(q);
        PackedLease l = _leases[leaseId];
        LeaseStatus status = l.status();

        uint256 hostNet;
        uint256 fee;
        uint256 refund;
        uint256 startedAt;
        CloseReason reason;
        if (status == LeaseStatus.Running) {
            uint256 total = l.accruedAt(block.timestamp);
            uint256 paidBefore = l.paid();
            fee = _fee(total) - _fee(paidBefore);
            hostNet = total - paidBefore - fee;
            refund = l.deposit() - total;
            startedAt = l.since();
            if (refund == 0) reason = CloseReason.Depleted;
            else if (msg.sender == q.renter) reason = CloseReason.RenterClosed;
            else reason = CloseReason.HostClosed;
            // paidUntil = now: the slot keeps saying what the host was paid in total.
            _leases[leaseId] =
                PackedLeaseLib.pack(l.deposit(), l.pricePerSecond(), startedAt, block.timestamp, LeaseStatus.Closed);
        } else if (status == LeaseStatus.Pending) {
            refund = l.deposit();
            if (block.timestamp > l.since() + acceptTimeout) reason = CloseReason.NeverStarted;
            else if (msg.sender == q.host && msg.sender != q.renter) reason = CloseReason.HostDeclined;
            else reason = CloseReason.CancelledBeforeStart;
            // paidUntil = since: "host paid nothing" in the same formula.
            _leases[leaseId] = PackedLeaseLib.pack(refund, l.pricePerSecond(), l.since(), l.since(), LeaseStatus.Closed);
        } else {
            _revertStatus(leaseId, status);
        }
        if (fee != 0) _feesPlusOne += fee;

        // Two independent pushes: if one recipient cannot receive, its share waits in `claimable`
        // and the other is still paid.
        _push(leaseId, q.host, hostNet);
        _push(leaseId, q.renter, refund);
        emit LeaseClosed(
            leaseId, q.host, q.renter, msg.sender, reason, hostNet, fee, refund, startedAt, block.timestamp
        );
    }

    /// @inheritdoc IGpuFlowEscrow
    function cancelNonces(uint256 newMinNonce) external {
        uint256 current = minNonce[msg.sender];
        if (newMinNonce <= current) revert NonceNotIncreased(current, newMinNonce);
        minNonce[msg.sender] = newMinNonce;
        emit NoncesCancelled(msg.sender, newMinNonce);
    }

    // ================================================================ host registry

    /// @inheritdoc IGpuFlowEscrow
    function registerHost(bytes calldata peerId, uint256 bond) external nonReentrant {
        if (peerId.length == 0 || peerId.length > MAX_PEER_ID_LENGTH) revert PeerIdLength(peerId.length);
        HostEntry storage h = _hosts[msg.sender];
        // Timestamps fit in 40 bits until the year 36812.
        // forge-lint: disable-next-line(unsafe-typecast)
        if (h.registeredAt == 0) h.registeredAt = uint40(block.timestamp);
        h.peerId = peerId;
        h.bondUnlockAt = 0;
        uint256 newBond = h.bond;
        if (bond != 0) {
            if (bond > type(uint96).max) revert AmountTooLarge(bond);
            newBond += bond;
            if (newBond > type(uint96).max) revert AmountTooLarge(newBond);
            // forge-lint: disable-next-line(unsafe-typecast)
            h.bond = uint96(newBond); // range-checked on the line above
            _pull(msg.sender, bond);
        }
        emit HostRegistered(msg.sender, peerId, h.registeredAt, newBond);
    }

    /// @inheritdoc IGpuFlowEscrow
    function unregisterHost() external {
        HostEntry storage h = _hosts[msg.sender];
        if (h.peerId.length == 0) revert HostNotRegistered(msg.sender);
        delete h.peerId;
        uint256 unlockAt = block.timestamp + BOND_UNLOCK_DELAY;
        // forge-lint: disable-next-line(unsafe-typecast)
        h.bondUnlockAt = uint40(unlockAt); // a timestamp: fits in 40 bits until the year 36812
        emit HostUnregistered(msg.sender, unlockAt);
    }

    /// @inheritdoc IGpuFlowEscrow
    function withdrawBond() external nonReentrant {
        HostEntry storage h = _hosts[msg.sender];
        if (h.peerId.length != 0) revert HostStillRegistered(msg.sender);
        uint256 amount = h.bond;
        if (amount == 0) revert NoBond(msg.sender);
        if (block.timestamp < h.bondUnlockAt) revert BondLocked(h.bondUnlockAt, block.timestamp);
        h.bond = 0;
        _push(bytes32(0), msg.sender, amount);
        emit BondWithdrawn(msg.sender, amount);
    }

    // ================================================================ payouts and fees

    /// @inheritdoc IGpuFlowEscrow
    function claim() external nonReentrant {
        _claim(msg.sender);
    }

    /// @inheritdoc IGpuFlowEscrow
    function claimTo(address to) external nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        _claim(to);
    }

    /// @inheritdoc IGpuFlowEscrow
    function sweepFees() external nonReentrant {
        uint256 amount = _feesPlusOne - 1;
        if (amount == 0) revert NoFeesToSweep();
        _feesPlusOne = 1;
        // A treasury the token refuses gets the fees in `claimable` (PayoutDeferred), like any payee.
        _push(bytes32(0), treasury, amount);
        emit FeesSwept(treasury, amount);
    }

    // ================================================================ guardian

    /// @inheritdoc IGpuFlowEscrow
    function pause() external onlyGuardian {
        _pause();
    }

    /// @inheritdoc IGpuFlowEscrow
    function unpause() external onlyGuardian {
        _unpause();
    }

    // ================================================================ views

    /// @inheritdoc IGpuFlowEscrow
    function accrued(bytes32 leaseId) external view returns (uint256) {
        PackedLease l = _leases[leaseId];
        LeaseStatus status = l.status();
        if (status == LeaseStatus.Running) return l.accruedAt(block.timestamp);
        if (status == LeaseStatus.Closed) return l.paid();
        return 0;
    }

    /// @inheritdoc IGpuFlowEscrow
    function withdrawable(bytes32 leaseId) external view returns (uint256) {
        PackedLease l = _leases[leaseId];
        if (l.status() != LeaseStatus.Running) return 0;
        return l.accruedAt(block.timestamp) - l.paid();
    }

    /// @inheritdoc IGpuFlowEscrow
    function lease(bytes32 leaseId) external view returns (Lease memory) {
        return _leases[leaseId].unpack();
    }

    /// @inheritdoc IGpuFlowEscrow
    function quoteDigest(Quote calldata q) external view returns (bytes32) {
        return _hashTypedDataV4(_structHash(q));
    }

    /// @inheritdoc IGpuFlowEscrow
    function leaseIdOf(Quote calldata q) external view returns (bytes32) {
        return _leaseId(q);
    }

    /// @inheritdoc IGpuFlowEscrow
    function hosts(address host) external view returns (bytes memory peerId, uint256 registeredAt, uint256 bond) {
        HostEntry storage h = _hosts[host];
        return (h.peerId, h.registeredAt, h.bond);
    }

    /// @inheritdoc IGpuFlowEscrow
    function bondUnlockAt(address host) external view returns (uint256) {
        return _hosts[host].bondUnlockAt;
    }

    /// @inheritdoc IGpuFlowEscrow
    function feesAccrued() external view returns (uint256) {
        return _feesPlusOne - 1;
    }

    /// @inheritdoc IGpuFlowEscrow
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ================================================================ internals

    /// @dev Checks and stores a new lease; shared by `open` and `openWithPermit`.
    function _open(Quote calldata q, bytes calldata sig, uint256 deposit) private returns (bytes32 leaseId) {
        if (msg.sender != q.renter) revert NotRenter(msg.sender, q.renter);
        if (block.timestamp > q.expiry) revert QuoteExpired(q.expiry, block.timestamp);
        uint256 min = minNonce[q.host];
        if (q.nonce < min) revert NonceCancelled(q.nonce, min);
        if (q.pricePerSecond > type(uint64).max) revert PriceTooHigh(q.pricePerSecond);
        if (deposit == 0) revert ZeroAmount();
        _checkDeposit(q, deposit);
        // The host's minimum; saturating, so a huge minDuration means "no deposit is enough".
        uint256 minimum = Math.saturatingMul(q.pricePerSecond, q.minDuration);
        if (deposit < minimum) revert DepositBelowMinimum(deposit, minimum);

        bytes32 structHash = _structHash(q);
        leaseId = _leaseIdOf(structHash);
        // Every opened lease has a non-zero status, so a non-zero slot means "already opened".
        if (!_leases[leaseId].isEmpty()) revert LeaseExists(leaseId);
        // The signature covers the full EIP-712 digest: this chain id and this deployment.
        _checkSignature(_hashTypedDataV4(structHash), sig, q.host);

        _leases[leaseId] = PackedLeaseLib.pack(deposit, q.pricePerSecond, block.timestamp, 0, LeaseStatus.Pending);
        _pull(msg.sender, deposit);
        emit LeaseOpened(leaseId, q.host, q.renter, q.pricePerSecond, deposit, q.maxDuration, q.nonce, q.specHash);
    }

    /// @dev Adds to a lease's deposit; shared by `topUp` and `topUpWithPermit`.
    function _topUp(Quote calldata q, uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        bytes32 leaseId = _leaseId(q);
        PackedLease l = _leases[leaseId];
        LeaseStatus status = l.status();
        if (status == LeaseStatus.Running) {
            // Once uncapped accrual passed the deposit the host stopped serving; money added now
            // would pay for the gap, because accrual always counts from startedAt. At the exact
            // second it equals the deposit there is no gap yet, so a top-up is still continuous.
            // price < 2^64 and the elapsed time < 2^40: the product cannot overflow.
            uint256 uncapped;
            unchecked {
                uncapped = (block.timestamp - l.since()) * l.pricePerSecond();
            }
            if (uncapped > l.deposit()) revert DepositExhausted(leaseId);
        } else if (status != LeaseStatus.Pending) {
            _revertStatus(leaseId, status);
        }
        uint256 newDeposit = l.deposit() + amount;
        _checkDeposit(q, newDeposit);

        // Adding to the low 96 bits leaves the other fields as they are: newDeposit fits in 96 bits.
        _leases[leaseId] = PackedLease.wrap(PackedLease.unwrap(l) + amount);
        _pull(msg.sender, amount);
        emit LeaseToppedUp(leaseId, msg.sender, amount, newDeposit);
    }

    /// @dev Runs the caller's EIP-2612 permit for `amount`. A failing permit is not fatal when the
    /// allowance already covers `amount`: anyone can submit a permit signature seen in the mempool
    /// first, which makes ours revert (nonce used) but leaves the allowance in place, and that must
    /// not grief the caller. The owner is always msg.sender, so a token without `permit` whose
    /// fallback accepts the call ("phantom permit") can only spend the caller's own allowance.
    function _permit(uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s) private {
        try IERC20Permit(address(token)).permit(msg.sender, address(this), amount, deadline, v, r, s) {}
        catch {
            if (token.allowance(msg.sender, address(this)) < amount) revert PermitFailed();
        }
    }

    /// @dev The quote's EIP-712 struct hash, keccak256(QUOTE_TYPEHASH ‖ the quote's 8 words).
    /// Done in assembly because every call pays for it: the Quote has only static fields, so its
    /// EIP-712 encoding is the typehash followed by its 8 calldata words (0x100 bytes).
    /// Dirty high bits in an address field would change the hash, which then names no lease (and
    /// the ABI decoder rejects them when a field is read), so copying raw calldata is safe.
    function _structHash(Quote calldata q) private pure returns (bytes32 h) {
        bytes32 typehash = QUOTE_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            calldatacopy(add(ptr, 0x20), q, 0x100)
            h := keccak256(ptr, 0x120)
        }
    }

    /// @dev keccak256(abi.encode(address(this), structHash)). The address keeps ids of different
    /// deployments apart; the chain id is left out on purpose (the host's signature binds it), so a
    /// chain-id change does not orphan open leases. A quote still opens at most one lease here.
    function _leaseIdOf(bytes32 structHash) private view returns (bytes32 id) {
        assembly ("memory-safe") {
            mstore(0x00, address())
            mstore(0x20, structHash)
            id := keccak256(0x00, 0x40)
        }
    }

    function _leaseId(Quote calldata q) private view returns (bytes32) {
        return _leaseIdOf(_structHash(q));
    }

    /// @dev The lease with paidUntil set to now (bits [200,240)).
    function _withPaidUntilNow(PackedLease l) private view returns (PackedLease) {
        return
            PackedLease.wrap((PackedLease.unwrap(l) & ~(uint256(type(uint40).max) << 200)) | (block.timestamp << 200));
    }

    function _checkSignature(bytes32 digest, bytes calldata sig, address host) private pure {
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, sig);
        if (err == ECDSA.RecoverError.InvalidSignatureS) revert SignatureHighS();
        if (err != ECDSA.RecoverError.NoError) revert SignatureMalformed();
        if (signer != host) revert WrongSigner(signer, host);
    }

    /// @dev deposit <= pricePerSecond * maxDuration, and it fits the slot. The price is below 2^64
    /// (checked in `open`, and bound into the lease id), so the product overflows only when
    /// maxDuration is above 2^192, where the cap exceeds any uint96 deposit anyway.
    function _checkDeposit(Quote calldata q, uint256 deposit) private pure {
        uint256 cap = q.maxDuration > type(uint192).max ? type(uint256).max : q.pricePerSecond * q.maxDuration;
        if (deposit > cap) revert DepositAboveCap(deposit, cap);
        if (deposit > type(uint96).max) revert AmountTooLarge(deposit);
    }

    /// @dev Rounds down, so the fee never takes more than feeBps of what the host earned. Payouts
    /// charge _fee(accrued now) - _fee(paid before): a difference of floors of a monotone function,
    /// so never negative, at most the payout (feeBps <= 10 %), and summing to _fee(total).
    function _fee(uint256 gross) private view returns (uint256) {
        return gross * feeBps / BPS;
    }

    /// @dev Pulls exactly `amount` or reverts: a fee-on-transfer token would leave the contract
    /// owing more than it holds.
    function _pull(address from, uint256 amount) private {
        uint256 before = _selfBalance();
        token.safeTransferFrom(from, address(this), amount);
        uint256 afterwards = _selfBalance();
        if (afterwards != before + amount) {
            revert FeeOnTransferToken(amount, afterwards > before ? afterwards - before : 0);
        }
    }

    /// @dev token.balanceOf(address(this)) without the ABI encoder's overhead; runs twice per pull.
    function _selfBalance() private view returns (uint256 bal) {
        address t = address(token);
        assembly ("memory-safe") {
            mstore(0x00, 0x70a08231) // balanceOf(address)
            mstore(0x20, address())
            if iszero(and(gt(returndatasize(), 0x1f), staticcall(gas(), t, 0x1c, 0x24, 0x00, 0x20))) {
                let ptr := mload(0x40)
                returndatacopy(ptr, 0, returndatasize())
                revert(ptr, returndatasize())
            }
            bal := mload(0x00)
        }
    }

    /// @dev Pays `to`, or credits `claimable[to]` when the token refuses (revert or `false`), so
    /// that one party's blocklisting never blocks the other's payout.
    /// `leaseId` only labels the event (bytes32(0) for payouts that belong to no single lease).
    function _push(bytes32 leaseId, address to, uint256 amount) private {
        if (amount == 0) return;
        if (!token.trySafeTransfer(to, amount)) {
            claimable[to] += amount;
            emit PayoutDeferred(leaseId, to, amount);
        }
    }

    function _claim(address to) private {
        uint256 amount = claimable[msg.sender];
        if (amount == 0) revert NothingToClaim(msg.sender);
        claimable[msg.sender] = 0;
        token.safeTransfer(to, amount);
        emit Claimed(msg.sender, to, amount);
    }

    function _revertStatus(bytes32 leaseId, LeaseStatus status) private pure {
        if (status == LeaseStatus.None) revert LeaseNotFound(leaseId);
        if (status == LeaseStatus.Pending) revert LeaseNotStarted(leaseId);
        if (status == LeaseStatus.Running) revert LeaseAlreadyStarted(leaseId);
        revert LeaseAlreadyClosed(leaseId);
    }
}
