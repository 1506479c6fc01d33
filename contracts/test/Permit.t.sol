// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {GpuFlowEscrow} from "../src/GpuFlowEscrow.sol";
import {EscrowTestBase, IGpuFlowEscrow, Quote, LeaseStatus} from "./utils/EscrowTestBase.sol";
import {NoReturnToken} from "./mocks/NoReturnToken.sol";
import {ReentrantRenter, ReentrantToken} from "./mocks/ReentrantToken.sol";

/// openWithPermit and topUpWithPermit: EIP-2612 instead of a prior approval.
contract PermitTest is EscrowTestBase {
    string internal constant USD_NAME = "Mock USD";

    address internal newRenter;
    uint256 internal newRenterKey;
    address internal payer;
    uint256 internal payerKey;

    function setUp() public override {
        super.setUp();
        (newRenter, newRenterKey) = makeAddrAndKey("first-time renter");
        (payer, payerKey) = makeAddrAndKey("payer");
        // Funded, but no approval: a wallet that never used the escrow.
        usd.mint(newRenter, 10 * DEPOSIT);
        usd.mint(payer, 10 * DEPOSIT);
    }

    struct PermitSig {
        uint256 deadline;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    function _permit(uint256 key, uint256 value) internal view returns (PermitSig memory p) {
        p.deadline = block.timestamp + 10 minutes;
        (p.v, p.r, p.s) =
            _signPermit(address(usd), USD_NAME, key, address(escrow), value, usd.nonces(vm.addr(key)), p.deadline);
    }

    function _openWithPermit(Quote memory q, uint256 deposit, PermitSig memory p) internal returns (bytes32) {
        bytes memory sig = _sign(q);
        vm.prank(q.renter);
        return escrow.openWithPermit(q, sig, deposit, p.deadline, p.v, p.r, p.s);
    }

    // ------------------------------------------------------------ openWithPermit

    function test_openWithPermit_firstTimeRenterOneTransaction() public {
        Quote memory q = _quoteFor(host, newRenter, 1);
        assertEq(usd.allowance(newRenter, address(escrow)), 0);
        PermitSig memory p = _permit(newRenterKey, DEPOSIT);
        bytes32 expectedId = _leaseId(escrow, q);

        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.LeaseOpened(
            expectedId, host, newRenter, q.pricePerSecond, DEPOSIT, q.maxDuration, q.nonce, q.specHash
        );
        bytes32 id = _openWithPermit(q, DEPOSIT, p);

        assertEq(id, expectedId);
        assertEq(uint8(_status(id)), uint8(LeaseStatus.Pending));
        assertEq(escrow.lease(id).deposit, DEPOSIT);
        assertEq(usd.balanceOf(address(escrow)), DEPOSIT);
        assertEq(usd.balanceOf(newRenter), 9 * DEPOSIT);
        assertEq(usd.nonces(newRenter), 1, "the permit was used");
        assertEq(usd.allowance(newRenter, address(escrow)), 0, "and spent exactly");
    }

    /// Someone copies the permit from the mempool and submits it first: ours then reverts (nonce
    /// used), but the allowance it set is there, so the open goes ahead.
    function test_openWithPermit_frontRunPermitStillOpens() public {
        Quote memory q = _quoteFor(host, newRenter, 1);
        PermitSig memory p = _permit(newRenterKey, DEPOSIT);
        vm.prank(stranger);
        usd.permit(newRenter, address(escrow), DEPOSIT, p.deadline, p.v, p.r, p.s);
        assertEq(usd.allowance(newRenter, address(escrow)), DEPOSIT);

        bytes32 id = _openWithPermit(q, DEPOSIT, p);
        assertEq(escrow.lease(id).deposit, DEPOSIT);
        assertEq(usd.balanceOf(address(escrow)), DEPOSIT);
    }

    function test_openWithPermit_badPermitWithoutAllowanceReverts() public {
        Quote memory q = _quoteFor(host, newRenter, 1);
        bytes memory sig = _sign(q);
        // Signed by another key.
        PermitSig memory p = _permit(payerKey, DEPOSIT);
        vm.prank(newRenter);
        vm.expectRevert(IGpuFlowEscrow.PermitFailed.selector);
        escrow.openWithPermit(q, sig, DEPOSIT, p.deadline, p.v, p.r, p.s);
        // Expired.
        p = _permit(newRenterKey, DEPOSIT);
        skip(10 minutes + 1);
        vm.prank(newRenter);
        vm.expectRevert(IGpuFlowEscrow.PermitFailed.selector);
        escrow.openWithPermit(q, sig, DEPOSIT, p.deadline, p.v, p.r, p.s);
        // Tampered.
        p = _permit(newRenterKey, DEPOSIT);
        vm.prank(newRenter);
        vm.expectRevert(IGpuFlowEscrow.PermitFailed.selector);
        escrow.openWithPermit(q, sig, DEPOSIT, p.deadline, p.v, bytes32(uint256(p.r) ^ 1), p.s);
        // Signed for less than the deposit: the permit for `deposit` does not verify.
        p = _permit(newRenterKey, DEPOSIT - 1);
        vm.prank(newRenter);
        vm.expectRevert(IGpuFlowEscrow.PermitFailed.selector);
        escrow.openWithPermit(q, sig, DEPOSIT, p.deadline, p.v, p.r, p.s);
        assertEq(usd.balanceOf(address(escrow)), 0);
        assertEq(usd.nonces(newRenter), 0);
    }

    function test_openWithPermit_failedPermitNeedsTheWholeDepositAllowed() public {
        Quote memory q = _quoteFor(host, newRenter, 1);
        bytes memory sig = _sign(q);
        vm.prank(newRenter);
        usd.approve(address(escrow), DEPOSIT - 1);
        vm.prank(newRenter);
        vm.expectRevert(IGpuFlowEscrow.PermitFailed.selector);
        escrow.openWithPermit(q, sig, DEPOSIT, 0, 0, bytes32(0), bytes32(0));

        vm.prank(newRenter);
        usd.approve(address(escrow), DEPOSIT);
        vm.prank(newRenter);
        escrow.openWithPermit(q, sig, DEPOSIT, 0, 0, bytes32(0), bytes32(0));
        assertEq(usd.balanceOf(address(escrow)), DEPOSIT);
    }

    function test_openWithPermit_appliesEveryOpenCheck() public {
        Quote memory q = _quoteFor(host, newRenter, 1);
        PermitSig memory p = _permit(newRenterKey, DEPOSIT);
        bytes memory sig = _sign(q);
        // The permit runs first: a stranger without an allowance would get PermitFailed; one with
        // an allowance gets the open checks.
        _fund(stranger, DEPOSIT);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NotRenter.selector, stranger, newRenter));
        escrow.openWithPermit(q, sig, DEPOSIT, p.deadline, p.v, p.r, p.s);

        uint256 minimum = PRICE * MIN_DURATION;
        p = _permit(newRenterKey, minimum - 1);
        vm.prank(newRenter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.DepositBelowMinimum.selector, minimum - 1, minimum));
        escrow.openWithPermit(q, sig, minimum - 1, p.deadline, p.v, p.r, p.s);
        assertEq(usd.nonces(newRenter), 0, "a reverted open leaves the permit unused");

        p = _permit(newRenterKey, DEPOSIT);
        bytes32 id = _openWithPermit(q, DEPOSIT, p);
        p = _permit(newRenterKey, DEPOSIT);
        vm.prank(newRenter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.LeaseExists.selector, id));
        escrow.openWithPermit(q, sig, DEPOSIT, p.deadline, p.v, p.r, p.s);
    }

    function test_openWithPermit_revertsWhenPaused() public {
        vm.prank(guardian);
        escrow.pause();
        Quote memory q = _quoteFor(host, newRenter, 1);
        PermitSig memory p = _permit(newRenterKey, DEPOSIT);
        bytes memory sig = _sign(q);
        vm.prank(newRenter);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        escrow.openWithPermit(q, sig, DEPOSIT, p.deadline, p.v, p.r, p.s);
    }

    /// A token without `permit`: the call reverts, which is fine with an allowance and PermitFailed
    /// without one.
    function test_openWithPermit_tokenWithoutPermit() public {
        NoReturnToken t = new NoReturnToken();
        escrow = new GpuFlowEscrow(IERC20(address(t)), treasury, FEE_BPS, TIMEOUT, guardian);
        t.mint(renter, DEPOSIT);
        Quote memory q = _quote();
        bytes memory sig = _sign(q);
        vm.prank(renter);
        vm.expectRevert(IGpuFlowEscrow.PermitFailed.selector);
        escrow.openWithPermit(q, sig, DEPOSIT, 0, 0, bytes32(0), bytes32(0));
        vm.prank(renter);
        t.approve(address(escrow), DEPOSIT);
        vm.prank(renter);
        escrow.openWithPermit(q, sig, DEPOSIT, 0, 0, bytes32(0), bytes32(0));
        assertEq(t.balanceOf(address(escrow)), DEPOSIT);
    }

    function test_openWithPermit_cannotBeReentered() public {
        ReentrantToken t = new ReentrantToken();
        escrow = new GpuFlowEscrow(IERC20(address(t)), treasury, FEE_BPS, TIMEOUT, guardian);
        ReentrantRenter attacker = new ReentrantRenter(address(escrow));
        t.mint(address(attacker), 10 * DEPOSIT);
        attacker.approve(address(t), type(uint256).max);
        Quote memory q = _quoteFor(host, address(attacker), 1);
        Quote memory q2 = _quoteFor(host, address(attacker), 2);
        attacker.setReentry(
            abi.encodeCall(escrow.openWithPermit, (q2, _sign(q2), DEPOSIT, 0, 0, bytes32(0), bytes32(0)))
        );
        t.arm(address(attacker));
        attacker.exec(abi.encodeCall(escrow.openWithPermit, (q, _sign(q), DEPOSIT, 0, 0, bytes32(0), bytes32(0))));
        assertTrue(attacker.reentered());
        assertFalse(attacker.reentrySucceeded());
        assertEq(
            attacker.reentryError(),
            abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector)
        );
        assertEq(uint8(_status(_leaseId(escrow, q2))), uint8(LeaseStatus.None));
        assertEq(t.balanceOf(address(escrow)), DEPOSIT);
    }

    // ------------------------------------------------------------ topUpWithPermit

    function test_topUpWithPermit_firstTimePayerOneTransaction() public {
        Quote memory q = _quote();
        bytes32 id = _openAndStart(q, DEPOSIT);
        PermitSig memory p = _permit(payerKey, 1000);
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.LeaseToppedUp(id, payer, 1000, DEPOSIT + 1000);
        vm.prank(payer);
        escrow.topUpWithPermit(q, 1000, p.deadline, p.v, p.r, p.s);
        assertEq(escrow.lease(id).deposit, DEPOSIT + 1000);
        assertEq(usd.balanceOf(payer), 10 * DEPOSIT - 1000);
        assertEq(usd.allowance(payer, address(escrow)), 0);
    }

    function test_topUpWithPermit_frontRunPermitStillTopsUp() public {
        Quote memory q = _quote();
        bytes32 id = _open(q, DEPOSIT);
        PermitSig memory p = _permit(payerKey, 1000);
        vm.prank(stranger);
        usd.permit(payer, address(escrow), 1000, p.deadline, p.v, p.r, p.s);
        vm.prank(payer);
        escrow.topUpWithPermit(q, 1000, p.deadline, p.v, p.r, p.s);
        assertEq(escrow.lease(id).deposit, DEPOSIT + 1000);
    }

    function test_topUpWithPermit_badPermitWithoutAllowanceReverts() public {
        Quote memory q = _quote();
        _open(q, DEPOSIT);
        PermitSig memory p = _permit(newRenterKey, 1000); // another owner's signature
        vm.prank(payer);
        vm.expectRevert(IGpuFlowEscrow.PermitFailed.selector);
        escrow.topUpWithPermit(q, 1000, p.deadline, p.v, p.r, p.s);
    }

    function test_topUpWithPermit_appliesEveryTopUpCheck() public {
        Quote memory q = _quote();
        bytes32 id = _openAndStart(q, DEPOSIT);
        skip(DEPOSIT / PRICE + 1);
        PermitSig memory p = _permit(payerKey, 1000);
        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.DepositExhausted.selector, id));
        escrow.topUpWithPermit(q, 1000, p.deadline, p.v, p.r, p.s);
        vm.prank(payer);
        vm.expectRevert(IGpuFlowEscrow.ZeroAmount.selector);
        escrow.topUpWithPermit(q, 0, p.deadline, p.v, p.r, p.s);
    }

    function test_topUpWithPermit_worksWhilePaused() public {
        Quote memory q = _quote();
        bytes32 id = _openAndStart(q, DEPOSIT);
        vm.prank(guardian);
        escrow.pause();
        PermitSig memory p = _permit(payerKey, 1000);
        vm.prank(payer);
        escrow.topUpWithPermit(q, 1000, p.deadline, p.v, p.r, p.s);
        assertEq(escrow.lease(id).deposit, DEPOSIT + 1000);
    }
}
