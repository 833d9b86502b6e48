//! One loaded environment: the snapshot serving now, its polls, and the task
//! that keeps polling it while it is loaded.
//!
//! Owns one environment's serving snapshot (swapped whole, never mutated),
//! the poll that replaces it (one at a time; callers who waited for a poll
//! reuse its result), the status of its last poll, version notifications, the
//! last-known-good write after an activation, and the refresher task
//! (interval + jitter, exponential backoff while failing, stops when the
//! environment is evicted). It must not decide which version wins (that is
//! [`Failover`]'s, through `ruleset::verify`), load or evict environments (the
//! [`Delivery`] registry does), or hold a std lock across an `.await`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::failover::{Failover, PollOutcome, PollReport, PollState, SourceReport, Verdict};
use super::lkg::LastKnownGood;
use super::registry::{Delivery, DeliveryOptions};
use super::status::{EnvStatus, unavailable_message};
use super::{Origin, Snapshot};
use crate::ruleset::verify::Held;
use crate::util::{clock_nanos, lock, now_ms};

/// One loaded environment.
#[derive(Debug)]
pub struct Environment {
    name: String,
    current: ArcSwap<Snapshot>,
    /// Serialises polls of this environment; `polls` counts finished ones so
    /// that callers who waited for an in-flight poll reuse its result.
    poll: tokio::sync::Mutex<PollState>,
    polls: AtomicU64,
    /// When `at_least` last forced a poll (ms since the epoch).
    last_forced_poll_ms: AtomicU64,
    /// Held only to copy status in or out; never across an await.
    status: Mutex<EnvStatus>,
    version_tx: watch::Sender<u64>,
}

/// Shortest gap between two polls that `at_least` may trigger (ms).
const MIN_VERSION_POLL_GAP_MS: u64 = 1_000;

impl Environment {
    /// The environment's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The snapshot serving now. Load it once per request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Status of the last poll.
    pub fn status(&self) -> EnvStatus {
        lock(&self.status).clone()
    }

    /// Failed polls in a row (0 when the last poll reached a source).
    pub(super) fn consecutive_failures(&self) -> u32 {
        lock(&self.status).consecutive_failures
    }

    /// Notified with the new version after every swap.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version_tx.subscribe()
    }

    /// A freshly loaded environment serving `snapshot`; `state` and `sources`
    /// are what the first poll left.
    pub(super) fn new(
        snapshot: Arc<Snapshot>,
        state: PollState,
        sources: Vec<SourceReport>,
    ) -> Self {
        let version = snapshot.version;
        let now = now_ms();
        let status = EnvStatus {
            last_poll_ms: Some(now),
            last_success_ms: matches!(snapshot.origin, Origin::Source { .. }).then_some(now),
            last_error: None,
            consecutive_failures: 0,
            sources,
        };
        Self {
            name: snapshot.environment.clone(),
            current: ArcSwap::new(snapshot),
            poll: tokio::sync::Mutex::new(state),
            polls: AtomicU64::new(0),
            last_forced_poll_ms: AtomicU64::new(0),
            status: Mutex::new(status),
            version_tx: watch::channel(version).0,
        }
    }

    /// Records that the first load serves a local copy because of `message`
    /// (status says so until a poll reaches a source).
    pub(super) fn mark_fallback(&self, message: String) {
        let snap = self.snapshot();
        tracing::warn!(env = %self.name, origin = ?snap.origin, version = snap.version,
            %message, "serving a fallback copy");
        let mut st = lock(&self.status);
        st.last_success_ms = None;
        st.last_error = Some(message);
        st.consecutive_failures = 1;
    }

    /// A poll asked for by a caller who needs a newer version, waiting at most
    /// `wait`. Callers choose the version they ask for: without a limit, a
    /// client sending a version that will never exist would turn every request
    /// into a storage poll. One forced poll per second per environment at most.
    pub(super) async fn forced_poll(
        &self,
        main: &Failover,
        lkg: Option<&Arc<LastKnownGood>>,
        wait: Duration,
    ) {
        let now = now_ms();
        let last = self.last_forced_poll_ms.load(Ordering::Acquire);
        if now.saturating_sub(last) < MIN_VERSION_POLL_GAP_MS
            || self
                .last_forced_poll_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            // Another caller forced a poll within the last second (it may
            // still be running: wait for it, bounded, without starting one).
            let _ = tokio::time::timeout(wait, self.poll.lock()).await;
            return;
        }
        let _ = tokio::time::timeout(wait, self.poll(main, lkg)).await;
    }

    /// One poll of this environment against `main`; concurrent callers share
    /// it. An activation is swapped in whole and saved to `lkg`.
    pub(super) async fn poll(&self, main: &Failover, lkg: Option<&Arc<LastKnownGood>>) {
        let seen = self.polls.load(Ordering::Acquire);
        let mut state = self.poll.lock().await;
        if self.polls.load(Ordering::Acquire) != seen {
            // A poll finished while we waited for the lock: its result is as
            // fresh as ours would be.
            return;
        }
        let cur = self.snapshot();
        let PollReport { outcome, sources } =
            main.poll(&self.name, Some(held_of(&cur)), &mut state).await;
        let now = now_ms();
        let failed = match outcome {
            PollOutcome::Activate(snap) => {
                let snap: Arc<Snapshot> = Arc::from(snap);
                let version = snap.version;
                save(lkg, &snap);
                self.current.store(snap);
                self.version_tx.send_replace(version);
                metrics::counter!("flagbelt_env_activations_total").increment(1);
                tracing::info!(env = %self.name, version, "activated new ruleset");
                false
            }
            PollOutcome::Unchanged => {
                if !matches!(cur.origin, Origin::Source { .. })
                    && let Some(label) = confirming_source(&sources, cur.version)
                {
                    // Serving the local copy, and the sources now serve that
                    // very version: it is theirs again (status and metrics
                    // stop saying "fallback"). Same model, relabelled.
                    self.current
                        .store(Arc::new(cur.with_origin(Origin::Source { label })));
                }
                false
            }
            PollOutcome::NotFound | PollOutcome::Unavailable => true,
        };
        {
            let mut st = lock(&self.status);
            st.last_poll_ms = Some(now);
            if failed {
                st.consecutive_failures = st.consecutive_failures.saturating_add(1);
                st.last_error = Some(unavailable_message(&sources));
            } else {
                st.consecutive_failures = 0;
                st.last_error = None;
                st.last_success_ms = Some(now);
            }
            st.sources = sources;
        }
        self.polls.fetch_add(1, Ordering::Release);
    }

    /// Starts the task that polls this environment while it is loaded. It
    /// holds neither the environment nor the registry: it stops once the
    /// environment is evicted or the registry dropped.
    pub(super) fn spawn_refresher(self: &Arc<Self>, registry: &Arc<Delivery>) {
        let weak_env: Weak<Self> = Arc::downgrade(self);
        let weak_registry: Weak<Delivery> = Arc::downgrade(registry);
        let opts = registry.options().clone();
        tokio::spawn(async move {
            loop {
                let failures = match weak_env.upgrade() {
                    Some(e) => e.consecutive_failures(),
                    None => return,
                };
                tokio::time::sleep(next_delay(&opts, failures)).await;
                // Evicted (nobody holds it any more) or shutting down: stop.
                let (Some(e), Some(registry)) = (weak_env.upgrade(), weak_registry.upgrade())
                else {
                    return;
                };
                // Boxed: the poll future is large, and the task holds its
                // state while it sleeps; one per loaded environment adds up.
                Box::pin(e.poll(registry.failover(), registry.lkg())).await;
            }
        });
    }
}

