//! Scaffolding shared by test modules: a delivery over in-memory fault stores
//! that trusts one signing key, with the quick deadlines the HTTP-level rigs
//! use (`http`, `openapi`, `peers`); and the lookup of settings the test
//! scripts provide (`clients`, `stores`).

use std::io::Write as _;

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use object_store::ObjectStore;

use flagbelt::delivery::failover::{Failover, FailoverOptions};
use flagbelt::delivery::faults::FaultyStore;
use flagbelt::delivery::source::Source;
use flagbelt::delivery::{Delivery, DeliveryOptions};
use flagbelt::ruleset::verify::TrustedKeys;

/// A delivery reading `stores` (label, store) in order, trusting `signer`,
/// with a 300 ms source deadline and `opts`.
pub(crate) fn memory_delivery(
    stores: &[(String, Arc<FaultyStore>)],
    signer: &SigningKey,
    opts: DeliveryOptions,
) -> Arc<Delivery> {
    let sources = stores
        .iter()
        .map(|(label, store)| {
            Arc::new(Source::new(
                label.clone(),
                Arc::clone(store) as Arc<dyn ObjectStore>,
                "",
                Duration::from_millis(300),
            ))
        })
        .collect();
    let fetcher = Failover::new(
        sources,
        TrustedKeys::from_keys(vec![signer.verifying_key()]),
        FailoverOptions {
            hedge_delay: Duration::from_millis(100),
            manifest_wait: Duration::from_millis(400),
        },
    );
    Delivery::new(fetcher, None, None, opts)
}

/// A setting the test scripts export (`var`): present, or a failure under CI
/// (`provider` says which script provides it) and a printed skip locally
/// (`hint` says how to get it).
pub(crate) fn provided(var: &str, provider: &str, hint: &str) -> Option<String> {
    if let Ok(v) = std::env::var(var)
        && !v.is_empty()
    {
        return Some(v);
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(!ci, "{var} is not set: CI must {provider}");
    // Straight to the process's stderr: the harness captures `eprintln!` of
    // passing tests, and a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {}: {var} is not set; {hint}",
        std::thread::current().name().unwrap_or("a test")
    );
    None
}
