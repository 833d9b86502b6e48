//! The HTTP surface: routes, extractors, auth, caching, errors, OFREP.
//!
//! Owns the router ([`router`], or [`public_router`] + [`admin_router`] for
//! two listeners), the shared state ([`AppState`], cheap to clone, narrowed
//! for handlers with `FromRef`), and the edge layers: panic catching, JSON for
//! every error, a request timeout, a concurrency limit that sheds instead of
//! queueing, a body limit, compression, request metrics and tracing spans.
//!
//! Handlers stay thin: extract → authenticate → one snapshot → evaluate →
//! [`caching`] (the only writer of cache headers). Errors are one enum mapped in
//! [`errors`]. This module must not evaluate anything itself, touch storage
//! except through [`Delivery`], or log URLs (a public key is in the eval path):
//! spans and metrics carry the route template only.
//!
//! The modules, leaves last:
//!
//! - `routes`, `ofrep`, `stream`, `admin`: the handlers; `peers`: reload fan-out.
//! - `extract`: reading a request's inputs (the `ApiKey` extractor, contexts).
//! - `auth`: matching a key against a snapshot, key kinds, visibility, the
//!   admin token.
//! - `answer`: the one pipeline of the evaluate-everything routes.
//! - [`caching`]: cache policy, `Vary`, CORS, the 304; `etag`: deriving and
//!   matching validators; `answer_cache`: answer bodies and the `GET` path memo.
//! - [`errors`]: every error response; [`headers`]: header names and `no_store`.
//!
//! Routes (DESIGN.md, "HTTP surface"); [`ROUTES`] is the table the routers
//! are built from, and the OpenAPI document is tested against it:
//!
//! | route | auth | notes |
//! |---|---|---|
//! | `GET /v1/eval/{public_key}/{context}` | public key in the path | CDN-cacheable |
//! | `POST /v1/eval` | key in `Authorization: Bearer` or `X-API-Key` | private |
//! | `POST /ofrep/v1/evaluate/flags`, `.../flags/{key}` | as above | OFREP shapes |
//! | `GET /v1/ruleset` | server key | protobuf or JSON by `Accept` |
//! | `GET /healthz`, `GET /readyz` | none | no-store |
//! | `GET /openapi.json` | none | the OpenAPI 3.1 description of this table (`openapi/flagbelt.json`); `public, max-age=3600` |
//! | `GET /metrics`, `GET /admin/v1/status`, `POST /admin/v1/reload` | admin token for `/admin` | no-store; on the admin listener when there is one |

mod admin;
mod answer;
mod answer_cache;
mod auth;
pub mod caching;
pub mod errors;
mod etag;
mod extract;
pub mod headers;
pub mod metric_help;
mod ofrep;
mod peers;
mod routes;
mod stream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, FromRef, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter, on};
use http::Method;
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate as _, SizeAbove};
use tower_http::compression::{CompressionLayer, CompressionLevel};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

pub use auth::AdminToken;
pub use caching::CachePolicy;
pub use errors::ApiError;

use crate::delivery::Delivery;

/// Largest request body accepted (413 above it).
pub const BODY_LIMIT: usize = 64 * 1024;
/// Largest context path segment of `GET /v1/eval` (414 above it).
pub const MAX_CONTEXT_SEGMENT: usize = 8 * 1024;

/// Everything the HTTP layer is configured with (already validated).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Lifetimes of CDN-cacheable answers.
    pub cache: CachePolicy,
    /// How long a request with `Flagbelt-Min-Version` may wait for the
    /// instance to catch up before it is answered as stale.
    pub min_version_wait: Duration,
    /// Environments that must be loaded for `/readyz` to say ready.
    pub preload: Vec<String>,
    /// The admin token; `None` disables `/admin` (404).
    pub admin_token: Option<AdminToken>,
    /// The Prometheus handle `/metrics` renders; `None` disables `/metrics` (404).
    pub metrics: Option<PrometheusHandle>,
    /// Longest time a request may take (503 after it).
    pub request_timeout: Duration,
    /// Most requests evaluated at once; more are shed with 503.
    pub max_concurrency: usize,
    /// Longest life of one `/v1/stream` connection (the client reconnects).
    pub stream_max_age: Duration,
    /// Peers a reload fans out to: `host:port`, resolved through DNS on every
    /// reload (every address it resolves to is a peer); `None`: no fan-out.
    pub peers: Option<String>,
    /// Bytes of evaluation answers the server-side answer cache may hold; 0
    /// turns it off.
    pub answer_cache_bytes: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            cache: CachePolicy::default(),
            min_version_wait: Duration::from_millis(2000),
            preload: Vec::new(),
            admin_token: None,
            metrics: None,
            request_timeout: Duration::from_millis(5000),
            max_concurrency: 1024,
            stream_max_age: Duration::from_secs(600),
            peers: None,
            answer_cache_bytes: answer_cache::ANSWER_CACHE_BYTES,
        }
    }
}

