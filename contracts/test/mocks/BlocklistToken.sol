// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @dev A USDC-like token with a blocklist: transfers from or to a blocked address fail, either
/// by reverting (USDC) or by returning false (older tokens), depending on `returnFalse`. Like
/// USDC it also supports EIP-2612 permits (which the blocklist does not affect).
contract BlocklistToken is ERC20, ERC20Permit {
    mapping(address => bool) public blocked;
    bool public returnFalse;

    error Blocked(address account);

    constructor() ERC20("Blocklist USD", "bUSD") ERC20Permit("Blocklist USD") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function setBlocked(address account, bool isBlocked) external {
        blocked[account] = isBlocked;
    }

    function setReturnFalse(bool on) external {
        returnFalse = on;
    }

    function transfer(address to, uint256 value) public override returns (bool) {
        if (blocked[msg.sender] || blocked[to]) return _fail(blocked[to] ? to : msg.sender);
        return super.transfer(to, value);
    }

    function transferFrom(address from, address to, uint256 value) public override returns (bool) {
        if (blocked[from] || blocked[to]) return _fail(blocked[to] ? to : from);
        return super.transferFrom(from, to, value);
    }

    function _fail(address account) private view returns (bool) {
        if (returnFalse) return false;
        revert Blocked(account);
    }
}
