//! The wire codec: round trips, upcasting, and the checked-in schemas.

use chrono::{DateTime, TimeZone, Utc};
use prlx_events::event::*;
use prlx_events::upcast::Upcaster;
use prlx_events::{
    AccountId, DecodeError, Envelope, Event, Hash32, Header, NodeId, RequestId, TaskId,
};
use proptest::prelude::*;
use uuid::Uuid;

fn header(seq: u64, at: DateTime<Utc>) -> Header {
    Header {
        event_id: Uuid::from_u128(0x1234_5678_9abc_def0 + seq as u128),
        recorded_at: at,
        producer: "coordinator/test".into(),
        sequence: seq,
        correlation_id: Some(Uuid::from_u128(9)),
        causation_id: None,
        prev: None,
    }
}

fn node(n: u8) -> NodeId {
    NodeId(Hash32([n; 32]))
}

fn task(r: u64) -> TaskId {
    TaskId::whole(RequestId(r))
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
}

/// One sample of every variant; the test below fails if a variant is missing here.
fn result_submitted() -> ResultSubmitted {
    ResultSubmitted {
        task_id: task(1),
        attempt: 0,
        node_id: node(1),
        sealed_result: Sealed(vec![3; 20]),
        poe: Hash32::of(b"poe"),
        signature: Sealed(vec![4; 384]),
        token_count: 12,
        ciphertext_hash: Some(Hash32::of(b"sealed as sent")),
    }
}

