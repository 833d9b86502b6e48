//! One storage source: an object store plus a prefix, read with deadlines.
//!
//! Owns the I/O against one store (`s3://`, `gs://`, `az://`, `http(s)://`,
//! `file://`): URL parsing into an object_store client with second-scale
//! timeouts and retries, conditional manifest reads, ruleset reads, uploads, and
//! per-source health counters and metrics. It must not decide anything about
//! versions or verification (that is `fetch`), and never logs credentials: a
//! source is known by its [`Source::label`], which has no secrets.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, PutPayload};

/// Timeouts and retries for one source. object_store's defaults are minutes;
/// a flag server must fail over in seconds.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// Deadline for one whole operation (all retries included).
    pub timeout: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Retries inside the deadline (object_store's retry on 5xx/connection errors).
    pub max_retries: usize,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_millis(300),
            max_retries: 1,
        }
    }
}

/// What a manifest read found.
#[derive(Debug, Clone)]
pub enum Fetched {
    /// The store says the object still has the ETag we sent (304), or answered
    /// 200 with that same ETag (some stores ignore `If-None-Match`).
    NotModified,
    /// The object's bytes and ETag.
    Object {
        /// Object bytes.
        bytes: Bytes,
        /// The store's ETag (quotes included), if it sent one.
        etag: Option<String>,
    },
}

