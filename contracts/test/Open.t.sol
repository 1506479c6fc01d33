// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

import {EscrowTestBase, IGpuFlowEscrow, Quote, Lease, LeaseStatus} from "./utils/EscrowTestBase.sol";

contract OpenTest is EscrowTestBase {
    function test_open_storesPendingLeaseAndPullsDeposit() public {
        Quote memory q = _quote();
        bytes memory sig = _sign(q);
        bytes32 expectedId = _leaseId(escrow, q);
        uint256 renterBefore = usd.balanceOf(renter);

        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.LeaseOpened(
            expectedId, host, renter, q.pricePerSecond, DEPOSIT, q.maxDuration, q.nonce, q.specHash
        );
        vm.prank(renter);
        bytes32 id = escrow.open(q, sig, DEPOSIT);

        assertEq(id, expectedId, "lease id = keccak256(abi.encode(escrow, EIP-712 struct hash))");
        assertEq(escrow.leaseIdOf(q), id);
        assertTrue(id != _digest(escrow, q), "the id is not the signed digest");
        Lease memory l = escrow.lease(id);
        assertEq(uint8(l.status), uint8(LeaseStatus.Pending));
        assertEq(l.deposit, DEPOSIT);
        assertEq(l.pricePerSecond, PRICE);
        assertEq(l.since, block.timestamp, "since = openedAt while pending");
        assertEq(l.paidUntil, 0);
        assertEq(usd.balanceOf(address(escrow)), DEPOSIT);
        assertEq(usd.balanceOf(renter), renterBefore - DEPOSIT);
        assertEq(escrow.accrued(id), 0, "nothing accrues before start");
        assertEq(escrow.withdrawable(id), 0);
    }

    function test_open_atExactExpiry() public {
        Quote memory q = _quote();
        vm.warp(q.expiry);
        _open(q, DEPOSIT);
    }

    function test_open_depositAtCap() public {
        Quote memory q = _quote();
        bytes32 id = _open(q, PRICE * MAX_DURATION);
        assertEq(escrow.lease(id).deposit, PRICE * MAX_DURATION);
    }

    function test_open_nonceAtMinimumIsValid() public {
        vm.prank(host);
        escrow.cancelNonces(5);
        _open(_quoteFor(host, renter, 5), DEPOSIT);
    }

    function test_open_sameNonceDifferentQuotes() public {
        // The nonce is a cancellation handle, not a one-time counter: two quotes may share it.
        Quote memory a = _quoteFor(host, renter, 7);
        Quote memory b = _quoteFor(host, renter, 7);
        b.specHash = keccak256("other spec");
        _open(a, DEPOSIT);
        _open(b, DEPOSIT);
    }

    function test_open_revertsWhenPaused() public {
        vm.prank(guardian);
        escrow.pause();
        Quote memory q = _quote();
        bytes memory sig = _sign(q);
        vm.prank(renter);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        escrow.open(q, sig, DEPOSIT);
    }

    function test_open_revertsForOtherCaller() public {
        Quote memory q = _quote();
        bytes memory sig = _sign(q);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NotRenter.selector, stranger, renter));
        escrow.open(q, sig, DEPOSIT);
    }

    function test_open_revertsAfterExpiry() public {
        Quote memory q = _quote();
        bytes memory sig = _sign(q);
        vm.warp(q.expiry + 1);
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.QuoteExpired.selector, q.expiry, q.expiry + 1));
        escrow.open(q, sig, DEPOSIT);
    }

    function test_open_revertsBelowMinNonce() public {
        vm.prank(host);
        escrow.cancelNonces(2);
        Quote memory q = _quoteFor(host, renter, 1);
        bytes memory sig = _sign(q);
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NonceCancelled.selector, 1, 2));
        escrow.open(q, sig, DEPOSIT);
    }

    function test_open_revertsWhenPriceDoesNotFitUint64() public {
        Quote memory q = _quote();
        q.pricePerSecond = uint256(type(uint64).max) + 1;
        bytes memory sig = _sign(q);
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.PriceTooHigh.selector, q.pricePerSecond));
        escrow.open(q, sig, 1);
    }

    function test_open_maxUint64PriceIsAccepted() public {
        Quote memory q = _quote();
        q.pricePerSecond = type(uint64).max;
        q.minDuration = 1; // the deposit below is exactly one second
        _fund(renter, type(uint64).max);
        bytes32 id = _open(q, type(uint64).max);
        assertEq(escrow.lease(id).pricePerSecond, type(uint64).max);
    }

    function test_open_revertsOnZeroDeposit() public {
        Quote memory q = _quote();
        bytes memory sig = _sign(q);
        vm.prank(renter);
        vm.expectRevert(IGpuFlowEscrow.ZeroAmount.selector);
        escrow.open(q, sig, 0);
    }

    // ------------------------------------------------------------ host-signed minimum deposit

    function test_open_revertsBelowMinimumDeposit() public {
        Quote memory q = _quote();
        bytes memory sig = _sign(q);
        uint256 minimum = PRICE * MIN_DURATION;
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.DepositBelowMinimum.selector, minimum - 1, minimum));
        escrow.open(q, sig, minimum - 1);
    }

    function test_open_depositAtMinimum() public {
        Quote memory q = _quote();
        bytes32 id = _open(q, PRICE * MIN_DURATION);
        assertEq(escrow.lease(id).deposit, PRICE * MIN_DURATION);
    }

    function test_open_zeroMinDurationAllowsAnyPositiveDeposit() public {
        Quote memory q = _quote();
        q.minDuration = 0;
        bytes32 id = _open(q, 1);
        assertEq(escrow.lease(id).deposit, 1);
        // Zero stays ZeroAmount, not a minimum error.
        Quote memory q2 = _quoteFor(host, renter, 2);
        q2.minDuration = 0;
        bytes memory sig = _sign(q2);
        vm.prank(renter);
        vm.expectRevert(IGpuFlowEscrow.ZeroAmount.selector);
        escrow.open(q2, sig, 0);
    }

    function test_open_minimumDoesNotOverflow() public {
        // price * minDuration would overflow: the minimum saturates, so no deposit is enough.
        Quote memory q = _quote();
        q.pricePerSecond = type(uint64).max;
        q.minDuration = type(uint256).max;
        q.maxDuration = type(uint256).max;
        bytes memory sig = _sign(q);
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.DepositBelowMinimum.selector, DEPOSIT, type(uint256).max));
        escrow.open(q, sig, DEPOSIT);
    }

    function test_open_minAboveMaxDurationCannotOpen() public {
        // No deposit satisfies both bounds; which error comes first does not matter.
        Quote memory q = _quote();
        q.minDuration = 2 hours;
        q.maxDuration = 1 hours;
        bytes memory sig = _sign(q);
        vm.prank(renter);
        vm.expectPartialRevert(IGpuFlowEscrow.DepositBelowMinimum.selector);
        escrow.open(q, sig, PRICE * 1 hours);
        vm.prank(renter);
        vm.expectPartialRevert(IGpuFlowEscrow.DepositAboveCap.selector);
        escrow.open(q, sig, PRICE * 2 hours);
    }

    function test_open_minimumAppliesToOpenOnlyNotTopUps() public {
        Quote memory q = _quote();
        bytes32 id = _open(q, PRICE * MIN_DURATION);
        vm.prank(renter);
        escrow.topUp(q, 1);
        assertEq(escrow.lease(id).deposit, PRICE * MIN_DURATION + 1);
    }

    function test_open_revertsAboveCap() public {
        Quote memory q = _quote();
        bytes memory sig = _sign(q);
        uint256 cap = PRICE * MAX_DURATION;
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.DepositAboveCap.selector, cap + 1, cap));
        escrow.open(q, sig, cap + 1);
    }

    function test_open_zeroPriceQuoteCannotHoldMoney() public {
        Quote memory q = _quote();
        q.pricePerSecond = 0;
        bytes memory sig = _sign(q);
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.DepositAboveCap.selector, 1, 0));
        escrow.open(q, sig, 1);
    }

    function test_open_hugeMaxDurationDoesNotOverflow() public {
        Quote memory q = _quote();
        q.maxDuration = type(uint256).max;
        bytes memory sig = _sign(q);
        uint256 tooBig = uint256(type(uint96).max) + 1;
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.AmountTooLarge.selector, tooBig));
        escrow.open(q, sig, tooBig);

        // Just below 2^192 the product is computed; above it the cap is "unbounded".
        q.maxDuration = uint256(type(uint192).max);
        _open(q, DEPOSIT);
    }

    function test_open_revertsWhenDepositDoesNotFitUint96() public {
        Quote memory q = _quote();
        q.pricePerSecond = type(uint64).max;
        q.maxDuration = type(uint64).max;
        bytes memory sig = _sign(q);
        uint256 tooBig = uint256(type(uint96).max) + 1;
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.AmountTooLarge.selector, tooBig));
        escrow.open(q, sig, tooBig);
    }

    function test_open_revertsWhenAlreadyOpened() public {
        Quote memory q = _quote();
        bytes32 id = _open(q, DEPOSIT);
        bytes memory sig = _sign(q);
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.LeaseExists.selector, id));
        escrow.open(q, sig, DEPOSIT);
    }

    function test_open_revertsOnShortSignature() public {
        Quote memory q = _quote();
        bytes memory sig = _sign(q);
        bytes memory short = new bytes(64);
        for (uint256 i; i < 64; ++i) {
            short[i] = sig[i];
        }
        vm.prank(renter);
        vm.expectRevert(IGpuFlowEscrow.SignatureMalformed.selector);
        escrow.open(q, short, DEPOSIT);
    }

    function test_open_revertsOnUnrecoverableSignature() public {
        Quote memory q = _quote();
        bytes memory sig = _sign(q);
        sig[64] = bytes1(uint8(29)); // v must be 27 or 28
        vm.prank(renter);
        vm.expectRevert(IGpuFlowEscrow.SignatureMalformed.selector);
        escrow.open(q, sig, DEPOSIT);
    }

    function test_open_revertsOnSignatureByAnotherKey() public {
        Quote memory q = _quote();
        (address other, uint256 otherKey) = makeAddrAndKey("impostor");
        bytes memory sig = _sign(otherKey, _digest(escrow, q));
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.WrongSigner.selector, other, host));
        escrow.open(q, sig, DEPOSIT);
    }

    function test_open_revertsWithoutAllowance() public {
        address poor = makeAddr("poor");
        usd.mint(poor, DEPOSIT);
        Quote memory q = _quoteFor(host, poor, 1);
        bytes memory sig = _sign(q);
        vm.prank(poor);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(escrow), 0, DEPOSIT)
        );
        escrow.open(q, sig, DEPOSIT);
    }

    function test_open_revertsWithoutBalance() public {
        address poor = makeAddr("poor");
        vm.prank(poor);
        usd.approve(address(escrow), type(uint256).max);
        Quote memory q = _quoteFor(host, poor, 1);
        bytes memory sig = _sign(q);
        vm.prank(poor);
        vm.expectRevert(abi.encodeWithSelector(IERC20Errors.ERC20InsufficientBalance.selector, poor, 0, DEPOSIT));
        escrow.open(q, sig, DEPOSIT);
    }
}
