//! Failover, version arbitration and last-known-good, under injected faults.
//!
//! Every source is an `InMemory` store behind [`FaultyStore`], which can fail,
//! black-hole, delay, ignore `If-None-Match`, and counts reads per path. The
//! fixtures are real: YAML compiled with `authoring::compile_yaml`, encoded,
//! and described by manifests signed with a fresh Ed25519 key. Every test
//! checks what was activated (or that nothing was), what each source report
//! says, and that nothing bad or older was ever activated.

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

// tokio's clock: virtual in the paused-time tests, real in the others.
use tokio::time::Instant;

use ed25519_dalek::SigningKey;
use object_store::ObjectStore;
use prost::Message as _;

use flagbelt::delivery::Origin;
use flagbelt::delivery::Snapshot;
use flagbelt::delivery::failover::{
    Failover, FailoverOptions, Held, PollOutcome, PollReport, PollState, Verdict,
};
use flagbelt::delivery::faults::{FaultyStore, Mode};
use flagbelt::delivery::lkg::LastKnownGood;
use flagbelt::delivery::source::Source;
use flagbelt::ruleset::verify::TrustedKeys;
use flagbelt::ruleset::{authoring, codec, keys, manifest};

// ------------------------------------------------------------ fault injection

// ------------------------------------------------------------------ fixtures

const ENV: &str = "prod";
const PREFIX: &str = "flags";

/// Ruleset bytes for `version`; `variant` (`aa` or `bb`, same length) picks the
/// default, so two rulesets of one version can differ at the same size.
fn ruleset_bytes(env: &str, version: u64, variant: &str) -> Vec<u8> {
    let yaml = format!(
        "environment: {env}\nversion: {version}\nflags:\n  color:\n    client: true\n    variants: {{aa: red, bb: blu}}\n    default: {variant}\n"
    );
    let (pb, _) = authoring::compile_yaml(&yaml, 0).expect("fixture YAML compiles");
    codec::encode_ruleset(&pb)
}

fn manifest_bytes(
    version: u64,
    ruleset: &[u8],
    published_at_ms: i64,
    rollback: bool,
    key: &SigningKey,
) -> Vec<u8> {
    codec::encode_manifest(&manifest::build(
        ENV,
        version,
        ruleset,
        published_at_ms,
        rollback,
        std::slice::from_ref(key),
    ))
}

fn path(relative: &str) -> String {
    format!("{PREFIX}/{ENV}/{relative}")
}

/// Sources over fault-injecting stores, and the publisher's key.
struct Rig {
    stores: Vec<Arc<FaultyStore>>,
    sources: Vec<Arc<Source>>,
    key: SigningKey,
}

impl Rig {
    fn new(n: usize, source_timeout: Duration) -> Self {
        let stores: Vec<Arc<FaultyStore>> = (0..n).map(|_| Arc::new(FaultyStore::new())).collect();
        let sources = stores
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let store: Arc<dyn ObjectStore> = Arc::clone(s) as Arc<dyn ObjectStore>;
                Arc::new(Source::new(
                    format!("mem://store{i}/{PREFIX}"),
                    store,
                    PREFIX,
                    source_timeout,
                ))
            })
            .collect();
        Self {
            stores,
            sources,
            key: keys::new_signing_key(),
        }
    }

    fn trusted(&self) -> TrustedKeys {
        TrustedKeys::from_keys(vec![self.key.verifying_key()])
    }

    fn fetcher(&self, opts: FailoverOptions) -> Failover {
        Failover::new(self.sources.clone(), self.trusted(), opts)
    }

    fn label(&self, i: usize) -> String {
        self.sources[i].label().to_owned()
    }

    /// Publishes `version` to store `i` as the pipeline does: ruleset, then
    /// manifest. Returns the ruleset bytes.
    async fn publish(&self, i: usize, version: u64) -> Vec<u8> {
        self.publish_with(i, version, "aa", 1_000).await
    }

    async fn publish_with(
        &self,
        i: usize,
        version: u64,
        variant: &str,
        published_at_ms: i64,
    ) -> Vec<u8> {
        let rs = ruleset_bytes(ENV, version, variant);
        let m = manifest_bytes(version, &rs, published_at_ms, false, &self.key);
        self.stores[i]
            .put_raw(&path(&manifest::ruleset_path(version)), rs.clone())
            .await
            .expect("in-memory put");
        self.stores[i]
            .put_raw(&path("manifest.pb"), m)
            .await
            .expect("in-memory put");
        rs
    }
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

