//! Cache headers, validators and CORS: the only code that writes them.
//!
//! Owns, for every response that used a ruleset snapshot, `Ruleset-Version` and
//! `Ruleset-Age`; the cache policy of each kind of answer (CDN-cacheable,
//! private, no-store); the `304` that carries the same headers a `200` would
//! (the ETag itself and `If-None-Match` matching are `etag`'s); the purge
//! tags (`Surrogate-Key`, `Cache-Tag`); `Vary`; and CORS (preflights, per-key
//! allowed origins, exposed headers).
//!
//! Policy, in one place:
//! - `GET /v1/eval` success: `Cache-Control: public, max-age=0, s-maxage=N,
//!   stale-while-revalidate=M, stale-if-error=K`, the same directives without
//!   `public, max-age=0` in `CDN-Cache-Control`, a weak ETag, purge tags and
//!   `Vary: Accept-Encoding` (plus `Origin` when the key lists origins).
//! - POST answers and `/v1/ruleset`: `private, no-cache` with a weak ETag (a
//!   browser may keep them but must revalidate; no shared cache may store them).
//! - A stale answer (behind `Flagbelt-Min-Version`), errors, health, readiness,
//!   metrics and admin: `no-store`, never an ETag.
//! - The API description (`GET /openapi.json`): `public, max-age=3600`.
//!
//! The tags themselves are derived in `etag`, answer bodies are kept
//! in `answer_cache`, and header names live in [`super::headers`];
//! this module is the one that puts any of them on a response. (The one other
//! writer is `headers::no_store`, which errors use: see that module.)
//!
//! Must not: evaluate flags, authenticate, or decide statuses other than 304.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, CACHE_CONTROL, CONTENT_TYPE, ETAG,
    ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::errors::{ApiError, Rendered};
use super::etag::{ETag, if_none_match};
use super::headers::{
    CACHE_TAG, CDN_CACHE_CONTROL, FLAGBELT_STALE, RULESET_AGE, RULESET_VERSION, SURROGATE_KEY,
    no_store,
};
use crate::delivery::Snapshot;
use crate::eval::model::{ApiKey, KeyKind};

/// Headers a browser may read on a cross-origin answer.
const EXPOSE: &str = "ETag, Ruleset-Version, Ruleset-Age, Flagbelt-Stale";
/// Request headers a browser may send (named one by one: a `*` wildcard
/// does not cover `Authorization`).
const ALLOW_HEADERS: &str =
    "Authorization, X-API-Key, Content-Type, If-None-Match, Flagbelt-Min-Version";
/// Browsers cap preflight caching (Chromium at 2 h).
const PREFLIGHT_MAX_AGE: &str = "7200";

/// Lifetimes of CDN-cacheable answers (`GET /v1/eval`), in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// `s-maxage`: how long a shared cache may serve an answer without asking.
    pub s_maxage: u32,
    /// `stale-while-revalidate`: how long it may serve a stale answer while it
    /// revalidates in the background.
    pub stale_while_revalidate: u32,
    /// `stale-if-error`: how long it may serve a stale answer when this server
    /// errors or cannot be reached.
    pub stale_if_error: u32,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            s_maxage: 30,
            stale_while_revalidate: 30,
            stale_if_error: 86_400,
        }
    }
}

/// The policy's header values, rendered once at start.
#[derive(Debug, Clone)]
pub(crate) struct Directives {
    cache_control: HeaderValue,
    cdn_cache_control: HeaderValue,
}

impl Directives {
    pub(crate) fn new(p: CachePolicy) -> Self {
        let shared = format!(
            "s-maxage={}, stale-while-revalidate={}, stale-if-error={}",
            p.s_maxage, p.stale_while_revalidate, p.stale_if_error
        );
        // Digits, commas, spaces and letters only: always a valid header value.
        let value =
            |s: String| HeaderValue::try_from(s).unwrap_or(HeaderValue::from_static("no-store"));
        Self {
            cache_control: value(format!("public, max-age=0, {shared}")),
            cdn_cache_control: value(shared),
        }
    }
}

/// How an answer may be cached.
#[derive(Debug, Clone, Copy)]
enum Cache<'a> {
    /// CDN-cacheable (`GET /v1/eval`), tagged for purging by key id.
    Shared { key_id: &'a str },
    /// Only the caller's own cache, always revalidated.
    Private,
}

/// A successful answer's metadata; [`Reply::send`] turns it, the request's
/// validators and a body into the response.
#[derive(Debug)]
pub(crate) struct Reply<'a> {
    snapshot: &'a Snapshot,
    cache: Cache<'a>,
    etag: Option<ETag>,
    stale: bool,
    cors_key: Option<&'a ApiKey>,
    vary_accept: bool,
}

