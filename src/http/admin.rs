//! The admin API: `GET /admin/v1/status` and `POST /admin/v1/reload`.
//!
//! Owns the admin token check on every admin route (`Authorization: Bearer`,
//! constant-time, 401 otherwise) and the two reports. Without a configured
//! token the admin API does not exist on the instance: 404, so an instance
//! started without `--admin-token-file` can never be reloaded by anyone.
//! Answers are `no-store`. Must not: reveal API keys or secrets (reports hold
//! environment names, versions, sources and their errors only).
//!
//! A reload refreshes this instance first, then (with `--peers`) forwards the
//! reload to the peers ([`super::peers`]); the answer is 200 once the local
//! refresh is done, whatever the peers answered: the `peers` member says.

use axum::extract::{RawQuery, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::AdminState;
use super::caching;
use super::errors::ApiError;
use super::peers;

fn check(st: &AdminState, headers: &HeaderMap) -> Result<(), ApiError> {
    st.token
        .as_ref()
        .ok_or(ApiError::AdminDisabled)?
        .check(headers)
}

/// `GET /admin/v1/status`: readiness, every loaded environment's report and
/// every source's health counters.
pub(crate) async fn status(
    State(st): State<AdminState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check(&st, &headers)?;
    let sources: Vec<_> = st
        .delivery
        .failover()
        .sources()
        .iter()
        .map(|s| s.health())
        .collect();
    Ok(caching::uncacheable_json(
        StatusCode::OK,
        &json!({
            "ready": st.delivery.ready(&st.preload),
            "preload": &*st.preload,
            "environments": st.delivery.environments(),
            "sources": sources,
        }),
    ))
}

/// `POST /admin/v1/reload`: polls every loaded environment now and reports
/// each one's version before and after; then, with `--peers` and unless the
/// request was forwarded by a peer or says `?fanout=false`, forwards the
/// reload to every peer and reports each one's answer under `peers`. The
/// `peers` member is absent when no fan-out was attempted (no `--peers`, a
/// forwarded reload, or `?fanout=false`).
pub(crate) async fn reload(
    State(st): State<AdminState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check(&st, &headers)?;
    // Bad `fanout` or `Flagbelt-Forwarded` values are 400 with or without
    // `--peers`, before anything is reloaded.
    let fan_out = peers::wanted(&headers, query.as_deref())? && st.peers.is_some();
    let before: std::collections::HashMap<String, u64> = st
        .delivery
        .environments()
        .into_iter()
        .map(|e| (e.environment, e.version))
        .collect();
    let refreshed = st.delivery.refresh_all().await;
    tracing::info!(refreshed, fan_out, "admin reload");
    let environments: Vec<_> = st
        .delivery
        .environments()
        .into_iter()
        .map(|e| {
            let previous = before.get(&e.environment).copied();
            json!({
                "environment": e.environment,
                "previous_version": previous,
                "version": e.version,
                "changed": previous != Some(e.version),
                "last_error": e.status.last_error,
            })
        })
        .collect();
    let mut report = json!({"refreshed": refreshed, "environments": environments});
    // `check` passed, so `Authorization` is there and carries our token: the
    // peers are called with it as received (we keep only its digest).
    if let (true, Some(name), Some(auth)) = (fan_out, &st.peers, headers.get(AUTHORIZATION)) {
        report["peers"] = json!(peers::fan_out(name, auth).await);
    }
    Ok(caching::uncacheable_json(StatusCode::OK, &report))
}
