//! The tracing subscriber of the long-running commands (`serve`, `demo`):
//! `RUST_LOG`-style filtering (default `info`), stderr only, text or one JSON
//! object per line, and ANSI colours only when stderr is a terminal (a file, a
//! pipe or a container's log collector gets plain text).
//!
//! Must not: decide what is logged or at which level (the code that logs
//! does), or write to stdout (which carries the commands' output).

use std::io::IsTerminal as _;

use anyhow::Context as _;

/// How log lines are written (`--log-format`, `FLAGBELT_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured only on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the subscriber. A `RUST_LOG` that does not parse is an error
/// rather than a silent fallback, so a typo does not hide the logs asked for.
pub(super) fn init(format: LogFormat) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => tracing_subscriber::EnvFilter::try_new(&s)
            .with_context(|| format!("RUST_LOG is not a valid filter: {s:?}"))?,
        _ => tracing_subscriber::EnvFilter::new("info"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Ignore "already set": only a test harness would have set one.
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    Ok(())
}
