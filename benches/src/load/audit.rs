//! The audit at the end of a run: the ledger read back and compared, sequence number by
//! sequence number, with what producers and workers were told.

use super::phases::Run;
use super::tally::read_payload;
use super::{client_for, TENANT};
use crate::BenchError;
use rota_client::proto as pb;
use std::ops::Range;
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
    /// job or sequence number that is off. `cycle_sent` are the cycle's sequence numbers
    /// its producers sent (`Cycle::sent`).
    /// With retention windows set by the run (`--retain`, `--archive-for`), jobs move to
    /// the archive and leave it while the audit reads, so the ledger is not read: the audit
    /// judges from what producers and workers were told alone (every enqueue answered, and
    /// its success acknowledged once).
    pub(super) async fn audit(&self, cycle_sent: &[Range<u64>]) -> Result<Audit, BenchError> {
        if self.config.retain.is_some() || self.config.archive_for.is_some() {
            return Ok(self.compare_tallies(cycle_sent));
        }
        let ledger = self.read_ledger().await?;
        Ok(self.compare(&ledger, cycle_sent))
    }

    /// The audit without the ledger: each sequence number sent must have been answered and
    /// its success acknowledged once.
    fn compare_tallies(&self, cycle_sent: &[Range<u64>]) -> Audit {
        let mut audit = Audit {
            lost: 0,
            duplicated: self.tally.duplicate_enqueues.load(Ordering::Relaxed),
        };
        let sent = self
            .fill
            .clone()
            .chain(self.cycle.clone().filter(|seq| is_in(cycle_sent, *seq)));
        for seq in sent {
            self.compare_sent(seq, None, &mut audit);
        }
        audit
    }

    /// Counts every job of the run's job types, a page at a time (a long run's ledger
    /// would not fit in memory whole).
    async fn read_ledger(&self) -> Result<Ledger, BenchError> {
        let checker = client_for(&self.target.ops, &self.target.endpoints, 0)?;
        let mut ledger = Ledger {
            seen: vec![0u8; self.cycle.end as usize],
            not_succeeded: 0,
        };
        let mut types = vec![self.cycle_type.clone()];
        if self.config.enqueue_phase {
            types.push(self.fill_type.clone());
        }
        for job_type in types {
            let mut request = pb::ListJobsRequest {
                job_type: Some(job_type),
                tenant: Some(TENANT.to_owned()),
                limit: 1_000,
                summary: true,
                ..pb::ListJobsRequest::default()
            };
            loop {
                let page = checker.list_jobs(request.clone()).await.map_err(|source| {
                    BenchError::Call {
                        call: "reading the ledger back",
                        source,
                    }
                })?;
                for job in &page.jobs {
                    self.count(&mut ledger, job);
                }
                let Some(next) = page.next_after else { break };
                request.after = Some(next);
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

    /// Each sequence number sent must be in the ledger once, its enqueue answered, and its
    /// success acknowledged once; one never sent must have left no trace.
    fn compare(&self, ledger: &Ledger, cycle_sent: &[Range<u64>]) -> Audit {
        let mut audit = Audit {
            lost: ledger.not_succeeded,
            duplicated: self.tally.duplicate_enqueues.load(Ordering::Relaxed),
        };
        for seq in self.fill.clone() {
            self.compare_sent(seq, Some(ledger.seen[seq as usize]), &mut audit);
        }
        for seq in self.cycle.clone() {
            if is_in(cycle_sent, seq) {
                self.compare_sent(seq, Some(ledger.seen[seq as usize]), &mut audit);
            } else {
                self.compare_unsent(seq, ledger, &mut audit);
            }
        }
        audit
    }

    /// A sequence number a producer sent, with how many jobs of the ledger carry it (`None`
    /// when the ledger was not read: the clients' tallies alone judge it).
    fn compare_sent(&self, seq: u64, seen: Option<u8>, audit: &mut Audit) {
        let tally = &self.tally;
        let i = seq as usize;
        let successes = tally.succeeded[i].load(Ordering::Relaxed);
        let enqueued = tally.enqueued[i].load(Ordering::Relaxed);
        if seen == Some(0) || enqueued == 0 || successes == 0 {
            audit.lost += 1;
        }
        if seen.is_some_and(|n| n > 1) || successes > 1 {
            audit.duplicated += 1;
        }
        if seen.is_some_and(|n| n != 1) || enqueued == 0 || successes != 1 {
            let seen = seen.map_or("not read".to_owned(), |n| n.to_string());
            tally.error(format!(
                "sequence {seq}: enqueue {}, {seen} in the ledger, {successes} successes acknowledged",
                enqueued
                    .checked_sub(1)
                    .map_or("unanswered".to_owned(), |id| format!("answered job-{id}")),
            ));
        }
    }

    /// A sequence number no producer sent (the run ended first): any trace of it is a job
    /// that should not exist.
    fn compare_unsent(&self, seq: u64, ledger: &Ledger, audit: &mut Audit) {
        let tally = &self.tally;
        let i = seq as usize;
        let seen = ledger.seen[i];
        let successes = tally.succeeded[i].load(Ordering::Relaxed);
        let enqueued = tally.enqueued[i].load(Ordering::Relaxed);
        if seen == 0 && enqueued == 0 && successes == 0 {
            return;
        }
        audit.duplicated += 1;
        tally.error(format!(
            "sequence {seq} was never sent, yet: enqueue mark {enqueued}, {seen} in the ledger, \
             {successes} successes acknowledged"
        ));
    }
}

/// Whether `seq` lies in one of `ranges` (one per producer, so a handful).
fn is_in(ranges: &[Range<u64>], seq: u64) -> bool {
    ranges.iter().any(|r| r.contains(&seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_ranges_tell_which_sequence_numbers_went_out() {
        let sent = [20..23, 10..15, 20..20];
        let inside: Vec<u64> = (0..30).filter(|&s| is_in(&sent, s)).collect();
        assert_eq!(inside, [10, 11, 12, 13, 14, 20, 21, 22]);
        assert!(!is_in(&[], 0));
    }
}
