//! Delivery: getting verified rulesets from storage to every instance, and
//! keeping them there when storage fails.
//!
//! Owns all storage I/O (sources), failover and version arbitration across
//! sources, per-environment loading (lazy, coalesced, refreshed, evicted), and
//! last-known-good persistence. It hands the HTTP layer immutable
//! [`Snapshot`]s. It must not evaluate flags or write HTTP responses, and it
//! never activates anything that `ruleset::verify` did not accept.
//!
//! # Layout
//! - [`source`]: one store (URL parsing, deadlines, conditional reads, health).
//! - [`failover`]: one poll of one environment across every source: which
//!   version wins, hedged ruleset reads, per-source verdicts.
//! - [`registry`]: [`Delivery`], the environments of this instance (first
//!   load, coalescing, negative cache, preload, eviction, read-your-writes).
//! - [`environment`]: one loaded environment (poll and swap, the refresher).
//! - [`status`]: status reports and gauges.
//! - [`lkg`]: the last-known-good cache folder; [`config`]: start-up.
//! - `faults` (feature `test-support`): a fault-injecting store for tests and
//!   benchmarks, not in the shipped binary.

pub mod config;
pub mod environment;
pub mod failover;
#[cfg(feature = "test-support")]
pub mod faults;
pub mod lkg;
pub mod registry;
pub mod source;
pub mod status;

pub use self::registry::{Delivery, DeliveryOptions, EnvError};

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::eval::model;

/// One activated ruleset: immutable, shared behind an `Arc`, swapped whole.
#[derive(Debug)]
pub struct Snapshot {
    /// Environment name.
    pub environment: String,
    /// Ruleset version.
    pub version: u64,
    /// SHA-256 of `ruleset_bytes` (as the manifest states and as checked).
    pub sha256: [u8; 32],
    /// When the publisher built the manifest (ms since the epoch).
    pub published_at_ms: i64,
    /// The evaluable model. Shared: a snapshot relabelled with another
    /// [`Origin`] ([`Snapshot::with_origin`]) shares it rather than decoding
    /// and compiling the ruleset again.
    pub ruleset: Arc<model::Ruleset>,
    /// The exact stored ruleset bytes (served by `GET /v1/ruleset`, written to
    /// last-known-good).
    pub ruleset_bytes: Bytes,
    /// The exact stored manifest bytes (written to last-known-good).
    pub manifest_bytes: Bytes,
    /// Where it came from.
    pub origin: Origin,
    /// When this instance fetched and verified it.
    pub fetched_at: SystemTime,
}

impl Snapshot {
    /// The same ruleset, said to come from `origin`, fetched now (a local copy
    /// confirmed by a source). Clones the bytes and the model's `Arc`, nothing
    /// deeper.
    pub fn with_origin(&self, origin: Origin) -> Self {
        Self {
            environment: self.environment.clone(),
            version: self.version,
            sha256: self.sha256,
            published_at_ms: self.published_at_ms,
            ruleset: Arc::clone(&self.ruleset),
            ruleset_bytes: self.ruleset_bytes.clone(),
            manifest_bytes: self.manifest_bytes.clone(),
            origin,
            fetched_at: SystemTime::now(),
        }
    }
}

/// Where a snapshot came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// A configured source, by label.
    Source {
        /// The source's label.
        label: String,
    },
    /// This instance's last-known-good cache (no source answered at start).
    LastKnownGood,
    /// The baked bootstrap folder (no source and no cache).
    Bootstrap,
}
