//! Reading a request's inputs: the API key sent in headers ([`ApiKey`], an
//! axum extractor), the context in `GET /v1/eval`'s path segment, and the
//! `{"context": {...}}` body of the POST routes (`{}` is an empty context;
//! a bare context is refused).
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

/// Reads `POST /v1/eval`'s body: `{"context": {...}}` (other members are
/// ignored), or `{}` as an empty context, as on the OFREP routes. A body with
/// members but no `context`, such as a bare context `{"targetingKey": "u1"}`,
/// is refused (400 `invalid_body`) rather than evaluated as an empty context,
/// which would answer every flag with its default and hide the mistake.
pub(crate) fn context_from_body(body: &[u8]) -> Result<Context, ApiError> {
    match parse_body(body)? {
        (Some(ctx), _) => Ok(ctx),
        (None, top) if top.is_empty() => Ok(Context::new()),
        (None, top) => Err(ApiError::BadBody(missing_context(&top))),
    }
}

/// Reads an OFREP body: `{"context": {...}}`, or `{}` as an empty context
/// (the real OpenFeature clients send `{}` when no context is set). An object
/// whose members are all something else is OFREP's `INVALID_CONTEXT`.
pub(crate) fn ofrep_context_from_body(body: &[u8]) -> Result<Context, ApiError> {
    match parse_body(body)? {
        (Some(ctx), _) => Ok(ctx),
        (None, top) if top.is_empty() => Ok(Context::new()),
        (None, top) => Err(ApiError::ContextShape(missing_context(&top))),
    }
}

/// The body as a JSON object, with its `context` member taken out (checked to
/// be an object) and the other members left.
fn parse_body(body: &[u8]) -> Result<(Option<Context>, Context), ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadBody(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(mut top) = v else {
        return Err(ApiError::BadBody(
            "request body must be a JSON object: {\"context\": {...}}".to_owned(),
        ));
    };
    match top.remove("context") {
        None => Ok((None, top)),
        Some(Value::Object(ctx)) => Ok((Some(ctx), top)),
        Some(other) => Err(not_an_object("`context`", &other)),
    }
}

/// Says that a body lacks `context`, naming a few of the members it has (names
/// only: values may be personal data).
fn missing_context(top: &Context) -> String {
    const SHOWN: usize = 3;
    let mut names: Vec<String> = top.keys().take(SHOWN).map(|k| format!("{k:?}")).collect();
    if top.len() > SHOWN {
        names.push("...".to_owned());
    }
    let found = names.join(", ");
    format!(
        "request body must be {{\"context\": {{...}}}}, but it has no `context` member (it has {found}); \
         send the context wrapped, e.g. {{\"context\": {{\"targetingKey\": \"user-1\"}}}}"
    )
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
