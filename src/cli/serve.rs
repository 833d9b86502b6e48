//! `flagbelt serve`: the edge server.
//!
//! Owns start-up and shutdown only: flags (each also `FLAGBELT_<NAME>`)
//! validated into typed settings, the Prometheus recorder (installed once, with periodic
//! upkeep), delivery (built, probed, preloaded; failed preloads are retried in
//! the background so `/readyz` turns 200 once storage answers), the listeners,
//! and graceful shutdown on SIGTERM or Ctrl-C (in-flight requests finish,
//! bounded by the request timeout plus a margin). Every configuration mistake
//! is a clear error before anything is served. The HTTP behaviour itself is
//! `crate::http`'s.
//!
//! Admin API: without `--admin-token-file`, `/admin` answers 404 (it does not
//! exist on such an instance). With `--admin-listen`, `/admin` and `/metrics`
//! are served only on that listener (plus `/healthz` and `/readyz`), never on
//! the public one.
//!
//! Peers: `--peers host:port` (the peers' admin port) makes every reload fan
//! out to whatever that name resolves to at the time; it needs
//! `--admin-token-file`, since peers are called with the admin token (all
//! peers share one). The name is checked for shape here, never resolved: it
//! may well not resolve yet when the first pod starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::delivery_args::DeliveryArgs;
use super::logging::LogFormat;
use crate::delivery::Delivery;
use crate::delivery::config;
use crate::http::{self, AdminToken, AppState, CachePolicy, HttpConfig};
use crate::ruleset::valid_env_name;

/// Arguments of `flagbelt serve`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  flagbelt serve -s file:///srv/flags -l 127.0.0.1:8080
  flagbelt serve -s s3://flags-eu/prod -s https://cdn.example.com/flags \\
    --public-key release.pub --cache-dir /var/cache/flagbelt \\
    --preload production --admin-listen [::]:8081 --admin-token-file /run/secrets/admin
Each flag is also an environment variable: FLAGBELT_SOURCE, FLAGBELT_LISTEN, ...
Logs: RUST_LOG filters (default info), --log-format json for one object per line.")]
pub struct Args {
    /// Sources and fallbacks.
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    /// Address of the public listener.
    #[arg(short, long, env = "FLAGBELT_LISTEN", default_value = "[::]:8080")]
    pub listen: SocketAddr,
    /// Separate listener for `/admin` and `/metrics` (they are then not served
    /// on the public listener).
    #[arg(long, env = "FLAGBELT_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Environments to load at start and keep loaded; `/readyz` is 200 once
    /// all of them are. Repeatable or comma-separated.
    #[arg(long, env = "FLAGBELT_PRELOAD", value_delimiter = ',')]
    pub preload: Vec<String>,
    /// File holding the admin bearer token (read once at start, trimmed).
    /// Without it, `/admin` answers 404.
    #[arg(long, env = "FLAGBELT_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Peers a reload fans out to: `host:port` of their admin listener (a
    /// headless service, a Consul name...), resolved on every reload; every
    /// address it resolves to gets the reload. Needs `--admin-token-file`
    /// (peers share the token). Empty: no peers.
    #[arg(long, env = "FLAGBELT_PEERS", value_name = "HOST:PORT")]
    pub peers: Option<String>,
    /// `s-maxage` of cacheable evaluations (seconds).
    #[arg(long, env = "FLAGBELT_S_MAXAGE", default_value_t = 30)]
    pub s_maxage: u32,
    /// `stale-while-revalidate` of cacheable evaluations (seconds).
    #[arg(long, env = "FLAGBELT_STALE_WHILE_REVALIDATE", default_value_t = 30)]
    pub stale_while_revalidate: u32,
    /// `stale-if-error` of cacheable evaluations (seconds).
    #[arg(long, env = "FLAGBELT_STALE_IF_ERROR", default_value_t = 86_400)]
    pub stale_if_error: u32,
    /// Most API requests in flight; more are shed with 503.
    #[arg(long, env = "FLAGBELT_MAX_CONCURRENCY", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_concurrency: u64,
    /// Size of the server-side cache of evaluation answers (MiB); 0 turns it
    /// off. An answer is kept from the second request for the same key and
    /// relevant context on.
    #[arg(long, env = "FLAGBELT_ANSWER_CACHE_MIB", default_value_t = 8,
          value_parser = clap::value_parser!(u64).range(0..=65_536))]
    pub answer_cache_mib: u64,
    /// Longest an API request may take (ms); 503 after it.
    #[arg(long, env = "FLAGBELT_REQUEST_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub request_timeout_ms: u64,
    /// Longest a request with `Flagbelt-Min-Version` waits for this instance
    /// to catch up before it is answered as stale (ms).
    #[arg(long, env = "FLAGBELT_MIN_VERSION_WAIT_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub min_version_wait_ms: u64,
    /// Log line format on stderr (`RUST_LOG` filters, default `info`).
    #[arg(long, env = "FLAGBELT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Extra time after the request timeout for in-flight requests to finish at
