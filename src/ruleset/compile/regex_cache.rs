//! The process-wide cache of compiled `matches` patterns, and the size limit
//! every pattern is compiled with.
//!
//! It must not hold a lock while compiling, and must not grow without bound.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use crate::util::lock;

use regex::{Regex, RegexBuilder};

/// Compiled size limit per regex, so a hostile ruleset cannot exhaust memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Most distinct patterns kept in [`shared_regex`]'s cache.
const REGEX_CACHE_MAX: usize = 10_000;

/// Compiles `pattern`, or shares the one already compiled for it. A compiled
/// regex (automaton plus its cache pool) is large next to the rest of a model,
/// and a server holding thousands of environments sees the same patterns again
/// and again; sharing one `Arc<Regex>` (it is `Sync`) costs a pointer (README
/// "Benchmarks", what moved memory). The cache is cleared when full; models
/// keep their `Arc`s either way.
pub(super) fn shared_regex(pattern: &str) -> Result<Arc<Regex>, regex::Error> {
    static CACHE: LazyLock<Mutex<HashMap<String, Arc<Regex>>>> = LazyLock::new(Mutex::default);
    let cached = lock(&CACHE).get(pattern).cloned();
    if let Some(re) = cached {
        return Ok(re);
    }
    // Compiled outside the lock: a slow pattern must not stall other compiles.
    let re = Arc::new(
        RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()?,
    );
    let mut cache = lock(&CACHE);
    if cache.len() >= REGEX_CACHE_MAX {
        cache.clear();
    }
    cache.insert(pattern.to_owned(), re.clone());
    Ok(re)
}
