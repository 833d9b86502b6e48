//! Every HTTP error: one enum, mapped to a status and a JSON body in one place.
//!
//! Owns [`ApiError`], its status codes, its stable machine codes, and the two
//! body shapes: flagbelt's own `{"error": {"code", "message"}}` and OFREP's
//! `{"errorCode", "errorDetails"}` (plus `"key"` on the single-flag route). It
//! also owns the last-resort mapper that turns the empty or plain-text error
//! responses of axum and tower (unknown route, wrong method, body too large,
//! timeout) into the same JSON shapes, so a client never sees a second format.
//!
//! Must not: leak internals (an internal error is logged once here, with its
//! cause chain, and answered with a generic message), echo API keys or admin
//! tokens (no variant holds presented key text; [`KeyFormatError`] messages
//! carry only lengths), or write cache headers itself: it asks
//! `headers::no_store` (and never depends on [`super::caching`]).

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use serde_json::json;

use super::headers::no_store;
use crate::ruleset::keys::KeyFormatError;

/// A boxed cause for [`ApiError::Internal`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request failed. Each variant maps to exactly one status
/// ([`ApiError::status`]) and one machine code ([`ApiError::code`]); the
/// `Display` text is the message clients see.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No `Authorization: Bearer` or `X-API-Key` header (401).
    #[error("missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`")]
    MissingKey,
    /// The presented key is not of the `fbp|fbs.<env>.<key_id>.<secret>` form (401).
    #[error("malformed API key: {0}")]
    MalformedKey(#[source] KeyFormatError),
    /// Well-formed, but no such environment, key id or secret (401). One
    /// message for all three, so a caller cannot probe which environments exist.
    #[error("unknown API key")]
    UnknownKey,
    /// An authenticated key of the wrong kind for the route (403).
    #[error("{0}")]
    WrongKeyKind(&'static str),
    /// The admin API needs `Authorization: Bearer <admin token>` (401).
    #[error("missing or invalid admin token")]
    AdminUnauthorized,
    /// The server was started without `--admin-token-file` (404).
    #[error("the admin API is disabled on this instance (start it with --admin-token-file)")]
    AdminDisabled,
    /// Storage is unavailable and nothing is cached for the environment (503).
    #[error("the ruleset for this key is temporarily unavailable; retry shortly")]
    Unavailable,
    /// The context is not valid JSON (400; OFREP `PARSE_ERROR`). serde_json's
    /// message names a line and column, never the input's text.
    #[error("context is not valid JSON: {0}")]
    ContextJson(#[source] serde_json::Error),
    /// The context is JSON but not an object (400; OFREP `INVALID_CONTEXT`).
    #[error("{0}")]
    ContextShape(String),
    /// The request body is not a JSON object (400; OFREP `PARSE_ERROR`).
    #[error("{0}")]
    BadBody(String),
    /// Any other malformed request (400; OFREP `GENERAL`).
    #[error("{0}")]
    BadRequest(String),
    /// The context path segment of `GET /v1/eval` is over the limit (414).
    #[error(
        "the context segment is longer than {limit} bytes: send large contexts with POST /v1/eval"
    )]
    UriTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request body is over the limit (413).
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The flag does not exist, or is not visible to the key (404; OFREP
    /// `FLAG_NOT_FOUND`).
    #[error("flag not found")]
    FlagNotFound,
    /// No representation matches `Accept` (406).
    #[error("not acceptable: ask for application/x-protobuf or application/json")]
    NotAcceptable,
    /// `Accept-Encoding` rules out every coding, identity included (406).
    #[error("not acceptable: no content coding allowed by Accept-Encoding")]
    NoAcceptableEncoding,
    /// No such route (404).
    #[error("no such route")]
    NotFound,
    /// The route exists but not with this method (405; `Allow` lists the methods).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request took longer than the server's request timeout (503).
    #[error("the request timed out")]
    Timeout,
    /// Too many requests in flight; shed (503).
    #[error("the server is overloaded; retry shortly")]
    Overloaded,
    /// A bug or an impossible state; logged with its cause, answered vaguely (500).
    #[error("internal error")]
    Internal {
        /// What was being done, for the log line.
        what: &'static str,
        /// The cause (logged, never sent).
        #[source]
        source: BoxError,
    },
    /// A handler panicked; caught by the panic layer (500).
    #[error("internal error")]
    Panic,
    /// Any other error status produced below the handlers (kept as is).
    #[error("request failed")]
    Other(StatusCode),
}

/// Which body shape an error is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape<'a> {
    /// `{"error": {"code", "message"}}`.
    Api,
    /// OFREP bulk (and every OFREP status other than the single-flag route):
    /// `{"errorCode", "errorDetails"}`.
    OfrepBulk,
    /// OFREP single flag: `{"key", "errorCode", "errorDetails"}`.
    OfrepFlag(&'a str),
}

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECONDS: &str = "1";

impl ApiError {
    /// An internal error with what was being done (for the log) and its cause.
    pub fn internal(what: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Internal {
            what,
            source: source.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingKey | Self::MalformedKey(_) | Self::UnknownKey => StatusCode::UNAUTHORIZED,
            Self::AdminUnauthorized => StatusCode::UNAUTHORIZED,
            Self::WrongKeyKind(_) => StatusCode::FORBIDDEN,
            Self::AdminDisabled | Self::NotFound | Self::FlagNotFound => StatusCode::NOT_FOUND,
            Self::Unavailable | Self::Timeout | Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::ContextJson(_)
            | Self::ContextShape(_)
            | Self::BadBody(_)
            | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotAcceptable | Self::NoAcceptableEncoding => StatusCode::NOT_ACCEPTABLE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Internal { .. } | Self::Panic => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Other(status) => *status,
        }
    }

    /// The stable machine code of flagbelt's own error shape.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingKey => "missing_key",
            Self::MalformedKey(_) => "malformed_key",
            Self::UnknownKey => "unknown_key",
            Self::WrongKeyKind(_) => "wrong_key_kind",
            Self::AdminUnauthorized => "unauthorized",
            Self::AdminDisabled => "admin_disabled",
            Self::Unavailable => "unavailable",
            Self::ContextJson(_) => "invalid_json",
            Self::ContextShape(_) => "invalid_context",
            Self::BadBody(_) => "invalid_body",
            Self::BadRequest(_) => "bad_request",
            Self::UriTooLong { .. } => "uri_too_long",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::FlagNotFound => "flag_not_found",
            Self::NotAcceptable | Self::NoAcceptableEncoding => "not_acceptable",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Timeout => "timeout",
            Self::Overloaded => "overloaded",
            Self::Internal { .. } | Self::Panic => "internal",
            Self::Other(_) => "error",
        }
    }

    /// The OFREP `errorCode`: the spec's codes where one fits (`PARSE_ERROR`,
    /// `INVALID_CONTEXT`, `FLAG_NOT_FOUND`, `GENERAL`), else flagbelt's code in
    /// upper case (OFREP defines no body for 401/403/503).
    fn ofrep_code(&self) -> &'static str {
        match self {
            Self::ContextJson(_) | Self::BadBody(_) => "PARSE_ERROR",
            Self::ContextShape(_) => "INVALID_CONTEXT",
            Self::FlagNotFound => "FLAG_NOT_FOUND",
            Self::BadRequest(_) | Self::Internal { .. } | Self::Panic | Self::Other(_) => "GENERAL",
            Self::MissingKey | Self::MalformedKey(_) | Self::UnknownKey => "UNAUTHORIZED",
            Self::AdminUnauthorized => "UNAUTHORIZED",
            Self::WrongKeyKind(_) => "FORBIDDEN",
            Self::AdminDisabled | Self::NotFound => "NOT_FOUND",
            Self::Unavailable | Self::Overloaded => "UNAVAILABLE",
            Self::Timeout => "TIMEOUT",
            Self::UriTooLong { .. } => "URI_TOO_LONG",
            Self::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            Self::NotAcceptable | Self::NoAcceptableEncoding => "NOT_ACCEPTABLE",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
        }
    }

    /// The error for a status that a layer below the handlers produced.
    fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge {
                limit: super::BODY_LIMIT,
            },
            // The timeout layer answers 503 with an empty body; shedding and
            // every handler 503 are already JSON and never reach this mapping.
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => Self::Timeout,
            StatusCode::BAD_REQUEST => Self::BadRequest("malformed request".to_owned()),
            // Only the compression layer answers 406 below the handlers.
            StatusCode::NOT_ACCEPTABLE => Self::NoAcceptableEncoding,
            StatusCode::INTERNAL_SERVER_ERROR => Self::Panic,
            other => Self::Other(other),
        }
    }

    /// The response in `shape`. This is the one place errors become responses.
    pub(crate) fn render(&self, shape: Shape<'_>) -> Response {
        let status = self.status();
        match self {
            Self::Internal { what, source } => {
                tracing::error!(what, error = %crate::util::error_chain(source.as_ref()), "internal error");
            }
            Self::Panic => tracing::error!("handler panicked"),
            _ => tracing::debug!(
                code = self.code(),
                status = status.as_u16(),
                "request failed"
            ),
        }
        let message = self.to_string();
        let body = match shape {
            Shape::Api => json!({"error": {"code": self.code(), "message": message}}),
            Shape::OfrepBulk => json!({"errorCode": self.ofrep_code(), "errorDetails": message}),
            Shape::OfrepFlag(key) => {
                json!({"key": key, "errorCode": self.ofrep_code(), "errorDetails": message})
            }
        };
        let mut res = (status, body.to_string()).into_response();
        res.extensions_mut().insert(Rendered);
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        no_store(headers);
        match self {
            Self::Unavailable | Self::Overloaded | Self::Timeout => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
            }
            Self::AdminUnauthorized => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"flagbelt-admin\""),
                );
            }
            Self::MissingKey | Self::MalformedKey(_) | Self::UnknownKey => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"flagbelt\""),
                );
            }
            _ => {}
        }
        res
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.render(Shape::Api)
    }
}

