//! `flagbelt eval`: evaluate flags for one context, from authoring YAML or from a
//! compiled folder (verified like a server would: manifest, signatures with
//! `--public-key`, digest, environment, decode, compile).
//!
//! Must not: evaluate anything the server would refuse to load, or show a
//! public key (`--client`) a flag the server would hide from it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::eval::{self, Answer, Audience, model};
use crate::ruleset::{authoring, layout, verify};

/// Arguments of `flagbelt eval`.
#[derive(Debug, clap::Args)]
#[command(after_help = r#"Examples:
  flagbelt eval examples/demo.yaml -c '{"targetingKey":"user-1","country":"NZ"}'
  flagbelt eval out -e demo -f new-checkout --json"#)]
pub struct Args {
    /// Authoring YAML file, or a compiled folder (`<out>` or `<out>/<env>`).
    pub source: PathBuf,
    /// The context, a JSON object.
    #[arg(short, long, default_value = "{}")]
    pub context: String,
    /// Evaluate only this flag.
    #[arg(short, long)]
    pub flag: Option<String>,
    /// Print the evaluation answer as JSON (the `/v1/eval` shape).
    #[arg(long)]
    pub json: bool,
    /// Only client-visible flags, as a public key sees them.
    #[arg(long)]
    pub client: bool,
    /// Environment to read from a compiled folder (default: the only one there).
    #[arg(short, long)]
    pub env: Option<String>,
    /// Trusted Ed25519 public key (SPKI PEM); repeatable. With any given, the
    /// manifest must carry a valid signature by one of them.
    #[arg(long = "public-key")]
    pub public_keys: Vec<PathBuf>,
}

pub(super) fn run(args: &Args) -> anyhow::Result<()> {
    let ruleset = load(args)?;
    let ctx = eval::context_from_json(&args.context).context("--context is not usable")?;
    let audience = if args.client {
        Audience::Client
    } else {
        Audience::All
    };
    let results = match &args.flag {
        Some(key) => {
            let flag = ruleset.flag(key).with_context(|| {
                format!("no flag {key:?} in environment {}", ruleset.environment())
            })?;
            let result = eval::evaluate_key(&ruleset, key, &ctx).filter(|_| audience.sees(flag));
            let Some(result) = result else {
                bail!("flag {key:?} is not client-visible (drop --client to see it)");
            };
            vec![result]
        }
        None => eval::evaluate_all(&ruleset, &ctx, audience),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let answer = Answer {
            environment: &ruleset.environment,
            version: ruleset.version,
            flags: results,
        };
        serde_json::to_writer_pretty(&mut out, &answer)?;
        writeln!(out)?;
        return Ok(());
    }
    let width = results
        .iter()
        .map(|e| e.key().len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "{:width$}  {:<16}  {:<10}  VALUE",
        "FLAG", "REASON", "VARIANT"
    )?;
    for e in &results {
        let reason = serde_json::to_value(e.reason)?;
        writeln!(
            out,
            "{:width$}  {:<16}  {:<10}  {}",
            e.key(),
            reason.as_str().unwrap_or_default(),
            e.variant.name,
            e.value()
        )?;
    }
    Ok(())
}

fn load(args: &Args) -> anyhow::Result<model::Ruleset> {
    if !args.source.is_dir() {
        let text = super::read_text(&args.source)?;
        if !args.public_keys.is_empty() {
            bail!("--public-key applies to compiled folders, not YAML");
        }
        let (_, model) = authoring::compile_yaml(&text, super::now_ms())
            .with_context(|| format!("{} is not a valid ruleset", args.source.display()))?;
        return Ok(model);
    }
    let (env_dir, env) = find_env_dir(&args.source, args.env.as_deref())?;
    let trusted = crate::delivery::config::read_public_keys(&args.public_keys)?;
    if trusted.is_empty() {
        eprintln!("note: signatures not checked (no --public-key given)");
    }
    let manifest_path = layout::manifest_file(&env_dir);
    let manifest = verify::verify_manifest(&super::read_bytes(&manifest_path)?, &env, &trusted)
        .with_context(|| format!("{} rejected", manifest_path.display()))?;
    let ruleset_path = env_dir.join(manifest.ruleset_path());
    let (_, model) = verify::verify_ruleset(&manifest, &super::read_bytes(&ruleset_path)?)
        .with_context(|| format!("{} rejected", ruleset_path.display()))?;
    Ok(model)
}

/// The environment folder to read, and the environment expected in it.
fn find_env_dir(dir: &Path, env: Option<&str>) -> anyhow::Result<(PathBuf, String)> {
    if layout::manifest_file(dir).is_file() {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .unwrap_or_default();
        return Ok((dir.to_path_buf(), env.map_or(name, str::to_owned)));
    }
    if let Some(env) = env {
        return Ok((layout::env_dir(dir, env), env.to_owned()));
    }
    let mut envs: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(Result::ok)
        .filter(|e| layout::manifest_file(&e.path()).is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    envs.sort();
    match envs.as_slice() {
        [one] => Ok((layout::env_dir(dir, one), one.clone())),
        [] => bail!("{} holds no <env>/{}", dir.display(), layout::MANIFEST),
        many => bail!(
            "{} holds several environments ({}): pick one with --env",
            dir.display(),
            many.join(", ")
        ),
    }
}
