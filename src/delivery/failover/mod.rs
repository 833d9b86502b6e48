//! Failover and version arbitration across sources.
//!
//! Owns the *policy* of one poll of one environment over an ordered list of
//! [`Source`]s: read every manifest concurrently (conditional on the ETag each
//! source gave last time), verify each one, pick the highest version that
//! verifies, fetch its ruleset with hedged reads, verify that, and hand back a
//! [`Snapshot`] only when everything held. It also says, per source, what that
//! source answered ([`SourceReport`]), for status pages and logs.
//!
//! Must not: touch storage except through [`Source`], decide anything that
//! `ruleset::verify` decides (signatures, digests, version rules are applied by
//! calling it, never re-implemented), activate or cache snapshots (the caller
//! swaps them in), hold a lock across an `.await`, or panic. Metric labels are
//! small fixed sets: never an environment, key or context.
//!
//! # Policy, in order
//! 1. **Manifests, concurrently.** Every source is asked at once, each under its
//!    own [`Source`] deadline. The poll waits at most
//!    [`FailoverOptions::manifest_wait`] in total, then goes on with what arrived,
//!    so a black-holed source never delays a poll by more than that.
//! 2. **Verify each manifest** with [`verify::verify_manifest`]. A rejected one
//!    is reported and never used.
//! 3. **Highest verified version wins** across all sources that answered: a
//!    source that is up but stale cannot hold an instance back. Sources behind
//!    the best version (or behind what is held) are reported `stale`.
//! 4. **Version rule** ([`verify::check_version`], applied, never restated): the
//!    same version and digest as held is [`PollOutcome::Unchanged`]; a lower
//!    version is never activated (unless `check_version` accepts it as a
//!    signed rollback published after what is held); the held
//!    version with another digest is a conflict and that manifest is rejected.
//! 5. **Hedged ruleset read** from the sources that advertised exactly that
//!    version and digest, in configured order: ask the first; after
//!    [`FailoverOptions::hedge_delay`] without an answer, or at once when it fails,
//!    also ask the next. The first bytes that pass [`verify::verify_ruleset`] win.
//! 6. **Fallback**: when no source can deliver a verifying ruleset for the best
//!    version, the next-highest verified version is tried, as long as
//!    `check_version` still accepts it.
//!
//! Time bound of a poll: `manifest_wait`, plus per version tried at most
//! `(advertisers - 1) * hedge_delay` and one [`Source`] deadline for the
//! ruleset. Nothing waits on a source without a deadline.
//!
//! Parts: this module holds the policy (steps 3, 4 and 6) and the hedged
//! ruleset read (step 5); `manifests` the concurrent conditional manifest
//! reads and verification (steps 1 and 2) with the per-environment memory that
//! makes them conditional ([`PollState`]); `report` what a poll tells its
//! caller and the logs (per-source verdicts, staleness, metrics).

mod manifests;
mod report;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt as _};

pub use self::manifests::PollState;
pub use self::report::{PollOutcome, PollReport, SourceReport, Verdict};
use self::report::{log_transitions, reject_metric, source_reports};
use crate::delivery::source::{Source, SourceError};
use crate::delivery::{Origin, Snapshot};
use crate::eval::model;
/// What the caller serves for an environment: the held side of the version rule.
pub use crate::ruleset::verify::Held;
use crate::ruleset::verify::{
    self, Mover, TrustedKeys, VerifiedManifest, VerifyError, VersionDecision,
};
use crate::ruleset::{hex, valid_env_name};
use crate::util::error_chain;

/// Timing of one poll.
#[derive(Debug, Clone)]
pub struct FailoverOptions {
    /// How long the first ruleset read may go unanswered before the next source
    /// that has the same ruleset is asked too. Default 200 ms.
    pub hedge_delay: Duration,
    /// How long a poll waits, in total, for all manifests before it goes on
    /// with those that arrived. Default 1 s.
    pub manifest_wait: Duration,
}

impl Default for FailoverOptions {
    fn default() -> Self {
        Self {
            hedge_delay: Duration::from_millis(200),
            manifest_wait: Duration::from_secs(1),
        }
    }
}

/// Reads one environment from an ordered list of sources and decides what, if
/// anything, to activate. Cheap to share; holds no per-environment state (that
/// is the caller's [`PollState`]).
#[derive(Debug)]
pub struct Failover {
    sources: Vec<Arc<Source>>,
    trusted: TrustedKeys,
    opts: FailoverOptions,
}

/// One source's manifest, interpreted.
enum Answer {
    Manifest {
        manifest: Arc<VerifiedManifest>,
        bytes: Bytes,
    },
    NotFound,
    Failed,
}

