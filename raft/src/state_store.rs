//! The state-machine adapter: applies committed entries to the scheduler, builds and
//! installs snapshots, and keeps the latest snapshot where a restart finds it.
//!
//! A snapshot's bytes are a checksum prefix (`ROTASNP3`, then the sha256 of everything
//! after it), a header (the length of the encoded `SnapshotMeta`, then the meta), the
//! scheduler's own snapshot (self-delimiting: postcard knows where it ends, so it is
//! streamed to the file, never held whole) and the archive's records (each a
//! 9-byte key, a length and the record), exactly those the scheduler's book lists. The
//! same bytes are the file on disk and what followers receive, so an installed snapshot is
//! kept exactly as it arrived, and the checksum is verified before any snapshot is used:
//! at start-up, and when one is installed; each record is checked against the book's hash
//! too. Start-up and installation rewrite the archive from the snapshot's records. Files
//! an older rota wrote (`ROTASNP2`: no archive; no prefix at all) read as they were.
//!
//! Building and installing never write the same file: each writes a temporary file of its
//! own in the snapshot directory, syncs it and renames it over `current.snapshot`, so the
//! previous snapshot stays until the new one is durable. Encoding, hashing and syncing run
//! off the async runtime.

use crate::archive::Archive;
use crate::types::{BatchReply, Entry, LogId, NodeId, RotaNode, StorageError, TypeConfig};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership};
use rota_state_machine::{record_hash, ArchiveKey, ArchiveKind, Archived, State};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
#[cfg(feature = "simulation")]
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

/// The scheduler state with the Raft bookkeeping applied alongside it.
#[derive(Debug, Default)]
pub struct Applied {
    /// The scheduler's state.
    pub state: State,
    /// The last log entry applied, if any.
    pub last_applied: Option<LogId>,
    /// The membership as of the last membership entry applied.
    pub membership: StoredMembership<NodeId, RotaNode>,
    /// The records the scheduler archived; `state`'s book says which count.
    pub archive: Archive,
}

/// An archived record could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveReadError {
    /// The disk failed.
    #[error("archive: {0}")]
    Io(#[from] std::io::Error),
    /// The book lists the record but the archive lacks it, or holds other bytes.
    #[error("archive record {0:?} is missing or does not match its book")]
    Damaged(ArchiveKey),
    /// The record's bytes do not decode.
    #[error("archive record {key:?} does not decode: {error}")]
    Undecodable {
        /// The record.
        key: ArchiveKey,
        /// Why.
        error: postcard::Error,
    },
}

/// The snapshot a node would start from cannot be used: corrupt, truncated, or its records
/// disagree with its book. Carried inside the `std::io::Error` (kind `InvalidData`) that
/// `StateStore::open` returns, so a caller can tell it from a failing disk and recover.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {why}")]
pub struct UnusableSnapshot {
    /// Which file.
    pub file: String,
    /// Why it cannot be used.
    pub why: String,
    /// The members its header names, if the header still reads: where to ask for another.
    pub members: Vec<(NodeId, String)>,
}

impl UnusableSnapshot {
    /// The unusable snapshot inside `error`, if that is what it reports.
    pub fn within(error: &std::io::Error) -> Option<&UnusableSnapshot> {
        error.get_ref()?.downcast_ref::<UnusableSnapshot>()
    }
}

impl Applied {
    /// The archived record under `key`, if the book lists it; checked against the book's
    /// hash before it is decoded.
    pub fn archived(&self, key: ArchiveKey) -> Result<Option<Archived>, ArchiveReadError> {
        let Some(entry) = self.state.archived(key) else {
            return Ok(None);
        };
        let record = self
            .archive
            .get(key)?
            .filter(|record| record_hash(record) == entry.hash)
            .ok_or(ArchiveReadError::Damaged(key))?;
        Archived::decode(&record)
            .map(Some)
            .map_err(|error| ArchiveReadError::Undecodable { key, error })
    }

