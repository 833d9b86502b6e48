//! `flagbelt fetch`: run the delivery layer once, as a server would at start,
//! and print what it would serve. The operator's "can this instance see its
//! stores?" check: source probes, the version each environment would serve and
//! where from, and every source's verdict.
//!
//! Must not: write to a store or the last-known-good cache, or judge a source
//! differently from `serve` (it runs the same delivery code).

use anyhow::Context as _;
use serde_json::json;

use super::delivery_args::DeliveryArgs;
use crate::delivery::EnvError;
use crate::delivery::config;

/// Arguments of `flagbelt fetch`. The polling flags of [`DeliveryArgs`] are
/// accepted (one environment file serves both commands) but hidden: a single
/// run never polls nor evicts.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:
  flagbelt fetch -s file:///srv/flags -e production
  flagbelt fetch -s s3://flags-eu/prod -s https://cdn.example.com/flags -e web,api --public-key release.pub",
    mut_arg("poll_interval_s", |a| a.hide(true)),
    mut_arg("idle_ttl_s", |a| a.hide(true))
)]
pub struct Args {
    /// Sources and fallbacks.
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    /// Environments to load; repeatable or comma-separated.
    #[arg(short, long = "env", value_delimiter = ',', required = true)]
    pub envs: Vec<String>,
}

pub(super) fn run(args: &Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let delivery = args.delivery.config().build()?;
        let probes = config::probe(&delivery).await;
        for p in probes.iter().filter(|p| p.problem.is_some()) {
            eprintln!("warning: source {}: {}", p.label, p.problem.as_deref().unwrap_or_default());
        }
        let failed = delivery.preload(&args.envs).await;
        let report = json!({
            "sources": probes,
            "environments": delivery.environments(),
            "failed": failed.iter().map(|(env, e)| json!({"environment": env, "error": e.to_string()})).collect::<Vec<_>>(),
        });
        super::print_line(serde_json::to_string_pretty(&report)?)?;
        if let Some((env, e)) = failed.first() {
            let hint = match e {
                EnvError::NotFound => "no source has it",
                EnvError::Unavailable => "no source answered usably and there is no cached or bootstrap copy",
            };
            anyhow::bail!("environment {env} could not be loaded: {hint}");
        }
        Ok(())
    })
}