/// An error on an OFREP route, written in OFREP's shape.
#[derive(Debug)]
pub(crate) struct OfrepError {
    /// What went wrong: it decides the status, as on every route; only the
    /// body's shape differs (OFREP's `errorCode`/`errorDetails`).
    pub error: ApiError,
    /// The flag key on the single-flag route; `None` on the bulk route.
    pub key: Option<String>,
}

/// An error on the bulk route (no flag key): lets OFREP handlers use `?`.
impl From<ApiError> for OfrepError {
    fn from(error: ApiError) -> Self {
        Self { error, key: None }
    }
}

impl IntoResponse for OfrepError {
    fn into_response(self) -> Response {
        match &self.key {
            Some(key) => self.error.render(Shape::OfrepFlag(key)),
            None => self.error.render(Shape::OfrepBulk),
        }
    }
}

/// Marks a response whose error status was decided by our own code (every
/// [`ApiError::render`], and the deliberate error statuses of
/// `caching::uncacheable`): [`json_errors`] passes it through as it is. A
/// response extension, not a header test, so nothing a handler sets on the
/// wire can make a layer's error look like ours or the other way round.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rendered;

/// Middleware: an error status (4xx/5xx) that is not marked [`Rendered`]
/// came from axum or tower below the handlers
/// (unknown route, wrong method, body limit, timeout, or compression turning a
/// 200 into a 406); rewrite it into the JSON error shape of its route. The
/// body and every cache header are replaced, so no error is ever cacheable;
/// `Allow`, CORS and `Ruleset-*` headers are kept.
pub(crate) async fn json_errors(req: Request, next: Next) -> Response {
    let ofrep = req.uri().path().starts_with("/ofrep/");
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error())
        || res.extensions().get::<Rendered>().is_some()
    {
        return res;
    }
    let error = ApiError::from_status(status);
    let mut out = error.render(if ofrep { Shape::OfrepBulk } else { Shape::Api });
    for (name, value) in res.headers() {
        let keep = name == http::header::ALLOW
            || name.as_str().starts_with("access-control-")
            || name.as_str().starts_with("ruleset-");
        if keep {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    out
}

/// The panic layer's handler: a JSON 500, never the panic message.
pub(crate) fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    ApiError::Panic.render(Shape::Api)
}

