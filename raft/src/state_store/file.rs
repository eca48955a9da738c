//! A snapshot as bytes and as a file: its format (a checksum prefix, a header, the
//! scheduler's state, the archive's records), its checks, and where it is kept (a directory,
//! or memory for simulations). See the module above for what a snapshot holds.

use crate::types::{LogId, NodeId, RotaNode, SnapshotData};
use openraft::SnapshotMeta;
use rota_state_machine::{record_hash, ArchiveKey, State};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where the latest snapshot lives.
#[derive(Debug)]
pub(super) enum SnapshotStore {
    /// `dir/current.snapshot`, replaced atomically.
    Dir(PathBuf),
    /// Kept in memory, for simulations.
    Memory(Mutex<Option<Vec<u8>>>),
}

pub(super) type Meta = SnapshotMeta<NodeId, RotaNode>;

pub(super) fn io_error(message: impl Into<String>) -> std::io::Error {
    std::io::Error::other(message.into())
}

/// What a checksummed snapshot with the archive starts with.
const MAGIC: &[u8; 8] = b"ROTASNP3";
/// What a checksummed snapshot from before the archive starts with.
const MAGIC_V2: &[u8; 8] = b"ROTASNP2";
/// What every checksummed snapshot's magic starts with; the last byte is its container
/// format.
const MAGIC_FAMILY: &[u8; 7] = b"ROTASNP";
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
        (None, None) => {
            newer_container(bytes)?;
            return Ok((bytes, false));
        }
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
pub(super) struct Parsed<'a> {
    pub(super) meta: Meta,
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

/// A snapshot whose magic names a container format after this build's is refused as such,
/// not read as a legacy snapshot (which has no magic) and reported damaged.
fn newer_container(bytes: &[u8]) -> Result<(), std::io::Error> {
    match bytes.strip_prefix(MAGIC_FAMILY.as_slice()) {
        Some([format, ..]) if *format > MAGIC[7] => Err(io_error(format!(
            "snapshot container format {} is newer than this rota reads (up to {}): run the rota that wrote it, or a newer one",
            char::from(*format),
            char::from(MAGIC[7])
        ))),
        Some([format, ..]) => Err(io_error(format!(
            "snapshot container format {} is not one rota wrote: damaged",
            char::from(*format)
        ))),
        _ => Ok(()),
    }
}

/// Splits snapshot bytes into the meta and the rest, after checking the checksum.
pub(super) fn parse(bytes: &[u8]) -> Result<Parsed<'_>, std::io::Error> {
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
pub(super) fn write_record(
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
pub(super) fn load<'a>(parsed: &Parsed<'a>) -> Result<(State, &'a [u8]), std::io::Error> {
    let (state, records) = match parsed.with_archive {
        true => State::restore_prefix(parsed.body),
        false => State::restore(parsed.body).map(|state| (state, &[][..])),
    }
    .map_err(|e| io_error(e.to_string()))?;
    check_records(&state, records)?;
    Ok((state, records))
}

pub(super) fn owned_records(
    bytes: &[u8],
) -> impl Iterator<Item = Result<(ArchiveKey, Vec<u8>), std::io::Error>> + '_ {
    records(bytes).map(|r| r.map(|(key, record)| (key, record.to_vec())))
}

