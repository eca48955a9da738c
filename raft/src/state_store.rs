//! The state-machine adapter: applies committed entries to the scheduler, builds and
//! installs snapshots, and keeps the latest snapshot where a restart finds it.
//!
//! A snapshot's bytes are a checksum prefix (`ROTASNP2`, then the sha256 of everything
//! after it), a header (the length of the encoded `SnapshotMeta`, then the meta) and the
//! scheduler's own snapshot. The same bytes are the file on disk and what followers
//! receive, so an installed snapshot is kept exactly as it arrived, and the checksum is
//! verified before any snapshot is used: at start-up, and when one is installed. A file
//! without the prefix is one an older rota wrote, read as it was.
//!
//! Building and installing never write the same file: each writes a temporary file of its
//! own in the snapshot directory, syncs it and renames it over `current.snapshot`, so the
//! previous snapshot stays until the new one is durable. Encoding, hashing and syncing run
//! off the async runtime.

use crate::types::{BatchReply, Entry, LogId, NodeId, RotaNode, StorageError, TypeConfig};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership};
use rota_state_machine::State;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
#[cfg(feature = "simulation")]
use std::sync::atomic::{AtomicBool, Ordering};
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

/// What a checksummed snapshot starts with.
const MAGIC: &[u8; 8] = b"ROTASNP2";
/// The magic and the sha256 after it.
const PREFIX_LEN: usize = MAGIC.len() + 32;

/// The checksum prefix of a snapshot made of `parts`.
fn prefix(parts: &[&[u8]]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    [MAGIC.as_slice(), hasher.finalize().as_slice()].concat()
}

/// The bytes after the checksum prefix, once the checksum holds; a legacy snapshot (no
/// prefix) as it is.
fn verified(bytes: &[u8]) -> Result<&[u8], std::io::Error> {
    let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return Ok(bytes);
    };
    let (sum, body) = rest
        .split_at_checked(32)
        .ok_or_else(|| io_error("snapshot truncated inside its checksum"))?;
    if Sha256::digest(body).as_slice() != sum {
        return Err(io_error(
            "snapshot checksum does not match: the file is corrupt or truncated",
        ));
    }
    Ok(body)
}

/// Splits snapshot bytes into the meta and the scheduler's part, after checking them.
fn parse(bytes: &[u8]) -> Result<(Meta, &[u8]), std::io::Error> {
    let bytes = verified(bytes)?;
    let (len, rest) = bytes
        .split_at_checked(4)
        .ok_or_else(|| io_error("snapshot shorter than its header"))?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let (meta, state) = rest
        .split_at_checked(len)
        .ok_or_else(|| io_error("snapshot header longer than the snapshot"))?;
    let meta = postcard::from_bytes(meta).map_err(|e| io_error(format!("snapshot meta: {e}")))?;
    Ok((meta, state))
}

/// Reads the meta from the head of a snapshot file and rewinds it.
fn read_meta(file: &mut std::fs::File) -> Result<Meta, std::io::Error> {
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic)?;
    if magic != *MAGIC {
        file.seek(SeekFrom::Start(0))?;
    } else {
        file.seek(SeekFrom::Start(PREFIX_LEN as u64))?;
    }
    let mut len = [0u8; 4];
    file.read_exact(&mut len)?;
    let mut meta = vec![0u8; u32::from_be_bytes(len) as usize];
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

impl SnapshotStore {
    fn current_path(dir: &Path) -> PathBuf {
        dir.join("current.snapshot")
    }

