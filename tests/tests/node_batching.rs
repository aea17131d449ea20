//! A node serving with `--batching` against a real coordinator, beside a per-slot node, with
//! every request sampled for a replica: the batching node's bytes must equal the per-slot
//! node's, or the coordinator would find them disagreeing.

use std::collections::BTreeSet;
use std::time::Duration;

use prlx_events::protocol::ResultBody;
use prlx_events::{Event, RequestId};
use prlx_tests::harness::cluster::FileCluster;
use prlx_tests::harness::launch::NodeLaunch;
use prlx_tests::harness::models::{tiny_catalog, TinyEngine, TINY};
use prlx_workloads::InferenceEngine;
use serde_json::json;

const MAX_TOKENS: u32 = 200;

#[test]
fn a_batching_node_decodes_requests_together_and_agrees_with_a_per_slot_node() {
    let mut catalog = tiny_catalog(&[TINY], 5);
    // Every request runs on both nodes and is confirmed only if their bytes agree.
    catalog["validation"]["sampling_bp"] = json!(10_000);
    let c = FileCluster::start(&catalog, "batching-test/1");
    c.deposit(10_000_000);
    let (batching, batching_id) = c.spawn_node_with("node-batching", |launch| NodeLaunch {
        slots: 4,
        extra: vec!["--batching".into()],
        ..launch
    });
    let (_single, single_id) = c.spawn_node("node-single", &[]);

    // Long enough (no early EOS after "abc") that requests overlap on the batching node.
    let prompts: Vec<String> = (0..8).map(|i| format!("{}abc", "z".repeat(i))).collect();
    let ids: Vec<RequestId> = prompts
        .iter()
        .map(|p| c.submit(p, MAX_TOKENS, 60))
        .collect();
    let mut local = TinyEngine::load();
    for (id, prompt) in ids.iter().zip(&prompts) {
        let status = c.wait_result(*id, Duration::from_secs(120));
        assert_eq!(status["validation"], "confirmed", "{id}: {status}");
        let (bytes, _, _) = c.open_result(*id, &status);
        let body: ResultBody = serde_json::from_slice(&bytes).unwrap();
        let expected = local.infer(TINY, prompt, MAX_TOKENS).unwrap();
        assert_eq!(body.text, expected, "{id}: not the single-stream text");
    }
    // Every request ran on both nodes and was agreed between them, none disputed.
    let events = c.events();
    for id in &ids {
        let ran_on: BTreeSet<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::ResultSubmitted(r) if r.task_id.request == *id => Some(r.node_id),
                _ => None,
            })
            .collect();
        assert_eq!(ran_on, BTreeSet::from([batching_id, single_id]), "{id}");
        let agreed = events.iter().any(|e| {
            matches!(e, Event::ValidationResolved(v) if v.task_id.request == *id
                && matches!(v.verdict, prlx_events::event::Verdict::Agreed { .. }))
        });
        assert!(agreed, "{id} was not agreed by a replica");
    }
    // The batching node held several requests in one batch at some point.
    let mut batching = batching;
    let admitted = batching.count("admitting");
    let into_empty = batching.count(", 0 running)");
    assert!(admitted > 0, "the batching node ran nothing");
    assert!(
        admitted > into_empty,
        "no request joined a running batch ({admitted} admitted, all to an empty one)"
    );
}
