//! Small helpers that every layer needs once: an error's chain on one line,
//! the wall clock in milliseconds (and its sub-second noise), a
//! poison-tolerant lock and percent-decoding.
//!
//! The leaf of the crate: it depends on no other module of flagbelt, so any
//! module may use it without creating an import circle. Must not: do I/O,
//! know about rulesets, storage or HTTP, or grow helpers that only one module
//! uses (those stay in that module).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// An error and its causes on one line (`a: b: c`), for status pages, logs
/// and CLI reports.
///
/// A cause whose text the line already holds is left out: object_store's
/// errors print their own causes, and repeating them buries the message.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// Milliseconds since the Unix epoch by the wall clock; 0 if the clock is set
/// before 1970 (nothing here may panic on a bad clock).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The sub-second part of the wall clock, in nanoseconds: cheap noise for
/// poll jitter and unique temporary names (no RNG state); 0 on a clock set
/// before 1970.
pub fn clock_nanos() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// Locks `m`, also when a holder panicked. Use it only where the data stays
/// valid whatever a panicking holder did (counters, last-seen status, `()`
/// guards): every such mutex in flagbelt is one, and a write must never be
/// dropped because an unrelated task once panicked.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `%XX`-decodes `s`. Malformed escapes (`%zz`, a `%` at the end) are kept as
/// written; `None` when the decoded bytes are not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Outer(#[source] Inner);
    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn error_chain_skips_causes_already_printed() {
        let e = Outer(Inner(std::io::Error::other("disk")));
        // "inner" is in the outer text already; "disk" is not.
        assert_eq!(error_chain(&e), "outer: inner: disk");
    }

    #[test]
    fn percent_decode_keeps_malformed_escapes() {
        assert_eq!(percent_decode("a%20b/c").as_deref(), Some("a b/c"));
        assert_eq!(percent_decode("a%2").as_deref(), Some("a%2"));
        assert_eq!(percent_decode("%zz").as_deref(), Some("%zz"));
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn lock_survives_a_panicked_holder() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = std::sync::Arc::clone(&m);
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("holder panics");
        })
        .join();
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }
}
