//! Header names flagbelt reads and writes, and `no_store`: a leaf module that
//! both [`super::caching`] and [`super::errors`] build on, so neither has to
//! import the other for a name.
//!
//! Must not: decide a cache policy. `no_store` lives here only because every
//! error is `no-store` and errors must not depend on the cache-policy module;
//! which answers get it is still decided in [`super::caching`] (see its policy
//! list) and in [`super::errors`] (errors are never cacheable).

use http::header::CACHE_CONTROL;
use http::{HeaderMap, HeaderName, HeaderValue};

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
/// `X-API-Key` (request): an API key, as an alternative to
/// `Authorization: Bearer`.
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// `Cache-Control: no-store`.
pub(crate) fn no_store(h: &mut HeaderMap) {
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}
