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

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use flagbelt::eval::{self, Audience, Context};
use flagbelt::ruleset::{authoring, codec};
use serde_json::json;

/// A ruleset of `n` flags plus a server-only `base` flag used as a prerequisite;
/// with n <= 100 all `n` are client-visible, else every other one; flag shapes
/// rotate through five kinds of targeting.
fn ruleset_yaml(n: usize) -> String {
    let mut y = String::from(
        "environment: bench\nversion: 1\nsegments:\n  staff:\n    - [{attr: email, op: ends_with, values: [\"@example.com\"]}]\n  beta:\n    - [{attr: beta, op: eq, values: [true]}]\n    - [{segment: staff}]\nflags:\n  base:\n    variants: {on: true, off: false}\n    default: on\n",
    );
    for i in 0..n {
        let client = i % 2 == 0 || n <= 100;
        let _ = writeln!(y, "  flag-{i}:\n    client: {client}");
        match i % 5 {
            0 => {
                let _ = writeln!(
                    y,
                    "    variants: {{on: true, off: false}}\n    default: off\n    rules:\n      - when: [{{attr: country, op: in, values: [NZ, AU, GB, CA]}}, {{attr: app.version, op: semver_gte, values: [\"2.3.0\"]}}]\n        serve: on\n      - when: [{{segment: staff}}]\n        serve: {{rollout: {{weights: {{on: 25, off: 75}}}}}}"
                );
            }
            1 => {
                let _ = writeln!(
                    y,
                    "    variants: {{a: \"Welcome\", b: \"Hello\", c: \"Kia ora\"}}\n    default: a\n    rules:\n      - when: [{{attr: country, op: eq, values: [NZ]}}]\n        serve: c\n      - serve: {{rollout: {{weights: {{a: 50, b: 50}}}}}}"
                );
            }
            2 => {
                let _ = writeln!(
                    y,
                    "    variants: {{small: 10, big: 1000}}\n    default: small\n    requires: [{{flag: base, variant: on}}]\n    rules:\n      - when: [{{attr: plan, op: in, values: [pro, enterprise]}}, {{attr: seats, op: gte, values: [10]}}]\n        serve: big"
                );
            }
            3 => {
                let _ = writeln!(
                    y,
                    "    variants: {{on: true, off: false}}\n    default: off\n    rules:\n      - when: [{{segment: beta}}]\n        serve: on\n      - when: [{{attr: email, op: matches, values: [\"^qa-[0-9]+@\"]}}]\n        serve: on"
                );
            }
            _ => {
                let _ = writeln!(
                    y,
                    "    variants: {{old: {{limit: 1}}, new: {{limit: 2}}}}\n    default: old\n    rules:\n      - when: [{{attr: signup, op: after, values: [\"2025-06-01T00:00:00Z\"]}}, {{attr: platform, op: not_in, values: [ios]}}]\n        serve: new"
                );
            }
        }
    }
    y
}

fn contexts(n: usize) -> Vec<Context> {
    let countries = ["NZ", "AU", "US", "GB", "DE", "CA"];
    let plans = ["free", "pro", "enterprise"];
    (0..n)
        .map(|i| {
            let ctx = json!({
                "targetingKey": format!("user-{i}"),
                "email": if i % 7 == 0 { format!("u{i}@example.com") } else { format!("u{i}@mail.test") },
                "country": countries[i % countries.len()],
                "plan": plans[i % plans.len()],
                "seats": i % 40,
                "beta": i % 11 == 0,
                "platform": if i % 2 == 0 { "ios" } else { "web" },
                "signup": format!("2025-{:02}-15T10:00:00Z", 1 + i % 12),
                "app": {"version": format!("2.{}.0", i % 5)},
            });
            match ctx {
                serde_json::Value::Object(m) => m,
                _ => unreachable!("json! object"),
            }
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let ctxs = contexts(1024);

    let (_, small) = authoring::compile_yaml(&ruleset_yaml(50), 0).expect("50-flag ruleset");
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

    let (_, big) = authoring::compile_yaml(&ruleset_yaml(1000), 0).expect("1000-flag ruleset");
    let idx = big.flag_index["flag-500"];
    let mut j = 0usize;
    c.bench_function("evaluate_one/ruleset_1000", |b| {
        b.iter(|| {
            j = (j + 1) % ctxs.len();
            black_box(eval::evaluate_flag(&big, black_box(idx), &ctxs[j]))
        })
    });

    let (pb, _) = authoring::compile_yaml(&ruleset_yaml(10_000), 0).expect("10k-flag ruleset");
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
