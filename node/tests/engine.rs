//! The engine against the real models built by scripts/setup-models.sh (run it first: these
//! tests fail, rather than skip, when the models or ONNX Runtime are missing).

use std::path::{Path, PathBuf};

use prlx_node::engine::{
    ort_environment, resolve_ort_library, Engine, EngineError, EngineOptions, Provider,
};
use prlx_node::registry::{ModelEntry, Registry, RegistryError};

#[path = "../benches/common/floor.rs"]
#[allow(dead_code)]
mod floor;

const TINY: &str = "tiny-test-v1";
const CHAT: &str = "oss-chat-v1";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("node/ has a parent")
        .to_owned()
}

fn registry_text() -> String {
    std::fs::read_to_string(root().join("node/models/registry.toml")).expect("registry.toml")
}

fn entry(reference: &str) -> ModelEntry {
    let registry = Registry::parse(&registry_text(), Path::new("registry.toml"), &root()).unwrap();
    let entry = registry.get(reference).unwrap().clone();
    assert!(
        entry.path.is_file(),
        "{} is missing: run scripts/setup-models.sh",
        entry.path.display()
    );
    entry
}

fn engine_with(reference: &str, options: EngineOptions) -> Engine {
    Engine::load(&entry(reference), &options).unwrap_or_else(|e| panic!("loading {reference}: {e}"))
}

fn engine(reference: &str) -> Engine {
    engine_with(reference, EngineOptions::default())
}

fn threads(n: usize) -> EngineOptions {
    EngineOptions {
        intra_op_threads: n,
        ..EngineOptions::default()
    }
}

#[test]
fn tiny_different_prompts_give_different_continuations() {
    let mut engine = engine(TINY);
    let hello = engine.generate("Hello, world", 32).unwrap();
    let fox = engine.generate("The quick brown fox", 32).unwrap();
    assert_ne!(hello.token_ids, fox.token_ids);
    // The continuations check_model.py (Python onnxruntime) documents for this model.
    assert!(
        hello.text.starts_with("ncncncncnjfjfjfjfjfgcgcgcncnc"),
        "{:?}",
        hello.text
    );
    assert!(
        fox.text.starts_with("plqgwfrlqgnwfrlqgnwf"),
        "{:?}",
        fox.text
    );
    assert_eq!(
        hello.prompt_tokens,
        1 + "Hello, world".len() as u32,
        "BOS + one id per byte"
    );
    assert_eq!(hello.decoding, "greedy");
    assert_eq!(hello.model_sha256, entry(TINY).sha256);
}

#[test]
fn tiny_same_prompt_gives_identical_ids_across_runs_and_thread_counts() {
    let mut one = engine_with(TINY, threads(1));
    let mut two = engine_with(TINY, threads(2));
    assert_eq!((one.intra_op_threads(), two.intra_op_threads()), (1, 2));
    let prompt = "The quick brown fox";
    let first = one.generate(prompt, 48).unwrap();
    let again = one.generate(prompt, 48).unwrap();
    let threaded = two.generate(prompt, 48).unwrap();
    assert_eq!(first.generated_tokens, 48);
    assert_eq!(first.token_ids, again.token_ids);
    assert_eq!(first.token_ids, threaded.token_ids);
    assert_eq!(first.text, threaded.text);
}

#[test]
fn tiny_max_tokens_is_honoured() {
    let mut engine = engine(TINY);
    let long = engine.generate("Hello, world", 20).unwrap();
    for max in [0, 1, 5, 20] {
        let g = engine.generate("Hello, world", max).unwrap();
        assert_eq!(g.generated_tokens, max);
        assert_eq!(g.token_ids.len(), max as usize);
        assert!(!g.stopped_at_eos);
        assert_eq!(
            g.token_ids[..],
            long.token_ids[..max as usize],
            "greedy runs share prefixes"
        );
    }
}

#[test]
fn tiny_eos_stops_early_where_it_occurs() {
    let mut engine = engine(TINY);
    // The models README: "zzzz" ends with ".\n" + EOS after 52 tokens.
    let g = engine.generate("zzzz", 64).unwrap();
    assert!(g.stopped_at_eos, "{g:?}");
    assert_eq!(g.eos_token_id, Some(257));
    assert!(g.generated_tokens < 64);
    assert!(
        !g.token_ids.contains(&257),
        "the EOS id is not part of the output"
    );
    assert!(g.text.ends_with(".\n"), "{:?}", g.text);

    // Exactly enough tokens to reach the EOS: stops on the budget, same ids.
    let capped = engine.generate("zzzz", g.generated_tokens).unwrap();
    assert!(!capped.stopped_at_eos);
    assert_eq!(capped.token_ids, g.token_ids);

    // A prompt ending in a newline makes EOS the very first token.
    let g = engine.generate("abc\n", 10).unwrap();
    assert!(g.stopped_at_eos);
    assert_eq!((g.generated_tokens, g.text.as_str()), (0, ""));
}

