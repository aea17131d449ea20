//! Settlement: verified uptime, stake, reward epochs, checked against hand-computed payouts.
//!
//! The log is built as the shell builds it: each command is decided against the folded state
//! and its events are folded at an explicit `recorded_at`, so uptime slots and epochs fall
//! exactly where the comments say.

use prlx_commands::decide::{decide, Command, Dispatch};
use prlx_commands::settle::{due_settlements, SettlementCommand};
use prlx_commands::testkit::fixtures::{
    self, accepted_and_reserved, deposited, model, node, registered, request_accepted,
    reward_policy, t,
};
use prlx_commands::testkit::given;
use prlx_events::event::*;
use prlx_events::{Envelope, Event, Hash32, Header, NodeId, RequestId};
use prlx_projections::fold::FoldAtError;
use prlx_projections::scheduler::next_assignment;
use prlx_projections::settlement::{bootstrap_unlock, steady_split};
use prlx_projections::{CoordinatorState, Fold};
use uuid::Uuid;

// Epoch 0 starts at `t(0)`, the testkit's clock, a multiple of the 600 s epoch length.

const A: u8 = 1;
const B: u8 = 2;
const C: u8 = 3;
const D: u8 = 4;

fn catalog() -> Event {
    CatalogPublished {
        max_attempts: 1,
        ..fixtures::catalog(vec![
            model("chat", Hash32([1; 32])),
            model("big", Hash32([2; 32])),
        ])
    }
    .into()
}

fn register(n: u8, tier: u8, stake: u64, model: &str) -> Event {
    registered_as(n, tier, stake, model).into()
}

fn registered_as(n: u8, tier: u8, stake: u64, model: &str) -> NodeRegistered {
    NodeRegistered {
        hardware_tier: tier,
        models: vec![model.into()],
        stake,
        ..registered(n)
    }
}

/// A request for `model` with a 10 s deadline, priced and reserved at `price`: the fixtures'
/// models charge 10 plus 1 a token at standard priority, and the fold re-derives the price,
/// so the request asks for `price - 10` tokens.
fn accept(id: u64, model: &str, price: u64) -> Vec<Event> {
    accepted_and_reserved(RequestAccepted {
        model: model.into(),
        deadline_seconds: 10,
        max_tokens: u32::try_from(price - 10).expect("a price of 10 and more"),
        price,
        ..request_accepted(id)
    })
}

/// The log so far, folded as the shell folds it.
#[derive(Default)]
struct Chain {
    fold: Fold<CoordinatorState>,
    seq: u64,
}

impl Chain {
    fn envelope(&self, at: i64, event: impl Into<Event>) -> Envelope {
        Envelope::new(
            Header {
                event_id: Uuid::from_u128(u128::from(self.seq) + 1),
                recorded_at: t(at),
                producer: "coordinator/test".into(),
                sequence: self.seq,
                // Events recorded at one time are one decision's batch.
                correlation_id: Some(Uuid::from_u64_pair(1, at as u64)),
                causation_id: None,
                prev: None,
            },
            event,
        )
    }

    /// Folds `event` recorded at `at`, or says why the fold refuses it (state unchanged).
    fn record(&mut self, at: i64, event: impl Into<Event>) -> Result<(), FoldAtError> {
        let env = self.envelope(at, event);
        self.fold.feed(self.seq, &env)?;
        self.seq += 1;
        Ok(())
    }

    #[track_caller]
    fn push(&mut self, at: i64, event: impl Into<Event>) {
        self.record(at, event)
            .unwrap_or_else(|e| panic!("the fold refuses it: {e}"));
    }

    /// Decides `command` against the state and records its events at `at`.
    #[track_caller]
    fn run(&mut self, at: i64, command: Command) -> Vec<Event> {
        let events = decide(self.state(), command).unwrap_or_else(|r| panic!("rejected: {r}"));
        for e in &events {
            self.push(at, e.clone());
        }
        events
    }

    fn heartbeat(&mut self, at: i64, n: u8) {
        self.run(at, fixtures::heartbeat(node(n), t(at)));
    }

    fn settlement(&mut self, at: i64, command: SettlementCommand) -> Vec<Event> {
        self.run(at, Command::Settlement(command))
    }

