//! Source URLs and settings: which stores a URL names, and the
//! object_store client built for it.
//!
//! Owns the accepted schemes ([`Scheme`]), their query parameters, one
//! builder per store (S3, GCS, Azure Blob, HTTP origin, local folder) with
//! second-scale timeouts and retries, and the redaction of URLs for labels and
//! errors (the cloud builders live in the child module `cloud`). Must not:
//! do any I/O beyond checking that a `file://` folder exists, or let
//! credentials reach a label or an error message.

use std::sync::Arc;
use std::time::Duration;

use object_store::http::HttpBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientConfigKey, ClientOptions, ObjectStore, RetryConfig};
use url::Url;

mod cloud;

use self::cloud::{azure, gcs, s3};
use super::{Source, SourceError};
use crate::util::{error_chain, percent_decode};

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

/// A URL scheme a source may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `s3://bucket[/prefix]`: Amazon S3 or an S3-compatible server.
    S3,
    /// `gs://bucket[/prefix]`: Google Cloud Storage.
    Gcs,
    /// `az://container[/prefix]`: Azure Blob Storage.
    Azure,
    /// `http://host[:port][/path]`: a plain HTTP origin.
    Http,
    /// `https://host[:port][/path]`: an HTTPS origin.
    Https,
    /// `file:///abs/path`: a local folder.
    File,
}

impl Scheme {
    /// The scheme of a URL, if sources accept it.
    pub fn parse(scheme: &str) -> Option<Self> {
        Some(match scheme {
            "s3" => Self::S3,
            "gs" => Self::Gcs,
            "az" => Self::Azure,
            "http" => Self::Http,
            "https" => Self::Https,
            "file" => Self::File,
            _ => return None,
        })
    }

    /// The scheme as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::S3 => "s3",
            Self::Gcs => "gs",
            Self::Azure => "az",
            Self::Http => "http",
            Self::Https => "https",
            Self::File => "file",
        }
    }

    /// An HTTP origin: it cannot list, and `user:password@` is Basic auth.
    pub fn is_http(self) -> bool {
        matches!(self, Self::Http | Self::Https)
    }

    /// The query parameters a URL of this scheme may carry.
    fn params(self) -> &'static [&'static str] {
        match self {
            Self::S3 => &[
                "endpoint",
                "region",
                "allow_http",
                "virtual_hosted",
                "anonymous",
            ],
            Self::Gcs => &["endpoint", "allow_http", "anonymous"],
            Self::Azure => &["account", "endpoint", "emulator", "allow_http", "anonymous"],
            Self::Http | Self::Https | Self::File => &[],
        }
    }
}

impl Source {
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
            reason: match file_url_hint(url) {
                Some(hint) => format!("not a URL ({e}); did you mean `{hint}`?"),
                None => format!("not a URL ({e})"),
            },
        })?;
        let shown = redact(&parsed);
        let fail = |reason: String| SourceError::Config {
            url: shown.clone(),
            reason,
        };
        if parsed.fragment().is_some() {
            return Err(fail("a #fragment is not allowed".into()));
        }
        let Some(scheme) = Scheme::parse(parsed.scheme()) else {
            return Err(fail(format!(
                "unknown scheme {:?}: use s3://, gs://, az://, http(s):// or file://",
                parsed.scheme()
            )));
        };
        let params = Params::parse(&parsed, scheme.params()).map_err(&fail)?;
        if !scheme.is_http() && (!parsed.username().is_empty() || parsed.password().is_some()) {
            return Err(fail(format!(
                "credentials do not belong in a {}:// URL; they come from the environment",
                scheme.as_str()
            )));
        }
        let mut metadata = None;
        let built = match scheme {
            Scheme::S3 => s3(&parsed, &params, opts).map(|(built, endpoint)| {
                metadata = endpoint;
                built
            }),
            Scheme::Gcs => gcs(&parsed, &params, opts),
            Scheme::Azure => azure(&parsed, &params, opts),
            Scheme::Http | Scheme::Https => http(&parsed, opts),
            Scheme::File => file(&parsed),
        };
        let (label, store, prefix) = built.map_err(&fail)?;
        let mut source = Self::with_prefix(label, store, prefix, opts.timeout).with_scheme(scheme);
        source.metadata_endpoint = metadata;
        Ok(source)
    }
}

/// Parses every URL into a [`Source`] (see [`Source::from_url`]), in order.
/// Two URLs with the same [`Source::label`] are an error: the same store listed
/// twice would count twice in failover and publishing.
pub fn parse_sources(urls: &[String], opts: &SourceOptions) -> Result<Vec<Source>, SourceError> {
    let mut out: Vec<Source> = Vec::with_capacity(urls.len());
    for url in urls {
        // Checked as each one is added: the first problem in the order given
        // is the one reported.
        let source = Source::from_url(url, opts)?;
        if out.iter().any(|s| s.label == source.label) {
            return Err(listed_twice(&source));
        }
        out.push(source);
    }
    Ok(out)
}

/// The error for a store given twice (the same [`Source::label`]): it would
/// count twice in failover and publishing, and fake a second copy.
pub(crate) fn listed_twice(source: &Source) -> SourceError {
    SourceError::Config {
        url: source.label.clone(),
        reason: "listed twice".into(),
    }
}

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

/// What every cloud scheme reads the same way: bucket (or container) from
/// the host, prefix from the path, the label, and the shared parameters.
struct Cloud {
    bucket: String,
    prefix: Path,
    label: String,
    allow_http: Option<bool>,
    anonymous: bool,
    /// Client timeouts as object_store config values.
    timeouts: [(ClientConfigKey, String); 2],
}

impl Cloud {
    fn parse(
        scheme: Scheme,
        url: &Url,
        params: &Params,
        opts: &SourceOptions,
    ) -> Result<Self, String> {
        let bucket = match url.host_str() {
            Some(h) if !h.is_empty() => h.to_owned(),
            _ => {
                let what = if scheme == Scheme::Azure {
                    "container"
                } else {
                    "bucket"
                };
                let scheme = scheme.as_str();
                return Err(format!("missing {what} name ({scheme}://{what}/prefix)"));
            }
        };
        if url.port().is_some() {
            return Err("a bucket has no port: point endpoint= at the server instead".into());
        }
        let prefix = prefix_of(url)?;
        let label = cloud_label(
            label_of(&format!("{}://{bucket}", scheme.as_str()), &prefix),
            params,
        );
        Ok(Self {
            allow_http: params.flag("allow_http")?,
            anonymous: params.flag("anonymous")?.unwrap_or(false),
            timeouts: [
                (ClientConfigKey::Timeout, millis(opts.timeout)),
                (
                    ClientConfigKey::ConnectTimeout,
                    millis(opts.connect_timeout),
                ),
            ],
            bucket,
            prefix,
            label,
        })
    }

    fn built(self, store: Arc<dyn ObjectStore>) -> Built {
        (self.label, store, self.prefix)
    }
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
        let decode =
            |s: &str| percent_decode(s).ok_or_else(|| "user information is not UTF-8".to_owned());
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

/// The `file://` URL a local path given where a URL is wanted stands for
/// (`/srv/flags` -> `file:///srv/flags`; a relative path is made absolute
/// against the current folder), or `None` when the text does not look like a
/// path (it has a scheme, or is empty).
fn file_url_hint(text: &str) -> Option<String> {
    if text.is_empty() || text.contains("://") {
        return None;
    }
    let abs = std::path::absolute(text).ok()?;
    Url::from_file_path(&abs).ok().map(String::from)
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
pub(super) mod tests {
    use super::*;

    pub(crate) fn opts() -> SourceOptions {
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
}