/// Writes an activated snapshot to last-known-good, off the request path: a
/// failure only costs the cache, never the activation. Only snapshots from a
/// source are written (a local copy is already there).
pub(super) fn save(lkg: Option<&Arc<LastKnownGood>>, snap: &Arc<Snapshot>) {
    if !matches!(snap.origin, Origin::Source { .. }) {
        return;
    }
    let Some(lkg) = lkg else { return };
    let lkg = Arc::clone(lkg);
    let snap = Arc::clone(snap);
    tokio::spawn(async move {
        if let Err(e) = lkg.store(&snap).await {
            tracing::warn!(env = %snap.environment, error = %e, "could not write last-known-good");
        }
    });
}

/// What a snapshot is, as the failover's `held`.
pub(super) fn held_of(s: &Snapshot) -> Held {
    Held {
        version: s.version,
        sha256: s.sha256,
        published_at_ms: s.published_at_ms,
    }
}

/// The first source that answered with exactly `version`.
pub(super) fn confirming_source(sources: &[SourceReport], version: u64) -> Option<String> {
    sources
        .iter()
        .find(
            |s| matches!(s.verdict, Verdict::Version(v) | Verdict::NotModified(v) if v == version),
        )
        .map(|s| s.label.clone())
}

/// Interval with jitter; doubling per failure up to `max_backoff`.
fn next_delay(opts: &DeliveryOptions, failures: u32) -> Duration {
    let base = if failures == 0 {
        opts.poll_interval
    } else {
        let factor = 2u32.saturating_pow(failures.min(16));
        opts.poll_interval
            .checked_mul(factor)
            .unwrap_or(opts.max_backoff)
            .min(opts.max_backoff)
    };
    // Cheap jitter source: sub-second clock noise is enough to de-synchronise
    // instances; it needs no RNG state.
    let noise = f64::from(clock_nanos()) / 1e9;
    base.mul_f64(1.0 + opts.poll_jitter.clamp(0.0, 1.0) * noise)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_back_off_exponentially_with_jitter_and_a_cap() {
        let opts = DeliveryOptions {
            poll_interval: Duration::from_secs(10),
            poll_jitter: 0.2,
            max_backoff: Duration::from_secs(60),
            ..DeliveryOptions::default()
        };
        let within = |d: Duration, base: u64| {
            d >= Duration::from_secs(base) && d <= Duration::from_secs(base).mul_f64(1.2)
        };
        for _ in 0..50 {
            assert!(within(next_delay(&opts, 0), 10));
            assert!(within(next_delay(&opts, 1), 20));
            assert!(within(next_delay(&opts, 2), 40));
            assert!(within(next_delay(&opts, 3), 60), "capped at max_backoff");
            assert!(within(next_delay(&opts, u32::MAX), 60), "no overflow");
        }
    }
}
