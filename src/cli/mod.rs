//! The `flagbelt` command line: argument parsing and one module per subcommand.
//!
//! Owns file I/O, the clock, start-up and process exit codes for the commands
//! (`compile`, `inspect`, `eval`, `keys`, `publish`, `fetch`, `serve`, `demo`).
//! The format work itself lives in
//! `ruleset` and `eval`; nothing here re-implements validation. Every failure is
//! an error message on stderr and a non-zero exit, never a panic, and a failed
//! command leaves no partial output behind.
//!
//! Exit codes: 0 success, 1 a failure (the error on stderr), 2 a usage error
//! (clap's, with the usage line). Output goes through `print_line` so that
//! a closed stdout (`flagbelt inspect … | head`) ends the command quietly with
//! 0, never with `println!`'s panic.

mod compile;
mod delivery_args;
mod demo;
mod eval;
mod fetch;
mod inspect;
mod keys;
mod logging;
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

/// Parses the command line (a usage error exits 2, from clap), runs the
/// command and maps failure to exit code 1 with the full error chain on
/// stderr. A closed stdout is not a failure: the reader has what it wanted.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = run(cli);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command; only the servers log, the one-shot commands print.
fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve(args) => logging::init(args.log_format)?,
        Command::Demo(args) => logging::init(args.log_format)?,
        _ => {}
    }
    match cli.command {
        Command::Compile(args) => compile::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Keys(cmd) => keys::run(&cmd),
        Command::Fetch(args) => fetch::run(&args),
        Command::Publish(args) => publish::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Demo(args) => demo::run(&args),
    }
}

/// Writes one line to stdout. Unlike `println!`, which panics when stdout is
/// a closed pipe, this returns the error, and [`main`] ends quietly on it.
fn print_line(text: impl std::fmt::Display) -> std::io::Result<()> {
    use std::io::Write as _;
    writeln!(std::io::stdout().lock(), "{text}")
}

/// Whether the failure is a write to a closed stdout (the reader, `head` for
/// example, stopped reading), which is how a pipeline ends, not an error.
///
/// Only the outermost error counts: a write to stdout fails with that error
/// itself (`?` on `print_line` or a `writeln!`), while a broken pipe deep in
/// a storage or network error's causes is a real failure and must exit 1.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    // `chain()` starts with the outermost error (a context, if one was added);
    // `downcast_ref` on the `anyhow::Error` would also look through contexts.
    let Some(top) = e.chain().next() else {
        return false;
    };
    let kind = top
        .downcast_ref::<std::io::Error>()
        .map(std::io::Error::kind)
        .or_else(|| {
            top.downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
        });
    kind == Some(std::io::ErrorKind::BrokenPipe)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_top_level_broken_pipe_is_a_quiet_end() {
        let pipe = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(is_broken_pipe(&anyhow::Error::new(pipe())));
        // A broken pipe inside another failure (a store's connection) is not.
        let deep = anyhow::Error::new(pipe()).context("publishing to s3://b");
        assert!(!is_broken_pipe(&deep));
        let other = anyhow::Error::new(std::io::Error::other("disk full"));
        assert!(!is_broken_pipe(&other));
    }
}
