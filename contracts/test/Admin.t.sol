// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

import {GpuFlowEscrow} from "../src/GpuFlowEscrow.sol";
import {MockStablecoin} from "../src/MockStablecoin.sol";
import {EscrowTestBase, IGpuFlowEscrow, Quote, Lease, LeaseStatus} from "./utils/EscrowTestBase.sol";

/// Constructor, guardian, nonces and views.
contract AdminTest is EscrowTestBase {
    // ------------------------------------------------------------ constructor

    function test_constructor_setsImmutables() public view {
        assertEq(address(escrow.token()), address(usd));
        assertEq(escrow.treasury(), treasury);
        assertEq(escrow.feeBps(), FEE_BPS);
        assertEq(escrow.acceptTimeout(), TIMEOUT);
        assertEq(escrow.guardian(), guardian);
        assertEq(escrow.MAX_FEE_BPS(), 1000);
        assertEq(escrow.feesAccrued(), 0);
        assertFalse(escrow.paused());
    }

    function test_constructor_acceptsFeeAtCap() public {
        GpuFlowEscrow e = new GpuFlowEscrow(usd, treasury, 1000, 1, address(0));
        assertEq(e.feeBps(), 1000);
    }

    function test_constructor_revertsAboveFeeCap() public {
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.FeeAboveCap.selector, 1001, 1000));
        new GpuFlowEscrow(usd, treasury, 1001, TIMEOUT, guardian);
    }

    function test_constructor_revertsOnZeroToken() public {
        vm.expectRevert(IGpuFlowEscrow.ZeroAddress.selector);
        new GpuFlowEscrow(IERC20(address(0)), treasury, FEE_BPS, TIMEOUT, guardian);
    }

    function test_constructor_revertsOnZeroTreasury() public {
        vm.expectRevert(IGpuFlowEscrow.ZeroAddress.selector);
        new GpuFlowEscrow(usd, address(0), FEE_BPS, TIMEOUT, guardian);
    }

    function test_constructor_revertsOnZeroTimeout() public {
        vm.expectRevert(IGpuFlowEscrow.ZeroAcceptTimeout.selector);
        new GpuFlowEscrow(usd, treasury, FEE_BPS, 0, guardian);
    }

    // ------------------------------------------------------------ guardian

    function test_pause_andUnpauseByGuardian() public {
        vm.expectEmit(address(escrow));
        emit Pausable.Paused(guardian);
        vm.prank(guardian);
        escrow.pause();
        assertTrue(escrow.paused());

        vm.expectEmit(address(escrow));
        emit Pausable.Unpaused(guardian);
        vm.prank(guardian);
        escrow.unpause();
        assertFalse(escrow.paused());
        _open(_quote(), DEPOSIT);
    }

    function test_pause_revertsForOthers() public {
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NotGuardian.selector, host));
        escrow.pause();
        vm.prank(guardian);
        escrow.pause();
        vm.prank(renter);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NotGuardian.selector, renter));
        escrow.unpause();
    }

    function test_pause_twiceReverts() public {
        vm.startPrank(guardian);
        escrow.pause();
        vm.expectRevert(Pausable.EnforcedPause.selector);
        escrow.pause();
        escrow.unpause();
        vm.expectRevert(Pausable.ExpectedPause.selector);
        escrow.unpause();
        vm.stopPrank();
    }

    function test_pause_impossibleWithoutGuardian() public {
        GpuFlowEscrow e = new GpuFlowEscrow(usd, treasury, FEE_BPS, TIMEOUT, address(0));
        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NotGuardian.selector, guardian));
        e.pause();
    }

    // ------------------------------------------------------------ nonces

    function test_cancelNonces_raisesMinimum() public {
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.NoncesCancelled(host, 10);
        vm.prank(host);
        escrow.cancelNonces(10);
        assertEq(escrow.minNonce(host), 10);
        assertEq(escrow.minNonce(stranger), 0, "per host");
    }

    function test_cancelNonces_revertsWhenNotIncreasing() public {
        vm.prank(host);
        escrow.cancelNonces(10);
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NonceNotIncreased.selector, 10, 10));
        escrow.cancelNonces(10);
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NonceNotIncreased.selector, 10, 9));
        escrow.cancelNonces(9);
    }

    function test_cancelNonces_doesNotAffectOpenLeases() public {
        Quote memory q = _quote();
        _openAndStart(q, DEPOSIT);
        vm.prank(host);
        escrow.cancelNonces(100);
        skip(10);
        vm.prank(host);
        escrow.withdraw(q);
        vm.prank(renter);
        escrow.close(q);
    }

    // ------------------------------------------------------------ views

    function test_quoteDigest_matchesEip712Spec() public view {
        Quote memory q = _quote();
        assertEq(escrow.quoteDigest(q), _digest(escrow, q));
    }

    function test_leaseIdOf_matchesDefinition() public view {
        Quote memory q = _quote();
        assertEq(escrow.leaseIdOf(q), keccak256(abi.encode(address(escrow), _structHash(q))));
        q.minDuration += 1;
        assertTrue(escrow.leaseIdOf(q) != _leaseId(escrow, _quote()), "minDuration is part of the id");
    }

    function test_domainSeparator_matchesEip712Spec() public view {
        bytes32 expected = keccak256(
            abi.encode(DOMAIN_TYPEHASH, keccak256("GpuFlowEscrow"), keccak256("1"), block.chainid, address(escrow))
        );
        assertEq(escrow.DOMAIN_SEPARATOR(), expected);
        (, string memory name, string memory version, uint256 chainId, address verifying,,) = escrow.eip712Domain();
        assertEq(name, "GpuFlowEscrow");
        assertEq(version, "1");
        assertEq(chainId, block.chainid);
        assertEq(verifying, address(escrow));
    }

    function test_quoteTypehash() public view {
        assertEq(escrow.QUOTE_TYPEHASH(), QUOTE_TYPEHASH);
    }

    function test_views_unknownLease() public view {
        bytes32 id = keccak256("nothing");
        Lease memory l = escrow.lease(id);
        assertEq(uint8(l.status), uint8(LeaseStatus.None));
        assertEq(l.deposit, 0);
        assertEq(escrow.accrued(id), 0);
        assertEq(escrow.withdrawable(id), 0);
    }

    function test_lease_packingKeepsFieldsApartAtTheirMaxima() public {
        // Every field at its maximum must read back unchanged (no bleeding between packed fields).
        Quote memory q = _quote();
        q.pricePerSecond = type(uint64).max;
        q.maxDuration = type(uint64).max;
        uint256 deposit = type(uint96).max;
        _fund(renter, deposit);
        vm.warp(uint256(type(uint40).max) - 10 days);
        q.expiry = block.timestamp;
        bytes32 id = _openAndStart(q, deposit);
        Lease memory l = escrow.lease(id);
        assertEq(l.deposit, deposit);
        assertEq(l.pricePerSecond, type(uint64).max);
        assertEq(l.since, block.timestamp);
        assertEq(l.paidUntil, block.timestamp);
        assertEq(uint8(l.status), uint8(LeaseStatus.Running));
        skip(1);
        assertEq(escrow.accrued(id), type(uint64).max);
        vm.prank(renter);
        escrow.close(q);
        l = escrow.lease(id);
        assertEq(l.deposit, deposit);
        assertEq(l.paidUntil, block.timestamp);
        assertEq(uint8(l.status), uint8(LeaseStatus.Closed));
    }

    // ------------------------------------------------------------ broken tokens

    function test_open_revertsWhenTokenHasNoCode() public {
        escrow = new GpuFlowEscrow(IERC20(makeAddr("not a token")), treasury, FEE_BPS, TIMEOUT, guardian);
        Quote memory q = _quote();
        bytes memory sig = _sign(q);
        vm.prank(renter);
        vm.expectRevert(bytes(""));
        escrow.open(q, sig, DEPOSIT);
    }

    function test_open_bubblesTheTokensBalanceOfRevert() public {
        vm.mockCallRevert(address(usd), abi.encodeCall(usd.balanceOf, (address(escrow))), "token paused");
        Quote memory q = _quote();
        bytes memory sig = _sign(q);
        vm.prank(renter);
        vm.expectRevert(bytes("token paused"));
        escrow.open(q, sig, DEPOSIT);
    }

    function test_mockStablecoin() public {
        MockStablecoin t = new MockStablecoin();
        assertEq(t.decimals(), 6);
        assertEq(t.symbol(), "mUSD");
        assertEq(t.name(), "Mock USD");
        vm.prank(stranger);
        t.mint(stranger, 5e6);
        assertEq(t.balanceOf(stranger), 5e6);
        // EIP-2612 with the EIP-712 domain (name "Mock USD", version "1").
        bytes32 domain =
            keccak256(abi.encode(DOMAIN_TYPEHASH, keccak256("Mock USD"), keccak256("1"), block.chainid, address(t)));
        assertEq(t.DOMAIN_SEPARATOR(), domain);
        (address owner, uint256 ownerKey) = makeAddrAndKey("permit owner");
        (uint8 v, bytes32 r, bytes32 s) = _signPermit(address(t), "Mock USD", ownerKey, stranger, 7, 0, block.timestamp);
        t.permit(owner, stranger, 7, block.timestamp, v, r, s);
        assertEq(t.allowance(owner, stranger), 7);
        assertEq(t.nonces(owner), 1);
    }
}
