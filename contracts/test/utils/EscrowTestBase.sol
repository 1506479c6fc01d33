// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Test} from "forge-std/Test.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {GpuFlowEscrow} from "../../src/GpuFlowEscrow.sol";
import {IGpuFlowEscrow, Quote, Lease, LeaseStatus, CloseReason} from "../../src/IGpuFlowEscrow.sol";
import {MockStablecoin} from "../../src/MockStablecoin.sol";

/// @dev Shared fixture: a mUSD escrow at 1 % fee and a 600 s accept timeout, one host with a
/// signing key, one renter with tokens and an allowance. Quotes are signed over a digest computed
/// here from the EIP-712 spec, and lease ids are computed here from their definition, both
/// independently of the contract's own hashing.
abstract contract EscrowTestBase is Test {
    uint16 internal constant FEE_BPS = 100;
    uint64 internal constant TIMEOUT = 600;
    /// 1000 base units per second = 3.6 mUSD per hour.
    uint256 internal constant PRICE = 1000;
    /// The host's minimum: one minute, so the default deposit must be at least 60,000 base units.
    uint256 internal constant MIN_DURATION = 60;
    uint256 internal constant MAX_DURATION = 1 days;
    uint256 internal constant DEPOSIT = PRICE * 3600;
    uint256 internal constant T0 = 1_750_000_000;

    bytes32 internal constant QUOTE_TYPEHASH = keccak256(
        "Quote(address host,address renter,uint256 pricePerSecond,uint256 minDuration,uint256 maxDuration,uint256 expiry,uint256 nonce,bytes32 specHash)"
    );
    bytes32 internal constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");
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
            minDuration: MIN_DURATION,
            maxDuration: MAX_DURATION,
            expiry: block.timestamp + 1 hours,
            nonce: nonce,
            specHash: keccak256(abi.encode("2x RTX 4090, pytorch:2.4, ssh-ed25519 AAAA", nonce))
        });
    }

    /// @dev EIP-712 struct hash of a quote, from the spec.
    function _structHash(Quote memory q) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                QUOTE_TYPEHASH,
                q.host,
                q.renter,
                q.pricePerSecond,
                q.minDuration,
                q.maxDuration,
                q.expiry,
                q.nonce,
                q.specHash
            )
        );
    }

    /// @dev EIP-712 digest (what the host signs) computed from the spec, not by the contract under
    /// test. It contains the current chain id.
    function _digest(GpuFlowEscrow e, Quote memory q) internal view returns (bytes32) {
        bytes32 domain = keccak256(
            abi.encode(DOMAIN_TYPEHASH, keccak256("GpuFlowEscrow"), keccak256("1"), block.chainid, address(e))
        );
        return keccak256(abi.encodePacked("\x19\x01", domain, _structHash(q)));
    }

    /// @dev The lease id from its definition: keccak256(abi.encode(escrow, struct hash)), no chain id.
    function _leaseId(GpuFlowEscrow e, Quote memory q) internal pure returns (bytes32) {
        return keccak256(abi.encode(address(e), _structHash(q)));
    }

    /// @dev An EIP-2612 permit signature for an OZ ERC20Permit token (domain: its `name`, "1"),
    /// computed from the spec.
    function _signPermit(
        address tokenAddr,
        string memory tokenName,
        uint256 ownerKey,
        address spender,
        uint256 value,
        uint256 nonce,
        uint256 deadline
    ) internal view returns (uint8 v, bytes32 r, bytes32 s) {
        bytes32 domain = keccak256(
            abi.encode(DOMAIN_TYPEHASH, keccak256(bytes(tokenName)), keccak256("1"), block.chainid, tokenAddr)
        );
        bytes32 structHash = keccak256(abi.encode(PERMIT_TYPEHASH, vm.addr(ownerKey), spender, value, nonce, deadline));
        (v, r, s) = vm.sign(ownerKey, keccak256(abi.encodePacked("\x19\x01", domain, structHash)));
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
