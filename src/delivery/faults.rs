//! Fault injection for storage: an in-memory object store that can fail,
//! black-hole, delay and ignore `If-None-Match`, and counts reads per path.
//!
//! A test and benchmark tool (failover and environment tests, the delivery
//! benchmark), compiled only with the `test-support` feature, which the
//! shipped binary does not enable. It
//! must stay a thin wrapper: every fault is applied before the inner store is
//! called, and writes always pass.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt as _, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use crate::ruleset::layout;
use crate::util::lock;

/// What a read does before (or instead of) reaching the inner store.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Straight to the inner store.
    PassThrough,
    /// A 500-like `Generic` error.
    Error,
    /// Never completes: only a deadline ends it.
    BlackHole,
    /// Sleeps, then passes through.
    Delay(Duration),
}

/// An `InMemory` store with switchable faults on reads. Writes always pass.
#[derive(Debug)]
pub struct FaultyStore {
    inner: InMemory,
    mode: Mutex<Mode>,
    /// Overrides of `mode` for paths ending with the given text.
    path_modes: Mutex<Vec<(String, Mode)>>,
    /// Drop `If-None-Match`, so the store always answers 200.
    ignore_if_none_match: AtomicBool,
    /// Reads per path (counted before any fault applies).
    reads: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

impl Default for FaultyStore {
    fn default() -> Self {
        Self::new()
    }
}

impl FaultyStore {
    /// An empty store that passes everything through.
    pub fn new() -> Self {
        Self {
            inner: InMemory::new(),
            mode: Mutex::new(Mode::PassThrough),
            path_modes: Mutex::new(Vec::new()),
            ignore_if_none_match: AtomicBool::new(false),
            reads: Mutex::new(HashMap::new()),
        }
    }

    /// Sets the fault for every path.
    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.mode) = mode;
    }

    /// Sets the fault for paths ending with `path_suffix` (last one set wins).
    pub fn set_mode_for(&self, path_suffix: &str, mode: Mode) {
        lock(&self.path_modes).push((path_suffix.to_owned(), mode));
    }

    /// Makes the store ignore `If-None-Match` (always 200), as some emulators do.
    pub fn ignore_if_none_match(&self, on: bool) {
        self.ignore_if_none_match.store(on, Ordering::SeqCst);
    }

    /// Reads of paths ending with `suffix`.
    pub fn reads(&self, suffix: &str) -> usize {
        lock(&self.reads)
            .iter()
            .filter(|(p, _)| p.ends_with(suffix))
            .map(|(_, n)| n.load(Ordering::SeqCst))
            .sum()
    }

    fn mode_for(&self, location: &Path) -> Mode {
        let path = location.as_ref();
        let overrides = lock(&self.path_modes);
        overrides
            .iter()
            .rev()
            .find(|(suffix, _)| path.ends_with(suffix.as_str()))
            .map(|(_, m)| *m)
            .unwrap_or_else(|| *lock(&self.mode))
    }

    fn count(&self, location: &Path) {
        let counter = Arc::clone(
            lock(&self.reads)
                .entry(location.as_ref().to_owned())
                .or_default(),
        );
        counter.fetch_add(1, Ordering::SeqCst);
    }

    /// Publishes `objects` under `<env>/` as a publisher does: the ruleset
    /// first, the manifest last.
    pub async fn publish(
        &self,
        env: &str,
        objects: &crate::ruleset::codec::StoredObjects,
    ) -> object_store::Result<()> {
        self.put_raw(
            &layout::env_object(env, &objects.ruleset_path),
            objects.ruleset.clone(),
        )
        .await?;
        self.put_raw(
            &layout::env_object(env, layout::MANIFEST),
            objects.manifest.clone(),
        )
        .await
    }

    /// Writes an object directly (no faults).
    pub async fn put_raw(&self, path: &str, bytes: Vec<u8>) -> object_store::Result<()> {
        self.inner
            .put(&Path::from(path), PutPayload::from(bytes))
            .await
            .map(|_| ())
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        mut options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.count(location);
        if self.ignore_if_none_match.load(Ordering::SeqCst) {
            options.if_none_match = None;
        }
        match self.mode_for(location) {
            Mode::PassThrough => {}
            Mode::Error => {
                return Err(object_store::Error::Generic {
                    store: "faulty",
                    source: "injected 500 Internal Server Error".into(),
                });
            }
            Mode::BlackHole => std::future::pending::<()>().await,
            Mode::Delay(d) => tokio::time::sleep(d).await,
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
