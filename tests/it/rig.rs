//! Scaffolding shared by the HTTP-level test modules (`http`, `openapi`,
//! `peers`): a delivery over in-memory fault stores that trusts one signing
//! key, with the quick deadlines every one of them uses.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use object_store::ObjectStore;

use flagbelt::delivery::environments::{Delivery, DeliveryOptions};
use flagbelt::delivery::faults::FaultyStore;
use flagbelt::delivery::fetch::{FetchOptions, Fetcher};
use flagbelt::delivery::source::Source;
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
    let fetcher = Fetcher::new(
        sources,
        TrustedKeys::from_keys(vec![signer.verifying_key()]),
        FetchOptions {
            hedge_delay: Duration::from_millis(100),
            manifest_wait: Duration::from_millis(400),
        },
    );
    Delivery::new(fetcher, None, None, opts)
}
