//! The `# HELP` text and unit of every `flagbelt_*` metric, registered once
//! with the installed recorder so `/metrics` explains itself.
//!
//! Must not: record values (the code that counts does, where it counts), or
//! name a metric nothing records. A metric added elsewhere gets its line here;
//! the `cli` test of `/metrics` checks a few of them.

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
