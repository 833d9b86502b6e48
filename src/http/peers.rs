//! Reload fan-out: resolving the peer name and calling every peer's
//! `POST /admin/v1/reload`.
//!
//! Owns whether a reload fans out ([`wanted`]: not when it was itself
//! forwarded, `Flagbelt-Forwarded: 1`, nor with `?fanout=false`), resolving
//! the `--peers` name on every fan-out (the DNS answer *is* the peer set:
//! peers come and go behind a headless service or a Consul name, so nothing
//! is cached here), calling every distinct address concurrently with bounded
//! time and concurrency, and the `peers` part of the reload report.
//!
//! Failure policy: a peer that cannot be resolved, reached or reloaded is
//! reported, never an error of the local reload (which already happened). Each
//! call is bounded ([`CALL_TIMEOUT`], connects by [`CONNECT_TIMEOUT`]), at most
//! [`CONCURRENCY`] run at once, and the lookup is bounded by
//! [`RESOLVE_TIMEOUT`], so a fan-out takes at most about
//! `RESOLVE_TIMEOUT + ceil(addresses / CONCURRENCY) * CALL_TIMEOUT`. The name
//! may resolve to this instance too (a headless service lists every pod): it
//! then gets one forwarded reload like any peer, which cannot fan out again.
//!
//! Must not: hold, keep or log the admin token (the caller's `Authorization`
//! header, already verified equal to our token, is passed through as received
//! for the duration of one fan-out and marked sensitive; reports and logs carry
//! addresses, statuses and error kinds only); fan out a forwarded request (no
//! loops, whatever the DNS answer); or change local state (the local refresh is
//! [`super::admin`]'s).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use futures::StreamExt as _;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

use super::errors::ApiError;

/// `Flagbelt-Forwarded: 1`: sent on every forwarded reload; a reload that
/// carries it never fans out.
pub(super) const FLAGBELT_FORWARDED: HeaderName = HeaderName::from_static("flagbelt-forwarded");

/// Longest one peer call may take, connect to last byte of the answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a connection to one peer may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest the DNS lookup of the peer name may take (the system resolver's own
/// retries can take far longer).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// Most peer calls in flight at once.
const CONCURRENCY: usize = 32;
/// Most addresses called per fan-out (the first ones, in address order);
/// the rest are reported as `skipped`. Bounds a fan-out to about
/// `MAX_PEERS / CONCURRENCY * CALL_TIMEOUT` (24 s) whatever DNS returns.
const MAX_PEERS: usize = 256;
/// Largest peer answer read (a reload report lists the peer's environments).
const MAX_ANSWER: usize = 1 << 20;
/// The route called on every peer.
const RELOAD_PATH: &str = "/admin/v1/reload";

/// Whether this reload fans out to the peers (when there are any): not when
/// it was forwarded by a peer (`Flagbelt-Forwarded: 1`) nor with
/// `?fanout=false`. 400 for any other value of either, so a typo is not
/// silently taken for the default.
pub(super) fn wanted(headers: &HeaderMap, query: Option<&str>) -> Result<bool, ApiError> {
    if let Some(v) = headers.get(&FLAGBELT_FORWARDED) {
        return match v.to_str().map(str::trim) {
            Ok("1") => Ok(false),
            _ => Err(ApiError::BadRequest(
                "Flagbelt-Forwarded must be 1 (it marks a reload forwarded by a peer)".to_owned(),
            )),
        };
    }
    let mut fan_out = true;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if name == "fanout" {
            match &*value {
                "true" => {}
                "false" => fan_out = false,
                _ => {
                    return Err(ApiError::BadRequest(
                        "fanout must be true or false".to_owned(),
                    ));
                }
            }
        }
    }
    Ok(fan_out)
}

/// The `peers` member of a reload report.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(super) enum FanOut {
    /// The name resolved; one result per distinct address, in address order.
    Resolved {
        /// The `--peers` name.
        name: String,
        /// Distinct addresses the name resolved to.
        addresses: usize,
        /// One per address called.
        results: Vec<PeerResult>,
        /// How many of `results` are failures.
        failed: usize,
        /// Addresses beyond [`MAX_PEERS`], not called (absent when 0).
        #[serde(skip_serializing_if = "is_zero")]
        skipped: usize,
    },
    /// No peer was called: the name did not resolve (or no client could be
    /// built).
    Failed {
        /// The `--peers` name.
        name: String,
        /// Why the name gave no address to call (resolution failed or timed
        /// out, or no HTTP client), with its innermost cause.
        error: String,
    },
}

