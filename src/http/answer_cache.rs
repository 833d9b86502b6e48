//! The server-side answer cache: evaluation answer bodies keyed by the same
//! 128 bits as their ETags, bounded by bytes, with admission filters that keep
//! one-off answers out; and the path memo of `GET /v1/eval`, which answers a
//! repeated path without decoding, authenticating or fingerprinting again.
//!
//! Must not: evaluate flags (it is handed the computation), write headers,
//! keep stale answers (`Flagbelt-Min-Version` misses are never cached), or
//! keep key text (paths are known by their SHA-256 only).

use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use super::errors::ApiError;
use super::etag::ETag;
use crate::delivery::Snapshot;

/// Default size of the server-side answer cache (bodies plus a per-entry
/// overhead), in bytes.
pub const ANSWER_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// Accounted size of one cache entry beyond its body (key, `Bytes` header,
/// moka's bookkeeping), rounded from what an entry with a small body was
/// measured to take.
const ENTRY_OVERHEAD: u64 = 480;

/// Slots of each admission filter (8 bytes each): the budget / 128, a power
/// of two between these bounds (8 MiB: 65,536 slots, 512 KiB). A tag must be
/// asked for again before about `slots` other new tags overwrite its slot:
/// with 65,536 slots and 500 new contexts a second, a tag survives 30 s (a
/// CDN's revalidation interval) with probability e^(-500*30/65536) = 0.8.
const MIN_SEEN_SLOTS: usize = 1 << 12;
const MAX_SEEN_SLOTS: usize = 1 << 20;

/// Server-side cache of evaluation answer bodies, keyed by their ETag's 128
/// bits (environment, version and digest of the ruleset, key id, audience,
/// route shape and the fingerprint of the relevant context attributes), and
/// bounded by bytes.
///
/// An answer is kept only the second time its tag is asked for, within the
/// memory of an admission filter (one tag per slot, overwritten by the next
/// tag hashing there). A stream of never-repeating contexts (most browser
/// traffic behind a CDN) then costs a lookup miss and an atomic store per
/// request (two of each on `GET`, whose path is remembered the same way)
/// instead of an insertion that would only push useful entries out, and a
/// repeated context (a CDN's revalidations, backend SDKs polling for the
/// same user) is answered from memory from its second request on. Concurrent
/// computations of one admitted tag are coalesced: one caller evaluates, the
/// others wait for its body (an evaluation is microseconds, so waiting on the
/// worker thread costs less than a task hop).
///
/// Old versions' entries are never served again (their tags differ) and age
/// out by size and idle time. Must not: hold stale answers (`Flagbelt-Min-
/// Version` misses are never cached) or anything but bodies.
pub(crate) struct AnswerCache {
    cache: Option<moka::sync::Cache<u128, Bytes>>,
    /// `GET /v1/eval` paths (key and context), by their SHA-256 ([`PathKey`]),
    /// and what they were answered with; see [`UrlMemo`].
    urls: Option<moka::sync::Cache<[u8; 32], Arc<UrlMemo>>>,
    seen_tags: Box<[std::sync::atomic::AtomicU64]>,
    seen_paths: Box<[std::sync::atomic::AtomicU64]>,
}

/// A `GET /v1/eval` request path as the path memo knows it: its SHA-256, so
/// the memo keeps no key text and compares digests, never secrets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PathKey([u8; 32]);

impl PathKey {
    /// The key of `path` (the raw request path, key and context included).
    pub(crate) fn of(path: &str) -> Self {
        Self(Sha256::digest(path.as_bytes()).into())
    }

    /// Slot and check bits for the admission filter.
    fn bits(&self) -> u128 {
        let mut first = [0u8; 16];
        first.copy_from_slice(&self.0[..16]);
        u128::from_be_bytes(first)
    }
}

/// What one `GET /v1/eval/{key}/{context}` path was answered with: the
/// snapshot, the key id and the ETag. While that snapshot is still the
/// environment's current one, the same path authenticates the same way and
/// gets the same tag (both are functions of the path and the snapshot), so a
/// repeat of the path is answered (a 304, or the cached body) without
/// decoding the context, checking the secret or fingerprinting again: the
/// auth result is, in effect, cached per ruleset version. Paths are known by
/// their SHA-256 ([`PathKey`]): no other path, so no other key, can match, and
/// no key text is kept. A revoked key stops working when the snapshot without
/// it is loaded, as on the full path.
#[derive(Debug)]
pub(crate) struct UrlMemo {
    /// Compared by address with the current snapshot; weak, so a memo never
    /// keeps an old ruleset alive (and the address cannot be reused while the
    /// memo exists).
    snapshot: std::sync::Weak<Snapshot>,
    env: Box<str>,
    key_id: Box<str>,
    etag: ETag,
}

impl UrlMemo {
    /// The environment the path's key names.
    pub(crate) fn env(&self) -> &str {
        &self.env
    }

    /// The key id the path authenticated as.
    pub(crate) fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The answer's tag.
    pub(crate) fn etag(&self) -> &ETag {
        &self.etag
    }