fn held(snap: &Snapshot) -> Held {
    Held {
        published_at_ms: snap.published_at_ms,
        version: snap.version,
        sha256: snap.sha256,
    }
}

/// The activated snapshot; fails the test for any other outcome.
#[track_caller]
fn activated(report: &PollReport) -> &Snapshot {
    match &report.outcome {
        PollOutcome::Activate(s) => s,
        other => panic!(
            "expected an activation, got {other:?}; sources {:?}",
            report.sources
        ),
    }
}

#[track_caller]
fn assert_activated(report: &PollReport, version: u64, ruleset: &[u8], from: &str) {
    let s = activated(report);
    assert_eq!(s.version, version);
    assert_eq!(s.environment, ENV);
    assert_eq!(
        s.sha256,
        sha(ruleset),
        "activated bytes are the published ones"
    );
    assert_eq!(&s.ruleset_bytes[..], ruleset);
    assert_eq!(
        s.origin,
        Origin::Source {
            label: from.to_owned()
        }
    );
}

#[track_caller]
fn assert_outcome(report: &PollReport, expected: &str) {
    let got = match &report.outcome {
        PollOutcome::Unchanged => "unchanged",
        PollOutcome::Activate(_) => "activate",
        PollOutcome::NotFound => "not_found",
        PollOutcome::Unavailable => "unavailable",
    };
    assert_eq!(got, expected, "sources: {:?}", report.sources);
}

#[track_caller]
fn assert_error_containing(v: &Verdict, text: &str) {
    match v {
        Verdict::Error(e) => assert!(e.contains(text), "{e:?} should contain {text:?}"),
        other => panic!("expected Error containing {text:?}, got {other:?}"),
    }
}

#[track_caller]
fn assert_rejected_containing(v: &Verdict, text: &str) {
    match v {
        Verdict::Rejected(e) => assert!(e.contains(text), "{e:?} should contain {text:?}"),
        other => panic!("expected Rejected containing {text:?}, got {other:?}"),
    }
}

const SECOND: Duration = Duration::from_secs(1);

// --------------------------------------------------------------- failover

#[tokio::test]
async fn erroring_primary_fails_over_to_the_secondary() {
    let rig = Rig::new(2, SECOND);
    let rs = rig.publish(0, 1).await;
    rig.publish(1, 1).await;
    rig.stores[0].set_mode(Mode::Error);

    let r = rig
        .fetcher(FailoverOptions::default())
        .poll(ENV, None, &mut PollState::default())
        .await;
    assert_activated(&r, 1, &rs, &rig.label(1));
    assert_error_containing(&r.sources[0].verdict, "injected 500");
    assert_eq!(r.sources[1].verdict, Verdict::Version(1));
    assert!(!r.sources[0].stale && !r.sources[1].stale);
    assert_eq!(r.sources[0].label, rig.label(0));
    assert_eq!(rig.stores[0].reads("rulesets/1.pb"), 0);
}

