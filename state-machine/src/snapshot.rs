//! Snapshots as compact binary (postcard), restore, and the state digest replicas compare.

use crate::access::Access;
use crate::archive::{ArchiveKey, BookEntry, Retained};
use crate::ledger::{Indexes, Ledger, State};

/// The jobs' trace contexts as a snapshot encodes them.
type Traces = imbl::OrdMap<crate::ids::JobId, std::sync::Arc<str>>;
/// The blocked tenants as a snapshot encodes them.
type Blocked = std::collections::BTreeMap<crate::ids::TenantId, crate::governance::Stamp>;
/// The incidents' acknowledgements as a snapshot encodes them.
type Acks = std::collections::BTreeMap<crate::ids::IncidentId, (u64, crate::governance::Stamp)>;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The snapshot format's version, its first byte. Version 2 adds the retention windows
/// and the archive's book after the ledger, version 3 the tokens after those, version 4 the
/// jobs' trace contexts after those, version 5 the incidents' acknowledgements after
/// those, version 6 the cluster's id after those, version 7 the blocked tenants after that;
/// earlier versions still read (with none of what they lack).
pub const SNAPSHOT_VERSION: u8 = 7;

/// A snapshot could not be written or read.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// No bytes at all, not even the version byte.
    #[error("snapshot is empty")]
    Empty,
    /// Written by a build with another snapshot format; this build cannot read it.
    #[error("snapshot format version {0} is not supported (this build reads {SNAPSHOT_VERSION})")]
    UnsupportedVersion(u8),
    /// Written by a newer build: upgrade before reading it.
    #[error("snapshot format version {0} is newer than this rota reads (up to {SNAPSHOT_VERSION}): run the rota that wrote it, or a newer one")]
    NewerVersion(u8),
    /// The bytes do not decode as a ledger (or the ledger could not be encoded).
    #[error("snapshot is corrupt: {0}")]
    Corrupt(#[from] postcard::Error),
    /// The ledger decoded, and bytes were left over after it.
    #[error("snapshot is corrupt: {0} bytes follow the state")]
    Trailing(usize),
}

fn encode(ledger: &Ledger) -> Result<Vec<u8>, SnapshotError> {
    Ok(postcard::to_extend(
        &(
            SNAPSHOT_VERSION,
            ledger,
            &ledger.retained,
            &ledger.access,
            &ledger.traces,
            &ledger.incident_acks,
            &ledger.cluster_id,
            &ledger.blocked,
        ),
        Vec::new(),
    )?)
}

fn write<W: std::io::Write>(ledger: &Ledger, out: W) -> Result<W, SnapshotError> {
    // A u8 is one raw byte in postcard, so this starts with the version byte.
    Ok(postcard::to_io(
        &(
            SNAPSHOT_VERSION,
            ledger,
            &ledger.retained,
            &ledger.access,
            &ledger.traces,
            &ledger.incident_acks,
            &ledger.cluster_id,
            &ledger.blocked,
        ),
        out,
    )?)
}

fn digest(ledger: &Ledger) -> Result<String, SnapshotError> {
    let hasher = write(ledger, HashWriter(Sha256::new()))?;
    Ok(hex::encode(hasher.0.finalize()))
}

/// The ledger as of one moment, taken in microseconds whatever its size (the job map is
/// shared, not copied), so a snapshot or digest can be written from it while `apply`
/// goes on.
#[derive(Clone, Debug)]
pub struct Frozen(Ledger);

impl Frozen {
    /// As `State::snapshot` at the moment of freezing.
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        encode(&self.0)
    }

    /// As `State::digest` at the moment of freezing.
    pub fn digest(&self) -> Result<String, SnapshotError> {
        digest(&self.0)
    }

    /// As `State::write_snapshot` at the moment of freezing: streamed to `out`, never held
    /// whole in memory.
    pub fn write_snapshot<W: std::io::Write>(&self, out: W) -> Result<W, SnapshotError> {
        write(&self.0, out)
    }

    /// Every record the archive held at the moment of freezing, in key order (what a
    /// snapshot must carry besides the ledger), the rest of the frozen ledger let go. While a frozen ledger
    /// is held, every job that `apply` changes is copied (the snapshot still shares it): a
    /// snapshot build that keeps only the book once the ledger is written stops making
    /// copies for the seconds it streams the archive's records.
    pub fn into_archive_book(self) -> impl Iterator<Item = (ArchiveKey, BookEntry)> {
        self.0.retained.book.into_iter()
    }
}

impl State {
    /// A cheap copy of the replicated part of the state, for writing out elsewhere.
    pub fn freeze(&self) -> Frozen {
        Frozen(self.ledger.clone())
    }

