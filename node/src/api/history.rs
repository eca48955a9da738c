//! `GovernanceHistory`: the governance events in memory (and with `archived`, those in the
//! archive before them), filtered by kind and log time, paged by log index.

use crate::convert;
use crate::status::{self, invalid};
use rota_client::proto as pb;
use rota_raft::Applied;
use rota_state_machine::{ArchiveKind, ArchivedItem, GovernanceChange, GovernanceEvent};
use tonic::Status;

/// Events in a page unless asked, and the most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;

/// The most archived events one page examines.
const MAX_EXAMINED: usize = 10_000;

/// Which events a request wants, and how many.
struct Wanted<'a> {
    kinds: &'a [String],
    since_ms: u64,
    until_ms: u64,
    after_index: Option<u64>,
    limit: usize,
}

impl Wanted<'_> {
    fn matches(&self, event: &GovernanceEvent) -> bool {
        (self.kinds.is_empty() || self.kinds.iter().any(|k| k == event.change.kind()))
            && event.at_ms >= self.since_ms
            && event.at_ms < self.until_ms
            && self.after_index.is_none_or(|after| event.log_index > after)
    }
}

/// A page being filled; it ends with whole entries (all the events of its last index).
struct Page {
    events: Vec<pb::GovernanceEventView>,
    limit: usize,
    full: bool,
    /// The log index of the latest event examined (added or not).
    last_seen: Option<u64>,
}

impl Page {
    /// Adds `event` unless the page is full; false once it is.
    fn add(&mut self, event: &GovernanceEvent, archived: bool) -> bool {
        let same_entry = self.last_seen == Some(event.log_index);
        if self.events.len() >= self.limit && !same_entry {
            self.full = true;
            return false;
        }
        self.events.push(view(event, archived));
        true
    }
}

fn view(event: &GovernanceEvent, archived: bool) -> pb::GovernanceEventView {
    pb::GovernanceEventView {
        log_index: event.log_index,
        at_ms: event.at_ms,
        kind: event.change.kind().to_owned(),
        stamp: event.stamp.as_ref().map(convert::stamp_out),
        detail: detail(&event.change),
        archived,
    }
}

/// The change's fields for people (the kind is told apart).
fn detail(change: &GovernanceChange) -> String {
    format!("{change:?}")
}

/// One page of the history as `request` asks for it, read from `applied`.
pub fn history(
    applied: &Applied,
    request: &pb::GovernanceHistoryRequest,
) -> Result<pb::GovernanceHistoryResponse, Status> {
    if let Some(unknown) = request
        .kinds
        .iter()
        .find(|k| !GovernanceChange::KINDS.contains(&k.as_str()))
    {
        return Err(invalid(
            "kinds",
            format!(
                "unknown kind {unknown:?}; kinds are {}",
                GovernanceChange::KINDS.join(", ")
            ),
        ));
    }
    let wanted = Wanted {
        kinds: &request.kinds,
        since_ms: request.since_ms.unwrap_or(0),
        until_ms: request.until_ms.unwrap_or(u64::MAX),
        after_index: request.after_index,
        limit: match request.limit {
            0 => DEFAULT_LIMIT,
            n => (n as usize).min(MAX_LIMIT),
        },
    };
    let mut page = Page {
        events: Vec::new(),
        limit: wanted.limit,
        full: false,
        last_seen: None,
    };
    if request.archived {
        // The archive numbers events in order, not by log index: a page reads it from the
        // start, skipping what earlier pages had, and examines at most MAX_EXAMINED events
        // past the cursor (holding the state's read lock), then ends at an entry's
        // boundary, short, to page on.
        let mut examined = 0;
        applied
            .scan_archived(ArchiveKind::Governance, 0, |_, archived| {
                let Some(ArchivedItem::Governance(event)) = archived.map(|a| a.item) else {
                    return true;
                };
                if wanted
                    .after_index
                    .is_some_and(|after| event.log_index <= after)
                {
                    return true;
                }
                examined += 1;
                if examined > MAX_EXAMINED && page.last_seen != Some(event.log_index) {
                    page.full = true;
                    return false;
                }
                if wanted.matches(&event) && !page.add(&event, true) {
                    return false;
                }
                page.last_seen = Some(event.log_index);
                true
            })
            .map_err(|e| status::archive(&e))?;
    }
    if !page.full {
        for event in applied.state.governance_history() {
            if wanted.matches(event) && !page.add(event, false) {
                break;
            }
            page.last_seen = Some(event.log_index);
        }
    }
    let next_after = match page.full {
        true => page.last_seen,
        false => None,
    };
    Ok(pb::GovernanceHistoryResponse {
        events: page.events,
        next_after,
    })
}