    /// Archived records of `kind` from id `from` on, in id order, until `visit` says stop.
    /// `visit` gets every stored key, with its record when the book lists it (and `None`
    /// for one it does not: an expiry the disk has not caught up with yet), so a caller
    /// that bounds its work counts those too.
    pub fn scan_archived(
        &self,
        kind: ArchiveKind,
        from: u64,
        mut visit: impl FnMut(ArchiveKey, Option<Archived>) -> bool,
    ) -> Result<(), ArchiveReadError> {
        let mut failure = None;
        self.archive.scan(kind, from, |key, record| {
            let listed = self.state.archived(key).map(|e| e.hash);
            if listed != Some(record_hash(record)) {
                return visit(key, None);
            }
            match Archived::decode(record) {
                Ok(archived) => visit(key, Some(archived)),
                Err(error) => {
                    failure = Some(ArchiveReadError::Undecodable { key, error });
                    false
                }
            }
        })?;
        failure.map_or(Ok(()), Err)
    }
}

/// Where the latest snapshot lives.
#[derive(Debug)]
enum SnapshotStore {
    /// `dir/current.snapshot`, replaced atomically.
    Dir(PathBuf),
    /// Kept in memory, for simulations.
    Memory(Mutex<Option<Vec<u8>>>),
}

type Meta = SnapshotMeta<NodeId, RotaNode>;

fn io_error(message: impl Into<String>) -> std::io::Error {
    std::io::Error::other(message.into())
}

/// What a checksummed snapshot with the archive starts with.
const MAGIC: &[u8; 8] = b"ROTASNP3";
/// What a checksummed snapshot from before the archive starts with.
const MAGIC_V2: &[u8; 8] = b"ROTASNP2";
/// The magic and the sha256 after it.
const PREFIX_LEN: usize = MAGIC.len() + 32;
/// Largest snapshot meta read from a file's head.
const MAX_META_BYTES: usize = 16 * 1024 * 1024;

/// The bytes after the checksum prefix, once the checksum holds, and whether they carry
/// the archive; a legacy snapshot (no prefix) as it is.
fn verified(bytes: &[u8]) -> Result<(&[u8], bool), std::io::Error> {
    let (rest, with_archive) = match (
        bytes.strip_prefix(MAGIC.as_slice()),
        bytes.strip_prefix(MAGIC_V2.as_slice()),
    ) {
        (Some(rest), _) => (rest, true),
        (None, Some(rest)) => (rest, false),
        (None, None) => return Ok((bytes, false)),
    };
    let (sum, body) = rest
        .split_at_checked(32)
        .ok_or_else(|| io_error("snapshot truncated inside its checksum"))?;
    if Sha256::digest(body).as_slice() != sum {
        return Err(io_error(
            "snapshot checksum does not match: the file is corrupt or truncated",
        ));
    }
    Ok((body, with_archive))
}

/// A snapshot's parts, checked against its checksum.
struct Parsed<'a> {
    meta: Meta,
    /// The scheduler's snapshot, followed (when `with_archive`) by the archive's records,
    /// encoded as `write_record` writes them.
    body: &'a [u8],
    with_archive: bool,
}

fn take<'a>(bytes: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], std::io::Error> {
    let (head, rest) = bytes
        .split_at_checked(n)
        .ok_or_else(|| io_error(format!("snapshot truncated inside {what}")))?;
    *bytes = rest;
    Ok(head)
}

fn take_u32(bytes: &mut &[u8], what: &str) -> Result<usize, std::io::Error> {
    let raw = take(bytes, 4, what)?;
    Ok(u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize)
}

/// Splits snapshot bytes into the meta and the rest, after checking the checksum.
fn parse(bytes: &[u8]) -> Result<Parsed<'_>, std::io::Error> {
    let (mut bytes, with_archive) = verified(bytes)?;
    let len = take_u32(&mut bytes, "its header")?;
    let meta = take(&mut bytes, len, "its header")?;
    let meta = postcard::from_bytes(meta).map_err(|e| io_error(format!("snapshot meta: {e}")))?;
    Ok(Parsed {
        meta,
        body: bytes,
        with_archive,
    })
}