#[tokio::test(start_paused = true)]
async fn black_holed_primary_delays_a_poll_by_at_most_manifest_wait() {
    // The source deadline (5 s) is longer than manifest_wait (1 s): the poll's
    // own wait is what bounds it.
    let rig = Rig::new(2, Duration::from_secs(5));
    let rs = rig.publish(0, 1).await;
    rig.publish(1, 1).await;
    rig.stores[0].set_mode(Mode::BlackHole);

    let opts = FailoverOptions::default();
    let wait = opts.manifest_wait;
    let started = Instant::now();
    let r = rig
        .fetcher(opts)
        .poll(ENV, None, &mut PollState::default())
        .await;
    let elapsed = started.elapsed();
    eprintln!("black-holed primary: poll took {elapsed:?} (manifest_wait {wait:?})");
    assert!(elapsed >= wait, "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    assert_activated(&r, 1, &rs, &rig.label(1));
    assert_error_containing(&r.sources[0].verdict, "no answer within 1s");
    assert_eq!(r.sources[1].verdict, Verdict::Version(1));
}

#[tokio::test(start_paused = true)]
async fn black_hole_is_cut_by_the_source_deadline() {
    let rig = Rig::new(2, Duration::from_millis(300));
    let rs = rig.publish(0, 1).await;
    rig.publish(1, 1).await;
    rig.stores[0].set_mode(Mode::BlackHole);

    let started = Instant::now();
    let r = rig
        .fetcher(FailoverOptions::default())
        .poll(ENV, None, &mut PollState::default())
        .await;
    let elapsed = started.elapsed();
    eprintln!("black-holed primary, 300 ms source deadline: poll took {elapsed:?}");
    assert!(elapsed < Duration::from_millis(900), "{elapsed:?}");
    assert_activated(&r, 1, &rs, &rig.label(1));
    assert_error_containing(&r.sources[0].verdict, "no answer within 300ms");
    assert_eq!(rig.sources[0].health().timeouts, 1);
}

#[tokio::test]
async fn a_stale_primary_cannot_hold_an_instance_back() {
    let rig = Rig::new(2, SECOND);
    let v1 = rig.publish(0, 1).await;
    rig.publish(1, 1).await;
    let v2 = rig.publish(1, 2).await;
    let f = rig.fetcher(FailoverOptions::default());

    // From nothing, and from holding v1.
    let r = f.poll(ENV, None, &mut PollState::default()).await;
    assert_activated(&r, 2, &v2, &rig.label(1));
    let held_v1 = Held {
        published_at_ms: 0,
        version: 1,
        sha256: sha(&v1),
    };
    let r = f.poll(ENV, Some(held_v1), &mut PollState::default()).await;
    assert_activated(&r, 2, &v2, &rig.label(1));
    assert_eq!(r.sources[0].verdict, Verdict::Version(1));
    assert!(r.sources[0].stale, "the primary is behind");
    assert_eq!(r.sources[1].verdict, Verdict::Version(2));
    assert!(!r.sources[1].stale);
}

#[tokio::test]
async fn sources_disagreeing_on_one_version_pick_the_same_winner_in_any_order() {
    // Two publishers collided on version 2. The later publish wins whichever
    // source is primary, and the other is rejected rather than mixed in.
    for later_first in [true, false] {
        let rig = Rig::new(2, SECOND);
        let (early, late) = if later_first { (1, 0) } else { (0, 1) };
        rig.publish_with(early, 2, "aa", 1_000).await;
        let winner = rig.publish_with(late, 2, "bb", 2_000).await;
        let r = rig
            .fetcher(FailoverOptions::default())
            .poll(ENV, None, &mut PollState::default())
            .await;
        assert_activated(&r, 2, &winner, &rig.label(late));
        assert_rejected_containing(&r.sources[early].verdict, "another source names");
    }
}

// ---------------------------------------------------- rejected content

#[tokio::test]
async fn corrupted_ruleset_object_is_rejected_and_the_other_copy_used() {
    let rig = Rig::new(2, SECOND);
    let rs = rig.publish(0, 2).await;
    rig.publish(1, 2).await;
    // Bit rot in the primary's copy: same size, another digest.
    let mut bad = rs.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    rig.stores[0]
        .put_raw(&path("rulesets/2.pb"), bad)
        .await
        .unwrap();

    let started = Instant::now();
    let r = rig
        .fetcher(FailoverOptions::default())
        .poll(ENV, None, &mut PollState::default())
        .await;
    eprintln!(
        "corrupt primary ruleset, failover poll took {:?}",
        started.elapsed()
    );
    assert_activated(&r, 2, &rs, &rig.label(1));
    assert_rejected_containing(&r.sources[0].verdict, "ruleset v2: ruleset SHA-256");
    assert_eq!(r.sources[1].verdict, Verdict::Version(2));
}

#[tokio::test]
async fn corrupt_only_copy_is_unavailable_and_nothing_is_activated() {
    let rig = Rig::new(1, SECOND);
    let v1 = rig.publish(0, 1).await;
    let rs = rig.publish(0, 2).await;
    rig.stores[0]
        .put_raw(&path("rulesets/2.pb"), rs[..rs.len() - 3].to_vec())
        .await
        .unwrap();
    let f = rig.fetcher(FailoverOptions::default());
    for held in [
        None,
        Some(Held {
            published_at_ms: 0,
            version: 1,
            sha256: sha(&v1),
        }),
    ] {
        let r = f.poll(ENV, held, &mut PollState::default()).await;
        // Held v1 is not advertised any more, and v2 cannot be delivered.
        assert_outcome(&r, "unavailable");
        assert_rejected_containing(&r.sources[0].verdict, "bytes, but the manifest says");
    }
}

#[tokio::test]
async fn undecodable_ruleset_falls_back_to_the_next_version() {
    // A manifest (validly signed) over bytes that are not a ruleset.
    let rig = Rig::new(2, SECOND);
    let garbage = b"\xff\xff\xff not a ruleset".to_vec();
    rig.stores[0]
        .put_raw(&path("rulesets/3.pb"), garbage.clone())
        .await
        .unwrap();
    rig.stores[0]
        .put_raw(
            &path("manifest.pb"),
            manifest_bytes(3, &garbage, 5, false, &rig.key),
        )
        .await
        .unwrap();
    let v2 = rig.publish(1, 2).await;

    let r = rig
        .fetcher(FailoverOptions::default())
        .poll(ENV, None, &mut PollState::default())
        .await;
    assert_activated(&r, 2, &v2, &rig.label(1));
    assert_rejected_containing(&r.sources[0].verdict, "not a valid protobuf message");
    assert_eq!(r.sources[1].verdict, Verdict::Version(2));
    assert!(r.sources[1].stale, "v2 is behind the advertised v3");
}

#[tokio::test]
async fn manifest_digest_mismatch_is_rejected() {
    // The manifest commits to ruleset A; the store holds ruleset B of the same
    // version and size.
    let rig = Rig::new(1, SECOND);
    let a = ruleset_bytes(ENV, 2, "aa");
    let b = ruleset_bytes(ENV, 2, "bb");
    assert_eq!(a.len(), b.len());
    rig.stores[0]
        .put_raw(&path("rulesets/2.pb"), b)
        .await
        .unwrap();
    rig.stores[0]
        .put_raw(
            &path("manifest.pb"),
            manifest_bytes(2, &a, 5, false, &rig.key),
        )
        .await
        .unwrap();
    let r = rig
        .fetcher(FailoverOptions::default())
        .poll(ENV, None, &mut PollState::default())
        .await;
    assert_outcome(&r, "unavailable");
    assert_rejected_containing(&r.sources[0].verdict, "but the manifest says");
}

#[tokio::test]
async fn bad_signatures_are_rejected_and_never_used() {
    let rig = Rig::new(3, SECOND);
    // Source 0: a valid v1 manifest whose body was edited to claim v9.
    let rs9 = ruleset_bytes(ENV, 9, "bb");
    let (mut signed, mut body) = codec::decode_manifest(&manifest_bytes(
        1,
        &ruleset_bytes(ENV, 1, "aa"),
        5,
        false,
        &rig.key,
    ))
    .unwrap();
    body.version = 9;
    body.ruleset_path = manifest::ruleset_path(9);
    body.ruleset_sha256 = sha(&rs9).to_vec();
    body.ruleset_size = rs9.len() as u64;
    signed.body = body.encode_to_vec();
    rig.stores[0]
        .put_raw(&path("rulesets/9.pb"), rs9.clone())
        .await
        .unwrap();
    rig.stores[0]
        .put_raw(&path("manifest.pb"), codec::encode_manifest(&signed))
        .await
        .unwrap();
    // Source 1: v9 signed by someone else's key.
    let attacker = keys::new_signing_key();
    rig.stores[1]
        .put_raw(&path("rulesets/9.pb"), rs9.clone())
        .await
        .unwrap();
    rig.stores[1]
        .put_raw(
            &path("manifest.pb"),
            manifest_bytes(9, &rs9, 5, false, &attacker),
        )
        .await
        .unwrap();
    // Source 2: the real v1.
    let v1 = rig.publish(2, 1).await;

    let f = rig.fetcher(FailoverOptions::default());
    let mut state = PollState::default();
    for poll in 0..2 {
        let r = f.poll(ENV, None, &mut state).await;
        assert_activated(&r, 1, &v1, &rig.label(2));
        assert_rejected_containing(&r.sources[0].verdict, "does not verify");
        assert_rejected_containing(&r.sources[1].verdict, "no signature by a trusted key");
        // The second poll is conditional: the rejections are remembered.
        let expected = if poll == 0 {
            Verdict::Version(1)
        } else {
            Verdict::NotModified(1)
        };
        assert_eq!(r.sources[2].verdict, expected);
    }
    assert_eq!(rig.stores[0].reads("rulesets/9.pb"), 0);
    assert_eq!(rig.stores[1].reads("rulesets/9.pb"), 0);
}

// ---------------------------------------------------- version rules

#[tokio::test]
async fn manifest_pointing_at_a_missing_ruleset_falls_back_then_catches_up() {
    let rig = Rig::new(2, SECOND);
    // The primary's publish was interrupted: manifest v3, no ruleset object.
    let v3 = ruleset_bytes(ENV, 3, "aa");
    rig.stores[0]
        .put_raw(
            &path("manifest.pb"),
            manifest_bytes(3, &v3, 5, false, &rig.key),
        )
        .await
        .unwrap();
    let v2 = rig.publish(1, 2).await;
    let f = rig.fetcher(FailoverOptions::default());

    let mut state = PollState::default();
    let r = f.poll(ENV, None, &mut state).await;
    assert_activated(&r, 2, &v2, &rig.label(1));
    assert_error_containing(&r.sources[0].verdict, "ruleset v3: not found");
    assert!(r.sources[1].stale);
    let h2 = held(activated(&r));

    // Holding v2: v3 is still undeliverable, v2 is what we hold.
    let r = f.poll(ENV, Some(h2), &mut state).await;
    assert_outcome(&r, "unchanged");
    assert_error_containing(&r.sources[0].verdict, "ruleset v3: not found");
    assert_eq!(r.sources[1].verdict, Verdict::NotModified(2));

    // Holding v1: v2 is still better than that.
    let h1 = Held {
        published_at_ms: 0,
        version: 1,
        sha256: sha(&ruleset_bytes(ENV, 1, "aa")),
    };
    let r = f.poll(ENV, Some(h1), &mut PollState::default()).await;
    assert_activated(&r, 2, &v2, &rig.label(1));

    // The ruleset arrives: the next (conditional) poll activates v3 from the
    // remembered manifest.
    rig.stores[0]
        .put_raw(&path("rulesets/3.pb"), v3.clone())
        .await
        .unwrap();
    let r = f.poll(ENV, Some(h2), &mut state).await;
    assert_activated(&r, 3, &v3, &rig.label(0));
    assert_eq!(r.sources[0].verdict, Verdict::NotModified(3));
    assert!(r.sources[1].stale);
}

#[tokio::test]
async fn an_old_rollback_left_in_a_lagging_store_never_rolls_back_a_newer_release() {
    // The publisher rolled v2 back to v1 (signed, published at t=9), then
    // released v3 at t=20; the held v3 carries that time. A store that missed
    // v3 still holds the rollback manifest: it must not take the instance back.
    let rig = Rig::new(1, SECOND);
    let v1 = rig.publish(0, 1).await;
    rig.stores[0]
        .put_raw(
            &path("manifest.pb"),
            manifest_bytes(1, &v1, 9, true, &rig.key),
        )
        .await
        .unwrap();
    let held_v3 = Held {
        published_at_ms: 20,
        version: 3,
        sha256: sha(&ruleset_bytes(ENV, 3, "aa")),
    };
    let f = rig.fetcher(FailoverOptions::default());
    let r = f.poll(ENV, Some(held_v3), &mut PollState::default()).await;
    assert_outcome(&r, "unchanged");
    // A rollback decided after v3 was published is honoured.
    rig.stores[0]
        .put_raw(
            &path("manifest.pb"),
            manifest_bytes(1, &v1, 30, true, &rig.key),
        )
        .await
        .unwrap();
    let r = f.poll(ENV, Some(held_v3), &mut PollState::default()).await;
    assert_activated(&r, 1, &v1, &rig.label(0));
}

#[tokio::test]
async fn a_lower_version_than_held_is_never_activated_unless_a_signed_rollback() {
    let rig = Rig::new(2, SECOND);
    let v1 = rig.publish(0, 1).await;
    rig.publish(1, 1).await;
    let held_v2 = Held {
        published_at_ms: 0,
        version: 2,
        sha256: sha(&ruleset_bytes(ENV, 2, "aa")),
    };
    let f = rig.fetcher(FailoverOptions::default());
    let r = f.poll(ENV, Some(held_v2), &mut PollState::default()).await;
    assert_outcome(&r, "unchanged");
    for s in &r.sources {
        assert_eq!(s.verdict, Verdict::Version(1));
        assert!(s.stale, "behind what is held");
    }
    assert_eq!(rig.stores[0].reads("rulesets/"), 0);

    // The publisher rolls back to v1 everywhere, signed: that may go back.
    for store in &rig.stores {
        store
            .put_raw(
                &path("manifest.pb"),
                manifest_bytes(1, &v1, 9, true, &rig.key),
            )
            .await
            .unwrap();
    }
    let r = f.poll(ENV, Some(held_v2), &mut PollState::default()).await;
    assert_activated(&r, 1, &v1, &rig.label(0));
    assert!(r.sources.iter().all(|s| !s.stale));

    // The same rollback manifest unsigned is not enough, even for a reader
    // that accepts unsigned manifests.
    let unsigned = codec::encode_manifest(&manifest::build(ENV, 1, &v1, 9, true, &[]));
    for store in &rig.stores {
        store
            .put_raw(&path("manifest.pb"), unsigned.clone())
            .await
            .unwrap();
    }
    let open = Failover::new(
        rig.sources.clone(),
        TrustedKeys::none(),
        FailoverOptions::default(),
    );
    let r = open
        .poll(ENV, Some(held_v2), &mut PollState::default())
        .await;
    assert_outcome(&r, "unchanged");
}

#[tokio::test]
async fn same_version_with_another_ruleset_than_held_is_rejected() {
    let rig = Rig::new(1, SECOND);
    rig.publish(0, 1).await;
    let other = Held {
        published_at_ms: 0,
        version: 1,
        sha256: sha(&ruleset_bytes(ENV, 1, "bb")),
    };
    let r = rig
        .fetcher(FailoverOptions::default())
        .poll(ENV, Some(other), &mut PollState::default())
        .await;
    assert_outcome(&r, "unavailable");
    assert_rejected_containing(
        &r.sources[0].verdict,
        "two different rulesets claim version 1",
    );
    assert_eq!(rig.stores[0].reads("rulesets/"), 0);
}

// ---------------------------------------------------- conditional reads

#[tokio::test]
async fn unchanged_via_304_reads_no_ruleset() {
    let rig = Rig::new(2, SECOND);
    let rs = rig.publish(0, 1).await;
    rig.publish(1, 1).await;
    let f = rig.fetcher(FailoverOptions::default());
    let mut state = PollState::default();
    let r = f.poll(ENV, None, &mut state).await;
    assert_activated(&r, 1, &rs, &rig.label(0));
    let h = held(activated(&r));
    assert_eq!(rig.stores[0].reads("rulesets/1.pb"), 1);
    assert_eq!(
        rig.stores[1].reads("rulesets/1.pb"),
        0,
        "no hedge when the first answers in time"
    );

    for _ in 0..3 {
        let r = f.poll(ENV, Some(h), &mut state).await;
        assert_outcome(&r, "unchanged");
        assert_eq!(r.sources[0].verdict, Verdict::NotModified(1));
        assert_eq!(r.sources[1].verdict, Verdict::NotModified(1));
    }
    assert_eq!(rig.stores[0].reads("manifest.pb"), 4);
    assert_eq!(rig.stores[0].reads("rulesets/1.pb"), 1);
    assert_eq!(rig.stores[1].reads("rulesets/1.pb"), 0);
    assert_eq!(rig.sources[0].health().not_modified, 3);
}

#[tokio::test]
async fn unchanged_when_the_store_ignores_if_none_match() {
    let rig = Rig::new(1, SECOND);
    let rs = rig.publish(0, 1).await;
    rig.stores[0].ignore_if_none_match(true);
    let f = rig.fetcher(FailoverOptions::default());
    let mut state = PollState::default();
    let r = f.poll(ENV, None, &mut state).await;
    let h = held(activated(&r));

    // 200 with the same ETag.
    let r = f.poll(ENV, Some(h), &mut state).await;
    assert_outcome(&r, "unchanged");
    assert_eq!(r.sources[0].verdict, Verdict::NotModified(1));

    // Re-uploaded identical manifest: a new ETag, the same version and digest.
    rig.stores[0]
        .put_raw(
            &path("manifest.pb"),
            manifest_bytes(1, &rs, 1_000, false, &rig.key),
        )
        .await
        .unwrap();
    let r = f.poll(ENV, Some(h), &mut state).await;
    assert_outcome(&r, "unchanged");
    assert_eq!(r.sources[0].verdict, Verdict::Version(1));

    assert_eq!(rig.stores[0].reads("manifest.pb"), 3);
    assert_eq!(rig.stores[0].reads("rulesets/1.pb"), 1, "never re-read");
}

// ---------------------------------------------------- availability

#[tokio::test]
async fn all_sources_down_is_unavailable() {
    let rig = Rig::new(2, SECOND);
    let rs = rig.publish(0, 1).await;
    rig.publish(1, 1).await;
    for s in &rig.stores {
        s.set_mode(Mode::Error);
    }
    let f = rig.fetcher(FailoverOptions::default());
    let h = Held {
        published_at_ms: 0,
        version: 1,
        sha256: sha(&rs),
    };
    for held in [None, Some(h)] {
        let r = f.poll(ENV, held, &mut PollState::default()).await;
        assert_outcome(&r, "unavailable");
        for s in &r.sources {
            assert_error_containing(&s.verdict, "injected 500");
            assert!(!s.stale);
        }
    }
}

#[tokio::test]
async fn unknown_environment_is_not_found_only_when_every_source_says_so() {
    let rig = Rig::new(2, SECOND);
    rig.publish(0, 1).await;
    let f = rig.fetcher(FailoverOptions::default());
    let r = f.poll("staging", None, &mut PollState::default()).await;
    assert_outcome(&r, "not_found");
    assert!(
        r.sources
            .iter()
            .all(|s| s.verdict == Verdict::NotFound && !s.stale)
    );

    // One source cannot answer: it might have it.
    rig.stores[1].set_mode(Mode::Error);
    let r = f.poll("staging", None, &mut PollState::default()).await;
    assert_outcome(&r, "unavailable");

    // Junk names never reach storage.
    let before = rig.stores[0].reads("");
    let r = f.poll("../../etc", None, &mut PollState::default()).await;
    assert_outcome(&r, "not_found");
    assert!(r.sources.iter().all(|s| s.verdict == Verdict::NotAsked));
    assert_eq!(rig.stores[0].reads(""), before);
}

#[tokio::test]
async fn a_source_missing_the_environment_is_stale_when_another_has_it() {
    let rig = Rig::new(2, SECOND);
    let rs = rig.publish(1, 1).await;
    let r = rig
        .fetcher(FailoverOptions::default())
        .poll(ENV, None, &mut PollState::default())
        .await;
    assert_activated(&r, 1, &rs, &rig.label(1));
    assert_eq!(r.sources[0].verdict, Verdict::NotFound);
    assert!(r.sources[0].stale);
}

#[tokio::test]
async fn a_recovering_store_goes_from_unavailable_to_activate() {
    let rig = Rig::new(1, SECOND);
    let rs = rig.publish(0, 1).await;
    rig.stores[0].set_mode(Mode::Error);
    let f = rig.fetcher(FailoverOptions::default());
    let mut state = PollState::default();
    let r = f.poll(ENV, None, &mut state).await;
    assert_outcome(&r, "unavailable");
    rig.stores[0].set_mode(Mode::PassThrough);
    let r = f.poll(ENV, None, &mut state).await;
    assert_activated(&r, 1, &rs, &rig.label(0));
}

#[tokio::test(start_paused = true)]
async fn a_slow_ruleset_read_is_hedged_to_the_next_source() {
    let rig = Rig::new(2, Duration::from_secs(5));
    let rs = rig.publish(0, 1).await;
    rig.publish(1, 1).await;
    rig.stores[0].set_mode_for("rulesets/1.pb", Mode::Delay(Duration::from_secs(2)));

    let opts = FailoverOptions::default();
    let hedge = opts.hedge_delay;
    let started = Instant::now();
    let r = rig
        .fetcher(opts)
        .poll(ENV, None, &mut PollState::default())
        .await;
    let elapsed = started.elapsed();
    eprintln!("hedged ruleset read (primary delayed 2 s, hedge {hedge:?}): poll took {elapsed:?}");
    assert!(elapsed >= hedge, "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1000), "{elapsed:?}");
    assert_activated(&r, 1, &rs, &rig.label(1));
    assert_eq!(
        rig.stores[0].reads("rulesets/1.pb"),
        1,
        "the primary was asked first"
    );
    assert_eq!(rig.stores[1].reads("rulesets/1.pb"), 1);
}

// ---------------------------------------------------- last-known-good

/// Every file under `dir`, relative, sorted.
fn files(dir: &FsPath) -> Vec<String> {
    fn walk(root: &FsPath, dir: &FsPath, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(
                    p.strip_prefix(root)
                        .expect("under root")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test]
async fn last_known_good_round_trips_through_the_same_verification() {
    let rig = Rig::new(1, SECOND);
    let v1 = rig.publish(0, 1).await;
    let f = rig.fetcher(FailoverOptions::default());
    let mut state = PollState::default();
    let r = f.poll(ENV, None, &mut state).await;
    let snap1 = activated(&r);

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let lkg = LastKnownGood::new(dir.clone());
    lkg.store(snap1).await.unwrap();
    assert_eq!(files(&dir), vec!["prod/manifest.pb", "prod/rulesets/1.pb"]);

    // Read back as a source, verified with the same trusted keys.
    let cache = Arc::new(lkg.source(SECOND).unwrap());
    let label = cache.label().to_owned();
    assert!(label.starts_with("last-known-good:"), "{label}");
    let from_cache = Failover::new(vec![cache], rig.trusted(), FailoverOptions::default());
    let mut cache_state = PollState::default();
    let r = from_cache.poll(ENV, None, &mut cache_state).await;
    assert_activated(&r, 1, &v1, &label);
    let back = activated(&r);
    assert_eq!(back.sha256, snap1.sha256);
    assert_eq!(back.manifest_bytes, snap1.manifest_bytes);
    assert_eq!(back.published_at_ms, snap1.published_at_ms);

    // A newer activation replaces it; the old ruleset is pruned.
    let v2 = rig.publish(0, 2).await;
    let r = f.poll(ENV, Some(held(snap1)), &mut state).await;
    lkg.store(activated(&r)).await.unwrap();
    assert_eq!(files(&dir), vec!["prod/manifest.pb", "prod/rulesets/2.pb"]);
    let r = from_cache
        .poll(ENV, Some(held(snap1)), &mut cache_state)
        .await;
    assert_activated(&r, 2, &v2, &label);

    // Storing the same snapshot again is harmless.
    lkg.store(activated(&r)).await.unwrap();
    assert_eq!(files(&dir), vec!["prod/manifest.pb", "prod/rulesets/2.pb"]);

    // A late save of the older snapshot (saves are not ordered across tasks)
    // never takes the cache back.
    lkg.store(snap1).await.unwrap();
    assert_eq!(files(&dir), vec!["prod/manifest.pb", "prod/rulesets/2.pb"]);
}

#[tokio::test]
async fn a_tampered_cache_is_rejected_like_a_tampered_bucket() {
    let rig = Rig::new(1, SECOND);
    rig.publish(0, 1).await;
    let r = rig
        .fetcher(FailoverOptions::default())
        .poll(ENV, None, &mut PollState::default())
        .await;
    let tmp = tempfile::tempdir().unwrap();
    let lkg = LastKnownGood::new(tmp.path().to_owned());
    lkg.store(activated(&r)).await.unwrap();

    let ruleset = tmp.path().join("prod/rulesets/1.pb");
    let mut bytes = std::fs::read(&ruleset).unwrap();
    bytes[0] ^= 0x40;
    std::fs::write(&ruleset, bytes).unwrap();
    let cache = Failover::new(
        vec![Arc::new(lkg.source(SECOND).unwrap())],
        rig.trusted(),
        FailoverOptions::default(),
    );
    let r = cache.poll(ENV, None, &mut PollState::default()).await;
    assert_outcome(&r, "unavailable");
    assert_rejected_containing(&r.sources[0].verdict, "SHA-256");

    // An empty (new) cache folder is simply "not found".
    let empty = LastKnownGood::new(tmp.path().join("new"));
    let cache = Failover::new(
        vec![Arc::new(empty.source(SECOND).unwrap())],
        rig.trusted(),
        FailoverOptions::default(),
    );
    let r = cache.poll(ENV, None, &mut PollState::default()).await;
    assert_outcome(&r, "not_found");
}

#[tokio::test]
async fn last_known_good_refuses_names_that_leave_the_folder() {
    let rig = Rig::new(1, SECOND);
    rig.publish(0, 1).await;
    let r = rig
        .fetcher(FailoverOptions::default())
        .poll(ENV, None, &mut PollState::default())
        .await;
    let PollOutcome::Activate(mut snap) = r.outcome else {
        panic!("not activated")
    };
    snap.environment = "../escape".into();
    let tmp = tempfile::tempdir().unwrap();
    let lkg = LastKnownGood::new(tmp.path().join("cache"));
    let err = lkg.store(&snap).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(!tmp.path().join("escape").exists());
}
