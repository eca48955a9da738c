//! The scheduler's invariants, stated once and checked by tests, property tests and
//! simulations after every step.

use crate::archive::ArchiveKind;
use crate::ids::{IncidentId, JobId, LeaseId, PlanId};
use crate::job::{JobState, Status};
use crate::ledger::{Indexes, State};
use std::collections::BTreeSet;

impl State {
    /// Checks every invariant; the error names the first one broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.check_indexes()?;
        let ledger = &self.ledger;
        if let Some(job) = ledger
            .traces
            .keys()
            .find(|id| !ledger.jobs.contains_key(id))
        {
            return Err(format!("{job} keeps trace context but is not in memory"));
        }
        if let Some(incident) = ledger
            .incident_acks
            .keys()
            .find(|id| !ledger.incidents.contains_key(id))
        {
            return Err(format!("{incident} is acknowledged but not in memory"));
        }
        let mut live_leases = BTreeSet::new();
        let mut created_ms = 0;
        for (id, job) in &ledger.jobs {
            // Listings turn a time window into an id range on this.
            if job.created_ms < created_ms {
                return Err(format!("{id} was created before the job ahead of it"));
            }
            created_ms = job.created_ms;
            if job.id != *id || id.0 >= ledger.next_job_id {
                return Err(format!(
                    "{id} is filed under the wrong id or beyond the id counter"
                ));
            }
            let mut last = LeaseId(0);
            for attempt in &job.attempts {
                if attempt.lease_id <= last || attempt.lease_id.0 > ledger.last_lease_id {
                    return Err(format!(
                        "{id}: fencing tokens of its attempts do not increase"
                    ));
                }
                last = attempt.lease_id;
            }
            let open = job.attempts.iter().filter(|a| a.ended_ms.is_none()).count();
            match &job.state {
                JobState::Leased { lease } => {
                    if !live_leases.insert(lease.id) {
                        return Err(format!("{} is live on two jobs", lease.id));
                    }
                    let latest = job.attempts.last().map(|a| a.lease_id);
                    if open != 1 || latest != Some(lease.id) {
                        return Err(format!("{id}: its lease is not its one open attempt"));
                    }
                }
                JobState::Pending { unmet, .. } => {
                    for dep in unmet {
                        let status = ledger.jobs.get(dep).map(|d| d.status());
                        if !matches!(
                            status,
                            Some(Status::Pending | Status::Ready | Status::Leased | Status::Failed)
                        ) {
                            return Err(format!("{id} waits on {dep}, which is {status:?}"));
                        }
                    }
                    if open != 0 {
                        return Err(format!("{id} is pending with an open attempt"));
                    }
                }
                _ if open != 0 => {
                    return Err(format!("{id} is not leased but has an open attempt"))
                }
                _ => {}
            }
            if job.counted_attempts() > job.spec.retry.max_attempts
                && job.origin.replay_of.is_none()
            {
                return Err(format!("{id} made more attempts than its policy allows"));
            }
            if job
                .history
                .windows(2)
                .any(|w| w[0].log_index > w[1].log_index)
            {
                return Err(format!("{id}: its history is not in log order"));
            }
        }
        Ok(())
    }

    /// The indexes equal a rebuild from the ledger: every job is in exactly one state's index
    /// and every count agrees with the job table.
    fn check_indexes(&self) -> Result<(), String> {
        let rebuilt = Indexes::rebuild(&self.ledger);
        let idx = &self.idx;
        let checks: [(&str, bool); 17] = [
            ("ready", idx.ready == rebuilt.ready),
            ("by_status", idx.by_status == rebuilt.by_status),
            ("status_counts", idx.status_counts == rebuilt.status_counts),
            ("by_tenant", idx.by_tenant == rebuilt.by_tenant),
            ("by_type", idx.by_type == rebuilt.by_type),
            ("artifacts", idx.artifacts == rebuilt.artifacts),
            ("idempotency", idx.idempotency == rebuilt.idempotency),
            ("dependents", idx.dependents == rebuilt.dependents),
            ("timers", idx.timers == rebuilt.timers),
            ("lease_expiry", idx.lease_expiry == rebuilt.lease_expiry),
            ("active", idx.active == rebuilt.active),
            ("depth", idx.depth == rebuilt.depth),
            ("schedule_due", idx.schedule_due == rebuilt.schedule_due),
            (
                "session_expiry",
                idx.session_expiry == rebuilt.session_expiry,
            ),
            ("finished", idx.finished == rebuilt.finished),
            (
                "archive_expiry",
                idx.archive_expiry == rebuilt.archive_expiry,
            ),
            ("archived_keys", idx.archived_keys == rebuilt.archived_keys),
        ];
        if let Some((name, _)) = checks.iter().find(|(_, ok)| !ok) {
            return Err(format!("index {name} disagrees with the job table"));
        }
        if idx.by_status.len() != self.ledger.jobs.len() {
            return Err("a job is missing from the status index, or is there twice".to_owned());
        }
        self.check_archive()
    }

    /// The book adds up, and nothing is both in memory and in the archive.
    fn check_archive(&self) -> Result<(), String> {
        let retained = &self.ledger.retained;
        let bytes: u64 = retained.book.values().map(|e| e.bytes).sum();
        if bytes != retained.archive_bytes {
            return Err(format!(
                "the archive's size {} is not the sum of its records, {bytes}",
                retained.archive_bytes
            ));
        }
        for (key, entry) in &retained.book {
            let in_memory = match key.kind {
                ArchiveKind::Job => self.ledger.jobs.contains_key(&JobId(key.id)),
                ArchiveKind::Plan => self.ledger.plans.contains_key(&PlanId(key.id)),
                ArchiveKind::Incident => self.ledger.incidents.contains_key(&IncidentId(key.id)),
                ArchiveKind::Governance => key.id >= retained.governance_archived,
            };
            if in_memory {
                return Err(format!("{key:?} is both in memory and in the archive"));
            }
            if (key.kind == ArchiveKind::Job) != entry.status.is_some() {
                return Err(format!("{key:?}: a status is kept for jobs, and only jobs"));
            }
        }
        Ok(())
    }
}
