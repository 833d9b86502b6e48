//! `flagbelt compile`: authoring YAML -> the stored layout, written atomically.
//!
//! Everything that can fail on the input (YAML, validation, signing keys) is done
//! before the output folder is touched. The files are then written into a temp
//! folder beside the target, fsynced, and renamed into place: the ruleset object
//! first, the manifest last (the same order a publisher uses), so a reader never
//! sees a manifest that names a missing ruleset, and a failure leaves the previous
//! state as it was.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::ruleset::codec::StoredObjects;
use crate::ruleset::verify::{self, Mover, TrustedKeys, VerifyError};
use crate::ruleset::{authoring, codec, keys, layout};

/// Arguments of `flagbelt compile`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  flagbelt compile examples/demo.yaml -o out
  flagbelt compile flags.yaml -o out --signing-key release.key")]
pub struct Args {
    /// Authoring YAML file.
    pub yaml: PathBuf,
    /// Output folder; the environment's files go to `<out>/<env>/`.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Ed25519 signing key (PKCS#8 PEM, from `keys signing-new`); repeatable.
    #[arg(long = "signing-key")]
    pub signing_keys: Vec<PathBuf>,
    /// Allow a version lower than the one already in `<out>` (marks the manifest
    /// as a rollback; readers honour it only when it is signed).
    #[arg(long)]
    pub rollback: bool,
}

pub(super) fn run(args: &Args) -> anyhow::Result<()> {
    let text = super::read_text(&args.yaml)?;
    let now = super::now_ms();
    let (pb, model) = authoring::compile_yaml(&text, now)
        .with_context(|| format!("{} is not a valid ruleset", args.yaml.display()))?;
    let signers = args
        .signing_keys
        .iter()
        .map(|p| {
            let pem = super::read_text(p)?;
            keys::signing_key_from_pem(&pem)
                .with_context(|| format!("{} is not a usable signing key", p.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let published_at = i64::try_from(now).unwrap_or(i64::MAX);
    let objects = codec::stored_objects(&pb, published_at, args.rollback, &signers);

    let env_dir = layout::env_dir(&args.out, model.environment());
    check_not_older(&env_dir, model.environment(), &objects.manifest)?;
    write_layout(&args.out, &env_dir, &objects)?;

    let signed_by: Vec<String> = signers
        .iter()
        .map(|k| keys::key_id(&k.verifying_key()))
        .collect();
    super::print_line(format_args!(
        "compiled environment {} version {}: {} flags ({} client-visible), {} segments, {} keys",
        model.environment(),
        model.version(),
        model.flags().len(),
        model.client_flags().len(),
        model.segments().len(),
        model.keys().len(),
    ))?;
    super::print_line(format_args!(
        "wrote {} and {} ({})",
        layout::ruleset_file(&env_dir, model.version()).display(),
        layout::manifest_file(&env_dir).display(),
        if signed_by.is_empty() {
            "unsigned".to_owned()
        } else {
            format!("signed by {}", signed_by.join(", "))
        }
    ))?;
    if model.keys().len() == 0 {
        // Compiles (a ruleset may be staged before its keys exist) but serves
        // nobody: every request needs a key the ruleset lists.
        eprintln!(
            "warning: environment {} has no API keys: nobody can call it (add `keys:`, see docs/format.md)",
            model.environment()
        );
    }
    Ok(())
}

/// Refuses to replace a manifest of a higher version unless `--rollback`
/// (the version rule, [`verify::check_version`], as a writer). The same
/// version with another ruleset is left to [`write_layout`], which refuses to
/// overwrite an immutable ruleset object.
fn check_not_older(env_dir: &Path, env: &str, ours: &[u8]) -> anyhow::Result<()> {
    let path = layout::manifest_file(env_dir);
    let Ok(bytes) = fs::read(&path) else {
        return Ok(());
    };
    let held = verify::held_in(&bytes)
        .with_context(|| format!("existing {} is unreadable; remove it first", path.display()))?;
    // Ours was just built from a compiled ruleset: it verifies.
    let ours = verify::verify_manifest(ours, env, &TrustedKeys::none())
        .context("the new manifest does not verify")?;
    match verify::check_version(Some(held), &ours, Mover::Writer) {
        Err(VerifyError::OlderVersion { .. }) => bail!(
            "{} holds version {} and this ruleset is version {}: pass --rollback to go back",
            path.display(),
            held.version,
            ours.version()
        ),
        Err(e) if e.is_older() => bail!("{} is not replaced: {e}", path.display()),
        _ => Ok(()),
    }
}

pub(super) fn write_layout(
    out: &Path,
    env_dir: &Path,
    objects: &StoredObjects,
) -> anyhow::Result<()> {
    let rulesets = layout::rulesets_dir(env_dir);
    let target = env_dir.join(&objects.ruleset_path);
    if fs::read(&target).is_ok_and(|existing| existing != objects.ruleset) {
        bail!(
            "{} already exists with different content: rulesets are immutable, give the new one a new version",
            target.display()
        );
    }
    fs::create_dir_all(&rulesets)
        .with_context(|| format!("cannot create {}", rulesets.display()))?;
    let tmp = TempDir::new(out)?;
    let tmp_ruleset = tmp.write("ruleset.pb", &objects.ruleset)?;
    let tmp_manifest = tmp.write(layout::MANIFEST, &objects.manifest)?;
    fs::rename(&tmp_ruleset, &target)
        .with_context(|| format!("cannot move ruleset into {}", target.display()))?;
    let manifest_path = layout::manifest_file(env_dir);
    fs::rename(&tmp_manifest, &manifest_path)
        .with_context(|| format!("cannot move manifest into {}", manifest_path.display()))?;
    sync_dir(&rulesets);
    sync_dir(env_dir);
    Ok(())
}

/// A temp folder inside `out` (same filesystem, so renames are atomic), removed
/// on drop whatever happened.
struct TempDir(PathBuf);

impl TempDir {
    fn new(out: &Path) -> anyhow::Result<Self> {
        let nanos = crate::util::clock_nanos();
        let path = out.join(format!(".flagbelt-tmp-{}-{nanos}", std::process::id()));
        fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }

    fn write(&self, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
        let path = self.0.join(name);
        let mut f =
            fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Makes renames inside `dir` durable; best effort (not all platforms can open
/// a directory).
fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
