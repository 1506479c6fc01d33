// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {GpuFlowEscrow} from "../src/GpuFlowEscrow.sol";
import {EscrowTestBase, IGpuFlowEscrow, Quote} from "./utils/EscrowTestBase.sol";

/// Property tests over random prices, deposits, fees and schedules.
contract FuzzTest is EscrowTestBase {
    struct Flow {
        uint256 deposited; // by the renter, top-ups included
        uint256 hostNet; // received by the host
        uint256 refund; // received back by the renter
        uint256 fees; // added to the fee counter
    }

    function _deploy(uint256 feeBps) internal {
        // forge-lint: disable-next-line(unsafe-typecast)
        escrow = new GpuFlowEscrow(usd, treasury, uint16(feeBps), TIMEOUT, guardian); // feeBps <= 1000
        vm.prank(renter);
        usd.approve(address(escrow), type(uint256).max);
    }

    function _quoteP(uint256 price, uint256 maxDuration) internal view returns (Quote memory q) {
        q = _quote();
        q.pricePerSecond = price;
        q.minDuration = 0; // these tests pick deposits down to 1 base unit
        q.maxDuration = maxDuration;
    }

    Flow internal f;
    Quote internal cq;
    bytes32 internal cid;

    /// host + fee + refund == deposit (top-ups included) exactly, whatever the price, fee, top-ups
    /// and partial withdrawals; and the host is paid exactly min(deposit, price * seconds running).
    function testFuzz_security_conservation(
        uint256 feeBps,
        uint256 price,
        uint256 deposit,
        uint256 startDelay,
        uint256[4] memory gaps,
        uint256[4] memory topUps,
        uint8 actions,
        bool hostCloses
    ) public {
        feeBps = bound(feeBps, 0, 1000);
        price = bound(price, 1, 1e9);
        deposit = bound(deposit, 1, price * 3 days);
        _deploy(feeBps);
        cq = _quoteP(price, 10 days);
        uint256 renterStart = usd.balanceOf(renter);

        cid = _open(cq, deposit);
        f.deposited = deposit;
        skip(bound(startDelay, 0, TIMEOUT));
        vm.prank(host);
        escrow.start(cq);
        uint256 startedAt = block.timestamp;

        for (uint256 i; i < 4; ++i) {
            skip(bound(gaps[i], 0, 1 days));
            uint8 action = (actions >> (2 * i)) & 3;
            if (action == 1) _withdraw();
            else if (action == 2) _topUp(topUps[i]);
        }
        skip(bound(gaps[0] ^ gaps[3], 0, 2 days));
        uint256 elapsed = block.timestamp - startedAt;
        _close(hostCloses);

        assertEq(f.hostNet + f.fees + f.refund, f.deposited, "host + fee + refund == deposit");
        uint256 gross = price * elapsed < f.deposited ? price * elapsed : f.deposited;
        assertEq(f.hostNet + f.fees, gross, "host paid min(deposit, price * seconds)");
        assertEq(f.fees, gross * feeBps / 10_000, "fees = feeBps of earnings, rounded down once");
        assertEq(usd.balanceOf(address(escrow)), f.fees, "only fees stay behind");
        assertEq(usd.balanceOf(renter), renterStart - f.deposited + f.refund);
    }

    function _withdraw() internal {
        if (escrow.withdrawable(cid) == 0) return;
        uint256 h = usd.balanceOf(host);
        uint256 fe = escrow.feesAccrued();
        vm.prank(host);
        escrow.withdraw(cq);
        f.hostNet += usd.balanceOf(host) - h;
        f.fees += escrow.feesAccrued() - fe;
    }

    function _topUp(uint256 seed) internal {
        uint256 cap = cq.pricePerSecond * cq.maxDuration;
        if (escrow.accrued(cid) == f.deposited || f.deposited == cap) return;
        uint256 amount = bound(seed, 1, cap - f.deposited);
        vm.prank(renter);
        escrow.topUp(cq, amount);
        f.deposited += amount;
    }

    function _close(bool byHost) internal {
        uint256 h = usd.balanceOf(host);
        uint256 fe = escrow.feesAccrued();
        uint256 r = usd.balanceOf(renter);
        vm.prank(byHost ? host : renter);
        escrow.close(cq);
        f.hostNet += usd.balanceOf(host) - h;
        f.fees += escrow.feesAccrued() - fe;
        f.refund = usd.balanceOf(renter) - r;
    }

    /// Fees are charged on cumulative earnings: over any payout schedule (withdraw, withdrawMany,
    /// close, in any order and at any gaps, small prices so that per-payout rounding would show),
    /// the lease pays exactly floor(total * feeBps / 10000) in fees, and
    /// host + fee + refund == deposit.
    function testFuzz_feeOnCumulativeEarnings(
        uint256 feeBps,
        uint256 price,
        uint256 deposit,
        uint256[12] memory gaps,
        uint256 kinds,
        bool hostCloses
    ) public {
        feeBps = bound(feeBps, 0, 1000);
        price = bound(price, 1, 1e4);
        deposit = bound(deposit, 1, price * 1 days);
        _deploy(feeBps);
        cq = _quoteP(price, 10 days);
        cid = _openAndStart(cq, deposit);
        uint256 startedAt = block.timestamp;
        uint256 renterBefore = usd.balanceOf(renter);

        for (uint256 i; i < gaps.length; ++i) {
            // Mostly short gaps (rounding bites on small payouts), sometimes long ones.
            skip(gaps[i] % 4 == 0 ? bound(gaps[i], 0, 6 hours) : bound(gaps[i], 0, 30));
            if (escrow.withdrawable(cid) == 0) continue;
            uint256 h = usd.balanceOf(host);
            uint256 fe = escrow.feesAccrued();
            vm.prank(host);
            if ((kinds >> i) & 1 == 0) escrow.withdraw(cq);
            else escrow.withdrawMany(_quotes1(cq));
            f.hostNet += usd.balanceOf(host) - h;
            f.fees += escrow.feesAccrued() - fe;
        }
        _close(hostCloses);

        uint256 total = price * (block.timestamp - startedAt);
        if (total > deposit) total = deposit;
        assertEq(f.fees, total * feeBps / 10_000, "total fee == floor(total * feeBps / 10000)");
        assertEq(f.hostNet + f.fees, total, "host + fee == earnings");
        assertEq(f.hostNet + f.fees + f.refund, deposit, "host + fee + refund == deposit");
        assertEq(usd.balanceOf(renter) - renterBefore, f.refund);
        assertEq(usd.balanceOf(address(escrow)), f.fees, "only fees stay behind");
    }

    /// `open` accepts a deposit exactly when price * minDuration <= deposit <= price * maxDuration.
    function testFuzz_open_depositBounds(uint256 price, uint256 minDuration, uint256 maxDuration, uint256 deposit)
        public
    {
        price = bound(price, 1, 1e12);
        minDuration = bound(minDuration, 0, 30 days);
        maxDuration = bound(maxDuration, 1, 30 days);
        deposit = bound(deposit, 1, price * 31 days);
        _fund(renter, deposit);
        Quote memory q = _quoteP(price, maxDuration);
        q.minDuration = minDuration;
        bytes memory sig = _sign(q);
        uint256 minimum = price * minDuration;
        uint256 cap = price * maxDuration;
        vm.prank(renter);
        if (deposit > cap) {
            vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.DepositAboveCap.selector, deposit, cap));
        } else if (deposit < minimum) {
            vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.DepositBelowMinimum.selector, deposit, minimum));
        }
        escrow.open(q, sig, deposit);
    }

    /// Accrual never decreases with time, never exceeds the deposit, and neither withdrawals
    /// nor top-ups move it backwards.
    function testFuzz_security_accrualMonotone(
        uint256 price,
        uint256 deposit,
        uint256 t1,
        uint256 t2,
        uint256 t3,
        uint256 topUp
    ) public {
        price = bound(price, 1, type(uint64).max);
        deposit = bound(deposit, 1, type(uint96).max / 2);
        _fund(renter, type(uint96).max);
        Quote memory q = _quoteP(price, type(uint96).max);
        bytes32 id = _openAndStart(q, deposit);

        uint256 last = escrow.accrued(id);
        assertEq(last, 0);
        uint256[3] memory steps = [bound(t1, 0, 30 days), bound(t2, 0, 30 days), bound(t3, 0, 365 days)];
        for (uint256 i; i < 3; ++i) {
            skip(steps[i]);
            uint256 a = escrow.accrued(id);
            assertGe(a, last, "monotone in time");
            assertLe(a, escrow.lease(id).deposit, "never above the deposit");
            if (i == 0 && a > 0 && escrow.withdrawable(id) > 0) {
                vm.prank(host);
                escrow.withdraw(q);
                assertEq(escrow.accrued(id), a, "withdrawing does not change accrual");
            }
            if (i == 1 && a < escrow.lease(id).deposit) {
                vm.prank(renter);
                escrow.topUp(q, bound(topUp, 1, type(uint96).max / 2));
                assertEq(escrow.accrued(id), a, "a top-up does not change what accrued so far");
            }
            last = a;
        }
    }

    /// The renter is charged for whole elapsed seconds at the quoted price, never a base unit
    /// more; the fee rounds down, so the host never gets less than its share either.
    function testFuzz_security_roundingFavoursRenter(uint256 feeBps, uint256 price, uint256 deposit, uint256 elapsed)
        public
    {
        feeBps = bound(feeBps, 0, 1000);
        price = bound(price, 1, type(uint64).max);
        deposit = bound(deposit, 1, type(uint96).max);
        elapsed = bound(elapsed, 0, 400 days);
        _deploy(feeBps);
        _fund(renter, deposit);
        Quote memory q = _quoteP(price, type(uint96).max);
        _openAndStart(q, deposit);
        skip(elapsed);

        uint256 r = usd.balanceOf(renter);
        vm.prank(renter);
        escrow.close(q);
        uint256 refund = usd.balanceOf(renter) - r;
        uint256 charged = deposit - refund;
        // Exact, with no rounding: price * whole seconds, capped at the deposit.
        uint256 expected = price * elapsed < deposit ? price * elapsed : deposit;
        assertEq(charged, expected);
        uint256 fee = escrow.feesAccrued();
        assertEq(fee, charged * feeBps / 10_000, "fee rounded down");
        assertGe(usd.balanceOf(host) * 10_000, charged * (10_000 - feeBps), "host gets at least its share");
    }

    /// Conservation across leases with different fee settings is covered by the invariant suite;
    /// this checks the lease id and the signed digest are pure functions of the quote (and, for
    /// the digest, of the chain id), exactly as specified.
    function testFuzz_leaseIdAndDigestMatchSpec(Quote memory q, uint64 chainId) public {
        assertEq(escrow.quoteDigest(q), _digest(escrow, q));
        assertEq(escrow.leaseIdOf(q), _leaseId(escrow, q));
        bytes32 id = escrow.leaseIdOf(q);
        vm.chainId(bound(chainId, 1, type(uint64).max));
        assertEq(escrow.leaseIdOf(q), id, "no chain id in the lease id");
        assertEq(escrow.quoteDigest(q), _digest(escrow, q));
    }
}
