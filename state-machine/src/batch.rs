//! Batch commands: a producer's or worker's many small writes as one command, so a log
//! entry carries hundreds of jobs for the cost of one request. Each item is applied and
//! answered exactly as its single command would be; a refused item changes nothing and does
//! not stop the others.

use crate::command::{CompleteItem, Reply, Response};
use crate::error::SchedulerError;
use crate::job::JobSpec;
use crate::ledger::{At, State};

/// Most items in one batch command.
pub const MAX_BATCH: usize = 1_000;

pub(crate) fn check_len(field: &str, len: usize) -> Result<(), SchedulerError> {
    if len == 0 || len > MAX_BATCH {
        return Err(SchedulerError::invalid(
            field,
            format!("a batch holds between 1 and {MAX_BATCH} items, not {len}"),
        ));
    }
    Ok(())
}

impl State {
    pub(crate) fn enqueue_batch(&mut self, specs: Vec<JobSpec>, at: At) -> Response {
        check_len("jobs", specs.len())?;
        let replies = specs
            .into_iter()
            .map(|spec| self.enqueue(spec, at))
            .collect();
        Ok(Reply::Batch { replies })
    }

    pub(crate) fn complete_batch(&mut self, items: Vec<CompleteItem>, at: At) -> Response {
        check_len("items", items.len())?;
        let replies = items
            .into_iter()
            .map(|item| self.complete(item.job_id, item.lease_id, item.completion, at))
            .collect();
        Ok(Reply::Batch { replies })
    }
}
