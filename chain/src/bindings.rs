//! Typed bindings of the contracts, generated at compile time.
//!
//! Ours come from the checked-in artifacts under `contracts/out/` (ABI and creation bytecode,
//! so `deploy` is generated too); a change to a contract therefore shows up here as a
//! compile error wherever a call no longer fits. Sablier's Lockup is declared by hand below,
//! only the functions the coordinator and the deployment call: its artifacts come from npm at
//! run time (see [`crate::artifact`]) and are not in the repository.

// The generated code has no docs of its own; the contracts' NatSpec is the documentation.
#![allow(
    missing_docs,
    missing_debug_implementations,
    clippy::too_many_arguments
)]

use alloy::sol;

sol!(
    #[sol(rpc, all_derives)]
    PRLX,
    "../contracts/out/PRLX.json"
);

sol!(
    #[sol(rpc, all_derives)]
    CreditEscrow,
    "../contracts/out/CreditEscrow.json"
);

sol!(
    #[sol(rpc, all_derives)]
    NodeStaking,
    "../contracts/out/NodeStaking.json"
);

sol!(
    #[sol(rpc, all_derives)]
    RewardsDistributor,
    "../contracts/out/RewardsDistributor.json"
);

sol! {
    /// The part of Sablier Lockup v4 (`@sablier/lockup` 4.0.1) used here: creating the
    /// linear bootstrap stream and reading or withdrawing what it has unlocked. Parameter
    /// shapes follow the package's ABI (`artifacts/SablierLockup.json`).
    #[sol(rpc, all_derives)]
    interface ISablierLockup {
        struct CreateWithDurations {
            address sender;
            address recipient;
            uint128 depositAmount;
            address token;
            bool cancelable;
            bool transferable;
            string shape;
        }
        struct UnlockAmounts {
            uint128 start;
            uint128 cliff;
        }
        struct Durations {
            uint40 cliff;
            uint40 total;
        }

        function createWithDurationsLL(
            CreateWithDurations params,
            UnlockAmounts unlockAmounts,
            uint40 granularity,
            Durations durations
        ) external payable returns (uint256 streamId);
        function withdrawableAmountOf(uint256 streamId) external view returns (uint128 withdrawableAmount);
        function streamedAmountOf(uint256 streamId) external view returns (uint128 streamedAmount);
        function getDepositedAmount(uint256 streamId) external view returns (uint128 depositedAmount);
        function getWithdrawnAmount(uint256 streamId) external view returns (uint128 withdrawnAmount);
        function getRecipient(uint256 streamId) external view returns (address recipient);
        function getStartTime(uint256 streamId) external view returns (uint40 startTime);
        function getEndTime(uint256 streamId) external view returns (uint40 endTime);
        function getCliffTime(uint256 streamId) external view returns (uint40 cliffTime);
        function getGranularity(uint256 streamId) external view returns (uint40 granularity);
        function getUnlockAmounts(uint256 streamId) external view returns (UnlockAmounts unlockAmounts);
        function isCancelable(uint256 streamId) external view returns (bool result);
        function calculateMinFeeWei(uint256 streamId) external view returns (uint256 minFeeWei);
        function withdrawMax(uint256 streamId, address to) external payable returns (uint128 withdrawnAmount);
    }
}
