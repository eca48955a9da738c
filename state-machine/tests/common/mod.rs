//! A small driver for scenario tests: it numbers log entries, moves log time on request,
//! and checks the invariants after every command.
#![allow(dead_code)]

use rota_state_machine::*;

pub struct Cluster {
    pub state: State,
    pub index: u64,
    pub now_ms: u64,
}

pub fn stamp() -> Stamp {
    Stamp::new("ops@example.com", "testing")
}

pub fn spec(tenant: &str, job_type: &str) -> JobSpec {
    JobSpec::new(
        tenant,
        job_type,
        format!("{tenant}/{job_type}").into_bytes(),
    )
}

impl Cluster {
    /// A fresh scheduler whose log time has been set by one tick.
    pub fn new() -> Self {
        let mut cluster = Self {
            state: State::new(),
            index: 0,
            now_ms: 1_000_000,
        };
        cluster.advance(0);
        cluster
    }

    /// Applies at the current log time and checks every invariant afterwards.
    pub fn apply(&mut self, command: Command) -> Response {
        self.index += 1;
        let response = self.state.apply(command, self.now_ms, self.index);
        if let Err(broken) = self.state.check_invariants() {
            panic!("invariant broken after entry {}: {broken}", self.index);
        }
        response
    }

    pub fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
        self.apply(Command::Tick).expect("tick");
    }

    pub fn enqueue(&mut self, spec: JobSpec) -> JobId {
        match self.apply(Command::Enqueue { spec }) {
            Ok(Reply::Enqueued { job_id, .. }) => job_id,
            other => panic!("enqueue failed: {other:?}"),
        }
    }

    pub fn lease(&mut self, worker: &str, types: &[&str], max: u32) -> Vec<Grant> {
        let command = Command::Lease {
            worker: WorkerId::new(worker),
            job_types: types.iter().map(|t| JobType::new(*t)).collect(),
            max,
            ttl_ms: None,
        };
        match self.apply(command) {
            Ok(Reply::Leased { grants, .. }) => grants,
            other => panic!("lease failed: {other:?}"),
        }
    }

    pub fn complete(&mut self, grant: &Grant, completion: Completion) -> Response {
        self.apply(Command::Complete {
            job_id: grant.job_id,
            lease_id: grant.lease_id,
            completion,
        })
    }

    pub fn succeed(&mut self, grant: &Grant) {
        let done = self.complete(grant, Completion::Succeeded { outputs: vec![] });
        assert!(done.is_ok(), "completion rejected: {done:?}");
    }

    pub fn fail(&mut self, grant: &Grant, retryable: bool) {
        let error = "boom".to_owned();
        let done = self.complete(grant, Completion::Failed { retryable, error });
        assert!(done.is_ok(), "failure rejected: {done:?}");
    }

    pub fn status(&self, id: JobId) -> Status {
        self.state.job(id).expect("job exists").status()
    }

    pub fn digest(&self) -> String {
        self.state.digest().expect("digest")
    }
}
