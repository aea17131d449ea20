//! The general path end to end (issue 18), with a real `prlx-coordinator serve` and real
//! `prlx-node run` processes through the process kit ([`prlx_tests::harness`]: the binaries
//! built by `cargo build --workspace --bins`, the models of scripts/setup-models.sh).
//!
//! For each class a task is split into sub-tasks, each dispatched, executed, proven and
//! validated as a request of its own, and the aggregate returned to the client, sealed. The
//! tests check what the issue asks, from the client's side and from the log:
//! - the client's output equals the same computation done in one process;
//! - independent sub-tasks were in flight on different nodes at the same time (each sub-task's
//!   dispatch-to-result interval, on the log's clock);
//! - a dependent sub-task is released (its input built) only after each of its deps returned a
//!   validated result, and dispatched only after its release;
//! - a sub-task whose node fails is redone alone: only it is dispatched again;
//! - the task is charged its quoted price, once, and bad parameters are refused naming the
//!   parameter.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prlx_events::{Envelope, Event, RequestId};
use prlx_tests::harness::client::read_log;
use prlx_tests::harness::cluster::FileCluster;
use prlx_tests::harness::models::{tiny_catalog, TinyEngine, TINY};
use serde_json::{json, Value};

/// One cluster at a time: the tests time sub-tasks on a machine with few cores.
static SERIAL: Mutex<()> = Mutex::new(());

const RESULT_WAIT: Duration = Duration::from_secs(180);

fn start(sampling_bp: u32) -> FileCluster {
    let mut catalog = tiny_catalog(&[TINY], 5);
    catalog["validation"]["sampling_bp"] = json!(sampling_bp);
    FileCluster::start(&catalog, "general-test/1")
}

/// Every event on the log with the time it was recorded at, in log order.
fn timed(c: &FileCluster) -> Vec<(DateTime<Utc>, Event)> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(read_log(&c.log_url()))
        .into_iter()
        .map(|(_, payload)| {
            let env = Envelope::decode(&payload).unwrap();
            (env.header.recorded_at, env.event)
        })
        .collect()
}

