//! Delivery measurements (`cargo bench --bench delivery`), printed as a table:
//!
//! 1. **swap**: an environment holding a 10,001-flag ruleset sees a new
//!    manifest; time from the poll starting (manifest read) to the new snapshot
//!    being swapped in, while reader tasks keep loading the snapshot and
//!    evaluating a flag: their failures and worst latency during the swap are
//!    compared with the same readers before it.
//! 2. **coalescing**: 1,000 concurrent first requests for one unloaded
//!    environment over two sources: manifest and ruleset reads per source.
//! 3. **memory** (run first, from `file://` objects): 10,000 environments of
//!    50 flags each loaded; the process RSS (Linux `/proc/self/status`) before
//!    and after loading.
//!
//! Stores are fault-injection in-memory stores (no faults switched on), so
//! what is measured is flagbelt's own work, not a network.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flagbelt::delivery::failover::{Failover, FailoverOptions};
use flagbelt::delivery::faults::FaultyStore;
use flagbelt::delivery::source::Source;
use flagbelt::delivery::{Delivery, DeliveryOptions};
use flagbelt::eval;
use flagbelt::ruleset::verify::TrustedKeys;
use flagbelt::ruleset::{authoring, codec, keys};
use object_store::ObjectStore;

mod common;

// The same allocator as the `flagbelt` binary, so RSS figures match production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Rig {
    stores: Vec<Arc<FaultyStore>>,
    key: ed25519_dalek::SigningKey,
}

impl Rig {
    fn new(n: usize) -> Self {
        Self {
            stores: (0..n).map(|_| Arc::new(FaultyStore::new())).collect(),
            key: keys::new_signing_key(),
        }
    }

    fn delivery(&self, poll_interval: Duration) -> Arc<Delivery> {
        let sources = self
            .stores
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let store: Arc<dyn ObjectStore> = Arc::clone(s) as Arc<dyn ObjectStore>;
                Arc::new(Source::new(
                    format!("mem://{i}"),
                    store,
                    "",
                    Duration::from_secs(5),
                ))
            })
            .collect();
        let fetcher = Failover::new(
            sources,
            TrustedKeys::from_keys(vec![self.key.verifying_key()]),
            FailoverOptions::default(),
        );
        Delivery::new(
            fetcher,
            None,
            None,
            DeliveryOptions {
                poll_interval,
                max_environments: 1_000_000,
                ..DeliveryOptions::default()
            },
        )
    }

    /// Compiles and publishes; returns the ruleset size.
    async fn publish(&self, env: &str, version: u64, flags: usize) -> usize {
        let (pb, _) = authoring::compile_yaml(&common::ruleset_yaml(env, version, flags), 0)
            .expect("generated ruleset compiles");
        let objects = codec::stored_objects(&pb, 0, false, std::slice::from_ref(&self.key));
        for s in &self.stores {
            s.publish(env, &objects).await.expect("in-memory put");
        }
        objects.ruleset.len()
    }
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Readers: get the environment, load its snapshot, evaluate one flag, and
/// record the latency of that, about 1,000 times a second each.
fn spawn_readers(
    d: &Arc<Delivery>,
    stop: &Arc<AtomicBool>,
    n: usize,
) -> Vec<tokio::task::JoinHandle<(u64, u64, Duration)>> {
    let ctx = common::contexts(1).remove(0);
    (0..n)
        .map(|_| {
            let d = Arc::clone(d);
            let stop = Arc::clone(stop);
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed, mut worst) = (0u64, 0u64, Duration::ZERO);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match d.get("big").await {
                        Ok(env) => {
                            let snap = env.snapshot();
                            let idx = snap.ruleset.flag_idx("flag-7");
                            match idx.and_then(|i| eval::evaluate_flag(&snap.ruleset, i, &ctx)) {
                                Some(_) => ok += 1,
                                None => failed += 1,
                            }
                        }
                        Err(_) => failed += 1,
                    }
                    worst = worst.max(t.elapsed());
                    // A steady request stream (about 1,000 per reader per
                    // second), not a CPU-saturating spin.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                (ok, failed, worst)
            })
        })
        .collect()
}

async fn collect(
    handles: Vec<tokio::task::JoinHandle<(u64, u64, Duration)>>,
) -> (u64, u64, Duration) {
    let mut total = (0, 0, Duration::ZERO);
    for h in handles {
        let (ok, failed, worst) = h.await.expect("reader task");
        total.0 += ok;
        total.1 += failed;
        total.2 = total.2.max(worst);
    }
    total
}

