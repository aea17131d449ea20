//! Extractors whose rejections are [`AppError`]s that name the field: a JSON body, a query
//! string, a path segment.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use prlx_events::event::RejectionCode;
use serde::de::DeserializeOwned;

use crate::error::{code_name, decode_error, decode_json, AppError};

/// A JSON body. A body without a JSON `Content-Type` is `415 unsupported_media_type` (a
/// browser can send `text/plain` or a form to any origin without asking first, so only a
/// JSON type proves the caller is not a cross-site page); a body that does not decode is
/// `400 malformed_request` naming the field at fault (a missing field, a wrong type, a bad
/// enum value); one over the limit is `413`.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        if !has_json_content_type(req.headers()) {
            return Err(unsupported_media_type());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        decode_json(&bytes).map(ApiJson)
    }
}

/// Whether `Content-Type` is present and says JSON (`application/json` or
/// `application/…+json`, any parameters).
pub(super) fn has_json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|ct| ct.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

pub(super) fn unsupported_media_type() -> AppError {
    AppError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        Some("Content-Type"),
        "the body must be sent with Content-Type: application/json",
    )
}

pub(super) fn body_error(e: BytesRejection) -> AppError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            None,
            "the body is over the size limit",
        )
    } else {
        AppError::new(
            StatusCode::BAD_REQUEST,
            code_name(RejectionCode::MalformedRequest),
            None,
            format!("could not read the body: {}", e.body_text()),
        )
    }
}

/// A query string, decoded like [`ApiJson`].
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                decode_error(&path, e.into_inner().to_string())
            })
    }
}

/// One path segment as text; the handler parses it and names it on error.
#[derive(Debug, Clone)]
pub struct ApiPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPath {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| {
                AppError::new(
                    StatusCode::BAD_REQUEST,
                    code_name(RejectionCode::MalformedRequest),
                    None,
                    e.body_text(),
                )
            })
    }
}
