// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title MockStablecoin (mUSD)
/// @notice DEVNET ONLY. A 6-decimal stand-in for USDC that ANYONE can mint. Never deploy it
/// where its tokens could be mistaken for money: `script/Deploy.s.sol` only deploys it when no
/// TOKEN address is given.
contract MockStablecoin is ERC20 {
    constructor() ERC20("Mock USD", "mUSD") {}

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
