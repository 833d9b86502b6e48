//! Last-known-good: a local copy of every activated ruleset, in the stored
//! layout, so an instance that starts while no source answers can still serve.
//!
//! Owns the cache folder: writing `<dir>/<env>/rulesets/<version>.pb` and then
//! `<dir>/<env>/manifest.pb`, each atomically and durably (temp file in the same
//! folder, write, fsync, rename, fsync the folder), pruning older rulesets, and
//! opening the folder as a [`Source`].
//!
//! Must not: decide whether a cached copy is usable. Reading goes through
//! [`LastKnownGood::source`] and the same `failover`/`verify` path as any remote
//! source (signatures, digest, version rules), so a tampered or half-written
//! cache is rejected like a tampered bucket. It never blocks an async worker on
//! file I/O (writes run in `spawn_blocking`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use object_store::local::LocalFileSystem;

use crate::delivery::Snapshot;
use crate::delivery::source::{Source, SourceKind};
use crate::ruleset::verify::{self, Mover, TrustedKeys};
use crate::ruleset::{layout, valid_env_name};
use crate::util::lock;

/// Prefix of the label of [`LastKnownGood::source`] (`last-known-good:<dir>`);
/// only a name for people: the source's [`SourceKind`] says what it is.
const LABEL_PREFIX: &str = "last-known-good:";

/// Marks temp files; a crash can leave one behind, and pruning removes it later.
const TMP_MARKER: &str = ".tmp-";

/// Temp files older than this are leftovers of a crashed write.
const TMP_MAX_AGE: Duration = Duration::from_secs(60);

/// The last-known-good cache folder.
#[derive(Debug, Clone)]
pub struct LastKnownGood {
    dir: PathBuf,
    /// Serialise the writers of one environment (held only inside the
    /// blocking task, never across an await): two stores of one environment
    /// racing could otherwise leave a manifest whose ruleset the other one
    /// pruned. Striped by environment name, so saves of different
    /// environments (a publish touching many at once) do not queue behind one
    /// lock, each holding a blocking-pool thread while it waits.
    locks: Arc<[Mutex<()>]>,
}

/// Lock stripes of [`LastKnownGood`].
const LOCK_STRIPES: usize = 64;

/// The cache folder cannot be opened as a source.
#[derive(Debug, thiserror::Error)]
pub enum LkgError {
    /// The folder does not exist and cannot be created.
    #[error("cannot create the last-known-good folder {}", dir.display())]
    CreateDir {
        /// The configured `--cache-dir`.
        dir: PathBuf,
        /// The file system's error.
        #[source]
        source: io::Error,
    },
    /// The folder exists but object_store cannot open it.
    #[error("cannot open the last-known-good folder {}", dir.display())]
    Open {
        /// The configured `--cache-dir`.
        dir: PathBuf,
        /// object_store's error.
        #[source]
        source: object_store::Error,
    },
}

impl LastKnownGood {
    /// A cache in `dir` (created on first write or by [`Self::source`]).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    /// The stripe that serialises `env`'s writers.
    fn stripe(env: &str) -> usize {
        use std::hash::{Hash as _, Hasher as _};
        let mut h = std::hash::DefaultHasher::new();
        env.hash(&mut h);
        // The remainder is below LOCK_STRIPES: the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let stripe = (h.finish() % LOCK_STRIPES as u64) as usize;
        stripe
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `snap` in the stored layout: the ruleset first, then the
    /// manifest (the same order as publishing, so a crash in between leaves
    /// the previous manifest and a harmless extra ruleset), each atomically.
    /// Then removes the environment's other rulesets and stale temp files.
    ///
    /// A failure to prune is logged, not returned: the snapshot is stored.
    pub async fn store(&self, snap: &Snapshot) -> io::Result<()> {
        if !valid_env_name(&snap.environment) {
            // The name becomes a folder: never let it leave the cache.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid environment name {:?}", snap.environment),
            ));
        }
        let job = StoreJob {
            dir: self.dir.clone(),
            env: snap.environment.clone(),
            version: snap.version,
            ruleset: snap.ruleset_bytes.clone(),
            manifest: snap.manifest_bytes.clone(),
        };
        let locks = Arc::clone(&self.locks);
        let stripe = Self::stripe(&job.env);
        tokio::task::spawn_blocking(move || {
            // The guarded data is `()`: a panicking holder cannot corrupt it.
            let _guard = locks.get(stripe).map(lock);
            job.run()
        })
        .await
        .map_err(io::Error::other)?
    }

    /// The cache as a [`Source`] labelled `last-known-good:<dir>`, read through
    /// the same verification as any other source. Creates the folder if it is
    /// missing (an empty cache is simply "not found" for every environment).
    pub fn source(&self, timeout: Duration) -> Result<Source, LkgError> {
        fs::create_dir_all(&self.dir).map_err(|source| LkgError::CreateDir {
            dir: self.dir.clone(),
            source,
        })?;
        let store =
            LocalFileSystem::new_with_prefix(&self.dir).map_err(|source| LkgError::Open {
                dir: self.dir.clone(),
                source,
            })?;
        Ok(Source::new(
            format!("{LABEL_PREFIX}{}", self.dir.display()),
            Arc::new(store),
            "",
            timeout,
        )
        .with_kind(SourceKind::LastKnownGood))
    }
}