/// Sources that advertised the same (version, digest).
struct Offer {
    manifest: Arc<VerifiedManifest>,
    manifest_bytes: Bytes,
    /// Source indexes, in configured order.
    sources: Vec<usize>,
}

impl Offer {
    fn version(&self) -> u64 {
        self.manifest.version()
    }
}

/// Why one ruleset read did not produce a verified model.
enum RulesetFailure {
    Read(SourceError),
    Verify(VerifyError),
    /// The verification task panicked or was cancelled.
    Task,
}

impl Failover {
    /// A failover over `sources` (in failover order), accepting manifests that
    /// satisfy `trusted`.
    pub fn new(sources: Vec<Arc<Source>>, trusted: TrustedKeys, opts: FailoverOptions) -> Self {
        Self {
            sources,
            trusted,
            opts,
        }
    }

    /// The sources, in configured order.
    pub fn sources(&self) -> &[Arc<Source>] {
        &self.sources
    }

    /// Polls `env` once: see the module docs for the policy. `held` is what the
    /// caller serves now; `state` is this environment's memory from the last
    /// poll (updated here). Never fails: problems are in the outcome and the
    /// source reports.
    pub async fn poll(&self, env: &str, held: Option<Held>, state: &mut PollState) -> PollReport {
        let report = self.poll_inner(env, held, state).await;
        metrics::counter!("flagbelt_fetch_polls_total", "outcome" => report.outcome.label())
            .increment(1);
        report
    }

    async fn poll_inner(&self, env: &str, held: Option<Held>, state: &mut PollState) -> PollReport {
        if !valid_env_name(env) {
            // No store can hold it (publishers validate names), so "not found"
            // is exact, and answering without I/O keeps junk names from ever
            // reaching storage.
            return PollReport {
                outcome: PollOutcome::NotFound,
                sources: self
                    .sources
                    .iter()
                    .map(|s| SourceReport {
                        label: s.label().to_owned(),
                        verdict: Verdict::NotAsked,
                        stale: false,
                    })
                    .collect(),
            };
        }
        state.align(env, &self.sources);

        let (answers, mut verdicts) = self.read_manifests(env, state).await;
        let offers = self.group_offers(env, &answers, &mut verdicts);
        // The best version advertised by a manifest that verified (before the
        // held-version rules): what staleness is measured against.
        let best = offers.first().map(Offer::version);
        let outcome = match self.decide(env, held, &offers, &mut verdicts).await {
            Some(outcome) => outcome,
            None if offers.is_empty() && answers.iter().all(|a| matches!(a, Answer::NotFound)) => {
                PollOutcome::NotFound
            }
            None => PollOutcome::Unavailable,
        };

        // Staleness: behind the best advertised version, or behind what is held
        // after this poll (a source that went back without a signed rollback).
        let now_held = match &outcome {
            PollOutcome::Activate(s) => Some(s.version),
            _ => held.map(|h| h.version),
        };
        let reference = best.max(now_held);
        let sources = source_reports(&self.sources, verdicts, &answers, best, reference);
        log_transitions(env, &sources, reference, state);
        PollReport { outcome, sources }
    }

    /// Walks the offers, best first, under the version rule: the first one
    /// that is unchanged, older than held, or delivered decides. `None` when
    /// no offer could be delivered (or there were none).
    async fn decide(
        &self,
        env: &str,
        held: Option<Held>,
        offers: &[Offer],
        verdicts: &mut [Verdict],
    ) -> Option<PollOutcome> {
        for offer in offers {
            match verify::check_version(held, &offer.manifest, Mover::Reader) {
                Ok(VersionDecision::Unchanged) => return Some(PollOutcome::Unchanged),
                Ok(VersionDecision::Activate) => {
                    if let Some(snap) = self.fetch_ruleset(env, offer, verdicts).await {
                        return Some(PollOutcome::Activate(snap));
                    }
                    // Nobody could deliver this version: fall back to the next
                    // one down, which check_version judges again.
                }
                Err(e) if e.is_older() => {
                    // The best reachable version is below what is held and is
                    // not a signed rollback published after it. Offers further down are older
                    // still; a rollback is honoured only when it is the highest
                    // version reachable, i.e. when the publisher's current word.
                    return Some(PollOutcome::Unchanged);
                }
                Err(e) => {
                    // VersionConflict: one version, two rulesets. Ours was
                    // verified when activated, so the offer is the suspect one.
                    for &i in &offer.sources {
                        verdicts[i] = Verdict::Rejected(error_chain(&e));
                    }
                    reject_metric(&e);
                }
            }
        }
        None
    }

