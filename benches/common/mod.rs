//! Generated rulesets and contexts shared by the benchmarks.

use std::fmt::Write as _;

use flagbelt::eval::Context;
use serde_json::json;

/// A ruleset of `n` flags plus a server-only `base` flag used as a prerequisite;
/// with n <= 100 all `n` are client-visible, else every other one; flag shapes
/// rotate through five kinds of targeting.
pub fn ruleset_yaml(env: &str, version: u64, n: usize) -> String {
    let mut y = format!("environment: {env}\nversion: {version}\n");
    y.push_str(
        "segments:\n  staff:\n    - [{attr: email, op: ends_with, values: [\"@example.com\"]}]\n  beta:\n    - [{attr: beta, op: eq, values: [true]}]\n    - [{segment: staff}]\nflags:\n  base:\n    variants: {on: true, off: false}\n    default: on\n",
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

/// `n` varied contexts (countries, plans, emails, versions, dates).
pub fn contexts(n: usize) -> Vec<Context> {
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