/// One store, owned so it can move into a blocking task.
struct StoreJob {
    dir: PathBuf,
    env: String,
    version: u64,
    ruleset: Bytes,
    manifest: Bytes,
}

impl StoreJob {
    /// True when the cache already holds what the version rule
    /// ([`verify::check_version`], as a writer: the reader already judged the
    /// signature) says this job must not replace: a higher version, unless
    /// this job is a rollback published after it. A cached manifest that no
    /// longer decodes is replaced.
    fn superseded(&self, env_dir: &Path) -> bool {
        let Ok(existing) = fs::read(layout::manifest_file(env_dir)) else {
            return false;
        };
        let (Ok(old), Ok(new)) = (
            verify::held_in(&existing),
            verify::verify_manifest(&self.manifest, &self.env, &TrustedKeys::none()),
        ) else {
            return false;
        };
        verify::check_version(Some(old), &new, Mover::Writer).is_err_and(|e| e.is_older())
    }

    fn run(self) -> io::Result<()> {
        let env_dir = layout::env_dir(&self.dir, &self.env);
        let rulesets_dir = layout::rulesets_dir(&env_dir);
        let ruleset_name = layout::ruleset_file_name(self.version);
        if self.superseded(&env_dir) {
            // Saves are not ordered across tasks: a newer activation may have
            // been written already. The cache must never go back.
            return Ok(());
        }
        let new_env = !env_dir.exists();
        fs::create_dir_all(&rulesets_dir)?;
        if new_env {
            // Make the new folders themselves durable.
            sync_dir(&self.dir)?;
            sync_dir(&env_dir)?;
        }
        write_atomic(&rulesets_dir, ruleset_name.as_ref(), &self.ruleset)?;
        write_atomic(&env_dir, layout::MANIFEST.as_ref(), &self.manifest)?;
        if let Err(e) = prune(&rulesets_dir, ruleset_name.as_ref()) {
            tracing::warn!(env = %self.env, error = %e, "could not prune old last-known-good rulesets");
        }
        Ok(())
    }
}

/// Writes `dir/name` so that readers see the old file or the new one, never a
/// part, and the new one survives a crash once this returns.
fn write_atomic(dir: &Path, name: &std::ffi::OsStr, bytes: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!("{TMP_MARKER}{}-{n}", std::process::id()));
    // Same folder as the target: rename is atomic only within one file system.
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, dir.join(name))?;
        // The rename is durable only once the folder entry is.
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes every `*.pb` in `rulesets_dir` except `keep`, and temp files left
/// by crashed writes.
fn prune(rulesets_dir: &Path, keep: &std::ffi::OsStr) -> io::Result<()> {
    for entry in fs::read_dir(rulesets_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let text = name.to_string_lossy();
        let remove = if text.contains(TMP_MARKER) {
            // Only old ones: a young temp file may be another process's write.
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > TMP_MAX_AGE)
        } else {
            text.ends_with(".pb") && name != keep
        };
        if remove {
            match fs::remove_file(entry.path()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    // Folders cannot be opened for fsync here; rename durability is the file
    // system's.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(env: &str) -> Snapshot {
        let yaml = format!("environment: {env}\nversion: 1\nflags: {{}}\n");
        let (_, ruleset) = crate::ruleset::authoring::compile_yaml(&yaml, 0).unwrap();
        Snapshot {
            environment: env.to_owned(),
            version: 1,
            sha256: [0; 32],
            published_at_ms: 0,
            ruleset: Arc::new(ruleset),
            ruleset_bytes: Bytes::from_static(b"ruleset"),
            manifest_bytes: Bytes::from_static(b"manifest"),
            origin: crate::delivery::Origin::Bootstrap,
            fetched_at: std::time::SystemTime::now(),
        }
    }

    // Holding the stripe across awaits is the point: it plays a writer of
    // `alpha` that is still busy.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn a_busy_environment_does_not_hold_up_another() {
        let dir = tempfile::tempdir().unwrap();
        let lkg = LastKnownGood::new(dir.path().to_path_buf());
        let busy = "alpha";
        let other = (0..)
            .map(|i| format!("env{i}"))
            .find(|e| LastKnownGood::stripe(e) != LastKnownGood::stripe(busy))
            .unwrap();
        let guard = lkg.locks[LastKnownGood::stripe(busy)].lock().unwrap();
        tokio::time::timeout(Duration::from_secs(5), lkg.store(&snapshot(&other)))
            .await
            .expect("not queued behind another environment")
            .unwrap();
        assert!(layout::manifest_file(&layout::env_dir(dir.path(), &other)).exists());
        // The busy environment's own writer does wait.
        let waiting =
            tokio::time::timeout(Duration::from_millis(200), lkg.store(&snapshot(busy))).await;
        assert!(waiting.is_err(), "a second writer of one environment waits");
        drop(guard);
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "m.pb".as_ref(), b"one").unwrap();
        write_atomic(dir.path(), "m.pb".as_ref(), b"two").unwrap();
        assert_eq!(fs::read(dir.path().join("m.pb")).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("m.pb")]);
    }

    #[test]
    fn prune_keeps_the_current_ruleset_and_young_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["1.pb", "2.pb", "3.pb", ".3.pb.tmp-1-0", "notes.txt"] {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        prune(dir.path(), "3.pb".as_ref()).unwrap();
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec![".3.pb.tmp-1-0", "3.pb", "notes.txt"]);
    }
}
