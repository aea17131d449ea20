//! Upcasters: pure functions that lift an old payload (raw JSON) one schema version up.
//!
//! The log is immutable, so a payload written by an older build is read through a chain
//! `v -> v+1 -> ... -> current` before typed decoding. Each upcaster gets an old-JSON fixture
//! test beside it. No variant has changed shape yet, so the chain is empty.

use serde_json::Value;

use crate::decode_error::DecodeError;

/// Lifts `event_type` payloads from `from_version` to `from_version + 1`.
#[derive(Debug, Clone, Copy)]
pub struct Upcaster {
    pub event_type: &'static str,
    pub from_version: u32,
    pub upcast: fn(Value) -> Result<Value, String>,
}

/// The chain this build applies.
pub const UPCASTERS: &[Upcaster] = &[];

pub(crate) fn upcast(
    chain: &[Upcaster],
    event_type: &str,
    mut version: u32,
    target: u32,
    mut value: Value,
) -> Result<Value, DecodeError> {
    while version < target {
        let step = chain
            .iter()
            .find(|u| u.event_type == event_type && u.from_version == version)
            .ok_or_else(|| DecodeError::MissingUpcaster {
                event_type: event_type.to_owned(),
                from: version,
            })?;
        value = (step.upcast)(value).map_err(|message| DecodeError::Upcast {
            event_type: event_type.to_owned(),
            from: version,
            message,
        })?;
        version += 1;
    }
    Ok(value)
}
