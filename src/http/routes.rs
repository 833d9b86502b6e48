//! flagbelt's own routes: evaluation (`GET` and `POST /v1/eval`), the ruleset
//! download, health, readiness, metrics, the API description and the
//! fallback.
//!
//! Each handler is extract ([`super::extract`]) → authenticate → one snapshot
//! → evaluate ([`super::answer`]) → [`caching`]. Must not: write cache headers or error bodies itself (that is
//! [`caching`] and [`super::errors`]), load a snapshot twice in a request, or
//! evaluate on anything but the snapshot that authenticated the caller.

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::HeaderValue;
use http::header::ACCEPT;
use serde_json::{Value, json};

use super::answer::{self, Question, finish};
use super::answer_cache::PathKey;
use super::auth::{self, Caller, Need};
use super::caching::{self, Payload, Reply};
use super::errors::{ApiError, Shape};
use super::etag::{AnswerKind, if_none_match, ruleset_etag};
use super::extract::{ApiKey, body_bytes, context_from_body, context_from_segment};
use super::headers::FLAGBELT_MIN_VERSION;
use super::{EvalState, OpsState};
use crate::eval::{Answer, Context};
use crate::ruleset::codec;

/// `GET /v1/eval/{public_key}/{context}`: the CDN-cacheable evaluation.
///
/// Takes the request itself rather than a `HeaderMap` (that extractor clones
/// every header; this is the hottest route).
pub(crate) async fn eval_get(
    State(st): State<EvalState>,
    path: Result<Path<(String, String)>, PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let Path((key, segment)) =
        path.map_err(|_| ApiError::BadRequest("malformed request path".to_owned()))?;
    let headers = req.headers();
    let url = PathKey::of(req.uri().path());
    if let Some(res) = remembered(&st, &url, headers).await {
        return Ok(res);
    }
    let ctx = context_from_segment(&segment)?;
    let caller = authenticate(&st, &key, headers).await?;
    Ok(eval_answer(
        &st,
        &caller,
        headers,
        Need::Public,
        &ctx,
        Some(&url),
    ))
}

/// A repeat of a `GET /v1/eval` path answered earlier with the snapshot that
/// is still current: the same key, context and ruleset, so the same
/// authentication and the same tag ([`super::answer_cache::UrlMemo`]). Answered with a
/// 304 when the tag matches `If-None-Match`, or with the cached body; `None`
/// (the full path) otherwise, and always for read-your-writes requests.
async fn remembered(st: &EvalState, url: &PathKey, headers: &HeaderMap) -> Option<Response> {
    if headers.contains_key(FLAGBELT_MIN_VERSION) {
        return None;
    }
    let memo = st.answers.recall(url)?;
    let snap = st.delivery.get(memo.env()).await.ok()?.snapshot();
    if !memo.made_with(&snap) {
        return None;
    }
    let body = if if_none_match(headers, memo.etag()) {
        None
    } else {
        Some(st.answers.peek(memo.etag())?)
    };
    let res = Reply::shared(&snap, memo.key_id())
        .etag(Some(memo.etag().clone()))
        .cors(snap.ruleset.keys.get(memo.key_id()))
        .send(headers, &st.directives, || {
            body.map(Payload::json)
                .ok_or_else(|| ApiError::internal("replaying an answer", "no body to replay"))
        });
    Some(finish(res, &snap, Shape::Api))
}

/// `POST /v1/eval` with `{"context": {...}}`: private evaluation.
pub(crate) async fn eval_post(
    State(st): State<EvalState>,
    key: ApiKey,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let ctx = context_from_body(&body_bytes(body)?)?;
    let caller = authenticate(&st, key.as_str(), &headers).await?;
    Ok(eval_answer(&st, &caller, &headers, Need::Any, &ctx, None))
}

/// Authenticates with `Flagbelt-Min-Version` honoured.
pub(crate) async fn authenticate(
    st: &EvalState,
    key: &str,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let min = auth::min_version(headers)?;
    auth::authenticate(&st.delivery, key, min, st.min_version_wait).await
}

