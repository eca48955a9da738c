//! The audit at the end of a run: the ledger read back and compared, sequence number by
//! sequence number, with what producers and workers were told.

use super::phases::Run;
use super::tally::read_payload;
use super::{client_for, TENANT};
use crate::BenchError;
use rota_client::proto as pb;
use std::sync::atomic::Ordering;

/// What the audit found.
pub(super) struct Audit {
    /// Jobs whose enqueue was never acknowledged, or that did not end succeeded.
    pub(super) lost: u64,
    /// Jobs enqueued twice, or completed successfully more than once.
    pub(super) duplicated: u64,
}

/// What the ledger holds of one run.
struct Ledger {
    /// Per sequence number: how many jobs in the ledger carry it.
    seen: Vec<u8>,
    /// Jobs of the run that did not end succeeded.
    not_succeeded: u64,
}

impl Run<'_> {
    /// Reads the ledger back and compares it with the tallies; counts an error for every
    /// job or sequence number that is off.
    pub(super) async fn audit(&self) -> Result<Audit, BenchError> {
        let ledger = self.read_ledger().await?;
        Ok(self.compare(&ledger))
    }

    /// Lists every job of the run's job types.
    async fn read_ledger(&self) -> Result<Ledger, BenchError> {
        let checker = client_for(self.endpoints, 0)?;
        let mut ledger = Ledger {
            seen: vec![0u8; 2 * self.config.jobs as usize],
            not_succeeded: 0,
        };
        let mut types = vec![self.cycle_type.clone()];
        if self.config.enqueue_phase {
            types.push(self.fill_type.clone());
        }
        for job_type in types {
            let jobs = checker
                .list_all_jobs(pb::ListJobsRequest {
                    job_type: Some(job_type),
                    tenant: Some(TENANT.to_owned()),
                    limit: 1_000,
                    summary: true,
                    ..pb::ListJobsRequest::default()
                })
                .await
                .map_err(|source| BenchError::Call {
                    call: "reading the ledger back",
                    source,
                })?;
            for job in jobs {
                self.count(&mut ledger, &job);
            }
        }
        Ok(ledger)
    }

    /// Counts one job of the ledger against its sequence number.
    fn count(&self, ledger: &mut Ledger, job: &pb::Job) {
        let seq = job
            .spec
            .as_ref()
            .and_then(|s| read_payload(&s.payload))
            .map(|(seq, _)| seq as usize);
        let seen = &mut ledger.seen;
        match seq {
            Some(seq) if seq < seen.len() => seen[seq] = seen[seq].saturating_add(1),
            _ => self
                .tally
                .error(format!("job {} has a payload that is not ours", job.id)),
        }
        if job.status != pb::JobStatus::Succeeded as i32 {
            ledger.not_succeeded += 1;
            self.tally
                .error(format!("job {} ended with status {}", job.id, job.status));
        }
    }

    /// Each sequence number of the phases that ran must be in the ledger once, its enqueue
    /// answered, and its success acknowledged once.
    fn compare(&self, ledger: &Ledger) -> Audit {
        let n = self.config.jobs;
        let phases_run = if self.config.enqueue_phase {
            0..2 * n
        } else {
            n..2 * n
        };
        let tally = &self.tally;
        let seen = &ledger.seen;
        let mut lost = ledger.not_succeeded;
        let mut duplicated = tally.duplicate_enqueues.load(Ordering::Relaxed);
        for seq in phases_run {
            let i = seq as usize;
            let successes = tally.succeeded[i].load(Ordering::Relaxed);
            let enqueued = tally.enqueued[i].load(Ordering::Relaxed);
            if seen[i] == 0 || enqueued == 0 || successes == 0 {
                lost += 1;
            }
            if seen[i] > 1 || successes > 1 {
                duplicated += 1;
            }
            if seen[i] != 1 || enqueued == 0 || successes != 1 {
                tally.error(format!(
                    "sequence {seq}: enqueue {}, {} in the ledger, {successes} successes acknowledged",
                    enqueued
                        .checked_sub(1)
                        .map_or("unanswered".to_owned(), |id| format!("answered job-{id}")),
                    seen[i]
                ));
            }
        }
        Audit { lost, duplicated }
    }
}