fn one_of_each() -> Vec<Event> {
    let class = ExecutionClass {
        device: "cpu".into(),
        driver: "none".into(),
        runtime: "onnxruntime-1.32.0".into(),
    };
    vec![
        CatalogPublished {
            models: vec![CatalogModel {
                model: "oss-chat-v1".into(),
                sha256: Hash32::of(b"m"),
                min_tier: 1,
                base_price: 100,
                per_token_price: 2,
                max_tokens_limit: 512,
                context_length: 8192,
                tier_floors_tps: vec![20, 60],
            }],
            max_tier: 5,
            min_deadline_seconds: 5,
            max_deadline_seconds: 3600,
            reputation_weight_pct: 100,
            node_timeout_seconds: 30,
            max_attempts: 3,
            validation: Default::default(),
            queue_timeout_seconds: 600,
        }
        .into(),
        CreditsDeposited {
            account: AccountId("acct".into()),
            tx_ref: "0xabc".into(),
            amount: u64::MAX,
            chain: None,
        }
        .into(),
        CreditsReserved {
            account: AccountId("acct".into()),
            request_id: RequestId(1),
            amount: 5,
        }
        .into(),
        CreditsCharged {
            account: AccountId("acct".into()),
            request_id: RequestId(1),
            amount: 4,
        }
        .into(),
        CreditsRefunded {
            account: AccountId("acct".into()),
            request_id: RequestId(1),
            amount: 1,
        }
        .into(),
        RequestAccepted {
            request_id: RequestId(1),
            idempotency_key: Some("k-1".into()),
            source: IntakeSource::Kafka {
                reference: "ref-9".into(),
            },
            workload_class: "ai.inference".into(),
            model: "oss-chat-v1".into(),
            hardware_tier: 3,
            priority: Priority::High,
            deadline_seconds: 60,
            max_tokens: 32,
            credit_account: AccountId("acct".into()),
            client_pubkey: "-----BEGIN PUBLIC KEY-----\n...".into(),
            payload_hash: Hash32::of(b"p"),
            sealed_payload: Sealed(vec![0, 1, 2, 255]),
            price: 164,
            consent: Some(Consent {
                signer: format!("0x{}", "3c".repeat(20)),
                signature: format!("0x{}", "5a".repeat(65)),
                chain_id: 31337,
                verifying_contract: format!("0x{}", "e5".repeat(20)),
                delegation: Some(Delegation {
                    signer: format!("0x{}", "3c".repeat(20)),
                    delegate: format!("0x{}", "9d".repeat(20)),
                    spending_limit: 5_000,
                    expires_at: 1_767_225_600,
                    signature: format!("0x{}", "7b".repeat(65)),
                    hash: Hash32([0x42; 32]),
                }),
                batch: Some(Box::new(ConsentBatch {
                    index: 2,
                    count: 5,
                    proof: vec![Hash32([0x11; 32]), Hash32([0x22; 32])],
                })),
            }),
        }
        .into(),
        RequestRejected {
            idempotency_key: None,
            source: IntakeSource::Http,
            code: RejectionCode::PayloadHashMismatch,
            field: Some("payload_hash".into()),
            message: "différent ✓".into(),
        }
        .into(),
        DelegationRevoked {
            account: AccountId(format!("0x{}", "3c".repeat(20))),
            delegation: Hash32([0x42; 32]),
            delegate: format!("0x{}", "9d".repeat(20)),
            spending_limit: 5_000,
            expires_at: 1_767_225_600,
            signer: format!("0x{}", "3c".repeat(20)),
            signature: format!("0x{}", "6e".repeat(65)),
            chain_id: 31337,
            verifying_contract: format!("0x{}", "e5".repeat(20)),
        }
        .into(),
        SubtasksPlanned {
            request_id: RequestId(2),
            class: "mapreduce.wordcount".into(),
            plan_digest: Hash32::of(b"plan"),
            subtasks: vec![
                PlannedSubtask {
                    subtask: 0,
                    request_id: RequestId(3),
                    kind: "wordcount.map".into(),
                    depends_on: vec![],
                    cost: 12,
                    price: 30,
                    sealed_payload: Some(Sealed(vec![9])),
                    payload_hash: Some(Hash32::of(b"s")),
                },
                PlannedSubtask {
                    subtask: 1,
                    request_id: RequestId(4),
                    kind: "wordcount.reduce".into(),
                    depends_on: vec![0],
                    cost: 12,
                    price: 30,
                    sealed_payload: None,
                    payload_hash: None,
                },
            ],
        }
        .into(),
        SubtaskReleased {
            request_id: RequestId(4),
            task: RequestId(2),
            subtask: 1,
            inputs: vec![Hash32::of(b"r0")],
            payload_hash: Hash32::of(b"in"),
            sealed_payload: Sealed(vec![8, 7]),
        }
        .into(),
        AggregateReturned {
            request_id: RequestId(2),
            sealed_for_client: Sealed(vec![1, 2]),
            output_hash: Hash32::of(b"out"),
            results: vec![Hash32::of(b"r0"), Hash32::of(b"r1")],
        }
        .into(),
        NodeRegistered {
            node_id: node(1),
            public_key_pem: "pem".into(),
            hardware_tier: 2,
            models: vec!["oss-chat-v1".into()],
            slots: 2,
            stake: 1_000,
            execution_class: class,
            model_hashes: [("oss-chat-v1".to_owned(), Hash32::of(b"model"))].into(),
            operator: Some("0x00000000000000000000000000000000000000aa".into()),
            signed_at: Some(1_780_000_000),
            signature: Some(Sealed(vec![3; 256])),
        }
        .into(),
        NodeHeartbeat {
            node_id: node(1),
            at: None,
            signature: None,
        }
        .into(),
        NodeHeartbeat {
            node_id: node(1),
            at: Some(1_700_000_000),
            signature: Some(Sealed(vec![3; 8])),
        }
        .into(),
        LogSealed {
            head: Hash32::of(b"the record before"),
            signature: Sealed(vec![4; 8]),
        }
        .into(),
        NodeDrained { node_id: node(1) }.into(),
        NodeLapsed {
            node_id: node(1),
            last_heartbeat: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
        }
        .into(),
        NodeTierLowered {
            node_id: node(1),
            from_tier: 3,
            to_tier: 2,
            model: "chat".into(),
            measured_milli_tps: 41_500,
        }
        .into(),
        CoordinatorKeyPublished {
            public_key_pem: "-----BEGIN PUBLIC KEY-----".into(),
        }
        .into(),
        SessionKeyIssued {
            node_id: node(1),
            epoch: 3,
            wrapped_key: Sealed(vec![1; 256]),
            signature: Sealed(vec![2; 256]),
            sealed_for_coordinator: Sealed(vec![3; 60]),
        }
        .into(),
        RequestScheduled {
            task_id: task(1),
            attempt: 0,
            node_id: node(1),
            candidates_considered: 3,
            ranked: vec![CandidateScore {
                node_id: node(1),
                free_slots: 1,
                queue_depth: 0,
                hardware_tier: 2,
                reputation_bp: 10_000,
            }],
        }
        .into(),
        TaskDispatched {
            task_id: task(1),
            attempt: 0,
            node_id: node(1),
            sealed_work: Sealed(vec![1; 40]),
            deadline_at: t0(),
        }
        .into(),
        result_submitted().into(),
        // As recorded before results were signed over their ciphertext: no `ciphertext_hash`.
        ResultSubmitted {
            task_id: task(2),
            ciphertext_hash: None,
            ..result_submitted()
        }
        .into(),
        DeadlineExpired {
            task_id: task(1),
            attempt: 0,
            node_id: node(1),
        }
        .into(),
        LateResultDiscarded {
            task_id: task(1),
            attempt: 0,
            node_id: node(1),
        }
        .into(),
        DispatchRefused {
            task_id: task(1),
            attempt: 1,
            node_id: node(2),
            reason: RefusalReason::ContextExceeded {
                prompt_tokens: 14,
                max_tokens: 4095,
                context: 4096,
            },
            signature: Sealed(vec![6; 384]),
        }
        .into(),
        CommitmentVerified {
            task_id: task(1),
            attempt: 0,
            node_id: node(1),
            result_hash: Some(Hash32::of(b"result")),
        }
        .into(),
        CommitmentRejected {
            task_id: task(1),
            attempt: 1,
            node_id: node(2),
            reason: "poe mismatch".into(),
        }
        .into(),
        SamplingSeedCommitted {
            epoch: 1,
            seed_hash: Hash32::of(b"seed"),
            sealed_seed: Some(Sealed(vec![7; 60])),
        }
        .into(),
        SamplingSeedRevealed {
            epoch: 1,
            seed: Hash32([5; 32]),
        }
        .into(),
        RedundancySampled {
            task_id: task(1),
            epoch: 1,
            primary: Some(node(1)),
        }
        .into(),
        ValidationResolved {
            task_id: task(1),
            verdict: Verdict::Majority {
                winners: vec![node(1), node(3)],
                dissenters: vec![node(2)],
            },
            result_hash: Some(Hash32::of(b"r")),
        }
        .into(),
        NodeFlagged {
            node_id: node(2),
            task_id: Some(task(1)),
            reason: "outvoted".into(),
        }
        .into(),
        StandingChanged {
            node_id: node(2),
            valid: 3,
            invalid: 1,
            disagreements: 1,
            missed_deadlines: Some(2),
            standing_bp: 7_500,
        }
        .into(),
        NodeRemovedFromPool {
            node_id: node(2),
            reason: "standing below threshold".into(),
        }
        .into(),
        ResultReturned {
            request_id: RequestId(1),
            sealed_for_client: Sealed(vec![8; 30]),
            poe: Hash32::of(b"poe"),
            node_id: node(1),
        }
        .into(),
        RequestFailed {
            request_id: RequestId(3),
            reason: "no capable node".into(),
            cause: Some(FailureCause::NoCapableNode),
        }
        .into(),
        StakeDeposited {
            node_id: node(1),
            amount: 500,
        }
        .into(),
        UnstakeRequested {
            node_id: node(1),
            amount: 500,
            cooldown_seconds: 604_800,
        }
        .into(),
        StakeReturned {
            node_id: node(1),
            amount: 500,
            available_at: t0(),
        }
        .into(),
        RewardRootPrepared {
            epoch: 7,
            leaves: vec![RootLeaf {
                node_id: node(1),
                recipient: format!("0x{}", "ab".repeat(20)),
                amount_wei: "1000000000".into(),
            }],
            total_wei: "1000000000".into(),
            root: Hash32([3; 32]),
        }
        .into(),
        RewardRootPosted {
            epoch: 7,
            root: Hash32([3; 32]),
            log_head: Hash32([4; 32]),
            total_wei: "1000000000".into(),
            chain: ChainRef {
                chain_id: 1,
                contract: format!("0x{}", "cd".repeat(20)),
                block_number: 1,
                block_hash: format!("0x{}", "ef".repeat(32)),
                tx_hash: format!("0x{}", "02".repeat(32)),
                log_index: 0,
            },
        }
        .into(),
        RewardStreamObserved {
            lockup: format!("0x{}", "aa".repeat(20)),
            stream_id: 1,
            recipient: format!("0x{}", "bb".repeat(20)),
            deposited_wei: "250000".into(),
            start_time: 1_700_000_000,
            cliff_time: 0,
            end_time: 1_763_072_000,
            granularity: 1,
            start_unlock_wei: "0".into(),
            cliff_unlock_wei: "0".into(),
            cancelable: false,
            chain_id: 1,
            block_number: 3,
            block_hash: format!("0x{}", "ef".repeat(32)),
        }
        .into(),
        UsageSettled {
            epoch: 7,
            operators_wei: "850".into(),
            treasury_wei: "100".into(),
            infra_wei: "50".into(),
            chain: ChainRef {
                chain_id: 1,
                contract: format!("0x{}", "cd".repeat(20)),
                block_number: 2,
                block_hash: format!("0x{}", "ef".repeat(32)),
                tx_hash: format!("0x{}", "03".repeat(32)),
                log_index: 1,
            },
        }
        .into(),
        ChainStakeChanged {
            node_id: node(1),
            staker: format!("0x{}", "ab".repeat(20)),
            change: StakeChange::UnstakeRequested,
            amount_wei: "2000000000000000000".into(),
            bonded_wei: "3000000000000000000".into(),
            stake: 3_000_000_000,
            chain: ChainRef {
                chain_id: 31337,
                contract: format!("0x{}", "cd".repeat(20)),
                block_number: u64::MAX,
                block_hash: format!("0x{}", "ef".repeat(32)),
                tx_hash: format!("0x{}", "01".repeat(32)),
                log_index: 7,
            },
        }
        .into(),
        RewardModeChanged {
            mode: RewardMode::SteadyState,
        }
        .into(),
        RewardEpochSettled {
            epoch: 4,
            starts_at: t0(),
            ends_at: t0() + chrono::Duration::days(1),
            mode: RewardMode::SteadyState,
            income: 1_000,
            carried_in: 7,
            pool: 857,
            treasury: 100,
            infra: 50,
            total_weight: u128::from(u64::MAX) * 3,
            payouts: vec![Payout {
                node_id: node(1),
                verified_slots: 1_440,
                weight: u128::from(u64::MAX) * 3,
                amount: 857,
            }],
            carried_over: 0,
        }
        .into(),
        RewardPolicyPublished::default().into(),
    ]
}