/// The load-shed layer's error handler: JSON 503 with `Retry-After`, in
/// OFREP's shape on the OFREP routes (as every other error there).
pub(crate) async fn overloaded(uri: http::Uri, _: tower::BoxError) -> Response {
    metrics::counter!("flagbelt_http_shed_total").increment(1);
    let shape = if uri.path().starts_with("/ofrep/") {
        Shape::OfrepBulk
    } else {
        Shape::Api
    };
    ApiError::Overloaded.render(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_an_uncacheable_json_500() {
        let res = panic_response(Box::new("boom: secret detail"));
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(res.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(res.headers()[http::header::CACHE_CONTROL], "no-store");
    }

    #[tokio::test]
    async fn a_shed_request_is_in_the_shape_of_its_route() {
        for (path, ofrep) in [("/v1/eval", false), ("/ofrep/v1/evaluate/flags/f", true)] {
            let res = overloaded(http::Uri::from_static(path), "shed".into()).await;
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(res.headers()[RETRY_AFTER], "1");
            let body = axum::body::to_bytes(res.into_body(), usize::MAX)
                .await
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            if ofrep {
                assert_eq!(v["errorCode"], "UNAVAILABLE", "{path}: {v}");
            } else {
                assert_eq!(v["error"]["code"], "overloaded", "{path}: {v}");
            }
        }
    }

    #[test]
    fn ofrep_shapes() {
        let single = ApiError::FlagNotFound.render(Shape::OfrepFlag("f"));
        assert_eq!(single.status(), StatusCode::NOT_FOUND);
        let bulk = ApiError::BadBody("x".into()).render(Shape::OfrepBulk);
        assert_eq!(bulk.status(), StatusCode::BAD_REQUEST);
        assert_eq!(ApiError::BadBody("x".into()).ofrep_code(), "PARSE_ERROR");
        assert_eq!(
            ApiError::ContextShape("x".into()).ofrep_code(),
            "INVALID_CONTEXT"
        );
        assert_eq!(ApiError::Panic.ofrep_code(), "GENERAL");
    }
}