/// The evaluation answer of both `/v1/eval` routes (DESIGN's answer shape);
/// `url` is the key of a `GET`'s request path, remembered with the answer's
/// tag.
fn eval_answer(
    st: &EvalState,
    caller: &Caller,
    headers: &HeaderMap,
    need: Need,
    ctx: &Context,
    url: Option<&PathKey>,
) -> Response {
    let q = Question {
        kind: AnswerKind::Eval,
        need,
        ctx,
        url,
    };
    answer::answer(st, caller, headers, q, |rs, flags, stale| {
        let answer = Answer::new(rs, flags);
        if stale {
            stale_answer(&answer)
        } else {
            serde_json::to_vec(&answer)
        }
    })
}

/// The answer shape with every reason replaced by `STALE`.
fn stale_answer(answer: &Answer<'_>) -> Result<Vec<u8>, serde_json::Error> {
    let mut v = serde_json::to_value(answer)?;
    if let Some(flags) = v.get_mut("flags").and_then(Value::as_object_mut) {
        for f in flags.values_mut() {
            if let Some(f) = f.as_object_mut() {
                f.insert("reason".into(), json!("STALE"));
            }
        }
    }
    serde_json::to_vec(&v)
}

/// Formats of `GET /v1/ruleset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

/// `GET /v1/ruleset`: the stored ruleset for a server key, as protobuf (the
/// exact stored bytes) or as JSON (the same message, as `flagbelt inspect`
/// prints it), by `Accept`.
pub(crate) async fn ruleset(
    State(st): State<EvalState>,
    key: ApiKey,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = authenticate(&st, key.as_str(), &headers).await?;
    let snap = &caller.snapshot;
    let res = caller.require(Need::Server).and_then(|()| {
        let format = negotiate(&headers)?;
        let name = match format {
            Format::Protobuf => "pb",
            Format::Json => "json",
        };
        Reply::private(snap)
            .etag(Some(ruleset_etag(snap, name)))
            .stale(caller.stale)
            .vary_accept()
            .send(&headers, &st.directives, || match format {
                Format::Protobuf => Ok(Payload {
                    content_type: HeaderValue::from_static("application/x-protobuf"),
                    bytes: snap.ruleset_bytes.clone(),
                }),
                Format::Json => ruleset_json(&snap.ruleset_bytes).map(Payload::json),
            })
    });
    Ok(finish(res, snap, Shape::Api))
}

/// Picks the format from `Accept`: the supported type with the highest `q`
/// (protobuf on a tie, and when `Accept` is absent or `*/*`); 406 if none.
fn negotiate(headers: &HeaderMap) -> Result<Format, ApiError> {
    let mut best: Option<(f32, Format)> = None;
    let mut any_header = false;
    for line in headers.get_all(ACCEPT) {
        any_header = true;
        let Ok(line) = line.to_str() else { continue };
        for item in line.split(',') {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if q <= 0.0 {
                continue;
            }
            let format = match media.as_str() {
                "application/x-protobuf" | "application/protobuf" | "application/*" | "*/*" => {
                    Format::Protobuf
                }
                "application/json" => Format::Json,
                _ => continue,
            };
            let better = match best {
                None => true,
                Some((bq, bf)) => {
                    q > bq || (q == bq && bf == Format::Json && format == Format::Protobuf)
                }
            };
            if better {
                best = Some((q, format));
            }
        }
    }
    match best {
        Some((_, f)) => Ok(f),
        None if !any_header => Ok(Format::Protobuf),
        None => Err(ApiError::NotAcceptable),
    }
}

/// The proto ruleset as JSON, with each variant's `value_json` text replaced
/// by the JSON value it holds (as `flagbelt inspect` prints it).
fn ruleset_json(bytes: &[u8]) -> Result<Vec<u8>, ApiError> {
    let v = codec::ruleset_json(bytes).map_err(|e| match e {
        codec::JsonViewError::Decode(e) => ApiError::internal("decoding a served ruleset", e),
        codec::JsonViewError::Json(e) => ApiError::internal("serialising a ruleset", e),
    })?;
    serde_json::to_vec(&v).map_err(|e| ApiError::internal("serialising a ruleset", e))
}

