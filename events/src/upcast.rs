//! Upcasters: pure functions that lift an old payload (raw JSON) one schema version up.
//!
//! The log is immutable, so a payload written by an older build is read through a chain
//! `v -> v+1 -> ... -> current` before typed decoding. Each upcaster gets an old-JSON fixture
//! test beside it.
//!
//! The chain: `CatalogPublished` v1 -> v2 (missed deadlines start to weigh in standing; a
//! catalog recorded before that keeps weight 0, so its log folds as it did).

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
pub const UPCASTERS: &[Upcaster] = &[Upcaster {
    event_type: "CatalogPublished",
    from_version: 1,
    upcast: catalog_v1_to_v2,
}];

/// A v1 catalog was decided under standing that did not count missed deadlines: it is read
/// with `validation.missed_deadline_weight` 0 (v2 catalogs that name none get the default).
/// Every other field v2 adds has a default that changes no decision a v1 log recorded.
fn catalog_v1_to_v2(mut value: Value) -> Result<Value, String> {
    let catalog = value
        .as_object_mut()
        .ok_or("a CatalogPublished payload must be an object")?;
    let validation = catalog
        .entry("validation")
        .or_insert_with(|| Value::Object(Default::default()));
    let validation = validation
        .as_object_mut()
        .ok_or("validation must be an object")?;
    validation
        .entry("missed_deadline_weight")
        .or_insert(Value::from(0));
    Ok(value)
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::CatalogPublished;

    #[test]
    fn a_v1_catalog_reads_with_missed_deadlines_weighing_nothing() {
        // As the coordinator recorded it before v2: no validation policy named.
        let v1 = serde_json::json!({
            "models": [], "max_tier": 5, "min_deadline_seconds": 1, "max_deadline_seconds": 60,
        });
        let v2 = upcast(UPCASTERS, "CatalogPublished", 1, 2, v1).unwrap();
        let c: CatalogPublished = serde_json::from_value(v2).unwrap();
        assert_eq!(c.validation.missed_deadline_weight, 0);
        assert_eq!(
            c.validation.invalid_weight, 4,
            "the rest keeps its defaults"
        );
        assert_eq!(c.queue_timeout_seconds, 600);
        // One that named a policy keeps it, and gets weight 0 beside it.
        let named = serde_json::json!({
            "models": [], "max_tier": 5, "min_deadline_seconds": 1, "max_deadline_seconds": 60,
            "validation": {"sampling_bp": 10_000},
        });
        let c: CatalogPublished =
            serde_json::from_value(upcast(UPCASTERS, "CatalogPublished", 1, 2, named).unwrap())
                .unwrap();
        assert_eq!(
            (
                c.validation.sampling_bp,
                c.validation.missed_deadline_weight
            ),
            (10_000, 0)
        );
        // A v2 catalog that names no weight gets the default: missed deadlines count.
        let fresh: CatalogPublished = serde_json::from_value(serde_json::json!({
            "models": [], "max_tier": 5, "min_deadline_seconds": 1, "max_deadline_seconds": 60,
        }))
        .unwrap();
        assert_eq!(fresh.validation.missed_deadline_weight, 1);
    }
}
