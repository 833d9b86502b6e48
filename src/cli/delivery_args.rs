//! The delivery settings shared by `flagbelt fetch` and `flagbelt serve`: one
//! clap struct, every flag also an environment variable `FLAGBELT_<NAME>`,
//! validated into [`DeliveryConfig`]'s typed values.
//!
//! Must not: read the environment itself (clap does), or build anything:
//! `delivery::config` turns the settings into sources and a `Delivery`.

use std::path::PathBuf;
use std::time::Duration;

use crate::delivery::DeliveryOptions;
use crate::delivery::config::DeliveryConfig;
use crate::delivery::failover::FailoverOptions;
use crate::delivery::source::SourceOptions;

/// Where rulesets come from and how hard to try.
#[derive(Debug, Clone, clap::Args)]
pub struct DeliveryArgs {
    /// Source URL (`s3://`, `gs://`, `az://`, `http(s)://`, `file://`), in order
    /// of preference; repeat the flag, or comma-separate in the env variable.
    #[arg(
        short,
        long = "source",
        env = "FLAGBELT_SOURCE",
        value_delimiter = ',',
        required = true
    )]
    pub sources: Vec<String>,
    /// Trusted Ed25519 public key (SPKI PEM); repeatable. Without one, unsigned
    /// manifests are accepted (local use only).
    #[arg(
        long = "public-key",
        env = "FLAGBELT_PUBLIC_KEY",
        value_delimiter = ','
    )]
    pub public_keys: Vec<PathBuf>,
    /// Last-known-good folder: every activated ruleset is written here, and read
    /// at start when no source answers.
    #[arg(long, env = "FLAGBELT_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Baked fallback folder in the stored layout, read when no source and no
    /// cache answers.
    #[arg(long, env = "FLAGBELT_BOOTSTRAP")]
    pub bootstrap: Option<PathBuf>,
    /// Deadline for one storage operation, retries included (ms).
    #[arg(long, env = "FLAGBELT_SOURCE_TIMEOUT_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub source_timeout_ms: u64,
    /// Delay before a ruleset read is also asked of the next source (ms).
    #[arg(long, env = "FLAGBELT_HEDGE_DELAY_MS", default_value_t = 200,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub hedge_delay_ms: u64,
    /// Poll interval of an environment in use (seconds).
    #[arg(long, env = "FLAGBELT_POLL_INTERVAL_S", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub poll_interval_s: u64,
    /// Evict an environment nobody asked for this long (seconds).
    #[arg(long, env = "FLAGBELT_IDLE_TTL_S", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub idle_ttl_s: u64,
}

impl DeliveryArgs {
    /// The flags as the delivery layer's typed settings (durations, options
    /// per layer); the manifest wait is one source deadline.
    pub fn config(&self) -> DeliveryConfig {
        let timeout = Duration::from_millis(self.source_timeout_ms);
        DeliveryConfig {
            sources: self.sources.clone(),
            public_keys: self.public_keys.clone(),
            cache_dir: self.cache_dir.clone(),
            bootstrap: self.bootstrap.clone(),
            source: SourceOptions {
                timeout,
                ..SourceOptions::default()
            },
            fetch: FailoverOptions {
                hedge_delay: Duration::from_millis(self.hedge_delay_ms),
                // Wait for every manifest no longer than one source deadline.
                manifest_wait: timeout,
            },
            environments: DeliveryOptions {
                poll_interval: Duration::from_secs(self.poll_interval_s),
                idle_ttl: Duration::from_secs(self.idle_ttl_s),
                ..DeliveryOptions::default()
            },
        }
    }
}
