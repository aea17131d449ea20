// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @title CreditEscrow: where buyers' PRLX waits until the usage it paid for is settled
/// @notice Anyone deposits PRLX for an account; the coordinator credits the account when it
/// sees the `Deposited` event. Once per epoch the coordinator's key (the `settler`) moves the
/// income of that epoch out, split 85 / 10 / 5 between the rewards distributor (operators),
/// the treasury and infrastructure. Those four addresses are fixed at construction.
/// @dev Why so few ways out: the only function that moves escrowed tokens is `settleUsage`,
/// it can be called only by the settler, only once per epoch, and it can only send to the
/// three payees fixed at construction. There is no owner, no upgrade and no sweep, so a
/// stolen settler key can at worst settle an epoch early or with a wrong amount, towards the
/// same three payees; it cannot send tokens anywhere else.
/// The split uses the same integer rule as the coordinator's settlement
/// (docs/settlement.md): treasury = floor(amount * 10 / 100), infra = floor(amount * 5 / 100),
/// operators get the rest, so the three parts add up to `amount` exactly and the rounding
/// (under 2 minor units) goes to operators.
/// Tokens sent here by plain `transfer` (not `deposit`) credit nobody and are only ever paid
/// out through `settleUsage`, like every other escrowed token.
contract CreditEscrow {
    using SafeERC20 for IERC20;

    /// @notice Treasury share of settled income, percent.
    uint256 public constant TREASURY_PCT = 10;
    /// @notice Infrastructure share of settled income, percent.
    uint256 public constant INFRA_PCT = 5;

    /// @notice The escrowed token (PRLX).
    IERC20 public immutable token;
    /// @notice The only address that may call `settleUsage`: the coordinator's key.
    address public immutable settler;
    /// @notice Receives the operators' share (85 % and the rounding): the RewardsDistributor.
    address public immutable operators;
    /// @notice Receives the treasury share.
    address public immutable treasury;
    /// @notice Receives the infrastructure share.
    address public immutable infra;

    /// @notice Whether an epoch has been settled (each settles at most once).
    mapping(uint256 epoch => bool) public settled;

    /// @notice PRLX arrived for `account`, paid by `payer`. The coordinator credits `account`.
    event Deposited(address indexed account, address indexed payer, uint256 amount);
    /// @notice The income of `epoch` left escrow; the three parts add up to the settled amount.
    event UsageSettled(uint256 indexed epoch, uint256 operators, uint256 treasury, uint256 infra);

    /// @notice An amount of zero: a deposit or settlement of nothing is a caller bug.
    error ZeroAmount();
    /// @notice A zero address where an address is needed (constructor, deposit account).
    error ZeroAddress();
    /// @notice `settleUsage` called by someone other than the settler.
    error NotSettler(address caller);
    /// @notice `settleUsage` for an epoch that has already been settled.
    error EpochAlreadySettled(uint256 epoch);

    /// @param token_ the escrowed ERC-20 (PRLX)
    /// @param settler_ the coordinator's address, the only one that may settle
    /// @param operators_ the RewardsDistributor, which receives the operators' share
    /// @param treasury_ receives 10 %
    /// @param infra_ receives 5 %
    constructor(IERC20 token_, address settler_, address operators_, address treasury_, address infra_) {
        if (
            address(token_) == address(0) || settler_ == address(0) || operators_ == address(0)
                || treasury_ == address(0) || infra_ == address(0)
        ) revert ZeroAddress();
        token = token_;
        settler = settler_;
        operators = operators_;
        treasury = treasury_;
        infra = infra_;
    }

    /// @notice Pulls `amount` PRLX from the caller (who must have approved this contract) and
    /// records it for `account`. The payer and the account may differ, so a wallet or a faucet
    /// can top up someone else's credits.
    /// @dev The event is emitted after the transfer succeeded, so an event always means the
    /// tokens are here: the coordinator may credit on it (after its confirmation depth).
    function deposit(address account, uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        if (account == address(0)) revert ZeroAddress();
        token.safeTransferFrom(msg.sender, address(this), amount);
        emit Deposited(account, msg.sender, amount);
    }

    /// @notice Moves the usage income of `epoch` out of escrow: 10 % to the treasury, 5 % to
    /// infra, the rest (85 % and the rounding) to the rewards distributor.
    /// @dev Only the settler; once per epoch (marked before the transfers, so a re-entrant
    /// token could not settle the same epoch twice). Epochs need not arrive in order: a late
    /// settlement of an older epoch is still exactly-once.
    function settleUsage(uint256 epoch, uint256 amount) external {
        if (msg.sender != settler) revert NotSettler(msg.sender);
        if (amount == 0) revert ZeroAmount();
        if (settled[epoch]) revert EpochAlreadySettled(epoch);
        settled[epoch] = true;

        uint256 toTreasury = (amount * TREASURY_PCT) / 100;
        uint256 toInfra = (amount * INFRA_PCT) / 100;
        uint256 toOperators = amount - toTreasury - toInfra;

        // amount > 0 makes toOperators > 0; the two small shares are 0 below 10 and 20 minor
        // units, and a zero transfer is skipped (some ERC-20s refuse them).
        token.safeTransfer(operators, toOperators);
        if (toTreasury != 0) token.safeTransfer(treasury, toTreasury);
        if (toInfra != 0) token.safeTransfer(infra, toInfra);
        emit UsageSettled(epoch, toOperators, toTreasury, toInfra);
    }
}