/// shutdown before the process exits anyway.
const DRAIN_MARGIN: Duration = Duration::from_secs(5);
/// How often failed preloads are retried.
const PRELOAD_RETRY: Duration = Duration::from_secs(5);
/// How often the Prometheus recorder's histograms are maintained.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

pub(super) fn run(args: &Args) -> anyhow::Result<()> {
    let config = http_config(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(serve(args, config))
}

/// Validates the flags into the HTTP layer's settings (metrics are added once
/// the recorder is installed).
fn http_config(args: &Args) -> anyhow::Result<HttpConfig> {
    for env in &args.preload {
        if !valid_env_name(env) {
            bail!("--preload: {env:?} is not an environment name ([A-Za-z0-9_-]{{1,64}})");
        }
    }
    if args.admin_listen == Some(args.listen) {
        bail!("--admin-listen must differ from --listen");
    }
    if args.min_version_wait_ms >= args.request_timeout_ms {
        bail!(
            "--min-version-wait-ms ({}) must be less than --request-timeout-ms ({}), or requests time out while waiting",
            args.min_version_wait_ms,
            args.request_timeout_ms
        );
    }
    let peers = match args.peers.as_deref().map(str::trim) {
        Some("") | None => None,
        Some(text) => Some(peer_name(text)?),
    };
    if peers.is_some() && args.admin_token_file.is_none() {
        bail!(
            "--peers needs --admin-token-file: reloads are forwarded to peers with the admin token"
        );
    }
    let admin_token = match &args.admin_token_file {
        Some(path) => Some(read_token(path)?),
        None => None,
    };
    Ok(HttpConfig {
        cache: CachePolicy {
            s_maxage: args.s_maxage,
            stale_while_revalidate: args.stale_while_revalidate,
            stale_if_error: args.stale_if_error,
        },
        min_version_wait: Duration::from_millis(args.min_version_wait_ms),
        preload: args.preload.clone(),
        admin_token,
        metrics: None,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        max_concurrency: usize::try_from(args.max_concurrency).unwrap_or(usize::MAX),
        stream_max_age: HttpConfig::default().stream_max_age,
        peers,
        answer_cache_bytes: args.answer_cache_mib * 1024 * 1024,
    })
}

/// Checks that `--peers` is `host:port`: a DNS name or an IPv4 address, or an
/// IPv6 address in brackets, and a port from 1 to 65535. The name is not
/// resolved here (see the module doc).
fn peer_name(text: &str) -> anyhow::Result<String> {
    let example = "for example flagbelt-headless.prod.svc.cluster.local:8081";
    let Some((host, port)) = text.rsplit_once(':') else {
        bail!("--peers: {text:?} is not host:port ({example})");
    };
    if !matches!(port.parse::<u16>(), Ok(p) if p != 0) {
        bail!("--peers: {port:?} in {text:?} is not a port (1-65535)");
    }
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        }
    };
    if !host_ok {
        bail!(
            "--peers: {host:?} in {text:?} is not a host name or address (IPv6 in brackets; {example})"
        );
    }
    Ok(text.to_owned())
}

/// Reads the admin token file; its content never appears in errors or logs.
fn read_token(path: &std::path::Path) -> anyhow::Result<AdminToken> {
    let text = SecretString::from(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the admin token file {}", path.display()))?,
    );
    let trimmed = SecretString::from(secrecy::ExposeSecret::expose_secret(&text).trim());
    if secrecy::ExposeSecret::expose_secret(&trimmed).is_empty() {
        bail!("the admin token file {} is empty", path.display());
    }
    Ok(AdminToken::new(&trimmed))
}