    /// Groups verified manifests by (version, digest), best first. When two
    /// sources name different rulesets for one version, one offer is kept
    /// (by a rule that does not depend on which sources answered first) and
    /// the others are rejected.
    fn group_offers(&self, env: &str, answers: &[Answer], verdicts: &mut [Verdict]) -> Vec<Offer> {
        let mut offers: Vec<Offer> = Vec::new();
        for (i, answer) in answers.iter().enumerate() {
            let Answer::Manifest { manifest, bytes } = answer else {
                continue;
            };
            let same = offers.iter_mut().find(|o| {
                o.manifest.version() == manifest.version()
                    && o.manifest.sha256() == manifest.sha256()
            });
            match same {
                Some(o) => o.sources.push(i),
                None => offers.push(Offer {
                    manifest: Arc::clone(manifest),
                    manifest_bytes: bytes.clone(),
                    sources: vec![i],
                }),
            }
        }
        // Highest version first. Same version, different rulesets (two
        // publishers collided): the later publish wins, then the larger digest,
        // so every instance that sees both picks the same one.
        offers.sort_by(|a, b| {
            b.version()
                .cmp(&a.version())
                .then(
                    b.manifest
                        .published_at_ms()
                        .cmp(&a.manifest.published_at_ms()),
                )
                .then(b.manifest.sha256().cmp(&a.manifest.sha256()))
        });
        let mut kept: Vec<Offer> = Vec::with_capacity(offers.len());
        for offer in offers {
            match kept.last() {
                Some(winner) if winner.version() == offer.version() => {
                    let reason = format!(
                        "manifest: version {} names ruleset SHA-256 {}, but another source names {}",
                        offer.version(),
                        hex::encode(&offer.manifest.sha256()),
                        hex::encode(&winner.manifest.sha256()),
                    );
                    tracing::error!(
                        env,
                        version = offer.version(),
                        "sources disagree on the ruleset of one version"
                    );
                    metrics::counter!("flagbelt_fetch_rejected_total", "reason" => "version_conflict")
                        .increment(1);
                    for &i in &offer.sources {
                        verdicts[i] = Verdict::Rejected(reason.clone());
                    }
                }
                _ => kept.push(offer),
            }
        }
        kept
    }

    /// Hedged read of `offer`'s ruleset from the sources that advertised it.
    /// Returns the snapshot built from the first bytes that verify; records
    /// each failing source's verdict.
    async fn fetch_ruleset(
        &self,
        env: &str,
        offer: &Offer,
        verdicts: &mut [Verdict],
    ) -> Option<Box<Snapshot>> {
        let version = offer.version();
        let mut queue = offer.sources.clone().into_iter();
        let mut pending = FuturesUnordered::new();
        pending.push(self.read_ruleset(queue.next()?, env, offer));
        let mut hedge_at = self.next_hedge(&queue);
        loop {
            // Invariant: `pending` is not empty here (pushed above, and every
            // path below that empties it either pushes again or returns).
            let hedge = async move {
                match hedge_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                Some((i, result)) = pending.next() => match result {
                    Ok((bytes, model)) => {
                        let label = self.sources[i].label().to_owned();
                        return Some(Box::new(Snapshot {
                            environment: env.to_owned(),
                            version,
                            sha256: offer.manifest.sha256(),
                            published_at_ms: offer.manifest.published_at_ms(),
                            ruleset: Arc::new(model),
                            ruleset_bytes: bytes,
                            manifest_bytes: offer.manifest_bytes.clone(),
                            origin: Origin::Source { label },
                            fetched_at: SystemTime::now(),
                        }));
                    }
                    Err(failure) => {
                        verdicts[i] = match failure {
                            RulesetFailure::Read(e) => {
                                Verdict::Error(format!("ruleset v{version}: {}", error_chain(&e)))
                            }
                            RulesetFailure::Verify(e) => {
                                reject_metric(&e);
                                Verdict::Rejected(format!("ruleset v{version}: {}", error_chain(&e)))
                            }
                            RulesetFailure::Task => {
                                Verdict::Error(format!("ruleset v{version}: verification task failed"))
                            }
                        };
                        // A failure hedges at once rather than after the delay.
                        if let Some(next) = queue.next() {
                            pending.push(self.read_ruleset(next, env, offer));
                            hedge_at = self.next_hedge(&queue);
                        } else if pending.is_empty() {
                            return None;
                        }
                    }
                },
                () = hedge => {
                    if let Some(next) = queue.next() {
                        pending.push(self.read_ruleset(next, env, offer));
                    }
                    hedge_at = self.next_hedge(&queue);
                }
            }
        }
    }

    /// When to ask the next source, if there is one left.
    fn next_hedge(&self, queue: &std::vec::IntoIter<usize>) -> Option<tokio::time::Instant> {
        (queue.len() > 0).then(|| tokio::time::Instant::now() + self.opts.hedge_delay)
    }

