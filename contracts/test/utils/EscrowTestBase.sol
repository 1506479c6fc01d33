// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Test} from "forge-std/Test.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {GpuFlowEscrow} from "../../src/GpuFlowEscrow.sol";
import {IGpuFlowEscrow, Quote, Lease, LeaseStatus, CloseReason} from "../../src/IGpuFlowEscrow.sol";
import {MockStablecoin} from "../../src/MockStablecoin.sol";

/// @dev Shared fixture: a mUSD escrow at 1 % fee and a 600 s accept timeout, one host with a
/// signing key, one renter with tokens and an allowance. Quotes are signed over a digest computed
/// here from the EIP-712 spec, independently of the contract's own hashing.
abstract contract EscrowTestBase is Test {
    uint16 internal constant FEE_BPS = 100;
    uint64 internal constant TIMEOUT = 600;
    /// 1000 base units per second = 3.6 mUSD per hour.
    uint256 internal constant PRICE = 1000;
    uint256 internal constant MAX_DURATION = 1 days;
    uint256 internal constant DEPOSIT = PRICE * 3600;
    uint256 internal constant T0 = 1_750_000_000;

    bytes32 internal constant QUOTE_TYPEHASH = keccak256(
        "Quote(address host,address renter,uint256 pricePerSecond,uint256 maxDuration,uint256 expiry,uint256 nonce,bytes32 specHash)"
    );
    bytes32 internal constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");

    MockStablecoin internal usd;
    GpuFlowEscrow internal escrow;

    address internal treasury = makeAddr("treasury");
    address internal guardian = makeAddr("guardian");
    address internal renter = makeAddr("renter");
    address internal stranger = makeAddr("stranger");
    address internal host;
    uint256 internal hostKey;

    function setUp() public virtual {
        vm.warp(T0);
        (host, hostKey) = makeAddrAndKey("host");
        usd = new MockStablecoin();
        escrow = new GpuFlowEscrow(usd, treasury, FEE_BPS, TIMEOUT, guardian);
        _fund(renter, 1e15);
    }

    function _fund(address who, uint256 amount) internal {
        usd.mint(who, amount);
        vm.prank(who);
        usd.approve(address(escrow), type(uint256).max);
    }

    function _quote() internal view returns (Quote memory) {
        return _quoteFor(host, renter, 1);
    }

    function _quoteFor(address h, address r, uint256 nonce) internal view returns (Quote memory q) {
        q = Quote({
            host: h,
            renter: r,
            pricePerSecond: PRICE,
            maxDuration: MAX_DURATION,
            expiry: block.timestamp + 1 hours,
            nonce: nonce,
            specHash: keccak256(abi.encode("2x RTX 4090, pytorch:2.4, ssh-ed25519 AAAA", nonce))
        });
    }

    /// @dev EIP-712 digest computed from the spec, not by the contract under test.
    function _digest(GpuFlowEscrow e, Quote memory q) internal view returns (bytes32) {
        bytes32 domain = keccak256(
            abi.encode(DOMAIN_TYPEHASH, keccak256("GpuFlowEscrow"), keccak256("1"), block.chainid, address(e))
        );
        bytes32 structHash = keccak256(
            abi.encode(QUOTE_TYPEHASH, q.host, q.renter, q.pricePerSecond, q.maxDuration, q.expiry, q.nonce, q.specHash)
        );
        return keccak256(abi.encodePacked("\x19\x01", domain, structHash));
    }

    function _sign(uint256 key, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    function _sign(Quote memory q) internal view returns (bytes memory) {
        return _sign(hostKey, _digest(escrow, q));
    }

    function _open(Quote memory q, uint256 deposit) internal returns (bytes32 id) {
        bytes memory sig = _sign(q);
        vm.prank(q.renter);
        id = escrow.open(q, sig, deposit);
    }

    function _openAndStart(Quote memory q, uint256 deposit) internal returns (bytes32 id) {
        id = _open(q, deposit);
        vm.prank(q.host);
        escrow.start(q);
    }

    function _quotes1(Quote memory q) internal pure returns (Quote[] memory qs) {
        qs = new Quote[](1);
        qs[0] = q;
    }

    function _fee(uint256 gross) internal pure returns (uint256) {
        return gross * FEE_BPS / 10_000;
    }

    function _status(bytes32 id) internal view returns (LeaseStatus) {
        return escrow.lease(id).status;
    }
}
