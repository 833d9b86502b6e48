//! One storage source: an object store plus a prefix, read with deadlines.
//!
//! Owns the I/O against one store: conditional manifest reads, ruleset reads,
//! uploads, the start-up probe, and per-source health counters and metrics.
//! URLs and the clients built from them are [`url`]'s. A source knows what it
//! is ([`SourceKind`]: a remote store, the last-known-good cache or the
//! bootstrap folder) from how it was made, never from its label's text. It
//! must not decide anything about versions or verification (that is
//! `failover`), and never logs credentials: a source is known by its
//! [`Source::label`], which has no secrets.

pub mod url;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{GetOptions, ObjectMeta, ObjectStore, PutPayload};

pub use self::url::{Scheme, SourceOptions, parse_sources};
use crate::ruleset::layout;
use crate::util::{error_chain, lock, now_ms};

/// What a source is, as set when it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A configured store (`--source`).
    #[default]
    Remote,
    /// This instance's last-known-good cache folder.
    LastKnownGood,
    /// The baked bootstrap folder.
    Bootstrap,
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
    /// The store says the object is larger than it may be (checked before
    /// the download).
    #[error("object of {size} bytes is larger than the {max} allowed")]
    TooLarge {
        /// Size the store reported.
        size: u64,
        /// The most this reader accepts for that object (manifest or ruleset).
        max: u64,
    },
    /// An S3 source with no credentials of its own asked the instance
    /// metadata service for them, and got none.
    #[error(
        "no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where instance metadata serves a role; for a public bucket use `anonymous=true`): the instance metadata service at {endpoint} gave none"
    )]
    NoCredentials {
        /// The metadata address asked.
        endpoint: String,
        /// object_store's error.
        #[source]
        source: object_store::Error,
    },
    /// The source URL or its settings are unusable.
    #[error("invalid source {url}: {reason}")]
    Config {
        /// The URL as given, with any credentials removed.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

/// An environment name no ruleset may have (longer than 64 characters), read
/// by [`Source::probe`] from HTTP origins.
const PROBE_ENV: &str = "flagbelt-probe-not-an-environment-name-because-it-is-far-too-long-x";

/// Largest manifest read (a real one is a few hundred bytes).
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

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
    kind: SourceKind,
    /// How it was named, when it was made from a URL.
    scheme: Option<Scheme>,
    /// The instance metadata address an S3 source with no credentials of its
    /// own asks for them: an error that names it is a credentials problem.
    metadata_endpoint: Option<String>,
}

impl Source {
    /// A source over an existing store (tests, `InMemory`, custom clients).
    pub fn new(
        label: impl Into<String>,
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        timeout: Duration,
    ) -> Self {
        Self::with_prefix(label.into(), store, Path::from(prefix), timeout)
    }

    fn with_prefix(
        label: String,
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        timeout: Duration,
    ) -> Self {
        Self {
            label,
            store,
            prefix,
            timeout,
            stats: Stats::default(),
            kind: SourceKind::Remote,
            scheme: None,
            metadata_endpoint: None,
        }
    }

    /// The same source, said to be of `kind` (a [`SourceKind::Remote`] by
    /// default).
    pub fn with_kind(mut self, kind: SourceKind) -> Self {
        self.kind = kind;
        self
    }

