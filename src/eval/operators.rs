//! Operators. (placeholder: being written)
/// Lenient semver.
pub fn parse_semver(s: &str) -> Option<semver::Version> { semver::Version::parse(s).ok() }
/// Strict RFC 3339 to epoch nanoseconds.
pub fn parse_rfc3339(s: &str) -> Option<i128> { let _ = s; None }
/// Epoch milliseconds to nanoseconds.
pub fn epoch_millis_to_nanos(n: &serde_json::Number) -> Option<i128> { n.as_i64().map(|v| i128::from(v) * 1_000_000) }
