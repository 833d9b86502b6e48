//! Reading a request's inputs: the API key sent in headers ([`ApiKey`], an
//! axum extractor), the context in `GET /v1/eval`'s path segment, and the
//! `{"context": {...}}` body of the POST routes.
//!
//! Errors are [`ApiError`]s; each route writes them in its own shape (a route
//! that needs OFREP's shape takes `Result<ApiKey, ApiError>` and maps it).
//! Must not: authenticate (a key read here is only text until
//! [`super::auth::authenticate`] matches it against a snapshot), log or echo
//! key text, or write responses.

use axum::extract::FromRequestParts;
use axum::extract::rejection::BytesRejection;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::auth::bearer;
use super::errors::ApiError;
use super::headers::X_API_KEY;
use super::{BODY_LIMIT, MAX_CONTEXT_SEGMENT};
use crate::eval::{self, Context};

/// The API key a request sends in `Authorization: Bearer <key>` (scheme
/// case-insensitive) or `X-API-Key: <key>`; `Authorization` wins when both are
/// sent. The text as presented, not yet checked (the stored key is
/// [`crate::eval::model::ApiKey`]). Rejects with 401 (`MissingKey`, or
/// `UnknownKey` for an `X-API-Key` that is not text).
pub(crate) struct ApiKey(String);

impl ApiKey {
    /// The key's text.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's text, owned.
    pub(crate) fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey([REDACTED])")
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        header_key(&parts.headers).map(|k| Self(k.to_owned()))
    }
}

/// The key sent in headers (see [`ApiKey`]).
fn header_key(headers: &HeaderMap) -> Result<&str, ApiError> {
    if let Some(v) = headers.get(AUTHORIZATION) {
        return bearer(v).ok_or(ApiError::MissingKey);
    }
    match headers.get(X_API_KEY) {
        Some(v) => v.to_str().map(str::trim).map_err(|_| ApiError::UnknownKey),
        None => Err(ApiError::MissingKey),
    }
}

/// Decodes the context segment of `GET /v1/eval`: unpadded base64url (a
/// trailing `=` is tolerated) of a JSON object.
pub(crate) fn context_from_segment(segment: &str) -> Result<Context, ApiError> {
    if segment.len() > MAX_CONTEXT_SEGMENT {
        return Err(ApiError::UriTooLong {
            limit: MAX_CONTEXT_SEGMENT,
        });
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .map_err(|_| {
            ApiError::BadRequest(
                "the context segment is not unpadded base64url of a JSON object".to_owned(),
            )
        })?;
    match serde_json::from_slice::<Value>(&bytes).map_err(ApiError::ContextJson)? {
        Value::Object(ctx) => Ok(ctx),
        other => Err(not_an_object("the context", &other)),
    }
}

/// Reads `{"context": {...}}` (OFREP's request shape; a missing `context` is an
/// empty one, as some OFREP clients send `{}`).
pub(crate) fn context_from_body(body: &[u8]) -> Result<Context, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadBody(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(mut top) = v else {
        return Err(ApiError::BadBody(
            "request body must be a JSON object: {\"context\": {...}}".to_owned(),
        ));
    };
    match top.remove("context") {
        None => Ok(Context::new()),
        Some(Value::Object(ctx)) => Ok(ctx),
        Some(other) => Err(not_an_object("`context`", &other)),
    }
}

fn not_an_object(what: &str, v: &Value) -> ApiError {
    let found = eval::json_type_name(v);
    ApiError::ContextShape(format!("{what} must be a JSON object, not {found}"))
}

/// The body, or 413 / 400.
pub(crate) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit: BODY_LIMIT }
        } else {
            ApiError::BadRequest("could not read the request body".to_owned())
        }
    })
}