/// Shared state of all handlers: one `Arc`, cheap to clone (axum clones the
/// state for every request, and each handler's part of it again).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Parts>);

#[derive(Debug)]
struct Parts {
    eval: EvalState,
    ops: OpsState,
    admin: AdminState,
    limits: Limits,
}

/// What evaluation handlers need: one `Arc` to clone per request.
pub(crate) type EvalState = Arc<EvalParts>;
/// What health, readiness and metrics need.
pub(crate) type OpsState = Arc<OpsParts>;
/// What the admin API needs.
pub(crate) type AdminState = Arc<AdminParts>;

/// The fields of [`EvalState`].
#[derive(Debug)]
pub(crate) struct EvalParts {
    pub delivery: Arc<Delivery>,
    pub directives: caching::Directives,
    /// Server-side cache of evaluation answers.
    pub answers: answer_cache::AnswerCache,
    pub min_version_wait: Duration,
    pub stream_max_age: Duration,
}

/// The fields of [`OpsState`].
#[derive(Debug)]
pub(crate) struct OpsParts {
    pub delivery: Arc<Delivery>,
    pub preload: Arc<[String]>,
    pub metrics: Option<PrometheusHandle>,
}

/// The fields of [`AdminState`].
#[derive(Debug)]
pub(crate) struct AdminParts {
    pub delivery: Arc<Delivery>,
    pub preload: Arc<[String]>,
    pub token: Option<AdminToken>,
    /// `host:port` of the peers a reload fans out to ([`HttpConfig::peers`]).
    pub peers: Option<Arc<str>>,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    request_timeout: Duration,
    max_concurrency: usize,
}

impl AppState {
    /// State over `delivery` with `config`.
    pub fn new(delivery: Arc<Delivery>, config: HttpConfig) -> Self {
        let preload: Arc<[String]> = config.preload.into();
        Self(Arc::new(Parts {
            eval: Arc::new(EvalParts {
                delivery: Arc::clone(&delivery),
                directives: caching::Directives::new(config.cache),
                answers: answer_cache::AnswerCache::new(config.answer_cache_bytes),
                min_version_wait: config.min_version_wait,
                stream_max_age: config.stream_max_age,
            }),
            ops: Arc::new(OpsParts {
                delivery: Arc::clone(&delivery),
                preload: Arc::clone(&preload),
                metrics: config.metrics,
            }),
            admin: Arc::new(AdminParts {
                delivery,
                preload,
                token: config.admin_token,
                peers: config.peers.map(Arc::from),
            }),
            limits: Limits {
                request_timeout: config.request_timeout,
                max_concurrency: config.max_concurrency.max(1),
            },
        }))
    }
}

impl FromRef<AppState> for EvalState {
    fn from_ref(s: &AppState) -> Self {
        Arc::clone(&s.0.eval)
    }
}

impl FromRef<AppState> for OpsState {
    fn from_ref(s: &AppState) -> Self {
        Arc::clone(&s.0.ops)
    }
}

impl FromRef<AppState> for AdminState {
    fn from_ref(s: &AppState) -> Self {
        Arc::clone(&s.0.admin)
    }
}

/// One route the server answers: a method on a path template. [`ROUTES`]
/// lists them all, and the routers are built from that list only, so the
/// list (and the OpenAPI document checked against it) cannot miss a route.
#[derive(Debug, Clone)]
pub struct Route {
    /// The method (`GET` routes also answer `HEAD`).
    pub method: Method,
    /// The path template, in axum's `{param}` syntax (OpenAPI's too).
    pub path: &'static str,
    group: Group,
    handler: fn(MethodFilter) -> MethodRouter<AppState>,
}

