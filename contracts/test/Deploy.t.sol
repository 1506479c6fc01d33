// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Test} from "forge-std/Test.sol";
import {stdJson} from "forge-std/StdJson.sol";

import {Deploy} from "../script/Deploy.s.sol";
import {MockStablecoin} from "../src/MockStablecoin.sol";

/// The deployment script with its environment supplied in-process (the real environment is
/// process-wide, and tests run in parallel), writing to a test-only file so it never touches a
/// real devnet's deployments/31337.json.
contract ConfiguredDeploy is Deploy {
    mapping(bytes32 => bool) internal isSet;
    mapping(bytes32 => address) internal values;
    string internal tag;

    constructor(string memory tag_) {
        tag = tag_;
    }

    function setAddress(string memory name, address value) external {
        isSet[keccak256(bytes(name))] = true;
        values[keccak256(bytes(name))] = value;
    }

    function outputPath() external view returns (string memory) {
        return _outputPath();
    }

    function _envAddress(string memory name) internal view override returns (bool, address) {
        return (isSet[keccak256(bytes(name))], values[keccak256(bytes(name))]);
    }

    function _outputPath() internal view override returns (string memory) {
        return string.concat("deployments/test-", tag, "-", vm.toString(block.chainid), ".json");
    }
}

contract DeployTest is Test {
    using stdJson for string;

    uint256 internal constant DEVNET = 31_337;
    uint256 internal constant BASE = 8453;

    function test_deploy_withDefaultsWritesDeploymentFile() public {
        vm.chainId(DEVNET);
        vm.roll(77);
        ConfiguredDeploy script = new ConfiguredDeploy("defaults");
        Deploy.Deployment memory d = script.run();

        assertEq(d.escrow.feeBps(), 100);
        assertEq(d.escrow.acceptTimeout(), 600);
        assertEq(address(d.escrow.token()), address(d.token));
        assertEq(MockStablecoin(address(d.token)).decimals(), 6, "a MockStablecoin when TOKEN is unset");
        assertEq(d.escrow.treasury(), d.treasury);
        assertEq(d.escrow.guardian(), d.guardian);

        string memory path = script.outputPath();
        string memory json = vm.readFile(path);
        vm.removeFile(path);
        assertEq(json.readUint(".chainId"), DEVNET);
        assertEq(json.readAddress(".escrow"), address(d.escrow));
        assertEq(json.readAddress(".token"), address(d.token));
        assertEq(json.readAddress(".treasury"), d.treasury);
        assertEq(json.readAddress(".guardian"), d.guardian);
        assertEq(json.readUint(".feeBps"), 100);
        assertEq(json.readUint(".acceptTimeout"), 600);
        assertEq(json.readUint(".deployBlock"), 77);
    }

    /// The real script with the real environment (no TOKEN set) outside the devnet: no mintable
    /// token gets deployed by accident.
    function test_deploy_outsideDevnetRequiresToken() public {
        vm.chainId(BASE);
        Deploy script = new Deploy();
        vm.expectRevert(
            bytes(
                "TOKEN must be set (the ERC-20 to use) on chain id 8453: only the devnet (31337) has defaults and a mintable MockStablecoin"
            )
        );
        script.run();
    }

    function test_deploy_outsideDevnetRequiresTreasuryAndGuardian() public {
        vm.chainId(BASE);
        ConfiguredDeploy script = new ConfiguredDeploy("treasury-guardian");
        script.setAddress("TOKEN", makeAddr("usdc"));
        vm.expectRevert(
            bytes(
                "TREASURY must be set (the fee recipient) on chain id 8453: only the devnet (31337) has defaults and a mintable MockStablecoin"
            )
        );
        script.run();

        script.setAddress("TREASURY", makeAddr("treasury"));
        vm.expectRevert(
            bytes(
                "GUARDIAN must be set (may pause `open`; 0x0000000000000000000000000000000000000000 for never) on chain id 8453: only the devnet (31337) has defaults and a mintable MockStablecoin"
            )
        );
        script.run();
    }

    function test_deploy_outsideDevnetRejectsZeroToken() public {
        vm.chainId(BASE);
        ConfiguredDeploy script = new ConfiguredDeploy("zero-token");
        script.setAddress("TOKEN", address(0));
        script.setAddress("TREASURY", makeAddr("treasury"));
        script.setAddress("GUARDIAN", makeAddr("guardian"));
        vm.expectRevert(bytes("TOKEN is the zero address: a deployment needs a real ERC-20"));
        script.run();
    }

    /// With everything named, GUARDIAN explicitly zero: an unpausable deployment on the given token.
    function test_deploy_outsideDevnetWithExplicitSettings() public {
        vm.chainId(BASE);
        address usdc = address(new MockStablecoin()); // stands in for the chain's USDC
        ConfiguredDeploy script = new ConfiguredDeploy("explicit");
        script.setAddress("TOKEN", usdc);
        script.setAddress("TREASURY", makeAddr("treasury"));
        script.setAddress("GUARDIAN", address(0));
        Deploy.Deployment memory d = script.run();
        vm.removeFile(script.outputPath());

        assertEq(address(d.escrow.token()), usdc, "no token deployed");
        assertEq(d.escrow.treasury(), makeAddr("treasury"));
        assertEq(d.escrow.guardian(), address(0), "never pausable");
    }

    function test_deploy_devnetWithTokenUsesIt() public {
        vm.chainId(DEVNET);
        address token = address(new MockStablecoin());
        ConfiguredDeploy script = new ConfiguredDeploy("devnet-token");
        script.setAddress("TOKEN", token);
        Deploy.Deployment memory d = script.run();
        vm.removeFile(script.outputPath());
        assertEq(address(d.token), token);
        assertEq(d.treasury, d.guardian, "both default to the deployer on the devnet");
    }
}
