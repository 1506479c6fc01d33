// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {EscrowTestBase, IGpuFlowEscrow, Quote, Lease, LeaseStatus} from "./utils/EscrowTestBase.sol";

contract StartTest is EscrowTestBase {
    function test_start_runsLeaseAndStartsBilling() public {
        Quote memory q = _quote();
        bytes32 id = _open(q, DEPOSIT);
        skip(30);

        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.LeaseStarted(id, host, renter, block.timestamp);
        vm.prank(host);
        escrow.start(q);

        Lease memory l = escrow.lease(id);
        assertEq(uint8(l.status), uint8(LeaseStatus.Running));
        assertEq(l.since, block.timestamp, "since = startedAt once running");
        assertEq(l.paidUntil, block.timestamp, "nothing paid yet");
        assertEq(l.deposit, DEPOSIT);
        assertEq(escrow.accrued(id), 0);
        skip(10);
        assertEq(escrow.accrued(id), 10 * PRICE, "billing counts from start, not from open");
        assertEq(escrow.withdrawable(id), 10 * PRICE);
    }

    function test_start_atExactDeadline() public {
        Quote memory q = _quote();
        _open(q, DEPOSIT);
        skip(TIMEOUT);
        vm.prank(host);
        escrow.start(q);
    }

    function test_start_revertsAfterTimeout() public {
        Quote memory q = _quote();
        _open(q, DEPOSIT);
        uint256 deadline = block.timestamp + TIMEOUT;
        skip(TIMEOUT + 1);
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.AcceptTimeoutPassed.selector, deadline, deadline + 1));
        escrow.start(q);
    }

    function test_start_revertsForNonHost() public {
        Quote memory q = _quote();
        _open(q, DEPOSIT);
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NotHost.selector, renter, host));
        escrow.start(q);
    }

    function test_start_revertsForUnknownLease() public {
        Quote memory q = _quote();
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.LeaseNotFound.selector, _leaseId(escrow, q)));
        escrow.start(q);
    }

    function test_start_revertsWhenAlreadyRunning() public {
        Quote memory q = _quote();
        bytes32 id = _openAndStart(q, DEPOSIT);
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.LeaseAlreadyStarted.selector, id));
        escrow.start(q);
    }

    function test_start_revertsWhenClosed() public {
        Quote memory q = _quote();
        bytes32 id = _open(q, DEPOSIT);
        vm.prank(renter);
        escrow.close(q);
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.LeaseAlreadyClosed.selector, id));
        escrow.start(q);
    }
}
