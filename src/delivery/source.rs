//! One storage source: an object store plus a prefix, read with deadlines.
//!
//! Owns the I/O against one store (`s3://`, `gs://`, `az://`, `http(s)://`,
//! `file://`): URL parsing into an object_store client with second-scale
//! timeouts and retries, conditional manifest reads, ruleset reads, uploads, and
//! per-source health counters and metrics. It must not decide anything about
//! versions or verification (that is `failover`), and never logs credentials: a
//! source is known by its [`Source::label`], which has no secrets.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::http::HttpBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientConfigKey, ClientOptions, GetOptions, ObjectMeta, ObjectStore, PutPayload,
    RetryConfig,
};
use url::Url;

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
    /// The store says the object is larger than it may be (checked before
    /// the download).
    #[error("object of {size} bytes is larger than the {max} allowed")]
    TooLarge {
        /// Size the store reported.
        size: u64,
        /// The limit.
        max: u64,
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
        }
    }

    /// A source from its URL, with `opts` as every request's timeouts and
    /// retries and as the deadline of each operation.
    ///
    /// | URL | store | query parameters |
    /// |---|---|---|
    /// | `s3://bucket[/prefix]` | S3 (credentials, region etc. from the standard `AWS_*` environment) | `endpoint`, `region`, `allow_http`, `virtual_hosted`, `anonymous` |
    /// | `gs://bucket[/prefix]` | GCS (credentials from `GOOGLE_*` / application default credentials) | `endpoint`, `allow_http`, `anonymous` |
    /// | `az://container[/prefix]` | Azure Blob (credentials from `AZURE_*`) | `account`, `endpoint`, `emulator`, `allow_http`, `anonymous` |
    /// | `http(s)://host[:port][/path]` | any HTTP origin (static host, public bucket, WebDAV); `user:password@` becomes Basic auth | none |
    /// | `file:///abs/path` | a local folder, which must exist | none |
    ///
    /// `endpoint` points a cloud scheme at another server (an emulator, MinIO, R2's
    /// S3 API); an `http://` endpoint also needs `allow_http=true`. S3 uses path-style
    /// requests unless `virtual_hosted=true`. `anonymous=true` sends unsigned
    /// requests (public buckets). `emulator=true` talks to Azurite with its well-known
    /// account and key, at `endpoint` if given (else object_store's default,
    /// `http://127.0.0.1:10000`). Boolean parameters take `true` or `false`.
    ///
    /// Credentials never go in the URL of a cloud scheme (they come from the
    /// environment), and the [`Source::label`] never shows a query string or
    /// user information (a cloud label adds the `account` and the endpoint's
    /// host and port, which tell stores apart). Any unknown or repeated parameter, a missing bucket, a
    /// port on a bucket, or a missing folder is a [`SourceError::Config`] that names
    /// the URL (without credentials) and what is wrong.
    pub fn from_url(url: &str, opts: &SourceOptions) -> Result<Source, SourceError> {
        let parsed = Url::parse(url).map_err(|e| SourceError::Config {
            url: redact_unparsed(url),
            reason: format!("not a URL ({e})"),
        })?;
        let shown = redact(&parsed);
        let fail = |reason: String| SourceError::Config {
            url: shown.clone(),
            reason,
        };
        if parsed.fragment().is_some() {
            return Err(fail("a #fragment is not allowed".into()));
        }
        let scheme = parsed.scheme();
        let allowed: &[&str] = match scheme {
            "s3" => S3_PARAMS,
            "gs" => GS_PARAMS,
            "az" => AZ_PARAMS,
            "http" | "https" | "file" => &[],
            other => {
                return Err(fail(format!(
                    "unknown scheme {other:?}: use s3://, gs://, az://, http(s):// or file://"
                )));
            }
        };
        let params = Params::parse(&parsed, allowed).map_err(&fail)?;
        if !matches!(scheme, "http" | "https")
            && (!parsed.username().is_empty() || parsed.password().is_some())
        {
            return Err(fail(format!(
                "credentials do not belong in a {scheme}:// URL; they come from the environment"
            )));
        }
        let built = match scheme {
            "s3" | "gs" | "az" => cloud(scheme, &parsed, &params, opts),
            "http" | "https" => http(&parsed, opts),
            _ => file(&parsed),
        };
        let (label, store, prefix) = built.map_err(&fail)?;
        Ok(Self::with_prefix(label, store, prefix, opts.timeout))
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
        if self.label.starts_with("http://") || self.label.starts_with("https://") {
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
///
/// A cause whose text the line already holds is left out: object_store's
/// errors print their own causes, and repeating them buries the message.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// Parses every URL into a [`Source`] (see [`Source::from_url`]), in order.
/// Two URLs with the same [`Source::label`] are an error: the same store listed
/// twice would count twice in failover and publishing.
pub fn parse_sources(urls: &[String], opts: &SourceOptions) -> Result<Vec<Source>, SourceError> {
    let mut out: Vec<Source> = Vec::with_capacity(urls.len());
    for url in urls {
        let source = Source::from_url(url, opts)?;
        if out.iter().any(|s| s.label == source.label) {
            return Err(SourceError::Config {
                url: source.label,
                reason: "listed twice".into(),
            });
        }
        out.push(source);
    }
    Ok(out)
}

const S3_PARAMS: &[&str] = &[
    "endpoint",
    "region",
    "allow_http",
    "virtual_hosted",
    "anonymous",
];
const GS_PARAMS: &[&str] = &["endpoint", "allow_http", "anonymous"];
const AZ_PARAMS: &[&str] = &["account", "endpoint", "emulator", "allow_http", "anonymous"];

/// Azurite's well-known development account and key (published by Microsoft,
/// not a secret); the same values object_store uses for `use_emulator`.
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A source's query parameters, checked against the scheme's allowed set.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(url: &Url, allowed: &[&str]) -> Result<Self, String> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (key, value) in url.query_pairs() {
            if !allowed.contains(&key.as_ref()) {
                // Only the name is echoed: a value could be a token.
                return Err(if allowed.is_empty() {
                    format!(
                        "unknown parameter {key:?}: {}:// sources take no query parameters",
                        url.scheme()
                    )
                } else {
                    format!(
                        "unknown parameter {key:?} (allowed: {})",
                        allowed.join(", ")
                    )
                });
            }
            if out.iter().any(|(k, _)| *k == key) {
                return Err(format!("parameter {key:?} is given twice"));
            }
            out.push((key.into_owned(), value.into_owned()));
        }
        Ok(Self(out))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean parameter: `None` when absent.
    fn flag(&self, key: &str) -> Result<Option<bool>, String> {
        match self.get(key) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(format!("{key} must be true or false, not {other:?}")),
        }
    }

    /// `endpoint`, checked: an http(s) URL, plain http only with `allow_http=true`
    /// (or when the caller forces it, as for Azurite). Trailing slashes removed.
    fn endpoint(&self, http_allowed: bool) -> Result<Option<String>, String> {
        let Some(text) = self.get("endpoint") else {
            return Ok(None);
        };
        let url = Url::parse(text).map_err(|e| format!("endpoint is not a URL ({e})"))?;
        match url.scheme() {
            "https" => {}
            "http" if http_allowed => {}
            "http" => {
                return Err("endpoint is plain http://: add allow_http=true to allow it".into());
            }
            _ => return Err("endpoint must be an http:// or https:// URL".into()),
        }
        if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err("endpoint must not carry credentials or a query string".into());
        }
        Ok(Some(text.trim_end_matches('/').to_owned()))
    }
}