async fn swap() {
    let rig = Rig::new(1);
    let size = rig.publish("big", 1, 10_000).await;
    let d = rig.delivery(Duration::from_secs(3600));
    d.get("big").await.expect("loads");

    // Baseline: the same readers with no swap going on.
    let stop = Arc::new(AtomicBool::new(false));
    let readers = spawn_readers(&d, &stop, 8);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (base_ok, base_failed, base_worst) = collect(readers).await;

    let mut swaps = Vec::new();
    let mut during = (0, 0, Duration::ZERO);
    for version in 2..=6 {
        rig.publish("big", version, 10_000).await;
        let stop = Arc::new(AtomicBool::new(false));
        let readers = spawn_readers(&d, &stop, 8);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = Instant::now();
        let snap = d.refresh("big").await.expect("loaded");
        swaps.push(t.elapsed());
        assert_eq!(snap.version, version);
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.store(true, Ordering::Relaxed);
        let (ok, failed, worst) = collect(readers).await;
        during = (during.0 + ok, during.1 + failed, during.2.max(worst));
    }
    swaps.sort();
    println!(
        "| swap: poll -> new 10,001-flag snapshot ({size} bytes), 5 swaps | min {:.1} ms, median {:.1} ms, max {:.1} ms |",
        ms(swaps[0]),
        ms(swaps[2]),
        ms(swaps[4])
    );
    println!(
        "| readers without swap: ok / failed / worst latency | {base_ok} / {base_failed} / {:.2} ms |",
        ms(base_worst)
    );
    println!(
        "| readers during swaps: ok / failed / worst latency | {} / {} / {:.2} ms |",
        during.0,
        during.1,
        ms(during.2)
    );
}

async fn coalescing() {
    let rig = Rig::new(2);
    rig.publish("prod", 1, 50).await;
    let d = rig.delivery(Duration::from_secs(3600));
    let done = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let d = Arc::clone(&d);
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                if d.get("prod").await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let elapsed = t.elapsed();
    let manifests: Vec<usize> = rig.stores.iter().map(|s| s.reads("manifest.pb")).collect();
    let rulesets: Vec<usize> = rig
        .stores
        .iter()
        .map(|s| s.reads("rulesets/1.pb"))
        .collect();
    println!(
        "| 1,000 concurrent first requests, 2 sources: served / manifest reads per source / ruleset reads per source / time | {} / {:?} / {:?} / {:.1} ms |",
        done.load(Ordering::Relaxed),
        manifests,
        rulesets,
        ms(elapsed)
    );
}

/// Run first, in a fresh process, so that RSS is the instance's own: the
/// stored objects are files (`file://`, read into fresh buffers as from any
/// remote store), not an in-memory store sharing its bytes.
async fn memory() {
    const ENVS: usize = 10_000;
    let key = keys::new_signing_key();
    let dir = tempfile::tempdir().expect("tempdir");
    // One compiled ruleset, published under 10,000 names (only the name
    // differs; compiling 10,000 YAML files would dominate the run).
    let (template, _) = authoring::compile_yaml(&common::ruleset_yaml("e0", 1, 50), 0)
        .expect("generated ruleset compiles");
    let mut size = 0;
    for i in 0..ENVS {
        let env = format!("e{i}");
        let mut pb = template.clone();
        pb.environment = env.clone();
        let objects = codec::stored_objects(&pb, 0, false, std::slice::from_ref(&key));
        size = objects.ruleset.len();
        let env_dir = dir.path().join(&env);
        std::fs::create_dir_all(env_dir.join("rulesets")).expect("mkdir");
        std::fs::write(env_dir.join(&objects.ruleset_path), &objects.ruleset).expect("write");
        std::fs::write(env_dir.join("manifest.pb"), &objects.manifest).expect("write");
    }
    drop(template);
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("folder");
    let source = Arc::new(Source::new(
        "file",
        Arc::new(store),
        "",
        Duration::from_secs(5),
    ));
    let fetcher = Failover::new(
        vec![source],
        TrustedKeys::from_keys(vec![key.verifying_key()]),
        FailoverOptions::default(),
    );
    let d = Delivery::new(
        fetcher,
        None,
        None,
        DeliveryOptions {
            poll_interval: Duration::from_secs(3600),
            max_environments: 1_000_000,
            ..DeliveryOptions::default()
        },
    );
    let before = rss_mib();
    let t = Instant::now();
    for i in 0..ENVS {
        d.get(&format!("e{i}")).await.expect("loads");
    }
    let elapsed = t.elapsed();
    d.run_maintenance().await;
    let after = rss_mib();
    println!(
        "| 10,000 environments x 51 flags ({size}-byte rulesets) loaded in {:.1} s: process RSS before / after | {before:.0} MiB / **{after:.0} MiB** |",
        elapsed.as_secs_f64(),
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo test --benches` passes `--bench`-less arguments; run only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!("| measurement | result |\n|---|---|");
        memory().await;
        swap().await;
        coalescing().await;
    });
}
