//! The floor both node benches measure against (`node/benches/engine.rs`, and
//! `tests/benches/through_node.rs`, which includes this file by path): a minimal greedy loop
//! written directly against `ort`, with none of the engine's work besides running the graph.

use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor};
use prlx_node::registry::ModelEntry;

/// The bare loop: fresh owned tensors every step, `present.*` fed back as `past_key_values.*`.
pub struct Floor {
    session: Session,
    layers: usize,
    kv_heads: usize,
    head_dim: usize,
    vocab: usize,
    /// How long the first run (the prefill) of the last `generate` took.
    pub prefill: std::time::Duration,
}

impl Floor {
    pub fn new(
        entry: &ModelEntry,
        env: &ort::environment::Environment,
        threads: usize,
    ) -> anyhow::Result<Floor> {
        // A builder step fails with `ort::Error<SessionBuilder>`, which is not `Send` (anyhow
        // refuses it); inside a fn returning `ort::Result` the `?` turns it into `ort::Error`.
        let build = || -> ort::Result<Session> {
            Session::builder(env)?
                .with_intra_threads(threads)?
                .with_inter_threads(1)?
                .with_parallel_execution(false)?
                .with_optimization_level(GraphOptimizationLevel::All)?
                .commit_from_file(&entry.path)
        };
        let session = build()?;
        Ok(Floor {
            session,
            layers: entry.num_layers,
            kv_heads: entry.num_kv_heads,
            head_dim: entry.head_dim,
            vocab: entry.vocab_size,
            prefill: std::time::Duration::ZERO,
        })
    }

    pub fn generate(&mut self, prompt_ids: &[i64], runs: usize) -> anyhow::Result<Vec<u32>> {
        let empty = [1, self.kv_heads, 0, self.head_dim];
        let mut past: Vec<DynValue> = (0..2 * self.layers)
            .map(|_| Ok(Tensor::from_array((empty, Vec::<f32>::new()))?.into_dyn()))
            .collect::<ort::Result<_>>()?;
        let mut ids = prompt_ids.to_vec();
        let mut past_len = 0;
        let mut out = Vec::with_capacity(runs);
        let started = std::time::Instant::now();
        for step in 0..runs {
            let seq = ids.len();
            let total = past_len + seq;
            let positions: Vec<i64> = (past_len as i64..total as i64).collect();
            let mut inputs: Vec<SessionInputValue<'_>> = vec![
                Tensor::from_array(([1, seq], ids))?.into(),
                Tensor::from_array(([1, total], vec![1_i64; total]))?.into(),
                Tensor::from_array(([1, seq], positions))?.into(),
            ];
            inputs.extend(past.drain(..).map(SessionInputValue::from));
            let mut outputs = self.session.run(inputs.as_slice())?.into_iter();
            let (_, logits) = outputs.next().expect("logits");
            let (_, logits) = logits.try_extract_tensor::<f32>()?;
            let last = &logits[(seq - 1) * self.vocab..];
            let mut next = 0;
            for (i, &v) in last.iter().enumerate() {
                if v > last[next] {
                    next = i;
                }
            }
            past.extend(outputs.map(|(_, v)| v));
            if step == 0 {
                self.prefill = started.elapsed();
            }
            out.push(next as u32);
            past_len = total;
            ids = vec![next as i64];
        }
        Ok(out)
    }
}