    fn with_scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = Some(scheme);
        self
    }

    /// What this source is.
    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// The URL scheme it was made from (`None` for a store given directly).
    pub fn scheme(&self) -> Option<Scheme> {
        self.scheme
    }

    /// The source's name in logs, metrics and status: scheme, bucket and prefix,
    /// never credentials or query parameters.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Where this source keeps `env`'s manifest, as a user would write it
    /// (`<label>/<env>/manifest.pb`; a cloud label's parenthesised account or
    /// endpoint stays at the end), for "not found" messages.
    pub fn manifest_location(&self, env: &str) -> String {
        let object = layout::env_object(env, layout::MANIFEST);
        let (base, rest) = match self.label.split_once(" (") {
            Some((base, rest)) => (base, format!(" ({rest}")),
            None => (self.label.as_str(), String::new()),
        };
        let base = base.strip_suffix('/').unwrap_or(base);
        format!("{base}/{object}{rest}")
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
        let path = self.path(env, layout::MANIFEST);
        let opts = GetOptions::new().with_if_none_match(if_none_match);
        let result = self
            .timed("manifest", async {
                let got = self.store.get_opts(&path, opts).await?;
                if got.meta.size > MAX_MANIFEST_BYTES {
                    return Ok(Err(got.meta.size));
                }
                let etag = got.meta.e_tag.clone();
                let bytes = got.bytes().await?;
                Ok(Ok((bytes, etag)))
            })
            .await
            .and_then(|r| r.map_err(|size| self.too_large(size, MAX_MANIFEST_BYTES)));
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
        self.get_ruleset_at_most(env, ruleset_path, u64::MAX).await
    }

    /// Reads `<env>/<ruleset_path>`, refusing before the download an object
    /// the store says is larger than `max` bytes (the manifest's signed
    /// `ruleset_size`): a broken or hostile origin cannot make an instance
    /// pull hundreds of megabytes per poll.
    pub async fn get_ruleset_at_most(
        &self,
        env: &str,
        ruleset_path: &str,
        max: u64,
    ) -> Result<Bytes, SourceError> {
        let path = self.path(env, ruleset_path);
        let result = self
            .timed("ruleset", async {
                let got = self.store.get_opts(&path, GetOptions::new()).await?;
                if got.meta.size > max {
                    return Ok(Err(got.meta.size));
                }
                got.bytes().await.map(Ok)
            })
            .await?;
        result.map_err(|size| self.too_large(size, max))
    }

    /// Counts a refused oversized object as an error of this source.
    fn too_large(&self, size: u64, max: u64) -> SourceError {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        SourceError::TooLarge { size, max }
    }

    /// Checks that the store answers as a healthy one does, for start-up
    /// reports. Object stores are asked to list the prefix (a missing bucket or
    /// container, bad credentials or an unreachable endpoint all fail it, while
    /// a missing object would not); plain HTTP origins, which cannot list, are
    /// asked for an object that cannot exist and must answer "not found".
    pub async fn probe(&self) -> Result<(), SourceError> {
        if self.scheme.is_some_and(Scheme::is_http) {
            return match self.get_manifest(PROBE_ENV, None).await {
                Ok(_) | Err(SourceError::NotFound) => Ok(()),
                Err(e) => Err(e),
            };
        }
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        match self
            .timed("probe", self.store.list_with_delimiter(prefix))
            .await
        {
            Ok(_) => Ok(()),
            Err(SourceError::NotFound) => Err(SourceError::Config {
                url: self.label.clone(),
                reason: "the bucket or container does not exist (listing it answered 404)"
                    .to_owned(),
            }),
            Err(e) => Err(e),
        }
    }

    /// How many environment folders (`<prefix>/<env>/`) the store lists, for
    /// the start-up warning "this source holds no environments". `None` when
    /// it cannot say: a plain HTTP origin cannot list, and a failed listing is
    /// the probe's to report.
    pub async fn environment_count(&self) -> Option<usize> {
        if self.scheme.is_some_and(Scheme::is_http) {
            return None;
        }
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        self.timed("probe", self.store.list_with_delimiter(prefix))
            .await
            .ok()
            .map(|list| list.common_prefixes.len())
    }

    /// Size and ETag of `<env>/<relative>`, without its bytes (a HEAD request).
    pub async fn head(&self, env: &str, relative: &str) -> Result<ObjectMeta, SourceError> {
        let path = self.path(env, relative);
        self.timed("head", async {
            Ok(self
                .store
                .get_opts(&path, GetOptions::new().with_head(true))
                .await?
                .meta)
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
        let last_error = lock(&self.stats.last_error).clone();
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

    /// A store's error, as a credentials problem when it is the instance
    /// metadata service failing an S3 source that has no credentials of its
    /// own (object_store reports that as a raw request error).
    fn store_error(&self, e: object_store::Error) -> SourceError {
        match &self.metadata_endpoint {
            Some(endpoint) if error_chain(&e).contains(endpoint.as_str()) => {
                SourceError::NoCredentials {
                    endpoint: endpoint.clone(),
                    source: e,
                }
            }
            _ => SourceError::Store(e),
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
            Ok(Err(e)) => Err(self.store_error(e)),
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
                let message = error_chain(e);
                *lock(&self.stats.last_error) = Some((now_ms(), message));
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

#[cfg(test)]
mod tests {
    use ::url::Url;

    use super::url::tests::opts;
    use super::*;

    #[tokio::test]
    async fn oversized_objects_are_refused_before_the_download() {
        let store = Arc::new(object_store::memory::InMemory::new());
        let source = Source::new("mem", store.clone(), "p", Duration::from_secs(1));
        use object_store::ObjectStoreExt as _;
        store
            .put(
                &source.path("e", &layout::ruleset_path(1)),
                vec![7u8; 100].into(),
            )
            .await
            .unwrap();
        let err = source
            .get_ruleset_at_most("e", &layout::ruleset_path(1), 99)
            .await
            .unwrap_err();
        assert!(
            matches!(err, SourceError::TooLarge { size: 100, max: 99 }),
            "{err}"
        );
        assert_eq!(source.health().errors, 1);
        let ok = source
            .get_ruleset_at_most("e", &layout::ruleset_path(1), 100)
            .await
            .unwrap();
        assert_eq!(ok.len(), 100);
        store
            .put(
                &source.path("e", layout::MANIFEST),
                vec![0u8; usize::try_from(MAX_MANIFEST_BYTES).unwrap() + 1].into(),
            )
            .await
            .unwrap();
        assert!(matches!(
            source.get_manifest("e", None).await,
            Err(SourceError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn a_dead_origin_fails_fast_and_a_silent_one_hits_the_deadline() {
        // Closed port: connection refused, retried briefly, then an error.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let s = Source::from_url(&format!("http://127.0.0.1:{port}/flags"), &opts()).unwrap();
        let start = Instant::now();
        let err = s.get_manifest("prod", None).await.unwrap_err();
        assert!(matches!(err, SourceError::Store(_)), "{err:?}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );

        // A listener that never answers: the source's own deadline ends it.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let s = Source::from_url(&format!("http://127.0.0.1:{port}"), &opts()).unwrap();
        let start = Instant::now();
        let err = s.get_manifest("prod", None).await.unwrap_err();
        assert!(
            matches!(err, SourceError::Timeout(_) | SourceError::Store(_)),
            "{err:?}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(s.health().ok, 0);
        drop(silent);
    }

    #[tokio::test]
    async fn http_user_information_becomes_basic_auth() {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            conn.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .unwrap();
            String::from_utf8(head).unwrap()
        });
        let url = format!("http://alice:s3cr3t%2Fx@127.0.0.1:{port}/base");
        let s = Source::from_url(&url, &opts()).unwrap();
        assert_eq!(s.label(), format!("http://127.0.0.1:{port}/base"));
        let got = s.get_manifest("prod", None).await;
        assert!(matches!(got, Err(SourceError::NotFound)), "{got:?}");
        let head = server.join().unwrap().to_ascii_lowercase();
        assert!(
            head.starts_with("get /base/prod/manifest.pb http/1.1\r\n"),
            "{head}"
        );
        // base64("alice:s3cr3t/x")
        assert!(
            head.contains("authorization: basic ywxpy2u6cznjcjn0l3g=\r\n"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn file_sources_read_write_and_revalidate() {
        let dir = tempfile::tempdir().unwrap();
        let url = Url::from_directory_path(dir.path()).unwrap().to_string();
        let s = Source::from_url(&format!("{url}edge"), &opts());
        // The prefix folder itself must exist.
        assert!(matches!(s, Err(SourceError::Config { .. })));
        let s = Source::from_url(&url, &opts()).unwrap();
        assert!(matches!(
            s.get_manifest("prod", None).await,
            Err(SourceError::NotFound)
        ));
        s.put("prod", layout::MANIFEST, Bytes::from_static(b"m1"))
            .await
            .unwrap();
        let Fetched::Object { bytes, etag } = s.get_manifest("prod", None).await.unwrap() else {
            panic!("expected an object");
        };
        assert_eq!(&bytes[..], b"m1");
        assert!(matches!(
            s.get_manifest("prod", etag.as_deref()).await.unwrap(),
            Fetched::NotModified
        ));
        assert!(layout::manifest_file(&layout::env_dir(dir.path(), "prod")).is_file());
    }
}