/// Why a source operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The object does not exist.
    #[error("not found")]
    NotFound,
    /// The operation did not finish within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The store answered with an error, or could not be reached.
    #[error("storage error")]
    Store(#[source] object_store::Error),
    /// The source URL or its settings are unusable.
    #[error("invalid source {url}: {reason}")]
    Config {
        /// The URL as given, with any credentials removed.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

/// Counters for status pages; cheap to update from any task.
#[derive(Debug, Default)]
struct Stats {
    ok: AtomicU64,
    not_modified: AtomicU64,
    not_found: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    last_latency_us: AtomicU64,
    /// Held only to copy a short string in or out; never across an await.
    last_error: Mutex<Option<(u64, String)>>,
}

/// A point-in-time copy of a source's health counters.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceHealth {
    /// The source's label.
    pub label: String,
    /// Successful reads and writes.
    pub ok: u64,
    /// Conditional reads answered "unchanged".
    pub not_modified: u64,
    /// Reads of objects that do not exist.
    pub not_found: u64,
    /// Failed operations (errors from the store or the network).
    pub errors: u64,
    /// Operations that hit the deadline.
    pub timeouts: u64,
    /// Latency of the last operation, in microseconds.
    pub last_latency_us: u64,
    /// The last error, with its time in milliseconds since the epoch.
    pub last_error: Option<(u64, String)>,
}

/// One storage source with the stored layout under `prefix`.
#[derive(Debug)]
pub struct Source {
    label: String,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    timeout: Duration,
    stats: Stats,
}

impl Source {
    /// A source over an existing store (tests, `InMemory`, custom clients).
    pub fn new(
        label: impl Into<String>,
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        timeout: Duration,
    ) -> Self {
        Self {
            label: label.into(),
            store,
            prefix: Path::from(prefix),
            timeout,
            stats: Stats::default(),
        }
    }

    /// The source's name in logs, metrics and status: scheme, bucket and prefix,
    /// never credentials or query parameters.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The underlying store (for publishing and tests).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Path of `relative` (e.g. `manifest.pb`) inside environment `env`.
    pub fn path(&self, env: &str, relative: &str) -> Path {
        let mut parts: Vec<String> = self.prefix.parts().map(|p| p.as_ref().to_owned()).collect();
        parts.push(env.to_owned());
        parts.extend(
            relative
                .split('/')
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
        );
        Path::from_iter(parts)
    }

    /// Reads `<env>/manifest.pb`, conditionally when `if_none_match` is given.
    pub async fn get_manifest(
        &self,
        env: &str,
        if_none_match: Option<&str>,
    ) -> Result<Fetched, SourceError> {
        let path = self.path(env, "manifest.pb");
        let opts = GetOptions::new().with_if_none_match(if_none_match);
        let result = self
            .timed("manifest", async {
                let got = self.store.get_opts(&path, opts).await?;
                let etag = got.meta.e_tag.clone();
                let bytes = got.bytes().await?;
                Ok((bytes, etag))
            })
            .await;
        match result {
            Ok((bytes, etag)) => {
                if etag.is_some() && etag.as_deref() == if_none_match {
                    // A store that ignores If-None-Match answered 200 with the
                    // ETag we already hold: that is "unchanged" too.
                    self.stats.not_modified.fetch_add(1, Ordering::Relaxed);
                    return Ok(Fetched::NotModified);
                }
                Ok(Fetched::Object { bytes, etag })
            }
            Err(SourceError::Store(object_store::Error::NotModified { .. })) => {
                self.stats.not_modified.fetch_add(1, Ordering::Relaxed);
                Ok(Fetched::NotModified)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads `<env>/<ruleset_path>` (the path the manifest names).
    pub async fn get_ruleset(&self, env: &str, ruleset_path: &str) -> Result<Bytes, SourceError> {
        let path = self.path(env, ruleset_path);
        self.timed("ruleset", async {
            self.store
                .get_opts(&path, GetOptions::new())
                .await?
                .bytes()
                .await
        })
        .await
    }

    /// Writes `<env>/<relative>`.
    pub async fn put(&self, env: &str, relative: &str, bytes: Bytes) -> Result<(), SourceError> {
        let path = self.path(env, relative);
        self.timed("put", async {
            self.store
                .put_opts(&path, PutPayload::from_bytes(bytes), Default::default())
                .await
                .map(|_| ())
        })
        .await
    }

    /// Health counters as they are now.
    pub fn health(&self) -> SourceHealth {
        let last_error = self
            .stats
            .last_error
            .lock()
            .map(|g| g.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone());
        SourceHealth {
            label: self.label.clone(),
            ok: self.stats.ok.load(Ordering::Relaxed),
            not_modified: self.stats.not_modified.load(Ordering::Relaxed),
            not_found: self.stats.not_found.load(Ordering::Relaxed),
            errors: self.stats.errors.load(Ordering::Relaxed),
            timeouts: self.stats.timeouts.load(Ordering::Relaxed),
            last_latency_us: self.stats.last_latency_us.load(Ordering::Relaxed),
            last_error,
        }
    }

    /// Runs one store operation under the deadline and records its outcome.
    async fn timed<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, object_store::Error>>,
    ) -> Result<T, SourceError> {
        let start = Instant::now();
        let result = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(object_store::Error::NotFound { .. })) => Err(SourceError::NotFound),
            Ok(Err(e)) => Err(SourceError::Store(e)),
            Err(_) => Err(SourceError::Timeout(self.timeout)),
        };
        let elapsed = start.elapsed();
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.stats.last_latency_us.store(micros, Ordering::Relaxed);
        let outcome = match &result {
            Ok(_) => {
                self.stats.ok.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
            Err(SourceError::NotFound) => {
                self.stats.not_found.fetch_add(1, Ordering::Relaxed);
                "not_found"
            }
            Err(SourceError::Store(object_store::Error::NotModified { .. })) => "not_modified",
            Err(e) => {
                if matches!(e, SourceError::Timeout(_)) {
                    self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                }
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    .unwrap_or(0);
                let message = error_chain(e);
                if let Ok(mut g) = self.stats.last_error.lock() {
                    *g = Some((now, message));
                }
                if matches!(e, SourceError::Timeout(_)) {
                    "timeout"
                } else {
                    "error"
                }
            }
        };
        metrics::counter!("flagbelt_source_requests_total",
            "source" => self.label.clone(), "op" => op, "outcome" => outcome)
        .increment(1);
        metrics::histogram!("flagbelt_source_request_seconds",
            "source" => self.label.clone(), "op" => op)
        .record(elapsed.as_secs_f64());
        result
    }
}

/// An error and its causes on one line (`a: b: c`), for status and logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