    /// What housekeeping at `at` stages: every due settlement command, each decided against
    /// the state the previous one left. Returns the epochs settled.
    fn housekeeping(&mut self, at: i64) -> Vec<RewardEpochSettled> {
        let mut settled = Vec::new();
        for command in due_settlements(self.state(), t(at)) {
            for e in self.settlement(at, command) {
                if let Event::RewardEpochSettled(s) = e {
                    settled.push(s);
                }
            }
        }
        settled
    }

    fn dispatch_next(&mut self, at: i64) {
        let choice = next_assignment(self.state(), None).expect("a request and a capable node");
        self.run(
            at,
            Command::Dispatch(Box::new(Dispatch {
                choice,
                sealed_work: Sealed(vec![1]),
                now: t(at),
                seed: None,
            })),
        );
    }

    fn state(&self) -> &CoordinatorState {
        &self.fold.state
    }
}

fn amounts(s: &RewardEpochSettled) -> Vec<(NodeId, u64, u128, u64)> {
    s.payouts
        .iter()
        .map(|p| (p.node_id, p.verified_slots, p.weight, p.amount))
        .collect()
}

/// Nodes A (tier 1, stake 100), B (tier 2, stake 300), C (tier 3, stake 50, the only node
/// serving "big") and D (tier 2, stake 200); the policy; and C put in default before epoch 0:
/// it was dispatched request 0 and let the deadline pass.
fn opening() -> Chain {
    let mut c = Chain::default();
    c.push(-200, catalog());
    c.push(
        -190,
        CreditsDeposited {
            tx_ref: "tx".into(),
            ..deposited(10_000)
        },
    );
    c.push(-180, register(A, 1, 100, "chat"));
    c.push(-180, register(B, 2, 300, "chat"));
    c.push(-180, register(C, 3, 50, "big"));
    c.push(-180, register(D, 2, 200, "chat"));
    // Published at -30 s: epoch 0 starts at the next multiple of 600 s, t(0).
    c.settlement(-30, SettlementCommand::PublishPolicy(reward_policy()));
    for e in accept(0, "big", 15) {
        c.push(-25, e);
    }
    c.dispatch_next(-25); // to C, deadline -15
    let expired = c.run(
        -10,
        Command::ExpireDeadline {
            request: RequestId(0),
            node: node(C),
            attempt: 0,
            now: t(-10),
            release: None,
        },
    );
    assert!(
        matches!(expired[0], Event::DeadlineExpired(_)),
        "{expired:?}"
    );
    c
}

/// Epoch 0, [0, 600): ten slots [60i, 60i + 60), events in time order.
fn epoch_0(c: &mut Chain) {
    for i in 0..10 {
        let base = 60 * i;
        if i == 5 {
            // D, removed from the pool, leaves with all its stake: returned in full, never
            // seized.
            c.settlement(
                300,
                SettlementCommand::RequestUnstake {
                    node_id: node(D),
                    amount: 200,
                },
            );
        }
        c.heartbeat(base + 5, A); // every slot
        if i < 6 {
            c.heartbeat(base + 10, B); // slots 0..=5
        }
        c.heartbeat(base + 15, C); // every slot, but C is in default: none count
        if i < 6 {
            c.heartbeat(base + 20, D); // slots 0..=3 count; 4 and 5 come after its removal
        }
        if i == 0 {
            c.heartbeat(50, B); // the same slot again: counted once
        }
        if i == 1 {
            // B takes 100 of its 300 out at 100 s; slot 1 was already earned at 300.
            c.settlement(
                100,
                SettlementCommand::RequestUnstake {
                    node_id: node(B),
                    amount: 100,
                },
            );
        }
        if i == 3 {
            // D stops earning: drained. (A removal from the pool would do the same, but the
            // fold takes one only from a standing under the floor in its decision.)
            c.push(230, NodeDrained { node_id: node(D) });
        }
    }
}

