// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @dev An ERC-777-style token: every transfer (mint excluded) first calls back a hook contract
/// that the attacker armed, once. The hook's own failure is swallowed so the transfer itself
/// succeeds; the attacker records what happened to its re-entrant call.
contract ReentrantToken is ERC20 {
    address public hook;

    constructor() ERC20("Hook USD", "hUSD") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function arm(address hook_) external {
        hook = hook_;
    }

    function _update(address from, address to, uint256 value) internal override {
        address h = hook;
        if (h != address(0) && from != address(0)) {
            hook = address(0); // one shot
            (bool ok,) = h.call(abi.encodeWithSignature("onTokenTransfer(address,address,uint256)", from, to, value));
            ok; // the attacker records the outcome itself
        }
        super._update(from, to, value);
    }
}

/// @dev A renter contract that re-enters the escrow from the token hook.
contract ReentrantRenter {
    address public immutable escrow;
    bytes public reentryCall;
    bool public reentered;
    bool public reentrySucceeded;
    bytes public reentryError;

    constructor(address escrow_) {
        escrow = escrow_;
    }

    function approve(address token, uint256 amount) external {
        (bool ok,) = token.call(abi.encodeWithSignature("approve(address,uint256)", escrow, amount));
        require(ok, "approve");
    }

    function setReentry(bytes calldata data) external {
        reentryCall = data;
    }

    /// Calls the escrow with `data` as this renter and bubbles any revert.
    function exec(bytes calldata data) external returns (bytes memory) {
        (bool ok, bytes memory ret) = escrow.call(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
        return ret;
    }

    function onTokenTransfer(address, address, uint256) external {
        reentered = true;
        (bool ok, bytes memory ret) = escrow.call(reentryCall);
        reentrySucceeded = ok;
        reentryError = ret;
    }
}
