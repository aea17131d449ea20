//! Continuous batching: one engine decoding many sequences at once.
//!
//! A [`BatchEngine`] holds up to `capacity` sequences in one batched KV cache. A sequence
//! joins with [`BatchEngine::admit`], which runs its prompt alone (a prefill of batch 1,
//! exactly as [`Engine::generate`] does), and each [`BatchEngine::step`] runs one decode step
//! for every sequence in one model run. Sequences leave between steps, each at its own EOS,
//! `max_tokens` or deadline. [`drive`] is the loop a worker runs: it admits queued requests
//! while there is room and steps while anything runs.
//!
//! **Same bytes as single-stream decoding.** The model contract (v2, node/models/README.md)
//! has each sequence attend over its own cache slots only (GroupQueryAttention with
//! per-sequence lengths), and the weights' matrix products are row-invariant, so a sequence's
//! logits do not depend on the padding or on its neighbours: batched greedy ids equal
//! [`Engine::generate`]'s, bit for bit (tests/batch.rs checks it). That matters: replicas are
//! compared byte for byte, and what else a node happens to serve must not change its answer.
//!
//! **The cache.** Row `r` of each `present.*` tensor (`[rows, kv_heads, slots, head_dim]`)
//! holds sequence `r`'s tokens at slots `0..len_r`; the rest is padding. `slots` is the longest
//! sequence's length: every step adds one slot to every row, so it stays so until the rows
//! change. When a sequence joins or leaves the cache is copied once into a tensor of the new
//! shape (the rows kept, the joining prompt's cache added, trimmed to the new longest length).
//! Between those changes the cache stays where the session keeps it (on a GPU, its memory);
//! a change brings it to the host, and the next step's run takes the new tensor back.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::time::Instant;

use ort::memory::AllocationDevice;
use ort::value::{DynValue, Tensor, TensorValueType};

use crate::engine::{Engine, EngineError, Generation, GenerationTiming, Rows};

/// A generation request for a batch; `tag` is the caller's, handed back with the outcome.
#[derive(Debug, Clone)]
pub struct Request<T> {
    pub tag: T,
    pub prompt: String,
    pub max_tokens: u32,
    /// After this instant the sequence is dropped between steps ([`Outcome::Expired`]).
    pub deadline: Option<Instant>,
}

/// How a sequence left the batch.
#[derive(Debug)]
pub enum Outcome<T> {
    /// It ended at EOS or `max_tokens`: the same generation [`Engine::generate`] gives.
    Done { tag: T, generation: Generation },
    /// Its deadline passed before it ended; `generated` ids were produced and are dropped.
    Expired { tag: T, generated: u32 },
    /// The engine refused it (the prompt is empty or too long) or failed.
    Failed { tag: T, error: EngineError },
}

impl<T> Outcome<T> {
    pub fn tag(&self) -> &T {
        match self {
            Outcome::Done { tag, .. }
            | Outcome::Expired { tag, .. }
            | Outcome::Failed { tag, .. } => tag,
        }
    }
}

/// One sequence in the batch.
struct Row<T> {
    tag: T,
    prompt_tokens: usize,
    /// Tokens in the cache (prompt, then every generated id but the last).
    len: usize,
    token_ids: Vec<u32>,
    budget: usize,
    deadline: Option<Instant>,
    started: Instant,
    timing: GenerationTiming,
    /// The EOS id that ended it, set by the step that produced it.
    eos: Option<u32>,
}

/// One engine serving up to `capacity` sequences at once. See the module docs.
pub struct BatchEngine<T> {
    engine: Engine,
    capacity: usize,
    rows: Vec<Row<T>>,
    /// The batch's cache, `2 * layers` tensors `[rows, kv_heads, slots, head_dim]`.
    past: Vec<DynValue>,
    slots: usize,
    ids: Vec<i64>,
    positions: Vec<i64>,
    mask: Vec<i64>,
    next: Vec<u32>,
}

impl<T> fmt::Debug for BatchEngine<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchEngine")
            .field("engine", &self.engine)
            .field("capacity", &self.capacity)
            .field("running", &self.rows.len())
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

