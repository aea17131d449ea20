//! The tiny model the process tests serve (`tiny-test-v1`, built by scripts/setup-models.sh),
//! and the catalog and submission bodies that ask for it.

use prlx_node::registry::Registry;
use serde_json::{json, Value};

use super::bins::workspace_root;

/// The registry key of the tiny model.
pub const TINY: &str = "tiny-test-v1";

/// The tiny model's SHA-256 (hex) from `node/models/registry.toml`, after checking its file is
/// there: the tests fail, rather than skip, without it.
pub fn tiny_sha() -> String {
    let root = workspace_root();
    let registry = Registry::load(&root.join("node/models/registry.toml"), &root).unwrap();
    let entry = registry.get(TINY).unwrap();
    assert!(
        entry.path.is_file(),
        "{} is missing: run scripts/setup-models.sh",
        entry.path.display()
    );
    entry.sha256.clone()
}

/// A catalog file (`serve --catalog`) offering each of `models` with the tiny model's file:
/// tier 1 up, `10 + 1 per token` of up to 4096, in the tiny model's context of 4096 tokens
/// (so at most 4095 of output), tiers to 5, deadlines from `min_deadline_seconds` to an
/// hour, 3 attempts, no probation and no hold on results waiting for a replica.
pub fn tiny_catalog(models: &[&str], min_deadline_seconds: u32) -> Value {
    let sha = tiny_sha();
    let models: Vec<Value> = models
        .iter()
        .map(|name| {
            json!({
                "model": name, "sha256": sha, "min_tier": 1, "base_price": 10,
                "per_token_price": 1, "max_tokens_limit": 4096, "context_length": 4096
            })
        })
        .collect();
    json!({
        "models": models,
        "max_tier": 5,
        "min_deadline_seconds": min_deadline_seconds,
        "max_deadline_seconds": 3600,
        "max_attempts": 3,
        // The catalog's sampling rate from a node's first result, and a result with no peer
        // left released at once: these suites count dispatches and wait seconds, not a
        // minute, for results. Probation and the hold are tested in prlx-commands
        // (`probation.rs`, `unconfirmed.rs`).
        "validation": { "probation_results": 0, "unconfirmed_hold_seconds": 0 },
    })
}

/// A catalog file offering `oss-chat-v1` (SmolLM2-135M) with the file whose SHA-256 is `sha256`,
/// for the benches that run one node of it (`through_node`, `batching_node`): tier 1 up, up to
/// 512 tokens, deadlines from 5 s to an hour. With one node a sampled result has no peer to
/// replicate it, so it is released at once rather than held a minute, and a new node's first
/// results are sampled at the catalog's rate, not all of them (no probation).
pub fn chat_catalog_for_one_node(sha256: &str) -> Value {
    json!({
        "models": [{"model": "oss-chat-v1", "sha256": sha256, "min_tier": 1, "base_price": 10,
            "per_token_price": 1, "max_tokens_limit": 512}],
        "max_tier": 5, "min_deadline_seconds": 5, "max_deadline_seconds": 3600,
        "validation": {"probation_results": 0, "unconfirmed_hold_seconds": 0}
    })
}

/// The body of `POST /v1/requests` asking the tiny model to continue `prompt`, charged to
/// `account`, the result sealed for `client_pem`.
pub fn tiny_submission(
    account: &str,
    prompt: &str,
    max_tokens: u32,
    deadline_seconds: u32,
    client_pem: &str,
) -> Value {
    json!({
        "workload_class": "ai.inference",
        "model": TINY,
        "hardware_tier": 1,
        "priority": "standard",
        "deadline_seconds": deadline_seconds,
        "credit_account": account,
        "client_pubkey": client_pem,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "payload_hash": prlx_events::Hash32::of(prompt.as_bytes()).to_hex(),
    })
}

/// The tiny model loaded in this process, as the workload library's inference engine: the
/// one-process reference a `batch.inference` task's aggregate must equal.
pub struct TinyEngine(prlx_node::engine::Engine);

impl std::fmt::Debug for TinyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TinyEngine")
    }
}

impl TinyEngine {
    pub fn load() -> TinyEngine {
        let root = workspace_root();
        let registry = Registry::load(&root.join("node/models/registry.toml"), &root).unwrap();
        let options = prlx_node::engine::EngineOptions {
            ort_library: Some(prlx_node::engine::resolve_ort_library(None, &root).unwrap()),
            ..Default::default()
        };
        TinyEngine(prlx_node::engine::Engine::load(registry.get(TINY).unwrap(), &options).unwrap())
    }
}

impl prlx_workloads::InferenceEngine for TinyEngine {
    fn infer(&mut self, model: &str, prompt: &str, max_tokens: u32) -> Result<String, String> {
        // As a node's worker runs a shard's prompts (a prompt at fault included).
        prlx_node::worker::EngineAdapter(&mut self.0).infer(model, prompt, max_tokens)
    }
}
