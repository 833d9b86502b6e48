//! The `# HELP` text and unit of every `flagbelt_*` metric, registered once
//! with the installed recorder so `/metrics` explains itself.
//!
//! Must not: record values (the code that counts does, where it counts), or
//! name a metric nothing records. A metric added elsewhere gets its line here;
//! a unit test finds every `"flagbelt_…"` name in `src/` and fails without it.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Describes every metric to the global recorder. Call it after the recorder
/// is installed: descriptions given before are lost.
pub fn describe() {
    describe_counter!(
        "flagbelt_http_requests_total",
        "HTTP requests answered, by route template, method and status"
    );
    describe_histogram!(
        "flagbelt_http_request_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by route template"
    );
    describe_counter!(
        "flagbelt_http_shed_total",
        "API requests refused with 503 because --max-concurrency were in flight"
    );
    describe_counter!(
        "flagbelt_http_stale_answers_total",
        "Answers marked stale: Flagbelt-Min-Version was not reached in time"
    );
    describe_counter!(
        "flagbelt_answer_cache_total",
        "Server-side answer cache lookups, by outcome (hit, miss, admitted)"
    );
    describe_counter!(
        "flagbelt_source_requests_total",
        "Storage requests, by source label, operation and outcome"
    );
    describe_histogram!(
        "flagbelt_source_request_seconds",
        Unit::Seconds,
        "Time of one storage request, by source label and operation"
    );
    describe_counter!(
        "flagbelt_fetch_polls_total",
        "Polls of an environment across its sources, by outcome"
    );
    describe_counter!(
        "flagbelt_fetch_rejected_total",
        "Manifests or rulesets refused by verification, by reason"
    );
    describe_counter!(
        "flagbelt_env_loads_total",
        "First loads of an environment, by outcome (source, cache, bootstrap, not found, unavailable)"
    );
    describe_counter!(
        "flagbelt_env_activations_total",
        "New ruleset versions swapped in by a poll"
    );
    describe_gauge!(
        "flagbelt_environments_loaded",
        "Environments held in memory"
    );
    describe_gauge!(
        "flagbelt_environments_fallback",
        "Environments served from the last-known-good cache or the bootstrap folder"
    );
    describe_gauge!(
        "flagbelt_environments_failing",
        "Environments whose polls are failing (served from what they last held)"
    );
    describe_gauge!(
        "flagbelt_ruleset_age_max_seconds",
        Unit::Seconds,
        "Age of the oldest ruleset served, since it was published"
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// The `"flagbelt_…"` string literals of every `.rs` file below `dir`.
    fn metric_names(dir: &Path, skip: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                metric_names(&path, skip, out);
            } else if path.extension().is_some_and(|e| e == "rs") && path != skip {
                let text = std::fs::read_to_string(&path).unwrap();
                for piece in text.split("\"flagbelt_").skip(1) {
                    let name: String = piece
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if piece[name.len()..].starts_with('"') {
                        out.insert(format!("flagbelt_{name}"));
                    }
                }
            }
        }
    }

    /// A metric recorded anywhere in `src/` without a description here would
    /// show on `/metrics` with no `# HELP`: this catches it.
    #[test]
    fn every_recorded_metric_is_described() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let this = root.join("http/metric_help.rs");
        let mut recorded = BTreeSet::new();
        metric_names(&root, &this, &mut recorded);
        let mut described = BTreeSet::new();
        let text = std::fs::read_to_string(&this).unwrap();
        for name in &recorded {
            if text.contains(&format!("\"{name}\"")) {
                described.insert(name.clone());
            }
        }
        assert!(recorded.len() >= 10, "found only {recorded:?}");
        let missing: Vec<_> = recorded.difference(&described).collect();
        assert!(missing.is_empty(), "no # HELP for {missing:?}");
    }
}
