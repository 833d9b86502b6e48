//! Environments over fault-injected in-memory stores: coalesced first loads,
//! negative caching, refresh and swap, stale-while-failing, eviction, preload,
//! last-known-good and bootstrap fallbacks, and read-your-writes waits.

use std::sync::Arc;
use std::time::Duration;

// tokio's clock: virtual in the paused-time tests, real in the others.
use tokio::time::Instant;

use ed25519_dalek::SigningKey;
use object_store::ObjectStore;

use flagbelt::delivery::Origin;
use flagbelt::delivery::failover::{Failover, FailoverOptions};
use flagbelt::delivery::faults::{FaultyStore, Mode};
use flagbelt::delivery::lkg::LastKnownGood;
use flagbelt::delivery::source::Source;
use flagbelt::delivery::{Delivery, DeliveryOptions, EnvError};
use flagbelt::ruleset::verify::TrustedKeys;
use flagbelt::ruleset::{authoring, codec, keys};

const ENV: &str = "prod";

struct Rig {
    stores: Vec<Arc<FaultyStore>>,
    key: SigningKey,
}

impl Rig {
    fn new(n: usize) -> Self {
        Self {
            stores: (0..n).map(|_| Arc::new(FaultyStore::new())).collect(),
            key: keys::new_signing_key(),
        }
    }

    fn sources(&self) -> Vec<Arc<Source>> {
        self.stores
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let store: Arc<dyn ObjectStore> = Arc::clone(s) as Arc<dyn ObjectStore>;
                Arc::new(Source::new(
                    format!("mem://store{i}"),
                    store,
                    "",
                    Duration::from_millis(300),
                ))
            })
            .collect()
    }

    fn fetcher(&self) -> Failover {
        Failover::new(
            self.sources(),
            TrustedKeys::from_keys(vec![self.key.verifying_key()]),
            FailoverOptions {
                hedge_delay: Duration::from_millis(100),
                manifest_wait: Duration::from_millis(400),
            },
        )
    }

    fn delivery(&self, opts: DeliveryOptions) -> Arc<Delivery> {
        Delivery::new(self.fetcher(), None, None, opts)
    }

    async fn publish(&self, store: usize, env: &str, version: u64) {
        let yaml = format!(
            "environment: {env}\nversion: {version}\nflags:\n  f:\n    variants: {{a: 1, b: 2}}\n    default: a\n"
        );
        let (pb, _) = authoring::compile_yaml(&yaml, 0).expect("valid yaml");
        let objects = codec::stored_objects(&pb, 1_000, false, std::slice::from_ref(&self.key));
        self.stores[store]
            .publish(env, &objects)
            .await
            .expect("in-memory put");
    }
}

