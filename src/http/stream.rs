//! `GET /v1/stream`: Server-Sent Events telling a client that its
//! environment's ruleset changed, so it re-fetches (with `If-None-Match`, a
//! cheap 304 when nothing it sees changed).
//!
//! Events follow OFREP's change notification (ADR-0008): `event: message`,
//! `data: {"type":"refetchEvaluation", ...}` plus our `environment` and
//! `version`. A comment heartbeat every 15 s keeps proxies from closing the
//! connection; a connection lives at most `HttpConfig::stream_max_age` (the
//! client reconnects), so load balancers can drain instances. Either key kind
//! may listen; the key comes from `Authorization`/`X-API-Key`, or from `?key=`
//! because browsers' `EventSource` cannot send headers (such URLs are secrets:
//! the request span logs the route template, never the URL). Outside the
//! request timeout and the concurrency limit (a stream is long by design).
//! Must not: send flag values (clients fetch them through the cacheable
//! routes) or be cacheable (`no-store`).

use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use serde_json::json;

use super::EvalState;
use super::auth::{self, Need};
use super::caching;
use super::errors::{ApiError, Shape};
use super::extract::ApiKey;
use super::headers::no_store;

/// Interval of the comment heartbeat.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(15);

/// `?key=` for `EventSource`, which cannot set headers.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct StreamQuery {
    key: Option<String>,
}

/// `GET /v1/stream`.
pub(crate) async fn stream(
    State(st): State<EvalState>,
    Query(query): Query<StreamQuery>,
    key: Result<ApiKey, ApiError>,
) -> Result<Response, ApiError> {
    let key = match (key, query.key) {
        (Ok(k), _) => k.into_string(),
        (Err(_), Some(k)) => k,
        (Err(e), None) => return Err(e),
    };
    let caller = auth::authenticate(&st.delivery, &key, None, st.min_version_wait).await?;
    if let Err(e) = caller.require(Need::Any) {
        return Ok(caching::stamped(e.render(Shape::Api), &caller.snapshot));
    }
    let env = st
        .delivery
        .get(&caller.snapshot.environment)
        .await
        .map_err(|_| ApiError::Unavailable)?;
    let events = version_events(env.subscribe(), env.name().to_owned(), st.stream_max_age);
    let mut res = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT))
        .into_response();
    no_store(res.headers_mut());
    caching::stamp(res.headers_mut(), &caller.snapshot);
    // Proxies that buffer (nginx) would hold events back.
    res.headers_mut().insert(
        http::HeaderName::from_static("x-accel-buffering"),
        http::HeaderValue::from_static("no"),
    );
    Ok(res)
}

/// One event per version change, until `max_age` or the environment goes away.
fn version_events(
    rx: tokio::sync::watch::Receiver<u64>,
    environment: String,
    max_age: Duration,
) -> impl Stream<Item = Result<Event, std::convert::Infallible>> {
    let deadline = tokio::time::Instant::now() + max_age;
    stream::unfold(
        (rx, environment, deadline),
        |(mut rx, environment, deadline)| async move {
            tokio::select! {
                changed = rx.changed() => {
                    // Err: the environment was evicted; the client reconnects.
                    changed.ok()?;
                    let version = *rx.borrow_and_update();
                    let data = json!({
                        "type": "refetchEvaluation",
                        "environment": environment,
                        "version": version,
                    });
                    let event = Event::default().event("message").data(data.to_string());
                    Some((Ok(event), (rx, environment, deadline)))
                }
                () = tokio::time::sleep_until(deadline) => None,
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use futures::StreamExt as _;

    use super::*;

    /// Paused time: the clock only moves when every task is idle, so the
    /// max age is reached exactly, with no real sleeping.
    #[tokio::test(start_paused = true)]
    async fn a_version_change_is_one_event_and_the_stream_ends_at_max_age() {
        let (tx, rx) = tokio::sync::watch::channel(1u64);
        let max_age = Duration::from_secs(300);
        let start = tokio::time::Instant::now();
        let mut events = Box::pin(version_events(rx, "prod".into(), max_age));
        tx.send_replace(2);
        let first = events.next().await.expect("stream open");
        assert!(first.is_ok());
        assert_eq!(start.elapsed(), Duration::ZERO, "the event is immediate");
        let end = events.next().await;
        assert!(end.is_none(), "the stream ends");
        assert_eq!(start.elapsed(), max_age, "exactly at max age");
    }

    #[tokio::test(start_paused = true)]
    async fn an_evicted_environment_ends_the_stream() {
        let (tx, rx) = tokio::sync::watch::channel(1u64);
        let start = tokio::time::Instant::now();
        let mut events = Box::pin(version_events(rx, "prod".into(), Duration::from_secs(600)));
        drop(tx);
        assert!(events.next().await.is_none());
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "ends at once, not at max age"
        );
    }
}
