// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Script} from "forge-std/Script.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {GpuFlowEscrow} from "../src/GpuFlowEscrow.sol";
import {MockStablecoin} from "../src/MockStablecoin.sol";

/// @notice Deploys GpuFlowEscrow (and, on the devnet, MockStablecoin) and writes
/// deployments/<chainId>.json for the node, the CLI and the end-to-end tests.
///
/// Environment:
///   TOKEN           ERC-20 to use. On the devnet (chain id 31337) it may be unset, and then a
///                   freely mintable MockStablecoin is deployed; on any other chain it is required.
///   TREASURY        fee recipient. Devnet default: the deployer; required on any other chain.
///   GUARDIAN        may pause `open`. Devnet default: the deployer; required on any other chain,
///                   where 0x0000000000000000000000000000000000000000 (set explicitly) means a
///                   deployment that can never be paused.
///   FEE_BPS         protocol fee in basis points, default 100 (1 %), at most 1000
///   ACCEPT_TIMEOUT  seconds a host has to start a lease, default 600
///
/// Devnet (anvil's account #0):
///   anvil --port 8547 &
///   forge script script/Deploy.s.sol --rpc-url http://127.0.0.1:8547 --broadcast \
///     --private-key 0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80
contract Deploy is Script {
    /// anvil's default chain id: the only chain where defaults and the mintable mUSD are allowed.
    uint256 public constant DEVNET_CHAIN_ID = 31_337;

    struct Deployment {
        GpuFlowEscrow escrow;
        IERC20 token;
        address treasury;
        uint16 feeBps;
        uint64 acceptTimeout;
        address guardian;
        uint256 deployBlock;
    }

    function run() external returns (Deployment memory d) {
        uint256 feeBps = vm.envOr("FEE_BPS", uint256(100));
        uint256 acceptTimeout = vm.envOr("ACCEPT_TIMEOUT", uint256(600));
        require(feeBps <= type(uint16).max, "FEE_BPS does not fit uint16");
        require(acceptTimeout <= type(uint64).max, "ACCEPT_TIMEOUT does not fit uint64");
        // Outside the devnet nothing is defaulted: a forgotten TOKEN must not deploy a token anyone
        // can mint, and a forgotten TREASURY or GUARDIAN must not silently become the deployer key.
        bool devnet = block.chainid == DEVNET_CHAIN_ID;
        (bool tokenSet, address tokenAddr) = _envAddress("TOKEN");
        (bool treasurySet, address treasury) = _envAddress("TREASURY");
        (bool guardianSet, address guardian) = _envAddress("GUARDIAN");
        if (!devnet) {
            _require(tokenSet, "TOKEN", "the ERC-20 to use");
            _require(treasurySet, "TREASURY", "the fee recipient");
            _require(guardianSet, "GUARDIAN", "may pause `open`; 0x0000000000000000000000000000000000000000 for never");
            require(tokenAddr != address(0), "TOKEN is the zero address: a deployment needs a real ERC-20");
        }
        // The chain head before our transactions: a safe lower bound for an event scanner's start.
        d.deployBlock = block.number;

        vm.startBroadcast();
        (, address deployer,) = vm.readCallers();
        d.treasury = treasurySet ? treasury : deployer;
        d.guardian = guardianSet ? guardian : deployer;
        // forge-lint: disable-next-line(unsafe-typecast)
        d.feeBps = uint16(feeBps); // range-checked by the require above
        // forge-lint: disable-next-line(unsafe-typecast)
        d.acceptTimeout = uint64(acceptTimeout); // range-checked by the require above
        // Only reachable without TOKEN on the devnet (checked above).
        d.token = tokenAddr == address(0) ? IERC20(address(new MockStablecoin())) : IERC20(tokenAddr);
        d.escrow = new GpuFlowEscrow(d.token, d.treasury, d.feeBps, d.acceptTimeout, d.guardian);
        vm.stopBroadcast();

        _write(d);
    }

    function _write(Deployment memory d) internal {
        string memory key = "deployment";
        vm.serializeUint(key, "chainId", block.chainid);
        vm.serializeAddress(key, "escrow", address(d.escrow));
        vm.serializeAddress(key, "token", address(d.token));
        vm.serializeAddress(key, "treasury", d.treasury);
        vm.serializeUint(key, "feeBps", d.feeBps);
        vm.serializeUint(key, "acceptTimeout", d.acceptTimeout);
        vm.serializeAddress(key, "guardian", d.guardian);
        string memory json = vm.serializeUint(key, "deployBlock", d.deployBlock);
        vm.createDir("deployments", true);
        vm.writeJson(json, _outputPath());
    }

    /// @dev Whether `name` is set in the environment, and its value as an address. Virtual so the
    /// tests can supply values without changing the (process-wide) environment.
    function _envAddress(string memory name) internal view virtual returns (bool set, address value) {
        set = vm.envExists(name);
        if (set) value = vm.envAddress(name);
    }

    /// @dev Where the deployment file goes; virtual so the tests do not overwrite a devnet's file.
    function _outputPath() internal view virtual returns (string memory) {
        return string.concat("deployments/", vm.toString(block.chainid), ".json");
    }

    function _require(bool set, string memory name, string memory what) internal view {
        if (!set) {
            revert(
                string.concat(
                    name,
                    " must be set (",
                    what,
                    ") on chain id ",
                    vm.toString(block.chainid),
                    ": only the devnet (31337) has defaults and a mintable MockStablecoin"
                )
            );
        }
    }
}
