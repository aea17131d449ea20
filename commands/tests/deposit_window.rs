//! Chain deposit references in a window of blocks: the state keeps those of the last
//! `DEPOSIT_WINDOW_BLOCKS` below the highest block observed, and a deposit from below the
//! window is known without its reference (the watcher reads the chain in order, so it was
//! credited when its block was read). Exact at any age, in `decide` and in the fold; the
//! state stays bounded however many deposits the chain has seen.

use prlx_commands::decide::{decide, Command};
use prlx_commands::testkit::fixtures::t;
use prlx_events::event::CreditsDeposited;
use prlx_events::onchain::{ChainDeposit, ChainRef, CREDIT_UNIT_WEI};
use prlx_events::{AccountId, Envelope, Event, Header};
use prlx_projections::coordinator::{CoordinatorState, DEPOSIT_WINDOW_BLOCKS};
use prlx_projections::fold::Fold;

const ACCOUNT: &str = "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc";

fn hex(n: u64, bytes: usize) -> String {
    format!("0x{n:0width$x}", width = 2 * bytes)
}

/// A deposit of `credits` in block `block`, transaction `n`.
fn chain_deposit(block: u64, n: u64, credits: u64) -> ChainDeposit {
    ChainDeposit {
        place: ChainRef {
            chain_id: 31337,
            contract: hex(0xe5c0, 20),
            block_number: block,
            block_hash: hex(block, 32),
            tx_hash: hex(n + 1, 32),
            log_index: 0,
        },
        payer: ACCOUNT.into(),
        amount_wei: (u128::from(credits) * CREDIT_UNIT_WEI).to_string(),
    }
}

/// Record `i` of a log: one decision per record, a second apart.
fn record(i: u64, event: Event) -> Envelope {
    Envelope::new(
        Header {
            event_id: uuid::Uuid::from_u128(u128::from(i) + 1),
            recorded_at: t(i as i64),
            producer: "deposit-window-test".into(),
            sequence: i,
            correlation_id: Some(uuid::Uuid::from_u128(u128::from(i) + 1)),
            causation_id: None,
            prev: None,
        },
        event,
    )
}

fn observe(chain: ChainDeposit) -> Command {
    Command::ObserveDeposit {
        account: AccountId(ACCOUNT.into()),
        chain,
    }
}

/// Decides and folds each observation in order; returns the state and what each decided.
fn run(observations: Vec<ChainDeposit>) -> (Fold<CoordinatorState>, Vec<usize>) {
    let mut fold = Fold::<CoordinatorState>::default();
    let mut offset = 0;
    let mut decided = Vec::new();
    for chain in observations {
        let events = decide(&fold.state, observe(chain)).expect("a valid deposit");
        decided.push(events.len());
        for event in events {
            fold.feed(offset, &record(offset, event)).unwrap();
            offset += 1;
        }
    }
    (fold, decided)
}

fn balance(state: &CoordinatorState) -> u64 {
    state
        .accounts
        .get(&AccountId(ACCOUNT.into()))
        .map_or(0, |a| a.balance)
}

#[test]
fn deposits_below_the_window_leave_the_state_and_are_still_credited_once() {
    // One deposit every 100 blocks over 100 windows' worth of chain.
    let step = 100;
    let count = DEPOSIT_WINDOW_BLOCKS * 100 / step;
    let deposits: Vec<ChainDeposit> = (0..count).map(|n| chain_deposit(n * step, n, 1)).collect();
    let (fold, decided) = run(deposits.clone());
    assert!(decided.iter().all(|&n| n == 1), "each new deposit credits");
    assert_eq!(balance(&fold.state), count);
    // Bounded: the window's deposits only, not the chain's.
    let window = (DEPOSIT_WINDOW_BLOCKS / step + 1) as usize;
    assert!(
        fold.state.deposits.len() <= window,
        "{} references kept for a window of {window}",
        fold.state.deposits.len()
    );
    assert_eq!(fold.state.deposits.len(), fold.state.chain_deposits.len());

    // Seen again, at any age: a no-op, whether its reference is still kept or long gone.
    for (age, chain) in [
        ("oldest", &deposits[0]),
        ("in the window", deposits.last().unwrap()),
    ] {
        let events = decide(&fold.state, observe(chain.clone())).unwrap();
        assert!(
            events.is_empty(),
            "the {age} deposit credited again: {events:?}"
        );
    }
    // A new deposit in the current block still credits.
    let top = deposits.last().unwrap().place.block_number;
    let events = decide(&fold.state, observe(chain_deposit(top, count + 1, 3))).unwrap();
    assert_eq!(events.len(), 1);
}

#[test]
fn the_fold_refuses_a_deposit_recorded_from_below_the_window() {
    let top = 10 * DEPOSIT_WINDOW_BLOCKS;
    let (mut fold, _) = run(vec![chain_deposit(5, 0, 1), chain_deposit(top, 1, 1)]);
    // The first deposit's reference has left the state, yet a log that credits it again (or
    // credits any deposit of a block the watcher had passed) is refused at that record.
    assert!(!fold
        .state
        .deposits
        .contains(&chain_deposit(5, 0, 1).tx_ref()));
    for chain in [
        chain_deposit(5, 0, 1),
        chain_deposit(top - DEPOSIT_WINDOW_BLOCKS - 1, 7, 1),
    ] {
        let replay: Event = CreditsDeposited {
            account: AccountId(ACCOUNT.into()),
            tx_ref: chain.tx_ref(),
            amount: 1,
            chain: Some(chain),
        }
        .into();
        let err = fold.feed(2, &record(2, replay)).unwrap_err();
        assert_eq!(
            err.error.field.as_deref(),
            Some("chain.block_number"),
            "{err}"
        );
        assert!(
            err.to_string().contains("below the deposit window"),
            "{err}"
        );
    }
    // At the floor itself it is still told apart by reference: a new one folds.
    let at_floor = chain_deposit(top - DEPOSIT_WINDOW_BLOCKS, 8, 1);
    let events = decide(&fold.state, observe(at_floor)).unwrap();
    assert_eq!(events.len(), 1);
    for event in events {
        fold.feed(2, &record(2, event)).unwrap();
    }
}