/// `GET /healthz`: the process is up. Always 200.
pub(crate) async fn healthz() -> Response {
    caching::uncacheable_json(StatusCode::OK, &json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when every preloaded environment holds a usable
/// ruleset, else 503. Storage errors after that do not flip it. The body is
/// `{"ready": bool}` only: it is public, and environment names are not its
/// business (`/admin/v1/status` has the details).
pub(crate) async fn readyz(State(st): State<OpsState>) -> Response {
    let ready = st.delivery.ready(&st.preload);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    caching::uncacheable_json(status, &json!({"ready": ready}))
}

/// The OpenAPI 3.1 description of every route (`openapi/flagbelt.json`,
/// written by hand and checked against [`super::ROUTES`] by a test).
const OPENAPI: &str = include_str!("../../openapi/flagbelt.json");

/// `GET /openapi.json`: the API description, a public static document.
pub(crate) async fn openapi() -> Response {
    caching::public_static("application/json", OPENAPI)
}

/// `GET /metrics`: Prometheus text. The environment gauges are refreshed
/// first; 404 when the server runs without a recorder.
pub(crate) async fn metrics(State(st): State<OpsState>) -> Result<Response, ApiError> {
    let Some(handle) = &st.metrics else {
        return Err(ApiError::NotFound);
    };
    st.delivery.record_metrics();
    Ok(caching::uncacheable(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        handle.render(),
    ))
}

/// Unknown routes: JSON 404; under the OFREP flag path (a key with `/` or other
/// characters no flag key has) the OFREP `FLAG_NOT_FOUND` shape.
pub(crate) async fn fallback(uri: Uri) -> Response {
    match uri.path().strip_prefix("/ofrep/v1/evaluate/flags/") {
        Some(key) if !key.is_empty() => {
            // Echoed back `%XX` decoded (malformed escapes kept as written),
            // or as sent when the decoded bytes are not UTF-8.
            let key = crate::util::percent_decode(key).unwrap_or_else(|| key.to_owned());
            ApiError::FlagNotFound.render(Shape::OfrepFlag(&key))
        }
        _ if uri.path().starts_with("/ofrep/") => ApiError::NotFound.render(Shape::OfrepBulk),
        _ => ApiError::NotFound.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn negotiation_picks_by_q_and_prefers_protobuf() {
        assert_eq!(negotiate(&HeaderMap::new()).unwrap(), Format::Protobuf);
        assert_eq!(negotiate(&accept("*/*")).unwrap(), Format::Protobuf);
        assert_eq!(
            negotiate(&accept("application/json")).unwrap(),
            Format::Json
        );
        assert_eq!(
            negotiate(&accept("application/json, application/x-protobuf")).unwrap(),
            Format::Protobuf
        );
        assert_eq!(
            negotiate(&accept("application/x-protobuf;q=0.5, application/json")).unwrap(),
            Format::Json
        );
        assert_eq!(
            negotiate(&accept("text/html, application/json;q=0.1")).unwrap(),
            Format::Json
        );
        assert!(negotiate(&accept("text/html")).is_err());
        assert!(negotiate(&accept("application/json;q=0")).is_err());
    }

    #[tokio::test]
    async fn the_ofrep_fallback_echoes_the_key_percent_decoded() {
        for (path, key) in [
            ("a%20b/c", "a b/c"),
            ("a%2", "a%2"),
            ("%zz", "%zz"),
            ("%ff", "%ff"),
        ] {
            let uri: Uri = format!("/ofrep/v1/evaluate/flags/{path}").parse().unwrap();
            let res = fallback(uri).await;
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
            let body = axum::body::to_bytes(res.into_body(), usize::MAX)
                .await
                .unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["key"], key, "{path}: {json}");
        }
    }
}
