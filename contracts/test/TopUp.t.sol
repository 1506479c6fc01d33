// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {stdError} from "forge-std/StdError.sol";

import {EscrowTestBase, IGpuFlowEscrow, Quote} from "./utils/EscrowTestBase.sol";

contract TopUpTest is EscrowTestBase {
    function test_topUp_pendingLease() public {
        Quote memory q = _quote();
        bytes32 id = _open(q, DEPOSIT);
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.LeaseToppedUp(id, renter, 500, DEPOSIT + 500);
        vm.prank(renter);
        escrow.topUp(q, 500);
        assertEq(escrow.lease(id).deposit, DEPOSIT + 500);
        assertEq(usd.balanceOf(address(escrow)), DEPOSIT + 500);
    }

    function test_topUp_runningLeaseExtendsItWithoutTouchingOtherFields() public {
        Quote memory q = _quote();
        bytes32 id = _openAndStart(q, DEPOSIT);
        skip(100);
        vm.prank(host);
        escrow.withdraw(q);
        uint256 since = escrow.lease(id).since;
        skip(3000);
        vm.prank(renter);
        escrow.topUp(q, DEPOSIT);

        assertEq(escrow.lease(id).deposit, 2 * DEPOSIT);
        assertEq(escrow.lease(id).since, since);
        assertEq(escrow.lease(id).paidUntil, since + 100);
        assertEq(escrow.lease(id).pricePerSecond, PRICE);
        // Without the top-up the lease would have been used up at 3600 s.
        skip(1000);
        assertEq(escrow.accrued(id), 4100 * PRICE);
    }

    function test_topUp_anyoneMayPay() public {
        Quote memory q = _quote();
        bytes32 id = _openAndStart(q, DEPOSIT);
        _fund(stranger, 1000);
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.LeaseToppedUp(id, stranger, 1000, DEPOSIT + 1000);
        vm.prank(stranger);
        escrow.topUp(q, 1000);
        assertEq(usd.balanceOf(stranger), 0);
    }

    function test_topUp_oneSecondBeforeDepletion() public {
        Quote memory q = _quote();
        bytes32 id = _openAndStart(q, DEPOSIT);
        skip(DEPOSIT / PRICE - 1);
        vm.prank(renter);
        escrow.topUp(q, PRICE);
        skip(1);
        assertEq(escrow.accrued(id), DEPOSIT, "continuous billing, no gap");
    }

    /// At startedAt + deposit/price accrual has just reached the deposit: the host was paid for every
    /// second so far and no gap has opened, so the top-up is accepted and billing continues.
    function test_topUp_atExactDepletionSecond() public {
        Quote memory q = _quote();
        bytes32 id = _openAndStart(q, DEPOSIT);
        skip(DEPOSIT / PRICE);
        assertEq(escrow.accrued(id), DEPOSIT, "accrual equals the deposit");
        vm.prank(renter);
        escrow.topUp(q, PRICE);
        assertEq(escrow.lease(id).deposit, DEPOSIT + PRICE);
        skip(1);
        assertEq(escrow.accrued(id), DEPOSIT + PRICE, "continuous billing, no gap");
    }

    /// Same with a deposit that is not a whole number of seconds: the last partial second is the
    /// one where uncapped accrual passes the deposit, and that is refused.
    function test_topUp_partialLastSecond() public {
        Quote memory q = _quote();
        bytes32 id = _openAndStart(q, DEPOSIT + PRICE / 2);
        skip(DEPOSIT / PRICE);
        vm.prank(renter);
        escrow.topUp(q, 1);
        skip(1);
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.DepositExhausted.selector, id));
        escrow.topUp(q, 1);
    }

    function test_topUp_worksWhilePaused() public {
        Quote memory q = _quote();
        _openAndStart(q, DEPOSIT);
        vm.prank(guardian);
        escrow.pause();
        vm.prank(renter);
        escrow.topUp(q, 1);
    }

    function test_topUp_revertsOnZero() public {
        Quote memory q = _quote();
        _open(q, DEPOSIT);
        vm.prank(renter);
        vm.expectRevert(IGpuFlowEscrow.ZeroAmount.selector);
        escrow.topUp(q, 0);
    }

    function test_topUp_revertsAboveCap() public {
        Quote memory q = _quote();
        _open(q, DEPOSIT);
        uint256 cap = PRICE * MAX_DURATION;
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.DepositAboveCap.selector, cap + 1, cap));
        escrow.topUp(q, cap + 1 - DEPOSIT);
        vm.prank(renter);
        escrow.topUp(q, cap - DEPOSIT);
    }

    function test_topUp_revertsOnOverflowingAmount() public {
        Quote memory q = _quote();
        _open(q, DEPOSIT);
        vm.prank(renter);
        vm.expectRevert(stdError.arithmeticError);
        escrow.topUp(q, type(uint256).max);
    }

    function test_topUp_revertsWhenDepleted() public {
        Quote memory q = _quote();
        bytes32 id = _openAndStart(q, DEPOSIT);
        skip(DEPOSIT / PRICE + 1); // one second past the depletion second
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.DepositExhausted.selector, id));
        escrow.topUp(q, DEPOSIT);
    }

    function test_topUp_revertsWhenClosed() public {
        Quote memory q = _quote();
        bytes32 id = _open(q, DEPOSIT);
        vm.prank(renter);
        escrow.close(q);
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.LeaseAlreadyClosed.selector, id));
        escrow.topUp(q, 1);
    }

    function test_topUp_revertsForUnknownLease() public {
        Quote memory q = _quote();
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.LeaseNotFound.selector, _leaseId(escrow, q)));
        escrow.topUp(q, 1);
    }

    function test_topUp_revertsWhenAboveUint96EvenIfCapAllows() public {
        Quote memory q = _quote();
        q.pricePerSecond = type(uint64).max;
        q.minDuration = 0;
        q.maxDuration = type(uint64).max;
        bytes32 id = _open(q, DEPOSIT);
        uint256 amount = uint256(type(uint96).max) - DEPOSIT + 1;
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.AmountTooLarge.selector, uint256(type(uint96).max) + 1));
        escrow.topUp(q, amount);
        assertEq(escrow.lease(id).deposit, DEPOSIT);
    }
}
