// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title RewardsDistributor: one Merkle root per epoch, one claim per node and epoch
/// @notice The coordinator (the `poster`) settles an epoch off chain and posts a single
/// transaction per epoch: the Merkle root of its payouts, the head of its event log at that
/// point (so anyone can fetch the log and re-derive the root with the auditor) and the
/// epoch's total. Each operator then claims its own leaf with a proof; the PRLX goes to the
/// recipient named in the leaf, whoever sends the transaction (a relayer may pay the gas).
/// @dev Why a root and not transfers: posting costs one transaction per epoch however many
/// operators earned, and each operator pays only for its own claim.
///
/// Leaf: `keccak256(bytes.concat(keccak256(abi.encode(epoch, nodeId, recipient, amount))))`
/// with types (uint256, bytes32, address, uint256) -- OpenZeppelin's standard double-hashed
/// leaf (the second hash keeps a 64-byte inner node from passing as a leaf). Inner nodes
/// hash the sorted pair, as `MerkleProof` expects.
///
/// Funding: the Sablier stream's withdrawals (its recipient is this contract) and the 85 %
/// share of CreditEscrow's usage settlements arrive as plain transfers.
///
/// Solvency rule: `postEpoch` requires `balance >= outstanding + total`, where
/// `outstanding = totalPosted - totalClaimed` is what earlier posted epochs still owe.
/// Claims lower the balance and `outstanding` by the same amount, so once an epoch is posted
/// every claim of every posted epoch can be paid, whatever order they come in. A claim may
/// also never take an epoch past its posted `total`, so a wrong root cannot dip into what
/// other epochs are owed. Unclaimed amounts stay owed forever (no expiry, no sweep).
contract RewardsDistributor {
    using SafeERC20 for IERC20;

    /// @notice What was posted for an epoch.
    struct Epoch {
        bytes32 root;
        bytes32 logHead;
        uint256 total;
        uint256 claimed;
    }

    /// @notice The paid token (PRLX).
    IERC20 public immutable token;
    /// @notice The only address that may post epochs: the coordinator's key.
    address public immutable poster;

    /// @notice The lowest epoch number `postEpoch` accepts next: 0 until the first post, then
    /// the last posted epoch + 1 (epochs strictly increase; epoch 0 is a real epoch).
    uint256 public nextEpoch;
    /// @notice Sum of the totals of every posted epoch.
    uint256 public totalPosted;
    /// @notice Sum of every claim paid.
    uint256 public totalClaimed;

    mapping(uint256 epoch => Epoch) private _epochs;
    mapping(uint256 epoch => mapping(bytes32 nodeId => bool)) private _claimed;

    /// @notice The payouts of `epoch` were posted: their Merkle `root`, the coordinator's log
    /// head they were settled at, and their `total`.
    event EpochPosted(uint256 indexed epoch, bytes32 root, bytes32 logHead, uint256 total);
    /// @notice `nodeId`'s payout of `epoch` went to `recipient`.
    event Claimed(uint256 indexed epoch, bytes32 indexed nodeId, address indexed recipient, uint256 amount);

    /// @notice `postEpoch` called by someone other than the poster.
    error NotPoster(address caller);
    /// @notice An epoch not above every posted one (a repeat, or out of order).
    error EpochNotIncreasing(uint256 epoch, uint256 nextEpoch);
    /// @notice The zero root (no tree hashes to it; a caller bug).
    error ZeroRoot();
    /// @notice Posting `total` would owe more than the contract holds.
    error Underfunded(uint256 balance, uint256 owed);
    /// @notice A claim for an epoch never posted.
    error UnknownEpoch(uint256 epoch);
    /// @notice This node's payout of this epoch was already claimed.
    error AlreadyClaimed(uint256 epoch, bytes32 nodeId);
    /// @notice The proof does not lead from this leaf to the epoch's root.
    error InvalidProof();
    /// @notice The claim would take the epoch past its posted total.
    error ExceedsEpochTotal(uint256 epoch, uint256 claimed, uint256 amount, uint256 total);
    /// @notice A claim of zero.
    error ZeroAmount();
    /// @notice A zero address where an address is needed.
    error ZeroAddress();

    /// @param token_ the paid ERC-20 (PRLX)
    /// @param poster_ the coordinator's address, the only one that may post epochs
    constructor(IERC20 token_, address poster_) {
        if (address(token_) == address(0) || poster_ == address(0)) revert ZeroAddress();
        token = token_;
        poster = poster_;
    }

    /// @notice Posts the payouts of `epoch`. Only the poster; epochs strictly increase (a
    /// repeat reverts); the contract must already hold what every posted epoch still owes
    /// plus `total` (see the solvency rule above).
    /// @param epoch the coordinator's epoch number (epoch 0 is valid)
    /// @param root Merkle root over the epoch's leaves (see the leaf format above)
    /// @param logHead the coordinator's log head (hash chain) the payouts were settled at
    /// @param total the sum of the epoch's leaves' amounts
    function postEpoch(uint256 epoch, bytes32 root, bytes32 logHead, uint256 total) external {
        if (msg.sender != poster) revert NotPoster(msg.sender);
        if (epoch < nextEpoch) revert EpochNotIncreasing(epoch, nextEpoch);
        if (root == bytes32(0)) revert ZeroRoot();
        uint256 owed = totalPosted - totalClaimed + total;
        uint256 balance = token.balanceOf(address(this));
        if (balance < owed) revert Underfunded(balance, owed);

        _epochs[epoch] = Epoch({root: root, logHead: logHead, total: total, claimed: 0});
        totalPosted += total;
        nextEpoch = epoch + 1;
        emit EpochPosted(epoch, root, logHead, total);
    }

    /// @notice Pays `nodeId`'s payout of `epoch` to `recipient`, given the Merkle `proof` of
    /// the leaf (epoch, nodeId, recipient, amount). Anyone may send it; the tokens go to the
    /// recipient in the leaf. Each (epoch, nodeId) pays once.
    function claim(uint256 epoch, bytes32 nodeId, address recipient, uint256 amount, bytes32[] calldata proof)
        external
    {
        if (recipient == address(0)) revert ZeroAddress();
        if (amount == 0) revert ZeroAmount();
        Epoch storage e = _epochs[epoch];
        if (e.root == bytes32(0)) revert UnknownEpoch(epoch);
        if (_claimed[epoch][nodeId]) revert AlreadyClaimed(epoch, nodeId);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(epoch, nodeId, recipient, amount))));
        if (!MerkleProof.verifyCalldata(proof, e.root, leaf)) revert InvalidProof();
        uint256 after_ = e.claimed + amount;
        if (after_ > e.total) revert ExceedsEpochTotal(epoch, e.claimed, amount, e.total);

        _claimed[epoch][nodeId] = true;
        e.claimed = after_;
        totalClaimed += amount;
        token.safeTransfer(recipient, amount);
        emit Claimed(epoch, nodeId, recipient, amount);
    }

    /// @notice Whether `nodeId`'s payout of `epoch` has been claimed.
    function claimed(uint256 epoch, bytes32 nodeId) external view returns (bool) {
        return _claimed[epoch][nodeId];
    }

    /// @notice What was posted for `epoch` (all zero: not posted) and how much of it is claimed.
    function epochOf(uint256 epoch)
        external
        view
        returns (bytes32 root, bytes32 logHead, uint256 total, uint256 claimedAmount)
    {
        Epoch memory e = _epochs[epoch];
        return (e.root, e.logHead, e.total, e.claimed);
    }

    /// @notice What posted epochs still owe: `totalPosted - totalClaimed`.
    function outstanding() external view returns (uint256) {
        return totalPosted - totalClaimed;
    }
}