/// A response body with its media type.
#[derive(Debug)]
pub(crate) struct Payload {
    /// The media type sent as `Content-Type` with the body (a 304 sends
    /// neither).
    pub content_type: HeaderValue,
    /// The body, uncompressed: the compression layer may encode it afterwards
    /// (gzip or brotli, as the request accepts).
    pub bytes: Bytes,
}

impl Payload {
    /// A JSON body.
    pub(crate) fn json(bytes: impl Into<Bytes>) -> Self {
        Self {
            content_type: HeaderValue::from_static("application/json"),
            bytes: bytes.into(),
        }
    }
}

impl<'a> Reply<'a> {
    /// A CDN-cacheable answer for the key `key_id`.
    pub(crate) fn shared(snapshot: &'a Snapshot, key_id: &'a str) -> Self {
        Self::new(snapshot, Cache::Shared { key_id })
    }

    /// A private answer.
    pub(crate) fn private(snapshot: &'a Snapshot) -> Self {
        Self::new(snapshot, Cache::Private)
    }

    fn new(snapshot: &'a Snapshot, cache: Cache<'a>) -> Self {
        Self {
            snapshot,
            cache,
            etag: None,
            stale: false,
            cors_key: None,
            vary_accept: false,
        }
    }

    /// The validator (answers `If-None-Match` with 304).
    pub(crate) fn etag(mut self, etag: Option<ETag>) -> Self {
        self.etag = etag;
        self
    }

    /// The snapshot is older than the request's `Flagbelt-Min-Version`:
    /// `Flagbelt-Stale: true`, `no-store`, no validator.
    pub(crate) fn stale(mut self, stale: bool) -> Self {
        self.stale = stale;
        self
    }

    /// The authenticated key, for CORS: a public key's allowed origins decide
    /// `Access-Control-Allow-Origin`; a server key gets none.
    pub(crate) fn cors(mut self, key: Option<&'a ApiKey>) -> Self {
        self.cors_key = key.filter(|k| k.kind == KeyKind::Frontend);
        self
    }

    /// The body depends on `Accept` (content negotiation).
    pub(crate) fn vary_accept(mut self) -> Self {
        self.vary_accept = true;
        self
    }

    /// The response: a 304 without calling `body` when `If-None-Match`
    /// matches, else a 200 with the body. Both carry the same headers.
    pub(crate) fn send(
        self,
        req: &HeaderMap,
        directives: &Directives,
        body: impl FnOnce() -> Result<Payload, ApiError>,
    ) -> Result<Response, ApiError> {
        let etag = if self.stale { None } else { self.etag.clone() };
        let not_modified = etag.as_ref().is_some_and(|t| if_none_match(req, t));
        let mut res = if not_modified {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let payload = body()?;
            let mut res = Response::new(Body::from(payload.bytes));
            res.headers_mut().insert(CONTENT_TYPE, payload.content_type);
            res
        };
        let h = res.headers_mut();
        // Room for every header below at once (growing a map rehashes it).
        h.reserve(ANSWER_HEADERS);
        stamp(h, self.snapshot);
        let mut vary = Vary {
            accept: self.vary_accept,
            ..Vary::default()
        };
        if self.stale {
            no_store(h);
            h.insert(FLAGBELT_STALE, HeaderValue::from_static("true"));
        } else {
            match self.cache {
                Cache::Shared { key_id } => {
                    h.insert(CACHE_CONTROL, directives.cache_control.clone());
                    h.insert(CDN_CACHE_CONTROL, directives.cdn_cache_control.clone());
                    purge_tags(h, self.snapshot, key_id);
                    // Compression adds this only when it compresses; a shared
                    // cache needs it on every representation.
                    vary.accept_encoding = true;
                }
                Cache::Private => {
                    h.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
                }
            }
            if let Some(tag) = etag {
                h.insert(ETAG, tag.into_header_value());
            }
        }
        if let Some(key) = self.cors_key
            && allow_origin(h, key, req.get(ORIGIN))
        {
            vary.origin = true;
        }
        if let Some(v) = vary.value() {
            h.insert(VARY, v);
        }
        Ok(res)
    }
}

/// Headers an answer can carry, with those hyper and the outer layers add.
const ANSWER_HEADERS: usize = 16;

/// What an answer varies by, rendered as one static `Vary` value.
#[derive(Debug, Clone, Copy, Default)]
struct Vary {
    accept: bool,
    accept_encoding: bool,
    origin: bool,
}

impl Vary {
    fn value(self) -> Option<HeaderValue> {
        let text = match (self.accept, self.accept_encoding, self.origin) {
            (false, false, false) => return None,
            (true, false, false) => "Accept",
            (false, true, false) => "Accept-Encoding",
            (false, false, true) => "Origin",
            (true, true, false) => "Accept, Accept-Encoding",
            (true, false, true) => "Accept, Origin",
            (false, true, true) => "Accept-Encoding, Origin",
            (true, true, true) => "Accept, Accept-Encoding, Origin",
        };
        Some(HeaderValue::from_static(text))
    }
}

