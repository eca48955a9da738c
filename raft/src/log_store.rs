//! The Raft log: durable in RocksDB for real nodes, in memory for simulations.
//!
//! RocksDB keeps entries, the vote and the committed and purged markers in two column
//! families. Every write that openraft relies on being durable (an append it will report as
//! flushed, a vote, a truncation, a purge) is one `WriteBatch` written with `sync`, so the
//! WAL is on disk before we answer; one sync covers all the entries of an append.
//!
//! Versions: the meta family names the log's format (`format`), and each entry starts with
//! its format byte, then postcard. Format 1 (rota before issue 17) had neither: its entries
//! were bare postcard. A log of format 1 is rewritten to format 2 when it opens, in one
//! synced batch; a log or an entry of a newer format than this build knows is refused with
//! a message that says so, never read as garbage.

use crate::stats::{Stage, Stats};
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError, Vote};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, Direction, IteratorMode,
    Options, WriteBatch, WriteOptions, DB,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex};

const CF_LOGS: &str = "logs";
const CF_META: &str = "meta";
const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"last_purged";
const KEY_FORMAT: &[u8] = b"format";
/// The log format this build writes and reads (see the module above); it also reads 1.
pub const LOG_FORMAT: u8 = 2;
/// A synced log write slower than this is logged: openraft handles nothing else meanwhile.
const SLOW_SYNC: std::time::Duration = std::time::Duration::from_millis(100);

/// The log database's block cache: reads are rare (followers catching up, restarts).
const LOG_BLOCK_CACHE_BYTES: usize = 8 * 1024 * 1024;

/// Opens (creating if needed) the RocksDB database that holds a node's Raft log, and brings
/// it to this build's format (see the module above): a log of a newer format is refused.
pub fn open_db(dir: &Path) -> Result<Arc<DB>, std::io::Error> {
    let db = open_rocks(dir).map_err(|e| std::io::Error::other(e.to_string()))?;
    upgrade(&db, dir)?;
    Ok(db)
}

fn open_rocks(dir: &Path) -> Result<Arc<DB>, rocksdb::Error> {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    // The log is written once, read back rarely (followers catching up, restarts) and
    // purged behind snapshots, so its memtables stay small: RocksDB's default 64 MiB per
    // memtable would hold ~100 MiB of entries in memory that the state already holds.
    // Its block cache is one bounded LRU for all its families, not RocksDB's default 32 MiB
    // each, so a node's memory does not creep as reads warm them.
    let cache = Cache::new_lru_cache(LOG_BLOCK_CACHE_BYTES);
    let mut tables = BlockBasedOptions::default();
    tables.set_block_cache(&cache);
    options.set_block_based_table_factory(&tables);
    // Flushes and compactions write their files back a megabyte at a time (see the archive).
    options.set_bytes_per_sync(crate::archive::SYNC_EVERY_BYTES);
    let mut logs = options.clone();
    logs.set_write_buffer_size(8 * 1024 * 1024);
    logs.set_max_write_buffer_number(2);
    let families = [
        ColumnFamilyDescriptor::new(CF_LOGS, logs),
        ColumnFamilyDescriptor::new(CF_META, options.clone()),
    ];
    Ok(Arc::new(DB::open_cf_descriptors(&options, dir, families)?))
}

