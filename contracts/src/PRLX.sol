// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title PRLX, the ParalleliX token for development chains
/// @notice A plain, fixed-supply ERC-20: the whole supply goes to the deployer in the
/// constructor and there is no other mint, no burn hook, no owner and no pause.
/// @dev Why fixed supply: the coordinator's accounting (deposits, stake, the reward bucket)
/// reasons about amounts that can only move between holders, never appear; a token without
/// a mint keeps that true on chain as well, so a test chain cannot drift from the log.
/// Why so little: this token exists so tests and demos have a real ERC-20 to escrow, stake,
/// stream and claim; the contracts below take any ERC-20 address at construction and do not
/// depend on anything in here beyond the standard interface. 18 decimals, the ERC-20 default.
contract PRLX is ERC20 {
    /// @notice The fixed supply, in minor units: one billion tokens of 18 decimals.
    uint256 public constant SUPPLY = 1_000_000_000 * 10 ** 18;

    /// @notice Mints the whole supply to the deployer, once.
    constructor() ERC20("ParalleliX", "PRLX") {
        _mint(msg.sender, SUPPLY);
    }
}
