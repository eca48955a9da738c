//! Client sessions: a write retried after a timeout or a leader change may already have
//! been committed, so each write carries (client id, request sequence) and the ledger keeps
//! each client's latest answer. A retry gets that answer again instead of a second effect
//! (a second batch of leases, say).

use crate::command::{Command, Grant, Reply, Response};
use crate::error::SchedulerError;
use crate::ids::ClientId;
use crate::ledger::{Session, State};
use serde::{Deserialize, Serialize};

/// A session forgotten after this much log time without a request; a client that retries
/// after that long may see its write applied twice.
pub const SESSION_TTL_MS: u64 = 24 * 3_600_000;

/// Most sessions the ledger keeps. A new client past it pushes out the session idle the
/// longest, whose client then meets a retry applied as new (as after `SESSION_TTL_MS`).
/// A session holds ids and tokens, not payloads: 100,000 of them stay a few tens of MiB.
pub const MAX_SESSIONS: usize = 100_000;

/// A command with the client session it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRequest {
    /// The client whose session the request belongs to.
    pub client: ClientId,
    /// Strictly increasing per client; a retry reuses the sequence of the request it retries.
    pub seq: u64,
    /// The write itself.
    pub command: Command,
}

/// What a session keeps of an answer: all a retry needs (ids, fencing tokens, outcomes),
/// not the payloads of a lease's grants, which the ledger holds anyway. Sessions would
/// otherwise keep every leased payload for a day.
fn without_payloads(response: &Response) -> Response {
    match response {
        Ok(Reply::Leased { grants, held }) => Ok(Reply::Leased {
            grants: grants
                .iter()
                .map(|g| Grant {
                    payload: Vec::new(),
                    ..g.clone()
                })
                .collect(),
            held: *held,
        }),
        other => other.clone(),
    }
}

impl State {
    /// Applies a client's command once: a retry of its latest request returns the answer it
    /// got; an older sequence is refused; a new one is applied and its answer remembered.
    pub fn apply_request(
        &mut self,
        request: ClientRequest,
        now_ms: u64,
        log_index: u64,
    ) -> Response {
        let ClientRequest {
            client,
            seq,
            command,
        } = request;
        if self.has_answered(&client, seq) {
            return self.answer_again(client, seq);
        }
        let response = self.apply(command, now_ms, log_index);
        let last_seen_ms = self.ledger.now_ms;
        if let Some(old) = self.ledger.sessions.get(&client) {
            self.idx
                .session_expiry
                .remove(&(old.last_seen_ms, client.clone()));
        }
        self.idx
            .session_expiry
            .insert((last_seen_ms, client.clone()));
        let session = Session {
            seq,
            response: without_payloads(&response),
            last_seen_ms,
        };
        self.ledger.sessions.insert(client, session);
        self.forget_sessions_over(MAX_SESSIONS);
        response
    }

    /// Whether request `seq` of `client` was already answered: it is the client's latest
    /// applied request (a retry) or older (stale). `apply_request` answers such a request
    /// from the session alone and never applies it again.
    pub fn has_answered(&self, client: &str, seq: u64) -> bool {
        self.session(client).is_some_and(|latest| seq <= latest.seq)
    }

    /// The answer to a request `has_answered` holds for, read from its session.
    fn answer_again(&self, client: ClientId, seq: u64) -> Response {
        let latest = self
            .session(&client)
            .expect("has_answered holds only for a client with a session");
        if seq == latest.seq {
            return self.with_payloads(latest.response.clone());
        }
        Err(SchedulerError::StaleRequest {
            client,
            seq,
            latest: latest.seq,
        })
    }

    /// A remembered answer as it was first given: a lease's grants get their payloads back
    /// from the ledger, where the jobs (and their unchanging payloads) still are.
    fn with_payloads(&self, response: Response) -> Response {
        let Ok(Reply::Leased { mut grants, held }) = response else {
            return response;
        };
        for grant in &mut grants {
            if let Some(job) = self.ledger.jobs.get(&grant.job_id) {
                grant.payload = job.spec.payload.clone();
            }
        }
        Ok(Reply::Leased { grants, held })
    }

    /// A client's session, if the ledger still remembers it.
    pub fn session(&self, client: &str) -> Option<&Session> {
        self.ledger.sessions.get(client)
    }

    /// Forgets the sessions idle the longest until at most `max` remain.
    fn forget_sessions_over(&mut self, max: usize) {
        while self.ledger.sessions.len() > max {
            let (_, client) = self
                .idx
                .session_expiry
                .pop_first()
                .expect("every session is in the expiry index");
            self.ledger.sessions.remove(&client);
        }
    }

    /// Forgets sessions idle for longer than `SESSION_TTL_MS` of log time.
    pub(crate) fn expire_sessions(&mut self, now_ms: u64) {
        while let Some((seen, client)) = self.idx.session_expiry.first().cloned() {
            if seen.saturating_add(SESSION_TTL_MS) > now_ms {
                break;
            }
            self.idx.session_expiry.pop_first();
            self.ledger.sessions.remove(&client);
        }
    }
}
