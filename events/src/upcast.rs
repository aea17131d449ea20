//! Upcasters: pure functions that lift an old payload (raw JSON) one schema version up.
//!
//! The log is immutable, so a payload written by an older build is read through a chain
//! `v -> v+1 -> ... -> current` before typed decoding. Each upcaster gets an old-JSON fixture
//! test beside it.
//!
//! The chain: `CatalogPublished` v1 -> v2 (missed deadlines start to weigh in standing; a
//! catalog recorded before that keeps weight 0, so its log folds as it did), v2 -> v3 (new
//! nodes are sampled on probation, and a result waiting for a replica is held for a bounded
//! time; a catalog recorded before that keeps neither).

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
pub const UPCASTERS: &[Upcaster] = &[
    Upcaster {
        event_type: "CatalogPublished",
        from_version: 1,
        upcast: catalog_v1_to_v2,
    },
    Upcaster {
        event_type: "CatalogPublished",
        from_version: 2,
        upcast: catalog_v2_to_v3,
    },
];

/// A v1 catalog was decided under standing that did not count missed deadlines: it is read
/// with `validation.missed_deadline_weight` 0 (v2 catalogs that name none get the default).
/// Every other field v2 adds has a default that changes no decision a v1 log recorded.
fn catalog_v1_to_v2(mut value: Value) -> Result<Value, String> {
    validation_of(&mut value)?
        .entry("missed_deadline_weight")
        .or_insert(Value::from(0));
    Ok(value)
}

/// A v2 catalog was decided with every node sampled at the catalog's rate from its first
/// result, and a sampled result with no peer of its class released at once: it is read with
/// `validation.probation_results` and `validation.unconfirmed_hold_seconds` 0 (v3 catalogs
/// that do not name them get the defaults).
fn catalog_v2_to_v3(mut value: Value) -> Result<Value, String> {
    let validation = validation_of(&mut value)?;
    for field in ["probation_results", "unconfirmed_hold_seconds"] {
        validation.entry(field).or_insert(Value::from(0));
    }
    Ok(value)
}

/// The `validation` object of a catalog payload, created empty when it names none.
fn validation_of(value: &mut Value) -> Result<&mut serde_json::Map<String, Value>, String> {
    value
        .as_object_mut()
        .ok_or("a CatalogPublished payload must be an object")?
        .entry("validation")
        .or_insert_with(|| Value::Object(Default::default()))
        .as_object_mut()
        .ok_or_else(|| "validation must be an object".to_owned())
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

    #[test]
    fn a_v2_catalog_reads_without_probation_or_hold() {
        // As the coordinator recorded it before v3, naming a policy or not.
        for v2 in [
            serde_json::json!({
                "models": [], "max_tier": 5, "min_deadline_seconds": 1, "max_deadline_seconds": 60,
            }),
            serde_json::json!({
                "models": [], "max_tier": 5, "min_deadline_seconds": 1, "max_deadline_seconds": 60,
                "validation": {"sampling_bp": 2_000, "missed_deadline_weight": 1},
            }),
        ] {
            let v3 = upcast(UPCASTERS, "CatalogPublished", 2, 3, v2).unwrap();
            let c: CatalogPublished = serde_json::from_value(v3).unwrap();
            assert_eq!(
                c.validation.probation_results, 0,
                "no node was on probation"
            );
            assert_eq!(c.validation.unconfirmed_hold_seconds, 0, "nothing was held");
            assert_eq!(c.validation.missed_deadline_weight, 1, "v2 kept its weight");
        }
        // A v1 catalog goes through both steps.
        let v1 = serde_json::json!({
            "models": [], "max_tier": 5, "min_deadline_seconds": 1, "max_deadline_seconds": 60,
        });
        let c: CatalogPublished =
            serde_json::from_value(upcast(UPCASTERS, "CatalogPublished", 1, 3, v1).unwrap())
                .unwrap();
        assert_eq!(
            (
                c.validation.missed_deadline_weight,
                c.validation.probation_results
            ),
            (0, 0)
        );
        // A v3 catalog that names none gets probation by default.
        let fresh: CatalogPublished = serde_json::from_value(serde_json::json!({
            "models": [], "max_tier": 5, "min_deadline_seconds": 1, "max_deadline_seconds": 60,
        }))
        .unwrap();
        assert_eq!(
            (
                fresh.validation.probation_results,
                fresh.validation.probation_sampling_bp,
                fresh.validation.unconfirmed_hold_seconds
            ),
            (10, 10_000, 60)
        );
    }
}
