//! What delivery reports about itself: per-environment status (the admin
//! status page, `flagbelt fetch`), the environment gauges, and the one-line
//! summary of what every source said.
//!
//! Owns [`EnvStatus`] and [`EnvReport`], the `flagbelt_environments_*` and
//! `flagbelt_ruleset_age_max_seconds` gauges, and the text of "no usable
//! answer" messages. It only reads: it must not poll, load or swap anything.
//! Metric labels are fixed sets, never an environment name.

use super::Origin;
use super::environment::Environment;
use super::failover::{SourceReport, Verdict};
use super::registry::Delivery;
use crate::util::now_ms;

/// What happened to an environment's last poll.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EnvStatus {
    /// When the last poll finished (ms since the epoch).
    pub last_poll_ms: Option<u64>,
    /// When a poll last reached at least one source successfully.
    pub last_success_ms: Option<u64>,
    /// The last failure, if the last poll failed.
    pub last_error: Option<String>,
    /// Failed polls in a row.
    pub consecutive_failures: u32,
    /// What each source said in the last poll.
    pub sources: Vec<SourceReport>,
}

/// One environment in the status report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EnvReport {
    /// The environment this line reports on.
    pub environment: String,
    /// Version serving.
    pub version: u64,
    /// Where the serving snapshot came from.
    pub origin: Origin,
    /// Milliseconds since the serving ruleset was published.
    pub age_ms: u64,
    /// Loaded by `--preload` (never evicted).
    pub preloaded: bool,
    /// The last poll.
    pub status: EnvStatus,
    /// Sources that answered with an older version than the one serving.
    pub stale_sources: Vec<String>,
}

impl EnvReport {
    fn of(e: &Environment, preloaded: bool) -> Self {
        let snap = e.snapshot();
        let status = e.status();
        let stale_sources = status
            .sources
            .iter()
            .filter(|s| s.stale)
            .map(|s| s.label.clone())
            .collect();
        Self {
            environment: e.name().to_owned(),
            version: snap.version,
            origin: snap.origin.clone(),
            age_ms: now_ms().saturating_sub(u64::try_from(snap.published_at_ms).unwrap_or(0)),
            preloaded,
            status,
            stale_sources,
        }
    }
}

impl Delivery {
    /// Status of every loaded environment.
    pub fn environments(&self) -> Vec<EnvReport> {
        let mut out: Vec<EnvReport> = self
            .all_loaded()
            .iter()
            .map(|e| EnvReport::of(e, self.is_pinned(e.name())))
            .collect();
        out.sort_by(|a, b| a.environment.cmp(&b.environment));
        out
    }

    /// Sets the environment gauges (call before rendering metrics; it walks
    /// every loaded environment, so not per request):
    /// `flagbelt_environments_loaded`, `flagbelt_environments_fallback`
    /// (serving last-known-good or bootstrap), `flagbelt_environments_failing`
    /// (last poll failed) and `flagbelt_ruleset_age_max_seconds` (the oldest
    /// serving ruleset, by publish time).
    pub fn record_metrics(&self) {
        let (mut loaded, mut fallback, mut failing, mut max_age_ms) = (0u64, 0u64, 0u64, 0u64);
        let now = now_ms();
        for e in self.all_loaded() {
            loaded += 1;
            let snap = e.snapshot();
            if !matches!(snap.origin, Origin::Source { .. }) {
                fallback += 1;
            }
            if e.consecutive_failures() > 0 {
                failing += 1;
            }
            let published = u64::try_from(snap.published_at_ms).unwrap_or(0);
            max_age_ms = max_age_ms.max(now.saturating_sub(published));
        }
        metrics::gauge!("flagbelt_environments_loaded").set(loaded as f64);
        metrics::gauge!("flagbelt_environments_fallback").set(fallback as f64);
        metrics::gauge!("flagbelt_environments_failing").set(failing as f64);
        metrics::gauge!("flagbelt_ruleset_age_max_seconds").set(max_age_ms as f64 / 1000.0);
    }
}

/// One line saying what every source answered, for status and logs when no
/// source gave a usable answer.
pub(super) fn unavailable_message(sources: &[SourceReport]) -> String {
    let parts: Vec<String> = sources
        .iter()
        .map(|s| {
            let said = match &s.verdict {
                Verdict::Version(v) | Verdict::NotModified(v) => format!("version {v}"),
                Verdict::NotFound => "not found".to_owned(),
                Verdict::Error(e) => e.clone(),
                Verdict::Rejected(e) => format!("rejected: {e}"),
                Verdict::NotAsked => "not asked".to_owned(),
            };
            format!("{}: {said}", s.label)
        })
        .collect();
    format!("no usable answer from any source ({})", parts.join("; "))
}
