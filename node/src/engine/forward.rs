//! One model run: a batch of rows through the session, the greedy id of each row's last
//! position, the new cache. The hot path of both single-stream and batched decoding.

use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor, TensorRef};

use crate::registry::ChatTemplate;

use super::error::{ort_err, EngineError};

/// What the decode loop needs from the registry entry.
#[derive(Debug, Clone)]
pub(super) struct ModelSpec {
    pub(super) reference: String,
    pub(super) prefix_ids: Vec<u32>,
    pub(super) eos_token_ids: Vec<u32>,
    pub(super) chat_template: ChatTemplate,
    pub(super) num_layers: usize,
    pub(super) vocab_size: usize,
    pub(super) context_length: usize,
}

/// One model run's inputs: `batch` rows of `seq` new ids each, row-major.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rows<'a> {
    pub(crate) batch: usize,
    pub(crate) seq: usize,
    pub(crate) ids: &'a [i64],
    pub(crate) positions: &'a [i64],
    /// `batch` rows of `total` (= past + seq) entries: 1 for a real slot (contract v2: a
    /// row's ones come first, then its padding).
    pub(crate) mask: &'a [i64],
    pub(crate) total: usize,
}

/// One model run over `rows`, with `past` (or the empty past when it is empty: a prefill of
/// batch 1) as the cache. Leaves the new cache in `past`; `next` gets each row's greedy id
/// at its last position.
pub(super) fn forward(
    session: &mut Session,
    spec: &ModelSpec,
    empty_past: &Tensor<f32>,
    rows: Rows<'_>,
    past: &mut Vec<DynValue>,
    next: &mut Vec<u32>,
) -> Result<(), EngineError> {
    let Rows {
        batch,
        seq,
        ids,
        positions,
        mask,
        total,
    } = rows;
    let mut inputs: Vec<SessionInputValue<'_>> = Vec::with_capacity(3 + 2 * spec.num_layers);
    inputs.push(
        TensorRef::from_array_view(([batch, seq], ids))
            .map_err(ort_err("creating an input tensor"))?
            .into(),
    );
    inputs.push(
        TensorRef::from_array_view(([batch, total], mask))
            .map_err(ort_err("creating an input tensor"))?
            .into(),
    );
    inputs.push(
        TensorRef::from_array_view(([batch, seq], positions))
            .map_err(ort_err("creating an input tensor"))?
            .into(),
    );
    if past.is_empty() {
        inputs.extend((0..2 * spec.num_layers).map(|_| SessionInputValue::from(empty_past)));
    } else {
        inputs.extend(past.drain(..).map(SessionInputValue::from));
    }

    let outputs = session
        .run(inputs.as_slice())
        .map_err(ort_err("running the model"))?;
    let mut outputs = outputs.into_iter();
    let (_, logits) = outputs.next().ok_or_else(|| EngineError::Contract {
        reference: spec.reference.clone(),
        problem: "the model returned no outputs".into(),
    })?;
    let (_, logits) = logits
        .try_extract_tensor::<f32>()
        .map_err(ort_err("reading the logits"))?;
    let vocab = spec.vocab_size;
    if logits.len() != batch * seq * vocab {
        return Err(EngineError::Contract {
            reference: spec.reference.clone(),
            problem: format!(
                "logits hold {} values, expected {batch} x {seq} x {vocab}",
                logits.len()
            ),
        });
    }
    next.clear();
    next.extend((0..batch).map(|row| {
        let last = (row * seq + seq - 1) * vocab;
        argmax(&logits[last..last + vocab])
    }));
    past.extend(outputs.map(|(_, present)| present));
    Ok(())
}

pub(super) fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The index of the largest value; the lowest index among equal maxima, NaN never chosen.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_value {
            best = i;
            best_value = v;
        }
    }
    count(best)
}