/// What one peer answered.
#[derive(Debug, Serialize)]
pub(super) struct PeerResult {
    address: SocketAddr,
    #[serde(flatten)]
    outcome: Outcome,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Outcome {
    Reloaded {
        status: u16,
        /// Environments the peer polled.
        refreshed: u64,
    },
    Failed {
        /// The HTTP status, when the peer answered with an error status.
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        error: String,
    },
}

impl PeerResult {
    fn failed(&self) -> bool {
        matches!(self.outcome, Outcome::Failed { .. })
    }
}

/// Why no peer could be called.
#[derive(Debug, thiserror::Error)]
enum FanOutError {
    #[error("cannot resolve {name}")]
    Resolve {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot resolve {name}: timed out after {} s", RESOLVE_TIMEOUT.as_secs())]
    ResolveTimedOut { name: String },
    #[error("cannot build the HTTP client for peers (the log says why)")]
    NoClient,
}

/// Why one peer call failed. The report shows [`describe`] of it: its
/// message, plus the innermost cause for the variants that have one.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("timed out after {} s", CALL_TIMEOUT.as_secs())]
    TimedOut,
    #[error("connect timed out after {} s", CONNECT_TIMEOUT.as_secs())]
    ConnectTimedOut,
    #[error("connection refused")]
    Refused,
    #[error("cannot connect")]
    Connect(#[source] reqwest::Error),
    #[error("HTTP {}", .0.as_u16())]
    Status(StatusCode),
    #[error("answer larger than {MAX_ANSWER} bytes")]
    TooLarge,
    #[error("the answer is not a reload report")]
    NotAReport(#[source] serde_json::Error),
    #[error("request failed")]
    Request(#[source] reqwest::Error),
}

impl CallError {
    fn from_reqwest(e: reqwest::Error) -> Self {
        if e.is_connect() {
            if e.is_timeout() {
                return Self::ConnectTimedOut;
            }
            if io_kind(&e) == Some(std::io::ErrorKind::ConnectionRefused) {
                return Self::Refused;
            }
            return Self::Connect(e);
        }
        if e.is_timeout() {
            return Self::TimedOut;
        }
        Self::Request(e)
    }
}

/// The kind of the first I/O error in `e`'s chain.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        next = err.source();
    }
    None
}

/// `e`'s message, then its innermost cause's (the intermediate layers of an
/// HTTP client error say nothing an operator can act on, and the outermost
/// one repeats the URL the report already names).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = None;
    let mut next = e.source();
    while let Some(err) = next {
        innermost = Some(err);
        next = err.source();
    }
    match innermost {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// The shape of a peer's reload report this module reads.
#[derive(Debug, Deserialize)]
struct PeerReport {
    refreshed: u64,
}

/// One client for every fan-out (its set-up is not worth repeating per
/// reload); `None` if it cannot be built, which is logged once. It keeps no
/// idle connections: reloads are minutes apart, and a kept connection to a
/// peer that has since gone (or closed it) would fail a call that a fresh
/// connection would not.
fn client() -> Option<&'static reqwest::Client> {
    static CLIENT: OnceLock<Option<reqwest::Client>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                // The token is in every request: never hand it to a proxy from
                // the environment, nor to wherever a redirect points.
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(0)
                .user_agent(concat!("flagbelt/", env!("CARGO_PKG_VERSION")))
                .build()
                .inspect_err(|e| {
                    tracing::error!(error = %describe(e), "cannot build the HTTP client for peers");
                })
                .ok()
        })
        .as_ref()
}

/// Resolves `name` (`host:port`) now; distinct addresses, sorted.
async fn resolve(name: &str) -> Result<BTreeSet<SocketAddr>, FanOutError> {
    match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(name)).await {
        Ok(Ok(addrs)) => Ok(addrs.collect()),
        Ok(Err(source)) => Err(FanOutError::Resolve {
            name: name.to_owned(),
            source,
        }),
        Err(_elapsed) => Err(FanOutError::ResolveTimedOut {
            name: name.to_owned(),
        }),
    }
}

