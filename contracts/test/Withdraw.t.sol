// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {GpuFlowEscrow} from "../src/GpuFlowEscrow.sol";
import {EscrowTestBase, IGpuFlowEscrow, Quote, CloseReason} from "./utils/EscrowTestBase.sol";

contract WithdrawTest is EscrowTestBase {
    function test_withdraw_paysAccruedMinusFee() public {
        Quote memory q = _quote();
        bytes32 id = _openAndStart(q, DEPOSIT);
        skip(1000);
        uint256 gross = 1000 * PRICE;
        uint256 fee = _fee(gross);

        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.Withdrawn(id, host, gross - fee, fee);
        vm.prank(host);
        escrow.withdraw(q);

        assertEq(usd.balanceOf(host), gross - fee);
        assertEq(escrow.feesAccrued(), fee);
        assertEq(escrow.lease(id).paidUntil, block.timestamp);
        assertEq(escrow.withdrawable(id), 0);
        assertEq(escrow.accrued(id), gross, "accrued counts withdrawn earnings too");
        assertEq(usd.balanceOf(address(escrow)), DEPOSIT - gross + fee);
    }

    function test_withdraw_secondWithdrawalPaysOnlyNewEarnings() public {
        Quote memory q = _quote();
        _openAndStart(q, DEPOSIT);
        skip(1000);
        vm.prank(host);
        escrow.withdraw(q);
        skip(234);
        vm.prank(host);
        escrow.withdraw(q);
        uint256 total = 1234 * PRICE;
        assertEq(usd.balanceOf(host), total - _fee(total));
        assertEq(escrow.feesAccrued(), _fee(total));
    }

    // ------------------------------------------------------------ fees on cumulative earnings

    /// 100 withdrawals of 99 units at 1 %: each payout alone would round its fee (0.99) down to 0;
    /// charged on cumulative earnings the lease pays floor(9900 * 1 %) = 99, as with one payout.
    function test_withdraw_feeOnCumulativeEarningsCannotBeRoundedAway() public {
        Quote memory q = _quote();
        q.pricePerSecond = 99;
        bytes32 id = _openAndStart(q, 99 * 200);
        uint256 feesSeen;
        for (uint256 i; i < 100; ++i) {
            skip(1);
            uint256 before = escrow.feesAccrued();
            vm.prank(host);
            escrow.withdraw(q);
            feesSeen += escrow.feesAccrued() - before;
            assertEq(escrow.feesAccrued(), _fee(99 * (i + 1)), "fees so far = fee of earnings so far");
        }
        assertEq(feesSeen, 99, "fee 99 over the lease (per-payout rounding would give 0)");
        assertEq(usd.balanceOf(host), 9900 - 99);
        assertEq(escrow.accrued(id), 9900);
    }

    function test_withdrawMany_feeOnCumulativeEarnings() public {
        Quote memory a = _quoteFor(host, renter, 1);
        Quote memory b = _quoteFor(host, renter, 2);
        a.pricePerSecond = 99;
        b.pricePerSecond = 99;
        _openAndStart(a, 99 * 200);
        _openAndStart(b, 99 * 200);
        Quote[] memory qs = new Quote[](2);
        (qs[0], qs[1]) = (a, b);
        for (uint256 i; i < 50; ++i) {
            skip(1);
            vm.prank(host);
            escrow.withdrawMany(qs);
        }
        // Then the renter closes one after 50 more seconds: its close pays the rest of its fee.
        skip(50);
        vm.prank(renter);
        escrow.close(a);
        // a earned 100 s * 99 = 9900 (fee 99), b 50 s * 99 = 4950 (fee 49).
        assertEq(escrow.feesAccrued(), 99 + 49);
        assertEq(usd.balanceOf(host), 9900 - 99 + 4950 - 49);
    }

    function test_close_feeOnCumulativeEarnings() public {
        Quote memory q = _quote();
        q.pricePerSecond = 99;
        _openAndStart(q, 99 * 200);
        for (uint256 i; i < 3; ++i) {
            skip(1);
            vm.prank(host);
            escrow.withdraw(q);
        }
        assertEq(escrow.feesAccrued(), 2, "floor(297 * 1 %)");
        skip(97);
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.LeaseClosed(
            _leaseId(escrow, q),
            host,
            renter,
            renter,
            CloseReason.RenterClosed,
            97 * 99 - (99 - 2),
            99 - 2,
            99 * 100,
            T0,
            block.timestamp
        );
        vm.prank(renter);
        escrow.close(q);
        assertEq(escrow.feesAccrued(), 99, "the close charges fee(9900) - fee(297)");
    }

    function test_withdraw_stopsAtDeposit() public {
        Quote memory q = _quote();
        bytes32 id = _openAndStart(q, DEPOSIT);
        skip(10 days);
        vm.prank(host);
        escrow.withdraw(q);
        assertEq(usd.balanceOf(host) + escrow.feesAccrued(), DEPOSIT);
        assertEq(escrow.accrued(id), DEPOSIT);
        skip(1 days);
        vm.prank(host);
        vm.expectRevert(IGpuFlowEscrow.NothingToWithdraw.selector);
        escrow.withdraw(q);
    }

    function test_withdraw_revertsWithNothingNew() public {
        Quote memory q = _quote();
        _openAndStart(q, DEPOSIT);
        vm.prank(host);
        vm.expectRevert(IGpuFlowEscrow.NothingToWithdraw.selector);
        escrow.withdraw(q);
    }

    function test_withdraw_revertsForNonHost() public {
        Quote memory q = _quote();
        _openAndStart(q, DEPOSIT);
        skip(10);
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NotHost.selector, renter, host));
        escrow.withdraw(q);
    }

    function test_withdraw_revertsWhilePending() public {
        Quote memory q = _quote();
        bytes32 id = _open(q, DEPOSIT);
        skip(10);
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.LeaseNotStarted.selector, id));
        escrow.withdraw(q);
    }

    function test_withdraw_revertsWhenClosed() public {
        Quote memory q = _quote();
        bytes32 id = _openAndStart(q, DEPOSIT);
        skip(10);
        vm.prank(renter);
        escrow.close(q);
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.LeaseAlreadyClosed.selector, id));
        escrow.withdraw(q);
    }

    function test_withdraw_revertsForUnknownLease() public {
        Quote memory q = _quote();
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.LeaseNotFound.selector, _leaseId(escrow, q)));
        escrow.withdraw(q);
    }

    function test_withdraw_worksWhilePaused() public {
        Quote memory q = _quote();
        _openAndStart(q, DEPOSIT);
        vm.prank(guardian);
        escrow.pause();
        skip(10);
        vm.prank(host);
        escrow.withdraw(q);
        assertGt(usd.balanceOf(host), 0);
    }

    function test_withdraw_zeroFeeDeploymentPaysEverything() public {
        escrow = new GpuFlowEscrow(usd, treasury, 0, TIMEOUT, guardian);
        vm.prank(renter);
        usd.approve(address(escrow), type(uint256).max);
        Quote memory q = _quote();
        _openAndStart(q, DEPOSIT);
        skip(100);
        vm.prank(host);
        escrow.withdraw(q);
        assertEq(usd.balanceOf(host), 100 * PRICE);
        assertEq(escrow.feesAccrued(), 0);
    }

    // ------------------------------------------------------------ withdrawMany

    function test_withdrawMany_paysAllInOneTransfer() public {
        Quote[] memory qs = new Quote[](3);
        bytes32[] memory ids = new bytes32[](3);
        for (uint256 i; i < 3; ++i) {
            qs[i] = _quoteFor(host, renter, i + 1);
            ids[i] = _openAndStart(qs[i], DEPOSIT);
            skip(100);
        }
        // Earned: 300 s, 200 s, 100 s.
        uint256 expectedNet;
        uint256 expectedFee;
        for (uint256 i; i < 3; ++i) {
            uint256 gross = (300 - 100 * i) * PRICE;
            expectedFee += _fee(gross);
            expectedNet += gross - _fee(gross);
            vm.expectEmit(address(escrow));
            emit IGpuFlowEscrow.Withdrawn(ids[i], host, gross - _fee(gross), _fee(gross));
        }
        vm.prank(host);
        escrow.withdrawMany(qs);
        assertEq(usd.balanceOf(host), expectedNet);
        assertEq(escrow.feesAccrued(), expectedFee);
        for (uint256 i; i < 3; ++i) {
            assertEq(escrow.withdrawable(ids[i]), 0);
        }
    }

    function test_withdrawMany_skipsPendingClosedAndEmptyLeases() public {
        Quote memory running = _quoteFor(host, renter, 1);
        Quote memory pending = _quoteFor(host, renter, 2);
        Quote memory closed = _quoteFor(host, renter, 3);
        Quote memory fresh = _quoteFor(host, renter, 4);
        _openAndStart(running, DEPOSIT);
        _openAndStart(closed, DEPOSIT);
        skip(100);
        vm.prank(renter);
        escrow.close(closed);
        uint256 hostAfterClose = usd.balanceOf(host);
        _open(pending, DEPOSIT);
        _openAndStart(fresh, DEPOSIT); // started this second: nothing accrued

        Quote[] memory qs = new Quote[](4);
        qs[0] = pending;
        qs[1] = closed;
        qs[2] = fresh;
        qs[3] = running;
        vm.recordLogs();
        vm.prank(host);
        escrow.withdrawMany(qs);
        assertEq(vm.getRecordedLogs().length, 2, "one Transfer + one Withdrawn (for `running` only)");
        uint256 gross = 100 * PRICE;
        assertEq(usd.balanceOf(host) - hostAfterClose, gross - _fee(gross));
    }

    function test_withdrawMany_duplicateEntriesPayOnce() public {
        Quote memory q = _quote();
        _openAndStart(q, DEPOSIT);
        skip(100);
        Quote[] memory qs = new Quote[](3);
        (qs[0], qs[1], qs[2]) = (q, q, q);
        vm.prank(host);
        escrow.withdrawMany(qs);
        uint256 gross = 100 * PRICE;
        assertEq(usd.balanceOf(host), gross - _fee(gross));
        assertEq(usd.balanceOf(host) + escrow.feesAccrued(), gross);
    }

    function test_withdrawMany_revertsWhenNothingAtAll() public {
        Quote memory q = _quote();
        _open(q, DEPOSIT);
        vm.prank(host);
        vm.expectRevert(IGpuFlowEscrow.NothingToWithdraw.selector);
        escrow.withdrawMany(_quotes1(q));
    }

    function test_withdrawMany_revertsOnEmptyBatch() public {
        vm.prank(host);
        vm.expectRevert(IGpuFlowEscrow.NothingToWithdraw.selector);
        escrow.withdrawMany(new Quote[](0));
    }

    function test_withdrawMany_revertsOnUnknownLease() public {
        Quote memory q = _quote();
        _openAndStart(q, DEPOSIT);
        skip(10);
        Quote[] memory qs = new Quote[](2);
        qs[0] = q;
        qs[1] = _quoteFor(host, renter, 99);
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.LeaseNotFound.selector, _leaseId(escrow, qs[1])));
        escrow.withdrawMany(qs);
    }

    function test_withdrawMany_revertsWhenAnyEntryIsAnotherHosts() public {
        (address host2,) = makeAddrAndKey("host2");
        Quote memory q = _quote();
        _openAndStart(q, DEPOSIT);
        skip(10);
        Quote[] memory qs = new Quote[](2);
        qs[0] = q;
        qs[1] = _quoteFor(host2, renter, 1);
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NotHost.selector, host, host2));
        escrow.withdrawMany(qs);
    }
}