/// The sub-tasks the log planned for `task`, by index, with their deps.
fn planned(events: &[(DateTime<Utc>, Event)], task: RequestId) -> Vec<(RequestId, Vec<u32>)> {
    events
        .iter()
        .find_map(|(_, e)| match e {
            Event::SubtasksPlanned(p) if p.request_id == task => Some(
                p.subtasks
                    .iter()
                    .map(|s| (s.request_id, s.depends_on.clone()))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no SubtasksPlanned of {task}"))
}

/// The one-process reference of a pure class.
fn reference(class: &str, params: &Value) -> Vec<u8> {
    let spec = prlx_workloads::parse(class, params).unwrap();
    prlx_workloads::run_in_one_process(&spec, None).unwrap()
}

/// Submits, waits, opens the aggregate as the client; checks it against `expect` and the
/// charge against the price. Returns the task's id.
fn run_task(c: &FileCluster, class: &str, params: &Value, expect: &[u8]) -> RequestId {
    let before = c.balance();
    let (task, price) = c.submit_task(class, params, 600);
    let status = c.wait_result(task, RESULT_WAIT);
    assert_eq!(status["status"], "completed", "{status}");
    let (output, _, output_hash) = c.open_result(task, &status);
    assert!(
        output == expect,
        "{class}: the aggregate ({} bytes) differs from the one-process result ({} bytes)",
        output.len(),
        expect.len()
    );
    assert_eq!(output_hash, prlx_events::Hash32::of(expect));
    assert_eq!(c.balance(), before - price, "{class}: charged its price");
    task
}

/// Each sub-task's (node, dispatched at, result at) for its attempts that returned a result.
fn intervals(
    events: &[(DateTime<Utc>, Event)],
    subtasks: &BTreeSet<RequestId>,
) -> Vec<(RequestId, prlx_events::NodeId, DateTime<Utc>, DateTime<Utc>)> {
    let mut dispatched = BTreeMap::new();
    let mut out = Vec::new();
    for (at, e) in events {
        match e {
            Event::TaskDispatched(d) if subtasks.contains(&d.task_id.request) => {
                dispatched.insert((d.task_id.request, d.attempt), (d.node_id, *at));
            }
            Event::ResultSubmitted(r) if subtasks.contains(&r.task_id.request) => {
                if let Some((node, from)) = dispatched.get(&(r.task_id.request, r.attempt)) {
                    out.push((r.task_id.request, *node, *from, *at));
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn pure_classes_split_across_nodes_and_aggregate_to_the_one_process_result() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let c = start(0);
    c.deposit(50_000);
    let (_a, node_a) = c.spawn_node("node-a", &[]);
    let (_b, node_b) = c.spawn_node("node-b", &[]);

    // Render: 6 independent tiles of a Mandelbrot view, assembled into a PNG.
    let render = json!({"width": 96, "height": 64, "tile": 32,
                        "scene": {"fractal": "mandelbrot", "max_iter": 300}});
    let png = reference("render.tiles", &render);
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let render_task = run_task(&c, "render.tiles", &render, &png);

    // Word count: 6 map shards reduced in a tree of fan-in 2 (dependent sub-tasks).
    let text =
        "the quick brown fox jumps over the lazy dog; THE DOG sleeps, the fox runs. ".repeat(40);
    let words = json!({"text": text, "map_shards": 6, "fan_in": 2});
    let count_task = run_task(
        &c,
        "mapreduce.wordcount",
        &words,
        &reference("mapreduce.wordcount", &words),
    );

    // A parameter sweep of an epidemic model, in chunks.
    let sweep = json!({"population": 100_000, "initial_infected": 10, "days": 120,
                       "beta_min": 100, "beta_max": 900, "beta_steps": 6,
                       "gamma_min": 50, "gamma_max": 400, "gamma_steps": 4, "chunk_size": 6});
    run_task(
        &c,
        "sweep.epidemic",
        &sweep,
        &reference("sweep.epidemic", &sweep),
    );

    let events = timed(&c);

    // Independent sub-tasks were in flight on different nodes at the same time.
    let tiles: BTreeSet<RequestId> = planned(&events, render_task)
        .into_iter()
        .map(|(id, deps)| {
            assert!(deps.is_empty(), "tiles are independent");
            id
        })
        .collect();
    assert_eq!(tiles.len(), 6);
    let spans = intervals(&events, &tiles);
    let nodes: BTreeSet<_> = spans.iter().map(|s| s.1).collect();
    assert_eq!(
        nodes,
        BTreeSet::from([node_a, node_b]),
        "both nodes ran tiles"
    );
    let overlapping = spans
        .iter()
        .any(|x| spans.iter().any(|y| x.1 != y.1 && x.2 < y.3 && y.2 < x.3));
    assert!(
        overlapping,
        "no two tiles were in flight on different nodes at once: {spans:#?}"
    );

    // A dependent sub-task is released only after each dep returned its validated result,
    // and dispatched only after its release.
    let plan = planned(&events, count_task);
    let dependent: Vec<_> = plan.iter().filter(|(_, deps)| !deps.is_empty()).collect();
    assert!(dependent.len() >= 2, "a reduce tree: {plan:?}");
    let position = |pred: &dyn Fn(&Event) -> bool| {
        events
            .iter()
            .position(|(_, e)| pred(e))
            .expect("the event is on the log")
    };
    for (id, deps) in dependent {
        let released = position(&|e| matches!(e, Event::SubtaskReleased(r) if r.request_id == *id));
        for d in deps {
            let dep = plan[*d as usize].0;
            let returned =
                position(&|e| matches!(e, Event::ResultReturned(r) if r.request_id == dep));
            assert!(
                returned < released,
                "{id} released before its dep {dep} returned"
            );
        }
        let first_dispatch =
            position(&|e| matches!(e, Event::TaskDispatched(t) if t.task_id.request == *id));
        assert!(
            first_dispatch > released,
            "{id} dispatched before its release"
        );
    }

    // Each task aggregated once, after all its sub-tasks; the log folds for the auditor.
    for task in [render_task, count_task] {
        let aggregates = events
            .iter()
            .filter(|(_, e)| matches!(e, Event::AggregateReturned(a) if a.request_id == task))
            .count();
        assert_eq!(aggregates, 1, "{task}");
    }
}

#[test]
fn a_failed_subtask_is_redone_alone() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let c = start(0);
    c.deposit(50_000);
    // The silent node takes its dispatches and never reports: each expires after the
    // task's deadline and goes to the honest node.
    let (_silent, silent) = c.spawn_node("node-silent", &["--fault", "silent"]);
    let (_honest, honest) = c.spawn_node("node-honest", &[]);
    let render = json!({"width": 64, "height": 64, "tile": 32,
                        "scene": {"fractal": "julia", "max_iter": 80, "palette": "ocean"}});
    let expect = reference("render.tiles", &render);
    let before = c.balance();
    let (task, price) = c.submit_task("render.tiles", &render, 5);
    let status = c.wait_result(task, RESULT_WAIT);
    let (output, _, _) = c.open_result(task, &status);
    assert!(
        output == expect,
        "the aggregate differs from the one-process render"
    );
    assert_eq!(c.balance(), before - price);

    let events = timed(&c);
    let tiles: BTreeSet<RequestId> = planned(&events, task)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut dispatches: BTreeMap<RequestId, Vec<prlx_events::NodeId>> = BTreeMap::new();
    let mut expired = BTreeSet::new();
    for (_, e) in &events {
        match e {
            Event::TaskDispatched(d) if tiles.contains(&d.task_id.request) => dispatches
                .entry(d.task_id.request)
                .or_default()
                .push(d.node_id),
            Event::DeadlineExpired(d) if tiles.contains(&d.task_id.request) => {
                assert_eq!(d.node_id, silent, "only the silent node misses deadlines");
                expired.insert(d.task_id.request);
            }
            _ => {}
        }
    }
    assert!(
        !expired.is_empty(),
        "the silent node held a tile: {dispatches:?}"
    );
    for (tile, nodes) in &dispatches {
        if expired.contains(tile) {
            // Redone on the honest node, once.
            assert_eq!(nodes, &vec![silent, honest], "{tile}");
        } else {
            // Never redone: one dispatch, to the honest node.
            assert_eq!(nodes, &vec![honest], "{tile}");
        }
    }
    assert_eq!(dispatches.len(), tiles.len());
}

#[test]
fn unknown_classes_and_bad_parameters_are_refused_naming_the_field() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let c = start(0);
    c.deposit(1_000);
    let (status, body) = c.try_submit_task("render.movie", &json!({}), 60);
    assert!((400..500).contains(&status), "{status} {body}");
    assert_eq!(body["error"]["field"], "workload_class", "{body}");
    let (status, body) = c.try_submit_task(
        "render.tiles",
        &json!({"width": 0, "height": 64, "tile": 32, "scene": {"fractal": "mandelbrot"}}),
        60,
    );
    assert!((400..500).contains(&status), "{status} {body}");
    assert_eq!(body["error"]["field"], "params.width", "{body}");
    // A task whose price exceeds the account's credit is refused, and nothing is reserved.
    let big = json!({"width": 1024, "height": 1024, "tile": 64,
                     "scene": {"fractal": "mandelbrot", "max_iter": 4000}});
    let (status, body) = c.try_submit_task("render.tiles", &big, 60);
    assert!((400..500).contains(&status), "{status} {body}");
    assert_eq!(body["error"]["field"], "credit_account", "{body}");
    assert_eq!(c.balance(), 1_000);
}

#[test]
fn batch_inference_shards_run_on_the_nodes_engines_each_checked_by_a_replica() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // Every sub-task sampled: each shard runs on both nodes and is confirmed by agreement.
    let c = start(10_000);
    c.deposit(50_000);
    let (_a, _) = c.spawn_node("node-a", &[]);
    let (_b, _) = c.spawn_node("node-b", &[]);
    let mut prompts: Vec<String> = (0..6)
        .map(|i| format!("Story {i}: once upon a time"))
        .collect();
    // A submitter's prompt too long for the model's context: it cannot run on any node, and
    // its place in the output says so (the shard still runs, and its nodes miss nothing).
    prompts[3] = "a ".repeat(8_000);
    let params = json!({"model": TINY, "inputs": prompts, "shard_size": 2, "max_tokens": 12});

    let spec = prlx_workloads::parse("batch.inference", &params).unwrap();
    let expect = prlx_workloads::run_in_one_process(&spec, Some(&mut TinyEngine::load())).unwrap();

    let expected: Vec<String> = serde_json::from_slice(&expect).unwrap();
    assert!(
        expected[3].starts_with("[not run: a prompt of"),
        "{}",
        expected[3]
    );
    let task = run_task(&c, "batch.inference", &params, &expect);
    let status = c.status(task);
    assert_eq!(status["validation"], "confirmed", "{status}");
    let events = timed(&c);
    let shards: BTreeSet<RequestId> = planned(&events, task)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(shards.len(), 3);
    for shard in &shards {
        let agreed = events.iter().any(|(_, e)| {
            matches!(e, Event::ValidationResolved(v) if v.task_id.request == *shard
                && matches!(v.verdict, prlx_events::event::Verdict::Agreed { .. }))
        });
        assert!(agreed, "shard {shard} was confirmed by a replica");
    }

    // A batch whose shards would ask for more tokens than the request's max_tokens, or
    // another model, is refused naming the parameter.
    let greedy = json!({"model": TINY, "inputs": ["x"], "max_tokens": 65});
    let (status, body) = c.try_submit_task("batch.inference", &greedy, 60);
    assert!((400..500).contains(&status), "{status} {body}");
    assert_eq!(body["error"]["field"], "params.max_tokens", "{body}");
    let other = json!({"model": "oss-chat-v1", "inputs": ["x"], "max_tokens": 8});
    let (_, body) = c.try_submit_task("batch.inference", &other, 60);
    assert_eq!(body["error"]["field"], "params.model", "{body}");
}

#[test]
fn an_output_too_large_to_return_is_declined_by_nodes_and_the_task_refunded() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let c = start(0);
    c.deposit(5_000_000);
    let (_a, _) = c.spawn_node("node-a", &[]);
    let (_b, _) = c.spawn_node("node-b", &[]);
    // ~60k distinct words in one shard: the map's table is larger than a sub-task may
    // return, which only running it shows.
    let text: String = (0..60_000u32).map(|i| format!("w{i:x} ")).collect();
    let words = json!({"text": text, "map_shards": 1});
    let before = c.balance();
    let (task, _) = c.submit_task("mapreduce.wordcount", &words, 600);
    let until = std::time::Instant::now() + RESULT_WAIT;
    let status = loop {
        let status = c.status(task);
        if status["status"] != "accepted" {
            break status;
        }
        assert!(std::time::Instant::now() < until, "{status}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status["status"], "failed", "{status}");
    assert_eq!(c.balance(), before, "refunded in full");
    let events = timed(&c);
    let refusals = events
        .iter()
        .filter(|(_, e)| {
            matches!(e, Event::DispatchRefused(r)
                if matches!(r.reason, prlx_events::event::RefusalReason::OutputTooLarge { .. }))
        })
        .count();
    assert_eq!(refusals, 2, "both nodes declined, signed");
    assert!(
        !events.iter().any(|(_, e)| matches!(
            e,
            Event::NodeFlagged(_) | Event::DeadlineExpired(_) | Event::StandingChanged(_)
        )),
        "declining costs an honest node nothing"
    );
}

#[test]
fn a_task_is_quoted_as_it_is_charged() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let c = start(0);
    c.deposit(100_000);
    let render = json!({"width": 128, "height": 96, "tile": 32,
                        "scene": {"fractal": "mandelbrot", "max_iter": 500}});
    let ask = |class: &str, params: &Value| {
        c.call(
            "POST",
            "/v1/quote/task",
            Some(
                &json!({"workload_class": class, "model": TINY, "hardware_tier": 1,
                         "max_tokens": 64, "params": params}),
            ),
        )
    };
    let (status, quote) = ask("render.tiles", &render);
    assert_eq!(status, 200, "{quote}");
    assert_eq!(quote["subtasks"], 12, "{quote}");
    assert_eq!(quote["depth"], 1, "{quote}");
    assert_eq!(quote["cost_unit"], "pixel x max_iter", "{quote}");
    let (_, price) = c.submit_task("render.tiles", &render, 600);
    assert_eq!(quote["price"].as_u64(), Some(price), "quoted as charged");

    let words = json!({"text": "a b c d e f g h", "map_shards": 4, "fan_in": 2});
    let (_, quote) = ask("mapreduce.wordcount", &words);
    assert_eq!(
        (quote["subtasks"].as_u64(), quote["depth"].as_u64()),
        (Some(7), Some(3))
    );

    let (status, body) = ask(
        "render.tiles",
        &json!({"width": 0, "height": 8, "scene": {}}),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "params.width", "{body}");
    let (status, body) = ask("ai.inference", &json!({}));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "workload_class", "{body}");
}