#[test]
fn tiny_prompt_longer_than_the_context_is_a_rejection() {
    let mut engine = engine(TINY);
    let err = engine.generate("Hello", 4096).unwrap_err();
    assert!(matches!(err, EngineError::ContextOverflow { .. }), "{err}");
    assert!(err.is_rejection());
}

#[test]
fn smollm2_answers_paris_with_identical_ids_across_runs() {
    let mut engine = engine(CHAT);
    assert_eq!(engine.provider(), Provider::Cpu);
    let prompt = "What is the capital of France?";
    // The ids llama.cpp's tokenizer gives for the ChatML-wrapped prompt (models README).
    assert_eq!(
        engine.encode_prompt(prompt).unwrap(),
        [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]
    );
    let first = engine.generate(prompt, 32).unwrap();
    let again = engine.generate(prompt, 32).unwrap();
    assert!(first.text.contains("Paris"), "{:?}", first.text);
    assert_eq!(first.token_ids, again.token_ids);
    assert!(first.generated_tokens <= 32);
    assert_eq!(first.prompt_tokens, 16);
    // Same execution class, other thread count: validation compares these bytes.
    let mut two = engine_with(CHAT, threads(2));
    assert_eq!(two.generate(prompt, 32).unwrap().token_ids, first.token_ids);
}

/// The engine runs through ONNX Runtime's I/O binding (the cache left where the session
/// computed it); a plain `Session::run` loop, which copies every output out and every input
/// in, must give the same ids, step for step.
#[test]
fn bound_runs_give_the_ids_of_plain_session_runs() {
    for (reference, prompt, runs) in [(TINY, "hello there", 40), (CHAT, "Name a colour.", 24)] {
        let mut engine = engine(reference);
        let generation = engine.generate(prompt, runs).unwrap();
        let library = resolve_ort_library(None, &root()).unwrap();
        let mut plain =
            floor::Floor::new(&entry(reference), &ort_environment(&library).unwrap(), 1).unwrap();
        let prompt_ids: Vec<i64> = engine
            .encode_prompt(prompt)
            .unwrap()
            .into_iter()
            .map(i64::from)
            .collect();
        let plain_ids = plain
            .generate(&prompt_ids, generation.token_ids.len())
            .unwrap();
        assert!(!generation.token_ids.is_empty(), "{reference}");
        assert_eq!(plain_ids, generation.token_ids, "{reference}");
    }
}

#[test]
fn model_whose_hash_does_not_match_is_refused_naming_both_hashes() {
    let real = entry(TINY).sha256;
    let wrong = "ab".repeat(32);
    let text = registry_text().replace(&real, &wrong);
    let registry = Registry::parse(&text, Path::new("registry.toml"), &root()).unwrap();
    let err = Engine::load(registry.get(TINY).unwrap(), &EngineOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::Registry(RegistryError::HashMismatch { .. })
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&wrong), "expected hash missing: {msg}");
    assert!(msg.contains(&real), "actual hash missing: {msg}");
    assert!(msg.contains("tiny/model.onnx"), "file missing: {msg}");
}

#[test]
fn missing_ort_library_says_to_run_the_setup_script() {
    let missing = root().join(".cache/ort/no-such-libonnxruntime.so");
    let options = EngineOptions {
        ort_library: Some(missing.clone()),
        ..EngineOptions::default()
    };
    let err = Engine::load(&entry(TINY), &options).unwrap_err();
    assert!(
        matches!(err, EngineError::OrtLibraryMissing { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    assert!(msg.contains("scripts/setup-models.sh"), "{msg}");
}

/// Asking for CUDA never silently runs on the CPU: without the feature it is refused; with it,
/// a missing GPU runtime (`setup-models.sh --gpu` not run) is an error that says so, and a
/// CUDA provider that cannot run (no GPU, no driver) is an error from `error_on_failure`.
#[test]
fn cuda_that_cannot_run_is_an_error_not_a_cpu_fallback() {
    let options = EngineOptions {
        provider: Provider::Cuda,
        ..EngineOptions::default()
    };
    match Engine::load(&entry(TINY), &options) {
        #[cfg(not(feature = "cuda"))]
        Err(EngineError::CudaNotCompiled) => {}
        #[cfg(feature = "cuda")]
        Err(EngineError::Ort { context, .. }) if context.contains("CUDA") => {}
        // The GPU runtime is not installed here: the error says how to install it.
        #[cfg(feature = "cuda")]
        Err(EngineError::OrtLibraryNotConfigured { setup, .. }) if setup.contains("--gpu") => {}
        #[cfg(feature = "cuda")]
        Ok(engine) if std::env::var_os("PRLX_EXPECT_CUDA").is_some() => {
            assert_eq!(engine.provider(), Provider::Cuda);
        }
        other => panic!("expected a CUDA error, got {other:?}"),
    }
}