/// Names the log's format in a fresh database, rewrites a format-1 log to this format, and
/// refuses a newer one.
fn upgrade(db: &DB, dir: &Path) -> Result<(), std::io::Error> {
    let rocks = |e: rocksdb::Error| std::io::Error::other(e.to_string());
    let family = |name: &str| {
        db.cf_handle(name)
            .ok_or_else(|| std::io::Error::other(format!("column family {name} is missing")))
    };
    let (meta, logs) = (family(CF_META)?, family(CF_LOGS)?);
    match db.get_cf(meta, KEY_FORMAT).map_err(rocks)?.as_deref() {
        Some([LOG_FORMAT]) => return Ok(()),
        Some([newer]) if *newer > LOG_FORMAT => {
            return Err(std::io::Error::other(format!(
                "the Raft log in {} is format {newer}, newer than this rota reads (up to {LOG_FORMAT}): run the rota that wrote it, or a newer one",
                dir.display()
            )))
        }
        Some(other) => {
            return Err(std::io::Error::other(format!(
                "the Raft log in {} names an unknown format {other:?}: damaged",
                dir.display()
            )))
        }
        None => {}
    }
    // No format named: a new log, or one of format 1, whose entries are bare postcard.
    let mut batch = WriteBatch::default();
    let mut rewritten = 0u64;
    for item in db.iterator_cf(logs, IteratorMode::Start) {
        let (key, value) = item.map_err(rocks)?;
        decode::<Entry>(&value).map_err(|e| {
            std::io::Error::other(format!(
                "the Raft log in {} names no format and its entry {key:?} is not one of format 1: {e}",
                dir.display()
            ))
        })?;
        let mut versioned = Vec::with_capacity(value.len() + 1);
        versioned.push(LOG_FORMAT);
        versioned.extend_from_slice(&value);
        batch.put_cf(logs, key, versioned);
        rewritten += 1;
    }
    batch.put_cf(meta, KEY_FORMAT, [LOG_FORMAT]);
    let mut options = WriteOptions::default();
    options.set_sync(true);
    db.write_opt(batch, &options).map_err(rocks)?;
    if rewritten > 0 {
        tracing::info!(
            entries = rewritten,
            "rewrote a Raft log of format 1 to format {LOG_FORMAT}"
        );
    }
    Ok(())
}

/// An entry as the log keeps it: its format byte, then postcard.
fn encode_entry(entry: &Entry) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_extend(entry, vec![LOG_FORMAT])
}