#[test]
fn several_epochs_pay_the_hand_computed_amounts() {
    let mut c = opening();
    epoch_0(&mut c);
    c.heartbeat(605, A); // epoch 1 already: not part of epoch 0
    assert!(c.housekeeping(599).is_empty(), "epoch 0 has not ended");
    let e0 = c.housekeeping(610);
    assert_eq!(e0.len(), 1);
    let e0 = &e0[0];
    // Weights (slots x stake x tier weight):
    //   A: 10 x 100 x 1                 = 1_000
    //   B:  2 x 300 x 2 + 4 x 200 x 2   = 1_200 + 1_600 = 2_800
    //   C: heartbeats in all 10 slots but in default: 0 slots, not listed
    //   D:  4 x 200 x 2                 = 1_600
    //   W = 5_400
    // Bootstrap, first unlock: floor(250_000 x 1 / 3) - 0 = 83_333.
    //   A: 83_333 x 1_000 / 5_400 = 15_432 rem   200
    //   B: 83_333 x 2_800 / 5_400 = 43_209 rem 3_800
    //   D: 83_333 x 1_600 / 5_400 = 24_691 rem 1_400
    //   floors 83_332: 1 unit left, to the largest remainder, B.
    assert_eq!((e0.epoch, e0.starts_at, e0.ends_at), (0, t(0), t(600)));
    assert_eq!(e0.mode, RewardMode::Bootstrap);
    assert_eq!(
        (e0.income, e0.carried_in, e0.pool, e0.treasury, e0.infra),
        (83_333, 0, 83_333, 0, 0)
    );
    assert_eq!(e0.total_weight, 5_400);
    assert_eq!(
        amounts(e0),
        vec![
            (node(A), 10, 1_000, 15_432),
            (node(B), 6, 2_800, 43_210),
            (node(D), 4, 1_600, 24_691),
        ]
    );
    assert_eq!(e0.carried_over, 0);

    // Epoch 1, [600, 1200), events in time order.
    for i in 0..10 {
        let base = 600 + 60 * i;
        if i == 5 {
            // B adds 100 at 900 s: slots 5..=9 of epoch 1 count at 300.
            c.settlement(
                900,
                SettlementCommand::DepositStake {
                    node_id: node(B),
                    amount: 100,
                },
            );
        }
        if i > 0 {
            c.heartbeat(base + 5, A); // with the one at 605: all 10 slots
        }
        c.heartbeat(base + 10, B);
        c.heartbeat(base + 15, C);
        c.heartbeat(base + 20, D); // removed: nothing
        if i == 1 {
            // C serves request 1 at 705 s (slot 1): the verified commitment ends its default
            // and earns the slot its 675 s heartbeat did not.
            for e in accept(1, "big", 1_003) {
                c.push(700, e);
            }
            c.dispatch_next(700);
            c.run(
                705,
                Command::CompleteTask(Box::new(fixtures::completion(RequestId(1), node(C), 0))),
            );
        }
        if i == 6 {
            // The cooldown of B's unstake (100 s + 900 s) ends at 1000 s, not before.
            assert!(due_settlements(c.state(), t(999)).is_empty());
            assert_eq!(
                due_settlements(c.state(), t(1_000)),
                vec![SettlementCommand::ReturnStake {
                    node_id: node(B),
                    now: t(1_000)
                }]
            );
            assert_eq!(
                decide(
                    c.state(),
                    Command::Settlement(SettlementCommand::ReturnStake {
                        node_id: node(B),
                        now: t(999)
                    })
                )
                .unwrap_err()
                .field
                .as_deref(),
                Some("now")
            );
            assert!(c.housekeeping(1_000).is_empty(), "no epoch is due");
            assert_eq!(
                c.state().rewards.operators[&node(B)].unbonding,
                vec![],
                "B's 100 is back"
            );
        }
        if i == 8 {
            // The switch at 1100 s applies to epoch 1, which ends after it.
            c.settlement(
                1_100,
                SettlementCommand::ChangeMode {
                    mode: RewardMode::SteadyState,
                },
            );
        }
    }
    // D's cooldown ends at 300 s + 900 s = 1200 s, with epoch 1: both are due at 1210 s.
    let e1 = c.housekeeping(1_210);
    let returned: Vec<_> = c
        .state()
        .rewards
        .operators
        .iter()
        .map(|(id, op)| (*id, op.stake, op.unbonding.len()))
        .collect();
    assert_eq!(
        returned,
        vec![
            (node(A), 100, 0),
            (node(B), 300, 0),
            (node(C), 50, 0),
            (node(D), 0, 0)
        ],
        "D, removed from the pool, got all 200 back"
    );
    let e1 = &e1[0];
    // Weights:
    //   A: 10 x 100 x 1                 = 1_000
    //   B:  5 x 200 x 2 + 5 x 300 x 2   = 2_000 + 3_000 = 5_000
    //   C:  9 x  50 x 3                 = 1_350 (slot 0 in default; slot 1 from the result)
    //   W = 7_350
    // Steady state, income = the 1_003 charged for request 1:
    //   treasury floor(1_003 x 10%) = 100, infra floor(1_003 x 5%) = 50, operators 853.
    //   A:   853 x 1_000 / 7_350 = 116 rem   400
    //   B:   853 x 5_000 / 7_350 = 580 rem 2_000
    //   C:   853 x 1_350 / 7_350 = 156 rem 4_950
    //   floors 852: 1 unit left, to C.
    assert_eq!((e1.epoch, e1.mode), (1, RewardMode::SteadyState));
    assert_eq!(
        (e1.income, e1.carried_in, e1.pool, e1.treasury, e1.infra),
        (1_003, 0, 853, 100, 50)
    );
    assert_eq!(
        amounts(e1),
        vec![
            (node(A), 10, 1_000, 116),
            (node(B), 10, 5_000, 580),
            (node(C), 9, 1_350, 157),
        ]
    );

    // Epoch 2, [1200, 1800): back to bootstrap, and nobody earns a slot.
    c.settlement(
        1_250,
        SettlementCommand::ChangeMode {
            mode: RewardMode::Bootstrap,
        },
    );
    // Epoch 3, [1800, 2400): recorded before epoch 2 is settled, but not part of it.
    for at in [1_805, 1_865, 1_925] {
        c.heartbeat(at, A);
    }
    c.heartbeat(1_810, B);
    let settled = c.housekeeping(2_410);
    let [e2, e3] = &settled[..] else {
        panic!("epochs 2 and 3 are both due: {settled:?}")
    };
    // Epoch 2: the second unlock, floor(250_000 x 2/3) - 83_333 = 83_333, and W = 0: all of
    // it carries over.
    assert_eq!(
        (
            e2.epoch,
            e2.income,
            e2.pool,
            e2.total_weight,
            e2.carried_over
        ),
        (2, 83_333, 83_333, 0, 83_333)
    );
    assert!(e2.payouts.is_empty());
    // Epoch 3: the last unlock, 250_000 - 166_666 = 83_334, plus the 83_333 carried.
    //   A: 3 x 100 x 1 = 300, B: 1 x 300 x 2 = 600, W = 900
    //   A: 166_667 x 300 / 900 =  55_555 rem 600
    //   B: 166_667 x 600 / 900 = 111_111 rem 300
    //   1 unit left, to A.
    assert_eq!(
        (e3.income, e3.carried_in, e3.pool, e3.carried_over),
        (83_334, 83_333, 166_667, 0)
    );
    assert_eq!(
        amounts(e3),
        vec![(node(A), 3, 300, 55_556), (node(B), 1, 600, 111_111)]
    );
    // The bucket is spent: a fourth bootstrap epoch unlocks nothing.
    c.heartbeat(2_415, A);
    let e4 = &c.housekeeping(3_000)[0];
    assert_eq!((e4.epoch, e4.income, e4.pool), (4, 0, 0));
    assert_eq!(amounts(e4), vec![(node(A), 1, 100, 0)]);

    // Bootstrap paid exactly the 250_000 bucket; every node's total is the sum of its payouts.
    let bootstrap_paid: u64 = [e0, e2, e3, e4]
        .iter()
        .flat_map(|e| e.payouts.iter().map(|p| p.amount))
        .sum();
    assert_eq!(bootstrap_paid, 250_000);
    let paid: Vec<_> = c
        .state()
        .rewards
        .operators
        .iter()
        .map(|(id, op)| (*id, op.paid))
        .collect();
    assert_eq!(
        paid,
        vec![
            (node(A), 15_432 + 116 + 55_556),
            (node(B), 43_210 + 580 + 111_111),
            (node(C), 157),
            (node(D), 24_691),
        ]
    );
}

