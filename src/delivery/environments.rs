//! Environments: loaded on first use, refreshed while in use, evicted when idle.
//!
//! Owns the per-environment lifecycle on top of [`Fetcher`]: one coalesced load
//! however many callers wait (moka's `try_get_with`), negative caching of
//! unknown environments, a refresh task per loaded environment (interval +
//! jitter, exponential backoff while failing), stale-while-refresh (the current
//! snapshot keeps serving until a verified new one is swapped in whole),
//! last-known-good writes, the fallback to the cache or bootstrap folder when no
//! source answers, and the status the HTTP layer reports. It must not evaluate
//! flags, write HTTP responses, or activate anything the fetcher did not verify.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::failover::{Fetcher, PollOutcome, PollReport, PollState, SourceReport, Verdict};
use super::lkg::LastKnownGood;
use super::{Origin, Snapshot};
use crate::ruleset::valid_env_name;
use crate::ruleset::verify::Held;

/// Timing and size policy for environments.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Time between polls of an environment in use.
    pub poll_interval: Duration,
    /// Random extra delay added to each poll, as a fraction of the interval
    /// (0.2 = up to 20 %), so instances do not poll storage in lockstep.
    pub poll_jitter: f64,
    /// Upper bound of the exponential backoff while polls fail.
    pub max_backoff: Duration,
    /// An environment nobody asked for this long is evicted (preloaded ones never).
    pub idle_ttl: Duration,
    /// How long "no such environment" is remembered.
    pub negative_ttl: Duration,
    /// How long "storage unavailable, nothing to serve" is remembered, so a
    /// storm of requests for an environment cannot hammer dead storage.
    pub failure_ttl: Duration,
    /// Most environments held at once (least recently used are evicted first).
    pub max_environments: u64,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(10),
            poll_jitter: 0.2,
            max_backoff: Duration::from_secs(60),
            idle_ttl: Duration::from_secs(600),
            negative_ttl: Duration::from_secs(30),
            failure_ttl: Duration::from_secs(1),
            max_environments: 100_000,
        }
    }
}

/// Why an environment cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// No source has this environment (or its name is invalid).
    #[error("unknown environment")]
    NotFound,
    /// No source answered usably, and there is no cached or bootstrap copy.
    #[error("no ruleset available for this environment (storage unavailable)")]
    Unavailable,
}

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

    /// Notified with the new version after every swap.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version_tx.subscribe()
    }

    fn new(snapshot: Arc<Snapshot>, state: PollState, sources: Vec<SourceReport>) -> Self {
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
}

/// All environments of this instance, and the policy to load them.
pub struct Delivery {
    main: Fetcher,
    /// Last-known-good then bootstrap, read only when no source answers.
    fallback: Option<Fetcher>,
    lkg: Option<Arc<LastKnownGood>>,
    envs: moka::future::Cache<String, Arc<Environment>>,
    /// Preloaded environments: never evicted.
    /// Read on every request, written only by `preload`: a lock-free swap
    /// rather than a mutex every request would take.
    pinned: ArcSwap<HashMap<String, Arc<Environment>>>,
    negative: moka::future::Cache<String, EnvError>,
    opts: DeliveryOptions,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("environments", &self.envs.entry_count())
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Builds the registry. `fallback` reads the last-known-good cache and the
    /// bootstrap folder (in that order); `lkg` is where activations are saved.
    pub fn new(
        main: Fetcher,
        fallback: Option<Fetcher>,
        lkg: Option<LastKnownGood>,
        opts: DeliveryOptions,
    ) -> Arc<Self> {
        let envs = moka::future::Cache::builder()
            .max_capacity(opts.max_environments)
            .time_to_idle(opts.idle_ttl)
            .build();
        let negative = moka::future::Cache::builder()
            .max_capacity(100_000)
            .expire_after(NegativeExpiry {
                not_found: opts.negative_ttl,
                unavailable: opts.failure_ttl,
            })
            .build();
        Arc::new(Self {
            main,
            fallback,
            lkg: lkg.map(Arc::new),
            envs,
            pinned: ArcSwap::from_pointee(HashMap::new()),
            negative,
            opts,
        })
    }

