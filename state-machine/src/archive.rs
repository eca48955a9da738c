//! Eviction and the archive's book.
//!
//! Finished jobs, plans whose jobs have all left, resolved incidents and old governance
//! events leave memory when their retention window has passed, in log time. Each becomes a
//! record (`Archived`, postcard) that the store keeps on disk under its `ArchiveKey`; the
//! state machine does no IO, so it hands the store `ArchiveOp`s to carry out
//! (`State::take_archive_ops`) and keeps only the book: per record its key, when it was
//! archived, a job's final status and idempotency key, and a hash of its bytes. The book is
//! part of the ledger, so snapshots and the digest cover what the archive holds, and an
//! idempotency key keeps deduplicating until its job leaves the archive too.

use crate::governance::{GovernanceEvent, Incident};
use crate::ids::{JobId, PlanId, TenantId};
use crate::job::{Job, JobState, Status};
use crate::ledger::{At, State};
use crate::plan::Plan;
use crate::retention::Retention;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How often (in log time) plans, incidents and the governance history are swept for
/// what has left its window. Jobs are evicted at every command, from an ordered index.
pub const SWEEP_EVERY_MS: u64 = 60_000;

/// The most jobs one command evicts, and the most records it drops from the archive: a
/// window shortened by much evicts over the following ticks (`next_due_ms` keeps them
/// coming), never in one long apply.
pub const MAX_RETIRED_PER_COMMAND: usize = 10_000;

/// What an archived record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ArchiveKind {
    /// A finished job.
    Job,
    /// A plan whose jobs have all left memory.
    Plan,
    /// A resolved incident.
    Incident,
    /// A governance event, numbered from 0 in the order of the history.
    Governance,
}

impl ArchiveKind {
    fn tag(self) -> u8 {
        match self {
            ArchiveKind::Job => b'j',
            ArchiveKind::Plan => b'p',
            ArchiveKind::Incident => b'i',
            ArchiveKind::Governance => b'g',
        }
    }
}

/// A record's name in the archive: its kind and its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ArchiveKey {
    /// What the record is.
    pub kind: ArchiveKind,
    /// The job, plan or incident id, or the governance event's number.
    pub id: u64,
}

impl ArchiveKey {
    /// The length of `to_bytes`.
    pub const LEN: usize = 9;

    /// A job's key.
    pub fn job(id: JobId) -> Self {
        Self {
            kind: ArchiveKind::Job,
            id: id.0,
        }
    }

    /// A plan's key.
    pub fn plan(id: PlanId) -> Self {
        Self {
            kind: ArchiveKind::Plan,
            id: id.0,
        }
    }

    /// The key as the store files it: a kind tag, then the id big-endian, so records of
    /// one kind are contiguous and in id order.
    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let mut bytes = [0u8; Self::LEN];
        bytes[0] = self.kind.tag();
        bytes[1..].copy_from_slice(&self.id.to_be_bytes());
        bytes
    }

    /// Parses `to_bytes`; `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&tag, id) = bytes.split_first()?;
        let kind = [
            ArchiveKind::Job,
            ArchiveKind::Plan,
            ArchiveKind::Incident,
            ArchiveKind::Governance,
        ]
        .into_iter()
        .find(|k| k.tag() == tag)?;
        Some(Self {
            kind,
            id: u64::from_be_bytes(id.try_into().ok()?),
        })
    }
}

/// What the book knows of one archived record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookEntry {
    /// Log time it was archived; it leaves the archive `archive_ms` later.
    pub archived_ms: u64,
    /// A job's final status (dependencies and plans still need it); `None` otherwise.
    pub status: Option<Status>,
    /// A job's (tenant, idempotency key), which keeps deduplicating while it is archived.
    pub idempotency: Option<(TenantId, String)>,
    /// The record's size in bytes.
    pub bytes: u64,
    /// The first 8 bytes of the record's sha256: the digest covers the archive's contents,
    /// and a record read back can be checked against it.
    pub hash: u64,
}

/// The first 8 bytes of `record`'s sha256.
pub fn record_hash(record: &[u8]) -> u64 {
    let digest = Sha256::digest(record);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// An archived record, as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Archived {
    /// Log time it was archived.
    pub archived_ms: u64,
    /// What was archived.
    pub item: ArchivedItem,
}

/// What an archived record holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArchivedItem {
    /// A finished job, whole.
    Job(Box<Job>),
    /// A plan; its steps' jobs are archived under their own keys.
    Plan(Plan),
    /// A resolved incident.
    Incident(Incident),
    /// A governance event.
    Governance(GovernanceEvent),
}