/// The archive's records in snapshot bytes, in order.
fn records(
    mut bytes: &[u8],
) -> impl Iterator<Item = Result<(ArchiveKey, &[u8]), std::io::Error>> + '_ {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        let mut next = || {
            let key = take(&mut bytes, ArchiveKey::LEN, "an archive key")?;
            let key = ArchiveKey::from_bytes(key)
                .ok_or_else(|| io_error("snapshot holds an archive key of no known kind"))?;
            let len = take_u32(&mut bytes, "an archive record's length")?;
            Ok((key, take(&mut bytes, len, "an archive record")?))
        };
        Some(next())
    })
}

/// Checks that a snapshot's records are exactly those its scheduler's book lists, each
/// with the hash the book has for it.
fn check_records(state: &State, bytes: &[u8]) -> Result<(), std::io::Error> {
    let mut count = 0u64;
    let mut last: Option<ArchiveKey> = None;
    for record in records(bytes) {
        let (key, record) = record?;
        if last.is_some_and(|last| last >= key) {
            return Err(io_error(format!(
                "snapshot's archive records are not in key order at {key:?}"
            )));
        }
        last = Some(key);
        let entry = state.archived(key).ok_or_else(|| {
            io_error(format!(
                "snapshot holds {key:?}, which its book does not list"
            ))
        })?;
        if record_hash(record) != entry.hash {
            return Err(io_error(format!(
                "snapshot's archive record {key:?} does not match its book's hash"
            )));
        }
        count += 1;
    }
    let listed = state.archive_stats().records;
    if count != listed {
        return Err(io_error(format!(
            "snapshot holds {count} archive records; its book lists {listed}"
        )));
    }
    Ok(())
}

/// Appends one archive record as `records` reads it.
fn write_record(
    out: &mut (impl Write + ?Sized),
    key: ArchiveKey,
    record: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(record.len()).map_err(|_| io_error("archive record too large"))?;
    out.write_all(&key.to_bytes())?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(record)
}

/// The scheduler as of a snapshot's bytes, restored, and the archive's records after it,
/// checked against its book.
fn load<'a>(parsed: &Parsed<'a>) -> Result<(State, &'a [u8]), std::io::Error> {
    let (state, records) = match parsed.with_archive {
        true => State::restore_prefix(parsed.body),
        false => State::restore(parsed.body).map(|state| (state, &[][..])),
    }
    .map_err(|e| io_error(e.to_string()))?;
    check_records(&state, records)?;
    Ok((state, records))
}

fn owned_records(
    bytes: &[u8],
) -> impl Iterator<Item = Result<(ArchiveKey, Vec<u8>), std::io::Error>> + '_ {
    records(bytes).map(|r| r.map(|(key, record)| (key, record.to_vec())))
}

/// Reads the meta from the head of a snapshot file and rewinds it.
fn read_meta(file: &mut std::fs::File) -> Result<Meta, std::io::Error> {
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic)?;
    if magic != *MAGIC && magic != *MAGIC_V2 {
        file.seek(SeekFrom::Start(0))?;
    } else {
        file.seek(SeekFrom::Start(PREFIX_LEN as u64))?;
    }
    let mut len = [0u8; 4];
    file.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    // A meta is a few hundred bytes; a larger length is a damaged file, not a reason to
    // allocate gigabytes.
    if len > MAX_META_BYTES {
        return Err(io_error(format!("snapshot meta of {len} bytes: damaged")));
    }
    let mut meta = vec![0u8; len];
    file.read_exact(&mut meta)?;
    file.seek(SeekFrom::Start(0))?;
    postcard::from_bytes(&meta).map_err(|e| io_error(format!("snapshot meta: {e}")))
}

