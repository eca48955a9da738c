//! Sanity checks on what a peer sends, before openraft sees it. openraft trusts its peers:
//! one AppendEntries with a term near `u64::MAX` was persisted, spread to every node, and
//! made each one's Raft core panic at its next election, for good. A peer can be buggy (or
//! not a peer at all until the transport authenticates members), so no value from the wire
//! may reach openraft that it could overflow, or that no honest leader sends.

use crate::types::{LogId, NodeId, TypeConfig};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::Vote;

/// Highest term accepted: 2^48 elections are out of any cluster's reach (one a millisecond
/// for 8,900 years), and far enough below `u64::MAX` that nothing derived from it overflows.
pub const MAX_TERM: u64 = 1 << 48;
/// Highest log index accepted, for the same reason.
pub const MAX_INDEX: u64 = 1 << 62;
/// Highest snapshot offset accepted (1 TiB): far above any snapshot this cluster writes.
pub const MAX_SNAPSHOT_OFFSET: u64 = 1 << 40;

/// Why a peer's request was refused before openraft saw it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    /// A term past `MAX_TERM`.
    #[error("{what} has term {term}, above the highest a cluster reaches ({MAX_TERM})")]
    Term {
        /// Which field.
        what: &'static str,
        /// Its term.
        term: u64,
    },
    /// An index past `MAX_INDEX`.
    #[error("{what} has index {index}, above the highest a log reaches ({MAX_INDEX})")]
    Index {
        /// Which field.
        what: &'static str,
        /// Its index.
        index: u64,
    },
    /// A log id from a term after the sender's own vote: no leader writes ahead of its term.
    #[error("{what} is from term {term}, after the sender's term {vote_term}")]
    AheadOfVote {
        /// Which field.
        what: &'static str,
        /// Its term.
        term: u64,
        /// The sender's term.
        vote_term: u64,
    },
    /// Entries that do not follow one another (or `prev_log_id`) with no gap.
    #[error("entry {position} has index {index}, expected {expected}: entries must follow prev_log_id with no gap")]
    Gap {
        /// Its place among the entries.
        position: usize,
        /// Its index.
        index: u64,
        /// The index it should have.
        expected: u64,
    },
    /// Entries whose terms go down.
    #[error(
        "entry {position} is from term {term}, before the term {previous} of the entry ahead of it"
    )]
    TermGoesBack {
        /// Its place among the entries.
        position: usize,
        /// Its term.
        term: u64,
        /// The term before it.
        previous: u64,
    },
    /// A snapshot chunk past `MAX_SNAPSHOT_OFFSET`.
    #[error("snapshot chunk at offset {0}: beyond any snapshot's size")]
    Offset(u64),
}

fn vote(vote: &Vote<NodeId>) -> Result<u64, Refused> {
    let term = vote.leader_id.term;
    if term > MAX_TERM {
        return Err(Refused::Term {
            what: "the vote",
            term,
        });
    }
    Ok(term)
}

fn log_id(what: &'static str, id: Option<&LogId>, vote_term: u64) -> Result<(), Refused> {
    let Some(id) = id else {
        return Ok(());
    };
    let term = id.leader_id.term;
    if term > MAX_TERM {
        return Err(Refused::Term { what, term });
    }
    if term > vote_term {
        return Err(Refused::AheadOfVote {
            what,
            term,
            vote_term,
        });
    }
    if id.index > MAX_INDEX {
        return Err(Refused::Index {
            what,
            index: id.index,
        });
    }
    Ok(())
}