    /// Reads and verifies `offer`'s ruleset from source `i`.
    async fn read_ruleset(
        &self,
        i: usize,
        env: &str,
        offer: &Offer,
    ) -> (usize, Result<(Bytes, model::Ruleset), RulesetFailure>) {
        let source = &self.sources[i];
        let bytes = match source
            .get_ruleset_at_most(
                env,
                offer.manifest.ruleset_path(),
                offer.manifest.ruleset_size(),
            )
            .await
        {
            Ok(b) => b,
            Err(e) => return (i, Err(RulesetFailure::Read(e))),
        };
        // Hashing, decoding and compiling a large ruleset is tens of
        // milliseconds of CPU: keep it off the async workers.
        let manifest = Arc::clone(&offer.manifest);
        let checked = bytes.clone();
        let verified = tokio::task::spawn_blocking(move || {
            verify::verify_ruleset(&manifest, &checked).map(|(_, model)| model)
        })
        .await;
        let result = match verified {
            Ok(Ok(model)) => Ok((bytes, model)),
            Ok(Err(e)) => Err(RulesetFailure::Verify(e)),
            Err(_join) => Err(RulesetFailure::Task),
        };
        (i, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::{authoring, codec, keys, layout, manifest};
    use object_store::memory::InMemory;

    fn ruleset(env: &str, version: u64) -> Vec<u8> {
        let yaml = format!(
            "environment: {env}\nversion: {version}\nflags:\n  f:\n    variants: {{on: true, off: false}}\n    default: on\n"
        );
        let (pb, _) = authoring::compile_yaml(&yaml, 0).unwrap();
        codec::encode_ruleset(&pb)
    }

    async fn publish(src: &Source, env: &str, version: u64, key: &ed25519_dalek::SigningKey) {
        let rs = ruleset(env, version);
        let m = manifest::build(env, version, &rs, 7, false, std::slice::from_ref(key));
        src.put(env, &layout::ruleset_path(version), rs.into())
            .await
            .unwrap();
        src.put(env, layout::MANIFEST, codec::encode_manifest(&m).into())
            .await
            .unwrap();
    }

    fn source(label: &str) -> Arc<Source> {
        Arc::new(Source::new(
            label,
            Arc::new(InMemory::new()),
            "",
            Duration::from_secs(1),
        ))
    }

    #[tokio::test]
    async fn highest_version_wins_and_the_lagging_source_is_stale() {
        let key = keys::new_signing_key();
        let (a, b) = (source("a"), source("b"));
        publish(&a, "prod", 1, &key).await;
        publish(&b, "prod", 2, &key).await;
        let f = Failover::new(
            vec![a, b],
            TrustedKeys::from_keys(vec![key.verifying_key()]),
            FailoverOptions::default(),
        );
        let mut state = PollState::default();
        let r = f.poll("prod", None, &mut state).await;
        let PollOutcome::Activate(snap) = r.outcome else {
            panic!("{r:?}")
        };
        assert_eq!(snap.version, 2);
        assert_eq!(
            snap.origin,
            Origin::Source {
                label: "b".to_owned()
            }
        );
        assert_eq!(r.sources[0].verdict, Verdict::Version(1));
        assert!(r.sources[0].stale);
        assert_eq!(r.sources[1].verdict, Verdict::Version(2));
        assert!(!r.sources[1].stale);

        // Second poll: conditional reads, nothing to do.
        let held = Held {
            published_at_ms: 0,
            version: snap.version,
            sha256: snap.sha256,
        };
        let r = f.poll("prod", Some(held), &mut state).await;
        assert!(matches!(r.outcome, PollOutcome::Unchanged), "{r:?}");
        assert_eq!(r.sources[0].verdict, Verdict::NotModified(1));
        assert_eq!(r.sources[1].verdict, Verdict::NotModified(2));
        assert!(format!("{state:?}").contains("a: v1"));
    }

    #[tokio::test]
    async fn invalid_env_names_are_not_found_without_io() {
        let f = Failover::new(
            vec![source("a")],
            TrustedKeys::none(),
            FailoverOptions::default(),
        );
        let r = f.poll("../etc", None, &mut PollState::default()).await;
        assert!(matches!(r.outcome, PollOutcome::NotFound));
        assert_eq!(r.sources[0].verdict, Verdict::NotAsked);
        assert_eq!(f.sources()[0].health().not_found, 0);
    }

    #[test]
    fn verdicts_serialize_with_a_kind() {
        let v = serde_json::to_value(SourceReport {
            label: "s3://b".into(),
            verdict: Verdict::Version(3),
            stale: false,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"label": "s3://b", "verdict": {"kind": "version", "detail": 3}, "stale": false})
        );
        let v = serde_json::to_value(Verdict::NotFound).unwrap();
        assert_eq!(v, serde_json::json!({"kind": "not_found"}));
    }
}