#[test]
fn mid_epoch_settlement_state_survives_a_snapshot() {
    let mut c = opening();
    epoch_0(&mut c);
    let json = serde_json::to_string(c.state()).unwrap();
    let back: CoordinatorState = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, c.state());
    assert_eq!(back.rewards.settle_next(), c.state().rewards.settle_next());
}

#[test]
fn a_node_that_is_up_but_fails_its_dispatches_earns_nothing() {
    let mut c = opening();
    epoch_0(&mut c);
    let e0 = &c.housekeeping(600)[0];
    assert!(
        e0.payouts.iter().all(|p| p.node_id != node(C)),
        "C heartbeated in every slot, but its dispatch had expired: {e0:?}"
    );
    assert!(c.state().rewards.operators[&node(C)].in_default);
}

#[test]
fn a_node_earns_no_uptime_once_the_catalog_stops_listing_what_it_serves() {
    let mut c = opening();
    let chat = |min_tier| CatalogModel {
        min_tier,
        ..model("chat", Hash32([1; 32]))
    };
    let republish = |models| -> Event {
        CatalogPublished {
            max_attempts: 1,
            ..fixtures::catalog(models)
        }
        .into()
    };
    // E reported the file it serves; the fixtures' nodes registered before nodes did.
    const E: u8 = 5;
    c.push(
        -20,
        NodeRegistered {
            model_hashes: [("chat".to_owned(), Hash32([1; 32]))].into(),
            ..registered_as(E, 2, 100, "chat")
        },
    );
    for i in 0..10 {
        let base = 60 * i;
        c.heartbeat(base + 5, A); // tier 1
        c.heartbeat(base + 10, B); // tier 2
        c.heartbeat(base + 12, E); // tier 2
        if i == 4 {
            // "chat" now needs tier 2: A can no longer be given it.
            c.push(270, republish(vec![chat(2), model("big", Hash32([2; 32]))]));
        }
        if i == 6 {
            // "chat" is dropped: nobody can be given it.
            c.push(390, republish(vec![model("big", Hash32([2; 32]))]));
        }
        if i == 8 {
            // Back, with another file than the one E reported; A and B reported none, so
            // they are matched by name.
            c.push(510, republish(vec![model("chat", Hash32([9; 32]))]));
        }
    }
    let e0 = &c.housekeeping(600)[0];
    let slots = |n: u8| {
        e0.payouts
            .iter()
            .find(|p| p.node_id == node(n))
            .map_or(0, |p| p.verified_slots)
    };
    assert_eq!(
        slots(A),
        6,
        "0..=4, before chat needed tier 2, and 9: {e0:?}"
    );
    assert_eq!(slots(B), 8, "0..=6, before chat was dropped, and 9: {e0:?}");
    assert_eq!(
        slots(E),
        7,
        "0..=6: not on another file than its own: {e0:?}"
    );
}