/// Which layers wrap a route and which listeners serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    /// Browser-facing API: CORS outside the timeout and the concurrency limit.
    Browser,
    /// Server-key API: the timeout and the concurrency limit, no CORS.
    Server,
    /// Long-lived streams: CORS, but outside the request timeout and the
    /// concurrency limit.
    Stream,
    /// Probes and the API description: outside the limits, on every listener.
    Open,
    /// Metrics and admin: on the admin listener when there is one.
    Admin,
}

/// Every (method, path) the server serves: the routers are built from this
/// table, and `tests/it/openapi.rs` checks `openapi/flagbelt.json` against it.
pub const ROUTES: &[Route] = &[
    Route {
        method: Method::GET,
        path: "/v1/eval/{public_key}/{context}",
        group: Group::Browser,
        handler: |m| on(m, routes::eval_get),
    },
    Route {
        method: Method::OPTIONS,
        path: "/v1/eval/{public_key}/{context}",
        group: Group::Browser,
        handler: |m| on(m, caching::preflight),
    },
    Route {
        method: Method::POST,
        path: "/v1/eval",
        group: Group::Browser,
        handler: |m| on(m, routes::eval_post),
    },
    Route {
        method: Method::OPTIONS,
        path: "/v1/eval",
        group: Group::Browser,
        handler: |m| on(m, caching::preflight),
    },
    Route {
        method: Method::POST,
        path: "/ofrep/v1/evaluate/flags",
        group: Group::Browser,
        handler: |m| on(m, ofrep::bulk),
    },
    Route {
        method: Method::OPTIONS,
        path: "/ofrep/v1/evaluate/flags",
        group: Group::Browser,
        handler: |m| on(m, caching::preflight),
    },
    Route {
        method: Method::POST,
        path: "/ofrep/v1/evaluate/flags/{key}",
        group: Group::Browser,
        handler: |m| on(m, ofrep::single),
    },
    Route {
        method: Method::OPTIONS,
        path: "/ofrep/v1/evaluate/flags/{key}",
        group: Group::Browser,
        handler: |m| on(m, caching::preflight),
    },
    Route {
        method: Method::GET,
        path: "/v1/stream",
        group: Group::Stream,
        handler: |m| on(m, stream::stream),
    },
    Route {
        method: Method::GET,
        path: "/v1/ruleset",
        group: Group::Server,
        handler: |m| on(m, routes::ruleset),
    },
    Route {
        method: Method::GET,
        path: "/healthz",
        group: Group::Open,
        handler: |m| on(m, routes::healthz),
    },
    Route {
        method: Method::GET,
        path: "/readyz",
        group: Group::Open,
        handler: |m| on(m, routes::readyz),
    },
    Route {
        method: Method::GET,
        path: "/openapi.json",
        group: Group::Open,
        handler: |m| on(m, routes::openapi),
    },
    Route {
        method: Method::GET,
        path: "/metrics",
        group: Group::Admin,
        handler: |m| on(m, routes::metrics),
    },
    Route {
        method: Method::GET,
        path: "/admin/v1/status",
        group: Group::Admin,
        handler: |m| on(m, admin::status),
    },
    Route {
        method: Method::POST,
        path: "/admin/v1/reload",
        group: Group::Admin,
        handler: |m| on(m, admin::reload),
    },
];

/// The routes of `group`, from [`ROUTES`]. Two entries on one path merge
/// into one method router.
fn group(group: Group) -> Router<AppState> {
    ROUTES
        .iter()
        .filter(|r| r.group == group)
        .fold(Router::new(), |router, r| {
            // Invariant: ROUTES holds standard methods only (GET, POST,
            // OPTIONS), each of which has a filter; every test builds the
            // routers, so a wrong entry fails there first.
            let filter = MethodFilter::try_from(r.method.clone())
                .unwrap_or_else(|_| panic!("ROUTES: no method filter for {}", r.method));
            router.route(r.path, (r.handler)(filter))
        })
}

/// Every route on one listener: the API, health, readiness, the API
/// description, metrics and admin.
pub fn router(state: AppState) -> Router {
    let limits = state.0.limits;
    edge(
        api(limits)
            .merge(group(Group::Open))
            .merge(group(Group::Admin))
            .with_state(state),
    )
}

/// The public listener when admin routes have their own: the API, health,
/// readiness and the API description; no `/metrics`, no `/admin`.
pub fn public_router(state: AppState) -> Router {
    let limits = state.0.limits;
    edge(api(limits).merge(group(Group::Open)).with_state(state))
}

