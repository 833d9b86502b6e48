//! Cache headers, validators and CORS: the only code that writes them.
//!
//! Owns, for every response that used a ruleset snapshot, `Ruleset-Version` and
//! `Ruleset-Age`; the cache policy of each kind of answer (CDN-cacheable,
//! private, no-store); weak ETags and `If-None-Match` (weak comparison, `*`,
//! lists) with the `304` that carries the same headers a `200` would; the purge
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
//! ETags are weak because compression runs after the handler (the same tag then
//! names the gzip, br and identity bodies), and they are derived from inputs
//! (environment, version, ruleset digest, key id, audience, the fingerprint of
//! the relevant context attributes), never from body bytes or the clock.
//!
//! The server-side answer cache (`AnswerCache`) lives here too: answer bodies keyed by the
//! same 128 bits as their ETags, so a validator and a cached body can never
//! disagree about what they name.
//!
//! Must not: evaluate flags (the answer cache is handed the computation),
//! authenticate, or decide statuses other than 304.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, CACHE_CONTROL, CONTENT_TYPE, ETAG,
    IF_NONE_MATCH, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use sha2::{Digest as _, Sha256};

use super::errors::ApiError;
use crate::delivery::Snapshot;
use crate::eval::model::{ApiKey, KeyKind};
use crate::eval::{Audience, Context, context_fingerprint, relevant_attrs_cached};
use crate::ruleset::hex;

/// `Ruleset-Version`: the version of the ruleset that answered.
pub const RULESET_VERSION: HeaderName = HeaderName::from_static("ruleset-version");
/// `Ruleset-Age`: whole seconds since that ruleset was published.
pub const RULESET_AGE: HeaderName = HeaderName::from_static("ruleset-age");
/// `Flagbelt-Stale: true`: the instance could not reach the version the
/// request asked for with `Flagbelt-Min-Version`.
pub const FLAGBELT_STALE: HeaderName = HeaderName::from_static("flagbelt-stale");
/// `Flagbelt-Min-Version` (request): the lowest ruleset version the caller
/// accepts (read-your-writes after a publish).
pub const FLAGBELT_MIN_VERSION: HeaderName = HeaderName::from_static("flagbelt-min-version");
/// `CDN-Cache-Control` (RFC 9213): read by CDNs only.
pub const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");
/// `Surrogate-Key` (Fastly purge tags, space-separated).
pub const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");
/// `Cache-Tag` (Cloudflare purge tags, comma-separated).
pub const CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");

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

/// A weak entity tag, `W/"<32 hex>"`: the first 128 bits of a SHA-256 over
/// what the answer depends on; the same bits key the server-side
/// [`AnswerCache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ETag {
    value: HeaderValue,
    id: u128,
}

impl ETag {
    fn from_digest(h: Sha256) -> Self {
        let digest: [u8; 32] = h.finalize().into();
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        let text = format!("W/\"{}\"", hex::encode(&first));
        Self {
            // Hex inside quotes is always a valid header value.
            value: HeaderValue::try_from(text).unwrap_or(HeaderValue::from_static("W/\"0\"")),
            id: u128::from_be_bytes(first),
        }
    }

    /// The tag's text as sent, e.g. `W/"ab12..."`.
    #[cfg(test)]
    pub(crate) fn as_str(&self) -> &str {
        self.value.to_str().unwrap_or_default()
    }

    /// The opaque tag without `W/` and quotes.
    fn opaque(&self) -> &[u8] {
        let b = self.value.as_bytes();
        let b = b.strip_prefix(b"W/").unwrap_or(b);
        b.strip_prefix(b"\"")
            .and_then(|b| b.strip_suffix(b"\""))
            .unwrap_or(b)
    }
}

/// Which kind of evaluation answer a tag names: the same inputs give different
/// bodies on different routes, so each route gets its own tag space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnswerKind {
    /// `GET /v1/eval/...` and `POST /v1/eval` (the DESIGN answer shape).
    Eval,
    /// `POST /ofrep/v1/evaluate/flags` (OFREP bulk shape).
    OfrepBulk,
}

