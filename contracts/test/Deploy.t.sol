// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Test} from "forge-std/Test.sol";
import {stdJson} from "forge-std/StdJson.sol";

import {Deploy} from "../script/Deploy.s.sol";
import {MockStablecoin} from "../src/MockStablecoin.sol";

/// Runs the deployment script in-process (defaults, no env) on a throwaway chain id, so it does
/// not touch a real devnet's deployments/31337.json.
contract DeployTest is Test {
    using stdJson for string;

    uint256 internal constant CHAIN_ID = 424_242;
    string internal path = "deployments/424242.json";

    function test_deploy_withDefaultsWritesDeploymentFile() public {
        vm.chainId(CHAIN_ID);
        vm.roll(77);
        Deploy.Deployment memory d = new Deploy().run();

        assertEq(d.escrow.feeBps(), 100);
        assertEq(d.escrow.acceptTimeout(), 600);
        assertEq(address(d.escrow.token()), address(d.token));
        assertEq(MockStablecoin(address(d.token)).decimals(), 6, "a MockStablecoin when TOKEN is unset");
        assertEq(d.escrow.treasury(), d.treasury);
        assertEq(d.escrow.guardian(), d.guardian);

        string memory json = vm.readFile(path);
        vm.removeFile(path);
        assertEq(json.readUint(".chainId"), CHAIN_ID);
        assertEq(json.readAddress(".escrow"), address(d.escrow));
        assertEq(json.readAddress(".token"), address(d.token));
        assertEq(json.readAddress(".treasury"), d.treasury);
        assertEq(json.readAddress(".guardian"), d.guardian);
        assertEq(json.readUint(".feeBps"), 100);
        assertEq(json.readUint(".acceptTimeout"), 600);
        assertEq(json.readUint(".deployBlock"), 77);
    }
}
