//! Criterion benchmarks of the pure core (`cargo bench --bench eval`):
//!
//! - `evaluate_all/client_view_50`: evaluate-all over a 50-flag client view with
//!   realistic targeting (segments, `in`, semver, regex, rollouts, prerequisites);
//! - `evaluate_one/ruleset_1000`: one flag evaluated in a 1,000-flag ruleset;
//! - `load/proto_to_model_10000`: stored ruleset bytes (10,000 flags) decoded and
//!   compiled into the evaluable model.
//!
//! Rulesets are generated as authoring YAML, so the benchmark exercises the same
//! path as real input.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

mod common;

// The same allocator as the `flagbelt` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use common::{contexts, ruleset_yaml};
use flagbelt::eval::{self, Audience};
use flagbelt::ruleset::{authoring, codec};

fn benches(c: &mut Criterion) {
    let ctxs = contexts(1024);

    let (_, small) =
        authoring::compile_yaml(&ruleset_yaml("bench", 1, 50), 0).expect("50-flag ruleset");
    assert_eq!(
        eval::evaluate_all(&small, &ctxs[0], Audience::Client).len(),
        50
    );
    let mut i = 0usize;
    c.bench_function("evaluate_all/client_view_50", |b| {
        b.iter(|| {
            i = (i + 1) % ctxs.len();
            black_box(eval::evaluate_all(
                &small,
                black_box(&ctxs[i]),
                Audience::Client,
            ))
        })
    });

    let (_, big) =
        authoring::compile_yaml(&ruleset_yaml("bench", 1, 1000), 0).expect("1000-flag ruleset");
    let idx = big.flag_idx("flag-500").expect("flag-500 exists");
    let mut j = 0usize;
    c.bench_function("evaluate_one/ruleset_1000", |b| {
        b.iter(|| {
            j = (j + 1) % ctxs.len();
            black_box(eval::evaluate_flag(&big, black_box(idx), &ctxs[j]))
        })
    });

    let (pb, _) =
        authoring::compile_yaml(&ruleset_yaml("bench", 1, 10_000), 0).expect("10k-flag ruleset");
    let bytes = codec::encode_ruleset(&pb);
    let mut group = c.benchmark_group("load");
    group.sample_size(20);
    group.bench_function("proto_to_model_10000", |b| {
        b.iter(|| black_box(codec::load_ruleset(black_box(&bytes)).expect("loads")))
    });
    group.finish();
}

criterion_group!(core, benches);
criterion_main!(core);