#[test]
fn every_variant_round_trips_byte_for_byte() {
    let events = one_of_each();
    let mut names: Vec<_> = events.iter().map(Event::type_name).collect();
    names.sort();
    // Some variants twice (a heartbeat with and without its evidence, a result with and
    // without its ciphertext hash).
    names.dedup();
    let mut all = Event::TYPE_NAMES.to_vec();
    all.sort();
    assert_eq!(names, all, "one_of_each() must cover every variant");
    for (i, event) in events.into_iter().enumerate() {
        let mut env = Envelope::new(header(i as u64, t0()), event);
        // Every other record linked: the link round-trips, and an unlinked record is written
        // as records were before the chain (no `prev` key at all).
        if i % 2 == 1 {
            env.header.prev = Some(Hash32::of(&i.to_be_bytes()));
        }
        let bytes = env.encode();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert_eq!(text.contains("\"prev\":"), i % 2 == 1, "{text}");
        let back =
            Envelope::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", env.event.type_name()));
        assert_eq!(back, env);
        assert_eq!(back.encode(), bytes, "re-encoding must reproduce the bytes");
    }
}

#[test]
fn wire_form_is_plain_json_with_the_header_beside_the_payload() {
    let env = Envelope::new(
        header(7, t0()),
        NodeHeartbeat {
            node_id: node(0xab),
            at: None,
            signature: None,
        },
    );
    let v: serde_json::Value = serde_json::from_slice(&env.encode()).unwrap();
    assert_eq!(v["type"], "NodeHeartbeat");
    assert_eq!(v["version"], 1);
    assert_eq!(v["sequence"], 7);
    assert_eq!(v["recorded_at"], "2026-11-24T12:00:00Z");
    assert_eq!(v["data"]["node_id"], "ab".repeat(32));
}

