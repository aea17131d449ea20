//! Continuous batching against the real models built by scripts/setup-models.sh: every
//! sequence of a batch gets the bytes single-stream decoding gives it, whatever joins or
//! leaves around it.
//!
//! `PRLX_TEST_PROVIDER=cuda` runs them on the GPU (a build with `--features cuda` and the
//! runtime of `scripts/setup-models.sh --gpu`: scripts/gpu-check.sh does both).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prlx_node::batch::{run_all, BatchEngine, Outcome, Request};
use prlx_node::engine::{Engine, EngineError, EngineOptions, Generation, Provider};
use prlx_node::registry::Registry;

const TINY: &str = "tiny-test-v1";
const CHAT: &str = "oss-chat-v1";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("node/ has a parent")
        .to_owned()
}

fn engine(reference: &str) -> Engine {
    let text = std::fs::read_to_string(root().join("node/models/registry.toml")).unwrap();
    let registry = Registry::parse(&text, Path::new("registry.toml"), &root()).unwrap();
    let entry = registry.get(reference).unwrap();
    assert!(
        entry.path.is_file(),
        "{} is missing: run scripts/setup-models.sh",
        entry.path.display()
    );
    let options = EngineOptions {
        provider: provider(),
        ..EngineOptions::default()
    };
    Engine::load(entry, &options).unwrap_or_else(|e| panic!("loading {reference}: {e}"))
}

/// `PRLX_TEST_PROVIDER`, the CPU when unset.
fn provider() -> Provider {
    std::env::var("PRLX_TEST_PROVIDER").map_or(Provider::Cpu, |p| p.parse().unwrap())
}

fn request(tag: usize, prompt: &str, max_tokens: u32) -> Request<usize> {
    Request {
        tag,
        prompt: prompt.to_owned(),
        max_tokens,
        deadline: None,
    }
}

/// Everything of a generation but its timing.
fn same(batched: &Generation, single: &Generation, what: &str) {
    assert_eq!(batched.token_ids, single.token_ids, "{what}: ids");
    assert_eq!(batched.text, single.text, "{what}: text");
    assert_eq!(batched.prompt_tokens, single.prompt_tokens, "{what}");
    assert_eq!(batched.generated_tokens, single.generated_tokens, "{what}");
    assert_eq!(batched.eos_token_id, single.eos_token_id, "{what}");
    assert_eq!(batched.model_sha256, single.model_sha256, "{what}");
}

/// Prompts of many lengths, some ending at once (a trailing newline makes the tiny model
/// stop), some stopping at EOS mid-way ("zzzz": after 52 ids), budgets from 0 up.
fn tiny_requests() -> Vec<Request<usize>> {
    let mut requests = Vec::new();
    let words = [
        "alpha",
        "The quick brown fox",
        "zzzz",
        "Hello, world",
        "a",
        "line\n",
    ];
    for i in 0..40 {
        let mut prompt = words[i % words.len()].repeat(1 + i % 7);
        prompt.push_str(&format!(" {i}"));
        if i % 9 == 4 {
            prompt = "zzzz".into();
        }
        if i % 11 == 5 {
            prompt.push('\n');
        }
        let max_tokens = [0, 1, 5, 17, 48, 64][i % 6];
        requests.push(request(i, &prompt, max_tokens));
    }
    requests
}

fn done(outcome: Outcome<usize>) -> (usize, Generation) {
    match outcome {
        Outcome::Done { tag, generation } => (tag, generation),
        other => panic!("expected a generation, got {other:?}"),
    }
}

#[test]
fn tiny_batched_ids_equal_single_stream_with_more_requests_than_the_batch_holds() {
    let requests = tiny_requests();
    let mut single = engine(TINY);
    let expected: Vec<Generation> = requests
        .iter()
        .map(|r| single.generate(&r.prompt, r.max_tokens).unwrap())
        .collect();
    assert!(expected
        .iter()
        .any(|g| g.stopped_at_eos && g.generated_tokens > 0));
    assert!(expected.iter().any(|g| g.generated_tokens == 64));

    for capacity in [1, 4, 16] {
        let (_, outcomes) = run_all(single, capacity, requests.clone());
        assert_eq!(outcomes.len(), requests.len(), "capacity {capacity}");
        let mut order = Vec::new();
        for outcome in outcomes {
            let (tag, generation) = done(outcome);
            same(
                &generation,
                &expected[tag],
                &format!("capacity {capacity}, request {tag}"),
            );
            order.push(tag);
        }
        if capacity > 1 {
            // Short ones overtook long ones: sequences really left and joined mid-batch.
            assert_ne!(order, (0..requests.len()).collect::<Vec<_>>());
        }
        single = engine(TINY);
    }
}