/// The header that goes before the scheduler's snapshot: the meta's length, then the meta.
fn header(meta: &Meta) -> Result<Vec<u8>, std::io::Error> {
    let meta = postcard::to_stdvec(meta).map_err(|e| io_error(e.to_string()))?;
    let len = u32::try_from(meta.len()).map_err(|_| io_error("snapshot meta too large"))?;
    let mut bytes = Vec::with_capacity(4 + meta.len());
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(&meta);
    Ok(bytes)
}

/// The last log id of the snapshot kept, and a snapshot's own: saving compares them under
/// one lock, so the snapshot kept only ever moves forward.
struct Newest {
    kept: Arc<Mutex<Option<LogId>>>,
    this: Option<LogId>,
}

impl Newest {
    /// Runs `keep` (which makes this snapshot the one kept) unless the one kept is newer.
    fn replace(
        &self,
        keep: impl FnOnce() -> Result<(), std::io::Error>,
    ) -> Result<bool, std::io::Error> {
        let mut kept = self
            .kept
            .lock()
            .map_err(|_| io_error("snapshot lock poisoned"))?;
        if self.this < *kept {
            return Ok(false);
        }
        keep()?;
        *kept = self.this;
        Ok(true)
    }
}

impl SnapshotStore {
    fn current_path(dir: &Path) -> PathBuf {
        dir.join("current.snapshot")
    }

    /// Keeps `parts`, in order, as the latest snapshot: written to a temporary file of its
    /// own (a build and an install never share one), synced, renamed over the previous one,
    /// which stays until then. The parts are written in turn, never copied into one buffer.
    /// Never goes backwards: a snapshot older than the one kept (a build that an install
    /// overtook) is dropped, and `false` says so.
    fn save(&self, parts: &[&[u8]], newest: &Newest) -> Result<bool, std::io::Error> {
        match self {
            SnapshotStore::Dir(dir) => {
                let mut file = tempfile::NamedTempFile::new_in(dir)?;
                for part in parts {
                    file.write_all(part)?;
                }
                file.as_file().sync_all()?;
                newest.replace(|| {
                    file.persist(Self::current_path(dir)).map_err(|e| e.error)?;
                    std::fs::File::open(dir)?.sync_all()
                })
            }
            SnapshotStore::Memory(slot) => newest.replace(|| {
                *slot
                    .lock()
                    .map_err(|_| io_error("snapshot lock poisoned"))? = Some(parts.concat());
                Ok(())
            }),
        }
    }

    /// Keeps what `body` writes, behind the checksum prefix, as the latest snapshot: as
    /// `save`, but streamed, the checksum computed on the way and written last.
    fn save_with(
        &self,
        newest: &Newest,
        body: impl FnOnce(&mut dyn Write) -> Result<(), std::io::Error>,
    ) -> Result<bool, std::io::Error> {
        match self {
            SnapshotStore::Dir(dir) => {
                let mut file = tempfile::NamedTempFile::new_in(dir)?;
                file.write_all(MAGIC)?;
                file.write_all(&[0u8; 32])?;
                {
                    let mut out = HashingWriter {
                        inner: std::io::BufWriter::new(file.as_file_mut()),
                        hasher: Sha256::new(),
                    };
                    body(&mut out)?;
                    let sum = out.hasher.finalize();
                    let inner = out.inner.into_inner().map_err(|e| e.into_error())?;
                    inner.seek(SeekFrom::Start(MAGIC.len() as u64))?;
                    inner.write_all(&sum)?;
                    inner.sync_all()?;
                }
                newest.replace(|| {
                    file.persist(Self::current_path(dir)).map_err(|e| e.error)?;
                    std::fs::File::open(dir)?.sync_all()
                })
            }
            SnapshotStore::Memory(_) => {
                let mut bytes = Vec::new();
                body(&mut bytes)?;
                let sum = Sha256::digest(&bytes);
                self.save(&[MAGIC, sum.as_slice(), &bytes], newest)
            }
        }
    }

