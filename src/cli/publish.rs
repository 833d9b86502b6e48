//! `flagbelt publish`: uploads a compiled layout to every store.
//!
//! Owns the publisher's side of the stored layout (DESIGN.md "Stored layout"):
//! the whole folder is validated before any byte leaves the machine; then every
//! store is written concurrently, each environment's ruleset objects first and
//! its manifest last, so a reader never finds a manifest naming a missing
//! ruleset. Each store operation has its own deadline (`--timeout-ms`, retries
//! included), so a dead store costs seconds and never holds the others back.
//! The result is a per-store report and an exit code (`--min-stores`).
//!
//! Must not: overwrite an immutable ruleset object with different bytes, move a
//! store's manifest to a lower version unless the version rule
//! ([`verify::check_version`]) accepts ours as a rollback, or
//! print credentials (stores are named by their [`Source::label`]). Format
//! checks are `ruleset::verify`'s, not re-implemented here.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};

use crate::delivery::source::{self, Fetched, Source, SourceError, SourceOptions};
use crate::ruleset::verify::{self, Mover, TrustedKeys, VerifyError};
use crate::ruleset::{codec, layout, valid_env_name};
use crate::util::error_chain;

/// Arguments of `flagbelt publish`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  flagbelt publish out -t file:///srv/flags
  flagbelt publish out -t s3://flags-eu/prod -t gs://flags-us/prod --min-stores 1")]
pub struct Args {
    /// A `flagbelt compile` output folder: `<dir>/<env>/manifest.pb` and
    /// `<dir>/<env>/rulesets/<version>.pb`, for one or several environments.
    pub dir: PathBuf,
    /// A store to publish to; repeatable. `s3://bucket[/prefix]`,
    /// `gs://bucket[/prefix]`, `az://container[/prefix]`, `http(s)://host/path`
    /// or `file:///abs/path`, with settings as query parameters (e.g.
    /// `?endpoint=...&region=...`); credentials come from the environment.
    #[arg(short, long = "to", value_name = "URL", required = true)]
    pub to: Vec<String>,
    /// Succeed when at least N stores received everything (default: all of them
    /// must). Failures are still reported.
    #[arg(long, value_name = "N")]
    pub min_stores: Option<usize>,
    /// Deadline of each store operation in milliseconds, retries included.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
}