/// Reads the meta from the head of a snapshot file and rewinds it.
pub(super) fn read_meta(file: &mut (impl Read + Seek)) -> Result<Meta, std::io::Error> {
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic)?;
    if magic != *MAGIC && magic != *MAGIC_V2 {
        newer_container(&magic)?;
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
pub(super) fn header(meta: &Meta) -> Result<Vec<u8>, std::io::Error> {
    let meta = postcard::to_stdvec(meta).map_err(|e| io_error(e.to_string()))?;
    let len = u32::try_from(meta.len()).map_err(|_| io_error("snapshot meta too large"))?;
    let mut bytes = Vec::with_capacity(4 + meta.len());
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(&meta);
    Ok(bytes)
}

/// The last log id of the snapshot kept, and a snapshot's own: saving compares them under
/// one lock, so the snapshot kept only ever moves forward.
pub(super) struct Newest {
    pub(super) kept: Arc<Mutex<Option<LogId>>>,
    pub(super) this: Option<LogId>,
}

impl Newest {
    /// Runs `keep` (which makes this snapshot the one kept) unless the one kept is newer.
    pub(super) fn replace(
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
    pub(super) fn current_path(dir: &Path) -> PathBuf {
        dir.join("current.snapshot")
    }

    /// Keeps `parts`, in order, as the latest snapshot: written to a temporary file of its
    /// own (a build and an install never share one), synced, renamed over the previous one,
    /// which stays until then. The parts are written in turn, never copied into one buffer.
    /// Never goes backwards: a snapshot older than the one kept (a build that an install
    /// overtook) is dropped, and `false` says so.
    pub(super) fn save(&self, parts: &[&[u8]], newest: &Newest) -> Result<bool, std::io::Error> {
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
    pub(super) fn save_with(
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
    pub(super) fn describe(&self) -> String {
        match self {
            SnapshotStore::Dir(dir) => Self::current_path(dir).display().to_string(),
            SnapshotStore::Memory(_) => "the in-memory snapshot".to_owned(),
        }
    }

    pub(super) fn load(&self) -> Result<Option<Vec<u8>>, std::io::Error> {
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

    /// A readable file holding the latest snapshot, positioned at its start: for backups
    /// and a peer's recovery. (An in-memory store writes a temporary file for it; openraft's
    /// own snapshot traffic goes through `open_data`, with no file.)
    pub(super) fn open(&self) -> Result<Option<std::fs::File>, std::io::Error> {
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

    /// The latest snapshot as openraft streams it, positioned at its start, with its meta
    /// and size in bytes.
    pub(super) fn open_data(&self) -> Result<Option<(Meta, u64, SnapshotData)>, std::io::Error> {
        match self {
            SnapshotStore::Dir(_) => {
                let Some(mut file) = self.open()? else {
                    return Ok(None);
                };
                let meta = read_meta(&mut file)?;
                let size = file.metadata()?.len();
                let data = SnapshotData::File(tokio::fs::File::from_std(file));
                Ok(Some((meta, size, data)))
            }
            SnapshotStore::Memory(_) => {
                let Some(bytes) = self.load()? else {
                    return Ok(None);
                };
                let size = bytes.len() as u64;
                let mut bytes = std::io::Cursor::new(bytes);
                let meta = read_meta(&mut bytes)?;
                Ok(Some((meta, size, SnapshotData::Memory(bytes))))
            }
        }
    }

    /// Somewhere to receive a snapshot into: a scratch file beside the kept one, or bytes.
    pub(super) fn scratch(&self) -> Result<SnapshotData, std::io::Error> {
        match self {
            SnapshotStore::Dir(dir) => Ok(SnapshotData::File(tokio::fs::File::from_std(
                tempfile::tempfile_in(dir)?,
            ))),
            SnapshotStore::Memory(_) => Ok(SnapshotData::Memory(std::io::Cursor::new(Vec::new()))),
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
pub(super) async fn offload<T: Send + 'static>(
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

/// What a checked snapshot holds, as a backup tool reports it.
#[derive(Clone, Debug)]
pub struct SnapshotSummary {
    /// The last log entry it covers.
    pub last_log_id: Option<LogId>,
    /// Its members: id, peer address, and whether a voter.
    pub members: Vec<(NodeId, String, bool)>,
    /// The scheduler's state digest (as `ClusterStatus` reports it).
    pub digest: String,
    /// Jobs in the scheduler's memory (archived ones not counted).
    pub jobs: usize,
    /// Records in its archive.
    pub archived: u64,
}

fn summary(meta: &Meta, state: &State) -> Result<SnapshotSummary, std::io::Error> {
    let membership = meta.last_membership.membership();
    let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
    Ok(SnapshotSummary {
        last_log_id: meta.last_log_id,
        members: membership
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone(), voters.contains(id)))
            .collect(),
        digest: state.digest().map_err(|e| io_error(e.to_string()))?,
        jobs: state.job_count(),
        archived: state.archive_stats().records,
    })
}

/// Checks snapshot `bytes` as a node starting from them would (checksum, header, state,
/// archive records against the book) and says what they hold.
pub fn inspect_snapshot(bytes: &[u8]) -> Result<SnapshotSummary, std::io::Error> {
    let parsed = parse(bytes)?;
    let (state, _) = load(&parsed)?;
    summary(&parsed.meta, &state)
}

/// Writes checked snapshot `bytes` as the snapshot in `dir`, its membership replaced by
/// `voters` (id → peer address): what a node seeded from a backup starts from. The state and
/// archive records are written again in the current format. Returns what it holds.
pub fn seed_snapshot(
    dir: &Path,
    bytes: &[u8],
    voters: &std::collections::BTreeMap<NodeId, String>,
) -> Result<SnapshotSummary, std::io::Error> {
    let parsed = parse(bytes)?;
    let (state, records) = load(&parsed)?;
    let nodes: std::collections::BTreeMap<NodeId, RotaNode> = voters
        .iter()
        .map(|(id, addr)| (*id, RotaNode { addr: addr.clone() }))
        .collect();
    let ids = nodes.keys().copied().collect();
    let membership = openraft::Membership::new(vec![ids], nodes);
    let meta = Meta {
        last_log_id: parsed.meta.last_log_id,
        last_membership: openraft::StoredMembership::new(
            *parsed.meta.last_membership.log_id(),
            membership,
        ),
        snapshot_id: format!("{}-restored", parsed.meta.snapshot_id),
    };
    let header = header(&meta)?;
    std::fs::create_dir_all(dir)?;
    let store = SnapshotStore::Dir(dir.to_path_buf());
    let newest = Newest {
        kept: Arc::default(),
        this: meta.last_log_id,
    };
    let frozen = state.freeze();
    store.save_with(&newest, |out| {
        out.write_all(&header)?;
        frozen
            .write_snapshot(&mut *out)
            .map_err(|e| io_error(e.to_string()))?;
        out.write_all(records)
    })?;
    summary(&meta, &state)
}