type Built = (String, Arc<dyn ObjectStore>, Path);

/// `s3://`, `gs://`, `az://`: bucket (or container) from the host, prefix from
/// the path, everything else from the environment and the parameters.
fn cloud(scheme: &str, url: &Url, params: &Params, opts: &SourceOptions) -> Result<Built, String> {
    let bucket = match url.host_str() {
        Some(h) if !h.is_empty() => h.to_owned(),
        _ => {
            let what = if scheme == "az" {
                "container"
            } else {
                "bucket"
            };
            return Err(format!("missing {what} name ({scheme}://{what}/prefix)"));
        }
    };
    if url.port().is_some() {
        return Err("a bucket has no port: point endpoint= at the server instead".into());
    }
    let prefix = prefix_of(url)?;
    let label = cloud_label(label_of(&format!("{scheme}://{bucket}"), &prefix), params);
    let allow_http = params.flag("allow_http")?;
    let anonymous = params.flag("anonymous")?.unwrap_or(false);
    let timeouts = [
        (ClientConfigKey::Timeout, millis(opts.timeout)),
        (
            ClientConfigKey::ConnectTimeout,
            millis(opts.connect_timeout),
        ),
    ];
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" => {
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(&bucket)
                .with_retry(retry_config(opts))
                .with_virtual_hosted_style_request(params.flag("virtual_hosted")?.unwrap_or(false))
                .with_skip_signature(anonymous);
            for (key, value) in timeouts {
                b = b.with_config(AmazonS3ConfigKey::Client(key), value);
            }
            if let Some(allow) = allow_http {
                b = b.with_allow_http(allow);
            }
            if let Some(endpoint) = params.endpoint(allow_http == Some(true))? {
                b = b.with_endpoint(endpoint);
            }
            if let Some(region) = params.get("region") {
                b = b.with_region(region);
            }
            Arc::new(b.build().map_err(|e| error_chain(&e))?)
        }
        "gs" => {
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(&bucket)
                .with_retry(retry_config(opts))
                .with_skip_signature(anonymous);
            for (key, value) in timeouts {
                b = b.with_config(GoogleConfigKey::Client(key), value);
            }
            if let Some(allow) = allow_http {
                b = b.with_config(
                    GoogleConfigKey::Client(ClientConfigKey::AllowHttp),
                    allow.to_string(),
                );
            }
            if let Some(endpoint) = params.endpoint(allow_http == Some(true))? {
                b = b.with_base_url(&endpoint);
            }
            Arc::new(b.build().map_err(|e| error_chain(&e))?)
        }
        _ => {
            let emulator = params.flag("emulator")?.unwrap_or(false);
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_container_name(&bucket)
                .with_retry(retry_config(opts))
                .with_skip_signature(anonymous);
            for (key, value) in timeouts {
                b = b.with_config(AzureConfigKey::Client(key), value);
            }
            if let Some(allow) = allow_http {
                b = b.with_allow_http(allow);
            }
            let account = params.get("account");
            // Azurite always speaks plain http; object_store forces it too.
            let endpoint = params.endpoint(emulator || allow_http == Some(true))?;
            match (emulator, endpoint) {
                (true, Some(endpoint)) => {
                    // object_store's own emulator mode takes its address only from
                    // an environment variable; with an explicit endpoint, set up
                    // exactly what it would: the account in the path, its key,
                    // plain http.
                    let account = account.unwrap_or(AZURITE_ACCOUNT);
                    b = b
                        .with_use_emulator(false)
                        .with_account(account)
                        .with_endpoint(format!("{endpoint}/{account}"))
                        .with_access_key(AZURITE_KEY)
                        .with_allow_http(true);
                }
                (true, None) => {
                    b = b.with_use_emulator(true);
                    if let Some(account) = account {
                        b = b.with_account(account);
                    }
                }
                (false, endpoint) => {
                    if let Some(account) = account {
                        b = b.with_account(account);
                    }
                    if let Some(endpoint) = endpoint {
                        b = b.with_endpoint(endpoint);
                    }
                }
            }
            Arc::new(b.build().map_err(|e| error_chain(&e))?)
        }
    };
    Ok((label, store, prefix))
}

