//! One model run: a batch of rows through the session, the greedy id of each row's last
//! position, the new cache. The hot path of both single-stream and batched decoding.
//!
//! Runs go through ONNX Runtime's I/O binding ([`Binding`]) so that the cache stays where
//! the session computes it: on a GPU, the `present.*` outputs are left in device memory and
//! bound as the next run's `past_key_values.*` there, and only the logits come to the host.
//! A plain `Session::run` copies every output to the host and every input back, which would
//! move the whole cache across the bus twice per token. On the CPU both are host memory and
//! the binding changes nothing but the path, which is why the CPU tests cover it.

use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, Session};
use ort::value::{DynValue, Tensor};

use crate::registry::ChatTemplate;

use super::error::{ort_err, EngineError};
use super::runtime::Provider;

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

/// A session's I/O binding and where its outputs go: the cache on the session's device, the
/// logits on the host. Bound afresh for every run and cleared after it: an output bound to a
/// device keeps its buffer in the binding, and ONNX Runtime would write the next run's
/// outputs into it (the cache grows by a slot per run, so the shapes would not even match)
/// while it is still that run's input.
pub(super) struct Binding {
    binding: IoBinding,
    cache: MemoryInfo<'static>,
    host: MemoryInfo<'static>,
    /// The contract's input and output names, in order (checked at load).
    inputs: Vec<String>,
    outputs: Vec<String>,
}

impl Binding {
    pub(super) fn new(session: &Session, provider: Provider) -> Result<Binding, EngineError> {
        let device = match provider {
            Provider::Cpu => AllocationDevice::CPU,
            // The CUDA provider is registered with its default device, 0.
            Provider::Cuda => AllocationDevice::CUDA,
        };
        let memory = |device| {
            MemoryInfo::new(device, 0, AllocatorType::Device, MemoryType::Default)
                .map_err(ort_err("describing the cache's memory"))
        };
        Ok(Binding {
            binding: session
                .create_binding()
                .map_err(ort_err("creating the I/O binding"))?,
            cache: memory(device)?,
            host: memory(AllocationDevice::CPU)?,
            inputs: session
                .inputs()
                .iter()
                .map(|i| i.name().to_owned())
                .collect(),
            outputs: session
                .outputs()
                .iter()
                .map(|o| o.name().to_owned())
                .collect(),
        })
    }
}

/// One model run over `rows`, with `past` (or the empty past when it is empty: a prefill of
/// batch 1) as the cache. Leaves the new cache in `past`, where the session computed it;
/// `next` gets each row's greedy id at its last position.
pub(super) fn forward(
    session: &mut Session,
    binding: &mut Binding,
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
    let Binding {
        binding,
        cache,
        host,
        inputs,
        outputs,
    } = binding;
    // Empty already unless the last run failed (which keeps at most one old cache alive).
    binding.clear();
    // Owned tensors: the binding keeps what it is given, and clones a borrowed one first.
    let small = |shape: [usize; 2], values: &[i64]| {
        Tensor::from_array((shape, values.to_vec())).map_err(ort_err("creating an input tensor"))
    };
    let bind = |binding: &mut IoBinding, name: &str, value: &DynValue| {
        binding
            .bind_input(name, value)
            .map_err(ort_err("binding an input"))
    };
    bind(binding, &inputs[0], &small([batch, seq], ids)?.into_dyn())?;
    bind(
        binding,
        &inputs[1],
        &small([batch, total], mask)?.into_dyn(),
    )?;
    bind(
        binding,
        &inputs[2],
        &small([batch, seq], positions)?.into_dyn(),
    )?;
    if past.is_empty() {
        for name in &inputs[3..] {
            binding
                .bind_input(name.as_str(), empty_past)
                .map_err(ort_err("binding an input"))?;
        }
    } else {
        for (name, value) in inputs[3..].iter().zip(past.drain(..)) {
            bind(binding, name, &value)?;
        }
    }
    binding
        .bind_output_to_device(outputs[0].as_str(), host)
        .map_err(ort_err("binding the logits"))?;
    for name in &outputs[1..] {
        binding
            .bind_output_to_device(name.as_str(), cache)
            .map_err(ort_err("binding the cache"))?;
    }

    let outputs = session
        .run_binding(binding)
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
    // Let go of this run's inputs (the old cache) and outputs now, not at the next run.
    binding.clear();
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
