// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {EscrowTestBase, IGpuFlowEscrow, Quote, Lease, LeaseStatus, CloseReason} from "./utils/EscrowTestBase.sol";

contract CloseTest is EscrowTestBase {
    function _expectClosed(
        bytes32 id,
        address by,
        CloseReason reason,
        uint256 hostAmount,
        uint256 fee,
        uint256 refund,
        uint256 startedAt
    ) internal {
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.LeaseClosed(
            id, host, renter, by, reason, hostAmount, fee, refund, startedAt, block.timestamp
        );
    }

    function test_close_pendingByRenterBeforeTimeout() public {
        Quote memory q = _quote();
        bytes32 id = _open(q, DEPOSIT);
        uint256 openedAt = block.timestamp;
        uint256 renterBefore = usd.balanceOf(renter);
        skip(TIMEOUT);
        _expectClosed(id, renter, CloseReason.CancelledBeforeStart, 0, 0, DEPOSIT, 0);
        vm.prank(renter);
        escrow.close(q);

        assertEq(usd.balanceOf(renter), renterBefore + DEPOSIT);
        assertEq(usd.balanceOf(address(escrow)), 0);
        Lease memory l = escrow.lease(id);
        assertEq(uint8(l.status), uint8(LeaseStatus.Closed));
        assertEq(l.since, openedAt);
        assertEq(l.paidUntil, openedAt, "paid nothing");
        assertEq(escrow.accrued(id), 0);
    }

    /// The host turning a pending lease down is its own reason, so scores can tell it apart from a
    /// renter cancelling.
    function test_close_pendingByHostBeforeTimeoutIsHostDeclined() public {
        Quote memory q = _quote();
        bytes32 id = _open(q, DEPOSIT);
        uint256 renterBefore = usd.balanceOf(renter);
        _expectClosed(id, host, CloseReason.HostDeclined, 0, 0, DEPOSIT, 0);
        vm.prank(host);
        escrow.close(q);
        assertEq(usd.balanceOf(renter), renterBefore + DEPOSIT, "the renter gets everything back");
        assertEq(usd.balanceOf(host), 0);
        assertEq(uint8(CloseReason.HostDeclined), 5, "appended: earlier values keep their numbers");
    }

    function test_close_pendingByHostAtExactDeadlineIsHostDeclined() public {
        Quote memory q = _quote();
        bytes32 id = _open(q, DEPOSIT);
        skip(TIMEOUT);
        _expectClosed(id, host, CloseReason.HostDeclined, 0, 0, DEPOSIT, 0);
        vm.prank(host);
        escrow.close(q);
    }

    function test_close_pendingByHostAfterTimeoutIsNeverStarted() public {
        Quote memory q = _quote();
        bytes32 id = _open(q, DEPOSIT);
        skip(TIMEOUT + 1);
        _expectClosed(id, host, CloseReason.NeverStarted, 0, 0, DEPOSIT, 0);
        vm.prank(host);
        escrow.close(q);
    }

    function test_close_pendingSelfRentalIsCancelledBeforeStart() public {
        // host == renter: the caller is the renter too, so it is a renter's cancellation.
        Quote memory q = _quoteFor(host, host, 1);
        _fund(host, DEPOSIT);
        bytes memory sig = _sign(q);
        vm.prank(host);
        bytes32 id = escrow.open(q, sig, DEPOSIT);
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.LeaseClosed(
            id, host, host, host, CloseReason.CancelledBeforeStart, 0, 0, DEPOSIT, 0, block.timestamp
        );
        vm.prank(host);
        escrow.close(q);
    }

    function test_close_pendingAfterTimeoutIsNeverStarted() public {
        Quote memory q = _quote();
        bytes32 id = _open(q, DEPOSIT);
        skip(TIMEOUT + 1);
        _expectClosed(id, renter, CloseReason.NeverStarted, 0, 0, DEPOSIT, 0);
        vm.prank(renter);
        escrow.close(q);
    }

    function test_close_runningByRenter() public {
        Quote memory q = _quote();
        bytes32 id = _openAndStart(q, DEPOSIT);
        uint256 startedAt = block.timestamp;
        skip(1000);
        uint256 gross = 1000 * PRICE;
        uint256 fee = _fee(gross);
        uint256 renterBefore = usd.balanceOf(renter);

        _expectClosed(id, renter, CloseReason.RenterClosed, gross - fee, fee, DEPOSIT - gross, startedAt);
        vm.prank(renter);
        escrow.close(q);

        assertEq(usd.balanceOf(host), gross - fee);
        assertEq(usd.balanceOf(renter), renterBefore + DEPOSIT - gross);
        assertEq(escrow.feesAccrued(), fee);
        assertEq(usd.balanceOf(address(escrow)), fee);
        Lease memory l = escrow.lease(id);
        assertEq(uint8(l.status), uint8(LeaseStatus.Closed));
        assertEq(l.since, startedAt);
        assertEq(l.paidUntil, block.timestamp);
        assertEq(escrow.accrued(id), gross, "final accrual stays readable");
        assertEq(escrow.withdrawable(id), 0);
        skip(1000);
        assertEq(escrow.accrued(id), gross, "and does not grow after close");
    }

    function test_close_runningByHost() public {
        Quote memory q = _quote();
        bytes32 id = _openAndStart(q, DEPOSIT);
        skip(1000);
        uint256 gross = 1000 * PRICE;
        _expectClosed(id, host, CloseReason.HostClosed, gross - _fee(gross), _fee(gross), DEPOSIT - gross, T0);
        vm.prank(host);
        escrow.close(q);
    }

    function test_close_afterPartialWithdrawPaysOnlyTheRest() public {
        Quote memory q = _quote();
        bytes32 id = _openAndStart(q, DEPOSIT);
        skip(1000);
        vm.prank(host);
        escrow.withdraw(q);
        skip(500);
        uint256 rest = 500 * PRICE;
        uint256 restFee = _fee(1500 * PRICE) - _fee(1000 * PRICE); // fee on cumulative earnings
        _expectClosed(id, renter, CloseReason.RenterClosed, rest - restFee, restFee, DEPOSIT - 1500 * PRICE, T0);
        vm.prank(renter);
        escrow.close(q);
        assertEq(usd.balanceOf(host) + escrow.feesAccrued(), 1500 * PRICE);
    }

    function test_close_depletedByEitherParty() public {
        Quote memory a = _quoteFor(host, renter, 1);
        Quote memory b = _quoteFor(host, renter, 2);
        bytes32 ida = _openAndStart(a, DEPOSIT);
        bytes32 idb = _openAndStart(b, DEPOSIT);
        skip(DEPOSIT / PRICE);
        _expectClosed(ida, renter, CloseReason.Depleted, DEPOSIT - _fee(DEPOSIT), _fee(DEPOSIT), 0, T0);
        vm.prank(renter);
        escrow.close(a);
        skip(5 days);
        _expectClosed(idb, host, CloseReason.Depleted, DEPOSIT - _fee(DEPOSIT), _fee(DEPOSIT), 0, T0);
        vm.prank(host);
        escrow.close(b);
    }

    function test_close_depletedAfterFullWithdrawPaysNothingMore() public {
        Quote memory q = _quote();
        bytes32 id = _openAndStart(q, DEPOSIT);
        skip(2 hours);
        vm.prank(host);
        escrow.withdraw(q);
        uint256 hostBefore = usd.balanceOf(host);
        _expectClosed(id, host, CloseReason.Depleted, 0, 0, 0, T0);
        vm.recordLogs();
        vm.prank(host);
        escrow.close(q);
        assertEq(vm.getRecordedLogs().length, 1, "no transfers, only LeaseClosed");
        assertEq(usd.balanceOf(host), hostBefore);
    }

    function test_close_selfRentalCountsAsRenterClose() public {
        // A host renting from itself (wash trading) is recorded as the renter closing.
        Quote memory q = _quoteFor(host, host, 1);
        _fund(host, DEPOSIT);
        bytes memory sig = _sign(q);
        vm.prank(host);
        bytes32 id = escrow.open(q, sig, DEPOSIT);
        vm.prank(host);
        escrow.start(q);
        skip(10);
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.LeaseClosed(
            id,
            host,
            host,
            host,
            CloseReason.RenterClosed,
            10 * PRICE - _fee(10 * PRICE),
            _fee(10 * PRICE),
            DEPOSIT - 10 * PRICE,
            T0,
            block.timestamp
        );
        vm.prank(host);
        escrow.close(q);
    }

    function test_close_revertsForStranger() public {
        Quote memory q = _quote();
        _openAndStart(q, DEPOSIT);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NotParty.selector, stranger));
        escrow.close(q);
    }

    function test_close_revertsTwice() public {
        Quote memory q = _quote();
        bytes32 id = _openAndStart(q, DEPOSIT);
        vm.prank(renter);
        escrow.close(q);
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.LeaseAlreadyClosed.selector, id));
        escrow.close(q);
    }

    function test_close_revertsForUnknownLease() public {
        Quote memory q = _quote();
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.LeaseNotFound.selector, _leaseId(escrow, q)));
        escrow.close(q);
    }

    function test_close_closedQuoteCannotBeReopened() public {
        Quote memory q = _quote();
        bytes32 id = _open(q, DEPOSIT);
        vm.prank(renter);
        escrow.close(q);
        bytes memory sig = _sign(q);
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.LeaseExists.selector, id));
        escrow.open(q, sig, DEPOSIT);
    }
}