/// Refuses a `file://` store whose folder does not exist, saying to create
/// it: publish never creates one, as a typo in the path would otherwise
/// publish where no server reads (the README's publish section says so).
fn missing_folder(to: &str) -> anyhow::Result<()> {
    let Some(dir) = url::Url::parse(to)
        .ok()
        .filter(|u| u.scheme() == "file")
        .and_then(|u| u.to_file_path().ok())
    else {
        return Ok(());
    };
    if !dir.exists() {
        bail!(
            "--to {to}: folder {} does not exist; publish does not create it: create it first (mkdir -p {})",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

pub(super) fn run(args: &Args) -> anyhow::Result<()> {
    let layouts = read_layout(&args.dir)?;
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let opts = SourceOptions {
        timeout,
        connect_timeout: timeout.min(Duration::from_secs(3)),
        max_retries: 3,
    };
    for to in &args.to {
        missing_folder(to)?;
    }
    let sources = source::parse_sources(&args.to, &opts)?;
    let needed = match args.min_stores {
        None => sources.len(),
        Some(n) if (1..=sources.len()).contains(&n) => n,
        Some(n) => bail!(
            "--min-stores {n} is impossible with {} store(s) given (use 1 to {})",
            sources.len(),
            sources.len()
        ),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let reports = runtime.block_on(futures::future::join_all(
        sources.iter().map(|s| publish_to(s, &layouts)),
    ));

    let mut out = String::new();
    for (source, report) in sources.iter().zip(&reports) {
        write_report(&mut out, source.label(), report);
    }
    let ok = reports.iter().filter(|r| r.failure.is_none()).count();
    let total = reports.len();
    let _ = writeln!(out, "published to {ok} of {total} store(s)");
    // The stores are written whatever became of stdout; the exit code below
    // still says whether enough of them took it.
    let _ = super::print_line(out.strip_suffix('\n').unwrap_or(&out));
    if ok == total {
        return Ok(());
    }
    if ok >= needed {
        eprintln!(
            "warning: {} of {total} store(s) failed; accepted because --min-stores is {needed}",
            total - ok
        );
        return Ok(());
    }
    if args.min_stores.is_some() {
        bail!(
            "{} of {total} store(s) failed: only {ok} succeeded, --min-stores is {needed}",
            total - ok
        );
    }
    bail!(
        "{} of {total} store(s) failed (all must succeed unless --min-stores is given)",
        total - ok
    )
}

// ------------------------------------------------------------------ layout ---

/// One environment folder, validated.
#[derive(Debug)]
struct EnvLayout {
    env: String,
    version: u64,
    /// The manifest, verified for its form (signatures are the readers' to judge).
    verified: verify::VerifiedManifest,
    manifest: Bytes,
    /// Every `rulesets/<version>.pb`, ascending; the manifest's is among them.
    rulesets: Vec<(u64, Bytes)>,
}

/// Reads and validates `<dir>/<env>/...` for every environment before anything
/// is uploaded: each manifest verifies (format, environment, path, digest
/// length), its ruleset matches it (size, SHA-256) and compiles, and every other
/// ruleset object is a ruleset of that environment and of the version its name
/// says.
fn read_layout(dir: &Path) -> anyhow::Result<Vec<EnvLayout>> {
    if layout::manifest_file(dir).is_file() {
        bail!(
            "{} is an environment folder; pass the folder above it (compile's --out)",
            dir.display()
        );
    }
    let mut names: Vec<String> = Vec::new();
    for entry in fs_entries(dir)? {
        let path = dir.join(&entry);
        if entry.starts_with('.') || !path.is_dir() {
            // Dot-folders are compile's temp folders; loose files are not ours.
            continue;
        }
        if !valid_env_name(&entry) {
            bail!(
                "{} is not an environment folder (names are [A-Za-z0-9_-]{{1,64}})",
                path.display()
            );
        }
        names.push(entry);
    }
    if names.is_empty() {
        bail!(
            "no environments in {} (expected <env>/{} from flagbelt compile)",
            dir.display(),
            layout::MANIFEST
        );
    }
    names.iter().map(|env| read_env(dir, env)).collect()
}

fn read_env(dir: &Path, env: &str) -> anyhow::Result<EnvLayout> {
    let env_dir = layout::env_dir(dir, env);
    let manifest_path = layout::manifest_file(&env_dir);
    if !manifest_path.is_file() {
        bail!("{} has no {}", env_dir.display(), layout::MANIFEST);
    }
    let manifest_bytes = super::read_bytes(&manifest_path)?;
    let verified = verify::verify_manifest(&manifest_bytes, env, &TrustedKeys::none())
        .with_context(|| format!("{} is not a valid manifest", manifest_path.display()))?;
    let version = verified.version();

    let rulesets_dir = layout::rulesets_dir(&env_dir);
    let mut rulesets: Vec<(u64, Bytes)> = Vec::new();
    if rulesets_dir.is_dir() {
        for name in fs_entries(&rulesets_dir)? {
            if name.starts_with('.') {
                continue;
            }
            let path = rulesets_dir.join(&name);
            let Some(v) = layout::parse_ruleset_file_name(&name) else {
                bail!(
                    "{} is not a ruleset object (expected {}/<version>.pb)",
                    path.display(),
                    layout::RULESETS
                );
            };
            let bytes = super::read_bytes(&path)?;
            if v == version {
                verify::verify_ruleset(&verified, &bytes).with_context(|| {
                    format!(
                        "{} does not match {}",
                        path.display(),
                        manifest_path.display()
                    )
                })?;
            } else {
                // An older (or newer) object: published before, immutable; it
                // must at least be what its name says.
                let (found_env, found_version) = codec::ruleset_identity(&bytes)
                    .with_context(|| format!("{} is not a ruleset", path.display()))?;
                if found_env != env || found_version != v {
                    bail!(
                        "{} holds environment {found_env:?} version {found_version}, not {env:?} version {v}",
                        path.display(),
                    );
                }
            }
            rulesets.push((v, Bytes::from(bytes)));
        }
    }
    if !rulesets.iter().any(|(v, _)| *v == version) {
        bail!(
            "{} names {}, which is missing",
            manifest_path.display(),
            layout::ruleset_file(&env_dir, version).display()
        );
    }
    rulesets.sort_by_key(|(v, _)| *v);
    Ok(EnvLayout {
        env: env.to_owned(),
        version,
        verified,
        manifest: Bytes::from(manifest_bytes),
        rulesets,
    })
}

/// Names in a folder, sorted (a stable upload and report order).
fn fs_entries(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

// ----------------------------------------------------------------- upload ---

/// What happened in one store.
#[derive(Debug, Default)]
struct StoreReport {
    /// Environments completed (manifest written or already current).
    done: Vec<EnvReport>,
    /// The environment and step that failed, with the error chain; the store's
    /// remaining environments were not attempted.
    failure: Option<String>,
}

#[derive(Debug)]
struct EnvReport {
    env: String,
    version: u64,
    /// Bytes of the current ruleset written, or `None` when already there.
    ruleset_written: Option<usize>,
    /// Other ruleset objects written and already present.
    others_written: usize,
    others_present: usize,
    /// Bytes of the manifest written, or `None` when the store had it already.
    manifest_written: Option<usize>,
}

async fn publish_to(source: &Source, layouts: &[EnvLayout]) -> StoreReport {
    let mut report = StoreReport::default();
    for (i, layout) in layouts.iter().enumerate() {
        match publish_env(source, layout).await {
            Ok(done) => report.done.push(done),
            Err(why) => {
                let mut line = format!("{} version {}: {why}", layout.env, layout.version);
                let skipped = layouts.len() - i - 1;
                if skipped > 0 {
                    let _ = write!(line, " ({skipped} more environment(s) not attempted)");
                }
                report.failure = Some(line);
                break;
            }
        }
    }
    report
}

/// Parallel uploads per store (ruleset objects of one environment).
const UPLOADS_PER_STORE: usize = 4;

async fn publish_env(source: &Source, layout: &EnvLayout) -> Result<EnvReport, String> {
    let env = layout.env.as_str();
    let manifest_state = check_store_manifest(source, layout).await?;

    // Ruleset objects first: the manifest must never name a missing one.
    let outcomes: Vec<(u64, Option<usize>)> = futures::stream::iter(&layout.rulesets)
        .map(|(v, bytes)| async move {
            upload_ruleset(source, env, *v, bytes, *v == layout.version)
                .await
                .map(|written| (*v, written))
        })
        .buffer_unordered(UPLOADS_PER_STORE)
        .try_collect()
        .await?;
    let mut report = EnvReport {
        env: layout.env.clone(),
        version: layout.version,
        ruleset_written: None,
        others_written: 0,
        others_present: 0,
        manifest_written: None,
    };
    for (v, written) in outcomes {
        match (v == layout.version, written) {
            (true, w) => report.ruleset_written = w,
            (false, Some(_)) => report.others_written += 1,
            (false, None) => report.others_present += 1,
        }
    }

    // Then the manifest, last.
    if manifest_state != ManifestState::Identical {
        source
            .put(env, layout::MANIFEST, layout.manifest.clone())
            .await
            .map_err(|e| step(&format!("writing {}", layout::MANIFEST), &e))?;
        report.manifest_written = Some(layout.manifest.len());
    }
    Ok(report)
}

#[derive(Debug, PartialEq, Eq)]
enum ManifestState {
    /// Absent, older, unreadable or unknowable: write ours.
    Replace,
    /// Byte-identical to ours: nothing to write.
    Identical,
}

/// Reads the store's current manifest and applies the version rule
/// ([`verify::check_version`], as a writer): a higher version there is kept
/// unless ours is a rollback published after it; the same version naming
/// another ruleset is a conflict (one version never names two rulesets).
async fn check_store_manifest(
    source: &Source,
    layout: &EnvLayout,
) -> Result<ManifestState, String> {
    let current = match source.get_manifest(&layout.env, None).await {
        Ok(Fetched::Object { bytes, .. }) => bytes,
        // Unreachable with no ETag sent; treat as "nothing to compare".
        Ok(Fetched::NotModified) | Err(SourceError::NotFound) => {
            return Ok(ManifestState::Replace);
        }
        // A write-only publisher (no read permission) cannot check: write anyway.
        Err(SourceError::Store(
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. },
        )) => return Ok(ManifestState::Replace),
        Err(e) => {
            return Err(step(
                &format!("reading the current {}", layout::MANIFEST),
                &e,
            ));
        }
    };
    if current == layout.manifest {
        return Ok(ManifestState::Identical);
    }
    // A manifest in the store that does not decode is replaced: ours is valid.
    let Ok(held) = verify::held_in(&current) else {
        return Ok(ManifestState::Replace);
    };
    match verify::check_version(Some(held), &layout.verified, Mover::Writer) {
        Ok(_) => Ok(ManifestState::Replace),
        Err(VerifyError::OlderVersion { .. }) => Err(format!(
            "the store holds version {}, newer than {}: not replaced (compile with --rollback to go back)",
            held.version, layout.version
        )),
        Err(VerifyError::VersionConflict {
            version,
            held,
            offered,
        }) => Err(format!(
            "the store's manifest names another ruleset for version {version} (SHA-256 {held}, ours {offered}): give the new ruleset a new version"
        )),
        Err(e) => Err(format!("not replaced: {e}")),
    }
}

/// Uploads `rulesets/<v>.pb` unless the store already has it. Ruleset objects
/// are immutable: the current one is compared byte for byte (a different object
/// under its name is an error, never overwritten); older ones, published and
/// checked before, are compared by size only (one HEAD each, however long the
/// history). Returns the bytes written, or `None` when already present.
async fn upload_ruleset(
    source: &Source,
    env: &str,
    version: u64,
    bytes: &Bytes,
    current: bool,
) -> Result<Option<usize>, String> {
    let rel = layout::ruleset_path(version);
    let immutable = || {
        format!(
            "{rel} already exists in the store with different content: rulesets are immutable, give the new one a new version"
        )
    };
    let present = if current {
        match source.get_ruleset(env, &rel).await {
            Ok(existing) if existing == *bytes => true,
            Ok(_) => return Err(immutable()),
            Err(e) if absent_or_unreadable(&e) => false,
            Err(e) => return Err(step(&format!("checking {rel}"), &e)),
        }
    } else {
        match source.head(env, &rel).await {
            Ok(meta) if meta.size == bytes.len() as u64 => true,
            Ok(_) => return Err(immutable()),
            Err(e) if absent_or_unreadable(&e) => false,
            Err(e) => return Err(step(&format!("checking {rel}"), &e)),
        }
    };
    if present {
        return Ok(None);
    }
    source
        .put(env, &rel, bytes.clone())
        .await
        .map_err(|e| step(&format!("writing {rel}"), &e))?;
    Ok(Some(bytes.len()))
}

/// Not there, or not readable with these credentials (write-only publishers):
/// either way, upload.
fn absent_or_unreadable(e: &SourceError) -> bool {
    matches!(
        e,
        SourceError::NotFound
            | SourceError::Store(
                object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
            )
    )
}

fn step(what: &str, e: &SourceError) -> String {
    format!("{what}: {}", error_chain(e))
}

// ----------------------------------------------------------------- report ---

fn write_report(out: &mut String, label: &str, report: &StoreReport) {
    let status = if report.failure.is_some() {
        "FAILED"
    } else {
        "ok"
    };
    let _ = writeln!(out, "{label}: {status}");
    for d in &report.done {
        let ruleset = match d.ruleset_written {
            Some(n) => format!("{n} bytes written"),
            None => "already there".to_owned(),
        };
        let manifest = match d.manifest_written {
            Some(n) => format!("{n} bytes written"),
            None => "unchanged".to_owned(),
        };
        let mut line = format!(
            "  {} version {}: ruleset {ruleset}, manifest {manifest}",
            d.env, d.version
        );
        if d.others_written + d.others_present > 0 {
            let _ = write!(
                line,
                " (older rulesets: {} written, {} already there)",
                d.others_written, d.others_present
            );
        }
        let _ = writeln!(out, "{line}");
    }
    if let Some(why) = &report.failure {
        let _ = writeln!(out, "  {why}");
    }
}