/// Reads an entry `encode_entry` wrote; one of another format is refused, saying which.
fn decode_entry(bytes: &[u8]) -> Result<Entry, std::io::Error> {
    match bytes.split_first() {
        Some((&LOG_FORMAT, body)) => decode(body).map_err(std::io::Error::other),
        Some((&newer, _)) if newer > LOG_FORMAT => Err(std::io::Error::other(format!(
            "log entry of format {newer}, newer than this rota reads (up to {LOG_FORMAT})"
        ))),
        Some((other, _)) => Err(std::io::Error::other(format!(
            "log entry of unknown format {other}: damaged"
        ))),
        None => Err(std::io::Error::other("empty log entry: damaged")),
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(value)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// Default byte budget of the entries one AppendEntries carries: the default log entry
/// budget, so that a request replicates within the heartbeat that is openraft's deadline
/// for it.
pub const DEFAULT_MAX_APPEND_BYTES: usize = 4 * 1024 * 1024;

/// The Raft log in RocksDB.
#[derive(Clone)]
pub struct RocksLogStore {
    db: Arc<DB>,
    append_budget: usize,
    stats: Arc<Stats>,
}

impl RocksLogStore {
    /// A log store over an open database (see [`open_db`]).
    pub fn new(db: Arc<DB>) -> Self {
        Self {
            db,
            append_budget: DEFAULT_MAX_APPEND_BYTES,
            stats: Arc::default(),
        }
    }

    /// Counts what it appends into `stats`.
    pub fn with_stats(mut self, stats: Arc<Stats>) -> Self {
        self.stats = stats;
        self
    }

    /// Bounds what openraft reads for one AppendEntries to `bytes` of encoded entries (one
    /// entry always, however large): openraft bounds a request by its count of entries
    /// (`max_payload_entries`) and asks the log reader for at most that many; the reader
    /// may hand back fewer, and the leader sends the rest in the next request.
    pub fn with_append_budget(mut self, bytes: usize) -> Self {
        self.append_budget = bytes.max(1);
        self
    }

    fn cf(&self, name: &str) -> Result<&ColumnFamily, StorageError> {
        self.db.cf_handle(name).ok_or_else(|| {
            StorageIOError::read(&std::io::Error::other(format!(
                "column family {name} is missing"
            )))
            .into()
        })
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        let bytes = self
            .db
            .get_cf(self.cf(CF_META)?, key)
            .map_err(|e| StorageIOError::read(&e))?;
        bytes
            .map(|b| decode(&b).map_err(|e| StorageIOError::read(&e).into()))
            .transpose()
    }

    /// Writes `batch` with `sync` on a blocking thread, so the fsync never stalls the async
    /// runtime (heartbeats and elections run there); the caller still waits for it.
    async fn synced(&self, batch: WriteBatch) -> Result<(), std::io::Error> {
        let db = Arc::clone(&self.db);
        let bytes = batch.size_in_bytes();
        let started = std::time::Instant::now();
        let write = tokio::task::spawn_blocking(move || {
            let mut options = WriteOptions::default();
            options.set_sync(true);
            db.write_opt(batch, &options)
        });
        let result = match write.await {
            Ok(result) => result.map_err(|e| std::io::Error::other(e.to_string())),
            Err(join) => Err(std::io::Error::other(join.to_string())),
        };
        let took = started.elapsed();
        self.stats.timed(Stage::LogSync, 1, took);
        if took >= SLOW_SYNC {
            // openraft waits for this write before it handles the next message, heartbeats
            // included: a write this slow can cost the follower its leader.
            tracing::warn!(?took, bytes, "slow synced log write");
        }
        result
    }
}

impl RocksLogStore {
    /// The entries in `range`, in order; with a `budget`, only those whose encoded bytes fit
    /// in it (at least one).
    fn read<RB: RangeBounds<u64>>(
        &self,
        range: RB,
        budget: Option<usize>,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let from = index_key(start);
        let mut entries = Vec::new();
        let mut used = 0usize;
        for item in self.db.iterator_cf(
            self.cf(CF_LOGS)?,
            IteratorMode::From(&from, Direction::Forward),
        ) {
            let (key, value) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            let index = key
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|e| StorageIOError::read_logs(&e))?;
            if !range.contains(&index) {
                break;
            }
            used += value.len();
            if budget.is_some_and(|budget| used > budget) && !entries.is_empty() {
                break;
            }
            entries.push(decode_entry(&value).map_err(|e| StorageIOError::read_logs(&e))?);
        }
        Ok(entries)
    }
}

impl RaftLogReader<TypeConfig> for RocksLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let started = std::time::Instant::now();
        let entries = self.read(range, None);
        self.stats.timed(Stage::LogRead, 1, started.elapsed());
        entries
    }

    /// What openraft sends in one AppendEntries: within the byte budget.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let started = std::time::Instant::now();
        let entries = self.read(start..end, Some(self.append_budget));
        self.stats.timed(Stage::LogRead, 1, started.elapsed());
        entries
    }
}

