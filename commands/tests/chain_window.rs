//! Chain events in a window of blocks: the state keeps the names (deposit references, and the
//! keys of stake changes and the other events) of the last `CHAIN_WINDOW_BLOCKS` below the
//! highest block observed, and an event from below the window is known without its name (the
//! watcher reads the chain in order, so it was applied when its block was read). Exact at any
//! age, in `decide` and in the fold; the state stays bounded however many events the chain
//! has seen.

use prlx_commands::decide::{decide, Command, StakeObservation};
use prlx_commands::testkit::fixtures::t;
use prlx_events::event::CreditsDeposited;
use prlx_events::onchain::{ChainDeposit, ChainRef, StakeChange, CREDIT_UNIT_WEI};
use prlx_events::{AccountId, Envelope, Event, Hash32, Header, NodeId};
use prlx_projections::coordinator::{CoordinatorState, CHAIN_WINDOW_BLOCKS};
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
    let count = CHAIN_WINDOW_BLOCKS * 100 / step;
    let deposits: Vec<ChainDeposit> = (0..count).map(|n| chain_deposit(n * step, n, 1)).collect();
    let (fold, decided) = run(deposits.clone());
    assert!(decided.iter().all(|&n| n == 1), "each new deposit credits");
    assert_eq!(balance(&fold.state), count);
    // Bounded: the window's deposits only, not the chain's.
    let window = (CHAIN_WINDOW_BLOCKS / step + 1) as usize;
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
    let top = 10 * CHAIN_WINDOW_BLOCKS;
    let (mut fold, _) = run(vec![chain_deposit(5, 0, 1), chain_deposit(top, 1, 1)]);
    // The first deposit's reference has left the state, yet a log that credits it again (or
    // credits any deposit of a block the watcher had passed) is refused at that record.
    assert!(!fold
        .state
        .deposits
        .contains(&chain_deposit(5, 0, 1).tx_ref()));
    for chain in [
        chain_deposit(5, 0, 1),
        chain_deposit(top - CHAIN_WINDOW_BLOCKS - 1, 7, 1),
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
        assert!(err.to_string().contains("below the chain window"), "{err}");
    }
    // At the floor itself it is still told apart by reference: a new one folds.
    let at_floor = chain_deposit(top - CHAIN_WINDOW_BLOCKS, 8, 1);
    let events = decide(&fold.state, observe(at_floor)).unwrap();
    assert_eq!(events.len(), 1);
    for event in events {
        fold.feed(2, &record(2, event)).unwrap();
    }
}

/// Block `block`'s place of a stake event, transaction `n`.
fn place(block: u64, n: u64) -> ChainRef {
    ChainRef {
        chain_id: 31337,
        contract: hex(0x57a4e, 20),
        block_number: block,
        block_hash: hex(block, 32),
        tx_hash: hex(n + 1, 32),
        log_index: 0,
    }
}

/// Node 7 bonds one more PRLX in block `block` (transaction `n`), `n + 1` bonded after it.
fn staked(block: u64, n: u64) -> Command {
    Command::ObserveStake(Box::new(StakeObservation {
        node_id: NodeId(Hash32([7; 32])),
        staker: ACCOUNT.into(),
        change: StakeChange::Staked,
        amount_wei: CREDIT_UNIT_WEI.to_string(),
        bonded_wei: Some((u128::from(n + 1) * CREDIT_UNIT_WEI).to_string()),
        chain: place(block, n),
    }))
}

#[test]
fn stake_changes_below_the_window_leave_the_state_and_apply_once() {
    let step = 100;
    let count = CHAIN_WINDOW_BLOCKS * 50 / step;
    let mut fold = Fold::<CoordinatorState>::default();
    let mut first = None;
    for n in 0..count {
        let events = decide(&fold.state, staked(n * step, n)).expect("a valid stake change");
        assert_eq!(events.len(), 1, "stake change {n} recorded once");
        first.get_or_insert_with(|| events[0].clone());
        fold.feed(n, &record(n, events[0].clone())).unwrap();
    }
    let state = &fold.state;
    assert_eq!(state.chain_stakes[&NodeId(Hash32([7; 32]))].stake, count);
    // Bounded: the window's keys only, not the chain's.
    let window = (CHAIN_WINDOW_BLOCKS / step + 1) as usize;
    assert!(
        state.chain_seen.len() <= window,
        "{} keys kept for a window of {window}",
        state.chain_seen.len()
    );
    assert_eq!(state.chain_seen.len(), state.chain_seen_blocks.len());

    // Observed again, at any age: a no-op, its key kept or long gone.
    for (age, n) in [("oldest", 0), ("newest", count - 1)] {
        let events = decide(state, staked(n * step, n)).unwrap();
        assert!(
            events.is_empty(),
            "the {age} change applied again: {events:?}"
        );
    }
    // The fold refuses a record of the oldest, though its key has left the state.
    let err = fold
        .feed(count, &record(count, first.unwrap()))
        .unwrap_err();
    assert_eq!(
        err.error.field.as_deref(),
        Some("chain.block_number"),
        "{err}"
    );
    assert!(err.to_string().contains("below the chain window"), "{err}");
    // A new one in the newest block still applies.
    let top = (count - 1) * step;
    let events = decide(&fold.state, staked(top, count)).unwrap();
    assert_eq!(events.len(), 1);
    fold.feed(count, &record(count, events[0].clone())).unwrap();
}