#[test]
fn decode_errors_name_what_is_wrong() {
    let good = String::from_utf8(
        Envelope::new(
            header(1, t0()),
            NodeHeartbeat {
                node_id: node(1),
                at: None,
                signature: None,
            },
        )
        .encode(),
    )
    .unwrap();
    let unknown = good.replace("\"NodeHeartbeat\"", "\"NodeExploded\"");
    assert!(
        matches!(Envelope::decode(unknown.as_bytes()), Err(DecodeError::UnknownType(t)) if t == "NodeExploded")
    );
    let future = good.replace("\"version\":1", "\"version\":9");
    assert!(matches!(
        Envelope::decode(future.as_bytes()),
        Err(DecodeError::FutureVersion {
            version: 9,
            current: 1,
            ..
        })
    ));
    let bad_payload = good.replace("\"node_id\":\"", "\"node_id\":\"zz");
    let err = Envelope::decode(bad_payload.as_bytes()).unwrap_err();
    assert!(
        matches!(err, DecodeError::Payload { ref event_type, .. } if event_type == "NodeHeartbeat"),
        "{err}"
    );
    assert!(matches!(
        Envelope::decode(b"{not json"),
        Err(DecodeError::Envelope(_))
    ));
}

/// An old (version 0) heartbeat that called the field `node`.
fn rename_node_field(mut v: serde_json::Value) -> Result<serde_json::Value, String> {
    let obj = v.as_object_mut().ok_or("payload is not an object")?;
    let node = obj.remove("node").ok_or("missing field node")?;
    obj.insert("node_id".into(), node);
    Ok(v)
}

