// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {GpuFlowEscrow} from "../src/GpuFlowEscrow.sol";
import {EscrowTestBase, IGpuFlowEscrow} from "./utils/EscrowTestBase.sol";

contract RegistryTest is EscrowTestBase {
    /// An ed25519 libp2p peer id: identity multihash (0x00 0x24) of the protobuf-encoded key.
    bytes internal constant PEER_ID = hex"002408011220a2f1c3e4b5d69788a2f1c3e4b5d69788a2f1c3e4b5d69788a2f1c3e4b5d69788";
    bytes internal constant PEER_ID_2 =
        hex"0024080112201111111111111111111111111111111111111111111111111111111111111111";

    function setUp() public override {
        super.setUp();
        _fund(host, 1_000e6);
    }

    function _hostEntry(address who) internal view returns (bytes memory peerId, uint256 at, uint256 bond) {
        return escrow.hosts(who);
    }

    function test_registerHost_withoutBond() public {
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.HostRegistered(host, PEER_ID, block.timestamp, 0);
        vm.prank(host);
        escrow.registerHost(PEER_ID, 0);
        (bytes memory peerId, uint256 at, uint256 bond) = _hostEntry(host);
        assertEq(peerId, PEER_ID);
        assertEq(at, block.timestamp);
        assertEq(bond, 0);
        assertEq(escrow.bondUnlockAt(host), 0);
    }

    function test_registerHost_withBondPullsTokens() public {
        vm.prank(host);
        escrow.registerHost(PEER_ID, 100e6);
        (,, uint256 bond) = _hostEntry(host);
        assertEq(bond, 100e6);
        assertEq(usd.balanceOf(address(escrow)), 100e6);
    }

    function test_registerHost_againKeepsFirstTimeAndAddsBond() public {
        vm.prank(host);
        escrow.registerHost(PEER_ID, 100e6);
        uint256 first = block.timestamp;
        skip(30 days);
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.HostRegistered(host, PEER_ID_2, first, 150e6);
        vm.prank(host);
        escrow.registerHost(PEER_ID_2, 50e6);
        (bytes memory peerId, uint256 at, uint256 bond) = _hostEntry(host);
        assertEq(peerId, PEER_ID_2, "peer id replaced");
        assertEq(at, first, "host age is not reset");
        assertEq(bond, 150e6);
    }

    function test_registerHost_rejectsEmptyAndOversizedPeerIds() public {
        uint256 max = escrow.MAX_PEER_ID_LENGTH();
        vm.startPrank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.PeerIdLength.selector, 0));
        escrow.registerHost("", 0);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.PeerIdLength.selector, max + 1));
        escrow.registerHost(new bytes(max + 1), 0);
        escrow.registerHost(new bytes(max), 0);
        vm.stopPrank();
    }

    function test_registerHost_rejectsBondAboveUint96() public {
        uint256 tooBig = uint256(type(uint96).max) + 1;
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.AmountTooLarge.selector, tooBig));
        escrow.registerHost(PEER_ID, tooBig);
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.AmountTooLarge.selector, type(uint256).max));
        escrow.registerHost(PEER_ID, type(uint256).max);

        _fund(host, type(uint96).max);
        vm.prank(host);
        escrow.registerHost(PEER_ID, type(uint96).max);
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.AmountTooLarge.selector, tooBig));
        escrow.registerHost(PEER_ID, 1);
    }

    function test_unregisterHost_clearsPeerIdAndStartsDelay() public {
        vm.prank(host);
        escrow.registerHost(PEER_ID, 100e6);
        uint256 unlockAt = block.timestamp + escrow.BOND_UNLOCK_DELAY();
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.HostUnregistered(host, unlockAt);
        vm.prank(host);
        escrow.unregisterHost();
        (bytes memory peerId, uint256 at, uint256 bond) = _hostEntry(host);
        assertEq(peerId.length, 0);
        assertEq(at, T0, "registration time stays on record");
        assertEq(bond, 100e6, "bond stays locked");
        assertEq(escrow.bondUnlockAt(host), unlockAt);
    }

    function test_unregisterHost_revertsWhenNotRegistered() public {
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.HostNotRegistered.selector, host));
        escrow.unregisterHost();
    }

    function test_withdrawBond_afterDelay() public {
        vm.prank(host);
        escrow.registerHost(PEER_ID, 100e6);
        vm.prank(host);
        escrow.unregisterHost();
        uint256 unlockAt = escrow.bondUnlockAt(host);
        uint256 before = usd.balanceOf(host);

        vm.warp(unlockAt - 1);
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.BondLocked.selector, unlockAt, unlockAt - 1));
        escrow.withdrawBond();

        vm.warp(unlockAt);
        vm.expectEmit(address(escrow));
        emit IGpuFlowEscrow.BondWithdrawn(host, 100e6);
        vm.prank(host);
        escrow.withdrawBond();
        assertEq(usd.balanceOf(host), before + 100e6);
        (,, uint256 bond) = _hostEntry(host);
        assertEq(bond, 0);

        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NoBond.selector, host));
        escrow.withdrawBond();
    }

    function test_withdrawBond_revertsWhileRegistered() public {
        vm.prank(host);
        escrow.registerHost(PEER_ID, 100e6);
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.HostStillRegistered.selector, host));
        escrow.withdrawBond();
    }

    function test_withdrawBond_revertsWithoutBond() public {
        vm.prank(host);
        escrow.registerHost(PEER_ID, 0);
        vm.prank(host);
        escrow.unregisterHost();
        skip(8 days);
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.NoBond.selector, host));
        escrow.withdrawBond();
    }

    function test_security_bondCannotBeFlashWithdrawn() public {
        // Register, unregister and re-register: the re-registration cancels the unlock, so a host
        // cannot keep a "registered with bond" face while its bond is already unlocking.
        vm.prank(host);
        escrow.registerHost(PEER_ID, 100e6);
        vm.prank(host);
        escrow.unregisterHost();
        skip(6 days);
        vm.prank(host);
        escrow.registerHost(PEER_ID, 0);
        assertEq(escrow.bondUnlockAt(host), 0);
        skip(2 days);
        vm.prank(host);
        vm.expectRevert(abi.encodeWithSelector(IGpuFlowEscrow.HostStillRegistered.selector, host));
        escrow.withdrawBond();
        // Leaving again starts a fresh full delay.
        vm.prank(host);
        escrow.unregisterHost();
        assertEq(escrow.bondUnlockAt(host), block.timestamp + 7 days);
    }

    function test_registry_isPerWallet() public {
        vm.prank(host);
        escrow.registerHost(PEER_ID, 0);
        (bytes memory peerId,,) = _hostEntry(stranger);
        assertEq(peerId.length, 0);
        // The registry does not prove peer-id ownership; a squatter gains nothing because clients
        // also require the peer's signed offer to name the wallet.
        vm.prank(stranger);
        escrow.registerHost(PEER_ID, 0);
        (peerId,,) = _hostEntry(stranger);
        assertEq(peerId, PEER_ID);
    }

    function test_registry_bondIsPartOfTheLiabilities() public {
        vm.prank(host);
        escrow.registerHost(PEER_ID, 100e6);
        GpuFlowEscrow e = escrow;
        assertEq(usd.balanceOf(address(e)), 100e6);
        vm.prank(host);
        vm.expectRevert(IGpuFlowEscrow.NoFeesToSweep.selector);
        e.sweepFees(); // the bond is not fee income
    }
}