/// The ETag of an evaluation answer: environment, version and digest of the
/// ruleset, the key id, the audience and the fingerprint of the context
/// restricted to the attributes the audience's flags read.
pub(crate) fn answer_etag(
    kind: AnswerKind,
    snap: &Snapshot,
    key_id: &str,
    audience: Audience,
    fingerprint: u128,
) -> ETag {
    let mut h = Sha256::new();
    h.update(match kind {
        AnswerKind::Eval => b"eval\0".as_slice(),
        AnswerKind::OfrepBulk => b"ofrep-bulk\0".as_slice(),
    });
    h.update((snap.environment.len() as u64).to_le_bytes());
    h.update(snap.environment.as_bytes());
    h.update(snap.version.to_le_bytes());
    h.update(snap.sha256);
    h.update((key_id.len() as u64).to_le_bytes());
    h.update(key_id.as_bytes());
    h.update([match audience {
        Audience::Client => 1u8,
        Audience::All => 2u8,
    }]);
    h.update(fingerprint.to_le_bytes());
    ETag::from_digest(h)
}

/// The ETag of `GET /v1/ruleset` in one format: version and digest of the
/// stored bytes, plus the format (two representations of one URL).
pub(crate) fn ruleset_etag(snap: &Snapshot, format: &'static str) -> ETag {
    let mut h = Sha256::new();
    h.update(b"ruleset\0");
    h.update(format.as_bytes());
    h.update(b"\0");
    h.update(snap.environment.as_bytes());
    h.update(b"\0");
    h.update(snap.version.to_le_bytes());
    h.update(snap.sha256);
    ETag::from_digest(h)
}

/// True when `If-None-Match` matches `tag` by weak comparison: `*`, or any
/// entity tag in any of the header's lines whose opaque part equals ours,
/// `W/` or not.
pub(crate) fn if_none_match(req: &HeaderMap, tag: &ETag) -> bool {
    let ours = tag.opaque();
    req.get_all(IF_NONE_MATCH).iter().any(|line| {
        let mut rest = line.as_bytes();
        loop {
            rest = rest.trim_ascii_start();
            if let Some(r) = rest.strip_prefix(b",") {
                rest = r;
                continue;
            }
            if rest.is_empty() {
                return false;
            }
            if rest.first() == Some(&b'*') {
                return true;
            }
            let r = rest.strip_prefix(b"W/").unwrap_or(rest);
            let Some(r) = r.strip_prefix(b"\"") else {
                // Not an entity tag: skip to the next list element.
                match rest.iter().position(|&b| b == b',') {
                    Some(i) => {
                        rest = &rest[i + 1..];
                        continue;
                    }
                    None => return false,
                }
            };
            let Some(end) = r.iter().position(|&b| b == b'"') else {
                return false;
            };
            if &r[..end] == ours {
                return true;
            }
            rest = &r[end + 1..];
        }
    })
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
    /// `Content-Type`.
    pub content_type: HeaderValue,
    /// The bytes.
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
                h.insert(ETAG, tag.value);
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
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    u64::try_from(now_ms.saturating_sub(published_at_ms) / 1000).unwrap_or(0)
}