#[test]
fn upcaster_chain_lifts_old_payloads_before_typed_decoding() {
    let old = format!(
        r#"{{"event_id":"{}","type":"NodeHeartbeat","version":0,"recorded_at":"2026-11-24T12:00:00Z","producer":"p","sequence":3,"data":{{"node":"{}"}}}}"#,
        Uuid::from_u128(1),
        "cd".repeat(32)
    );
    let chain = [Upcaster {
        event_type: "NodeHeartbeat",
        from_version: 0,
        upcast: rename_node_field,
    }];
    let env = Envelope::decode_with(old.as_bytes(), &chain).unwrap();
    assert_eq!(
        env.event,
        Event::NodeHeartbeat(NodeHeartbeat {
            node_id: node(0xcd),
            at: None,
            signature: None,
        })
    );
    // Re-encoding writes the current version.
    assert!(String::from_utf8(env.encode())
        .unwrap()
        .contains("\"version\":1"));
    // Without the upcaster the old payload is refused, naming the gap.
    assert!(matches!(
        Envelope::decode(old.as_bytes()),
        Err(DecodeError::MissingUpcaster { from: 0, .. })
    ));
    // An upcaster that fails says why.
    let broken = old.replace("\"node\"", "\"nod\"");
    let err = Envelope::decode_with(broken.as_bytes(), &chain)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing field node"), "{err}");
}

