//! A private anvil with every contract deployed, for the process tests whose coordinator needs
//! credits: no endpoint credits an account, so a test buys them as a client does, with a
//! `CreditEscrow` deposit the coordinator's watcher reads off the chain.
//!
//! One anvil per test (it starts in well under a second and the deployment takes about as
//! long), so tests share nothing but the binaries.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use prlx_chain::deploy::{deploy_dev, DevParams};
use prlx_chain::devchain::{dev_role, DevChain};
use prlx_chain::wallet::{SignerChoice, Wallet};
use prlx_chain::Deployment;
use prlx_events::event::CREDIT_UNIT_WEI;

use super::client::read;

/// The stake cooldown of a test deployment, seconds.
pub const TEST_COOLDOWN_SECONDS: u64 = 5;

/// The client's credit account on every test chain: anvil's dev account 2
/// ([`dev_role::CLIENT`]) in lowercase hex. Anvil's dev keys are fixed, so tests can name it
/// in bodies they build before the chain starts; [`TestChain::start`] checks it.
pub const CLIENT_ACCOUNT: &str = "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc";

/// Anvil with the contracts deployed and the deployment file written.
#[derive(Debug)]
pub struct TestChain {
    chain: DevChain,
    pub deployment: Deployment,
    /// Where the deployment file is, for `serve --chain-deployment`.
    pub deployment_file: PathBuf,
}

impl TestChain {
    /// Spawns anvil and deploys every contract; writes the deployment file under `dir`.
    pub async fn start(dir: &Path) -> TestChain {
        let chain = DevChain::spawn().expect("anvil (scripts/chain.sh setup installs it)");
        assert_eq!(
            format!("{:#x}", chain.address(dev_role::CLIENT)),
            CLIENT_ACCOUNT
        );
        let deployer = chain.provider(dev_role::DEPLOYER).unwrap();
        let params = DevParams::for_devchain(&chain, TEST_COOLDOWN_SECONDS);
        let deployment = deploy_dev(&deployer, chain.address(dev_role::DEPLOYER), &params)
            .await
            .expect("deploying the contracts (scripts/chain.sh setup fetches Sablier's)");
        let deployment_file = dir.join("deployment.json");
        deployment.write(&deployment_file).unwrap();
        TestChain {
            chain,
            deployment,
            deployment_file,
        }
    }

    /// [`start`](Self::start) from synchronous code.
    pub fn start_blocking(dir: &Path) -> TestChain {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(TestChain::start(dir))
    }

    /// The chain's JSON-RPC URL.
    pub fn rpc_url(&self) -> String {
        self.chain.endpoint()
    }

    /// The flags that make `prlx-coordinator serve` follow this chain: one confirmation, a
    /// read every 50 ms, posting epochs as the coordinator's dev account.
    pub fn serve_args(&self) -> Vec<String> {
        vec![
            "--chain-deployment".into(),
            self.deployment_file.display().to_string(),
            "--chain-rpc-url".into(),
            self.rpc_url(),
            "--chain-confirmations".into(),
            "1".into(),
            "--chain-poll-ms".into(),
            "50".into(),
            "--chain-dev-account".into(),
            dev_role::COORDINATOR.to_string(),
        ]
    }

    /// The credit account the client's deposits go to: its address in lowercase hex, as the
    /// coordinator names it.
    pub fn client_account(&self) -> String {
        CLIENT_ACCOUNT.to_owned()
    }

    /// The client buys `credits` credits: the deployer sends it the PRLX, the client approves
    /// the escrow and deposits them for its own account. Returns once the deposit is mined;
    /// the coordinator credits it after its confirmations.
    pub async fn buy_credits(&self, credits: u64) {
        let wei = U256::from(credits) * U256::from(CREDIT_UNIT_WEI);
        let deployer = self.wallet(dev_role::DEPLOYER).await;
        deployer
            .transfer(self.chain.address(dev_role::CLIENT), wei)
            .await
            .expect("funding the client");
        let client = self.wallet(dev_role::CLIENT).await;
        client
            .deposit(self.chain.address(dev_role::CLIENT), wei)
            .await
            .expect("depositing into CreditEscrow");
        // One more block, so that the deposit has its one confirmation behind it whatever
        // the watcher counts as the head.
        self.mine().await;
    }

    /// A provider signing as dev account `role`.
    pub fn provider(&self, role: usize) -> alloy::providers::DynProvider {
        self.chain.provider(role).unwrap()
    }

    /// Mines an empty block.
    pub async fn mine(&self) {
        use alloy::providers::Provider;
        let provider = self.chain.provider(dev_role::DEPLOYER).unwrap();
        let _: serde_json::Value = provider
            .raw_request("anvil_mine".into(), (1u64,))
            .await
            .expect("anvil_mine");
    }

    /// [`buy_credits`](Self::buy_credits), then waits until the coordinator at `addr`
    /// (`HOST:PORT`) has credited the client's account to at least `at_least`.
    pub async fn fund(&self, addr: &str, credits: u64, at_least: u64) {
        self.buy_credits(credits).await;
        let path = format!("/v1/accounts/{CLIENT_ACCOUNT}");
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = read(addr, &path, &self.read_token()).await;
            if status == 200 && body["balance"].as_u64() >= Some(at_least) {
                return;
            }
            assert!(
                Instant::now() < until,
                "the coordinator did not credit the deposit in 30 s: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What submissions to a coordinator following this chain are signed under.
    pub fn consent_domain(&self) -> prlx_commands::consent::ConsentDomain {
        prlx_commands::consent::ConsentDomain {
            chain_id: self.deployment.chain_id,
            escrow: self.deployment.contracts.credit_escrow,
        }
    }

    /// A `POST /v1/requests` body as the client sends it: with `key` as its idempotency key,
    /// signed by its account's key (the client's for [`CLIENT_ACCOUNT`]).
    pub fn signed(&self, body: serde_json::Value, key: &str) -> serde_json::Value {
        prlx_commands::testkit::accounts::know(&prlx_chain::devchain::dev_signer(dev_role::CLIENT));
        prlx_commands::testkit::intake::signed(body, key, &self.consent_domain())
    }

    /// The `Authorization` header that reads [`CLIENT_ACCOUNT`]'s balance and requests: a
    /// read-access token signed by the client's key, good for ten minutes.
    pub fn read_token(&self) -> String {
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap();
        prlx_commands::testkit::accounts::read_token_as(
            &prlx_chain::devchain::dev_signer(dev_role::CLIENT),
            CLIENT_ACCOUNT,
            now + 600,
            &self.consent_domain(),
        )
    }

    /// A wallet on this deployment signing as dev account `role`.
    pub async fn wallet(&self, role: usize) -> Wallet {
        Wallet::open(
            self.deployment.clone(),
            &self.rpc_url(),
            Some(SignerChoice::Dev(role)),
        )
        .await
        .unwrap()
    }
}
