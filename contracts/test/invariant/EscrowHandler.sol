// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {CommonBase} from "forge-std/Base.sol";
import {StdCheats} from "forge-std/StdCheats.sol";
import {StdUtils} from "forge-std/StdUtils.sol";

import {GpuFlowEscrow} from "../../src/GpuFlowEscrow.sol";
import {Quote, Lease, LeaseStatus} from "../../src/IGpuFlowEscrow.sol";
import {BlocklistToken} from "../mocks/BlocklistToken.sol";

/// @dev Drives the escrow through random sequences of every entry point (the permit variants
/// included), for 3 hosts and 3 renters, with a USDC-like token whose blocklist the handler
/// toggles for them and for the treasury (so payouts and fee sweeps get deferred to `claimable`). It keeps its own model of every lease and records what it observes leaving
/// the escrow; the invariants compare the three (contract state, model, observed flows).
/// Handler functions never assert (the fuzzer ignores their reverts); mismatches go into
/// `modelErrors`, which an invariant requires to stay 0.
contract EscrowHandler is CommonBase, StdCheats, StdUtils {
    GpuFlowEscrow public immutable escrow;
    BlocklistToken public immutable token;
    address public immutable treasury;
    uint256 public immutable feeBps;
    uint256 public immutable timeout;

    address[3] public hostAddrs;
    uint256[3] internal hostKeys;
    address[3] public renterAddrs;
    uint256[3] internal renterKeys;

    struct Model {
        address host;
        address renter;
        uint256 price;
        uint256 deposited; // deposit + top-ups
        uint256 openedAt;
        uint256 startedAt; // 0 while pending
        uint256 paidGross; // host net + fee paid so far (model)
        bool closed;
        // What was observed leaving the escrow for this lease:
        uint256 hostNet;
        uint256 fees;
        uint256 refund;
    }

    Quote[] internal quotes;
    bytes32[] public ids;
    mapping(bytes32 => Model) public models;
    uint256 internal nonce;

    /// Tokens the escrow should have pulled in (deposits, top-ups, bonds).
    uint256 public ghostIn;
    /// Tokens observed arriving at recipients (hosts, renters, treasury, claimers).
    uint256 public ghostOut;
    /// Observed payouts that differ from the model.
    uint256 public modelErrors;
    mapping(address => uint256) public bondOf;
    mapping(bytes4 => uint256) public calls;

    constructor(GpuFlowEscrow escrow_, BlocklistToken token_) {
        escrow = escrow_;
        token = token_;
        treasury = escrow_.treasury();
        feeBps = escrow_.feeBps();
        timeout = escrow_.acceptTimeout();
        for (uint256 i; i < 3; ++i) {
            (hostAddrs[i], hostKeys[i]) = makeAddrAndKey(string.concat("host", vm.toString(i)));
            (renterAddrs[i], renterKeys[i]) = makeAddrAndKey(string.concat("renter", vm.toString(i)));
            _approve(hostAddrs[i]);
            _approve(renterAddrs[i]);
        }
    }

    // ------------------------------------------------------------ actions

    function open(
        uint256 hostSeed,
        uint256 renterSeed,
        uint256 priceSeed,
        uint256 minSeed,
        uint256 durationSeed,
        uint256 depositSeed
    ) external {
        (Quote memory q, bytes memory sig, uint256 deposit) =
            _newQuote(hostSeed, renterSeed, priceSeed, minSeed, durationSeed, depositSeed);
        if (token.blocked(q.renter)) return;
        token.mint(q.renter, deposit);
        vm.prank(q.renter);
        bytes32 id = escrow.open(q, sig, deposit);
        _recordOpen(q, id, deposit);
        ++calls[this.open.selector];
    }

    /// `openWithPermit` in one of three ways (`mode`): a first-time renter with no allowance and a
    /// valid permit; the same permit front-run by a third party; a failing permit while the
    /// renter's standing approval covers the deposit.
    function openWithPermit(
        uint256 hostSeed,
        uint256 renterSeed,
        uint256 priceSeed,
        uint256 minSeed,
        uint256 durationSeed,
        uint256 depositSeed,
        uint256 mode
    ) external {
        (Quote memory q, bytes memory sig, uint256 deposit) =
            _newQuote(hostSeed, renterSeed, priceSeed, minSeed, durationSeed, depositSeed);
        if (token.blocked(q.renter)) return;
        token.mint(q.renter, deposit);
        Permit memory p = _preparePermit(q.renter, renterKeys[renterSeed % 3], deposit, mode);
        vm.prank(q.renter);
        bytes32 id = escrow.openWithPermit(q, sig, deposit, p.deadline, p.v, p.r, p.s);
        _approve(q.renter); // back to the standing approval the other actions use
        _recordOpen(q, id, deposit);
        ++calls[this.openWithPermit.selector];
    }

    function start(uint256 idx) external {
        (Quote memory q, bytes32 id, bool ok) = _pickWhere(idx, _startable);
        Model storage m = models[id];
        if (!ok) return;
        vm.prank(q.host);
        escrow.start(q);
        m.startedAt = block.timestamp;
        ++calls[this.start.selector];
    }

    function topUp(uint256 idx, uint256 amountSeed, uint256 payerSeed) external {
        (Quote memory q, bytes32 id, uint256 amount, address payer,) = _pickTopUp(idx, amountSeed, payerSeed);
        if (payer == address(0)) return;
        vm.prank(payer);
        escrow.topUp(q, amount);
        models[id].deposited += amount;
        ghostIn += amount;
        ++calls[this.topUp.selector];
    }

    /// `topUpWithPermit`, with the same three permit modes as `openWithPermit`.
    function topUpWithPermit(uint256 idx, uint256 amountSeed, uint256 payerSeed, uint256 mode) external {
        (Quote memory q, bytes32 id, uint256 amount, address payer, uint256 payerKey) =
            _pickTopUp(idx, amountSeed, payerSeed);
        if (payer == address(0)) return;
        Permit memory p = _preparePermit(payer, payerKey, amount, mode);
        vm.prank(payer);
        escrow.topUpWithPermit(q, amount, p.deadline, p.v, p.r, p.s);
        _approve(payer);
        models[id].deposited += amount;
        ghostIn += amount;
        ++calls[this.topUpWithPermit.selector];
    }

    function withdraw(uint256 idx) external {
        (Quote memory q, bytes32 id, bool ok) = _pickWhere(idx, _withdrawable);
        Model storage m = models[id];
        if (!ok) return;
        uint256 gross = _accrued(m) - m.paidGross;
        Side memory before = _side(q.host);
        vm.prank(q.host);
        escrow.withdraw(q);
        _recordHostSide(id, q.host, before, gross);
        ++calls[this.withdraw.selector];
    }

    /// Withdraws every lease of one host in one batch (pending and closed ones included: the
    /// contract must skip them).
    function withdrawMany(uint256 hostSeed) external {
        address host = hostAddrs[hostSeed % 3];
        uint256 n;
        for (uint256 i; i < ids.length; ++i) {
            if (quotes[i].host == host) ++n;
        }
        Quote[] memory batch = new Quote[](n);
        uint256 gross;
        n = 0;
        for (uint256 i; i < ids.length; ++i) {
            if (quotes[i].host != host) continue;
            batch[n++] = quotes[i];
            Model storage m = models[ids[i]];
            if (!m.closed && m.startedAt != 0) gross += _accrued(m) - m.paidGross;
        }
        if (gross == 0) return;
        Side memory before = _side(host);
        vm.prank(host);
        escrow.withdrawMany(batch);
        // Per-lease model update; the observed total is compared to the model's total.
        uint256 expectedFee;
        for (uint256 i; i < ids.length; ++i) {
            Model storage m = models[ids[i]];
            if (m.host != host || m.closed || m.startedAt == 0) continue;
            uint256 g = _accrued(m) - m.paidGross;
            uint256 fee = _feeOf(m.paidGross + g) - _feeOf(m.paidGross);
            expectedFee += fee;
            m.paidGross += g;
            m.hostNet += g - fee;
            m.fees += fee;
        }
        Side memory after_ = _side(host);
        if (after_.fees - before.fees != expectedFee || _received(before, after_) != gross - expectedFee) {
            ++modelErrors;
        }
        ghostOut += after_.bal - before.bal;
        ++calls[this.withdrawMany.selector];
    }

    function close(uint256 idx, bool byHost) external {
        (Quote memory q, bytes32 id, bool ok) = _pickWhere(idx, _notClosed);
        Model storage m = models[id];
        if (!ok) return;
        uint256 total = m.startedAt == 0 ? 0 : _accrued(m);
        uint256 gross = total - m.paidGross;
        Side memory renterBefore = _side(q.renter);
        Side memory hostBefore = _side(q.host);
        vm.prank(byHost ? q.host : q.renter);
        escrow.close(q);
        _recordHostSide(id, q.host, hostBefore, gross);
        Side memory renterAfter = _side(q.renter);
        uint256 refund = _received(renterBefore, renterAfter);
        if (refund != m.deposited - total) ++modelErrors;
        m.refund = refund;
        m.closed = true;
        ghostOut += renterAfter.bal - renterBefore.bal;
        ++calls[this.close.selector];
    }

    /// Mostly short steps (so hosts can still start leases within the timeout), sometimes long.
    function warp(uint256 secs) external {
        skip(secs % 8 == 0 ? bound(secs, 1, 2 days) : bound(secs, 1, 300));
        ++calls[this.warp.selector];
    }

    function setBlocked(uint256 actorSeed, bool isBlocked) external {
        address a = actorSeed % 2 == 0 ? hostAddrs[actorSeed % 3] : renterAddrs[actorSeed % 3];
        if (actorSeed % 5 == 0) a = treasury;
        token.setBlocked(a, isBlocked);
        ++calls[this.setBlocked.selector];
    }

    /// Claims for the first actor (from the seed on) with something owed; lifts its block first,
    /// as an issuer eventually would.
    function claim(uint256 actorSeed) external {
        address a;
        uint256 owed;
        address[7] memory all = this.actors();
        actorSeed %= all.length;
        for (uint256 i; i < all.length && owed == 0; ++i) {
            a = all[(actorSeed + i) % all.length];
            owed = escrow.claimable(a);
        }
        if (owed == 0) return;
        token.setBlocked(a, false);
        uint256 before = token.balanceOf(a);
        vm.prank(a);
        escrow.claim();
        if (token.balanceOf(a) - before != owed || escrow.claimable(a) != 0) ++modelErrors;
        ghostOut += owed;
        ++calls[this.claim.selector];
    }

    /// A blocked treasury is credited in `claimable` instead of being paid.
    function sweepFees() external {
        uint256 fees = escrow.feesAccrued();
        if (fees == 0) return;
        Side memory before = _side(treasury);
        escrow.sweepFees();
        Side memory after_ = _side(treasury);
        if (_received(before, after_) != fees || escrow.feesAccrued() != 0) ++modelErrors;
        if (token.blocked(treasury) != (after_.claim > before.claim)) ++modelErrors;
        ghostOut += after_.bal - before.bal;
        ++calls[this.sweepFees.selector];
    }

    function registerHost(uint256 hostSeed, uint256 bondSeed) external {
        address host = hostAddrs[hostSeed % 3];
        uint256 bond = bound(bondSeed, 0, 1e9);
        if (token.blocked(host)) return;
        token.mint(host, bond);
        vm.prank(host);
        escrow.registerHost(abi.encodePacked("peer-", host), bond);
        bondOf[host] += bond;
        ghostIn += bond;
        ++calls[this.registerHost.selector];
    }

    function unregisterHost(uint256 hostSeed) external {
        address host = hostAddrs[hostSeed % 3];
        (bytes memory peerId,,) = escrow.hosts(host);
        if (peerId.length == 0) return;
        vm.prank(host);
        escrow.unregisterHost();
        ++calls[this.unregisterHost.selector];
    }

    function withdrawBond(uint256 hostSeed) external {
        address host = hostAddrs[hostSeed % 3];
        (bytes memory peerId,, uint256 bond) = escrow.hosts(host);
        if (peerId.length != 0 || bond == 0) return;
        // Jumping to the unlock time is one more kind of time step.
        if (block.timestamp < escrow.bondUnlockAt(host)) vm.warp(escrow.bondUnlockAt(host));
        Side memory before = _side(host);
        vm.prank(host);
        escrow.withdrawBond();
        Side memory after_ = _side(host);
        if (_received(before, after_) != bondOf[host] || bond != bondOf[host]) ++modelErrors;
        ghostOut += after_.bal - before.bal;
        bondOf[host] = 0;
        ++calls[this.withdrawBond.selector];
    }

    // ------------------------------------------------------------ end of a run

    /// Closes every lease, lifts every block, claims, sweeps and takes every bond back.
    function settleEverything() external {
        for (uint256 i; i < 3; ++i) {
            token.setBlocked(hostAddrs[i], false);
            token.setBlocked(renterAddrs[i], false);
        }
        token.setBlocked(treasury, false);
        for (uint256 i; i < ids.length; ++i) {
            if (!models[ids[i]].closed) this.close(i, i % 2 == 0);
        }
        for (uint256 i; i < 7; ++i) {
            this.claim(i);
        }
        this.sweepFees();
        skip(escrow.BOND_UNLOCK_DELAY());
        for (uint256 i; i < 3; ++i) {
            this.unregisterHost(i);
        }
        skip(escrow.BOND_UNLOCK_DELAY());
        for (uint256 i; i < 3; ++i) {
            this.withdrawBond(i);
        }
    }

    // ------------------------------------------------------------ views for the invariants

    function leaseCount() external view returns (uint256) {
        return ids.length;
    }

    /// Everyone the escrow can owe a claimable balance: hosts, renters, the treasury.
    function actors() external view returns (address[7] memory all) {
        for (uint256 i; i < 3; ++i) {
            all[i] = hostAddrs[i];
            all[i + 3] = renterAddrs[i];
        }
        all[6] = treasury;
    }

    function totalBonds() external view returns (uint256 sum) {
        for (uint256 i; i < 3; ++i) {
            sum += bondOf[hostAddrs[i]];
        }
    }

    function model(uint256 i) external view returns (Model memory) {
        return models[ids[i]];
    }

    // ------------------------------------------------------------ internals

    function _approve(address who) internal {
        vm.prank(who);
        token.approve(address(escrow), type(uint256).max);
    }

    /// The first lease from `idx` on (cyclically) that `eligible` accepts.
    function _pickWhere(uint256 idx, function(Model storage) internal view returns (bool) eligible)
        internal
        view
        returns (Quote memory q, bytes32 id, bool ok)
    {
        uint256 n = ids.length;
        if (n == 0) return (q, id, false);
        idx %= n;
        for (uint256 i; i < n; ++i) {
            uint256 k = (idx + i) % n;
            if (eligible(models[ids[k]])) return (quotes[k], ids[k], true);
        }
    }

    function _notClosed(Model storage m) internal view returns (bool) {
        return !m.closed;
    }

    function _startable(Model storage m) internal view returns (bool) {
        return !m.closed && m.startedAt == 0 && block.timestamp <= m.openedAt + timeout;
    }

    function _withdrawable(Model storage m) internal view returns (bool) {
        return !m.closed && m.startedAt != 0 && _accrued(m) > m.paidGross;
    }

    /// Up to and including the second at which uncapped accrual reaches the deposit.
    function _toppable(Model storage m) internal view returns (bool) {
        if (m.closed || token.blocked(m.renter)) return false;
        return m.startedAt == 0 || m.price * (block.timestamp - m.startedAt) <= m.deposited;
    }

    /// The fee the escrow charges on cumulative earnings `gross`.
    function _feeOf(uint256 gross) internal view returns (uint256) {
        return gross * feeBps / 10_000;
    }

    /// A fresh quote from the seeds, signed by its host, and a deposit within its bounds.
    function _newQuote(
        uint256 hostSeed,
        uint256 renterSeed,
        uint256 priceSeed,
        uint256 minSeed,
        uint256 durationSeed,
        uint256 depositSeed
    ) internal returns (Quote memory q, bytes memory sig, uint256 deposit) {
        uint256 h = hostSeed % 3;
        q = Quote({
            host: hostAddrs[h],
            renter: renterAddrs[renterSeed % 3],
            pricePerSecond: bound(priceSeed, 1, 1e6),
            minDuration: bound(minSeed, 0, 1 hours),
            maxDuration: bound(durationSeed, 1 hours, 3 days),
            expiry: block.timestamp + 1 hours,
            nonce: ++nonce,
            specHash: keccak256(abi.encode(nonce))
        });
        uint256 minimum = q.pricePerSecond * q.minDuration;
        deposit = bound(depositSeed, minimum == 0 ? 1 : minimum, q.pricePerSecond * q.maxDuration);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(hostKeys[h], escrow.quoteDigest(q));
        sig = abi.encodePacked(r, s, v);
    }

    function _recordOpen(Quote memory q, bytes32 id, uint256 deposit) internal {
        quotes.push(q);
        ids.push(id);
        Model storage m = models[id];
        m.host = q.host;
        m.renter = q.renter;
        m.price = q.pricePerSecond;
        m.deposited = deposit;
        m.openedAt = block.timestamp;
        ghostIn += deposit;
    }

    /// A lease that can take a top-up, an amount within its cap, and a payer (the renter or a
    /// host) with its key; payer = 0 when there is nothing to do.
    function _pickTopUp(uint256 idx, uint256 amountSeed, uint256 payerSeed)
        internal
        returns (Quote memory q, bytes32 id, uint256 amount, address payer, uint256 payerKey)
    {
        bool ok;
        (q, id, ok) = _pickWhere(idx, _toppable);
        if (!ok) return (q, id, 0, address(0), 0);
        Model storage m = models[id];
        uint256 cap = q.pricePerSecond * q.maxDuration;
        if (m.deposited == cap) return (q, id, 0, address(0), 0);
        amount = bound(amountSeed, 1, cap - m.deposited);
        if (payerSeed % 2 == 0) {
            payer = q.renter;
            for (uint256 i; i < 3; ++i) {
                if (renterAddrs[i] == payer) payerKey = renterKeys[i];
            }
        } else {
            payer = hostAddrs[payerSeed % 3];
            payerKey = hostKeys[payerSeed % 3];
        }
        if (token.blocked(payer)) return (q, id, 0, address(0), 0);
        token.mint(payer, amount);
    }

    struct Permit {
        uint256 deadline;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    /// Sets up the allowance and permit for `mode` (see `openWithPermit`).
    function _preparePermit(address owner, uint256 key, uint256 value, uint256 mode)
        internal
        returns (Permit memory p)
    {
        mode %= 3;
        p.deadline = block.timestamp;
        if (mode == 2) return p; // an invalid signature; the standing approval covers the amount
        vm.prank(owner);
        token.approve(address(escrow), 0); // a first-time payer
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"),
                owner,
                address(escrow),
                value,
                token.nonces(owner),
                p.deadline
            )
        );
        (p.v, p.r, p.s) = vm.sign(key, keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash)));
        if (mode == 1) token.permit(owner, address(escrow), value, p.deadline, p.v, p.r, p.s); // front-run
    }

    /// The model's accrual: price * seconds since start, capped at the deposit.
    function _accrued(Model storage m) internal view returns (uint256) {
        if (m.startedAt == 0) return 0;
        uint256 earned = m.price * (block.timestamp - m.startedAt);
        return earned < m.deposited ? earned : m.deposited;
    }

    /// What an address holds and is owed, and the fee counter, at one moment.
    struct Side {
        uint256 bal;
        uint256 claim;
        uint256 fees;
    }

    function _side(address a) internal view returns (Side memory) {
        return Side(token.balanceOf(a), escrow.claimable(a), escrow.feesAccrued());
    }

    /// Paid to the wallet or credited to its claimable balance.
    function _received(Side memory before, Side memory after_) internal pure returns (uint256) {
        return after_.bal + after_.claim - before.bal - before.claim;
    }

    function _recordHostSide(bytes32 id, address host, Side memory before, uint256 gross) internal {
        Model storage m = models[id];
        uint256 fee = _feeOf(m.paidGross + gross) - _feeOf(m.paidGross);
        Side memory after_ = _side(host);
        uint256 received = _received(before, after_);
        if (received != gross - fee || after_.fees - before.fees != fee) ++modelErrors;
        m.paidGross += gross;
        m.hostNet += received;
        m.fees += after_.fees - before.fees;
        // Only what reached the wallet has left the escrow; a deferred payout is still inside.
        ghostOut += after_.bal - before.bal;
    }
}
