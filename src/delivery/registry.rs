//! The registry of environments: loaded on first use, kept while in use,
//! evicted when idle.
//!
//! Owns [`Delivery`]: one coalesced first load however many callers wait
//! (moka's `try_get_with`), the negative cache of unknown (and briefly of
//! unavailable) environments, preloaded environments that are never evicted,
//! read-your-writes (`at_least`), push refreshes, and the first-load fallback
//! to the last-known-good cache or bootstrap folder when no source answers.
//! One environment's polls and refresher are [`Environment`]'s; status and
//! gauges are in [`super::status`]. It must not evaluate flags, write HTTP
//! responses, or activate anything the failover did not verify.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::environment::{Environment, confirming_source, held_of, save};
use super::failover::{Failover, PollOutcome, PollReport, PollState};
use super::lkg::LastKnownGood;
use super::source::SourceKind;
use super::status::unavailable_message;
use super::{Origin, Snapshot};
use crate::ruleset::valid_env_name;

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

/// All environments of this instance, and the policy to load them.
pub struct Delivery {
    main: Failover,
    /// Last-known-good then bootstrap, read only when no source answers.
    fallback: Option<Failover>,
    lkg: Option<Arc<LastKnownGood>>,
    envs: moka::future::Cache<String, Arc<Environment>>,
    /// Preloaded environments: never evicted.
    /// Read on every request, written only by `preload`: a lock-free swap
    /// rather than a mutex every request would take.
    pinned: ArcSwap<HashMap<String, Arc<Environment>>>,
    negative: moka::future::Cache<String, Failure>,
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
        main: Failover,
        fallback: Option<Failover>,
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
        if let Some(failure) = self.negative.get(env).await {
            return Err(failure.error);
        }
        let this = Arc::clone(self);
        let name = env.to_owned();
        let loaded = self
            .envs
            .try_get_with(env.to_owned(), async move { this.load(&name).await })
            .await;
        match loaded {
            Ok(e) => Ok(e),
            Err(failure) => {
                let failure = (*failure).clone();
                let err = failure.error.clone();
                self.negative.insert(env.to_owned(), failure).await;
                Err(err)
            }
        }
    }

    /// Why `env` could not be loaded, in words, while that is remembered (the
    /// negative cache's time): the manifest paths looked for when no source has
    /// it, or what every source answered (a rejection names its reason) when
    /// none answered usably. `fetch` and `serve`'s preload report it.
    pub async fn failure(&self, env: &str) -> Option<String> {
        self.negative.get(env).await.map(|f| f.detail.to_string())
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
        e.poll(&self.main, self.lkg()).await;
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
            .for_each_concurrent(REFRESH_CONCURRENCY, |e| e.poll(&self.main, self.lkg()))
            .await;
        n
    }

    /// Makes sure `env` is at `min_version` or later, polling at most once
    /// (coalesced, and at most once a second per environment) and waiting at
    /// most `wait`. Returns the snapshot serving afterwards; the caller
    /// compares its version (read-your-writes).
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
        e.forced_poll(&self.main, self.lkg(), wait).await;
        Ok(e.snapshot())
    }

    /// Runs the cache's pending housekeeping now (evictions of idle
    /// environments); it also runs on its own as the cache is used.
    pub async fn run_maintenance(&self) {
        self.envs.run_pending_tasks().await;
        self.negative.run_pending_tasks().await;
        self.record_metrics();
    }

    /// The configured sources (for status).
    pub fn failover(&self) -> &Failover {
        &self.main
    }

    /// Where activations are saved, if anywhere.
    pub(super) fn lkg(&self) -> Option<&Arc<LastKnownGood>> {
        self.lkg.as_ref()
    }

    /// Timing and size policy.
    pub(super) fn options(&self) -> &DeliveryOptions {
        &self.opts
    }

    pub(super) fn is_pinned(&self, env: &str) -> bool {
        self.pinned.load().contains_key(env)
    }

    async fn loaded(&self, env: &str) -> Option<Arc<Environment>> {
        if let Some(e) = self.pinned.load().get(env) {
            return Some(Arc::clone(e));
        }
        self.envs.get(env).await
    }

    pub(super) fn all_loaded(&self) -> Vec<Arc<Environment>> {
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
    async fn load(self: &Arc<Self>, env: &str) -> Result<Arc<Environment>, Failure> {
        let fallback = self.load_fallback(env).await;
        let held = fallback.as_ref().map(held_of);
        let mut state = PollState::default();
        let PollReport { outcome, sources } = self.main.poll(env, held, &mut state).await;
        let (snap, problem, outcome_label) = match (outcome, fallback) {
            (PollOutcome::Activate(snap), _) => (Arc::from(snap), None, "source"),
            (PollOutcome::NotFound, _) => {
                metrics::counter!("flagbelt_env_loads_total", "outcome" => "not_found")
                    .increment(1);
                let detail = self.not_found_message(env);
                // Once per name per negative-cache time (the cache answers
                // the requests in between), and the cache is bounded: a storm
                // of requests for one unknown name logs one line.
                tracing::info!(env, %detail, "environment asked for, but no source has it");
                return Err(Failure {
                    error: EnvError::NotFound,
                    detail: detail.into(),
                });
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
                let detail = unavailable_message(&sources);
                tracing::error!(env, message = %detail,
                    "no source answered usably and there is no cached or bootstrap copy");
                return Err(Failure {
                    error: EnvError::Unavailable,
                    detail: detail.into(),
                });
            }
        };
        metrics::counter!("flagbelt_env_loads_total", "outcome" => outcome_label).increment(1);
        save(self.lkg(), &snap);
        let e = Arc::new(Environment::new(snap, state, sources));
        if let Some(message) = problem {
            e.mark_fallback(message);
        }
        e.spawn_refresher(self);
        Ok(e)
    }

    /// "no source has `<every manifest path looked for>`".
    fn not_found_message(&self, env: &str) -> String {
        let looked: Vec<String> = self
            .main
            .sources()
            .iter()
            .map(|s| s.manifest_location(env))
            .collect();
        format!("no source has {}", looked.join(" or "))
    }

    async fn load_fallback(&self, env: &str) -> Option<Snapshot> {
        let fallback = self.fallback.as_ref()?;
        let mut state = PollState::default();
        let report = fallback.poll(env, None, &mut state).await;
        let PollOutcome::Activate(mut snap) = report.outcome else {
            return None;
        };
        // The fallback failover's sources are the cache and the bootstrap
        // folder; which one answered is its kind. Labels are unique within a
        // failover (duplicates are refused at start), so the label finds it.
        let kind = match &snap.origin {
            Origin::Source { label } => fallback
                .sources()
                .iter()
                .find(|s| s.label() == label)
                .map(|s| s.kind()),
            _ => None,
        };
        snap.origin = match kind {
            Some(SourceKind::LastKnownGood) => Origin::LastKnownGood,
            // Anything else a fallback serves is baked into the deployment.
            _ => Origin::Bootstrap,
        };
        Some(*snap)
    }
}

/// Polls `refresh_all` runs at once.
const REFRESH_CONCURRENCY: usize = 64;

/// A failed load, remembered by the negative cache: the error requests get,
/// and the words an operator gets ([`Delivery::failure`]).
#[derive(Debug, Clone)]
struct Failure {
    error: EnvError,
    detail: Arc<str>,
}

/// Per-entry expiry for the negative cache: unknown environments are
/// remembered longer than transient unavailability.
struct NegativeExpiry {
    not_found: Duration,
    unavailable: Duration,
}

impl moka::Expiry<String, Failure> for NegativeExpiry {
    fn expire_after_create(
        &self,
        _: &String,
        value: &Failure,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(match value.error {
            EnvError::NotFound => self.not_found,
            EnvError::Unavailable => self.unavailable,
        })
    }
}