/// `http(s)://host[:port][/path]`: the store is rooted at the origin and the
/// path is the prefix; `user:password@` becomes a Basic `Authorization` header
/// (marked sensitive, so it is never logged).
fn http(url: &Url, opts: &SourceOptions) -> Result<Built, String> {
    let Some(host) = url.host_str() else {
        return Err("missing host".into());
    };
    let prefix = prefix_of(url)?;
    let mut origin = format!("{}://{host}", url.scheme());
    if let Some(port) = url.port() {
        origin.push_str(&format!(":{port}"));
    }
    let label = label_of(&origin, &prefix);
    let mut client = ClientOptions::new()
        .with_timeout(opts.timeout)
        .with_connect_timeout(opts.connect_timeout)
        // The scheme says it: http:// is an explicit choice.
        .with_allow_http(url.scheme() == "http");
    if !url.username().is_empty() || url.password().is_some() {
        use base64::Engine as _;
        let decode = |s: &str| {
            percent_encoding_decode(s).ok_or_else(|| "user information is not UTF-8".to_owned())
        };
        let user = decode(url.username())?;
        let password = decode(url.password().unwrap_or(""))?;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut value = object_store::HeaderValue::from_str(&format!("Basic {token}"))
            .map_err(|_| "user information cannot be sent as a header".to_owned())?;
        value.set_sensitive(true);
        let mut headers = object_store::HeaderMap::new();
        headers.insert("authorization", value);
        client = client.with_default_headers(headers);
    }
    let store = HttpBuilder::new()
        .with_url(format!("{origin}/"))
        .with_client_options(client)
        .with_retry(retry_config(opts))
        .build()
        .map_err(|e| error_chain(&e))?;
    Ok((label, Arc::new(store), prefix))
}

