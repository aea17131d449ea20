//! One fresh anvil with every contract deployed, per test.

#![allow(dead_code)]

use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider};
use prlx_chain::bindings::PRLX;
use prlx_chain::deploy::{confirm, deploy_dev, DevParams};
use prlx_chain::devchain::{dev_role, DevChain};
use prlx_chain::Deployment;

pub const COOLDOWN: u64 = 600;

/// A chain with the contracts on it.
pub struct World {
    pub chain: DevChain,
    pub d: Deployment,
}

impl World {
    pub async fn new() -> World {
        let chain = DevChain::spawn().expect("anvil starts (scripts/chain.sh setup installs it)");
        let params = DevParams::for_devchain(&chain, COOLDOWN);
        let provider = chain.provider(dev_role::DEPLOYER).unwrap();
        let d = deploy_dev(&provider, chain.address(dev_role::DEPLOYER), &params)
            .await
            .expect("every contract deploys");
        World { chain, d }
    }

    /// A provider signing as dev account `i`.
    pub fn as_account(&self, i: usize) -> DynProvider {
        self.chain.provider(i).unwrap()
    }

    pub fn addr(&self, i: usize) -> Address {
        self.chain.address(i)
    }

    /// Sends `amount` PRLX from the deployer (who holds the supply) to account `to`.
    pub async fn fund(&self, to: usize, amount: U256) {
        let token = PRLX::new(self.d.token.address, self.as_account(dev_role::DEPLOYER));
        confirm(
            token.transfer(self.addr(to), amount).send().await,
            "funding",
        )
        .await
        .unwrap();
    }

    /// Account `who` approves `spender` for `amount`.
    pub async fn approve(&self, who: usize, spender: Address, amount: U256) {
        let token = PRLX::new(self.d.token.address, self.as_account(who));
        confirm(token.approve(spender, amount).send().await, "approving")
            .await
            .unwrap();
    }

    pub async fn balance(&self, of: Address) -> U256 {
        PRLX::new(self.d.token.address, self.as_account(0))
            .balanceOf(of)
            .call()
            .await
            .unwrap()
    }

    /// Moves the chain's clock forward and mines a block.
    pub async fn advance(&self, seconds: u64) {
        let p = self.as_account(0);
        let _: serde_json::Value = p
            .raw_request("evm_increaseTime".into(), (seconds,))
            .await
            .unwrap();
        let _: serde_json::Value = p.raw_request("evm_mine".into(), ()).await.unwrap();
    }

    pub async fn now(&self) -> u64 {
        let p = self.as_account(0);
        let block = p
            .get_block_by_number(Default::default())
            .await
            .unwrap()
            .unwrap();
        block.header.timestamp
    }
}

/// 1 PRLX in minor units.
pub fn prlx(n: u64) -> U256 {
    U256::from(n) * U256::from(10).pow(U256::from(18))
}

/// The revert a call ended in, decoded with the contract's errors `E` ("" when it did not
/// revert; "undecoded: .." when it reverted with something else).
pub fn revert_of<E: alloy::sol_types::SolInterface + std::fmt::Debug, T>(
    r: Result<T, alloy::contract::Error>,
) -> String {
    match r {
        Ok(_) => String::new(),
        Err(e) => match e.as_decoded_interface_error::<E>() {
            Some(err) => format!("{err:?}"),
            None => format!("undecoded: {e}"),
        },
    }
}
