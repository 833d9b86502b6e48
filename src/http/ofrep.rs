//! OpenFeature Remote Evaluation Protocol (OFREP) routes.
//!
//! Owns `POST /ofrep/v1/evaluate/flags` (bulk: every flag the key sees, with an
//! ETag and a `304` on `If-None-Match` even though it is a POST, as OFREP
//! requires) and `POST /ofrep/v1/evaluate/flags/{key}` (one flag), and their
//! shapes: success `{key, value, reason, variant}` (always a `variant`, and
//! only the reasons real clients accept), errors `{errorCode, errorDetails}`
//! (bulk) and `{key, errorCode, errorDetails}` (single).
//!
//! Decisions: the request may be `{"context": {...}}` or `{}` (clients send
//! both), but a body whose members are all something else (a bare context)
//! is `INVALID_CONTEXT`, not an empty context; a missing `targetingKey` is
//! accepted (a rollout then serves its default with reason `DEFAULT`, as
//! everywhere else); a public key asking for
//! a server-only flag gets `FLAG_NOT_FOUND`, exactly as for a flag that does not
//! exist. The single-flag answer carries no ETag (OFREP leaves its caching to
//! the client). Must not: evaluate differently from `/v1/eval`, or write cache
//! headers (that is [`super::caching`]).

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::EvalState;
use super::answer::{Question, answer, finish};
use super::auth::Need;
use super::caching::{Payload, Reply};
use super::errors::{ApiError, OfrepError, Shape};
use super::etag::AnswerKind;
use super::extract::{ApiKey, body_bytes, ofrep_context_from_body};
use super::routes::authenticate;
use crate::eval::{self, Audience, Evaluation};

/// `POST /ofrep/v1/evaluate/flags`: every flag the key sees.
pub(crate) async fn bulk(
    State(st): State<EvalState>,
    key: Result<ApiKey, ApiError>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OfrepError> {
    let key = key?;
    let ctx = body_bytes(body).and_then(|b| ofrep_context_from_body(&b))?;
    let caller = authenticate(&st, key.as_str(), &headers).await?;
    // Public keys are advertised the change stream (ADR-0008): a browser's
    // EventSource cannot send headers, so the key goes in the URL, which is
    // safe only for public keys.
    let stream =
        (caller.audience() == Audience::Client).then(|| format!("/v1/stream?key={}", key.as_str()));
    let q = Question {
        kind: AnswerKind::OfrepBulk,
        need: Need::Any,
        ctx: &ctx,
        url: None,
    };
    Ok(answer(&st, &caller, &headers, q, |_, flags, stale| {
        serde_json::to_vec(&BulkBody {
            flags: &flags,
            stale,
            stream,
        })
    }))
}

/// `POST /ofrep/v1/evaluate/flags/{key}`: one flag.
pub(crate) async fn single(
    State(st): State<EvalState>,
    path: Result<Path<String>, PathRejection>,
    key: Result<ApiKey, ApiError>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OfrepError> {
    let Path(flag_key) = path.map_err(|_| ApiError::BadRequest("malformed flag key".to_owned()))?;
    let fail = |error| OfrepError {
        error,
        key: Some(flag_key.clone()),
    };
    let key = key.map_err(fail)?;
    let ctx = body_bytes(body)
        .and_then(|b| ofrep_context_from_body(&b))
        .map_err(fail)?;
    let caller = authenticate(&st, key.as_str(), &headers)
        .await
        .map_err(fail)?;
    let snap = &caller.snapshot;
    let rs = &snap.ruleset;
    let res = caller.require(Need::Any).and_then(|()| {
        // A flag the key may not see is answered exactly as one that does
        // not exist.
        if !rs.flag(&flag_key).is_some_and(|f| caller.sees(f)) {
            return Err(ApiError::FlagNotFound);
        }
        let evaluation = eval::evaluate_key(rs, &flag_key, &ctx).ok_or_else(|| {
            ApiError::internal("evaluating a flag", "the model broke an invariant")
        })?;
        Reply::private(snap)
            .stale(caller.stale)
            .cors(caller.key())
            .send(&headers, &st.directives, || {
                serde_json::to_vec(&FlagBody {
                    evaluation: &evaluation,
                    stale: caller.stale,
                })
                .map(Payload::json)
                .map_err(|e| ApiError::internal("serialising an OFREP answer", e))
            })
    });
    Ok(finish(res, snap, Shape::OfrepFlag(&flag_key)))
}

/// `{"flags": [{key, value, reason, variant}, ...], "eventStreams": [...]}`.
struct BulkBody<'a, 'r> {
    flags: &'a [Evaluation<'r>],
    stale: bool,
    /// `requestUri` of the SSE change stream to advertise, if any.
    stream: Option<String>,
}

impl Serialize for BulkBody<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Flags<'a, 'r>(&'a [Evaluation<'r>], bool);
        impl Serialize for Flags<'_, '_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                for e in self.0 {
                    seq.serialize_element(&FlagBody {
                        evaluation: e,
                        stale: self.1,
                    })?;
                }
                seq.end()
            }
        }
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("flags", &Flags(self.flags, self.stale))?;
        if let Some(uri) = &self.stream {
            m.serialize_entry(
                "eventStreams",
                &serde_json::json!([{
                    "type": "sse",
                    "endpoint": {"requestUri": uri},
                    "inactivityDelaySec": 120,
                }]),
            )?;
        }
        m.end()
    }
}

/// `{"key", "value", "reason", "variant"}`; the reason is `STALE` when the
/// instance could not reach the requested version.
struct FlagBody<'a, 'r> {
    evaluation: &'a Evaluation<'r>,
    stale: bool,
}

impl Serialize for FlagBody<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.evaluation;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("key", e.key())?;
        m.serialize_entry("value", e.value())?;
        m.serialize_entry(
            "reason",
            if self.stale {
                "STALE"
            } else {
                e.reason.as_str()
            },
        )?;
        m.serialize_entry("variant", &*e.variant.name)?;
        m.end()
    }
}
