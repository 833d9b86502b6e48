//! The manifest half of a poll: every source's manifest read concurrently and
//! conditionally, each verified once, and the per-environment memory
//! ([`PollState`]) that makes the next read conditional.
//!
//! Must not: choose between sources or versions (the parent module does), or
//! wait on a source past `manifest_wait`.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt as _};

use super::report::{Verdict, reject_metric};
use super::{Answer, Failover};
use crate::delivery::source::{Fetched, Source, SourceError};
use crate::ruleset::verify::{self, VerifiedManifest};
use crate::util::error_chain;

/// Per-environment memory of what each source said last (ETag, and the
/// verified manifest or the reason it was rejected), so the next poll is a
/// conditional GET; owned by the caller.
///
/// Use one `PollState` per environment and [`Failover`]. Given another
/// environment or a failover with other sources, it forgets everything and the
/// next poll reads every manifest in full.
#[derive(Default)]
pub struct PollState {
    env: String,
    pub(super) slots: Vec<Slot>,
}

impl fmt::Debug for PollState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The manifest bytes are noise in a debug print; say what each source said.
        let mut list = f.debug_list();
        for s in &self.slots {
            let said = match s.memory.as_ref().map(|m| &m.said) {
                Some(Said::Verified { manifest, .. }) => format!("v{}", manifest.version()),
                Some(Said::Rejected { reason, .. }) => format!("rejected: {reason}"),
                None => "-".to_owned(),
            };
            let etag = s.memory.as_ref().and_then(|m| m.etag.as_deref());
            list.entry(&format_args!("{}: {said} (etag {etag:?})", s.label));
        }
        list.finish()?;
        write!(f, " for {:?}", self.env)
    }
}

/// What one source said last time, per slot (same index as the sources).
pub(super) struct Slot {
    label: String,
    memory: Option<Memory>,
    /// The problem last logged at warn for this source, so a persistent problem
    /// is logged once (and its end once), not on every poll.
    pub(super) warned: Option<String>,
}

pub(super) struct Memory {
    /// The ETag to send as `If-None-Match` (absent when the store sent none).
    etag: Option<String>,
    said: Said,
}

pub(super) enum Said {
    Verified {
        manifest: Arc<VerifiedManifest>,
        bytes: Bytes,
    },
    /// Remembered so that a 304 for a bad manifest stays a rejection without
    /// re-reading (and re-counting) the same object.
    Rejected { reason: String },
}

impl PollState {
    /// Forgets everything when the environment or the source list changed.
    pub(super) fn align(&mut self, env: &str, sources: &[Arc<Source>]) {
        let same = self.env == env
            && self.slots.len() == sources.len()
            && self
                .slots
                .iter()
                .zip(sources)
                .all(|(slot, src)| slot.label == src.label());
        if !same {
            self.env = env.to_owned();
            self.slots = sources
                .iter()
                .map(|s| Slot {
                    label: s.label().to_owned(),
                    memory: None,
                    warned: None,
                })
                .collect();
        }
    }
}