    /// True when `current` is the snapshot this memo was made with.
    pub(crate) fn made_with(&self, current: &Arc<Snapshot>) -> bool {
        std::ptr::eq(self.snapshot.as_ptr(), Arc::as_ptr(current))
    }
}

/// Accounted size of one path memo beyond its names (key, `Arc`, the tag's
/// header value, moka's bookkeeping).
const URL_MEMO_OVERHEAD: u64 = 600;

/// The weight of a remembered path.
fn url_weight(_: &[u8; 32], m: &Arc<UrlMemo>) -> u32 {
    let n = m.env.len() + m.key_id.len();
    u32::try_from(n as u64 + URL_MEMO_OVERHEAD).unwrap_or(u32::MAX)
}

/// An admission filter of `slots` empty slots.
fn filter(slots: usize) -> Box<[std::sync::atomic::AtomicU64]> {
    (0..slots)
        .map(|_| std::sync::atomic::AtomicU64::new(0))
        .collect()
}

/// True when `id` was the last id seen in its slot of `seen`; else remembers
/// it there.
fn admit(seen: &[std::sync::atomic::AtomicU64], id: u128) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    if seen.is_empty() {
        return false;
    }
    // Low bits pick the slot (the length is a power of two), high bits are
    // the check (never 0, the empty slot). Truncation is the point.
    #[allow(clippy::cast_possible_truncation)]
    let slot = (id as usize) & (seen.len() - 1);
    #[allow(clippy::cast_possible_truncation)]
    let check = ((id >> 64) as u64) | 1;
    let Some(cell) = seen.get(slot) else {
        return false;
    };
    if cell.load(Relaxed) == check {
        true
    } else {
        cell.store(check, Relaxed);
        false
    }
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerCache")
            .field("enabled", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

/// Entries unused this long are dropped even when there is room.
const ANSWER_IDLE: std::time::Duration = std::time::Duration::from_secs(120);

impl AnswerCache {
    /// A cache of at most `max_bytes`, as accounted (bodies and memos with
    /// their overheads): three quarters for bodies, a quarter for path memos
    /// (about 3,000 paths of the default 8 MiB), plus the two admission
    /// filters (2 x 512 KiB at 8 MiB). 0 turns caching off.
    pub(crate) fn new(max_bytes: u64) -> Self {
        let cache = (max_bytes > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity((max_bytes - max_bytes / 4).max(1))
                .weigher(|_: &u128, body: &Bytes| {
                    u32::try_from(body.len() as u64 + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
                })
                .time_to_idle(ANSWER_IDLE)
                .build()
        });
        let urls = (max_bytes > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity((max_bytes / 4).max(1))
                .weigher(url_weight)
                .time_to_idle(ANSWER_IDLE)
                .build()
        });
        let slots = if max_bytes == 0 {
            0
        } else {
            usize::try_from(max_bytes / 128)
                .unwrap_or(MAX_SEEN_SLOTS)
                .clamp(MIN_SEEN_SLOTS, MAX_SEEN_SLOTS)
                .next_power_of_two()
        };
        Self {
            cache,
            urls,
            seen_tags: filter(slots),
            seen_paths: filter(slots),
        }
    }

    /// The body of the answer tagged `tag`: from the cache, or from `compute`
    /// (kept when the tag was seen before).
    pub(crate) fn get_or(
        &self,
        tag: &ETag,
        compute: impl FnOnce() -> Result<Bytes, ApiError>,
    ) -> Result<Bytes, ApiError> {
        let Some(cache) = &self.cache else {
            return compute();
        };
        if let Some(body) = cache.get(&tag.id()) {
            metrics::counter!("flagbelt_answer_cache_total", "outcome" => "hit").increment(1);
            return Ok(body);
        }
        if !admit(&self.seen_tags, tag.id()) {
            metrics::counter!("flagbelt_answer_cache_total", "outcome" => "miss").increment(1);
            return compute();
        }
        metrics::counter!("flagbelt_answer_cache_total", "outcome" => "admitted").increment(1);
        // Kept at its exact size: a body grown by doubling could hold twice
        // what the weigher counts.
        cache
            .try_get_with(tag.id(), || compute().map(|b| Bytes::copy_from_slice(&b)))
            .map_err(|e| ApiError::internal("computing a cached answer", e.to_string()))
    }

    /// The body cached for `tag`, if any (never computes).
    pub(crate) fn peek(&self, tag: &ETag) -> Option<Bytes> {
        let body = self.cache.as_ref()?.get(&tag.id());
        if body.is_some() {
            metrics::counter!("flagbelt_answer_cache_total", "outcome" => "hit").increment(1);
        }
        body
    }

    /// What the path keyed `path` was last answered with.
    pub(crate) fn recall(&self, path: &PathKey) -> Option<Arc<UrlMemo>> {
        self.urls.as_ref()?.get(&path.0)
    }

    /// Remembers that the path keyed `path` authenticated as `key_id` against
    /// `snapshot` and was answered with `etag`: from the path's second answer
    /// on (its own admission filter, like bodies').
    pub(crate) fn remember(
        &self,
        path: &PathKey,
        snapshot: &Arc<Snapshot>,
        key_id: &str,
        etag: &ETag,
    ) {
        let Some(urls) = &self.urls else {
            return;
        };
        if !admit(&self.seen_paths, path.bits()) {
            return;
        }
        urls.insert(
            path.0,
            Arc::new(UrlMemo {
                snapshot: Arc::downgrade(snapshot),
                env: snapshot.environment.as_str().into(),
                key_id: key_id.into(),
                etag: etag.clone(),
            }),
        );
    }

    /// Entries and weighed bytes now held (after pending maintenance).
    #[cfg(test)]
    fn held(&self) -> (u64, u64) {
        self.cache.as_ref().map_or((0, 0), |c| {
            c.run_pending_tasks();
            (c.entry_count(), c.weighted_size())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use http::HeaderValue;

    use super::*;

    fn tagged(id: u128) -> ETag {
        ETag::for_test(HeaderValue::from_static("W/\"x\""), id)
    }

    #[test]
    fn answers_are_kept_from_their_second_request_and_bounded_by_bytes() {
        let cache = AnswerCache::new(4 * (1000 + ENTRY_OVERHEAD));
        let calls = std::cell::Cell::new(0);
        let body = |n: u8| {
            calls.set(calls.get() + 1);
            Ok::<_, ApiError>(Bytes::from(vec![n; 1000]))
        };
        // First sight: computed, not kept; second: computed and kept; third: a hit.
        assert_eq!(cache.get_or(&tagged(7), || body(1)).unwrap()[0], 1);
        assert_eq!(cache.held().0, 0);
        assert_eq!(cache.get_or(&tagged(7), || body(2)).unwrap()[0], 2);
        assert_eq!(cache.get_or(&tagged(7), || body(3)).unwrap()[0], 2);
        assert_eq!(calls.get(), 2);
        assert_eq!(cache.held(), (1, 1000 + ENTRY_OVERHEAD));
        // Another tag hashing to the same admission slot is not kept on its
        // first request either.
        let other = 7 + (2u128 << 64);
        cache.get_or(&tagged(other), || body(4)).unwrap();
        assert_eq!(cache.held().0, 1);
        // Many repeated tags: the byte bound holds.
        for id in 100..140u128 {
            for _ in 0..2 {
                cache.get_or(&tagged(id), || body(5)).unwrap();
            }
        }
        let (_, bytes) = cache.held();
        assert!(bytes <= 4 * (1000 + ENTRY_OVERHEAD), "{bytes} bytes held");
    }

    #[test]
    fn a_failed_computation_is_not_kept_and_off_means_always_compute() {
        let cache = AnswerCache::new(1 << 20);
        cache
            .get_or(&tagged(9), || Ok(Bytes::from_static(b"a")))
            .unwrap();
        let err = cache.get_or(&tagged(9), || Err(ApiError::internal("test", "boom")));
        assert!(err.is_err());
        assert_eq!(cache.held().0, 0);
        assert_eq!(
            &cache
                .get_or(&tagged(9), || Ok(Bytes::from_static(b"b")))
                .unwrap()[..],
            b"b"
        );
        let off = AnswerCache::new(0);
        for n in 0..3u8 {
            let got = off.get_or(&tagged(1), || Ok(Bytes::from(vec![n]))).unwrap();
            assert_eq!(got[0], n, "never cached when off");
        }
    }

    fn snapshot() -> Arc<Snapshot> {
        let yaml = "environment: prod\nversion: 1\nflags: {}\n";
        let (_, ruleset) = crate::ruleset::authoring::compile_yaml(yaml, 0).unwrap();
        Arc::new(Snapshot {
            environment: "prod".to_owned(),
            version: 1,
            sha256: [0; 32],
            published_at_ms: 0,
            ruleset: Arc::new(ruleset),
            ruleset_bytes: Bytes::new(),
            manifest_bytes: Bytes::new(),
            origin: crate::delivery::Origin::Bootstrap,
            fetched_at: SystemTime::now(),
        })
    }

    #[test]
    fn paths_are_remembered_from_their_second_answer_with_their_snapshot() {
        let snap = snapshot();
        let cache = AnswerCache::new(1 << 20);
        let path = &PathKey::of("/v1/eval/fbp.prod.web.s3cr3t/eyJhIjoxfQ");
        cache.remember(path, &snap, "web", &tagged(5));
        assert!(cache.recall(path).is_none(), "not on the first answer");
        cache.remember(path, &snap, "web", &tagged(5));
        let memo = cache.recall(path).expect("kept on the second");
        assert!(memo.made_with(&snap));
        assert_eq!(
            (memo.env(), memo.key_id(), memo.etag().id()),
            ("prod", "web", 5)
        );
        assert!(
            cache
                .recall(&PathKey::of("/v1/eval/fbp.prod.web.s3cr3u/eyJhIjoxfQ"))
                .is_none()
        );
        // Another snapshot, even of the same version, is not the one.
        let reloaded = snapshot();
        assert!(!memo.made_with(&reloaded));
        assert!(AnswerCache::new(0).recall(path).is_none());
    }
}
