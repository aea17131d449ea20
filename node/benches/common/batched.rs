//! One batch of prompts through [`run_all`], each finished with the ids it must have: the step
//! both batching benches time (`node/benches/batching.rs` against single-stream decoding, and
//! `tests/benches/batching_node.rs` against a batching node, which includes this file by path).

use prlx_node::batch::{run_all, Outcome, Request};
use prlx_node::engine::Engine;

/// Runs `prompts` (tagged by their index) through a batch of `capacity` on `engine`; every one
/// must finish, with the ids `expected(tag)` names (`against` says what those are, for the
/// error). Returns the engine and the seconds the batch took.
pub fn run_checked<'a>(
    engine: Engine,
    capacity: usize,
    prompts: &[String],
    max_tokens: u32,
    expected: impl Fn(usize) -> &'a [u32],
    against: &str,
) -> anyhow::Result<(Engine, f64)> {
    let requests = prompts
        .iter()
        .enumerate()
        .map(|(tag, prompt)| Request {
            tag,
            prompt: prompt.clone(),
            max_tokens,
            deadline: None,
        })
        .collect();
    let started = std::time::Instant::now();
    let (engine, outcomes) = run_all(engine, capacity, requests);
    let elapsed = started.elapsed().as_secs_f64();
    for outcome in outcomes {
        let Outcome::Done { tag, generation } = outcome else {
            anyhow::bail!("a batched request did not finish: {outcome:?}");
        };
        anyhow::ensure!(
            generation.token_ids == expected(tag),
            "request {tag}: batched ids differ from {against}"
        );
    }
    Ok((engine, elapsed))
}