impl Failover {
    /// Reads every manifest concurrently for at most `manifest_wait`, and
    /// interprets each answer (updating `state`).
    pub(super) async fn read_manifests(
        &self,
        env: &str,
        state: &mut PollState,
    ) -> (Vec<Answer>, Vec<Verdict>) {
        let deadline = tokio::time::Instant::now() + self.opts.manifest_wait;
        let mut pending: FuturesUnordered<_> = self
            .sources
            .iter()
            .enumerate()
            .map(|(i, src)| {
                let src = Arc::clone(src);
                let env = env.to_owned();
                let etag = state.slots[i].memory.as_ref().and_then(|m| m.etag.clone());
                // Spawned, not just polled here: a read still running when
                // manifest_wait ends is detached rather than cancelled, so it
                // finishes under its own Source deadline and the source's health
                // counters record the timeout. Its answer is not used.
                let task =
                    tokio::spawn(async move { src.get_manifest(&env, etag.as_deref()).await });
                async move { (i, task.await) }
            })
            .collect();
        let mut raw: Vec<Option<_>> = self.sources.iter().map(|_| None).collect();
        while let Ok(Some((i, result))) = tokio::time::timeout_at(deadline, pending.next()).await {
            raw[i] = Some(result);
        }
        drop(pending);

        let mut answers = Vec::with_capacity(raw.len());
        let mut verdicts = Vec::with_capacity(raw.len());
        for (i, result) in raw.into_iter().enumerate() {
            let slot = &mut state.slots[i];
            let (answer, verdict) = match result {
                None => (
                    Answer::Failed,
                    Verdict::Error(format!("no answer within {:?}", self.opts.manifest_wait)),
                ),
                Some(Err(_join)) => (
                    Answer::Failed,
                    Verdict::Error("manifest read task failed".to_owned()),
                ),
                Some(Ok(Err(SourceError::NotFound))) => {
                    slot.memory = None;
                    (Answer::NotFound, Verdict::NotFound)
                }
                // Keep the memory: the ETag is still right once the source is back.
                Some(Ok(Err(e))) => (Answer::Failed, Verdict::Error(error_chain(&e))),
                Some(Ok(Ok(Fetched::NotModified))) => match slot.memory.as_ref().map(|m| &m.said) {
                    Some(Said::Verified { manifest, bytes }) => (
                        Answer::Manifest {
                            manifest: Arc::clone(manifest),
                            bytes: bytes.clone(),
                        },
                        Verdict::NotModified(manifest.version()),
                    ),
                    Some(Said::Rejected { reason }) => {
                        (Answer::Failed, Verdict::Rejected(reason.clone()))
                    }
                    None => {
                        // Cannot happen (no ETag was sent), but a store could
                        // misbehave: read in full next time.
                        slot.memory = None;
                        (
                            Answer::Failed,
                            Verdict::Error("not modified, but nothing remembered".to_owned()),
                        )
                    }
                },
                Some(Ok(Ok(Fetched::Object { bytes, etag }))) => {
                    self.interpret_manifest(env, slot, bytes, etag)
                }
            };
            answers.push(answer);
            verdicts.push(verdict);
        }
        (answers, verdicts)
    }

    /// Verifies fresh manifest bytes from one source and remembers the result.
    fn interpret_manifest(
        &self,
        env: &str,
        slot: &mut Slot,
        bytes: Bytes,
        etag: Option<String>,
    ) -> (Answer, Verdict) {
        // A store that ignores If-None-Match and changes ETags on identical
        // content (re-uploads) still gets no second signature check.
        if let Some(Memory {
            said:
                Said::Verified {
                    manifest,
                    bytes: old,
                },
            ..
        }) = &slot.memory
            && *old == bytes
        {
            let manifest = Arc::clone(manifest);
            return remember_verified(slot, etag, manifest, bytes);
        }
        match verify::verify_manifest(&bytes, env, &self.trusted) {
            Ok(m) => remember_verified(slot, etag, Arc::new(m), bytes),
            Err(e) => {
                reject_metric(&e);
                let reason = format!("manifest: {}", error_chain(&e));
                slot.memory = Some(Memory {
                    etag,
                    said: Said::Rejected {
                        reason: reason.clone(),
                    },
                });
                (Answer::Failed, Verdict::Rejected(reason))
            }
        }
    }
}

/// Remembers a verified manifest (and the ETag it came with) for the next
/// poll, and answers with it.
fn remember_verified(
    slot: &mut Slot,
    etag: Option<String>,
    manifest: Arc<VerifiedManifest>,
    bytes: Bytes,
) -> (Answer, Verdict) {
    let version = manifest.version();
    slot.memory = Some(Memory {
        etag,
        said: Said::Verified {
            manifest: Arc::clone(&manifest),
            bytes: bytes.clone(),
        },
    });
    (
        Answer::Manifest { manifest, bytes },
        Verdict::Version(version),
    )
}
