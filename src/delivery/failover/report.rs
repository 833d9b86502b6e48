//! What a poll tells its caller and the logs: the outcome, one verdict per
//! source with its staleness, rejection metrics, and source problems logged
//! on their transitions only.
//!
//! Must not: decide anything (the verdicts are given to it); metric labels
//! stay small fixed sets, never an environment, key or context.

use std::sync::Arc;

use super::Answer;
use super::manifests::PollState;
use crate::delivery::Snapshot;
use crate::delivery::source::Source;
use crate::ruleset::codec::LoadError;
use crate::ruleset::verify::VerifyError;

/// The result of one poll: what to do, and what each source said.
#[derive(Debug)]
pub struct PollReport {
    /// What the caller should do.
    pub outcome: PollOutcome,
    /// One report per source, in configured order.
    pub sources: Vec<SourceReport>,
}

/// What a poll decided.
#[derive(Debug)]
pub enum PollOutcome {
    /// Nothing to activate; keep serving what is held. Also the answer when the
    /// reachable sources are all behind what is held, and when a newer version
    /// is advertised but its ruleset cannot be delivered while the held one is
    /// still advertised (the source reports say why).
    Unchanged,
    /// A verified ruleset to activate (newer than held, or a signed rollback).
    Activate(Box<Snapshot>),
    /// Every source answered and none has this environment's manifest (or the
    /// name cannot be an environment): safe to negative-cache.
    NotFound,
    /// Nothing usable: errors, timeouts, rejections, or no deliverable ruleset.
    Unavailable,
}

impl PollOutcome {
    /// A fixed metric label for the outcome.
    pub(super) fn label(&self) -> &'static str {
        match self {
            Self::Unchanged => "unchanged",
            Self::Activate(_) => "activate",
            Self::NotFound => "not_found",
            Self::Unavailable => "unavailable",
        }
    }
}

/// What one source said in one poll.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceReport {
    /// The source's label (no credentials).
    pub label: String,
    /// What it answered.
    pub verdict: Verdict,
    /// It answered, but is behind the best version seen (or behind what is
    /// held), or lacks the environment that another source has.
    pub stale: bool,
}

/// One source's answer in one poll.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Verdict {
    /// A manifest that verified, with its version.
    Version(u64),
    /// The manifest did not change since the last poll (304, or 200 with the
    /// same ETag); the version is the one it had then.
    NotModified(u64),
    /// The environment's manifest does not exist there.
    NotFound,
    /// The source failed or did not answer in time (manifest or ruleset read).
    Error(String),
    /// The source answered with a manifest or ruleset that failed verification.
    Rejected(String),
    /// The source was not asked (the environment name is invalid).
    NotAsked,
}

/// One report per source, in configured order: its verdict, and whether it is
/// stale against `reference` (the best advertised version or the one held
/// after the poll, whichever is higher). A source without the environment is
/// stale when another one advertised it (`best`).
pub(super) fn source_reports(
    sources: &[Arc<Source>],
    verdicts: Vec<Verdict>,
    answers: &[Answer],
    best: Option<u64>,
    reference: Option<u64>,
) -> Vec<SourceReport> {
    verdicts
        .into_iter()
        .zip(answers)
        .zip(sources)
        .map(|((verdict, answer), source)| {
            let stale = match (answer, reference) {
                (Answer::Manifest { manifest, .. }, Some(r)) => {
                    // A manifest rejected for a conflict says nothing about lag.
                    manifest.version() < r && !matches!(verdict, Verdict::Rejected(_))
                }
                (Answer::NotFound, Some(_)) => best.is_some(),
                _ => false,
            };
            SourceReport {
                label: source.label().to_owned(),
                verdict,
                stale,
            }
        })
        .collect()
}

/// Counts one rejected object under a fixed reason label.
pub(super) fn reject_metric(e: &VerifyError) {
    let reason = match e {
        VerifyError::Decode(_) | VerifyError::Load(LoadError::Decode(_)) => "decode",
        VerifyError::Load(LoadError::Invalid(_)) => "invalid",
        VerifyError::UnsupportedFormat { .. } => "format",
        VerifyError::EnvMismatch { .. } => "environment",
        VerifyError::VersionMismatch { .. } => "version_mismatch",
        VerifyError::BadDigestLength { .. } | VerifyError::DigestMismatch { .. } => "digest",
        VerifyError::SizeMismatch { .. } => "size",
        VerifyError::BadSignature { .. } => "signature",
        VerifyError::Unsigned { .. } => "unsigned",
        VerifyError::BadPath { .. } => "path",
        VerifyError::VersionConflict { .. } => "version_conflict",
        VerifyError::OlderVersion { .. } | VerifyError::StaleRollback { .. } => "older_version",
    };
    metrics::counter!("flagbelt_fetch_rejected_total", "reason" => reason).increment(1);
}

/// Logs each source's problem at warn when it starts or changes, and at info
/// when it ends. Why transitions: a poll loop over thousands of environments
/// would otherwise repeat the same warning every few seconds; the metrics and
/// the source reports still show every poll.
pub(super) fn log_transitions(
    env: &str,
    sources: &[SourceReport],
    reference: Option<u64>,
    state: &mut PollState,
) {
    for (report, slot) in sources.iter().zip(&mut state.slots) {
        let problem = match &report.verdict {
            Verdict::Rejected(reason) => Some(format!("rejected: {reason}")),
            Verdict::Error(e) => Some(format!("unavailable: {e}")),
            Verdict::Version(v) | Verdict::NotModified(v) if report.stale => Some(format!(
                "stale: has version {v}, best known is {}",
                reference.unwrap_or(0)
            )),
            Verdict::NotFound if report.stale => {
                Some("stale: has no manifest, but another source does".to_owned())
            }
            _ => None,
        };
        if problem == slot.warned {
            continue;
        }
        match &problem {
            Some(p) => tracing::warn!(env, source = %report.label, problem = %p, "source problem"),
            None => tracing::info!(env, source = %report.label, "source recovered"),
        }
        slot.warned = problem;
    }
}
