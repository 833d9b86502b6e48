//! Delivery start-up: typed settings in, a running [`Delivery`] out, with every
//! configuration mistake reported clearly before anything is served.
//!
//! Owns turning source URLs, key files and folders into sources, trusted keys,
//! the last-known-good cache and the bootstrap fallback, and probing every
//! source once so that an unreachable store, a missing bucket or missing
//! credentials are named at start. A dead source is reported, not fatal: the
//! delivery rules say a dead source never blocks. Reading flags or environment
//! variables is the CLI's job, not this module's.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::local::LocalFileSystem;

use super::failover::{Failover, FailoverOptions};
use super::lkg::LastKnownGood;
use super::source::{Source, SourceError, SourceKind, SourceOptions};
use super::{Delivery, DeliveryOptions};
use crate::ruleset::keys;
use crate::ruleset::verify::TrustedKeys;
use crate::util::error_chain;

/// Everything delivery needs, already parsed from flags or the environment.
#[derive(Debug, Clone, Default)]
pub struct DeliveryConfig {
    /// Source URLs in order of preference.
    pub sources: Vec<String>,
    /// Trusted Ed25519 public keys (SPKI PEM files). None = accept unsigned
    /// manifests (local use only).
    pub public_keys: Vec<PathBuf>,
    /// Last-known-good folder (written on every activation, read at start when
    /// no source answers).
    pub cache_dir: Option<PathBuf>,
    /// Baked fallback folder in the stored layout (read-only).
    pub bootstrap: Option<PathBuf>,
    /// Per-source deadlines and retries.
    pub source: SourceOptions,
    /// Failover timing.
    pub fetch: FailoverOptions,
    /// Environment lifecycle timing.
    pub environments: DeliveryOptions,
}

/// A configuration mistake found at start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No `--source` given.
    #[error("no source configured: give at least one --source URL")]
    NoSources,
    /// A source URL that cannot be used.
    #[error("source {index} is unusable")]
    Source {
        /// 1-based position in the list.
        index: usize,
        /// What is wrong with its URL or configuration.
        #[source]
        source: SourceError,
    },
    /// A public-key file that cannot be read or parsed.
    #[error("{} is not a usable public key", path.display())]
    PublicKey {
        /// The `--public-key` file.
        path: PathBuf,
        /// The read error, or why its text is not an Ed25519 public key in PEM.
        #[source]
        source: anyhow::Error,
    },
    /// A cache or bootstrap folder that cannot be used.
    #[error("{what} folder {path} is unusable")]
    Folder {
        /// `cache` or `bootstrap`.
        what: &'static str,
        /// The folder as configured.
        path: PathBuf,
        /// Why it cannot be created, opened or used as a store.
        #[source]
        source: anyhow::Error,
    },
}

/// What the start-up probe found for one source.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Probe {
    /// The source's label.
    pub label: String,
    /// `None` when the source answered as a healthy store does; else why not.
    pub problem: Option<String>,
}

impl DeliveryConfig {
    /// Builds sources, trusted keys and fallbacks; fails on any configuration
    /// mistake, naming it.
    pub fn build(&self) -> Result<Arc<Delivery>, StartError> {
        if self.sources.is_empty() {
            return Err(StartError::NoSources);
        }
        let sources = self
            .sources
            .iter()
            .enumerate()
            .map(|(i, url)| {
                Source::from_url(url, &self.source)
                    .map(Arc::new)
                    .map_err(|source| StartError::Source {
                        index: i + 1,
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (i, s) in sources.iter().enumerate() {
            if sources[..i]
                .iter()
                .any(|earlier| earlier.label() == s.label())
            {
                return Err(StartError::Source {
                    index: i + 1,
                    source: super::source::url::listed_twice(s),
                });
            }
        }
        let trusted = self.trusted_keys()?;
        let mut fallback_sources = Vec::new();
        let lkg = match &self.cache_dir {
            Some(dir) => {
                let lkg = LastKnownGood::new(dir.clone());
                let source = lkg
                    .source(self.source.timeout)
                    .map_err(|e| folder("cache", dir, anyhow::anyhow!("{e}")))?;
                fallback_sources.push(Arc::new(source));
                Some(lkg)
            }
            None => None,
        };
        if let Some(dir) = &self.bootstrap {
            let store = LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| folder("bootstrap", dir, anyhow::Error::new(e)))?;
            fallback_sources.push(Arc::new(
                Source::new(
                    format!("bootstrap:{}", dir.display()),
                    Arc::new(store),
                    "",
                    self.source.timeout,
                )
                .with_kind(SourceKind::Bootstrap),
            ));
        }
        let fallback = (!fallback_sources.is_empty())
            .then(|| Failover::new(fallback_sources, trusted.clone(), self.fetch.clone()));
        let main = Failover::new(sources, trusted, self.fetch.clone());
        Ok(Delivery::new(
            main,
            fallback,
            lkg,
            self.environments.clone(),
        ))
    }

    fn trusted_keys(&self) -> Result<TrustedKeys, StartError> {
        read_public_keys(&self.public_keys)
    }
}

fn folder(what: &'static str, path: &std::path::Path, source: anyhow::Error) -> StartError {
    StartError::Folder {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Probes every source concurrently ([`Source::probe`]): an unreachable
/// store, a missing bucket or container, or missing or wrong credentials are
/// named at start. Never fails: a dead source is reported, and delivery fails
/// over.
pub async fn probe(delivery: &Delivery) -> Vec<Probe> {
    let checks = delivery.failover().sources().iter().map(|s| async move {
        Probe {
            label: s.label().to_owned(),
            problem: s.probe().await.err().map(|e| error_chain(&e)),
        }
    });
    futures::future::join_all(checks).await
}

/// Reads the Ed25519 public keys (PEM files) a reader trusts, naming the file
/// that cannot be read or parsed. `serve`, `fetch` and `eval` all load
/// `--public-key` through this.
pub fn read_public_keys(paths: &[PathBuf]) -> Result<TrustedKeys, StartError> {
    let unusable = |path: &PathBuf, e: anyhow::Error| StartError::PublicKey {
        path: path.clone(),
        source: e,
    };
    let keys = paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).map_err(|e| unusable(path, e.into()))?;
            keys::verifying_key_from_pem(&text).map_err(|e| unusable(path, e.into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TrustedKeys::from_keys(keys))
}