#[test]
fn a_tampered_settlement_is_refused_naming_the_field() {
    let mut c = opening();
    epoch_0(&mut c);
    let Some(mut settled) = c.state().rewards.settle_next() else {
        panic!("a policy exists")
    };
    // Move one unit from B to A: the totals still add up, the split is wrong.
    settled.payouts[1].amount -= 1;
    settled.payouts[0].amount += 1;
    let err = c.record(610, settled.clone()).unwrap_err();
    assert_eq!(err.error.field.as_deref(), Some("payouts[0].amount"));
    assert_eq!(err.error.reason, "recorded 15433, recomputed 15432");
    assert_eq!(
        err.to_string(),
        format!(
            "at offset {}: RewardEpochSettled.payouts[0].amount: recorded 15433, recomputed 15432",
            c.seq
        )
    );
    let err = c
        .record(
            610,
            RewardEpochSettled {
                carried_over: 1,
                ..c.state().rewards.settle_next().unwrap()
            },
        )
        .unwrap_err();
    assert_eq!(err.error.field.as_deref(), Some("carried_over"));
    // Recorded before the epoch ends: refused, even with the right numbers.
    let early = c.state().rewards.settle_next().unwrap();
    let err = c.record(599, early.clone()).unwrap_err();
    assert_eq!(err.error.field.as_deref(), Some("ends_at"), "{err}");
    // The state was left as it was: the right one still folds.
    c.push(600, early);
    assert_eq!(c.state().rewards.next_epoch, 1);
}