#[test]
fn checked_in_schemas_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    let rendered = prlx_events::schema::render_all();
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "json") {
                std::fs::remove_file(p).unwrap();
            }
        }
        for (name, body) in &rendered {
            std::fs::write(dir.join(name), body).unwrap();
        }
    }
    let mut on_disk = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "json") {
            on_disk.insert(
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            );
        }
    }
    let stale: Vec<_> = rendered
        .keys()
        .chain(on_disk.keys())
        .filter(|k| rendered.get(*k) != on_disk.get(*k))
        .collect();
    assert!(stale.is_empty(), "schemas/ is stale for {stale:?}; run UPDATE_SCHEMAS=1 cargo test -p prlx-events --test codec");
}

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,24}", "[a-z0-9_.-]{1,12}"]
}

fn arb_event() -> impl Strategy<Value = Event> {
    let hash = any::<[u8; 32]>().prop_map(Hash32);
    prop_oneof![
        (arb_text(), arb_text(), any::<u64>()).prop_map(|(a, t, amount)| Event::from(
            CreditsDeposited {
                account: AccountId(a),
                tx_ref: t,
                amount,
                chain: None,
            }
        )),
        (hash.clone(), any::<u64>(), any::<u32>()).prop_map(|(h, r, a)| Event::from(
            DeadlineExpired {
                task_id: TaskId {
                    request: RequestId(r),
                    subtask: a
                },
                attempt: a,
                node_id: NodeId(h)
            }
        )),
        (
            proptest::option::of(arb_text()),
            arb_text(),
            proptest::collection::vec(any::<u8>(), 0..64),
            hash.clone(),
            any::<u64>(),
            any::<u8>()
        )
            .prop_map(|(k, m, payload, h, price, tier)| {
                Event::from(RequestAccepted {
                    request_id: RequestId(price / 2),
                    idempotency_key: k,
                    source: IntakeSource::Http,
                    workload_class: "ai.inference".into(),
                    model: m,
                    hardware_tier: tier,
                    priority: Priority::Low,
                    deadline_seconds: 60,
                    max_tokens: 1,
                    credit_account: AccountId("a".into()),
                    client_pubkey: String::new(),
                    payload_hash: h,
                    sealed_payload: Sealed(payload),
                    price,
                    consent: None,
                })
            }),
        (arb_text(), proptest::option::of(arb_text())).prop_map(|(message, field)| Event::from(
            RequestRejected {
                idempotency_key: None,
                source: IntakeSource::Local,
                code: RejectionCode::MalformedRequest,
                field,
                message,
            }
        )),
        (hash.clone(), proptest::collection::vec(hash, 0..4)).prop_map(|(h, others)| Event::from(
            ValidationResolved {
                task_id: task(1),
                verdict: Verdict::NoMajority {
                    parties: others.into_iter().map(NodeId).collect()
                },
                result_hash: Some(h),
            }
        )),
    ]
}

proptest! {
    #[test]
    fn codec_round_trips(event in arb_event(), seq in any::<u64>(), secs in 0i64..4_000_000_000, nanos in 0u32..1_000_000_000, producer in arb_text()) {
        let mut h = header(seq, Utc.timestamp_opt(secs, nanos).unwrap());
        h.producer = producer;
        let env = Envelope::new(h, event);
        let bytes = env.encode();
        let back = Envelope::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &env);
        prop_assert_eq!(back.encode(), bytes);
    }
}