impl RaftLogStorage<TypeConfig> for RocksLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.get_meta(KEY_PURGED)?;
        let last = self
            .db
            .iterator_cf(self.cf(CF_LOGS)?, IteratorMode::End)
            .next();
        let last_log_id = match last {
            Some(item) => {
                let (_, value) = item.map_err(|e| StorageIOError::read_logs(&e))?;
                Some(
                    decode_entry(&value)
                        .map_err(|e| StorageIOError::read_logs(&e))?
                        .log_id,
                )
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_META)?,
            KEY_VOTE,
            encode(vote).map_err(|e| StorageIOError::write_vote(&e))?,
        );
        self.synced(batch)
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: the committed marker only lets a restart re-apply sooner; losing the
        // latest one costs nothing but a little catching up.
        let value = encode(&committed).map_err(|e| StorageIOError::write(&e))?;
        self.db
            .put_cf(self.cf(CF_META)?, KEY_COMMITTED, value)
            .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let logs = self.cf(CF_LOGS)?;
        let mut batch = WriteBatch::default();
        let (mut count, mut bytes) = (0u64, 0u64);
        for entry in entries {
            let value = encode_entry(&entry).map_err(|e| StorageIOError::write_logs(&e))?;
            count += 1;
            bytes += value.len() as u64;
            batch.put_cf(logs, index_key(entry.log_id.index), value);
        }
        // Synced before the callback: openraft counts these entries towards the commit quorum
        // as soon as it hears they are flushed.
        let result = self.synced(batch).await;
        if result.is_ok() {
            self.stats.appended(count, bytes);
        }
        let report = match &result {
            Ok(()) => Ok(()),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        };
        callback.log_io_completed(report);
        result.map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.cf(CF_LOGS)?,
            index_key(log_id.index),
            index_key(u64::MAX),
        );
        self.synced(batch)
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        let marker = encode(&log_id).map_err(|e| StorageIOError::write_logs(&e))?;
        batch.put_cf(self.cf(CF_META)?, KEY_PURGED, marker);
        batch.delete_range_cf(self.cf(CF_LOGS)?, index_key(0), index_key(log_id.index + 1));
        self.synced(batch)
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

/// What the in-memory log holds; shared so a simulated node's "disk" survives its restart.
#[derive(Debug, Default)]
struct MemLog {
    entries: BTreeMap<u64, Entry>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
    /// The highest index the disk has synced: a crash keeps the entries up to here.
    synced: u64,
    /// Bumped by every truncation: a sync queued before it covers entries that are gone.
    generation: u64,
}

/// A simulated disk that takes its time to sync (see [`MemLogStore::with_disk`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimDisk {
    /// Each append is synced this long after the one before it was, at least...
    pub min_sync_ms: u64,
    /// ...and at most this (drawn from the entry's index, so a seed replays it).
    pub max_sync_ms: u64,
    /// Reports an append flushed as soon as it is written, before it is synced: a disk (or
    /// a cache) that lies. Only to show that the simulations catch what it loses.
    pub acknowledges_before_sync: bool,
}

/// An append waiting for the simulated disk to sync it.
struct PendingSync {
    last_index: u64,
    generation: u64,
    /// `None` when the append was already reported (a lying disk).
    callback: Option<LogFlushed<TypeConfig>>,
}

/// The Raft log in memory, for simulations. Cloning shares the same log.
#[derive(Clone)]
pub struct MemLogStore {
    log: Arc<Mutex<MemLog>>,
    append_budget: usize,
    disk: Option<SimDisk>,
    /// The disk's queue of syncs, started on the first append of each incarnation.
    syncs: Arc<Mutex<Option<tokio::sync::mpsc::UnboundedSender<PendingSync>>>>,
}

impl Debug for MemLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemLogStore")
            .field("append_budget", &self.append_budget)
            .field("disk", &self.disk)
            .finish_non_exhaustive()
    }
}

impl Default for MemLogStore {
    fn default() -> Self {
        Self {
            log: Arc::default(),
            append_budget: DEFAULT_MAX_APPEND_BYTES,
            disk: None,
            syncs: Arc::default(),
        }
    }
}

impl MemLogStore {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// As [`RocksLogStore::with_append_budget`]; entries are measured as they would be
    /// encoded.
    pub fn with_append_budget(mut self, bytes: usize) -> Self {
        self.append_budget = bytes.max(1);
        self
    }

    /// Appends reach the disk in order, each synced `disk`'s time after the one before,
    /// and are reported flushed only then (unless the disk lies). Without a disk every
    /// append is synced as it is written.
    pub fn with_disk(mut self, disk: SimDisk) -> Self {
        self.disk = Some(disk);
        self
    }