    /// Where the latest snapshot is kept, for messages.
    fn describe(&self) -> String {
        match self {
            SnapshotStore::Dir(dir) => Self::current_path(dir).display().to_string(),
            SnapshotStore::Memory(_) => "the in-memory snapshot".to_owned(),
        }
    }

    fn load(&self) -> Result<Option<Vec<u8>>, std::io::Error> {
        match self {
            SnapshotStore::Dir(dir) => match std::fs::read(Self::current_path(dir)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
            SnapshotStore::Memory(slot) => Ok(slot
                .lock()
                .map_err(|_| io_error("snapshot lock poisoned"))?
                .clone()),
        }
    }

    /// A readable file holding the latest snapshot, positioned at its start.
    fn open(&self) -> Result<Option<std::fs::File>, std::io::Error> {
        match self {
            SnapshotStore::Dir(dir) => match std::fs::File::open(Self::current_path(dir)) {
                Ok(file) => Ok(Some(file)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
            SnapshotStore::Memory(_) => {
                let Some(bytes) = self.load()? else {
                    return Ok(None);
                };
                let mut file = tempfile::tempfile()?;
                file.write_all(&bytes)?;
                file.seek(SeekFrom::Start(0))?;
                Ok(Some(file))
            }
        }
    }

    /// A scratch file to receive a snapshot into.
    fn scratch(&self) -> Result<std::fs::File, std::io::Error> {
        match self {
            SnapshotStore::Dir(dir) => tempfile::tempfile_in(dir),
            SnapshotStore::Memory(_) => tempfile::tempfile(),
        }
    }
}

/// Writes through to `inner`, hashing what passes.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Runs `work` (encoding, hashing, syncing) on a blocking thread, off the async runtime;
/// inline for in-memory snapshots, which are the simulations' and must not depend on a real
/// thread's timing (a seed replays the same run only if nothing does).
async fn offload<T: Send + 'static>(
    snapshots: &SnapshotStore,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, std::io::Error> {
    match snapshots {
        SnapshotStore::Dir(_) => tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| io_error(e.to_string())),
        SnapshotStore::Memory(_) => Ok(work()),
    }
}

/// The state machine openraft drives. Cloning shares the same state.
#[derive(Clone, Debug)]
pub struct StateStore {
    applied: Arc<RwLock<Applied>>,
    snapshots: Arc<SnapshotStore>,
    /// The last log id of the snapshot kept; shared with restarted incarnations.
    kept: Arc<Mutex<Option<LogId>>>,
    archive: Archive,
    /// Snapshots installed from a leader; shared with restarted incarnations.
    installs: Arc<AtomicU64>,
    /// Simulations only: apply with fencing off (see `State::set_fencing_disabled_for_simulation`).
    #[cfg(feature = "simulation")]
    fencing_disabled: Arc<AtomicBool>,
}

impl StateStore {
    /// A state machine whose snapshots live in `dir` and its archive in `dir/archive`; it
    /// starts from the latest snapshot there.
    pub fn open_dir(dir: &Path) -> Result<Self, std::io::Error> {
        Self::open(dir, &dir.join("archive"))
    }

    /// A state machine whose snapshots live in `snapshots` and its archive (RocksDB) in
    /// `archive`; it starts from the latest snapshot, and rewrites the archive from it.
    pub fn open(snapshots: &Path, archive: &Path) -> Result<Self, std::io::Error> {
        std::fs::create_dir_all(snapshots)?;
        let archive = Archive::open_dir(archive)?;
        Self::start(
            Arc::new(SnapshotStore::Dir(snapshots.to_path_buf())),
            archive,
        )
    }

    /// A state machine whose snapshots and archive stay in memory.
    pub fn in_memory() -> Self {
        let archive = Archive::in_memory();
        Self {
            applied: Arc::new(RwLock::new(Applied {
                archive: archive.clone(),
                ..Applied::default()
            })),
            snapshots: Arc::new(SnapshotStore::Memory(Mutex::new(None))),
            kept: Arc::default(),
            archive,
            installs: Arc::default(),
            #[cfg(feature = "simulation")]
            fencing_disabled: Arc::default(),
        }
    }

    /// Fault injection for simulations: every entry is applied with fencing off, so the
    /// simulation can show its checker catching a zombie worker. Survives `restarted`.
    #[cfg(feature = "simulation")]
    pub fn disable_fencing_for_simulation(&self) {
        self.fencing_disabled.store(true, Ordering::SeqCst);
    }

    /// The same store as `self` would be after a restart: the state rebuilt from the latest
    /// snapshot only (what a simulated node keeps across a crash), the archive rewritten
    /// from it (an in-memory archive starts empty first, as memory would).
    pub fn restarted(&self) -> Result<Self, std::io::Error> {
        // The snapshot slot is shared, so what a later incarnation snapshots is what the
        // next restart finds (the log it pairs with was purged behind it).
        let archive = match &*self.snapshots {
            SnapshotStore::Dir(_) => self.archive.clone(),
            SnapshotStore::Memory(_) => Archive::in_memory(),
        };
        let mut restarted = Self::start(self.snapshots.clone(), archive)?;
        restarted.kept = self.kept.clone();
        restarted.installs = self.installs.clone();
        #[cfg(feature = "simulation")]
        {
            let disabled = self.fencing_disabled.load(Ordering::SeqCst);
            restarted.fencing_disabled.store(disabled, Ordering::SeqCst);
        }
        Ok(restarted)
    }

    fn start(snapshots: Arc<SnapshotStore>, archive: Archive) -> Result<Self, std::io::Error> {
        // A snapshot that cannot be used is named with the reason, not just refused, and
        // with the members its header names, so the node can ask them for another.
        let unusable = |why: String| {
            let members = snapshots
                .open()
                .ok()
                .flatten()
                .and_then(|mut file| read_meta(&mut file).ok())
                .map(|meta| {
                    meta.last_membership
                        .nodes()
                        .map(|(id, node)| (*id, node.addr.clone()))
                        .collect()
                })
                .unwrap_or_default();
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                UnusableSnapshot {
                    file: snapshots.describe(),
                    why,
                    members,
                },
            )
        };
        let applied = match snapshots.load().map_err(|e| unusable(e.to_string()))? {
            Some(bytes) => {
                let parsed = parse(&bytes).map_err(|e| unusable(e.to_string()))?;
                let (state, records) = load(&parsed).map_err(|e| unusable(e.to_string()))?;
                archive.replace_all_at_start(owned_records(records))?;
                Applied {
                    state,
                    last_applied: parsed.meta.last_log_id,
                    membership: parsed.meta.last_membership,
                    archive: archive.clone(),
                }
            }
            None => {
                archive.replace_all_at_start(std::iter::empty())?;
                Applied {
                    archive: archive.clone(),
                    ..Applied::default()
                }
            }
        };
        let kept = Arc::new(Mutex::new(applied.last_applied));
        Ok(Self {
            applied: Arc::new(RwLock::new(applied)),
            snapshots,
            kept,
            archive,
            installs: Arc::default(),
            #[cfg(feature = "simulation")]
            fencing_disabled: Arc::default(),
        })
    }

    /// How many snapshots this store (and the incarnations it restarted from) installed.
    pub fn installs(&self) -> u64 {
        self.installs.load(AtomicOrdering::Relaxed)
    }

    /// The last log id the snapshot kept covers, if there is one.
    pub fn kept_snapshot(&self) -> Option<LogId> {
        *self
            .kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The snapshot kept, as a file positioned at its start (what a peer is sent).
    pub fn snapshot_file(&self) -> Result<Option<std::fs::File>, std::io::Error> {
        self.snapshots.open()
    }

    /// Read access to the applied state, for queries.
    pub fn read(&self) -> RwLockReadGuard<'_, Applied> {
        // A poisoned lock means a panic while applying; the data is still the last state a
        // command left, which is what a read should see.
        self.applied
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_lock(&self) -> Result<std::sync::RwLockWriteGuard<'_, Applied>, StorageError> {
        self.applied.write().map_err(|_| {
            StorageIOError::write_state_machine(&io_error("state lock poisoned")).into()
        })
    }
}

/// The index last applied, for the invariant checker's message.
#[cfg(feature = "check-invariants")]
fn entry_index(applied: &Applied) -> u64 {
    applied.last_applied.map_or(0, |id| id.index)
}

impl RaftSnapshotBuilder<TypeConfig> for StateStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // The pin keeps the frozen book's records on disk while apply goes on; only the
        // freeze happens under the lock.
        let pin = self.archive.pin().await;
        let (meta, frozen) = {
            let applied = self.read();
            let frozen = applied.state.freeze();
            let snapshot_id = match applied.last_applied {
                Some(id) => format!("{}-{}", id.leader_id, id.index),
                None => "empty".to_owned(),
            };
            let meta = Meta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
                snapshot_id,
            };
            (meta, frozen)
        };
        let write_err =
            |e: std::io::Error| StorageIOError::write_snapshot(Some(meta.signature()), &e);
        let header = header(&meta).map_err(write_err)?;
        // Encoding, hashing and syncing a large state take a while: not on the runtime.
        let snapshots = self.snapshots.clone();
        let archive = self.archive.clone();
        let newest = Newest {
            kept: self.kept.clone(),
            this: meta.last_log_id,
        };
        offload(&self.snapshots, move || {
            // `false` when an install kept a newer snapshot meanwhile: this one is dropped.
            snapshots.save_with(&newest, |out| {
                out.write_all(&header)?;
                // Streamed: a large ledger is never held whole in memory.
                frozen
                    .write_snapshot(&mut *out)
                    .map_err(|e| io_error(e.to_string()))?;
                for (key, entry) in frozen.archive_book() {
                    let record = archive
                        .get(key)?
                        .filter(|record| record_hash(record) == entry.hash)
                        .ok_or_else(|| {
                            io_error(format!(
                                "archive lacks record {key:?} of the book being snapshotted, or holds other bytes"
                            ))
                        })?;
                    write_record(out, key, &record)?;
                }
                Ok(())
            })?;
            drop(pin);
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(|e| write_err(io_error(e.to_string())))?
        .map_err(write_err)?;
        let mut file = self
            .snapshots
            .open()
            .map_err(write_err)?
            .ok_or_else(|| write_err(io_error("snapshot vanished")))?;
        // What is offered is the file kept: this build's, or a newer one an install kept
        // meanwhile (then this build was dropped), so its meta is read from the file.
        let meta = read_meta(&mut file).map_err(write_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, RotaNode>), StorageError> {
        let applied = self.read();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchReply>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut applied = self.write_lock()?;
        #[cfg(feature = "simulation")]
        {
            let disabled = self.fencing_disabled.load(Ordering::SeqCst);
            applied.state.set_fencing_disabled_for_simulation(disabled);
        }
        let mut replies = Vec::new();
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            let reply = match entry.payload {
                EntryPayload::Blank => BatchReply::default(),
                EntryPayload::Normal(batch) => {
                    let index = entry.log_id.index;
                    let now_ms = batch.now_ms;
                    let state = &mut applied.state;
                    let responses = batch
                        .writes
                        .into_iter()
                        .map(|write| match write {
                            crate::types::Write::Command(command) => {
                                state.apply(command, now_ms, index)
                            }
                            crate::types::Write::Request(request) => {
                                state.apply_request(request, now_ms, index)
                            }
                        })
                        .collect();
                    BatchReply { responses }
                }
                EntryPayload::Membership(membership) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                    BatchReply::default()
                }
            };
            replies.push(reply);
            let ops = applied.state.take_archive_ops();
            applied
                .archive
                .apply(ops)
                .map_err(|e| StorageIOError::write_state_machine(&e))?;
            #[cfg(feature = "check-invariants")]
            if let Err(broken) = applied.state.check_invariants() {
                panic!(
                    "state invariant broken after applying log index {}: {broken}",
                    entry_index(&applied)
                );
            }
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let file = self
            .snapshots
            .scratch()
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let read_err =
            |e: std::io::Error| StorageIOError::read_snapshot(Some(meta.signature()), &e);
        let mut file = snapshot.into_std().await;
        let bytes = offload(&self.snapshots, move || {
            file.seek(SeekFrom::Start(0))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            Ok::<_, std::io::Error>(bytes)
        })
        .await
        .map_err(|e| read_err(io_error(e.to_string())))?
        .map_err(read_err)?;
        let parsed = parse(&bytes).map_err(read_err)?;
        if parsed.meta.last_log_id != meta.last_log_id {
            return Err(read_err(io_error("snapshot meta does not match its data")).into());
        }
        let (state, records) = load(&parsed).map_err(read_err)?;
        // No build reads the archive while it is rewritten; the state is swapped after.
        let rewrite = self.archive.rewrite().await;
        {
            // Under the write lock, so no reader sees the new archive with the old book.
            let mut applied = self.write_lock()?;
            self.archive
                .replace_all(&rewrite, owned_records(records))
                .map_err(read_err)?;
            applied.state = state;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
        }
        drop(rewrite);
        self.installs.fetch_add(1, AtomicOrdering::Relaxed);
        // Kept exactly as received (checksum verified above), synced off the runtime.
        let snapshots = self.snapshots.clone();
        let write_err =
            |e: std::io::Error| StorageIOError::write_snapshot(Some(meta.signature()), &e);
        let newest = Newest {
            kept: self.kept.clone(),
            this: meta.last_log_id,
        };
        offload(&self.snapshots, move || snapshots.save(&[&bytes], &newest))
            .await
            .map_err(|e| write_err(io_error(e.to_string())))?
            .map_err(write_err)?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let read_err = |e: std::io::Error| StorageIOError::read_snapshot(None, &e);
        let Some(mut file) = self.snapshots.open().map_err(read_err)? else {
            return Ok(None);
        };
        let meta = read_meta(&mut file).map_err(read_err)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        }))
    }
}

