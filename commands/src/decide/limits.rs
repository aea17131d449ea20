//! Length caps on every string from outside that reaches an event: a name, a reference or a
//! key longer than any honest caller needs would only grow the log and every state that folds
//! it. Checked in `decide`, so every door (HTTP, the Kafka intake, local commands) gets them,
//! and each refusal names the field.

use prlx_events::event::RejectionCode;

use crate::decide::rejection::Rejection;

/// Accounts, models, workload classes and the parts of an execution class.
pub const MAX_NAME_BYTES: usize = 128;
/// Idempotency keys and deposit transaction references (the HTTP header's own limit).
pub const MAX_REFERENCE_BYTES: usize = 255;
/// An RSA public key in SPKI PEM: a 4096-bit one, the largest taken, is about 800 bytes.
pub const MAX_KEY_PEM_BYTES: usize = 4096;
/// Models one node may serve.
pub const MAX_MODELS_PER_NODE: usize = 64;

/// Refuses `value` of `field` when it is longer than `max` bytes.
pub(super) fn within(field: &str, value: &str, max: usize) -> Result<(), Rejection> {
    if value.len() > max {
        return Err(Rejection::new(
            RejectionCode::MalformedRequest,
            Some(field),
            format!("is {} bytes long; at most {max} are taken", value.len()),
        ));
    }
    Ok(())
}