/// `Surrogate-Key: env:<env> key:<id> v:<version>` and the same tags in
/// `Cache-Tag`, comma-separated. Environment names and key ids are
/// `[A-Za-z0-9_-]`, so the tags need no escaping.
fn purge_tags(h: &mut HeaderMap, snap: &Snapshot, key_id: &str) {
    let env = &snap.environment;
    let v = snap.version;
    if let Ok(sk) = HeaderValue::try_from(format!("env:{env} key:{key_id} v:{v}")) {
        h.insert(SURROGATE_KEY, sk);
    }
    if let Ok(ct) = HeaderValue::try_from(format!("env:{env},key:{key_id},v:{v}")) {
        h.insert(CACHE_TAG, ct);
    }
}

/// Sets `Access-Control-Allow-Origin` for a public key: `*` when the key
/// allows any origin, the request's `Origin` echoed when the key lists it,
/// nothing otherwise. Returns true when the answer depends on `Origin` (the
/// key lists origins), so the caller adds `Vary: Origin`; this holds also when
/// nothing was echoed, or a shared cache could hand the origin-less answer to
/// an allowed origin.
fn allow_origin(h: &mut HeaderMap, key: &ApiKey, origin: Option<&HeaderValue>) -> bool {
    if key.allowed_origins.iter().any(|o| o == "*") {
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        return false;
    }
    if let Some(origin) = origin
        && let Ok(text) = origin.to_str()
        && key.allowed_origins.iter().any(|o| o == text)
    {
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    }
    true
}

/// `Ruleset-Version` and `Ruleset-Age` of the snapshot that answered.
pub(crate) fn stamp(h: &mut HeaderMap, snap: &Snapshot) {
    h.insert(RULESET_VERSION, HeaderValue::from(snap.version));
    h.insert(
        RULESET_AGE,
        HeaderValue::from(age_seconds(snap.published_at_ms)),
    );
}

/// [`stamp`] on a finished response (an error answered after the snapshot
/// was loaded).
pub(crate) fn stamped(mut res: Response, snap: &Snapshot) -> Response {
    stamp(res.headers_mut(), snap);
    res
}

fn age_seconds(published_at_ms: i64) -> u64 {
    let now_ms = i64::try_from(crate::util::now_ms()).unwrap_or(i64::MAX);
    u64::try_from(now_ms.saturating_sub(published_at_ms) / 1000).unwrap_or(0)
}

/// A `no-store` response with a body (health, readiness, metrics, admin).
pub(crate) fn uncacheable(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Body>,
) -> Response {
    let mut res = Response::new(body.into());
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    no_store(h);
    if status.is_client_error() || status.is_server_error() {
        // A deliberate error status with its own body (`/readyz`'s 503) is
        // final: the error mapper must not replace it with a generic error.
        res.extensions_mut().insert(Rendered);
    }
    res
}

/// A `no-store` JSON response.
pub(crate) fn uncacheable_json(status: StatusCode, body: &serde_json::Value) -> Response {
    uncacheable(status, "application/json", body.to_string())
}

/// How long browsers and shared caches may keep a static document (the
/// OpenAPI description changes only with a new release).
const STATIC_MAX_AGE: &str = "public, max-age=3600";

/// A public static document (`GET /openapi.json`): cacheable by anyone for an
/// hour, readable by any page (it holds nothing per caller), and `Vary:
/// Accept-Encoding` because compression runs after this and a shared cache
/// must keep the codings apart.
pub(crate) fn public_static(content_type: &'static str, body: &'static str) -> Response {
    let mut res = Response::new(Body::from(body));
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(STATIC_MAX_AGE));
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    res
}

/// The answer to a CORS preflight (`OPTIONS`), given without authentication:
/// any origin may ask, since what it may read is decided per key on the
/// actual request. Cacheable for as long as browsers keep preflights.
pub(crate) async fn preflight() -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
    h.insert(
        ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE),
    );
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=7200"),
    );
    res
}

/// Middleware for the browser-facing routes: every response exposes the
/// headers clients read, and an error that no key decided on gets
/// `Access-Control-Allow-Origin: *` so the page can read why it failed (error
/// bodies hold nothing a caller did not send, and no-store keeps them out of
/// caches).
pub(crate) async fn cors(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let failed = res.status().is_client_error() || res.status().is_server_error();
    let h = res.headers_mut();
    h.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE),
    );
    if failed && !h.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_render_the_policy() {
        let d = Directives::new(CachePolicy::default());
        assert_eq!(
            d.cache_control,
            "public, max-age=0, s-maxage=30, stale-while-revalidate=30, stale-if-error=86400"
        );
        assert_eq!(
            d.cdn_cache_control,
            "s-maxage=30, stale-while-revalidate=30, stale-if-error=86400"
        );
    }
}