#[test]
fn settling_does_not_depend_on_events_after_the_epoch_end() {
    let mut c = opening();
    epoch_0(&mut c);
    let at_end = c.state().rewards.settle_next();
    // Everything that could move a payout, recorded after the end.
    c.heartbeat(600, B);
    c.heartbeat(601, C);
    c.settlement(
        602,
        SettlementCommand::DepositStake {
            node_id: node(A),
            amount: 1_000,
        },
    );
    c.settlement(
        603,
        SettlementCommand::RequestUnstake {
            node_id: node(B),
            amount: 50,
        },
    );
    c.settlement(
        604,
        SettlementCommand::ChangeMode {
            mode: RewardMode::SteadyState,
        },
    );
    for e in accept(1, "chat", 500) {
        c.push(605, e);
    }
    assert_eq!(c.state().rewards.settle_next(), at_end);
}

#[test]
fn settle_commands_wait_for_the_end_and_go_in_order() {
    let mut c = Chain::default();
    c.push(0, register(A, 1, 100, "chat"));
    let settle = |epoch, now| Command::Settlement(SettlementCommand::SettleEpoch { epoch, now });
    let rejected = decide(c.state(), settle(0, t(700))).unwrap_err();
    assert_eq!(rejected.field.as_deref(), Some("policy"));
    assert!(
        due_settlements(c.state(), t(10_000)).is_empty(),
        "no policy: nothing due"
    );
    c.settlement(0, SettlementCommand::PublishPolicy(reward_policy()));
    assert_eq!(
        decide(c.state(), settle(0, t(599)))
            .unwrap_err()
            .field
            .as_deref(),
        Some("now")
    );
    assert_eq!(
        decide(c.state(), settle(1, t(1_300)))
            .unwrap_err()
            .field
            .as_deref(),
        Some("epoch")
    );
    assert_eq!(
        due_settlements(c.state(), t(1_300)),
        vec![
            SettlementCommand::SettleEpoch {
                epoch: 0,
                now: t(1_300)
            },
            SettlementCommand::SettleEpoch {
                epoch: 1,
                now: t(1_300)
            },
        ]
    );
    assert_eq!(c.housekeeping(1_300).len(), 2);
    // A retry of an epoch already settled records nothing.
    assert_eq!(decide(c.state(), settle(0, t(1_300))), Ok(vec![]));
}

#[test]
fn staking_commands_name_the_field_they_reject() {
    let history = vec![register(A, 1, 100, "chat")];
    let with_policy = || {
        let mut h = history.clone();
        h.push(reward_policy().into());
        h
    };
    let cmd = Command::Settlement;
    given(history.clone())
        .when(cmd(SettlementCommand::DepositStake {
            node_id: node(9),
            amount: 5,
        }))
        .then_reject(RejectionCode::UnknownNode, "node_id");
    given(history.clone())
        .when(cmd(SettlementCommand::DepositStake {
            node_id: node(A),
            amount: 0,
        }))
        .then_reject(RejectionCode::InvalidAmount, "amount");
    given(history.clone())
        .when(cmd(SettlementCommand::DepositStake {
            node_id: node(A),
            amount: 5,
        }))
        .then_expect([StakeDeposited {
            node_id: node(A),
            amount: 5,
        }
        .into()]);
    given(history.clone())
        .when(cmd(SettlementCommand::RequestUnstake {
            node_id: node(A),
            amount: 10,
        }))
        .then_reject(RejectionCode::MalformedRequest, "policy");
    given(with_policy())
        .when(cmd(SettlementCommand::RequestUnstake {
            node_id: node(A),
            amount: 0,
        }))
        .then_reject(RejectionCode::InvalidAmount, "amount");
    let r = given(with_policy())
        .when(cmd(SettlementCommand::RequestUnstake {
            node_id: node(A),
            amount: 101,
        }))
        .then_reject(RejectionCode::InvalidAmount, "amount");
    assert_eq!(r.message, "101 is more than the 100 staked");
    given(with_policy())
        .when(cmd(SettlementCommand::RequestUnstake {
            node_id: node(7),
            amount: 1,
        }))
        .then_reject(RejectionCode::UnknownNode, "node_id");
    given(with_policy())
        .when(cmd(SettlementCommand::RequestUnstake {
            node_id: node(A),
            amount: 100,
        }))
        .then_expect([UnstakeRequested {
            node_id: node(A),
            amount: 100,
            cooldown_seconds: 900,
        }
        .into()]);
    // The policy: checked field by field, published once.
    given(vec![])
        .when(cmd(SettlementCommand::PublishPolicy(
            RewardPolicyPublished {
                infra_pct: 6,
                ..reward_policy()
            },
        )))
        .then_reject(RejectionCode::MalformedRequest, "operators_pct");
    given(vec![])
        .when(cmd(SettlementCommand::PublishPolicy(
            RewardPolicyPublished {
                uptime_slot_seconds: 7,
                ..reward_policy()
            },
        )))
        .then_reject(RejectionCode::MalformedRequest, "uptime_slot_seconds");
    given(with_policy())
        .when(cmd(SettlementCommand::PublishPolicy(reward_policy())))
        .then_expect([]);
    given(with_policy())
        .when(cmd(SettlementCommand::PublishPolicy(
            RewardPolicyPublished {
                total_supply: 1,
                ..reward_policy()
            },
        )))
        .then_reject(RejectionCode::MalformedRequest, "policy");
    // Switching to the mode in force is a no-op.
    given(vec![])
        .when(cmd(SettlementCommand::ChangeMode {
            mode: RewardMode::Bootstrap,
        }))
        .then_expect([]);
}