#[test]
fn smollm2_batched_ids_equal_single_stream() {
    let prompts = [
        "What is the capital of France?",
        "Name three colours.",
        "Write a haiku about the sea.",
        "What is 2 + 2?",
        "Say hello in Spanish.",
        "List the planets of the solar system in order from the sun.",
    ];
    let requests: Vec<Request<usize>> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| request(i, p, [24, 9, 24, 16, 24, 20][i]))
        .collect();
    let mut single = engine(CHAT);
    let expected: Vec<Generation> = requests
        .iter()
        .map(|r| single.generate(&r.prompt, r.max_tokens).unwrap())
        .collect();
    assert!(expected[0].text.contains("Paris"), "{:?}", expected[0].text);
    let (_, outcomes) = run_all(single, 4, requests);
    assert_eq!(outcomes.len(), prompts.len());
    for outcome in outcomes {
        let (tag, generation) = done(outcome);
        same(&generation, &expected[tag], prompts[tag]);
    }
}

#[test]
fn a_sequence_joining_a_running_batch_gets_its_own_answer() {
    let mut single = engine(TINY);
    let long = single.generate("The quick brown fox", 40).unwrap();
    let short = single.generate("a", 12).unwrap();
    let mut batch = BatchEngine::new(single, 4);
    assert!(batch
        .admit(request(0, "The quick brown fox", 40))
        .unwrap()
        .is_none());
    for _ in 0..7 {
        assert!(batch.step().is_empty());
    }
    // The second joins 7 ids into the first: their caches differ in length from here on.
    assert!(batch.admit(request(1, "a", 12)).unwrap().is_none());
    assert_eq!(batch.running(), 2);
    let mut outcomes = Vec::new();
    while !batch.is_empty() {
        outcomes.extend(batch.step());
    }
    let (first, generation) = done(outcomes.remove(0));
    assert_eq!(first, 1, "the short one leaves first");
    same(&generation, &short, "joined late");
    let (_, generation) = done(outcomes.remove(0));
    same(&generation, &long, "ran throughout");
}

#[test]
fn a_deadline_ends_only_its_own_sequence() {
    let mut single = engine(TINY);
    let expected = single.generate("Hello, world", 30).unwrap();
    let mut batch = BatchEngine::new(single, 4);
    let soon = Instant::now() + Duration::from_millis(30);
    let mut late = request(0, "The quick brown fox", 64);
    late.deadline = Some(soon);
    assert!(batch.admit(late).unwrap().is_none());
    assert!(batch
        .admit(request(1, "Hello, world", 30))
        .unwrap()
        .is_none());
    assert!(batch.step().is_empty());
    std::thread::sleep(soon.saturating_duration_since(Instant::now()));
    let outcomes = batch.step();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    match &outcomes[0] {
        Outcome::Expired { tag, generated } => {
            assert_eq!(*tag, 0);
            assert_eq!(*generated, 2, "its first id and one step's");
        }
        other => panic!("expected the expiry, got {other:?}"),
    }
    assert_eq!(batch.running(), 1);
    let mut rest = Vec::new();
    while !batch.is_empty() {
        rest.extend(batch.step());
    }
    let (tag, generation) = done(rest.remove(0));
    assert_eq!(tag, 1);
    same(&generation, &expected, "outlived its neighbour");
}

#[test]
fn a_refused_prompt_fails_alone_and_a_full_batch_gives_requests_back() {
    let mut batch = BatchEngine::new(engine(TINY), 2);
    assert!(batch
        .admit(request(0, "Hello, world", 20))
        .unwrap()
        .is_none());
    match batch.admit(request(1, "Hello", u32::MAX)).unwrap() {
        Some(Outcome::Failed {
            tag: 1,
            error: EngineError::ContextOverflow { .. },
        }) => {}
        other => panic!("expected a context overflow, got {other:?}"),
    }
    assert!(batch.admit(request(2, "world", 20)).unwrap().is_none());
    let back = batch.admit(request(3, "full", 20)).unwrap_err();
    assert_eq!(back.tag, 3);
    assert_eq!(batch.running(), 2);
}

/// Device-resident decoding: a step leaves the cache where the session computed it (on a GPU,
/// its memory), and the next step takes it from there; only a join or a leave brings it to
/// the host. On the CPU both are host memory: this checks the path; on CUDA, the placement.
#[test]
fn steps_keep_the_cache_on_the_sessions_device() {
    let device = match provider() {
        Provider::Cpu => "Cpu",
        Provider::Cuda => "Cuda",
    };
    let mut batch = BatchEngine::new(engine(CHAT), 4);
    assert_eq!(batch.cache_device(), None);
    for (tag, prompt) in ["Name a colour.", "What is the capital of France?"]
        .into_iter()
        .enumerate()
    {
        assert!(batch.admit(request(tag, prompt, 12)).unwrap().is_none());
    }
    assert_eq!(
        batch.cache_device().as_deref(),
        Some("Cpu"),
        "after the joins"
    );
    for step in 0..4 {
        assert!(batch.step().is_empty(), "nothing ends before its budget");
        assert_eq!(batch.cache_device().as_deref(), Some(device), "step {step}");
    }
}
