//! Who is calling: API keys (public and server) and the admin token.
//!
//! Owns (once a key was read from the request by [`super::extract`], or from
//! the path of `GET /v1/eval`) loading the key's environment (honouring
//! `Flagbelt-Min-Version`), matching the key against that snapshot in constant
//! time, the kind check (public vs server), which flags a key may see
//! ([`Caller::sees`]), and the admin token check.
//!
//! Order, and why: parse the key (401 if malformed), load the environment it
//! names (401 "unknown API key" if there is no such environment, so callers
//! cannot probe which environments exist; 503 if storage is down and nothing
//! is cached), match id and secret in the snapshot that will answer (401), and
//! only then check the kind (403), so a 403 is only ever said to a holder of a
//! valid key. The snapshot that authenticated the caller is the one that
//! answers, so a key published together with a new version works as soon as a
//! request asks for that version.
//!
//! Must not: log, echo or keep key text (only the environment and key id,
//! which are not secret), compare secrets or tokens with early-exit equality,
//! or write responses.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use http::header::AUTHORIZATION;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::errors::ApiError;
use super::headers::FLAGBELT_MIN_VERSION;
use crate::delivery::Snapshot;
use crate::delivery::{Delivery, EnvError};
use crate::eval::Audience;
use crate::eval::model::{ApiKey, Flag, KeyKind};
use crate::ruleset::keys::PresentedKey;

/// Which keys a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Public (`fbp.`) keys only: the key is in a URL.
    Public,
    /// Either kind; a public key sees client flags only.
    Any,
    /// Server (`fbs.`) keys only.
    Server,
}

/// An authenticated caller and the snapshot that answers it.
#[derive(Debug)]
pub(crate) struct Caller {
    /// The snapshot the key was checked against; the one that answers.
    pub snapshot: Arc<Snapshot>,
    key_id: String,
    kind: KeyKind,
    /// The request asked for a newer version than this instance could load in
    /// time (`Flagbelt-Min-Version`).
    pub stale: bool,
}

impl Caller {
    /// The key id (not secret; used in purge tags and ETags).
    pub(crate) fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The stored key (its allowed origins decide CORS).
    pub(crate) fn key(&self) -> Option<&ApiKey> {
        self.snapshot.ruleset.keys.get(&self.key_id)
    }

    /// Which flags the key sees.
    pub(crate) fn audience(&self) -> Audience {
        match self.kind {
            KeyKind::Frontend => Audience::Client,
            KeyKind::Backend => Audience::All,
        }
    }

    /// True when the key may see `flag`: a server key sees every flag, a
    /// public key the client-visible ones (`client: true`). The one place
    /// that rule is written for the HTTP layer; evaluating everything an
    /// audience sees applies the same rule in `eval::evaluate_all`.
    pub(crate) fn sees(&self, flag: &Flag) -> bool {
        self.audience().sees(flag)
    }

    /// 403 when the key is the wrong kind for the route.
    pub(crate) fn require(&self, need: Need) -> Result<(), ApiError> {
        match (need, self.kind) {
            (Need::Public, KeyKind::Backend) => {
                // A server key in a URL ends up in CDN and proxy logs: say so,
                // naming only the environment and key id.
                tracing::warn!(env = %self.snapshot.environment, key_id = %self.key_id,
                    "server key presented in a URL; rotate it");
                Err(ApiError::WrongKeyKind(
                    "this route takes a public (fbp.) key; never put a server key in a URL",
                ))
            }
            (Need::Server, KeyKind::Frontend) => Err(ApiError::WrongKeyKind(
                "this route needs a server (fbs.) key",
            )),
            _ => Ok(()),
        }
    }
}

/// The token of `Authorization: Bearer <token>`.
pub(super) fn bearer(v: &http::HeaderValue) -> Option<&str> {
    let text = v.to_str().ok()?.trim();
    let (scheme, token) = text.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// `Flagbelt-Min-Version: N`, if sent; 400 if it is not a version number.
pub(crate) fn min_version(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(FLAGBELT_MIN_VERSION) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::BadRequest("Flagbelt-Min-Version must be a ruleset version number".to_owned())
        })
}

/// Authenticates `text` as an API key: the key's environment is loaded (or
/// caught up to `min_version`, waiting at most `wait`), and the key must be in
/// that snapshot with the same kind and secret.
pub(crate) async fn authenticate(
    delivery: &Arc<Delivery>,
    text: &str,
    min_version: Option<u64>,
    wait: Duration,
) -> Result<Caller, ApiError> {
    let presented = PresentedKey::parse(text).map_err(ApiError::MalformedKey)?;
    let loaded = match min_version {
        Some(min) => delivery.at_least(presented.env(), min, wait).await,
        None => delivery.get(presented.env()).await.map(|e| e.snapshot()),
    };
    let snapshot = loaded.map_err(|e| match e {
        EnvError::NotFound => ApiError::UnknownKey,
        EnvError::Unavailable => ApiError::Unavailable,
    })?;
    // An unknown key id is compared against a dummy, so the time taken does
    // not tell a wrong id from a wrong secret.
    let dummy;
    let stored = match snapshot.ruleset.keys.get(presented.key_id()) {
        Some(k) => k,
        None => {
            dummy = ApiKey {
                id: String::new(),
                kind: presented.kind(),
                secret_sha256: [0; 32],
                allowed_origins: Vec::new(),
            };
            &dummy
        }
    };
    if !presented.matches(stored) || stored.id.is_empty() {
        return Err(ApiError::UnknownKey);
    }
    let stale = min_version.is_some_and(|min| snapshot.version < min);
    if stale {
        metrics::counter!("flagbelt_http_stale_answers_total").increment(1);
    }
    Ok(Caller {
        key_id: stored.id.clone(),
        kind: stored.kind,
        snapshot,
        stale,
    })
}

/// The admin token, kept only as its SHA-256 (compared in constant time, and
/// equal-length digests hide the token's length).
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken([REDACTED])")
    }
}

impl AdminToken {
    /// The token (already trimmed and checked non-empty by the caller).
    pub fn new(token: &SecretString) -> Self {
        Self {
            digest: Sha256::digest(token.expose_secret().as_bytes()).into(),
        }
    }

    /// 401 unless the request carries `Authorization: Bearer <this token>`.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(bearer)
            .ok_or(ApiError::AdminUnauthorized)?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if bool::from(digest.ct_eq(&self.digest)) {
            Ok(())
        } else {
            Err(ApiError::AdminUnauthorized)
        }
    }
}
