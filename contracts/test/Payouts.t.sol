// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

import {GpuFlowEscrow} from "../src/GpuFlowEscrow.sol";
import {EscrowTestBase, IGpuFlowEscrow, Quote} from "./utils/EscrowTestBase.sol";
import {BlocklistToken} from "./mocks/BlocklistToken.sol";
import {NoReturnToken} from "./mocks/NoReturnToken.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// Fee sweeping, deferred payouts and claims.
contract PayoutsTest is EscrowTestBase {
    BlocklistToken internal bl;

    function setUp() public override {
        super.setUp();
        bl = new BlocklistToken();
        escrow = new GpuFlowEscrow(bl, treasury, FEE_BPS, TIMEOUT, guardian);
        bl.mint(renter, 1e12);
        vm.prank(renter);
        bl.approve(address(escrow), type(uint256).max);
    }

    function _runFor(uint256 secs) internal returns (Quote memory q, bytes32 id) {
        q = _quote();
        id = _openAndStart(q, DEPOSIT);
        skip(secs);
    }

    // ------------------------------------------------------------ fees

    function test_sweepFees_sendsCounterToTreasury() public {
        (Quote memory q,) = _runFor(1000);
        vm.prank(host);
        escrow.withdraw(q);
        uint256 fee = _fee(1000 * PRICE);
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.FeesSwept(treasury, fee);
        vm.prank(stranger);
        escrow.sweepFees();
        assertEq(bl.balanceOf(treasury), fee);
        assertEq(escrow.feesAccrued(), 0);
        // The counter slot stays non-zero (fees + 1), so the next fee is a cheap update.
        assertEq(
            uint256(vm.load(address(escrow), bytes32(uint256(7)))),
            1,
            "slot 7 = _feesPlusOne (forge inspect GpuFlowEscrow storageLayout)"
        );

        vm.expectRevert(IGpuFlowEscrow.NoFeesToSweep.selector);
        escrow.sweepFees();

        skip(10);
        vm.prank(host);
        escrow.withdraw(q);
        assertEq(escrow.feesAccrued(), _fee(10 * PRICE));
    }

    /// A treasury the token refuses is treated like any other payee: the sweep succeeds and the
    /// fees wait in `claimable[treasury]` (they used to stay in the fee counter, the sweep
    /// reverting, until the treasury was unblocked).
    function test_sweepFees_toBlockedTreasuryIsDeferred() public {
        (Quote memory q,) = _runFor(1000);
        vm.prank(host);
        escrow.withdraw(q);
        uint256 fee = _fee(1000 * PRICE);
        bl.setBlocked(treasury, true);
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.PayoutDeferred(bytes32(0), treasury, fee);
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.FeesSwept(treasury, fee);
        vm.prank(stranger);
        escrow.sweepFees();
        assertEq(escrow.feesAccrued(), 0);
        assertEq(escrow.claimable(treasury), fee, "fees wait for the treasury in claimable");
        assertEq(bl.balanceOf(address(escrow)), DEPOSIT - 1000 * PRICE + fee, "still held by the escrow");

        // A second sweep adds to it; the treasury can take it elsewhere right away...
        skip(10);
        vm.prank(host);
        escrow.withdraw(q);
        escrow.sweepFees();
        uint256 fees = fee + _fee(1010 * PRICE) - _fee(1000 * PRICE);
        assertEq(escrow.claimable(treasury), fees);
        address vault = makeAddr("treasury vault");
        vm.prank(treasury);
        escrow.claimTo(vault);
        assertEq(bl.balanceOf(vault), fees);
        assertEq(escrow.claimable(treasury), 0);
    }

    function test_sweepFees_returningFalseIsDeferredToo() public {
        (Quote memory q,) = _runFor(1000);
        vm.prank(host);
        escrow.withdraw(q);
        bl.setReturnFalse(true);
        bl.setBlocked(treasury, true);
        escrow.sweepFees();
        assertEq(escrow.claimable(treasury), _fee(1000 * PRICE));
        bl.setBlocked(treasury, false);
        vm.prank(treasury);
        escrow.claim();
        assertEq(bl.balanceOf(treasury), _fee(1000 * PRICE));
    }

    // ------------------------------------------------------------ deferred payouts

    function test_withdraw_toBlockedHostIsDeferred() public {
        (Quote memory q, bytes32 id) = _runFor(1000);
        bl.setBlocked(host, true);
        uint256 net = 1000 * PRICE - _fee(1000 * PRICE);
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.PayoutDeferred(id, host, net);
        vm.prank(host);
        escrow.withdraw(q);
        assertEq(escrow.claimable(host), net);
        assertEq(bl.balanceOf(host), 0);
    }

    function test_withdrawMany_toBlockedHostIsDeferred() public {
        (Quote memory q, bytes32 id) = _runFor(1000);
        bl.setBlocked(host, true);
        // One lease paid: the deferred payout names it.
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.PayoutDeferred(id, host, 1000 * PRICE - _fee(1000 * PRICE));
        vm.prank(host);
        escrow.withdrawMany(_quotes1(q));
        assertEq(escrow.claimable(host), 1000 * PRICE - _fee(1000 * PRICE));
    }

    function test_withdrawMany_deferredBatchOfSeveralLeasesNamesNone() public {
        (Quote memory a, bytes32 ida) = _runFor(1000);
        Quote memory b = _quoteFor(host, renter, 2);
        _openAndStart(b, DEPOSIT);
        skip(10);
        bl.setBlocked(host, true);
        uint256 ga = 1010 * PRICE;
        uint256 gb = 10 * PRICE;
        Quote[] memory qs = new Quote[](2);
        (qs[0], qs[1]) = (a, b);
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.PayoutDeferred(bytes32(0), host, ga - _fee(ga) + gb - _fee(gb));
        vm.prank(host);
        escrow.withdrawMany(qs);

        // A batch in which only one lease pays names that lease; skipped entries do not count.
        skip(5);
        vm.prank(renter);
        escrow.close(b);
        Quote[] memory qs2 = new Quote[](3);
        (qs2[0], qs2[1], qs2[2]) = (b, a, a);
        uint256 fee = _fee(1015 * PRICE) - _fee(ga);
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.PayoutDeferred(ida, host, 5 * PRICE - fee);
        vm.prank(host);
        escrow.withdrawMany(qs2);
    }

    function test_close_deferredPayoutsNameTheLease() public {
        (Quote memory q, bytes32 id) = _runFor(1000);
        bl.setBlocked(host, true);
        bl.setBlocked(renter, true);
        uint256 gross = 1000 * PRICE;
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.PayoutDeferred(id, host, gross - _fee(gross));
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.PayoutDeferred(id, renter, DEPOSIT - gross);
        vm.prank(host);
        escrow.close(q);
    }

    function test_push_returningFalseIsDeferredToo() public {
        (Quote memory q,) = _runFor(1000);
        bl.setReturnFalse(true);
        bl.setBlocked(renter, true);
        vm.prank(host);
        escrow.close(q);
        assertEq(escrow.claimable(renter), DEPOSIT - 1000 * PRICE);
        assertEq(bl.balanceOf(host), 1000 * PRICE - _fee(1000 * PRICE), "host still paid");
    }

    function test_claim_paysAfterUnblock() public {
        (Quote memory q,) = _runFor(1000);
        bl.setBlocked(host, true);
        vm.prank(renter);
        escrow.close(q);
        uint256 owed = escrow.claimable(host);
        assertGt(owed, 0);

        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(BlocklistToken.Blocked.selector, host));
        escrow.claim();
        assertEq(escrow.claimable(host), owed, "a failed claim keeps the balance");

        bl.setBlocked(host, false);
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.Claimed(host, host, owed);
        vm.prank(host);
        escrow.claim();
        assertEq(bl.balanceOf(host), owed);
        assertEq(escrow.claimable(host), 0);
    }

    function test_claimTo_letsABlockedAccountPayElsewhere() public {
        (Quote memory q,) = _runFor(1000);
        bl.setBlocked(host, true);
        vm.prank(renter);
        escrow.close(q);
        uint256 owed = escrow.claimable(host);
        address cold = makeAddr("host cold wallet");
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.Claimed(host, cold, owed);
        vm.prank(host);
        escrow.claimTo(cold);
        assertEq(bl.balanceOf(cold), owed);
    }

    function test_claim_revertsWhenNothingOwed() public {
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NothingToClaim.selector, host));
        escrow.claim();
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NothingToClaim.selector, host));
        escrow.claimTo(stranger);
    }

    function test_claimTo_revertsOnZeroAddress() public {
        vm.prank(host);
        vm.expectRevert(IGpuFlowEscrow.ZeroAddress.selector);
        escrow.claimTo(address(0));
    }

    function test_claim_worksWhilePaused() public {
        (Quote memory q,) = _runFor(1000);
        bl.setBlocked(renter, true);
        vm.prank(host);
        escrow.close(q);
        bl.setBlocked(renter, false);
        vm.prank(guardian);
        escrow.pause();
        vm.prank(renter);
        escrow.claim();
    }

    function test_withdrawBond_toBlockedHostIsDeferred() public {
        bl.mint(host, 100e6);
        vm.prank(host);
        bl.approve(address(escrow), type(uint256).max);
        vm.prank(host);
        escrow.registerHost(hex"0024", 100e6);
        vm.prank(host);
        escrow.unregisterHost();
        skip(7 days);
        bl.setBlocked(host, true);
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.PayoutDeferred(bytes32(0), host, 100e6);
        vm.prank(host);
        escrow.withdrawBond();
        assertEq(escrow.claimable(host), 100e6);
    }

    function test_open_revertsWhenRenterBlocked() public {
        bl.setBlocked(renter, true);
        Quote memory q = _quote();
        bytes memory sig = _sign(q);
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(BlocklistToken.Blocked.selector, renter));
        escrow.open(q, sig, DEPOSIT);

        bl.setReturnFalse(true);
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(SafeERC20.SafeERC20FailedOperation.selector, address(bl)));
        escrow.open(q, sig, DEPOSIT);
    }

    // ------------------------------------------------------------ tokens without return values

    function test_noReturnToken_fullLifecycle() public {
        NoReturnToken t = new NoReturnToken();
        escrow = new GpuFlowEscrow(IERC20(address(t)), treasury, FEE_BPS, TIMEOUT, guardian);
        t.mint(renter, DEPOSIT);
        vm.prank(renter);
        t.approve(address(escrow), DEPOSIT);
        Quote memory q = _quote();
        _openAndStart(q, DEPOSIT);
        skip(1000);
        vm.prank(host);
        escrow.withdraw(q);
        skip(1000);
        vm.prank(renter);
        escrow.close(q);
        escrow.sweepFees();
        assertEq(t.balanceOf(address(escrow)), 0);
        assertEq(t.balanceOf(host) + t.balanceOf(treasury), 2000 * PRICE);
        assertEq(t.balanceOf(renter), DEPOSIT - 2000 * PRICE);
    }
}