impl<T> BatchEngine<T> {
    /// A batch of at most `capacity` sequences (at least 1) over `engine`.
    pub fn new(engine: Engine, capacity: usize) -> BatchEngine<T> {
        let capacity = capacity.max(1);
        BatchEngine {
            engine,
            capacity,
            rows: Vec::with_capacity(capacity),
            past: Vec::new(),
            slots: 0,
            ids: Vec::with_capacity(capacity),
            positions: Vec::with_capacity(capacity),
            mask: Vec::new(),
            next: Vec::with_capacity(capacity),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sequences decoding now.
    pub fn running(&self) -> usize {
        self.rows.len()
    }

    pub fn has_room(&self) -> bool {
        self.rows.len() < self.capacity
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Where the batch's cache is, as ONNX Runtime names the device (`Cpu`, `Cuda`); `None`
    /// while nothing runs. After a step, the session's device; after a join or a leave, the
    /// host, until the next step takes it back.
    pub fn cache_device(&self) -> Option<String> {
        let tensor = self
            .past
            .first()?
            .view()
            .downcast::<TensorValueType<f32>>()
            .ok()?;
        Some(tensor.memory_info().allocation_device().as_str().to_owned())
    }

    /// The engine, for work outside the batch (a general-path sub-task runs on it alone,
    /// between steps; the batch's cache is the batch's, not the engine's).
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Takes `request` into the batch: its prompt is checked and prefilled now, alone. A
    /// sequence that ends at once (`max_tokens` 0 or 1, or an EOS first) never joins and is
    /// returned finished, as is one the engine refuses or fails. Without room the request is
    /// given back.
    pub fn admit(&mut self, request: Request<T>) -> Result<Option<Outcome<T>>, Request<T>> {
        if !self.has_room() {
            return Err(request);
        }
        let Request {
            tag,
            prompt,
            max_tokens,
            deadline,
        } = request;
        let started = Instant::now();
        let prompt_ids = match self.engine.prepare(&prompt, max_tokens) {
            Ok(ids) => ids,
            Err(error) => return Ok(Some(Outcome::Failed { tag, error })),
        };
        let mut timing = GenerationTiming {
            tokenize: started.elapsed(),
            ..GenerationTiming::default()
        };
        let budget = usize::try_from(max_tokens).unwrap_or(usize::MAX);
        if budget == 0 {
            return Ok(Some(self.finished(
                tag,
                prompt_ids.len(),
                Vec::new(),
                None,
                timing,
                started,
            )));
        }
        let prefill_started = Instant::now();
        let (first, cache) = match self.engine.prefill(&prompt_ids) {
            Ok(done) => done,
            Err(error) => return Ok(Some(Outcome::Failed { tag, error })),
        };
        timing.prefill = prefill_started.elapsed();
        if self.engine.is_eos(first) {
            return Ok(Some(self.finished(
                tag,
                prompt_ids.len(),
                Vec::new(),
                Some(first),
                timing,
                started,
            )));
        }
        if budget == 1 {
            return Ok(Some(self.finished(
                tag,
                prompt_ids.len(),
                vec![first],
                None,
                timing,
                started,
            )));
        }
        let mut token_ids = Vec::with_capacity(budget);
        token_ids.push(first);
        let row = Row {
            tag,
            prompt_tokens: prompt_ids.len(),
            len: prompt_ids.len(),
            token_ids,
            budget,
            deadline,
            started,
            timing,
            eos: None,
        };
        let kept: Vec<(usize, usize)> = self.rows.iter().map(|r| r.len).enumerate().collect();
        if let Err(error) = self.reshape(&kept, Some((&cache, row.len))) {
            return Ok(Some(Outcome::Failed {
                tag: row.tag,
                error,
            }));
        }
        self.rows.push(row);
        Ok(None)
    }

    /// Drops every sequence whose deadline passed, then runs one decode step for the rest.
    /// Returns the sequences that left. A failed model run fails every running sequence.
    pub fn step(&mut self) -> Vec<Outcome<T>> {
        let mut out = Vec::new();
        let now = Instant::now();
        let (expired, reshaped) = self.take_rows(|r| r.deadline.is_some_and(|d| d <= now));
        out.extend(expired.into_iter().map(|r| Outcome::Expired {
            generated: count(r.token_ids.len()),
            tag: r.tag,
        }));
        if let Err(error) = reshaped {
            return self.fail_all(out, error);
        }
        if self.rows.is_empty() {
            return out;
        }
        let total = self.slots + 1;
        self.ids.clear();
        self.positions.clear();
        self.mask.clear();
        for row in &self.rows {
            let last = *row
                .token_ids
                .last()
                .expect("a row holds at least its first id");
            self.ids.push(i64::from(last));
            self.positions.push(row.len as i64);
            // The row's cache and its new id, then padding (contract v2).
            self.mask
                .extend((0..total).map(|slot| i64::from(slot <= row.len)));
        }
        let run_started = Instant::now();
        let rows = Rows {
            batch: self.rows.len(),
            seq: 1,
            ids: &self.ids,
            positions: &self.positions,
            mask: &self.mask,
            total,
        };
        if let Err(error) = self
            .engine
            .decode_rows(rows, &mut self.past, &mut self.next)
        {
            return self.fail_all(out, error);
        }
        let elapsed = run_started.elapsed();
        self.slots = total;
        let engine = &self.engine;
        for (row, &id) in self.rows.iter_mut().zip(&self.next) {
            row.len += 1;
            row.timing.decode += elapsed;
            row.timing.decode_steps += 1;
            if engine.is_eos(id) {
                row.eos = Some(id);
            } else {
                row.token_ids.push(id);
            }
        }
        let (ended, reshaped) =
            self.take_rows(|r| r.eos.is_some() || r.token_ids.len() >= r.budget);
        for row in ended {
            let eos = row.eos;
            out.push(self.finished(
                row.tag,
                row.prompt_tokens,
                row.token_ids,
                eos,
                row.timing,
                row.started,
            ));
        }
        if let Err(error) = reshaped {
            return self.fail_all(out, error);
        }
        out
    }

    /// Every running sequence fails with `error` (after a failed model run, whose cache is
    /// lost), added to `out`.
    fn fail_all(&mut self, mut out: Vec<Outcome<T>>, error: EngineError) -> Vec<Outcome<T>> {
        let message = error.to_string();
        let mut first = Some(error);
        for row in std::mem::take(&mut self.rows) {
            let error = first
                .take()
                .unwrap_or_else(|| EngineError::Batch(message.clone()));
            out.push(Outcome::Failed {
                tag: row.tag,
                error,
            });
        }
        self.past.clear();
        self.slots = 0;
        out
    }

    fn finished(
        &self,
        tag: T,
        prompt_tokens: usize,
        token_ids: Vec<u32>,
        eos: Option<u32>,
        timing: GenerationTiming,
        started: Instant,
    ) -> Outcome<T> {
        match self
            .engine
            .finish(prompt_tokens, token_ids, eos, timing, started)
        {
            Ok(generation) => Outcome::Done { tag, generation },
            Err(error) => Outcome::Failed { tag, error },
        }
    }

    /// Takes the rows matching `leaves` out, in row order, and reshapes the cache to the rows
    /// left. The rows are out even when the reshape fails (then the cache is lost: the caller
    /// fails the rest).
    fn take_rows(
        &mut self,
        leaves: impl Fn(&Row<T>) -> bool,
    ) -> (Vec<Row<T>>, Result<(), EngineError>) {
        if !self.rows.iter().any(&leaves) {
            return (Vec::new(), Ok(()));
        }
        let mut left = Vec::new();
        let mut kept = Vec::with_capacity(self.rows.len());
        let mut rows = Vec::with_capacity(self.rows.len());
        for (i, row) in std::mem::take(&mut self.rows).into_iter().enumerate() {
            if leaves(&row) {
                left.push(row);
            } else {
                kept.push((i, row.len));
                rows.push(row);
            }
        }
        let reshaped = self.reshape(&kept, None);
        self.rows = rows;
        (left, reshaped)
    }

    /// Copies the cache into tensors of the new shape: `kept` (old row, tokens) in order, then
    /// the joining sequence's own cache (`[1, kv_heads, n, head_dim]` each) with its `n`.
    fn reshape(
        &mut self,
        kept: &[(usize, usize)],
        join: Option<(&[DynValue], usize)>,
    ) -> Result<(), EngineError> {
        let rows = kept.len() + usize::from(join.is_some());
        let slots = kept
            .iter()
            .map(|&(_, len)| len)
            .chain(join.map(|(_, len)| len))
            .max()
            .unwrap_or(0);
        if rows == 0 {
            self.past.clear();
            self.slots = 0;
            return Ok(());
        }
        let (heads, head_dim, tensors) = self.engine.cache_dims();
        // Row `src_row` of a cache `src_slots` long, its first `len` slots, into row `dst_row`.
        let copy_row = |data: &mut [f32], dst_row, src: &[f32], src_slots, src_row, len| {
            for h in 0..heads {
                let from = (src_row * heads + h) * src_slots * head_dim;
                let to = (dst_row * heads + h) * slots * head_dim;
                data[to..to + len * head_dim].copy_from_slice(&src[from..from + len * head_dim]);
            }
        };
        let mut past = Vec::with_capacity(tensors);
        for t in 0..tensors {
            let mut data = vec![0f32; rows * heads * slots * head_dim];
            if !kept.is_empty() {
                let old = cache_values(&self.past[t])?;
                for (r, &(i, len)) in kept.iter().enumerate() {
                    copy_row(&mut data, r, &old, self.slots, i, len);
                }
            }
            if let Some((cache, len)) = join {
                copy_row(
                    &mut data,
                    kept.len(),
                    &cache_values(&cache[t])?,
                    len,
                    0,
                    len,
                );
            }
            let tensor = Tensor::from_array(([rows, heads, slots, head_dim], data))
                .map_err(|e| EngineError::Batch(format!("building the cache: {e}")))?;
            past.push(tensor.into_dyn());
        }
        self.past = past;
        self.slots = slots;
        Ok(())
    }
}

/// What a [`drive`] source says when asked for work.
#[derive(Debug)]
pub enum Next<T> {
    /// A request to admit.
    Admit(Request<T>),
    /// Nothing now (asked without waiting), or the source handled something itself.
    Idle,
    /// No more requests will come.
    Closed,
}

/// The batching loop of a worker: while the batch has room, asks `source` for requests
/// (waiting only when the batch is empty: `wait` is true then) and admits them; then steps.
/// Every outcome goes to `done`. Returns once the source is closed and the batch is empty.
pub fn drive<T>(
    batch: &mut BatchEngine<T>,
    mut source: impl FnMut(&mut BatchEngine<T>, bool) -> Next<T>,
    mut done: impl FnMut(Outcome<T>),
) {
    let mut closed = false;
    loop {
        while !closed && batch.has_room() {
            let wait = batch.is_empty();
            match source(batch, wait) {
                Next::Admit(request) => match batch.admit(request) {
                    Ok(Some(outcome)) => done(outcome),
                    Ok(None) => {}
                    Err(_) => unreachable!("admitted only with room"),
                },
                Next::Idle if wait => {}
                Next::Idle => break,
                Next::Closed => closed = true,
            }
        }
        if batch.is_empty() {
            if closed {
                return;
            }
            continue;
        }
        for outcome in batch.step() {
            done(outcome);
        }
    }
}

/// Runs `requests` through a batch of `capacity` on `engine`, more of them than it holds
/// included, and returns their outcomes in the order they ended.
pub fn run_all<T>(
    engine: Engine,
    capacity: usize,
    requests: Vec<Request<T>>,
) -> (Engine, Vec<Outcome<T>>) {
    let mut batch = BatchEngine::new(engine, capacity);
    let mut queue: VecDeque<Request<T>> = requests.into();
    let mut outcomes = Vec::new();
    drive(
        &mut batch,
        |_, _| queue.pop_front().map_or(Next::Closed, Next::Admit),
        |outcome| outcomes.push(outcome),
    );
    (batch.engine, outcomes)
}

/// A cache tensor's values: in place when it is in host memory, else copied out of the
/// device.
fn cache_values(value: &DynValue) -> Result<Cow<'_, [f32]>, EngineError> {
    let failed = |e: ort::Error| EngineError::Batch(format!("reading the cache: {e}"));
    let tensor = value
        .view()
        .downcast::<TensorValueType<f32>>()
        .map_err(failed)?;
    if tensor.memory_info().is_cpu_accessible() {
        return value
            .try_extract_tensor::<f32>()
            .map(|(_, data)| Cow::Borrowed(data))
            .map_err(failed);
    }
    let host = tensor.to(AllocationDevice::CPU, 0).map_err(failed)?;
    let (_, data) = host.extract_tensor();
    Ok(Cow::Owned(data.to_vec()))
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