    /// The ledger as bytes: a version byte, then postcard. Indexes are rebuilt on restore.
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        encode(&self.ledger)
    }

    /// Writes the snapshot to `out` without holding it whole in memory.
    pub fn write_snapshot<W: std::io::Write>(&self, out: W) -> Result<W, SnapshotError> {
        write(&self.ledger, out)
    }

    /// Rebuilds a state from `snapshot` bytes.
    pub fn restore(bytes: &[u8]) -> Result<State, SnapshotError> {
        let (state, rest) = State::restore_prefix(bytes)?;
        if !rest.is_empty() {
            return Err(SnapshotError::Trailing(rest.len()));
        }
        Ok(state)
    }

    /// Rebuilds a state from the snapshot at the start of `bytes` (the encoding knows where
    /// it ends) and returns what follows it.
    pub fn restore_prefix(bytes: &[u8]) -> Result<(State, &[u8]), SnapshotError> {
        let (&version, body) = bytes.split_first().ok_or(SnapshotError::Empty)?;
        let (ledger, rest) = match version {
            1 => postcard::take_from_bytes::<Ledger>(body)?,
            2 => {
                let ((mut ledger, retained), rest) =
                    postcard::take_from_bytes::<(Ledger, Retained)>(body)?;
                ledger.retained = retained;
                (ledger, rest)
            }
            3 => {
                let ((mut ledger, retained, access), rest) =
                    postcard::take_from_bytes::<(Ledger, Retained, Access)>(body)?;
                ledger.retained = retained;
                ledger.access = access;
                (ledger, rest)
            }
            4 => {
                let ((mut ledger, retained, access, traces), rest) =
                    postcard::take_from_bytes::<(Ledger, Retained, Access, Traces)>(body)?;
                ledger.retained = retained;
                ledger.access = access;
                ledger.traces = traces;
                (ledger, rest)
            }
            5 => {
                let ((mut ledger, retained, access, traces, acks), rest) =
                    postcard::take_from_bytes::<(Ledger, Retained, Access, Traces, Acks)>(body)?;
                ledger.retained = retained;
                ledger.access = access;
                ledger.traces = traces;
                ledger.incident_acks = acks;
                (ledger, rest)
            }
            6 => {
                let ((mut ledger, retained, access, traces, acks, cluster_id), rest) =
                    postcard::take_from_bytes::<(
                        Ledger,
                        Retained,
                        Access,
                        Traces,
                        Acks,
                        Option<String>,
                    )>(body)?;
                ledger.retained = retained;
                ledger.access = access;
                ledger.traces = traces;
                ledger.incident_acks = acks;
                ledger.cluster_id = cluster_id;
                (ledger, rest)
            }
            SNAPSHOT_VERSION => {
                let ((mut ledger, retained, access, traces, acks, cluster_id, blocked), rest) =
                    postcard::take_from_bytes::<(
                        Ledger,
                        Retained,
                        Access,
                        Traces,
                        Acks,
                        Option<String>,
                        Blocked,
                    )>(body)?;
                ledger.retained = retained;
                ledger.access = access;
                ledger.traces = traces;
                ledger.incident_acks = acks;
                ledger.cluster_id = cluster_id;
                ledger.blocked = blocked;
                (ledger, rest)
            }
            newer if newer > SNAPSHOT_VERSION => return Err(SnapshotError::NewerVersion(newer)),
            _ => return Err(SnapshotError::UnsupportedVersion(version)),
        };
        let idx = Indexes::rebuild(&ledger);
        let state = State {
            ledger,
            idx,
            #[cfg(feature = "simulation")]
            fencing_disabled: false,
            archive_ops: Vec::new(),
            journal: None,
        };
        Ok((state, rest))
    }

    /// sha256 of the snapshot, in hex: equal on every replica at the same applied index.
    pub fn digest(&self) -> Result<String, SnapshotError> {
        digest(&self.ledger)
    }
}

struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_4_snapshot_still_reads_with_no_acknowledgements() {
        let ledger = Ledger {
            now_ms: 1_234,
            ..Ledger::default()
        };
        let v4 = postcard::to_extend(
            &(
                4u8,
                &ledger,
                &ledger.retained,
                &ledger.access,
                &ledger.traces,
            ),
            Vec::new(),
        )
        .unwrap();
        let state = State::restore(&v4).unwrap();
        assert_eq!(state.now_ms(), 1_234);
        assert!(state.ledger.incident_acks.is_empty());
        // Written again, it is the current version, and reads back the same.
        let again = state.snapshot().unwrap();
        assert_eq!(again[0], SNAPSHOT_VERSION);
        assert_eq!(
            State::restore(&again).unwrap().digest().unwrap(),
            state.digest().unwrap()
        );
    }

    #[test]
    fn a_version_5_snapshot_still_reads_with_no_cluster_id_and_a_name_then_sticks() {
        let mut ledger = Ledger {
            now_ms: 1_234,
            ..Ledger::default()
        };
        ledger.incident_acks.insert(
            crate::ids::IncidentId(3),
            (
                1_000,
                crate::governance::Stamp {
                    actor: "ops".to_owned(),
                    reason: "on it".to_owned(),
                    ticket: None,
                },
            ),
        );
        let v5 = postcard::to_extend(
            &(
                5u8,
                &ledger,
                &ledger.retained,
                &ledger.access,
                &ledger.traces,
                &ledger.incident_acks,
            ),
            Vec::new(),
        )
        .unwrap();
        let mut state = State::restore(&v5).unwrap();
        assert_eq!(state.ledger.incident_acks.len(), 1);
        assert_eq!(state.cluster_id(), None);

        let first = "0123456789abcdef0123456789abcdef".to_owned();
        let second = "fedcba9876543210fedcba9876543210".to_owned();
        let named = state.apply(crate::Command::NameCluster { id: first.clone() }, 2_000, 7);
        assert!(named.is_ok(), "{named:?}");
        let renamed = state.apply(crate::Command::NameCluster { id: second }, 2_000, 8);
        assert!(renamed.is_ok(), "{renamed:?}");
        assert_eq!(
            state.cluster_id(),
            Some(first.as_str()),
            "the first name stands"
        );
        let bad = state.apply(
            crate::Command::NameCluster {
                id: "Not-Hex".to_owned(),
            },
            2_000,
            9,
        );
        assert!(bad.is_err(), "{bad:?}");

        let current = state.snapshot().unwrap();
        assert_eq!(current[0], SNAPSHOT_VERSION);
        let restored = State::restore(&current).unwrap();
        assert_eq!(restored.cluster_id(), Some(first.as_str()));
        assert_eq!(restored.digest().unwrap(), state.digest().unwrap());
    }
}