    /// The environment, loading it on first use. Concurrent first callers share
    /// one load (one manifest read per source, one ruleset read).
    pub async fn get(self: &Arc<Self>, env: &str) -> Result<Arc<Environment>, EnvError> {
        if let Some(e) = self.pinned.load().get(env) {
            return Ok(Arc::clone(e));
        }
        if let Some(e) = self.envs.get(env).await {
            return Ok(e);
        }
        if !valid_env_name(env) {
            return Err(EnvError::NotFound);
        }
        if let Some(err) = self.negative.get(env).await {
            return Err(err);
        }
        let this = Arc::clone(self);
        let name = env.to_owned();
        let loaded = self
            .envs
            .try_get_with(env.to_owned(), async move { this.load(&name).await })
            .await;
        match loaded {
            Ok(e) => Ok(e),
            Err(err) => {
                let err = (*err).clone();
                self.negative.insert(env.to_owned(), err.clone()).await;
                Err(err)
            }
        }
    }

    /// Loads `envs` now and keeps them loaded for the life of the process.
    /// Returns the ones that could not be loaded.
    pub async fn preload(self: &Arc<Self>, envs: &[String]) -> Vec<(String, EnvError)> {
        let mut failed = Vec::new();
        for env in envs {
            match self.get(env).await {
                Ok(e) => {
                    self.pinned.rcu(|pinned| {
                        let mut next = HashMap::clone(pinned);
                        next.insert(env.clone(), Arc::clone(&e));
                        next
                    });
                }
                Err(err) => failed.push((env.clone(), err)),
            }
        }
        failed
    }

    /// True when every environment in `envs` holds a usable snapshot. Storage
    /// errors after that do not change the answer (stale beats none).
    pub fn ready(&self, envs: &[String]) -> bool {
        let pinned = self.pinned.load();
        envs.iter().all(|e| pinned.contains_key(e))
    }

    /// Polls `env` now (or joins a poll already in flight) if it is loaded.
    pub async fn refresh(&self, env: &str) -> Option<Arc<Snapshot>> {
        // A push means "something was published": forget "unknown" for it.
        self.negative.invalidate(env).await;
        let e = self.loaded(env).await?;
        self.poll(&e).await;
        Some(e.snapshot())
    }

    /// Polls every loaded environment now (the admin reload).
    pub async fn refresh_all(&self) -> usize {
        use futures::StreamExt as _;
        self.negative.invalidate_all();
        let envs = self.all_loaded();
        let n = envs.len();
        // Bounded: with thousands of environments, all at once would be a
        // request storm against every store (which would then throttle).
        futures::stream::iter(envs.iter())
            .for_each_concurrent(REFRESH_CONCURRENCY, |e| self.poll(e))
            .await;
        n
    }

