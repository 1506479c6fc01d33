// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title MockStablecoin (mUSD)
/// @notice DEVNET ONLY. A 6-decimal stand-in for USDC that ANYONE can mint. Never deploy it
/// where its tokens could be mistaken for money: `script/Deploy.s.sol` only deploys it on the
/// devnet chain id 31337, and only when no TOKEN address is given.
/// @dev Supports EIP-2612 `permit` like USDC (EIP-712 domain: name "Mock USD", version "1"), so
/// `openWithPermit` and `topUpWithPermit` work on the devnet.
contract MockStablecoin is ERC20, ERC20Permit {
    constructor() ERC20("Mock USD", "mUSD") ERC20Permit("Mock USD") {}

    /// @notice Same decimals as USDC, so amounts in tests and on devnet read like production ones.
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Mints `amount` base units to `to`. Unrestricted on purpose: devnet faucet.
    /// @param to The recipient.
    /// @param amount Token base units (1 mUSD = 1_000_000).
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
