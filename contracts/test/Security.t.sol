// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Vm} from "forge-std/Vm.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {GpuFlowEscrow} from "../src/GpuFlowEscrow.sol";
import {EscrowTestBase, IGpuFlowEscrow, Quote, CloseReason, LeaseStatus} from "./utils/EscrowTestBase.sol";
import {BlocklistToken} from "./mocks/BlocklistToken.sol";
import {FeeOnTransferToken} from "./mocks/FeeOnTransferToken.sol";
import {ReentrantRenter, ReentrantToken} from "./mocks/ReentrantToken.sol";

/// One named test per security case of DESIGN.md §6 (conservation, monotone accrual and solvency
/// are in Fuzz.t.sol and invariant/Solvency.t.sol).
contract SecurityTest is EscrowTestBase {
    uint256 internal constant SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    // ------------------------------------------------------------ reentrancy

    function _reentrancySetup() internal returns (ReentrantToken t, ReentrantRenter attacker, Quote memory q) {
        t = new ReentrantToken();
        escrow = new GpuFlowEscrow(IERC20(address(t)), treasury, FEE_BPS, TIMEOUT, guardian);
        attacker = new ReentrantRenter(address(escrow));
        t.mint(address(attacker), 10 * DEPOSIT);
        attacker.approve(address(t), type(uint256).max);
        q = _quoteFor(host, address(attacker), 1);
    }

    /// A token that calls back into the recipient's code on transfer (ERC-777 style): while
    /// `close` pays the host, the renter contract tries to close the same lease again.
    function test_security_reentrancyThroughTokenHook() public {
        (ReentrantToken t, ReentrantRenter attacker, Quote memory q) = _reentrancySetup();
        attacker.exec(abi.encodeCall(escrow.open, (q, _sign(q), DEPOSIT)));
        vm.prank(host);
        escrow.start(q);
        skip(1000);

        attacker.setReentry(abi.encodeCall(escrow.close, (q)));
        t.arm(address(attacker));
        uint256 attackerBefore = t.balanceOf(address(attacker));
        attacker.exec(abi.encodeCall(escrow.close, (q)));

        assertTrue(attacker.reentered(), "the hook ran");
        assertFalse(attacker.reentrySucceeded(), "the re-entrant close failed");
        assertEq(
            attacker.reentryError(),
            abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector),
            "stopped by the reentrancy guard"
        );
        uint256 gross = 1000 * PRICE;
        assertEq(t.balanceOf(host), gross - _fee(gross));
        assertEq(t.balanceOf(address(attacker)) - attackerBefore, DEPOSIT - gross, "refunded exactly once");
        assertEq(t.balanceOf(address(escrow)), _fee(gross), "only the fee is left");
    }

    /// The same on the pull side: while `open` pulls the deposit, the hook tries to open a second
    /// lease (and `topUp` the first) before the first pull completed.
    function test_security_reentrancyThroughTokenHookOnPull() public {
        (ReentrantToken t, ReentrantRenter attacker, Quote memory q) = _reentrancySetup();
        Quote memory q2 = _quoteFor(host, address(attacker), 2);
        attacker.setReentry(abi.encodeCall(escrow.open, (q2, _sign(q2), DEPOSIT)));
        t.arm(address(attacker));
        attacker.exec(abi.encodeCall(escrow.open, (q, _sign(q), DEPOSIT)));

        assertTrue(attacker.reentered());
        assertFalse(attacker.reentrySucceeded());
        assertEq(
            attacker.reentryError(),
            abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector)
        );
        assertEq(uint8(_status(_leaseId(escrow, q2))), uint8(LeaseStatus.None));
        assertEq(t.balanceOf(address(escrow)), DEPOSIT);

        attacker.setReentry(abi.encodeCall(escrow.topUp, (q, 1)));
        t.arm(address(attacker));
        attacker.exec(abi.encodeCall(escrow.topUp, (q, 5)));
        assertFalse(attacker.reentrySucceeded());
        assertEq(escrow.lease(_leaseId(escrow, q)).deposit, DEPOSIT + 5);
        assertEq(t.balanceOf(address(escrow)), DEPOSIT + 5);
    }

    /// A host contract (here: code at the host's key address, as with an EIP-7702 delegation) that
    /// is called back while `open` pulls the deposit must not be able to start the lease from
    /// there: `LeaseStarted` would be logged before `LeaseOpened`, and indexers read them in order.
    function test_security_startCannotReenterOpen() public {
        ReentrantToken t = new ReentrantToken();
        escrow = new GpuFlowEscrow(IERC20(address(t)), treasury, FEE_BPS, TIMEOUT, guardian);
        vm.etch(host, address(new ReentrantRenter(address(escrow))).code);
        ReentrantRenter hostContract = ReentrantRenter(host);
        t.mint(renter, DEPOSIT);
        vm.prank(renter);
        t.approve(address(escrow), type(uint256).max);
        Quote memory q = _quote();
        bytes memory sig = _sign(q);

        hostContract.setReentry(abi.encodeCall(escrow.start, (q)));
        t.arm(host);
        vm.recordLogs();
        vm.prank(renter);
        bytes32 id = escrow.open(q, sig, DEPOSIT);

        assertTrue(hostContract.reentered(), "the hook ran inside open");
        assertFalse(hostContract.reentrySucceeded(), "start from inside open failed");
        assertEq(
            hostContract.reentryError(),
            abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector),
            "stopped by the reentrancy guard"
        );
        assertEq(uint8(_status(id)), uint8(LeaseStatus.Pending));
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i; i < logs.length; ++i) {
            assertTrue(logs[i].topics[0] != IGpuFlowEscrow.LeaseStarted.selector, "no LeaseStarted during open");
        }
        // Started properly afterwards, LeaseStarted follows LeaseOpened.
        vm.prank(host);
        escrow.start(q);
        assertEq(uint8(_status(id)), uint8(LeaseStatus.Running));
    }

    // ------------------------------------------------------------ tokens

    function test_security_feeOnTransferTokenRejected() public {
        FeeOnTransferToken t = new FeeOnTransferToken(100); // 1 %
        escrow = new GpuFlowEscrow(IERC20(address(t)), treasury, FEE_BPS, TIMEOUT, guardian);
        t.mint(renter, DEPOSIT);
        vm.prank(renter);
        t.approve(address(escrow), type(uint256).max);
        Quote memory q = _quote();
        bytes memory sig = _sign(q);
        vm.prank(renter);
        vm.expectRevert(
            abi.encodeWithSelector(IGpuFlowEscrow.FeeOnTransferToken.selector, DEPOSIT, DEPOSIT - DEPOSIT / 100)
        );
        escrow.open(q, sig, DEPOSIT);
    }

    /// A token that switches a transfer fee on after deployment (USDT can) is caught on every
    /// later pull: top-ups and bonds too, not only `open`.
    function test_security_feeSwitchedOnLaterIsRejectedOnEveryPull() public {
        FeeOnTransferToken t = new FeeOnTransferToken(0);
        escrow = new GpuFlowEscrow(IERC20(address(t)), treasury, FEE_BPS, TIMEOUT, guardian);
        t.mint(renter, 10 * DEPOSIT);
        vm.prank(renter);
        t.approve(address(escrow), type(uint256).max);
        Quote memory q = _quote();
        _open(q, DEPOSIT);

        t.setFee(50);
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.FeeOnTransferToken.selector, 1000, 995));
        escrow.topUp(q, 1000);
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.FeeOnTransferToken.selector, 1000, 995));
        escrow.registerHost(hex"0024", 1000);
    }

    function test_security_blocklistedHostDoesNotBlockRenterClose() public {
        BlocklistToken t = new BlocklistToken();
        escrow = new GpuFlowEscrow(t, treasury, FEE_BPS, TIMEOUT, guardian);
        t.mint(renter, DEPOSIT);
        vm.prank(renter);
        t.approve(address(escrow), type(uint256).max);
        Quote memory q = _quote();
        _openAndStart(q, DEPOSIT);
        skip(1000);
        t.setBlocked(host, true);

        uint256 gross = 1000 * PRICE;
        vm.prank(renter);
        escrow.close(q);
        assertEq(t.balanceOf(renter), DEPOSIT - gross, "renter refunded despite the host's block");
        assertEq(escrow.claimable(host), gross - _fee(gross), "host's share waits");
        assertEq(escrow.feesAccrued(), _fee(gross));
        assertEq(t.balanceOf(address(escrow)), gross, "holds exactly the host's share and the fee");
    }

    function test_security_blocklistedRenterDoesNotBlockHostClose() public {
        BlocklistToken t = new BlocklistToken();
        escrow = new GpuFlowEscrow(t, treasury, FEE_BPS, TIMEOUT, guardian);
        t.mint(renter, DEPOSIT);
        vm.prank(renter);
        t.approve(address(escrow), type(uint256).max);
        Quote memory q = _quote();
        _openAndStart(q, DEPOSIT);
        skip(1000);
        t.setBlocked(renter, true);

        uint256 gross = 1000 * PRICE;
        vm.prank(host);
        escrow.close(q);
        assertEq(t.balanceOf(host), gross - _fee(gross));
        assertEq(escrow.claimable(renter), DEPOSIT - gross);
    }

    // ------------------------------------------------------------ replay and binding

    function test_security_replayOnOtherChain() public {
        Quote memory q = _quote();
        bytes memory sig = _sign(q); // signed for this chain id
        bytes32 here = escrow.quoteDigest(q);
        bytes32 id = escrow.leaseIdOf(q);
        vm.chainId(block.chainid + 1);
        assertTrue(escrow.quoteDigest(q) != here, "the chain id is in the digest");
        assertEq(escrow.leaseIdOf(q), id, "but not in the lease id");
        vm.prank(renter);
        vm.expectPartialRevert(IGpuFlowEscrow.WrongSigner.selector);
        escrow.open(q, sig, DEPOSIT);
    }

    /// The chain id changes (a fork) while a lease runs: the lease id has no chain id in it, so the
    /// lease stays reachable and settles normally; the signature check still uses the current
    /// chain id, so a quote signed for the old chain id does not open on the new one.
    function test_security_leaseSurvivesChainIdChange() public {
        uint256 oldChain = block.chainid;
        Quote memory q = _quoteFor(host, renter, 1);
        bytes32 id = _open(q, DEPOSIT);
        Quote memory later = _quoteFor(host, renter, 2);
        bytes memory laterSig = _sign(later); // signed for the old chain id

        vm.chainId(8453);
        assertEq(escrow.leaseIdOf(q), id);
        vm.prank(host);
        escrow.start(q);
        skip(100);
        vm.prank(renter);
        escrow.topUp(q, PRICE);
        vm.prank(host);
        escrow.withdraw(q);
        skip(100);
        vm.prank(host);
        escrow.withdrawMany(_quotes1(q));
        skip(100);
        uint256 gross = 300 * PRICE;
        vm.prank(renter);
        escrow.close(q);
        assertEq(uint8(_status(id)), uint8(LeaseStatus.Closed));
        assertEq(usd.balanceOf(host), gross - _fee(gross));
        assertEq(usd.balanceOf(address(escrow)), _fee(gross), "renter refunded, only the fee left");

        vm.prank(renter);
        vm.expectPartialRevert(IGpuFlowEscrow.WrongSigner.selector);
        escrow.open(later, laterSig, DEPOSIT);
        // Re-signed for the new chain id it opens.
        assertTrue(block.chainid != oldChain);
        _open(later, DEPOSIT);
    }

    function test_security_replayOnOtherDeployment() public {
        Quote memory q = _quote();
        bytes memory sig = _sign(q);
        GpuFlowEscrow other = new GpuFlowEscrow(usd, treasury, FEE_BPS, TIMEOUT, guardian);
        vm.prank(renter);
        usd.approve(address(other), type(uint256).max);
        vm.prank(renter);
        escrow.open(q, sig, DEPOSIT);
        vm.prank(renter);
        vm.expectPartialRevert(IGpuFlowEscrow.WrongSigner.selector);
        other.open(q, sig, DEPOSIT);
    }

    function test_security_sameQuoteOpenedTwice() public {
        Quote memory q = _quote();
        bytes memory sig = _sign(q);
        vm.prank(renter);
        bytes32 id = escrow.open(q, sig, DEPOSIT);
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.LeaseExists.selector, id));
        escrow.open(q, sig, DEPOSIT);

        vm.prank(renter);
        escrow.close(q);
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.LeaseExists.selector, id));
        escrow.open(q, sig, DEPOSIT);
    }

    function test_security_expiredQuote() public {
        Quote memory q = _quote();
        bytes memory sig = _sign(q);
        vm.warp(q.expiry + 1);
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.QuoteExpired.selector, q.expiry, q.expiry + 1));
        escrow.open(q, sig, DEPOSIT);
    }

    function test_security_cancelledNonces() public {
        Quote memory old = _quoteFor(host, renter, 4);
        Quote memory current = _quoteFor(host, renter, 5);
        bytes memory oldSig = _sign(old);
        vm.prank(host);
        escrow.cancelNonces(5);
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NonceCancelled.selector, 4, 5));
        escrow.open(old, oldSig, DEPOSIT);
        _open(current, DEPOSIT);
    }

    function test_security_quoteBoundToAnotherRenter() public {
        Quote memory q = _quote();
        bytes memory sig = _sign(q);
        _fund(stranger, DEPOSIT);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NotRenter.selector, stranger, renter));
        escrow.open(q, sig, DEPOSIT);
        // Rewriting the renter field to oneself breaks the host's signature.
        q.renter = stranger;
        vm.prank(stranger);
        vm.expectPartialRevert(IGpuFlowEscrow.WrongSigner.selector);
        escrow.open(q, sig, DEPOSIT);
    }

    function test_security_tamperedPrice() public {
        Quote memory q = _quote();
        bytes memory sig = _sign(q);
        q.pricePerSecond = PRICE / 2;
        vm.prank(renter);
        vm.expectPartialRevert(IGpuFlowEscrow.WrongSigner.selector);
        escrow.open(q, sig, DEPOSIT);
    }

    /// Terms are not stored, so every later call proves them by hashing the quote again: a quote
    /// with any field changed names no lease.
    function test_security_tamperedQuoteAfterOpenNamesNoLease() public {
        Quote memory q = _quote();
        _openAndStart(q, DEPOSIT);
        skip(100);

        Quote memory cheaper = q;
        cheaper.pricePerSecond = PRICE * 10;
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.LeaseNotFound.selector, _leaseId(escrow, cheaper)));
        escrow.withdraw(cheaper);

        Quote memory longer = q;
        longer.maxDuration = MAX_DURATION * 100;
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.LeaseNotFound.selector, _leaseId(escrow, longer)));
        escrow.topUp(longer, PRICE * MAX_DURATION);

        Quote memory otherHost = q;
        otherHost.host = stranger;
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.LeaseNotFound.selector, _leaseId(escrow, otherHost)));
        escrow.close(otherHost);
    }

    /// Calldata whose address field has dirty high bits is not a different quote: the ABI decoder
    /// rejects it before any hashing.
    function test_security_dirtyAddressBitsRejected() public {
        Quote memory q = _quote();
        _openAndStart(q, DEPOSIT);
        skip(100);
        bytes memory data = abi.encodeCall(escrow.withdraw, (q));
        data[4] = 0x01; // highest byte of the host word
        vm.prank(host);
        (bool ok, bytes memory ret) = address(escrow).call(data);
        assertFalse(ok);
        assertEq(ret.length, 0, "the ABI decoder's validation revert, not NotHost or LeaseNotFound");
        vm.prank(host);
        escrow.withdraw(q);
    }

    function test_security_highSSignatureRejected() public {
        Quote memory q = _quote();
        bytes32 digest = _digest(escrow, q);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(hostKey, digest);
        bytes32 highS = bytes32(SECP256K1_N - uint256(s));
        uint8 flippedV = v == 27 ? 28 : 27;
        assertEq(ecrecover(digest, flippedV, r, highS), host, "the malleated signature is valid for ecrecover");

        vm.prank(renter);
        vm.expectRevert(IGpuFlowEscrow.SignatureHighS.selector);
        escrow.open(q, abi.encodePacked(r, highS, flippedV), DEPOSIT);
    }

    // ------------------------------------------------------------ lease outcomes

    function test_security_hostNeverStartsFullRefund() public {
        Quote memory q = _quote();
        bytes32 id = _open(q, DEPOSIT);
        uint256 renterBefore = usd.balanceOf(renter);
        skip(TIMEOUT + 1);
        vm.prank(host);
        vm.expectPartialRevert(IGpuFlowEscrow.AcceptTimeoutPassed.selector);
        escrow.start(q);

        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.LeaseClosed(
            id, host, renter, renter, CloseReason.NeverStarted, 0, 0, DEPOSIT, 0, block.timestamp
        );
        vm.prank(renter);
        escrow.close(q);
        assertEq(usd.balanceOf(renter), renterBefore + DEPOSIT);
        assertEq(usd.balanceOf(host), 0);
        assertEq(escrow.feesAccrued(), 0);
    }

    function test_security_renterCancelsBeforeStartHostPaidNothing() public {
        Quote memory q = _quote();
        bytes32 id = _open(q, DEPOSIT);
        uint256 renterBefore = usd.balanceOf(renter);
        skip(TIMEOUT / 2);
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.LeaseClosed(
            id, host, renter, renter, CloseReason.CancelledBeforeStart, 0, 0, DEPOSIT, 0, block.timestamp
        );
        vm.prank(renter);
        escrow.close(q);
        assertEq(usd.balanceOf(renter), renterBefore + DEPOSIT);
        assertEq(usd.balanceOf(host), 0);
        assertEq(escrow.feesAccrued(), 0);
        assertEq(escrow.accrued(id), 0);
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.LeaseAlreadyClosed.selector, id));
        escrow.start(q);
    }

    function test_security_topUpAfterDepletionReverts() public {
        Quote memory q = _quote();
        bytes32 id = _openAndStart(q, DEPOSIT);
        skip(DEPOSIT / PRICE + 1 hours); // used up an hour ago; the host stopped serving
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.DepositExhausted.selector, id));
        escrow.topUp(q, DEPOSIT);
        // Had it been accepted, accrual from startedAt would bill the renter for the idle hour.
        assertEq(escrow.accrued(id), DEPOSIT);
    }

    // ------------------------------------------------------------ roles

    function test_security_onlyPartiesCanClose() public {
        Quote memory q = _quote();
        _openAndStart(q, DEPOSIT);
        address[3] memory outsiders = [stranger, guardian, treasury];
        for (uint256 i; i < outsiders.length; ++i) {
            vm.prank(outsiders[i]);
            vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NotParty.selector, outsiders[i]));
            escrow.close(q);
        }
        vm.prank(host);
        escrow.close(q);
    }

    function test_security_onlyHostCanStartOrWithdraw() public {
        Quote memory q = _quote();
        _open(q, DEPOSIT);
        address[3] memory others = [renter, stranger, guardian];
        for (uint256 i; i < others.length; ++i) {
            vm.prank(others[i]);
            vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NotHost.selector, others[i], host));
            escrow.start(q);
        }
        vm.prank(host);
        escrow.start(q);
        skip(100);
        for (uint256 i; i < others.length; ++i) {
            vm.prank(others[i]);
            vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NotHost.selector, others[i], host));
            escrow.withdraw(q);
            vm.prank(others[i]);
            vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NotHost.selector, others[i], host));
            escrow.withdrawMany(_quotes1(q));
        }
        vm.prank(host);
        escrow.withdraw(q);
    }

    function test_security_closeWorksWhileOpenPaused() public {
        Quote memory pending = _quoteFor(host, renter, 1);
        Quote memory running = _quoteFor(host, renter, 2);
        Quote memory fresh = _quoteFor(host, renter, 3);
        _open(pending, DEPOSIT);
        _openAndStart(running, DEPOSIT);
        skip(100);

        vm.prank(guardian);
        escrow.pause();
        bytes memory sig = _sign(fresh);
        vm.prank(renter);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        escrow.open(fresh, sig, DEPOSIT);

        vm.prank(host);
        escrow.withdraw(running);
        vm.prank(renter);
        escrow.topUp(running, 1);
        vm.prank(renter);
        escrow.close(pending);
        vm.prank(host);
        escrow.close(running);
        escrow.sweepFees();
        assertEq(usd.balanceOf(address(escrow)), 0, "everything paid out while paused");
    }
}
