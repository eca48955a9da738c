//! What the clients saw, in simulated time: every call that matters to the checker and its
//! answer. The history of a seed is a pure function of the seed, so its digest is too.

use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};

/// One client-visible event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An enqueue the cluster acknowledged.
    Enqueued {
        producer: String,
        tenant: String,
        key: String,
        job: u64,
        created: bool,
    },
    /// An enqueue that got no answer (it may or may not have been applied).
    EnqueueUnanswered { producer: String, key: String },
    /// A plan the cluster acknowledged: its steps' job ids in dependency order.
    PlanSubmitted { plan: u64, jobs: Vec<(String, u64)> },
    /// A lease the cluster granted; the call was sent at `asked_ms` (simulated time) and the
    /// lease lasts until `until_ms` (log time).
    Leased {
        worker: String,
        job: u64,
        lease: u64,
        attempt: u32,
        until_ms: u64,
        asked_ms: u64,
    },
    /// A heartbeat the cluster accepted, sent at `asked_ms`: the lease now lasts until
    /// `until_ms` (log time).
    Extended {
        worker: String,
        job: u64,
        lease: u64,
        until_ms: u64,
        asked_ms: u64,
    },
    /// A completion the cluster accepted, with the job's status after it.
    Completed {
        worker: String,
        job: u64,
        lease: u64,
        succeeded: bool,
        status: i32,
    },
    /// A completion the cluster refused, with the error kind.
    CompletionRefused {
        worker: String,
        job: u64,
        lease: u64,
        kind: String,
    },
    /// The operator's `SetMaintenance` the cluster acknowledged, sent at `asked_ms`.
    Maintenance { on: bool, asked_ms: u64 },
    /// The operator's `max_active` quota for a tenant the cluster acknowledged, sent at
    /// `asked_ms`.
    QuotaSet {
        tenant: String,
        max_active: u32,
        asked_ms: u64,
    },
    /// The operator's cancel of a job the cluster acknowledged.
    CancelAcknowledged { job: u64 },
    /// The operator's `AddNode` the cluster acknowledged (the node is a learner, and is
    /// promoted once it has caught up).
    NodeAdded { node: u64 },
    /// The operator saw the added node become a voter.
    NodePromoted { node: u64 },
    /// The operator's `RemoveNode` the cluster acknowledged.
    NodeRemoved { node: u64 },
    /// A fault the nemesis injected or healed.
    Fault(String),
}

/// Simulated time now, in ms since the run began (what records are stamped with).
pub fn now_ms() -> u64 {
    turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64
}

/// An event at a simulated time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub at_ms: u64,
    pub event: Event,
}

/// The shared log every simulated client appends to.
#[derive(Clone, Debug, Default)]
pub struct History {
    records: Arc<Mutex<Vec<Record>>>,
}

impl History {
    /// A history made of `records` (for checker tests).
    pub fn from_records(records: Vec<Record>) -> Self {
        Self {
            records: Arc::new(Mutex::new(records)),
        }
    }

    /// Appends `event` at the current simulated time.
    pub fn record(&self, event: Event) {
        let at_ms = now_ms();
        if let Ok(mut records) = self.records.lock() {
            records.push(Record { at_ms, event });
        }
    }

    /// Appends `event` at `at_ms` (for the nemesis, which runs outside any host).
    pub fn record_at(&self, at_ms: u64, event: Event) {
        if let Ok(mut records) = self.records.lock() {
            records.push(Record { at_ms, event });
        }
    }

    /// Everything recorded so far.
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// sha256 over every record's text: equal digests mean byte-identical histories.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        for record in self.records() {
            hasher.update(format!("{record:?}\n").as_bytes());
        }
        hex::encode(hasher.finalize())
    }
}
