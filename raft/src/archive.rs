//! The archive on disk: the records the scheduler evicted (`ArchiveOp`s), kept in RocksDB
//! for real nodes and in memory for simulations.
//!
//! The archive is materialised from the replicated state, never a source of it: a
//! snapshot carries every record its book lists, start-up and snapshot installation
//! rewrite the archive from the snapshot, and replaying the log after it redoes the rest.
//! So its writes need no WAL (a crash loses nothing the snapshot and the log do not
//! have), and what the scheduler's book says is the truth: a record the book does not
//! list is not answered, whatever the disk holds.
//!
//! A snapshot being built reads the records its frozen book lists while `apply` goes on.
//! `pin` keeps them readable: while a pin is held, deletions wait, and a snapshot install
//! (which rewrites the whole archive) waits for the pins to go.

use rocksdb::{BlockBasedOptions, Cache, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use rota_state_machine::{ArchiveKey, ArchiveKind, ArchiveOp};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

fn io_error(message: impl Into<String>) -> std::io::Error {
    std::io::Error::other(message.into())
}

fn rocks(e: rocksdb::Error) -> std::io::Error {
    io_error(format!("archive: {e}"))
}

/// Where the records are.
enum Backend {
    Rocks(DB),
    Memory(Mutex<BTreeMap<[u8; ArchiveKey::LEN], Vec<u8>>>),
}

/// Deletions held back while a snapshot build reads the archive.
#[derive(Default)]
struct Deferral {
    pins: usize,
    pending: Vec<ArchiveKey>,
}

struct Inner {
    backend: Backend,
    deferral: Mutex<Deferral>,
    /// Builds hold it shared, an install exclusively.
    gate: Arc<RwLock<()>>,
}

/// A node's archive. Cloning shares it.
#[derive(Clone)]
pub struct Archive(Arc<Inner>);

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.0.backend {
            Backend::Rocks(_) => "rocksdb",
            Backend::Memory(_) => "memory",
        };
        f.debug_struct("Archive").field("backend", &kind).finish()
    }
}

impl Default for Archive {
    fn default() -> Self {
        Self::in_memory()
    }
}

/// Keeps the records of a frozen book readable until dropped.
pub(crate) struct Pin {
    archive: Archive,
    _gate: OwnedRwLockReadGuard<()>,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut deferral = self.archive.deferral();
        deferral.pins = deferral.pins.saturating_sub(1);
        if deferral.pins == 0 {
            let pending = std::mem::take(&mut deferral.pending);
            if let Err(e) = self.archive.delete(&pending) {
                // The records stay on disk, unlisted (so never answered), until the next
                // restart rewrites the archive.
                tracing::warn!(error = %e, "archive: deferred deletions failed");
            }
        }
    }
}

/// How many bytes a RocksDB file being written (a flushed or compacted table) may hold
/// unsynced before it is handed to the disk: small steps instead of one burst that makes
/// every other fsync on the disk wait.
pub(crate) const SYNC_EVERY_BYTES: u64 = 1024 * 1024;

/// The archive's block cache.
const ARCHIVE_BLOCK_CACHE_BYTES: usize = 8 * 1024 * 1024;

/// Held while an install rewrites the archive: no build reads it meanwhile.
pub(crate) struct Rewrite {
    _gate: OwnedRwLockWriteGuard<()>,
}

impl Archive {
    /// An archive in RocksDB at `dir`, created if missing. What it held is rewritten from
    /// the snapshot at start-up.
    pub fn open_dir(dir: &Path) -> Result<Self, std::io::Error> {
        let mut options = Options::default();
        options.create_if_missing(true);
        // Records are written once and read rarely; keep the memtables small.
        options.set_write_buffer_size(8 * 1024 * 1024);
        options.set_max_write_buffer_number(2);
        // Flushes and compactions hand their files to the disk a megabyte at a time rather
        // than leaving the kernel to write back tens of megabytes at once, which stalls the
        // log's fsyncs (and a node whose log write stalls past the election timeout loses
        // its leader).
        options.set_bytes_per_sync(SYNC_EVERY_BYTES);
        // One bounded block cache instead of RocksDB's default 32 MiB: snapshot builds read
        // every record once, and that must not stay resident.
        let cache = Cache::new_lru_cache(ARCHIVE_BLOCK_CACHE_BYTES);
        let mut tables = BlockBasedOptions::default();
        tables.set_block_cache(&cache);
        options.set_block_based_table_factory(&tables);
        let db = DB::open(&options, dir).map_err(rocks)?;
        Ok(Self::with(Backend::Rocks(db)))
    }

    /// An archive in memory.
    pub fn in_memory() -> Self {
        Self::with(Backend::Memory(Mutex::default()))
    }

    fn with(backend: Backend) -> Self {
        Self(Arc::new(Inner {
            backend,
            deferral: Mutex::default(),
            gate: Arc::new(RwLock::new(())),
        }))
    }

