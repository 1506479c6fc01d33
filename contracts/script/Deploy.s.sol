// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Script} from "forge-std/Script.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {GpuFlowEscrow} from "../src/GpuFlowEscrow.sol";
import {MockStablecoin} from "../src/MockStablecoin.sol";

/// @notice Deploys GpuFlowEscrow (and, on a devnet, MockStablecoin) and writes
/// deployments/<chainId>.json for the node, the CLI and the end-to-end tests.
///
/// Environment (all optional):
///   TOKEN           ERC-20 to use; when unset a MockStablecoin (devnet only!) is deployed
///   FEE_BPS         protocol fee in basis points, default 100 (1 %), at most 1000
///   ACCEPT_TIMEOUT  seconds a host has to start a lease, default 600
///   TREASURY        fee recipient, default the deployer
///   GUARDIAN        may pause `open`, default the deployer
///
/// Devnet:
///   anvil --port 8547 &
///   forge script script/Deploy.s.sol --rpc-url http://127.0.0.1:8547 --broadcast \
///     --private-key 0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcb5d1f3f4f2ff80
contract Deploy is Script {
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
        // The chain head before our transactions: a safe lower bound for an event scanner's start.
        d.deployBlock = block.number;

        vm.startBroadcast();
        (, address deployer,) = vm.readCallers();
        d.treasury = vm.envOr("TREASURY", deployer);
        d.guardian = vm.envOr("GUARDIAN", deployer);
        // forge-lint: disable-next-line(unsafe-typecast)
        d.feeBps = uint16(feeBps); // range-checked by the require above
        // forge-lint: disable-next-line(unsafe-typecast)
        d.acceptTimeout = uint64(acceptTimeout); // range-checked by the require above
        address tokenAddr = vm.envOr("TOKEN", address(0));
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
        vm.writeJson(json, string.concat("deployments/", vm.toString(block.chainid), ".json"));
    }
}
