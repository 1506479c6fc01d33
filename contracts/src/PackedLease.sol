// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Lease, LeaseStatus} from "./IGpuFlowEscrow.sol";

/// @dev A lease's storage slot as one word, with the bit layout the `Lease` struct would have in
/// storage: [0,96) deposit | [96,160) pricePerSecond | [160,200) since | [200,240) paidUntil |
/// [240,248) status. Packed by hand so every call does exactly one SLOAD and at most one SSTORE
/// on it and keeps the fields on the stack, which the compiler does not guarantee for a storage
/// struct. The escrow checks every range before packing.
type PackedLease is uint256;

using PackedLeaseLib for PackedLease global;

library PackedLeaseLib {
    function pack(uint256 deposit_, uint256 pricePerSecond_, uint256 since_, uint256 paidUntil_, LeaseStatus status_)
        internal
        pure
        returns (PackedLease)
    {
        return PackedLease.wrap(
            deposit_ | (pricePerSecond_ << 96) | (since_ << 160) | (paidUntil_ << 200) | (uint256(status_) << 240)
        );
    }

    function isEmpty(PackedLease w) internal pure returns (bool) {
        return PackedLease.unwrap(w) == 0;
    }

    function deposit(PackedLease w) internal pure returns (uint256) {
        return uint96(PackedLease.unwrap(w));
    }

    function pricePerSecond(PackedLease w) internal pure returns (uint256) {
        return uint64(PackedLease.unwrap(w) >> 96);
    }

    function since(PackedLease w) internal pure returns (uint256) {
        return uint40(PackedLease.unwrap(w) >> 160);
    }

    function paidUntil(PackedLease w) internal pure returns (uint256) {
        return uint40(PackedLease.unwrap(w) >> 200);
    }

    function status(PackedLease w) internal pure returns (LeaseStatus) {
        return LeaseStatus(uint8(PackedLease.unwrap(w) >> 240));
    }

    /// @dev What the host has earned by time `t` (>= since): price * whole seconds since start,
    /// capped at the deposit. An integer price times integer seconds: nothing is rounded up
    /// against the renter. price < 2^64 and t - since < 2^40, so the product cannot overflow.
    function accruedAt(PackedLease w, uint256 t) internal pure returns (uint256) {
        uint256 earned;
        unchecked {
            // Callers pass t >= since (block time only grows, paidUntil >= since).
            earned = w.pricePerSecond() * (t - w.since());
        }
        uint256 cap = w.deposit();
        return earned < cap ? earned : cap;
    }

    /// @dev What the host has been paid so far (fee included). Valid for running and closed leases.
    function paid(PackedLease w) internal pure returns (uint256) {
        return w.accruedAt(w.paidUntil());
    }

    function unpack(PackedLease w) internal pure returns (Lease memory) {
        // The casts cannot truncate: each field was range-checked before it was packed.
        return Lease({
            deposit: uint96(w.deposit()),
            pricePerSecond: uint64(w.pricePerSecond()),
            since: uint40(w.since()),
            paidUntil: uint40(w.paidUntil()),
            status: w.status()
        });
    }
}