#[test]
fn the_fold_refuses_stake_movements_the_rules_forbid() {
    let mut c = Chain::default();
    c.push(0, register(A, 1, 100, "chat"));
    c.push(0, reward_policy());
    let unstake = |amount, cooldown_seconds| UnstakeRequested {
        node_id: node(A),
        amount,
        cooldown_seconds,
    };
    let field = |r: Result<(), FoldAtError>| r.unwrap_err().error.field;
    assert_eq!(
        field(c.record(10, unstake(101, 900))).as_deref(),
        Some("amount")
    );
    assert_eq!(
        field(c.record(10, unstake(50, 60))).as_deref(),
        Some("cooldown_seconds")
    );
    c.push(10, unstake(50, 900));
    let returned = |amount| StakeReturned {
        node_id: node(A),
        amount,
        available_at: t(910),
    };
    // Early, or short: refused. Stake comes back whole, after the cooldown.
    assert_eq!(
        field(c.record(909, returned(50))).as_deref(),
        Some("available_at")
    );
    assert_eq!(
        field(c.record(910, returned(49))).as_deref(),
        Some("amount")
    );
    c.push(910, returned(50));
    assert_eq!(
        field(c.record(911, returned(50))).as_deref(),
        Some("node_id"),
        "nothing left to return"
    );
}

#[test]
fn the_bootstrap_unlock_sums_to_the_bucket_and_the_steady_split_adds_up() {
    let p = RewardPolicyPublished::default();
    // 25% of 10^15 = 2.5 x 10^14 over 730 days: 342_465_753_424.66 a day, so the daily
    // amounts are 342_465_753_424 or ..._425 and add up to the bucket exactly.
    let unlocks: Vec<u64> = (0..731).map(|k| bootstrap_unlock(&p, k)).collect();
    assert_eq!(unlocks.iter().sum::<u64>(), 250_000_000_000_000);
    assert_eq!(unlocks[0], 342_465_753_424);
    assert_eq!(unlocks[729], 342_465_753_425);
    assert_eq!(unlocks[730], 0);
    // 85/10/5 with treasury and infra floored and operators taking the rest.
    //   1_003: 100 + 50, operators 853;   19: 1 + 0, operators 18;   1: 0 + 0, operators 1.
    assert_eq!(steady_split(&p, 1_003), (853, 100, 50));
    assert_eq!(steady_split(&p, 19), (18, 1, 0));
    assert_eq!(steady_split(&p, 1), (1, 0, 0));
    for income in [0, 7, 99, 100, 12_345, u64::MAX] {
        let (o, t, i) = steady_split(&p, income);
        assert_eq!(
            u128::from(o) + u128::from(t) + u128::from(i),
            u128::from(income)
        );
    }
}