/// Resolves `name` and forwards the reload to every address it resolves to,
/// with `auth` (the caller's verified `Authorization` header) and
/// `Flagbelt-Forwarded: 1`. Never fails: what failed is in the report.
pub(super) async fn fan_out(name: &str, auth: &HeaderValue) -> FanOut {
    let mut auth = auth.clone();
    auth.set_sensitive(true);
    let called = match client() {
        Some(client) => match resolve(name).await {
            Ok(addrs) => Ok((client, addrs)),
            Err(e) => Err(e),
        },
        None => Err(FanOutError::NoClient),
    };
    let (client, addrs) = match called {
        Ok(c) => c,
        Err(e) => {
            let error = describe(&e);
            tracing::warn!(peers = name, %error, "reload fan-out: no peer called");
            return FanOut::Failed {
                name: name.to_owned(),
                error,
            };
        }
    };
    let addresses = addrs.len();
    let skipped = addresses.saturating_sub(MAX_PEERS);
    // `buffered`, not `buffer_unordered`: results stay in address order.
    let results: Vec<PeerResult> = futures::stream::iter(addrs.into_iter().take(MAX_PEERS))
        .map(|address| {
            let auth = &auth;
            async move {
                let outcome = match call(client, address, auth).await {
                    Ok(refreshed) => Outcome::Reloaded {
                        status: StatusCode::OK.as_u16(),
                        refreshed,
                    },
                    Err(e) => Outcome::Failed {
                        status: match &e {
                            CallError::Status(s) => Some(s.as_u16()),
                            _ => None,
                        },
                        error: describe(&e),
                    },
                };
                PeerResult { address, outcome }
            }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let failed: Vec<SocketAddr> = results
        .iter()
        .filter(|r| r.failed())
        .map(|r| r.address)
        .collect();
    tracing::info!(
        peers = name,
        addresses,
        skipped,
        failed = failed.len(),
        failed_addresses = ?failed,
        "reload fanned out to peers"
    );
    FanOut::Resolved {
        name: name.to_owned(),
        addresses,
        failed: failed.len(),
        results,
        skipped,
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde hands fields by reference
fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One forwarded reload; the number of environments the peer refreshed.
async fn call(
    client: &reqwest::Client,
    address: SocketAddr,
    auth: &HeaderValue,
) -> Result<u64, CallError> {
    let attempt = async {
        let mut res = client
            .post(format!("http://{address}{RELOAD_PATH}"))
            .header(AUTHORIZATION, auth.clone())
            .header(FLAGBELT_FORWARDED, HeaderValue::from_static("1"))
            .send()
            .await
            .map_err(CallError::from_reqwest)?;
        if res.status() != StatusCode::OK {
            return Err(CallError::Status(res.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(CallError::from_reqwest)? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(CallError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let report: PeerReport = serde_json::from_slice(&body).map_err(CallError::NotAReport)?;
        Ok(report.refreshed)
    };
    tokio::time::timeout(CALL_TIMEOUT, attempt)
        .await
        .unwrap_or(Err(CallError::TimedOut))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn forwarded_or_fanout_false_never_fans_out_and_bad_values_are_400() {
        let none = HeaderMap::new();
        let fwd = headers(&[("flagbelt-forwarded", "1")]);
        let table: &[(&HeaderMap, Option<&str>, Option<bool>)] = &[
            (&none, None, Some(true)),
            (&none, Some(""), Some(true)),
            (&none, Some("fanout=true"), Some(true)),
            (&none, Some("other=1"), Some(true)),
            (&none, Some("fanout=false"), Some(false)),
            (&none, Some("fanout=true&fanout=false"), Some(false)),
            (&none, Some("fanout=no"), None),
            (&none, Some("fanout"), None),
            (&fwd, None, Some(false)),
            // Forwarded wins: a forwarded reload never fans out.
            (&fwd, Some("fanout=true"), Some(false)),
        ];
        for (h, q, expected) in table {
            let got = wanted(h, *q).ok();
            assert_eq!(got, *expected, "{h:?} {q:?}");
        }
        let bad = headers(&[("flagbelt-forwarded", "yes")]);
        assert!(matches!(wanted(&bad, None), Err(ApiError::BadRequest(_))));
    }

    #[test]
    fn the_report_shapes() {
        let addr: SocketAddr = "10.0.0.7:8081".parse().unwrap();
        let ok = PeerResult {
            address: addr,
            outcome: Outcome::Reloaded {
                status: 200,
                refreshed: 2,
            },
        };
        let denied = PeerResult {
            address: addr,
            outcome: Outcome::Failed {
                status: Some(401),
                error: describe(&CallError::Status(StatusCode::UNAUTHORIZED)),
            },
        };
        let refused = PeerResult {
            address: addr,
            outcome: Outcome::Failed {
                status: None,
                error: describe(&CallError::Refused),
            },
        };
        let v = serde_json::to_value(FanOut::Resolved {
            name: "peers:8081".to_owned(),
            addresses: 3,
            failed: 2,
            results: vec![ok, denied, refused],
            skipped: 0,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name": "peers:8081", "addresses": 3, "failed": 2, "results": [
                {"address": "10.0.0.7:8081", "status": 200, "refreshed": 2},
                {"address": "10.0.0.7:8081", "status": 401, "error": "HTTP 401"},
                {"address": "10.0.0.7:8081", "error": "connection refused"},
            ]})
        );
        let capped = serde_json::to_value(FanOut::Resolved {
            name: "peers:8081".to_owned(),
            addresses: MAX_PEERS + 3,
            failed: 0,
            results: Vec::new(),
            skipped: 3,
        })
        .unwrap();
        assert_eq!(capped["skipped"], 3, "{capped}");
        assert_eq!(capped["addresses"], MAX_PEERS + 3);
        let e = FanOutError::Resolve {
            name: "x.invalid:1".to_owned(),
            source: std::io::Error::other("no such host"),
        };
        assert_eq!(describe(&e), "cannot resolve x.invalid:1: no such host");
        assert_eq!(
            describe(&CallError::TimedOut),
            "timed out after 3 s",
            "the message the docs promise"
        );
    }
}
