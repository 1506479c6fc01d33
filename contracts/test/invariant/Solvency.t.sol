// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {StdInvariant} from "forge-std/StdInvariant.sol";
import {Test} from "forge-std/Test.sol";

import {GpuFlowEscrow} from "../../src/GpuFlowEscrow.sol";
import {Lease, LeaseStatus} from "../../src/IGpuFlowEscrow.sol";
import {BlocklistToken} from "../mocks/BlocklistToken.sol";
import {EscrowHandler} from "./EscrowHandler.sol";

/// Solvency and conservation under random sequences of opens and top-ups (plain and with
/// permits), starts, withdrawals, batch withdrawals, closes, time jumps, blocklisting (of the
/// treasury too), claims, sweeps and bonds.
contract SolvencyInvariantTest is StdInvariant, Test {
    GpuFlowEscrow internal escrow;
    BlocklistToken internal token;
    EscrowHandler internal handler;

    function setUp() public {
        vm.warp(1_750_000_000);
        token = new BlocklistToken();
        // 2.5 % so that fee rounding shows up on small amounts.
        escrow = new GpuFlowEscrow(token, makeAddr("treasury"), 250, 600, makeAddr("guardian"));
        handler = new EscrowHandler(escrow, token);
        targetContract(address(handler));
        bytes4[] memory selectors = new bytes4[](16);
        selectors[0] = handler.open.selector;
        selectors[1] = handler.open.selector; // opening twice as often keeps enough leases around
        selectors[2] = handler.start.selector;
        selectors[3] = handler.topUp.selector;
        selectors[4] = handler.withdraw.selector;
        selectors[5] = handler.withdrawMany.selector;
        selectors[6] = handler.close.selector;
        selectors[7] = handler.warp.selector;
        selectors[8] = handler.setBlocked.selector;
        selectors[9] = handler.claim.selector;
        selectors[10] = handler.sweepFees.selector;
        selectors[11] = handler.registerHost.selector;
        selectors[12] = handler.unregisterHost.selector;
        selectors[13] = handler.withdrawBond.selector;
        selectors[14] = handler.openWithPermit.selector;
        selectors[15] = handler.topUpWithPermit.selector;
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
    }

    /// The token balance covers everything the contract owes, computed from its own state:
    /// live leases' unpaid deposits + claimable balances + fees + bonds. Nobody donates in this
    /// suite, so it is an equality; `>=` is what solvency needs.
    function invariant_solvency() public view {
        uint256 owed = escrow.feesAccrued() + handler.totalBonds();
        address[7] memory actors = handler.actors();
        for (uint256 i; i < actors.length; ++i) {
            owed += escrow.claimable(actors[i]);
        }
        uint256 n = handler.leaseCount();
        for (uint256 i; i < n; ++i) {
            Lease memory l = escrow.lease(handler.ids(i));
            if (l.status == LeaseStatus.Pending) owed += l.deposit;
            if (l.status == LeaseStatus.Running) owed += l.deposit - _paid(l);
        }
        uint256 balance = token.balanceOf(address(escrow));
        assertGe(balance, owed, "insolvent");
        assertEq(balance, owed, "unaccounted tokens");
    }

    /// The balance also matches the handler's independent bookkeeping: what it paid in minus
    /// what it saw arrive at recipients.
    function invariant_balanceMatchesObservedFlows() public view {
        assertEq(token.balanceOf(address(escrow)), handler.ghostIn() - handler.ghostOut());
    }

    /// No lease ever pays out more than its deposit; every payout matched the model.
    function invariant_leasesPayAtMostTheirDeposit() public view {
        uint256 n = handler.leaseCount();
        for (uint256 i; i < n; ++i) {
            EscrowHandler.Model memory m = handler.model(i);
            uint256 out = m.hostNet + m.fees + m.refund;
            assertLe(out, m.deposited, "paid out more than the deposit");
            if (m.closed) assertEq(out, m.deposited, "closed lease not fully settled");
            assertEq(m.fees, m.paidGross * 250 / 10_000, "fees = feeBps of cumulative earnings, rounded once");
            assertEq(escrow.lease(handler.ids(i)).deposit, m.deposited);
        }
        assertEq(handler.modelErrors(), 0, "a payout differed from the model");
    }

    /// After every run: once all leases are closed, blocks lifted, claims made, fees swept and
    /// bonds returned, the escrow holds exactly nothing.
    function afterInvariant() public {
        handler.settleEverything();
        assertEq(token.balanceOf(address(escrow)), 0, "dust left behind");
        assertEq(escrow.feesAccrued(), 0);
        uint256 n = handler.leaseCount();
        for (uint256 i; i < n; ++i) {
            EscrowHandler.Model memory m = handler.model(i);
            assertTrue(m.closed);
            assertEq(m.hostNet + m.fees + m.refund, m.deposited, "host + fee + refund == deposit");
            assertEq(uint8(escrow.lease(handler.ids(i)).status), uint8(LeaseStatus.Closed));
        }
        assertEq(handler.modelErrors(), 0);
    }

    function _paid(Lease memory l) internal pure returns (uint256) {
        uint256 earned = uint256(l.pricePerSecond) * (l.paidUntil - l.since);
        return earned < l.deposit ? earned : l.deposit;
    }
}
