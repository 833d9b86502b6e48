//! The admin API: `GET /admin/v1/status` and `POST /admin/v1/reload`.
//!
//! Owns the admin token check on every admin route (`Authorization: Bearer`,
//! constant-time, 401 otherwise) and the two reports. Without a configured
//! token the admin API does not exist on the instance: 404, so an instance
//! started without `--admin-token-file` can never be reloaded by anyone.
//! Answers are `no-store`. Must not: reveal API keys or secrets (reports hold
//! environment names, versions, sources and their errors only).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::AdminState;
use super::caching;
use super::errors::ApiError;

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
        .fetcher()
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
/// each one's version before and after.
pub(crate) async fn reload(
    State(st): State<AdminState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check(&st, &headers)?;
    let before: std::collections::HashMap<String, u64> = st
        .delivery
        .environments()
        .into_iter()
        .map(|e| (e.environment, e.version))
        .collect();
    let refreshed = st.delivery.refresh_all().await;
    tracing::info!(refreshed, "admin reload");
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
    Ok(caching::uncacheable_json(
        StatusCode::OK,
        &json!({"refreshed": refreshed, "environments": environments}),
    ))
}
