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
        let mut reasons = Vec::with_capacity(failed.len());
        for (env, e) in &failed {
            // The words serve logs: the manifest paths looked for, or what
            // each source answered (a rejection with its reason).
            let why = match delivery.failure(env).await {
                Some(why) => why,
                None => e.to_string(),
            };
            reasons.push((env, why));
        }
        let report = json!({
            "sources": probes,
            "environments": delivery.environments(),
            "failed": reasons.iter().map(|(env, why)| json!({"environment": env, "error": why})).collect::<Vec<_>>(),
        });
        super::print_line(serde_json::to_string_pretty(&report)?)?;
        if let Some((env, why)) = reasons.first() {
            anyhow::bail!("environment {env} could not be loaded: {why}");
        }
        Ok(())
    })
}