/// `file:///abs/path`: an existing local folder; writes are fsynced (publishing
/// to a folder should survive a crash like any other store).
fn file(url: &Url) -> Result<Built, String> {
    if url
        .host_str()
        .is_some_and(|h| !h.is_empty() && h != "localhost")
    {
        return Err("a file:// URL names a local folder: file:///abs/path".into());
    }
    let dir = url
        .to_file_path()
        .map_err(|()| "a file:// URL needs an absolute local path: file:///abs/path".to_owned())?;
    if !dir.is_dir() {
        return Err(if dir.exists() {
            format!("{} is not a folder", dir.display())
        } else {
            format!("folder {} does not exist", dir.display())
        });
    }
    let store = LocalFileSystem::new_with_prefix(&dir)
        .map_err(|e| error_chain(&e))?
        .with_fsync(true);
    let shown = dir.display().to_string();
    let shown = shown.trim_end_matches('/');
    let label = format!("file://{}", if shown.is_empty() { "/" } else { shown });
    Ok((label, Arc::new(store), Path::default()))
}

/// The URL's path as an object prefix (percent-decoded, no empty segments).
fn prefix_of(url: &Url) -> Result<Path, String> {
    Path::from_url_path(url.path()).map_err(|e| format!("bad prefix: {e}"))
}

/// A cloud label names what tells two stores apart besides the bucket and
/// prefix: the Azure `account` and the `endpoint`'s host and port (never its
/// path, user information or the other parameters). Two sources differing
/// only there are then two sources, in the duplicate check and in metrics.
fn cloud_label(mut label: String, params: &Params) -> String {
    if let Some(account) = params.get("account") {
        label.push_str(&format!(" (account {account})"));
    }
    if let Some(endpoint) = params.get("endpoint").and_then(|e| Url::parse(e).ok())
        && let Some(host) = endpoint.host_str()
    {
        match endpoint.port() {
            Some(port) => label.push_str(&format!(" (endpoint {host}:{port})")),
            None => label.push_str(&format!(" (endpoint {host})")),
        }
    }
    label
}

fn label_of(base: &str, prefix: &Path) -> String {
    if prefix.as_ref().is_empty() {
        base.to_owned()
    } else {
        format!("{base}/{prefix}")
    }
}

fn percent_encoding_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// A duration as object_store's config text.
fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// Retries bounded by the operation deadline, with backoff in tens of
/// milliseconds: a dead store must cost seconds, not object_store's minutes.
fn retry_config(opts: &SourceOptions) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(300),
            base: 2.0,
        },
        max_retries: opts.max_retries,
        retry_timeout: opts.timeout,
    }
}

/// A parsed URL as it may be shown: no user information, query or fragment.
fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    // Both fail only for URLs that cannot have credentials (cannot-be-a-base).
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Best-effort redaction of text that did not parse as a URL: drops anything
/// after `?` or `#`, and a `user:password@` before the host.
fn redact_unparsed(text: &str) -> String {
    let end = text.find(['?', '#']).unwrap_or(text.len());
    let text = &text[..end];
    if let Some(start) = text.find("://").map(|i| i + 3) {
        let authority_end = text[start..].find('/').map_or(text.len(), |i| start + i);
        if let Some(at) = text[start..authority_end].rfind('@') {
            return format!("{}{}", &text[..start], &text[start + at + 1..]);
        }
    }
    text.to_owned()
}

#[cfg(test)]
mod tests {