    /// Keeps `parts`, in order, as the latest snapshot: written to a temporary file of its
    /// own (a build and an install never share one), synced, renamed over the previous one,
    /// which stays until then. The parts are written in turn, never copied into one buffer.
    fn save(&self, parts: &[&[u8]]) -> Result<(), std::io::Error> {
        match self {
            SnapshotStore::Dir(dir) => {
                let mut file = tempfile::NamedTempFile::new_in(dir)?;
                for part in parts {
                    file.write_all(part)?;
                }
                file.as_file().sync_all()?;
                file.persist(Self::current_path(dir)).map_err(|e| e.error)?;
                std::fs::File::open(dir)?.sync_all()
            }
            SnapshotStore::Memory(slot) => {
                *slot
                    .lock()
                    .map_err(|_| io_error("snapshot lock poisoned"))? = Some(parts.concat());
                Ok(())
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

/// The state machine openraft drives. Cloning shares the same state.
#[derive(Clone, Debug)]
pub struct StateStore {
    applied: Arc<RwLock<Applied>>,
    snapshots: Arc<SnapshotStore>,
    /// Simulations only: apply with fencing off (see `State::set_fencing_disabled_for_simulation`).
    #[cfg(feature = "simulation")]
    fencing_disabled: Arc<AtomicBool>,
}

impl StateStore {
    /// A state machine whose snapshots live in `dir`; it starts from the latest one there.
    pub fn open_dir(dir: &Path) -> Result<Self, std::io::Error> {
        std::fs::create_dir_all(dir)?;
        Self::start(SnapshotStore::Dir(dir.to_path_buf()))
    }

    /// A state machine whose snapshots stay in memory.
    pub fn in_memory() -> Self {
        Self {
            applied: Arc::default(),
            snapshots: Arc::new(SnapshotStore::Memory(Mutex::new(None))),
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
    /// snapshot only (what a simulated node keeps across a crash).
    pub fn restarted(&self) -> Result<Self, std::io::Error> {
        let snapshots = match &*self.snapshots {
            SnapshotStore::Dir(dir) => SnapshotStore::Dir(dir.clone()),
            SnapshotStore::Memory(_) => SnapshotStore::Memory(Mutex::new(self.snapshots.load()?)),
        };
        let restarted = Self::start(snapshots)?;
        #[cfg(feature = "simulation")]
        {
            let disabled = self.fencing_disabled.load(Ordering::SeqCst);
            restarted.fencing_disabled.store(disabled, Ordering::SeqCst);
        }
        Ok(restarted)
    }

    fn start(snapshots: SnapshotStore) -> Result<Self, std::io::Error> {
        // A snapshot that cannot be used is named with the reason, not just refused.
        let unusable = |why: String| io_error(format!("{}: {why}", snapshots.describe()));
        let applied = match snapshots.load().map_err(|e| unusable(e.to_string()))? {
            Some(bytes) => {
                let (meta, state) = parse(&bytes).map_err(|e| unusable(e.to_string()))?;
                Applied {
                    state: State::restore(state).map_err(|e| unusable(e.to_string()))?,
                    last_applied: meta.last_log_id,
                    membership: meta.last_membership,
                }
            }
            None => Applied::default(),
        };
        Ok(Self {
            applied: Arc::new(RwLock::new(applied)),
            snapshots: Arc::new(snapshots),
            #[cfg(feature = "simulation")]
            fencing_disabled: Arc::default(),
        })
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
        // Only the freeze happens under the lock; apply goes on while the copy is encoded.
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
        tokio::task::spawn_blocking(move || {
            let state = frozen.snapshot().map_err(|e| io_error(e.to_string()))?;
            drop(frozen);
            let prefix = prefix(&[&header, &state]);
            snapshots.save(&[&prefix, &header, &state])
        })
        .await
        .map_err(|e| write_err(io_error(e.to_string())))?
        .map_err(write_err)?;
        let file = self
            .snapshots
            .open()
            .map_err(write_err)?
            .ok_or_else(|| write_err(io_error("snapshot vanished")))?;
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
        let bytes = tokio::task::spawn_blocking(move || {
            file.seek(SeekFrom::Start(0))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            Ok::<_, std::io::Error>(bytes)
        })
        .await
        .map_err(|e| read_err(io_error(e.to_string())))?
        .map_err(read_err)?;
        let (received_meta, state_bytes) = parse(&bytes).map_err(read_err)?;
        if received_meta.last_log_id != meta.last_log_id {
            return Err(read_err(io_error("snapshot meta does not match its data")).into());
        }
        let state = State::restore(state_bytes).map_err(|e| read_err(io_error(e.to_string())))?;
        {
            let mut applied = self.write_lock()?;
            applied.state = state;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
        }
        // Kept exactly as received (checksum verified above), synced off the runtime.
        let snapshots = self.snapshots.clone();
        let write_err =
            |e: std::io::Error| StorageIOError::write_snapshot(Some(meta.signature()), &e);
        tokio::task::spawn_blocking(move || snapshots.save(&[&bytes]))
            .await
            .map_err(|e| write_err(io_error(e.to_string())))?
            .map_err(|e| write_err(e).into())
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