    fn deferral(&self) -> MutexGuard<'_, Deferral> {
        self.0
            .deferral
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn memory(
        map: &Mutex<BTreeMap<[u8; ArchiveKey::LEN], Vec<u8>>>,
    ) -> MutexGuard<'_, BTreeMap<[u8; ArchiveKey::LEN], Vec<u8>>> {
        map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Carries out what applying commands asked, in order; deletions wait while a pin is
    /// held.
    pub(crate) fn apply(&self, ops: Vec<ArchiveOp>) -> Result<(), std::io::Error> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut deferral = self.deferral();
        let defer = deferral.pins > 0;
        let mut puts = Vec::new();
        let mut deletes = Vec::new();
        for op in ops {
            match op {
                ArchiveOp::Put { key, record } => puts.push((key, record)),
                ArchiveOp::Delete { key } if defer => deferral.pending.push(key),
                ArchiveOp::Delete { key } => deletes.push(key),
            }
        }
        // A key is never put again once deleted, so puts before deletes keeps the order.
        self.put(puts)?;
        self.delete(&deletes)
    }

    fn put(&self, records: Vec<(ArchiveKey, Vec<u8>)>) -> Result<(), std::io::Error> {
        match &self.0.backend {
            Backend::Rocks(db) => {
                let mut batch = WriteBatch::default();
                for (key, record) in &records {
                    batch.put(key.to_bytes(), record);
                }
                db.write_opt(batch, &no_wal()).map_err(rocks)
            }
            Backend::Memory(map) => {
                let mut map = Self::memory(map);
                for (key, record) in records {
                    map.insert(key.to_bytes(), record);
                }
                Ok(())
            }
        }
    }

    fn delete(&self, keys: &[ArchiveKey]) -> Result<(), std::io::Error> {
        if keys.is_empty() {
            return Ok(());
        }
        match &self.0.backend {
            Backend::Rocks(db) => {
                let mut batch = WriteBatch::default();
                for key in keys {
                    batch.delete(key.to_bytes());
                }
                db.write_opt(batch, &no_wal()).map_err(rocks)
            }
            Backend::Memory(map) => {
                let mut map = Self::memory(map);
                for key in keys {
                    map.remove(&key.to_bytes());
                }
                Ok(())
            }
        }
    }

    /// The record under `key` as stored, if any. Whether it counts is the book's to say.
    pub fn get(&self, key: ArchiveKey) -> Result<Option<Vec<u8>>, std::io::Error> {
        match &self.0.backend {
            Backend::Rocks(db) => db.get(key.to_bytes()).map_err(rocks),
            Backend::Memory(map) => Ok(Self::memory(map).get(&key.to_bytes()).cloned()),
        }
    }

    /// Visits the stored records of `kind` from id `from` on, in id order, until `visit`
    /// says stop.
    pub fn scan(
        &self,
        kind: ArchiveKind,
        from: u64,
        mut visit: impl FnMut(ArchiveKey, &[u8]) -> bool,
    ) -> Result<(), std::io::Error> {
        let start = ArchiveKey { kind, id: from }.to_bytes();
        match &self.0.backend {
            Backend::Rocks(db) => {
                let mode = IteratorMode::From(&start, rocksdb::Direction::Forward);
                for item in db.iterator(mode) {
                    let (key, record) = item.map_err(rocks)?;
                    match ArchiveKey::from_bytes(&key) {
                        Some(key) if key.kind == kind => {
                            if !visit(key, &record) {
                                break;
                            }
                        }
                        _ => break,
                    }
                }
                Ok(())
            }
            Backend::Memory(map) => {
                let map = Self::memory(map);
                for (key, record) in map.range(start..) {
                    match ArchiveKey::from_bytes(key) {
                        Some(key) if key.kind == kind => {
                            if !visit(key, record) {
                                break;
                            }
                        }
                        _ => break,
                    }
                }
                Ok(())
            }
        }
    }

    /// Holds deletions back and installs off until the pin is dropped. Wait for it before
    /// freezing the state whose book the build will read.
    pub(crate) async fn pin(&self) -> Pin {
        let gate = self.0.gate.clone().read_owned().await;
        self.deferral().pins += 1;
        Pin {
            archive: self.clone(),
            _gate: gate,
        }
    }

    /// Waits for every pin to go, then holds them off until dropped.
    pub(crate) async fn rewrite(&self) -> Rewrite {
        Rewrite {
            _gate: self.0.gate.clone().write_owned().await,
        }
    }

    /// Replaces everything with `records` (what a snapshot carries).
    pub(crate) fn replace_all(
        &self,
        _rewrite: &Rewrite,
        records: impl IntoIterator<Item = Result<(ArchiveKey, Vec<u8>), std::io::Error>>,
    ) -> Result<(), std::io::Error> {
        self.deferral().pending.clear();
        match &self.0.backend {
            Backend::Rocks(db) => {
                let mut batch = WriteBatch::default();
                batch.delete_range(&[0u8][..], &[0xffu8; ArchiveKey::LEN + 1][..]);
                db.write_opt(batch, &no_wal()).map_err(rocks)?;
            }
            Backend::Memory(map) => Self::memory(map).clear(),
        }
        let mut chunk = Vec::new();
        let mut chunk_bytes = 0;
        for record in records {
            let (key, record) = record?;
            chunk_bytes += record.len();
            chunk.push((key, record));
            if chunk_bytes >= 4 * 1024 * 1024 {
                self.put(std::mem::take(&mut chunk))?;
                chunk_bytes = 0;
            }
        }
        self.put(chunk)
    }

    /// The same as `replace_all` for a start-up, when nothing else can hold the archive.
    pub(crate) fn replace_all_at_start(
        &self,
        records: impl IntoIterator<Item = Result<(ArchiveKey, Vec<u8>), std::io::Error>>,
    ) -> Result<(), std::io::Error> {
        let gate = self
            .0
            .gate
            .clone()
            .try_write_owned()
            .map_err(|_| io_error("archive in use while starting"))?;
        self.replace_all(&Rewrite { _gate: gate }, records)
    }
}

/// Archive writes skip the WAL: the snapshot and the log can redo them (see the module).
fn no_wal() -> WriteOptions {
    let mut options = WriteOptions::default();
    options.disable_wal(true);
    options
}