    #[tokio::test]
    async fn oversized_objects_are_refused_before_the_download() {
        let store = Arc::new(object_store::memory::InMemory::new());
        let source = Source::new("mem", store.clone(), "p", Duration::from_secs(1));
        use object_store::ObjectStoreExt as _;
        store
            .put(&source.path("e", "rulesets/1.pb"), vec![7u8; 100].into())
            .await
            .unwrap();
        let err = source
            .get_ruleset_at_most("e", "rulesets/1.pb", 99)
            .await
            .unwrap_err();
        assert!(
            matches!(err, SourceError::TooLarge { size: 100, max: 99 }),
            "{err}"
        );
        assert_eq!(source.health().errors, 1);
        let ok = source
            .get_ruleset_at_most("e", "rulesets/1.pb", 100)
            .await
            .unwrap();
        assert_eq!(ok.len(), 100);
        store
            .put(
                &source.path("e", "manifest.pb"),
                vec![0u8; usize::try_from(MAX_MANIFEST_BYTES).unwrap() + 1].into(),
            )
            .await
            .unwrap();
        assert!(matches!(
            source.get_manifest("e", None).await,
            Err(SourceError::TooLarge { .. })
        ));
    }

    use super::*;

    fn opts() -> SourceOptions {
        SourceOptions {
            timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(200),
            max_retries: 1,
        }
    }

    fn label(url: &str) -> String {
        match Source::from_url(url, &opts()) {
            Ok(s) => s.label().to_owned(),
            Err(e) => panic!("{url}: {}", error_chain(&e)),
        }
    }

    /// The redacted URL and the reason of a rejected URL.
    fn rejected(url: &str) -> (String, String) {
        match Source::from_url(url, &opts()) {
            Ok(s) => panic!("{url} was accepted as {}", s.label()),
            Err(SourceError::Config { url, reason }) => (url, reason),
            Err(e) => panic!("{url}: not a config error: {e}"),
        }
    }

    #[test]
    fn good_urls_and_their_labels() {
        assert_eq!(label("s3://flags"), "s3://flags");
        assert_eq!(label("s3://flags/"), "s3://flags");
        assert_eq!(
            label(
                "s3://flags/team/prod/?endpoint=http://127.0.0.1:9000/&allow_http=true&region=eu-west-1&virtual_hosted=false&anonymous=true"
            ),
            "s3://flags/team/prod (endpoint 127.0.0.1:9000)"
        );
        assert_eq!(
            label("gs://flags/edge?endpoint=http://127.0.0.1:4443&allow_http=true&anonymous=true"),
            "gs://flags/edge (endpoint 127.0.0.1:4443)"
        );
        assert_eq!(
            label("az://flags/p?emulator=true&endpoint=http://127.0.0.1:10000"),
            "az://flags/p (endpoint 127.0.0.1:10000)"
        );
        assert_eq!(label("az://flags?emulator=true"), "az://flags");
        assert_eq!(
            label("https://cdn.example.com/flags/"),
            "https://cdn.example.com/flags"
        );
        assert_eq!(label("http://127.0.0.1:8088"), "http://127.0.0.1:8088");
        let dir = tempfile::tempdir().unwrap();
        let canonical = dir.path().canonicalize().unwrap();
        let url = Url::from_directory_path(&canonical).unwrap().to_string();
        assert_eq!(label(&url), format!("file://{}", canonical.display()));
    }

    #[test]
    fn labels_never_show_credentials_or_parameters() {
        let l = label("https://reader:s3cr3t@cdn.example.com/flags?");
        assert_eq!(l, "https://cdn.example.com/flags");
        // Credentials in a cloud URL are refused, and the error does not echo them.
        let (url, reason) = rejected("s3://AKIAXX:s3cr3t@flags/p");
        assert!(
            !url.contains("s3cr3t") && !reason.contains("s3cr3t"),
            "{url} {reason}"
        );
        assert!(reason.contains("environment"), "{reason}");
        // Neither does an unknown parameter's value (a pasted SAS token, say).
        let (url, reason) = rejected("az://flags?sig=s3cr3t");
        assert!(
            !url.contains("s3cr3t") && !reason.contains("s3cr3t"),
            "{url} {reason}"
        );
        // Nor text that is not a URL at all.
        let (url, _) = rejected("https://u:s3cr3t@exa mple.com/x?token=s3cr3t");
        assert_eq!(url, "https://exa mple.com/x");
    }

