//! The bytes that travel between the coordinator and a node: sub-task inputs and outputs.
//!
//! JSON written from structs (fixed field order, no maps), so the same value always makes
//! the same bytes and two honest nodes' outputs compare byte for byte. Reading is strict and
//! bounded: a node treats every input as hostile.

use serde::de::DeserializeOwned;
use serde::Serialize;

use std::collections::BTreeMap;

use crate::error::{AggError, ExecError};

/// The largest sub-task input a node will parse. Above every input a valid plan makes (the
/// largest is a reduce over the whole text's distinct words), so only a hostile or corrupt
/// dispatch reaches it.
pub const MAX_INPUT_BYTES: usize = 16 << 20;

/// The largest output a sub-task may return: it travels in the node's signed report (the
/// coordinator takes bodies of at most 1 MiB, and the report carries it sealed, in base64)
/// and lies on the log, sealed, in `ResultSubmitted`. A node whose output is larger declines
/// the dispatch instead of running into either limit.
pub const MAX_OUTPUT_BYTES: usize = 512 << 10;

/// The largest output a whole task may have: the aggregate lies on the log, sealed to the
/// client, in one record of at most 8 MiB.
pub const MAX_TASK_OUTPUT_BYTES: usize = 4 << 20;

/// Decodes a sub-task's input; unknown fields and trailing bytes are refused by the types
/// (`deny_unknown_fields`) and by `serde_json` (nesting is capped at 128 levels, so a deep
/// input is an error rather than a stack overflow).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ExecError> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(ExecError::InputTooLarge {
            len: bytes.len(),
            max: MAX_INPUT_BYTES,
        });
    }
    serde_json::from_slice(bytes).map_err(|e| ExecError::Malformed(e.to_string()))
}

/// Sub-task `index`'s validated output, decoded: missing or malformed is an [`AggError`].
pub(crate) fn decode_output<T: DeserializeOwned>(
    outputs: &BTreeMap<u32, Vec<u8>>,
    index: u32,
) -> Result<T, AggError> {
    let bytes = outputs.get(&index).ok_or(AggError::Missing(index))?;
    decode(bytes).map_err(|e| AggError::Malformed {
        index,
        reason: e.to_string(),
    })
}

/// The canonical bytes of a value made by this crate's own types.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain structs, strings and integers into a Vec cannot fail.
    serde_json::to_vec(value).expect("plain data serializes")
}

/// Refuses a field outside its bounds, naming it.
pub(crate) fn bounded(
    field: &'static str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ExecError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ExecError::OutOfBounds {
            field,
            reason: format!("{value} not in {}..={}", range.start(), range.end()),
        })
    }
}
