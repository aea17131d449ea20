//! [`Rejection`]: a command refused, naming the field and the reason.

use prlx_events::event::*;
use prlx_events::{Event, RequestId};
use prlx_projections::coordinator::RequestView;
use prlx_projections::CoordinatorState;

/// Why a command was refused: a code, the field at fault, and words for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}{}: {message}", field.as_deref().map(|f| format!(" ({f})")).unwrap_or_default())]
pub struct Rejection {
    pub code: RejectionCode,
    pub field: Option<String>,
    pub message: String,
}

impl Rejection {
    pub fn new(code: RejectionCode, field: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            code,
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    /// The audit record of this rejection. It carries no request id: none was allocated.
    pub fn to_event(&self, idempotency_key: Option<String>, source: IntakeSource) -> Event {
        RequestRejected {
            idempotency_key,
            source,
            code: self.code,
            field: self.field.clone(),
            message: self.message.clone(),
        }
        .into()
    }
}

/// A command the shell built wrong (not the client): refused like a malformed request.
pub(crate) fn internal(field: &str, message: impl Into<String>) -> Rejection {
    Rejection::new(RejectionCode::MalformedRequest, Some(field), message)
}

/// The request, or the internal rejection that names it unknown (the shell only sends ids it
/// read from the state).
pub(crate) fn known_request(
    state: &CoordinatorState,
    request: RequestId,
) -> Result<&RequestView, Rejection> {
    state
        .requests
        .get(&request)
        .ok_or_else(|| internal("request", format!("unknown request {request}")))
}
