// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @title NodeStaking: PRLX bonded behind a compute node, returned in full after a cooldown
/// @notice A node is named by `nodeId`, the SHA-256 of its public key (computed off chain, the
/// same id the coordinator uses). The first address to stake for a node id becomes its staker
/// for good; only the staker may add to the stake, request an unstake or withdraw.
/// An unstake moves an amount from bonded to pending; once the cooldown (fixed at
/// construction) has passed, `withdraw` pays the pending amount to the staker.
/// @dev The guarantee this contract exists for: **stake is never seized.** There is no
/// owner, no admin, no slashing, no pause, no upgrade and no sweep. The only transfer out of
/// this contract is in `withdraw`, and it sends to `stakerOf[nodeId]`, which is set once, by
/// the first `stake`, to that caller, and never changes. So whatever the coordinator decides
/// about a node (flagged, removed), the principal can only go back to who put it in.
///
/// One pending unstake per node at a time: `requestUnstake` is refused while an earlier one
/// has not been withdrawn. Why: each `UnstakeRequested` is then matched by exactly one later
/// `Withdrawn` of the same amount, so an indexer (the coordinator) never has to merge pending
/// amounts or move unlock times it already recorded. A staker who wants more out waits for
/// the cooldown, withdraws, and asks again.
///
/// Bookkeeping is per node, in the amounts passed in; the token must move exactly the amount
/// asked (PRLX does; fee-on-transfer tokens are not supported).
contract NodeStaking {
    using SafeERC20 for IERC20;

    /// @notice An unstake on its way out: `amount` is withdrawable from `unlockAt` on.
    struct Pending {
        uint256 amount;
        uint256 unlockAt;
    }

    /// @notice The staked token (PRLX).
    IERC20 public immutable token;
    /// @notice Seconds from an unstake request until its amount can be withdrawn.
    uint256 public immutable cooldown;

    /// @notice The address that staked first for a node id (zero: never staked).
    mapping(bytes32 nodeId => address) public stakerOf;
    /// @notice PRLX bonded for a node id: counted by the coordinator's weighting.
    mapping(bytes32 nodeId => uint256) public bonded;
    mapping(bytes32 nodeId => Pending) private _pending;

    /// @notice `amount` was bonded for `nodeId` by its staker; `bonded` is the new total.
    event Staked(bytes32 indexed nodeId, address indexed staker, uint256 amount, uint256 bonded);
    /// @notice `amount` left the bond of `nodeId` (now `bonded`) and is withdrawable from `unlockAt`.
    event UnstakeRequested(
        bytes32 indexed nodeId, address indexed staker, uint256 amount, uint256 unlockAt, uint256 bonded
    );
    /// @notice The pending `amount` of `nodeId` was paid back to its staker.
    event Withdrawn(bytes32 indexed nodeId, address indexed staker, uint256 amount);

    /// @notice An amount of zero.
    error ZeroAmount();
    /// @notice The zero node id (no key hashes to it; almost certainly a caller bug).
    error ZeroNodeId();
    /// @notice The caller is not the staker of this node id.
    error NotStaker(bytes32 nodeId, address caller, address staker);
    /// @notice An unstake of more than is bonded.
    error InsufficientBond(bytes32 nodeId, uint256 requested, uint256 bonded);
    /// @notice An unstake requested while an earlier one has not been withdrawn.
    error UnstakeAlreadyPending(bytes32 nodeId, uint256 amount, uint256 unlockAt);
    /// @notice `withdraw` with nothing pending.
    error NothingPending(bytes32 nodeId);
    /// @notice `withdraw` before the cooldown has passed.
    error StillLocked(bytes32 nodeId, uint256 unlockAt);
    /// @notice The zero token address at construction.
    error ZeroAddress();

    /// @param token_ the staked ERC-20 (PRLX)
    /// @param cooldown_ seconds from an unstake request until withdrawal (zero allowed: tests)
    constructor(IERC20 token_, uint256 cooldown_) {
        if (address(token_) == address(0)) revert ZeroAddress();
        token = token_;
        cooldown = cooldown_;
    }

    /// @notice Bonds `amount` PRLX (pulled from the caller, who must have approved it) for
    /// `nodeId`. The first caller for a node id becomes its staker; later, only that staker
    /// may add to it.
    /// @dev Principal: comes in from the caller, who is (or here becomes) the staker.
    function stake(bytes32 nodeId, uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        if (nodeId == bytes32(0)) revert ZeroNodeId();
        address staker = stakerOf[nodeId];
        if (staker == address(0)) {
            stakerOf[nodeId] = msg.sender;
        } else if (staker != msg.sender) {
            revert NotStaker(nodeId, msg.sender, staker);
        }
        uint256 total = bonded[nodeId] + amount;
        bonded[nodeId] = total;
        token.safeTransferFrom(msg.sender, address(this), amount);
        emit Staked(nodeId, msg.sender, amount, total);
    }

    /// @notice Moves `amount` of the bond of `nodeId` to pending, withdrawable after the
    /// cooldown. Only the staker; one pending unstake at a time.
    /// @dev Principal: moves between two entries of the same node; no transfer.
    function requestUnstake(bytes32 nodeId, uint256 amount) external {
        _onlyStaker(nodeId);
        if (amount == 0) revert ZeroAmount();
        Pending storage p = _pending[nodeId];
        if (p.amount != 0) revert UnstakeAlreadyPending(nodeId, p.amount, p.unlockAt);
        uint256 have = bonded[nodeId];
        if (amount > have) revert InsufficientBond(nodeId, amount, have);
        uint256 left = have - amount;
        bonded[nodeId] = left;
        uint256 unlockAt = block.timestamp + cooldown;
        p.amount = amount;
        p.unlockAt = unlockAt;
        emit UnstakeRequested(nodeId, msg.sender, amount, unlockAt, left);
    }

    /// @notice Pays the pending unstake of `nodeId` to its staker once unlocked.
    /// Only the staker.
    /// @dev Principal: the only transfer out of this contract, and its recipient is
    /// `stakerOf[nodeId]` (here equal to msg.sender), set once and never changed. State is
    /// cleared before the transfer (checks-effects-interactions).
    function withdraw(bytes32 nodeId) external {
        _onlyStaker(nodeId);
        Pending memory p = _pending[nodeId];
        if (p.amount == 0) revert NothingPending(nodeId);
        if (block.timestamp < p.unlockAt) revert StillLocked(nodeId, p.unlockAt);
        delete _pending[nodeId];
        token.safeTransfer(msg.sender, p.amount);
        emit Withdrawn(nodeId, msg.sender, p.amount);
    }

    /// @notice The pending unstake of `nodeId`: its amount (0: none) and when it unlocks.
    function pendingOf(bytes32 nodeId) external view returns (uint256 amount, uint256 unlockAt) {
        Pending memory p = _pending[nodeId];
        return (p.amount, p.unlockAt);
    }

    function _onlyStaker(bytes32 nodeId) private view {
        address staker = stakerOf[nodeId];
        // An unstaked node id has staker 0, which no caller can be.
        if (msg.sender != staker) revert NotStaker(nodeId, msg.sender, staker);
    }
}