/// Installs the Prometheus recorder and the task that keeps its histograms
/// rolling (the exporter only does upkeep when asked).
fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the Prometheus recorder")?;
    http::metric_help::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(METRICS_UPKEEP);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Runs until a shutdown signal (then lets in-flight requests finish, for at
/// most `drain`) or until a server ends on its own (an accept error, which
/// ends the process).
async fn stop_on_signal(
    mut servers: tokio::task::JoinSet<anyhow::Result<()>>,
    stop_tx: watch::Sender<bool>,
    drain: Duration,
) -> anyhow::Result<()> {
    let stopped = tokio::select! {
        () = shutdown_signal() => true,
        // A server ending on its own (an accept error) ends the process.
        Some(res) = servers.join_next() => {
            res.context("server task failed")??;
            false
        }
    };
    if stopped {
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
        let finished = tokio::time::timeout(drain, async {
            while let Some(res) = servers.join_next().await {
                res.context("server task failed")??;
            }
            anyhow::Ok(())
        })
        .await;
        match finished {
            Ok(res) => res?,
            Err(_) => tracing::warn!(
                ?drain,
                "requests still running at the drain deadline; exiting"
            ),
        }
    }
    Ok(())
}

async fn serve(args: &Args, mut config: HttpConfig) -> anyhow::Result<()> {
    config.metrics = Some(install_metrics()?);

    let delivery = args.delivery.config().build()?;
    if args.delivery.public_keys.is_empty() {
        // Said once, here: every manifest is then accepted unsigned or
        // signed by anyone, which is fine on a laptop and wrong in production.
        tracing::warn!(
            "no --public-key given: manifest signatures are not checked; \
             give the publisher's public key (from `flagbelt keys signing-new`) to refuse unsigned or forged rulesets"
        );
    }
    for p in config::probe(&delivery).await {
        if let Some(problem) = &p.problem {
            tracing::warn!(source = %p.label, %problem, "source probe failed; delivery will fail over");
        }
    }
    if config.preload.is_empty() {
        warn_empty_sources(&delivery).await;
    }
    preload(&delivery, config.preload.clone()).await;

    let public = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let admin = match args.admin_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--admin-listen)"))?,
        ),
        None => None,
    };
    let public_addr = public.local_addr().context("listener address")?;
    let drain = config.request_timeout + DRAIN_MARGIN;
    let state = AppState::new(Arc::clone(&delivery), config);
    match &admin {
        Some(a) => {
            let admin_addr = a.local_addr().context("listener address")?;
            // A server keeps serving if nobody reads its stdout.
            let _ = super::print_line(format_args!(
                "flagbelt listening on http://{public_addr} (admin and metrics on http://{admin_addr})"
            ));
        }
        None => {
            let _ = super::print_line(format_args!("flagbelt listening on http://{public_addr}"));
        }
    }
    tracing::info!(%public_addr, "serving");

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    let (public_app, admin_app) = match admin {
        Some(_) => (
            http::public_router(state.clone()),
            Some(http::admin_router(state)),
        ),
        None => (http::router(state), None),
    };
    servers.spawn(run_server(public, public_app, stop_rx.clone()));
    if let (Some(listener), Some(app)) = (admin, admin_app) {
        servers.spawn(run_server(listener, app, stop_rx.clone()));
    }

    stop_on_signal(servers, stop_tx, drain).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn run_server(
    listener: TcpListener,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
        .context("the HTTP server failed")
}

/// Warns about each source that lists no environment at all: most often a
/// wrong prefix, which would otherwise show only as "unknown key" answers.
/// (With `--preload`, a missing environment is named by the preload.)
async fn warn_empty_sources(delivery: &Delivery) {
    for source in delivery.failover().sources() {
        if source.environment_count().await == Some(0) {
            tracing::warn!(
                source = %source.label(),
                looked_for = %source.manifest_location("<env>"),
                "source holds no environments"
            );
        }
    }
}

/// Preloads `envs`; any that fail are retried in the background until they
/// load (readiness waits for them; the server answers meanwhile).
async fn preload(delivery: &Arc<Delivery>, envs: Vec<String>) {
    if envs.is_empty() {
        return;
    }
    let failed = delivery.preload(&envs).await;
    if failed.is_empty() {
        tracing::info!(environments = ?envs, "preloaded");
        return;
    }
    for (env, e) in &failed {
        let why = delivery.failure(env).await.unwrap_or_else(|| e.to_string());
        tracing::warn!(env, error = %e, %why, "preload failed; retrying in the background");
    }
    let delivery = Arc::clone(delivery);
    let mut pending: Vec<String> = failed.into_iter().map(|(env, _)| env).collect();
    tokio::spawn(async move {
        while !pending.is_empty() {
            tokio::time::sleep(PRELOAD_RETRY).await;
            let failed = delivery.preload(&pending).await;
            for env in &pending {
                if !failed.iter().any(|(f, _)| f == env) {
                    tracing::info!(env, "preloaded");
                }
            }
            pending = failed.into_iter().map(|(env, _)| env).collect();
        }
    });
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
