//! The one answer pipeline of the routes that evaluate every flag a key sees
//! (`GET` and `POST /v1/eval`, OFREP bulk): check the key kind, evaluate,
//! tag, remember the `GET` path, take the body from the answer cache (or
//! compute and maybe keep it), and reply through [`caching`].
//!
//! The routes differ only in what they hand in: the kind of answer (its tag
//! space and error shape), the key kind the route takes, the path to
//! remember, and how the evaluations become a body. Must not: read the
//! request (the routes extract and authenticate first), write headers itself,
//! or cache a stale answer.

use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;

use super::EvalParts;
use super::answer_cache::PathKey;
use super::auth::{Caller, Need};
use super::caching::{self, Payload, Reply};
use super::errors::{ApiError, Shape};
use super::etag::{AnswerKind, answer_etag};
use crate::delivery::Snapshot;
use crate::eval::model::Ruleset;
use crate::eval::{self, Context, Evaluation, context_fingerprint, relevant_attrs_cached};

/// What a route asks the pipeline to answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Question<'a> {
    /// The answer's shape: its tag space, and the error shape of the route.
    pub kind: AnswerKind,
    /// The key kind the route takes; [`Need::Public`] answers are
    /// CDN-cacheable, the others private.
    pub need: Need,
    /// The caller's context.
    pub ctx: &'a Context,
    /// The key of a `GET /v1/eval` request path, remembered with the answer's
    /// tag ([`super::answer_cache::UrlMemo`]); `None` on POST routes.
    pub url: Option<&'a PathKey>,
}

/// The answer to `q` for `caller`: a 200 with the body `body` writes from the
/// evaluations (its `bool` says the answer is stale: reasons must read
/// `STALE`), a 304, or the error, stamped with the ruleset that answered.
pub(crate) fn answer<F>(
    st: &EvalParts,
    caller: &Caller,
    headers: &HeaderMap,
    q: Question<'_>,
    body: F,
) -> Response
where
    F: for<'r> FnOnce(&'r Ruleset, Vec<Evaluation<'r>>, bool) -> serde_json::Result<Vec<u8>>,
{
    let snap = &caller.snapshot;
    let (shape, what) = match q.kind {
        AnswerKind::Eval => (Shape::Api, "serialising an answer"),
        AnswerKind::OfrepBulk => (Shape::OfrepBulk, "serialising an OFREP answer"),
    };
    if let Err(e) = caller.require(q.need) {
        return caching::stamped(e.render(shape), snap);
    }
    let audience = caller.audience();
    // The attribute list is computed once per ruleset and kept with it: no
    // request pays for walking the rules after the first.
    let fingerprint = context_fingerprint(relevant_attrs_cached(&snap.ruleset, audience), q.ctx);
    let etag = answer_etag(q.kind, snap, caller.key_id(), audience, fingerprint);
    let reply = match q.need {
        Need::Public => Reply::shared(snap, caller.key_id()),
        Need::Any | Need::Server => Reply::private(snap),
    };
    // A stale answer (reasons `STALE`) is neither tagged nor cached.
    let cache_tag = (!caller.stale).then(|| etag.clone());
    if let (Some(url), false) = (q.url, caller.stale) {
        st.answers.remember(url, snap, caller.key_id(), &etag);
    }
    let compute = || {
        let flags = eval::evaluate_all(&snap.ruleset, q.ctx, audience);
        body(&snap.ruleset, flags, caller.stale)
            .map(Bytes::from)
            .map_err(|e| ApiError::internal(what, e))
    };
    let res = reply
        .etag(Some(etag))
        .stale(caller.stale)
        .cors(caller.key())
        .send(headers, &st.directives, || {
            match &cache_tag {
                Some(tag) => st.answers.get_or(tag, compute),
                None => compute(),
            }
            .map(Payload::json)
        });
    finish(res, snap, shape)
}

/// The response, or the error in `shape`: an error after the snapshot was
/// loaded still says which ruleset answered.
pub(crate) fn finish(
    res: Result<Response, ApiError>,
    snap: &Snapshot,
    shape: Shape<'_>,
) -> Response {
    res.unwrap_or_else(|e| caching::stamped(e.render(shape), snap))
}