/// The admin listener: `/admin`, `/metrics`, health, readiness and the API
/// description.
pub fn admin_router(state: AppState) -> Router {
    edge(
        group(Group::Open)
            .merge(group(Group::Admin))
            .with_state(state),
    )
}

/// Evaluation, OFREP and ruleset routes, behind the timeout and the
/// concurrency limit. Health and admin stay outside the limit, so an
/// overloaded instance still answers its probes.
fn api(limits: Limits) -> Router<AppState> {
    // One stack, cloned onto both groups: the clones share one semaphore, so
    // the limit is global.
    let limited = ServiceBuilder::new()
        .layer(TimeoutLayer::with_status_code(
            http::StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout,
        ))
        .layer(HandleErrorLayer::new(errors::overloaded))
        .layer(LoadShedLayer::new())
        .layer(GlobalConcurrencyLimitLayer::new(limits.max_concurrency))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    // CORS outside the limits, so a page can read a timeout or a shed request
    // too.
    let browser = group(Group::Browser)
        .layer(limited.clone())
        .layer(middleware::from_fn(caching::cors));
    let server = group(Group::Server).layer(limited);
    let streams = group(Group::Stream).layer(middleware::from_fn(caching::cors));
    browser.merge(server).merge(streams)
}

/// Compression level of gzip and brotli answers: 1. Each answer is compressed
/// afresh (a new encoder with its tables), so a level's set-up cost dominates
/// and higher levels cost more CPU than the bytes they save are worth; the
/// measurements are in the README ("Cache semantics", compression).
const COMPRESSION_QUALITY: CompressionLevel = CompressionLevel::Precise(1);
/// Answers smaller than this go out uncompressed (a few hundred bytes of JSON
/// gain less than the headers and CPU cost).
const COMPRESS_ABOVE: u64 = 512;

/// Layers every route shares, outermost first: tracing span (route template,
/// never the URL), request metrics, JSON for every error, panics as JSON 500,
/// compression.
fn edge(router: Router) -> Router {
    router.fallback(routes::fallback).layer(
        ServiceBuilder::new()
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|req: &Request| {
                        tracing::info_span!("request", method = %req.method(), route = route_of(req))
                    })
                    // tower-http logs every 5xx at ERROR; most are expected
                    // answers (`/readyz` before the preloads, shedding, a dead
                    // store). Internal failures are logged at ERROR once, by
                    // `errors::ApiError::render`.
                    .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
            )
            .layer(middleware::from_fn(track))
            .layer(middleware::from_fn(errors::json_errors))
            .layer(CatchPanicLayer::custom(errors::panic_response))
            .layer(
                CompressionLayer::new()
                    .quality(COMPRESSION_QUALITY)
                    .compress_when(DefaultPredicate::new().and(SizeAbove::new(COMPRESS_ABOVE))),
            ),
    )
}

fn route_of(req: &Request) -> &str {
    req.extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
}

/// Counts requests by route template, method and status, and times them.
/// Labels are static strings (no allocation per request).
async fn track(req: Request, next: Next) -> Response {
    let route = route_label(&req);
    let method: &'static str = match *req.method() {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let start = Instant::now();
    let res = next.run(req).await;
    metrics::counter!("flagbelt_http_requests_total",
        "route" => route, "method" => method, "status" => status_label(res.status()))
    .increment(1);
    metrics::histogram!("flagbelt_http_request_seconds", "route" => route)
        .record(start.elapsed().as_secs_f64());
    res
}

/// The matched route template as the `&'static str` of its [`ROUTES`] entry.
fn route_label(req: &Request) -> &'static str {
    let Some(matched) = req.extensions().get::<MatchedPath>() else {
        return "unmatched";
    };
    ROUTES
        .iter()
        .find(|r| r.path == matched.as_str())
        .map_or("unmatched", |r| r.path)
}

/// The status as a label: the codes this server answers with are spelled out,
/// anything else is its class.
fn status_label(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        200 => "200",
        204 => "204",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        406 => "406",
        413 => "413",
        414 => "414",
        415 => "415",
        422 => "422",
        431 => "431",
        500 => "500",
        503 => "503",
        _ if status.is_informational() => "1xx",
        _ if status.is_success() => "2xx",
        _ if status.is_redirection() => "3xx",
        _ if status.is_client_error() => "4xx",
        _ => "5xx",
    }
}