fn quick() -> DeliveryOptions {
    DeliveryOptions {
        poll_interval: Duration::from_secs(3600),
        ..DeliveryOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_first_requests_share_one_load() {
    let rig = Rig::new(2);
    rig.publish(0, ENV, 1).await;
    rig.publish(1, ENV, 1).await;
    let d = rig.delivery(quick());
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let d = Arc::clone(&d);
            tokio::spawn(async move { d.get(ENV).await.map(|e| e.snapshot().version) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), Ok(1));
    }
    for (i, s) in rig.stores.iter().enumerate() {
        assert_eq!(s.reads("manifest.pb"), 1, "manifest reads of store {i}");
    }
    let ruleset_reads: usize = rig.stores.iter().map(|s| s.reads("rulesets/1.pb")).sum();
    assert_eq!(ruleset_reads, 1, "one ruleset read in all");
}

#[tokio::test]
async fn unknown_environments_are_negative_cached() {
    let rig = Rig::new(2);
    rig.publish(0, ENV, 1).await;
    let d = rig.delivery(quick());
    for _ in 0..50 {
        assert_eq!(d.get("nope").await.unwrap_err(), EnvError::NotFound);
    }
    for s in &rig.stores {
        assert_eq!(s.reads("nope/manifest.pb"), 1);
    }
    // Names that are not environment names never reach storage.
    assert_eq!(d.get("../etc").await.unwrap_err(), EnvError::NotFound);
    assert_eq!(d.get("").await.unwrap_err(), EnvError::NotFound);
    assert_eq!(rig.stores[0].reads("manifest.pb"), 1);
}

#[tokio::test]
async fn refresh_swaps_whole_snapshots_and_keeps_serving_when_storage_fails() {
    let rig = Rig::new(2);
    rig.publish(0, ENV, 1).await;
    rig.publish(1, ENV, 1).await;
    let d = rig.delivery(quick());
    let env = d.get(ENV).await.unwrap();
    let mut versions = env.subscribe();
    let before = env.snapshot();
    assert_eq!(before.version, 1);
    assert_eq!(
        before.origin,
        Origin::Source {
            label: "mem://store0".into()
        }
    );

    rig.publish(1, ENV, 2).await;
    d.refresh(ENV).await.unwrap();
    assert_eq!(env.snapshot().version, 2, "the newer secondary wins");
    assert_eq!(*versions.borrow_and_update(), 2);
    // A snapshot taken before the swap is untouched.
    assert_eq!(before.version, 1);
    let report = d.environments();
    assert_eq!(report[0].stale_sources, vec!["mem://store0".to_owned()]);

    for s in &rig.stores {
        s.set_mode(Mode::Error);
    }
    d.refresh(ENV).await.unwrap();
    d.refresh(ENV).await.unwrap();
    assert_eq!(
        env.snapshot().version,
        2,
        "storage errors never drop a loaded environment"
    );
    let status = env.status();
    assert_eq!(status.consecutive_failures, 2);
    assert!(status.last_error.unwrap().contains("injected 500"));
    assert_eq!(d.get(ENV).await.unwrap().snapshot().version, 2);

    for s in &rig.stores {
        s.set_mode(Mode::PassThrough);
    }
    d.refresh(ENV).await.unwrap();
    assert_eq!(env.status().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn environments_in_use_are_polled_on_their_own() {
    let rig = Rig::new(1);
    rig.publish(0, ENV, 1).await;
    let d = rig.delivery(DeliveryOptions {
        poll_interval: Duration::from_millis(50),
        ..DeliveryOptions::default()
    });
    let env = d.get(ENV).await.unwrap();
    let mut versions = env.subscribe();
    rig.publish(0, ENV, 7).await;
    tokio::time::timeout(Duration::from_secs(5), versions.wait_for(|v| *v == 7))
        .await
        .expect("the refresh task picks up version 7")
        .unwrap();
    assert_eq!(env.snapshot().version, 7);
}

#[tokio::test]
async fn idle_environments_are_evicted_and_stop_polling() {
    let rig = Rig::new(1);
    rig.publish(0, ENV, 1).await;
    rig.publish(0, "pinned", 1).await;
    let d = rig.delivery(DeliveryOptions {
        poll_interval: Duration::from_millis(50),
        idle_ttl: Duration::from_millis(200),
        ..DeliveryOptions::default()
    });
    assert!(d.preload(&["pinned".to_owned()]).await.is_empty());
    assert!(d.ready(&["pinned".to_owned()]));
    drop(d.get(ENV).await.unwrap());
    tokio::time::sleep(Duration::from_millis(600)).await;
    d.run_maintenance().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let names: Vec<String> = d
        .environments()
        .into_iter()
        .map(|e| e.environment)
        .collect();
    assert_eq!(
        names,
        vec!["pinned".to_owned()],
        "only the preloaded one stays"
    );
    let polls = rig.stores[0].reads("prod/manifest.pb");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rig.stores[0].reads("prod/manifest.pb"),
        polls,
        "an evicted environment is no longer polled"
    );
    assert!(
        rig.stores[0].reads("pinned/manifest.pb") > 3,
        "the pinned one still is"
    );
    // Using it again loads it again.
    assert_eq!(d.get(ENV).await.unwrap().snapshot().version, 1);
}

#[tokio::test]
async fn cold_start_with_every_source_down_uses_last_known_good_then_recovers() {
    let rig = Rig::new(2);
    rig.publish(0, ENV, 3).await;
    let cache = tempfile::tempdir().unwrap();
    let lkg = || LastKnownGood::new(cache.path().to_path_buf());
    let fallback = || {
        Failover::new(
            vec![Arc::new(lkg().source(Duration::from_millis(300)).unwrap())],
            TrustedKeys::from_keys(vec![rig.key.verifying_key()]),
            FailoverOptions::default(),
        )
    };

    // A first instance loads from the sources and leaves a last-known-good copy.
    let first = Delivery::new(rig.fetcher(), Some(fallback()), Some(lkg()), quick());
    assert_eq!(first.get(ENV).await.unwrap().snapshot().version, 3);
    let written = cache.path().join(ENV).join("manifest.pb");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !written.exists() {
        assert!(Instant::now() < deadline, "last-known-good was not written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // All stores down at a cold start: without a cache nothing can be served...
    for s in &rig.stores {
        s.set_mode(Mode::Error);
    }
    let bare = rig.delivery(quick());
    assert_eq!(bare.get(ENV).await.unwrap_err(), EnvError::Unavailable);

    // ...with one, the cached copy serves and says so.
    let second = Delivery::new(rig.fetcher(), Some(fallback()), Some(lkg()), quick());
    let env = second.get(ENV).await.unwrap();
    assert_eq!(env.snapshot().version, 3);
    assert_eq!(env.snapshot().origin, Origin::LastKnownGood);
    assert!(env.status().last_error.is_some());

    // The stores recover with a newer version: the next poll moves to it.
    for s in &rig.stores {
        s.set_mode(Mode::PassThrough);
    }
    rig.publish(1, ENV, 4).await;
    second.refresh(ENV).await.unwrap();
    let snap = env.snapshot();
    assert_eq!(snap.version, 4);
    assert_eq!(
        snap.origin,
        Origin::Source {
            label: "mem://store1".into()
        }
    );
    assert_eq!(env.status().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn cold_start_without_cache_uses_the_bootstrap_folder() {
    let rig = Rig::new(1);
    rig.stores[0].set_mode(Mode::BlackHole);
    let boot = tempfile::tempdir().unwrap();
    // A bootstrap folder is the stored layout, e.g. `flagbelt compile` output.
    let yaml =
        "environment: prod\nversion: 2\nflags:\n  f:\n    variants: {a: 1}\n    default: a\n";
    let (pb, _) = authoring::compile_yaml(yaml, 0).unwrap();
    let objects = codec::stored_objects(&pb, 0, false, std::slice::from_ref(&rig.key));
    std::fs::create_dir_all(boot.path().join("prod/rulesets")).unwrap();
    std::fs::write(
        boot.path().join("prod").join(&objects.ruleset_path),
        &objects.ruleset,
    )
    .unwrap();
    std::fs::write(boot.path().join("prod/manifest.pb"), &objects.manifest).unwrap();
    let store = object_store::local::LocalFileSystem::new_with_prefix(boot.path()).unwrap();
    let bootstrap = Failover::new(
        vec![Arc::new(Source::new(
            "bootstrap:test",
            Arc::new(store),
            "",
            Duration::from_millis(300),
        ))],
        TrustedKeys::from_keys(vec![rig.key.verifying_key()]),
        FailoverOptions::default(),
    );
    let d = Delivery::new(rig.fetcher(), Some(bootstrap), None, quick());
    let start = Instant::now();
    let env = d.get(ENV).await.unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(env.snapshot().version, 2);
    assert_eq!(env.snapshot().origin, Origin::Bootstrap);
}

#[tokio::test]
async fn min_version_waits_for_one_coalesced_poll() {
    let rig = Rig::new(1);
    rig.publish(0, ENV, 1).await;
    let d = rig.delivery(quick());
    assert_eq!(d.get(ENV).await.unwrap().snapshot().version, 1);
    rig.publish(0, ENV, 2).await;
    let snap = d.at_least(ENV, 2, Duration::from_secs(2)).await.unwrap();
    assert_eq!(snap.version, 2, "caught up before answering");
    let reads = rig.stores[0].reads("manifest.pb");
    let snap = d.at_least(ENV, 1, Duration::from_secs(2)).await.unwrap();
    assert_eq!(snap.version, 2);
    assert_eq!(
        rig.stores[0].reads("manifest.pb"),
        reads,
        "already there: no poll"
    );
    let start = Instant::now();
    let snap = d
        .at_least(ENV, 9, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(snap.version, 2, "behind: the caller answers STALE");
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_restart_never_serves_older_than_its_last_known_good() {
    let rig = Rig::new(1);
    let cache = tempfile::tempdir().unwrap();
    let lkg = || LastKnownGood::new(cache.path().to_path_buf());
    let fallback = || {
        Failover::new(
            vec![Arc::new(lkg().source(Duration::from_millis(300)).unwrap())],
            TrustedKeys::from_keys(vec![rig.key.verifying_key()]),
            FailoverOptions::default(),
        )
    };
    rig.publish(0, ENV, 2).await;
    rig.publish(0, ENV, 3).await;
    let first = Delivery::new(rig.fetcher(), Some(fallback()), Some(lkg()), quick());
    assert_eq!(first.get(ENV).await.unwrap().snapshot().version, 3);
    // The manifest is written last: once it is there, the copy is whole.
    let written = cache.path().join(ENV).join("manifest.pb");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !written.exists() {
        assert!(Instant::now() < deadline, "last-known-good was not written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The store is restored from an old backup: it now says version 2.
    rig.publish(0, ENV, 2).await;
    let second = Delivery::new(rig.fetcher(), Some(fallback()), Some(lkg()), quick());
    let env = second.get(ENV).await.unwrap();
    assert_eq!(
        env.snapshot().version,
        3,
        "never older than what this instance served"
    );
    assert_eq!(env.snapshot().origin, Origin::LastKnownGood);
    assert!(
        env.status()
            .last_error
            .unwrap()
            .contains("behind the local copy")
    );

    // The store catches up to the same version: the copy is the store's again.
    rig.publish(0, ENV, 3).await;
    second.refresh(ENV).await.unwrap();
    assert_eq!(env.snapshot().version, 3);
    assert_eq!(
        env.snapshot().origin,
        Origin::Source {
            label: "mem://store0".into()
        }
    );
    assert_eq!(env.status().consecutive_failures, 0);
}