/// `Cache-Control: no-store`.
pub(crate) fn no_store(h: &mut HeaderMap) {
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
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

/// The context fingerprint over what an audience can read. The attribute list
/// is computed once per ruleset and kept with it
/// ([`crate::eval::relevant_attrs_cached`]): walking every visible rule is
/// proportional to the ruleset (measured, release, 10,000 flags: 79 µs for
/// client keys, 458 µs for all flags), the fingerprint only to the attributes
/// (0.5–1.5 µs), so no request pays for the walk after the first.
#[derive(Debug, Clone, Default)]
pub(crate) struct RelevantAttrs;

impl RelevantAttrs {
    pub(crate) fn new() -> Self {
        Self
    }

    /// The fingerprint of `ctx` over what `audience` can read in `snap`.
    pub(crate) async fn fingerprint(
        &self,
        snap: &Snapshot,
        audience: Audience,
        ctx: &Context,
    ) -> u128 {
        context_fingerprint(relevant_attrs_cached(&snap.ruleset, audience), ctx)
    }
}

/// Default size of the server-side answer cache (bodies plus a per-entry
/// overhead), in bytes.
pub const ANSWER_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// Accounted size of one cache entry beyond its body (key, `Bytes` header,
/// moka's bookkeeping: measured at about 650 bytes per entry all told for
/// 185-byte bodies).
const ENTRY_OVERHEAD: u64 = 480;

/// Slots of each admission filter (8 bytes each): the budget / 128, a power
/// of two between these bounds (8 MiB: 65,536 slots, 512 KiB). A tag must be
/// asked for again before about `slots` other new tags overwrite its slot:
/// with 65,536 slots and 500 new contexts a second, a tag survives 30 s (a
/// CDN's revalidation interval) with probability e^(-500*30/65536) = 0.8.
const MIN_SEEN_SLOTS: usize = 1 << 12;
const MAX_SEEN_SLOTS: usize = 1 << 20;

/// Server-side cache of evaluation answer bodies, keyed by their ETag's 128
/// bits (environment, version and digest of the ruleset, key id, audience,
/// route shape and the fingerprint of the relevant context attributes), and
/// bounded by bytes.
///
/// An answer is kept only the second time its tag is asked for, within the
/// memory of an admission filter (one tag per slot, overwritten by the next
/// tag hashing there). A stream of never-repeating contexts (most browser
/// traffic behind a CDN) then costs a lookup miss and an atomic store per
/// request (two of each on `GET`, whose path is remembered the same way)
/// instead of an insertion that would only push useful entries out, and a
/// repeated context (a CDN's revalidations, backend SDKs polling for the
/// same user) is answered from memory from its second request on. Concurrent
/// computations of one admitted tag are coalesced: one caller evaluates, the
/// others wait for its body (an evaluation is microseconds, so waiting on the
/// worker thread costs less than a task hop).
///
/// Old versions' entries are never served again (their tags differ) and age
/// out by size and idle time. Must not: hold stale answers (`Flagbelt-Min-
/// Version` misses are never cached) or anything but bodies.
pub(crate) struct AnswerCache {
    cache: Option<moka::sync::Cache<u128, Bytes>>,
    /// `GET /v1/eval` paths (key and context), by their SHA-256 ([`PathKey`]),
    /// and what they were answered with; see [`UrlMemo`].
    urls: Option<moka::sync::Cache<[u8; 32], Arc<UrlMemo>>>,
    seen_tags: Box<[std::sync::atomic::AtomicU64]>,
    seen_paths: Box<[std::sync::atomic::AtomicU64]>,
}

/// A `GET /v1/eval` request path as the path memo knows it: its SHA-256, so
/// the memo keeps no key text and compares digests, never secrets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PathKey([u8; 32]);

impl PathKey {
    /// The key of `path` (the raw request path, key and context included).
    pub(crate) fn of(path: &str) -> Self {
        Self(Sha256::digest(path.as_bytes()).into())
    }

    /// Slot and check bits for the admission filter.
    fn bits(&self) -> u128 {
        let mut first = [0u8; 16];
        first.copy_from_slice(&self.0[..16]);
        u128::from_be_bytes(first)
    }
}

/// What one `GET /v1/eval/{key}/{context}` path was answered with: the
/// snapshot, the key id and the ETag. While that snapshot is still the
/// environment's current one, the same path authenticates the same way and
/// gets the same tag (both are functions of the path and the snapshot), so a
/// repeat of the path is answered (a 304, or the cached body) without
/// decoding the context, checking the secret or fingerprinting again: the
/// auth result is, in effect, cached per ruleset version. Paths are known by
/// their SHA-256 ([`PathKey`]): no other path, so no other key, can match, and
/// no key text is kept. A revoked key stops working when the snapshot without
/// it is loaded, as on the full path.
#[derive(Debug)]
pub(crate) struct UrlMemo {
    /// Compared by address with the current snapshot; weak, so a memo never
    /// keeps an old ruleset alive (and the address cannot be reused while the
    /// memo exists).
    snapshot: std::sync::Weak<Snapshot>,
    env: Box<str>,
    key_id: Box<str>,
    etag: ETag,
}

impl UrlMemo {
    /// The environment the path's key names.
    pub(crate) fn env(&self) -> &str {
        &self.env
    }

    /// The key id the path authenticated as.
    pub(crate) fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The answer's tag.
    pub(crate) fn etag(&self) -> &ETag {
        &self.etag
    }

    /// True when `current` is the snapshot this memo was made with.
    pub(crate) fn made_with(&self, current: &Arc<Snapshot>) -> bool {
        std::ptr::eq(self.snapshot.as_ptr(), Arc::as_ptr(current))
    }
}

/// Accounted size of one path memo beyond its names (key, `Arc`, the tag's
/// header value, moka's bookkeeping).
const URL_MEMO_OVERHEAD: u64 = 600;

/// The weight of a remembered path.
fn url_weight(_: &[u8; 32], m: &Arc<UrlMemo>) -> u32 {
    let n = m.env.len() + m.key_id.len();
    u32::try_from(n as u64 + URL_MEMO_OVERHEAD).unwrap_or(u32::MAX)
}

/// An admission filter of `slots` empty slots.
fn filter(slots: usize) -> Box<[std::sync::atomic::AtomicU64]> {
    (0..slots)
        .map(|_| std::sync::atomic::AtomicU64::new(0))
        .collect()
}

/// True when `id` was the last id seen in its slot of `seen`; else remembers
/// it there.
fn admit(seen: &[std::sync::atomic::AtomicU64], id: u128) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    if seen.is_empty() {
        return false;
    }
    // Low bits pick the slot (the length is a power of two), high bits are
    // the check (never 0, the empty slot). Truncation is the point.
    #[allow(clippy::cast_possible_truncation)]
    let slot = (id as usize) & (seen.len() - 1);
    #[allow(clippy::cast_possible_truncation)]
    let check = ((id >> 64) as u64) | 1;
    let Some(cell) = seen.get(slot) else {
        return false;
    };
    if cell.load(Relaxed) == check {
        true
    } else {
        cell.store(check, Relaxed);
        false
    }
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerCache")
            .field("enabled", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

/// Entries unused this long are dropped even when there is room.
const ANSWER_IDLE: std::time::Duration = std::time::Duration::from_secs(120);

impl AnswerCache {
    /// A cache of at most `max_bytes`, as accounted (bodies and memos with
    /// their overheads): three quarters for bodies, a quarter for path memos
    /// (about 3,000 paths of the default 8 MiB), plus the two admission
    /// filters (2 x 512 KiB at 8 MiB). 0 turns caching off.
    pub(crate) fn new(max_bytes: u64) -> Self {
        let cache = (max_bytes > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity((max_bytes - max_bytes / 4).max(1))
                .weigher(|_: &u128, body: &Bytes| {
                    u32::try_from(body.len() as u64 + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
                })
                .time_to_idle(ANSWER_IDLE)
                .build()
        });
        let urls = (max_bytes > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity((max_bytes / 4).max(1))
                .weigher(url_weight)
                .time_to_idle(ANSWER_IDLE)
                .build()
        });
        let slots = if max_bytes == 0 {
            0
        } else {
            usize::try_from(max_bytes / 128)
                .unwrap_or(MAX_SEEN_SLOTS)
                .clamp(MIN_SEEN_SLOTS, MAX_SEEN_SLOTS)
                .next_power_of_two()
        };
        Self {
            cache,
            urls,
            seen_tags: filter(slots),
            seen_paths: filter(slots),
        }
    }

    /// The body of the answer tagged `tag`: from the cache, or from `compute`
    /// (kept when the tag was seen before).
    pub(crate) fn get_or(
        &self,
        tag: &ETag,
        compute: impl FnOnce() -> Result<Bytes, ApiError>,
    ) -> Result<Bytes, ApiError> {
        let Some(cache) = &self.cache else {
            return compute();
        };
        if let Some(body) = cache.get(&tag.id) {
            metrics::counter!("flagbelt_answer_cache_total", "outcome" => "hit").increment(1);
            return Ok(body);
        }
        if !admit(&self.seen_tags, tag.id) {
            metrics::counter!("flagbelt_answer_cache_total", "outcome" => "miss").increment(1);
            return compute();
        }
        metrics::counter!("flagbelt_answer_cache_total", "outcome" => "admitted").increment(1);
        // Kept at its exact size: a body grown by doubling could hold twice
        // what the weigher counts.
        cache
            .try_get_with(tag.id, || compute().map(|b| Bytes::copy_from_slice(&b)))
            .map_err(|e| ApiError::internal("computing a cached answer", e.to_string()))
    }

    /// The body cached for `tag`, if any (never computes).
    pub(crate) fn peek(&self, tag: &ETag) -> Option<Bytes> {
        let body = self.cache.as_ref()?.get(&tag.id);
        if body.is_some() {
            metrics::counter!("flagbelt_answer_cache_total", "outcome" => "hit").increment(1);
        }
        body
    }

    /// What the path keyed `path` was last answered with.
    pub(crate) fn recall(&self, path: &PathKey) -> Option<Arc<UrlMemo>> {
        self.urls.as_ref()?.get(&path.0)
    }

    /// Remembers that the path keyed `path` authenticated as `key_id` against
    /// `snapshot` and was answered with `etag`: from the path's second answer
    /// on (its own admission filter, like bodies').
    pub(crate) fn remember(
        &self,
        path: &PathKey,
        snapshot: &Arc<Snapshot>,
        key_id: &str,
        etag: &ETag,
    ) {
        let Some(urls) = &self.urls else {
            return;
        };
        if !admit(&self.seen_paths, path.bits()) {
            return;
        }
        urls.insert(
            path.0,
            Arc::new(UrlMemo {
                snapshot: Arc::downgrade(snapshot),
                env: snapshot.environment.as_str().into(),
                key_id: key_id.into(),
                etag: etag.clone(),
            }),
        );
    }

    /// Entries and weighed bytes now held (after pending maintenance).
    #[cfg(test)]
    fn held(&self) -> (u64, u64) {
        self.cache.as_ref().map_or((0, 0), |c| {
            c.run_pending_tasks();
            (c.entry_count(), c.weighted_size())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(hex32: &str) -> ETag {
        ETag {
            value: HeaderValue::try_from(format!("W/\"{hex32}\"")).unwrap(),
            id: 0,
        }
    }

    fn req(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn if_none_match_uses_weak_comparison_lists_and_star() {
        let t = tag("abc");
        assert_eq!(t.as_str(), "W/\"abc\"");
        assert!(if_none_match(&req(&["W/\"abc\""]), &t));
        assert!(if_none_match(&req(&["\"abc\""]), &t), "weak matches strong");
        assert!(if_none_match(&req(&["*"]), &t));
        assert!(if_none_match(&req(&["\"x\", W/\"abc\""]), &t));
        assert!(if_none_match(&req(&["\"x\",W/\"y\" ,  \"abc\""]), &t));
        assert!(
            if_none_match(&req(&["\"x\"", "\"abc\""]), &t),
            "several lines"
        );
        assert!(!if_none_match(&req(&["W/\"abcd\""]), &t));
        assert!(!if_none_match(&req(&["\"ab\""]), &t));
        assert!(!if_none_match(&req(&[]), &t));
        assert!(!if_none_match(&req(&["abc"]), &t), "unquoted is not a tag");
        assert!(!if_none_match(&req(&["\"abc"]), &t), "unterminated");
        assert!(if_none_match(&req(&["junk, \"abc\""]), &t));
    }

    fn tagged(id: u128) -> ETag {
        ETag {
            value: HeaderValue::from_static("W/\"x\""),
            id,
        }
    }

    #[test]
    fn answers_are_kept_from_their_second_request_and_bounded_by_bytes() {
        let cache = AnswerCache::new(4 * (1000 + ENTRY_OVERHEAD));
        let calls = std::cell::Cell::new(0);
        let body = |n: u8| {
            calls.set(calls.get() + 1);
            Ok::<_, ApiError>(Bytes::from(vec![n; 1000]))
        };
        // First sight: computed, not kept; second: computed and kept; third: a hit.
        assert_eq!(cache.get_or(&tagged(7), || body(1)).unwrap()[0], 1);
        assert_eq!(cache.held().0, 0);
        assert_eq!(cache.get_or(&tagged(7), || body(2)).unwrap()[0], 2);
        assert_eq!(cache.get_or(&tagged(7), || body(3)).unwrap()[0], 2);
        assert_eq!(calls.get(), 2);
        assert_eq!(cache.held(), (1, 1000 + ENTRY_OVERHEAD));
        // Another tag hashing to the same admission slot is not kept on its
        // first request either.
        let other = 7 + (2u128 << 64);
        cache.get_or(&tagged(other), || body(4)).unwrap();
        assert_eq!(cache.held().0, 1);
        // Many repeated tags: the byte bound holds.
        for id in 100..140u128 {
            for _ in 0..2 {
                cache.get_or(&tagged(id), || body(5)).unwrap();
            }
        }
        let (_, bytes) = cache.held();
        assert!(bytes <= 4 * (1000 + ENTRY_OVERHEAD), "{bytes} bytes held");
    }

    #[test]
    fn a_failed_computation_is_not_kept_and_off_means_always_compute() {
        let cache = AnswerCache::new(1 << 20);
        cache
            .get_or(&tagged(9), || Ok(Bytes::from_static(b"a")))
            .unwrap();
        let err = cache.get_or(&tagged(9), || Err(ApiError::internal("test", "boom")));
        assert!(err.is_err());
        assert_eq!(cache.held().0, 0);
        assert_eq!(
            &cache
                .get_or(&tagged(9), || Ok(Bytes::from_static(b"b")))
                .unwrap()[..],
            b"b"
        );
        let off = AnswerCache::new(0);
        for n in 0..3u8 {
            let got = off.get_or(&tagged(1), || Ok(Bytes::from(vec![n]))).unwrap();
            assert_eq!(got[0], n, "never cached when off");
        }
    }

    fn snapshot() -> Arc<Snapshot> {
        let yaml = "environment: prod\nversion: 1\nflags: {}\n";
        let (_, ruleset) = crate::ruleset::authoring::compile_yaml(yaml, 0).unwrap();
        Arc::new(Snapshot {
            environment: "prod".to_owned(),
            version: 1,
            sha256: [0; 32],
            published_at_ms: 0,
            ruleset: Arc::new(ruleset),
            ruleset_bytes: Bytes::new(),
            manifest_bytes: Bytes::new(),
            origin: crate::delivery::Origin::Bootstrap,
            fetched_at: SystemTime::now(),
        })
    }

    #[test]
    fn paths_are_remembered_from_their_second_answer_with_their_snapshot() {
        let snap = snapshot();
        let cache = AnswerCache::new(1 << 20);
        let path = &PathKey::of("/v1/eval/fbp.prod.web.s3cr3t/eyJhIjoxfQ");
        cache.remember(path, &snap, "web", &tagged(5));
        assert!(cache.recall(path).is_none(), "not on the first answer");
        cache.remember(path, &snap, "web", &tagged(5));
        let memo = cache.recall(path).expect("kept on the second");
        assert!(memo.made_with(&snap));
        assert_eq!(
            (memo.env(), memo.key_id(), memo.etag().id),
            ("prod", "web", 5)
        );
        assert!(
            cache
                .recall(&PathKey::of("/v1/eval/fbp.prod.web.s3cr3u/eyJhIjoxfQ"))
                .is_none()
        );
        // Another snapshot, even of the same version, is not the one.
        let reloaded = snapshot();
        assert!(!memo.made_with(&reloaded));
        assert!(AnswerCache::new(0).recall(path).is_none());
    }

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