/// An AppendEntries an honest leader could have sent.
pub fn append(request: &AppendEntriesRequest<TypeConfig>) -> Result<(), Refused> {
    let term = vote(&request.vote)?;
    log_id("prev_log_id", request.prev_log_id.as_ref(), term)?;
    log_id("leader_commit", request.leader_commit.as_ref(), term)?;
    let first = request.prev_log_id.map_or(0, |id| id.index + 1);
    let mut previous = request.prev_log_id.map_or(0, |id| id.leader_id.term);
    for (position, entry) in request.entries.iter().enumerate() {
        let expected = first + position as u64;
        log_id("an entry", Some(&entry.log_id), term)?;
        if entry.log_id.index != expected {
            return Err(Refused::Gap {
                position,
                index: entry.log_id.index,
                expected,
            });
        }
        if entry.log_id.leader_id.term < previous {
            return Err(Refused::TermGoesBack {
                position,
                term: entry.log_id.leader_id.term,
                previous,
            });
        }
        previous = entry.log_id.leader_id.term;
    }
    Ok(())
}

/// A vote request an honest candidate could have sent.
pub fn vote_request(request: &VoteRequest<NodeId>) -> Result<(), Refused> {
    let term = vote(&request.vote)?;
    log_id("last_log_id", request.last_log_id.as_ref(), term)
}

/// A snapshot chunk an honest leader could have sent.
pub fn install(request: &InstallSnapshotRequest<TypeConfig>) -> Result<(), Refused> {
    let term = vote(&request.vote)?;
    log_id(
        "the snapshot's last_log_id",
        request.meta.last_log_id.as_ref(),
        term,
    )?;
    let end = request
        .offset
        .checked_add(request.data.len() as u64)
        .ok_or(Refused::Offset(request.offset))?;
    if end > MAX_SNAPSHOT_OFFSET {
        return Err(Refused::Offset(request.offset));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Batch;
    use openraft::{CommittedLeaderId, Entry, EntryPayload};

    fn id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: id(term, index),
            payload: EntryPayload::Normal(Batch::new(0, Vec::<crate::types::Write>::new())),
        }
    }

    fn append_of(
        term: u64,
        prev: Option<LogId>,
        entries: Vec<Entry<TypeConfig>>,
    ) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(term, 1),
            prev_log_id: prev,
            entries,
            leader_commit: prev,
        }
    }

    #[test]
    fn an_honest_append_passes() {
        let request = append_of(3, Some(id(2, 9)), vec![entry(2, 10), entry(3, 11)]);
        assert_eq!(append(&request), Ok(()));
        assert_eq!(append(&append_of(1, None, vec![entry(1, 0)])), Ok(()));
        assert_eq!(append(&append_of(5, Some(id(5, 7)), vec![])), Ok(()));
    }

    #[test]
    fn an_extreme_term_is_refused_wherever_it_is() {
        let top = u64::MAX;
        assert!(matches!(
            append(&append_of(top, None, vec![])),
            Err(Refused::Term { .. })
        ));
        assert!(matches!(
            append(&append_of(3, Some(id(top, 9)), vec![])),
            Err(Refused::Term { .. })
        ));
        let vote_request = VoteRequest {
            vote: Vote::new(MAX_TERM + 1, 2),
            last_log_id: None,
        };
        assert!(matches!(
            super::vote_request(&vote_request),
            Err(Refused::Term { .. })
        ));
    }

    #[test]
    fn entries_ahead_of_the_vote_with_gaps_or_going_back_are_refused() {
        assert!(matches!(
            append(&append_of(3, Some(id(3, 9)), vec![entry(4, 10)])),
            Err(Refused::AheadOfVote { .. })
        ));
        assert_eq!(
            append(&append_of(
                3,
                Some(id(3, 9)),
                vec![entry(3, 10), entry(3, 12)]
            )),
            Err(Refused::Gap {
                position: 1,
                index: 12,
                expected: 11
            })
        );
        assert!(matches!(
            append(&append_of(3, Some(id(3, 9)), vec![entry(2, 10)])),
            Err(Refused::TermGoesBack { .. })
        ));
        assert!(matches!(
            append(&append_of(3, Some(id(1, u64::MAX)), vec![])),
            Err(Refused::Index { .. })
        ));
    }
}