    /// Makes sure `env` is at `min_version` or later, polling at most once
    /// (coalesced) and waiting at most `wait`. Returns the snapshot serving
    /// afterwards; the caller compares its version (read-your-writes).
    pub async fn at_least(
        self: &Arc<Self>,
        env: &str,
        min_version: u64,
        wait: Duration,
    ) -> Result<Arc<Snapshot>, EnvError> {
        let e = self.get(env).await?;
        let snap = e.snapshot();
        if snap.version >= min_version {
            return Ok(snap);
        }
        // Callers choose the version they ask for: without this, a client
        // sending a version that will never exist would turn every request
        // into a storage poll. One poll per second per environment at most.
        let now = now_ms();
        let last = e.last_forced_poll_ms.load(Ordering::Acquire);
        if now.saturating_sub(last) < MIN_VERSION_POLL_GAP_MS
            || e.last_forced_poll_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            // Another caller forced a poll within the last second (it may
            // still be running: wait for it, bounded, without starting one).
            let _ = tokio::time::timeout(wait, e.poll.lock()).await;
            return Ok(e.snapshot());
        }
        let _ = tokio::time::timeout(wait, self.poll(&e)).await;
        Ok(e.snapshot())
    }

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

    /// Runs the cache's pending housekeeping now (evictions of idle
    /// environments); it also runs on its own as the cache is used.
    pub async fn run_maintenance(&self) {
        self.envs.run_pending_tasks().await;
        self.negative.run_pending_tasks().await;
        self.record_metrics();
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
            if lock(&e.status).consecutive_failures > 0 {
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

    /// The configured sources (for status).
    pub fn fetcher(&self) -> &Fetcher {
        &self.main
    }

    fn is_pinned(&self, env: &str) -> bool {
        self.pinned.load().contains_key(env)
    }

    async fn loaded(&self, env: &str) -> Option<Arc<Environment>> {
        if let Some(e) = self.pinned.load().get(env) {
            return Some(Arc::clone(e));
        }
        self.envs.get(env).await
    }

    fn all_loaded(&self) -> Vec<Arc<Environment>> {
        let mut seen: HashMap<String, Arc<Environment>> = HashMap::clone(&self.pinned.load());
        for (name, e) in self.envs.iter() {
            seen.entry((*name).clone()).or_insert(e);
        }
        seen.into_values().collect()
    }

    /// First load. The local copy (last-known-good, else bootstrap) is read
    /// first: it is on disk, and it is what this instance served last, so it
    /// is the held version for the first poll: a source that is behind it
    /// (a lagging replica answering first after a restart) cannot take the
    /// environment back. Then the sources; the local copy serves only when
    /// they have nothing newer, and reports where it came from.
    async fn load(self: &Arc<Self>, env: &str) -> Result<Arc<Environment>, EnvError> {
        let fallback = self.load_fallback(env).await;
        let held = fallback.as_ref().map(held_of);
        let mut state = PollState::default();
        let PollReport { outcome, sources } = self.main.poll(env, held, &mut state).await;
        let (snap, problem, outcome_label) = match (outcome, fallback) {
            (PollOutcome::Activate(snap), _) => (Arc::from(snap), None, "source"),
            (PollOutcome::NotFound, _) => {
                metrics::counter!("flagbelt_env_loads_total", "outcome" => "not_found")
                    .increment(1);
                return Err(EnvError::NotFound);
            }
            (PollOutcome::Unchanged, Some(mut local)) => {
                match confirming_source(&sources, local.version) {
                    // The sources serve exactly the local copy: it is theirs.
                    Some(label) => {
                        local.origin = Origin::Source { label };
                        (Arc::new(local), None, "source")
                    }
                    None => (
                        Arc::new(local),
                        Some(format!(
                            "every source that answered is behind the local copy ({})",
                            unavailable_message(&sources)
                        )),
                        "fallback",
                    ),
                }
            }
            (PollOutcome::Unavailable, Some(local)) => (
                Arc::new(local),
                Some(unavailable_message(&sources)),
                "fallback",
            ),
            (PollOutcome::Unchanged | PollOutcome::Unavailable, None) => {
                metrics::counter!("flagbelt_env_loads_total", "outcome" => "unavailable")
                    .increment(1);
                tracing::error!(env, message = %unavailable_message(&sources),
                    "no source answered usably and there is no cached or bootstrap copy");
                return Err(EnvError::Unavailable);
            }
        };
        metrics::counter!("flagbelt_env_loads_total", "outcome" => outcome_label).increment(1);
        self.save(&snap);
        let e = Arc::new(Environment::new(snap, state, sources));
        if let Some(message) = problem {
            let snap = e.snapshot();
            tracing::warn!(env, origin = ?snap.origin, version = snap.version, %message,
                "serving a fallback copy");
            let mut st = lock(&e.status);
            st.last_success_ms = None;
            st.last_error = Some(message);
            st.consecutive_failures = 1;
        }
        self.spawn_refresher(&e);
        Ok(e)
    }

    async fn load_fallback(&self, env: &str) -> Option<Snapshot> {
        let fallback = self.fallback.as_ref()?;
        let mut state = PollState::default();
        let report = fallback.poll(env, None, &mut state).await;
        let PollOutcome::Activate(mut snap) = report.outcome else {
            return None;
        };
        snap.origin = match &snap.origin {
            Origin::Source { label } if label.starts_with(LKG_LABEL_PREFIX) => {
                Origin::LastKnownGood
            }
            _ => Origin::Bootstrap,
        };
        Some(*snap)
    }

    /// Writes an activated snapshot to last-known-good, off the request path: a
    /// failure only costs the cache, never the activation.
    fn save(&self, snap: &Arc<Snapshot>) {
        if !matches!(snap.origin, Origin::Source { .. }) {
            return;
        }
        let Some(lkg) = &self.lkg else { return };
        let lkg = Arc::clone(lkg);
        let snap = Arc::clone(snap);
        tokio::spawn(async move {
            if let Err(e) = lkg.store(&snap).await {
                tracing::warn!(env = %snap.environment, error = %e, "could not write last-known-good");
            }
        });
    }

    /// One poll of a loaded environment; concurrent callers share it.
    async fn poll(&self, e: &Environment) {
        let seen = e.polls.load(Ordering::Acquire);
        let mut state = e.poll.lock().await;
        if e.polls.load(Ordering::Acquire) != seen {
            // A poll finished while we waited for the lock: its result is as
            // fresh as ours would be.
            return;
        }
        let cur = e.snapshot();
        let held = held_of(&cur);
        let PollReport { outcome, sources } = self.main.poll(&e.name, Some(held), &mut state).await;
        let now = now_ms();
        let failed = match outcome {
            PollOutcome::Activate(snap) => {
                let snap: Arc<Snapshot> = Arc::from(snap);
                let version = snap.version;
                self.save(&snap);
                e.current.store(snap);
                e.version_tx.send_replace(version);
                metrics::counter!("flagbelt_env_activations_total").increment(1);
                tracing::info!(env = %e.name, version, "activated new ruleset");
                false
            }
            PollOutcome::Unchanged => {
                if !matches!(cur.origin, Origin::Source { .. })
                    && let Some(label) = confirming_source(&sources, cur.version)
                {
                    // Serving the local copy, and the sources now serve that very
                    // version: it is theirs again (status and metrics stop saying
                    // "fallback"). Rebuilt from its bytes, off the runtime.
                    let bytes = cur.ruleset_bytes.clone();
                    let rebuilt = tokio::task::spawn_blocking(move || {
                        crate::ruleset::codec::load_ruleset(&bytes)
                    })
                    .await;
                    if let Ok(Ok((_, ruleset))) = rebuilt {
                        e.current.store(Arc::new(Snapshot {
                            environment: cur.environment.clone(),
                            version: cur.version,
                            sha256: cur.sha256,
                            published_at_ms: cur.published_at_ms,
                            ruleset,
                            ruleset_bytes: cur.ruleset_bytes.clone(),
                            manifest_bytes: cur.manifest_bytes.clone(),
                            origin: Origin::Source { label },
                            fetched_at: SystemTime::now(),
                        }));
                    }
                }
                false
            }
            PollOutcome::NotFound | PollOutcome::Unavailable => true,
        };
        {
            let mut st = lock(&e.status);
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
        e.polls.fetch_add(1, Ordering::Release);
    }

    fn spawn_refresher(self: &Arc<Self>, e: &Arc<Environment>) {
        let weak_env: Weak<Environment> = Arc::downgrade(e);
        let weak_self: Weak<Self> = Arc::downgrade(self);
        let opts = self.opts.clone();
        tokio::spawn(async move {
            loop {
                let failures = match weak_env.upgrade() {
                    Some(e) => lock(&e.status).consecutive_failures,
                    None => return,
                };
                tokio::time::sleep(next_delay(&opts, failures)).await;
                // Evicted (nobody holds it any more) or shutting down: stop.
                let (Some(e), Some(this)) = (weak_env.upgrade(), weak_self.upgrade()) else {
                    return;
                };
                // Boxed: the poll future is large, and the task holds its
                // state while it sleeps; one per loaded environment adds up.
                Box::pin(this.poll(&e)).await;
            }
        });
    }
}

use super::lkg::LABEL_PREFIX as LKG_LABEL_PREFIX;

/// Polls `refresh_all` runs at once.
const REFRESH_CONCURRENCY: usize = 64;

/// Shortest gap between two polls that `at_least` may trigger (ms).
const MIN_VERSION_POLL_GAP_MS: u64 = 1_000;

/// What a snapshot is, as the fetcher's `held`.
fn held_of(s: &Snapshot) -> Held {
    Held {
        version: s.version,
        sha256: s.sha256,
        published_at_ms: s.published_at_ms,
    }
}

/// The first source that answered with exactly `version`.
fn confirming_source(sources: &[SourceReport], version: u64) -> Option<String> {
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

fn clock_nanos() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

fn unavailable_message(sources: &[SourceReport]) -> String {
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Poison-tolerant lock: the data behind these mutexes is plain status that is
/// valid whatever a panicking holder did.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Per-entry expiry for the negative cache: unknown environments are
/// remembered longer than transient unavailability.
struct NegativeExpiry {
    not_found: Duration,
    unavailable: Duration,
}

impl moka::Expiry<String, EnvError> for NegativeExpiry {
    fn expire_after_create(
        &self,
        _: &String,
        value: &EnvError,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(match value {
            EnvError::NotFound => self.not_found,
            EnvError::Unavailable => self.unavailable,
        })
    }
}

/// One environment in the status report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EnvReport {
    /// Name.
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
            environment: e.name.clone(),
            version: snap.version,
            origin: snap.origin.clone(),
            age_ms: now_ms().saturating_sub(u64::try_from(snap.published_at_ms).unwrap_or(0)),
            preloaded,
            status,
            stale_sources,
        }
    }
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
