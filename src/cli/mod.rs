//! The `flagbelt` command line: argument parsing and one module per subcommand.
//!
//! Owns file I/O, the clock, start-up and process exit codes for the commands
//! (`compile`, `inspect`, `eval`, `keys`, `publish`, `fetch`, `serve`, `demo`).
//! The format work itself lives in
//! `ruleset` and `eval`; nothing here re-implements validation. Every failure is
//! an error message on stderr and a non-zero exit, never a panic, and a failed
//! command leaves no partial output behind.

mod compile;
mod delivery_args;
mod demo;
mod eval;
mod fetch;
mod inspect;
mod keys;
mod publish;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::util::now_ms;

/// flagbelt: feature flags and dynamic config at the edge.
#[derive(Debug, Parser)]
#[command(name = "flagbelt", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// What `flagbelt` can do; each variant's doc line is its `--help` summary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compile authoring YAML into the stored layout: `<out>/<env>/manifest.pb`
    /// and `<out>/<env>/rulesets/<version>.pb`.
    Compile(compile::Args),
    /// Decode a manifest or ruleset (`.pb`) to readable JSON.
    Inspect(inspect::Args),
    /// Evaluate flags for a context, from YAML or from a compiled directory.
    Eval(eval::Args),
    /// Load environments from the sources as a server would, and report.
    Fetch(fetch::Args),
    /// Create API keys and signing keys.
    #[command(subcommand)]
    Keys(keys::Command),
    /// Upload a compiled folder to every store (rulesets first, manifest last),
    /// with a per-store report.
    Publish(publish::Args),
    /// Run the edge server: evaluation, OFREP, ruleset download, health,
    /// metrics and admin over HTTP.
    Serve(serve::Args),
    /// Serve the bundled demo environment on 127.0.0.1:8080 and print how to call it.
    Demo(demo::Args),
}

/// Parses the command line, runs the command and maps failure to exit code 1
/// with the full error chain on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compile(args) => compile::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Keys(cmd) => keys::run(&cmd),
        Command::Fetch(args) => fetch::run(&args),
        Command::Publish(args) => publish::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Demo(args) => demo::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads a UTF-8 text file, naming it in the error.
fn read_text(path: &PathBuf) -> anyhow::Result<String> {
    use anyhow::Context as _;
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Reads a file's bytes, naming it in the error.
fn read_bytes(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}
