//! `flagbelt inspect`: a stored manifest or ruleset as readable JSON.
//!
//! Decoding only, plus a validity check for rulesets (compile): a ruleset that
//! decodes but does not compile is printed and then reported as an error.
//! Signatures are shown, not verified (`flagbelt eval DIR --public-key` verifies).
//!
//! Must not: present a decoded object as trusted, or print anything but the
//! object's own fields.

use std::path::PathBuf;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::ruleset::{codec, layout};

/// Arguments of `flagbelt inspect`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  flagbelt inspect out/demo/manifest.pb
  flagbelt inspect out/demo/rulesets/1.pb | head -20")]
pub struct Args {
    /// A `manifest.pb` or `rulesets/<version>.pb` file.
    pub file: PathBuf,
    /// What the file is; by default `manifest.pb` is a manifest and anything
    /// else a ruleset.
    #[arg(short, long, value_enum)]
    pub kind: Option<Kind>,
}

/// Which message a stored object decodes as (`--kind`, when the file name
/// does not say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// `manifest.pb`.
    Manifest,
    /// `rulesets/<version>.pb`.
    Ruleset,
}

pub(super) fn run(args: &Args) -> anyhow::Result<()> {
    let bytes = super::read_bytes(&args.file)?;
    let kind = args.kind.unwrap_or_else(|| {
        if args.file.file_name().is_some_and(|n| n == layout::MANIFEST) {
            Kind::Manifest
        } else {
            Kind::Ruleset
        }
    });
    let name = args.file.display();
    match kind {
        Kind::Manifest => {
            let out =
                codec::manifest_json(&bytes).with_context(|| format!("cannot decode {name}"))?;
            super::print_line(serde_json::to_string_pretty(&out)?)?;
            Ok(())
        }
        Kind::Ruleset => {
            let mut out =
                codec::ruleset_json(&bytes).with_context(|| format!("cannot decode {name}"))?;
            if let Value::Object(m) = &mut out {
                m.insert("kind".into(), json!("ruleset"));
            }
            super::print_line(serde_json::to_string_pretty(&out)?)?;
            match codec::load_ruleset(&bytes) {
                Err(codec::LoadError::Invalid(e)) => Err(anyhow::Error::new(e)
                    .context(format!("{name} decodes but is not a valid ruleset"))),
                // It decoded above; a decode error cannot happen here.
                Err(e) => Err(e.into()),
                Ok(_) => Ok(()),
            }
        }
    }
}
