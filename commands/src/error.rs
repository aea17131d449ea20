//! The one error answer of every door: [`AppError`] with its status, code, field and message,
//! and its body `{"error": {"code", "field", "message"}}`. HTTP answers with it; the Kafka
//! intake puts the same [`ErrorDetail`] in its replies.
//!
//! Every 5xx is logged (`tracing`, level error) when it is turned into a response: a failure of
//! ours must leave a trace beyond the client's screen.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use prlx_events::event::RejectionCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::actor::ActorError;
use crate::decide::Rejection;

/// The body of every error: `{"error": {"code", "field", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code. The core's rejection codes (`insufficient_credit`,
    /// `malformed_request`, `payload_hash_mismatch`, `unknown_workload_class`, `unknown_model`,
    /// `tier_out_of_range`, `deadline_out_of_range`, `unknown_node`, `node_already_registered`,
    /// `invalid_amount`, `unauthorized`, `idempotency_conflict`, `delegation_expired`,
    /// `spending_limit_exceeded`) plus the HTTP layer's own: `unauthenticated`,
    /// `unknown_request`, `unknown_account`,
    /// `payload_too_large`, `unsupported_media_type`, `not_found`, `method_not_allowed`,
    /// `coordinator_unavailable`, `internal`.
    pub code: String,
    /// The request field at fault (a JSON path such as `execution_class.device`), if one is.
    pub field: Option<String>,
    /// Words for a person.
    pub message: String,
}

/// Every error the HTTP layer answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub field: Option<String>,
    pub message: String,
}

impl AppError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    /// `400 malformed_request` on `field`.
    pub fn malformed(field: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code_name(RejectionCode::MalformedRequest),
            Some(field),
            message,
        )
    }

    pub(crate) fn not_found(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, Some(field), message)
    }

    /// 503 `index_unavailable`: the request index cannot answer now (it is behind, or its
    /// writer failed); a retry may succeed.
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "index_unavailable",
            None,
            message,
        )
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", None, message)
    }
}

/// The wire name of a rejection code, as the event log writes it.
pub fn code_name(code: RejectionCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("RejectionCode serializes as a string")
}

/// The HTTP status of a rejection by the core.
pub fn rejection_status(code: RejectionCode) -> StatusCode {
    match code {
        RejectionCode::InsufficientCredit => StatusCode::PAYMENT_REQUIRED,
        RejectionCode::NodeAlreadyRegistered => StatusCode::CONFLICT,
        RejectionCode::IdempotencyConflict => StatusCode::CONFLICT,
        RejectionCode::Unauthorized
        | RejectionCode::DelegationExpired
        | RejectionCode::DelegationRevoked
        | RejectionCode::SpendingLimitExceeded => StatusCode::FORBIDDEN,
        RejectionCode::UnknownNode => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<Rejection> for AppError {
    fn from(r: Rejection) -> Self {
        Self {
            status: rejection_status(r.code),
            code: code_name(r.code).into(),
            field: r.field,
            message: r.message,
        }
    }
}

impl From<ActorError> for AppError {
    fn from(e: ActorError) -> Self {
        match e {
            ActorError::Stopped | ActorError::Failed(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "coordinator_unavailable",
                None,
                e.to_string(),
            ),
            ActorError::NoAnswer => Self::internal(e.to_string()),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(
                status = self.status.as_u16(),
                code = %self.code,
                "answering {}: {}",
                self.status,
                self.message
            );
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into_owned(),
                field: self.field,
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// Decodes JSON, naming the field at fault on error.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        decode_error(&path, message)
    })?;
    de.end()
        .map_err(|e| decode_error(".", format!("after the JSON value: {e}")))?;
    Ok(value)
}

/// serde reports a missing field at the path of the struct that lacks it, with the name only
/// in the message; put the two together so `field` always names the field itself.
pub(crate) fn decode_error(path: &str, message: String) -> AppError {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name);
    let field = match (path, missing) {
        (".", Some(name)) => Some(name.to_owned()),
        (".", None) => None,
        (path, Some(name)) => Some(format!("{path}.{name}")),
        (path, None) => Some(path.to_owned()),
    };
    AppError {
        status: StatusCode::BAD_REQUEST,
        code: code_name(RejectionCode::MalformedRequest).into(),
        field,
        message,
    }
}

// DTOs. The event types stay free of HTTP concerns; these map onto them.