/// Checks snapshot `bytes` a peer sent the way start-up checks a file (checksum, header,
/// the scheduler's state, the archive's records against the book) and returns the last log
/// id they cover.
pub fn vet_snapshot(bytes: &[u8]) -> Result<Option<LogId>, std::io::Error> {
    let parsed = parse(bytes)?;
    load(&parsed)?;
    Ok(parsed.meta.last_log_id)
}

/// Moves the snapshot in `dir` aside, as `current.snapshot.corrupt`, so the node starts
/// without one.
pub fn set_aside(dir: &Path) -> Result<PathBuf, std::io::Error> {
    let aside = dir.join("current.snapshot.corrupt");
    std::fs::rename(SnapshotStore::current_path(dir), &aside)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(aside)
}

/// Keeps vetted snapshot `bytes` as the snapshot in `dir`, where `StateStore::open` finds
/// it. The file it replaces, if any, is copied aside first as `current.snapshot.corrupt`
/// (for a post-mortem); the new one is written and synced before it replaces the old.
pub fn adopt_snapshot(dir: &Path, bytes: &[u8]) -> Result<PathBuf, std::io::Error> {
    let current = SnapshotStore::current_path(dir);
    let aside = dir.join("current.snapshot.corrupt");
    if current.exists() {
        std::fs::copy(&current, &aside)?;
    }
    let store = SnapshotStore::Dir(dir.to_path_buf());
    let newest = Newest {
        kept: Arc::default(),
        this: None,
    };
    store.save(&[bytes], &newest)?;
    Ok(aside)
}