    /// The log as a restarted node finds it after a crash: what was written but not yet
    /// synced is gone (a torn last write is one of those: RocksDB's recovery drops it the
    /// same way). Votes, truncations and purges are synced as they are made.
    pub fn restarted(&self) -> Self {
        if let Ok(mut log) = self.log.lock() {
            let synced = log.synced;
            log.entries.split_off(&(synced + 1));
            let last = log.entries.values().next_back().map(|e| e.log_id);
            let kept = last.or(log.last_purged);
            if log.committed > kept {
                log.committed = kept;
            }
        }
        Self {
            log: self.log.clone(),
            append_budget: self.append_budget,
            disk: self.disk,
            syncs: Arc::default(),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemLog>, StorageError> {
        self.log
            .lock()
            .map_err(|_| StorageIOError::read(&std::io::Error::other("log lock poisoned")).into())
    }

    /// Queues a sync of the entries up to `last_index` on the disk's task (started in this
    /// runtime on first use; a crash drops it with whatever it had not synced).
    fn queue_sync(&self, disk: SimDisk, sync: PendingSync) -> Result<(), StorageError> {
        let mut syncs = self
            .syncs
            .lock()
            .map_err(|_| StorageIOError::write_logs(&std::io::Error::other("disk poisoned")))?;
        let sender = syncs.get_or_insert_with(|| {
            let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(run_disk(self.log.clone(), disk, receiver));
            sender
        });
        sender
            .send(sync)
            .map_err(|_| StorageIOError::write_logs(&std::io::Error::other("disk stopped")).into())
    }
}

/// The simulated disk: syncs appends in order, each after its delay.
async fn run_disk(
    log: Arc<Mutex<MemLog>>,
    disk: SimDisk,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<PendingSync>,
) {
    while let Some(sync) = queue.recv().await {
        let spread = disk.max_sync_ms.saturating_sub(disk.min_sync_ms) + 1;
        let delay = disk.min_sync_ms + mix(sync.last_index) % spread;
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        if let Ok(mut log) = log.lock() {
            if log.generation == sync.generation {
                log.synced = log.synced.max(sync.last_index);
            }
        }
        if let Some(callback) = sync.callback {
            callback.log_io_completed(Ok(()));
        }
    }
}

/// SplitMix64's finalizer: a well-spread number from an index.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl RaftLogReader<TypeConfig> for MemLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .lock()?
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let log = self.lock()?;
        let mut entries = Vec::new();
        let mut used = 0usize;
        for entry in log.entries.range(start..end).map(|(_, e)| e) {
            used += postcard::serialize_with_flavor::<_, _, usize>(
                entry,
                postcard::ser_flavors::Size::default(),
            )
            .map_err(|e| StorageIOError::read_logs(&e))?;
            if used > self.append_budget && !entries.is_empty() {
                break;
            }
            entries.push(entry.clone());
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for MemLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let log = self.lock()?;
        let last = log.entries.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: log.last_purged,
            last_log_id: last.or(log.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.lock()?.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self.lock()?.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.lock()?.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock()?.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let (last_index, generation) = {
            let mut log = self.lock()?;
            let mut last_index = 0;
            for entry in entries {
                last_index = entry.log_id.index;
                log.entries.insert(entry.log_id.index, entry);
            }
            if self.disk.is_none() {
                log.synced = log.synced.max(last_index);
            }
            (last_index, log.generation)
        };
        match self.disk {
            None => callback.log_io_completed(Ok(())),
            Some(disk) => {
                let callback = if disk.acknowledges_before_sync {
                    callback.log_io_completed(Ok(()));
                    None
                } else {
                    Some(callback)
                };
                self.queue_sync(
                    disk,
                    PendingSync {
                        last_index,
                        generation,
                        callback,
                    },
                )?;
            }
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut log = self.lock()?;
        log.entries.split_off(&log_id.index);
        log.synced = log.synced.min(log_id.index.saturating_sub(1));
        log.generation += 1;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut log = self.lock()?;
        log.last_purged = Some(log_id);
        log.entries = log.entries.split_off(&(log_id.index + 1));
        Ok(())
    }
}