/// `ArchivedItem` by reference: encodes to the same bytes without cloning the item.
#[derive(Serialize)]
enum ItemRef<'a> {
    Job(&'a Job),
    Plan(&'a Plan),
    Incident(&'a Incident),
    Governance(&'a GovernanceEvent),
}

impl Archived {
    /// Decodes a record the store read back.
    pub fn decode(bytes: &[u8]) -> Result<Archived, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

fn encode(archived_ms: u64, item: ItemRef<'_>) -> Vec<u8> {
    // Encoding plain data into a Vec cannot fail: postcard fails only on a full buffer or
    // on types serde cannot describe, and these are neither.
    postcard::to_stdvec(&(archived_ms, item)).expect("an archived record encodes")
}

/// What the store must do to its archive after a command, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchiveOp {
    /// Keep `record` under `key`.
    Put {
        /// The record's key.
        key: ArchiveKey,
        /// The encoded `Archived`.
        record: Vec<u8>,
    },
    /// The record under `key` has passed its archive retention: drop it.
    Delete {
        /// The record's key.
        key: ArchiveKey,
    },
}

/// The archive's size, for `cluster status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    /// Records archived and not yet dropped.
    pub records: u64,
    /// Their encoded size in bytes.
    pub bytes: u64,
}

/// The replicated part of retention: the windows, the book and the sweep's clock. Kept in
/// the ledger, encoded after it in snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Retained {
    /// `None` until a `SetRetention` is applied (see `State::retention`).
    pub retention: Option<Retention>,
    /// Every record the archive holds. A persistent map, so a snapshot's freeze is cheap.
    pub book: imbl::OrdMap<ArchiveKey, BookEntry>,
    /// Sum of the book's record sizes.
    pub archive_bytes: u64,
    /// Governance events archived so far; the next one archived gets this number.
    pub governance_archived: u64,
    /// Log time of the next sweep of plans, incidents and the governance history.
    pub next_sweep_ms: u64,
}

/// The log time a terminal job finished, from its state.
pub(crate) fn ended_ms(state: &JobState) -> Option<u64> {
    match state {
        JobState::Succeeded { at_ms }
        | JobState::DeadLettered { at_ms, .. }
        | JobState::Canceled { at_ms, .. } => Some(*at_ms),
        _ => None,
    }
}

impl State {
    /// Evicts what retention has made due and drops what has outlived the archive.
    pub(crate) fn retire(&mut self, at: At) {
        let Some(retention) = self.ledger.retained.retention else {
            return;
        };
        let mut budget = MAX_RETIRED_PER_COMMAND;
        for (status, window) in [
            (Status::Succeeded, retention.succeeded_ms),
            (Status::Canceled, retention.canceled_ms),
            (Status::DeadLettered, retention.dead_lettered_ms),
        ] {
            while let Some(&(s, ended, id)) =
                self.idx.finished.range((status, 0, JobId(0))..).next()
            {
                if s != status || ended.saturating_add(window) > at.now_ms || budget == 0 {
                    break;
                }
                budget -= 1;
                self.archive_job(id, at);
            }
        }
        if at.now_ms >= self.ledger.retained.next_sweep_ms {
            self.ledger.retained.next_sweep_ms = at.now_ms.saturating_add(SWEEP_EVERY_MS);
            self.sweep_history(at, retention.history_ms);
        }
        let mut budget = MAX_RETIRED_PER_COMMAND;
        while let Some(&(archived, key)) = self.idx.archive_expiry.first() {
            if archived.saturating_add(retention.archive_ms) > at.now_ms || budget == 0 {
                break;
            }
            budget -= 1;
            self.drop_archived(key);
        }
    }

    /// The earliest log time at which retention has something to do: a finished job's
    /// window ends, an archived record's ends, or a sweep is due with something in memory
    /// it could move.
    pub(crate) fn next_retire_ms(&self) -> Option<u64> {
        let retention = self.ledger.retained.retention.as_ref()?;
        let job = |status: Status, window: u64| {
            let (s, ended, _) = self.idx.finished.range((status, 0, JobId(0))..).next()?;
            (*s == status).then(|| ended.saturating_add(window))
        };
        let sweep = self.ledger.retained.next_sweep_ms;
        let history = self
            .ledger
            .governance
            .first()
            .map(|e| e.at_ms)
            .into_iter()
            .chain(
                self.ledger
                    .incidents
                    .values()
                    .filter_map(|i| i.resolved.as_ref().map(|(t, _)| *t)),
            )
            .min()
            .map(|t| t.saturating_add(retention.history_ms).max(sweep));
        let plans = (!self.ledger.plans.is_empty()).then_some(sweep);
        [
            job(Status::Succeeded, retention.succeeded_ms),
            job(Status::Canceled, retention.canceled_ms),
            job(Status::DeadLettered, retention.dead_lettered_ms),
            self.idx
                .archive_expiry
                .first()
                .map(|(t, _)| t.saturating_add(retention.archive_ms)),
            history,
            plans,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn archive_job(&mut self, id: JobId, at: At) {
        self.ledger.traces.remove(&id);
        let Some(job) = self.ledger.jobs.remove(&id) else {
            // Only the index named it; the invariants would catch how.
            self.idx.finished.retain(|&(_, _, j)| j != id);
            return;
        };
        self.idx.remove(&job);
        self.idx.remove_created(&job);
        let record = encode(at.now_ms, ItemRef::Job(&job));
        let idempotency = job
            .spec
            .idempotency_key
            .as_ref()
            .map(|key| (job.spec.tenant.clone(), key.clone()));
        self.put_archived(
            ArchiveKey::job(id),
            record,
            Some(job.status()),
            idempotency,
            at,
        );
    }

    /// Plans whose jobs have all left memory, incidents resolved longer ago than the
    /// history window, and governance events older than it.
    fn sweep_history(&mut self, at: At, window: u64) {
        let plans: Vec<PlanId> = self
            .ledger
            .plans
            .values()
            .filter(|plan| {
                plan.steps
                    .iter()
                    .all(|(_, job)| !self.ledger.jobs.contains_key(job))
            })
            .map(|plan| plan.id)
            .collect();
        for id in plans {
            if let Some(plan) = self.ledger.plans.remove(&id) {
                let record = encode(at.now_ms, ItemRef::Plan(&plan));
                self.put_archived(ArchiveKey::plan(id), record, None, None, at);
            }
        }
        let due = |t: u64| t.saturating_add(window) <= at.now_ms;
        let incidents: Vec<_> = self
            .ledger
            .incidents
            .values()
            .filter(|i| i.resolved.as_ref().is_some_and(|(t, _)| due(*t)))
            .map(|i| i.id)
            .collect();
        for id in incidents {
            if let Some(incident) = self.ledger.incidents.remove(&id) {
                self.ledger.incident_acks.remove(&id);
                let record = encode(at.now_ms, ItemRef::Incident(&incident));
                let key = ArchiveKey {
                    kind: ArchiveKind::Incident,
                    id: id.0,
                };
                self.put_archived(key, record, None, None, at);
            }
        }
        let old = self
            .ledger
            .governance
            .iter()
            .take_while(|e| due(e.at_ms))
            .count();
        let events: Vec<GovernanceEvent> = self.ledger.governance.drain(..old).collect();
        for event in events {
            let key = ArchiveKey {
                kind: ArchiveKind::Governance,
                id: self.ledger.retained.governance_archived,
            };
            self.ledger.retained.governance_archived += 1;
            let record = encode(at.now_ms, ItemRef::Governance(&event));
            self.put_archived(key, record, None, None, at);
        }
    }

    fn put_archived(
        &mut self,
        key: ArchiveKey,
        record: Vec<u8>,
        status: Option<Status>,
        idempotency: Option<(TenantId, String)>,
        at: At,
    ) {
        let entry = BookEntry {
            archived_ms: at.now_ms,
            status,
            idempotency,
            bytes: record.len() as u64,
            hash: record_hash(&record),
        };
        if let Some(old) = self.ledger.retained.book.get(&key).cloned() {
            // A key is archived once; should it come again, the book still adds up.
            self.forget_archived(key, &old);
        }
        self.idx.add_archived(key, &entry);
        self.ledger.retained.archive_bytes += entry.bytes;
        self.ledger.retained.book.insert(key, entry);
        self.archive_ops.push(ArchiveOp::Put { key, record });
    }

    fn drop_archived(&mut self, key: ArchiveKey) {
        if let Some(entry) = self.ledger.retained.book.get(&key).cloned() {
            self.forget_archived(key, &entry);
        } else {
            self.idx.archive_expiry.retain(|&(_, k)| k != key);
        }
        self.archive_ops.push(ArchiveOp::Delete { key });
    }

    fn forget_archived(&mut self, key: ArchiveKey, entry: &BookEntry) {
        self.idx.remove_archived(key, entry);
        self.ledger.retained.archive_bytes = self
            .ledger
            .retained
            .archive_bytes
            .saturating_sub(entry.bytes);
        self.ledger.retained.book.remove(&key);
    }

    /// What the store must do to its archive since the last call, in order. The store
    /// carries them out before the next command's answer is read.
    pub fn take_archive_ops(&mut self) -> Vec<ArchiveOp> {
        std::mem::take(&mut self.archive_ops)
    }

    /// What the book knows of an archived record, if the archive holds it.
    pub fn archived(&self, key: ArchiveKey) -> Option<&BookEntry> {
        self.ledger.retained.book.get(&key)
    }

    /// The archive's book entries of `kind`, by key.
    pub fn archived_entries(
        &self,
        kind: ArchiveKind,
    ) -> impl Iterator<Item = (ArchiveKey, &BookEntry)> {
        let from = ArchiveKey { kind, id: 0 };
        let to = ArchiveKey { kind, id: u64::MAX };
        self.ledger
            .retained
            .book
            .range(from..=to)
            .map(|(key, entry)| (*key, entry))
    }

    /// The archive's size.
    pub fn archive_stats(&self) -> ArchiveStats {
        ArchiveStats {
            records: self.ledger.retained.book.len() as u64,
            bytes: self.ledger.retained.archive_bytes,
        }
    }

    /// Governance events archived so far: the in-memory history's first event is this
    /// number in the whole history.
    pub fn governance_archived(&self) -> u64 {
        self.ledger.retained.governance_archived
    }
}