    #[test]
    fn unknown_parameters_are_errors_that_list_the_allowed_ones() {
        let (url, reason) = rejected("s3://flags/p?endpoint=https://s3.example.com&colour=blue");
        assert_eq!(url, "s3://flags/p");
        assert_eq!(
            reason,
            "unknown parameter \"colour\" (allowed: endpoint, region, allow_http, virtual_hosted, anonymous)"
        );
        let (_, reason) = rejected("gs://flags?region=eu");
        assert!(
            reason.contains("allowed: endpoint, allow_http, anonymous"),
            "{reason}"
        );
        let (_, reason) = rejected("az://flags?virtual_hosted=true");
        assert!(
            reason.contains("account, endpoint, emulator, allow_http, anonymous"),
            "{reason}"
        );
        let (_, reason) = rejected("https://cdn.example.com/flags?v=1");
        assert!(reason.contains("take no query parameters"), "{reason}");
        let (_, reason) = rejected("s3://flags?region=a&region=b");
        assert!(reason.contains("given twice"), "{reason}");
        let (_, reason) = rejected("s3://flags?anonymous=yes");
        assert_eq!(reason, "anonymous must be true or false, not \"yes\"");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, wanted) in [
            ("s3://", "missing bucket name"),
            ("s3:///prefix", "missing bucket name"),
            ("gs:///p", "missing bucket name"),
            ("az:///p?emulator=true", "missing container name"),
            ("s3://flags:9000/p", "no port"),
            ("ftp://example.com/x", "unknown scheme \"ftp\""),
            ("flags/prod", "not a URL"),
            ("s3://flags/a//b", "bad prefix"),
            ("s3://flags#x", "fragment"),
            (
                "s3://flags?endpoint=http://127.0.0.1:9000",
                "allow_http=true",
            ),
            (
                "s3://flags?endpoint=ftp://x&allow_http=true",
                "http:// or https://",
            ),
            ("s3://flags?endpoint=not%20a%20url", "endpoint is not a URL"),
            ("file://server/share", "local folder"),
        ] {
            let (_, reason) = rejected(url);
            assert!(reason.contains(wanted), "{url}: {reason}");
        }
        let (url, reason) = rejected("file:///no/such/flagbelt/folder");
        assert_eq!(url, "file:///no/such/flagbelt/folder");
        assert_eq!(reason, "folder /no/such/flagbelt/folder does not exist");
        let e = Source::from_url("s3://flags?x=1", &opts()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid source s3://flags: unknown parameter \"x\""),
            "{e}"
        );
    }

    #[test]
    fn parse_sources_keeps_order_and_refuses_duplicates() {
        let urls = ["s3://a/p".to_owned(), "gs://b?anonymous=true".to_owned()];
        let sources = parse_sources(&urls, &opts()).unwrap();
        let labels: Vec<&str> = sources.iter().map(Source::label).collect();
        assert_eq!(labels, ["s3://a/p", "gs://b"]);
        let urls = [
            "s3://a/p".to_owned(),
            "s3://a/p/?region=eu-west-1".to_owned(),
        ];
        let err = parse_sources(&urls, &opts()).unwrap_err();
        assert_eq!(err.to_string(), "invalid source s3://a/p: listed twice");
        // One container name in two Azure accounts, one bucket name behind two
        // endpoints: two stores, with two labels.
        let urls = [
            "az://flags/p?account=east".to_owned(),
            "az://flags/p?account=west".to_owned(),
            "s3://b?endpoint=https://minio-a.internal:9000".to_owned(),
            "s3://b?endpoint=https://minio-b.internal".to_owned(),
        ];
        let sources = parse_sources(&urls, &opts()).unwrap();
        let labels: Vec<&str> = sources.iter().map(Source::label).collect();
        assert_eq!(
            labels,
            [
                "az://flags/p (account east)",
                "az://flags/p (account west)",
                "s3://b (endpoint minio-a.internal:9000)",
                "s3://b (endpoint minio-b.internal)",
            ]
        );
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
        s.put("prod", "manifest.pb", Bytes::from_static(b"m1"))
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
        assert!(dir.path().join("prod/manifest.pb").is_file());
    }
}
