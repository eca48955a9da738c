//! `GET /api/events`: what the cluster does, as server-sent events. Each event's id is its
//! log position, `INDEX-ORDINAL` (the entry that made it, and its place among that entry's
//! events), the same on every node: a client that reconnects with `Last-Event-ID` (or
//! `?after=`) resumes exactly after it, on any node, as far back as that node keeps (the
//! last 65,536 events, and nothing before its latest snapshot when it restarted). Beyond
//! that, one `gone` event says so and the stream ends. A client that falls more than 4,096
//! events behind gets one `lagged` event and the stream ends: the node never waits for it.

use super::model::instant;
use super::problem::Problem;
use super::routes::Caller;
use super::Http;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use rota_raft::{Event, EventBody, Position};
use rota_state_machine::{GovernanceChange, JobEventKind, Note};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};

/// How often an idle stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /api/events`: filters and where to resume.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only this tenant's job events (governance and leader events have no tenant and are
    /// left out when a tenant is given).
    pub tenant: Option<String>,
    /// Only this job type's job events.
    pub job_type: Option<String>,
    /// Only these kinds, comma-separated: enqueued, ready, leased, attempt_ended,
    /// retry_scheduled, succeeded, dead_lettered, canceled, replayed, governance, leader.
    pub kind: Option<String>,
    /// Resume after this event id, as `Last-Event-ID` does (which wins when both are given).
    pub after: Option<String>,
}

/// One event's data.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventData {
    /// `INDEX-ORDINAL`, as the SSE id.
    pub id: String,
    /// The log index of the entry that made it.
    pub log_index: u64,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_type: Option<String>,
    /// The job's status after the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<u64>,
    /// What else the event says, for people.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// On governance events: who, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// On leader events: the term and the leader.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<u64>,
}

/// An event id, `INDEX-ORDINAL` (or a bare `INDEX`: after all of that entry's events).
fn parse_position(text: &str) -> Result<Position, Problem> {
    let text = text.trim();
    let parsed = match text.split_once('-') {
        Some((index, ordinal)) => index.parse().ok().zip(ordinal.parse().ok()),
        None => text.parse().ok().map(|index| (index, u32::MAX)),
    };
    parsed.ok_or_else(|| {
        Problem::invalid(format!(
            "event id {text:?} is not INDEX-ORDINAL (e.g. 1234-0) or INDEX"
        ))
    })
}

/// Every event kind a stream shows, as `?kind=` names them.
const KINDS: [&str; 11] = [
    "enqueued",
    "ready",
    "leased",
    "attempt_ended",
    "retry_scheduled",
    "succeeded",
    "dead_lettered",
    "canceled",
    "replayed",
    "governance",
    "leader",
];

/// The kinds of `?kind=a,b`: each must be one of `KINDS`, and at least one given.
fn parse_kinds(text: &str) -> Result<BTreeSet<String>, Problem> {
    let kinds = text
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| {
            if KINDS.contains(&k) {
                Ok(k.to_owned())
            } else {
                Err(Problem::invalid(format!(
                    "kind {k:?} is none of {}",
                    KINDS.join(", ")
                )))
            }
        })
        .collect::<Result<BTreeSet<String>, Problem>>()?;
    if kinds.is_empty() {
        return Err(Problem::invalid(format!(
            "kind names no kind: leave it out for every kind, or give some of {}",
            KINDS.join(", ")
        )));
    }
    Ok(kinds)
}

fn job_kind(event: &JobEventKind) -> &'static str {
    match event {
        JobEventKind::Enqueued => "enqueued",
        JobEventKind::Ready => "ready",
        JobEventKind::Leased { .. } => "leased",
        JobEventKind::AttemptEnded { .. } => "attempt_ended",
        JobEventKind::RetryScheduled { .. } => "retry_scheduled",
        JobEventKind::Succeeded => "succeeded",
        JobEventKind::DeadLettered { .. } => "dead_lettered",
        JobEventKind::Canceled { .. } => "canceled",
        JobEventKind::Replayed { .. } => "replayed",
    }
}

fn job_detail(event: &JobEventKind) -> String {
    match event {
        JobEventKind::AttemptEnded { attempt, outcome } => {
            format!("attempt {attempt}: {outcome:?}")
        }
        JobEventKind::RetryScheduled { retry_at_ms } => {
            format!("retry at {}", instant(*retry_at_ms))
        }
        JobEventKind::DeadLettered { error } => error.clone(),
        JobEventKind::Canceled { reason } => reason.clone(),
        JobEventKind::Replayed { new_job } => format!("replayed as job {new_job}"),
        _ => String::new(),
    }
}

fn governance_detail(change: &GovernanceChange) -> String {
    format!("{change:?}")
}

/// The event as the stream shows it, or none when the filters or the caller's tenants
/// leave it out.
fn shown(event: &Event, filter: &Filter) -> Option<EventData> {
    let mut data = EventData {
        id: format!("{}-{}", event.index, event.ordinal),
        log_index: event.index,
        kind: String::new(),
        at: None,
        job_id: None,
        tenant: None,
        job_type: None,
        status: None,
        attempts: None,
        worker_id: None,
        lease_id: None,
        detail: String::new(),
        actor: None,
        reason: None,
        ticket: None,
        term: None,
        leader: None,
    };
    match &event.body {
        EventBody::Note(Note::Job {
            job,
            tenant,
            job_type,
            status,
            event: kind,
            attempts,
            at_ms,
            ..
        }) => {
            if !filter.tenant_shown(tenant.as_str())
                || filter
                    .job_type
                    .as_ref()
                    .is_some_and(|t| t != job_type.as_str())
            {
                return None;
            }
            data.kind = job_kind(kind).to_owned();
            data.at = Some(instant(*at_ms));
            data.job_id = Some(job.0);
            data.tenant = Some(tenant.to_string());
            data.job_type = Some(job_type.to_string());
            data.status = Some(status.as_str().to_owned());
            data.attempts = Some(*attempts);
            if let JobEventKind::Leased { lease_id, worker } = kind {
                data.worker_id = Some(worker.to_string());
                data.lease_id = Some(lease_id.0);
            }
            data.detail = job_detail(kind);
        }
        EventBody::Note(Note::Governance {
            change,
            stamp,
            at_ms,
        }) => {
            if !filter.cluster_wide() {
                return None;
            }
            data.kind = "governance".to_owned();
            data.at = Some(instant(*at_ms));
            data.detail = governance_detail(change);
            if let Some(stamp) = stamp {
                data.actor = Some(stamp.actor.clone());
                data.reason = Some(stamp.reason.clone());
                data.ticket = stamp.ticket.clone();
            }
        }
        EventBody::Leader { term, node } => {
            if !filter.cluster_wide() {
                return None;
            }
            data.kind = "leader".to_owned();
            data.term = Some(*term);
            data.leader = Some(*node);
        }
        // Heartbeats never reach the ring (taps only): the job log and metrics have them.
        EventBody::Note(Note::LeaseExtended { .. }) | EventBody::Jumped => return None,
    }
    filter
        .kinds
        .as_ref()
        .is_none_or(|kinds| kinds.contains(&data.kind))
        .then_some(data)
}

/// What a stream shows.
struct Filter {
    tenant: Option<String>,
    job_type: Option<String>,
    kinds: Option<BTreeSet<String>>,
    /// The caller's tenants, when it is bound to some: it sees only their job events.
    bound: Option<BTreeSet<String>>,
}

impl Filter {
    fn tenant_shown(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|t| t == tenant)
            && self.bound.as_ref().is_none_or(|b| b.contains(tenant))
    }

    /// Whether events of no tenant (governance, leaders) are shown.
    fn cluster_wide(&self) -> bool {
        self.tenant.is_none() && self.job_type.is_none() && self.bound.is_none()
    }
}

/// A control event: `gone` or `lagged`, with its reason.
fn control(kind: &str, detail: String) -> SseEvent {
    SseEvent::default().event(kind).data(detail)
}

fn sse(data: &EventData) -> SseEvent {
    let json = serde_json::to_string(data).unwrap_or_default();
    SseEvent::default()
        .id(&data.id)
        .event(&data.kind)
        .data(json)
}

/// Streams the cluster's events, live, from where the client stopped.
#[utoipa::path(get, path = "/api/events", tag = "events",
    params(EventQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    responses(
        (status = 200, description = "text/event-stream of events, each `id: INDEX-ORDINAL`, `event: KIND`, `data: {EventData as JSON}`; `gone` or `lagged` end it", body = EventData, content_type = "text/event-stream"),
        (status = "4XX", body = super::problem::ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn events(
    State(http): State<Arc<Http>>,
    caller: Caller,
    headers: HeaderMap,
    query: Result<Query<EventQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Problem> {
    let Query(query) = query?;
    let after = match headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(query.after.as_deref())
    {
        Some(text) => Some(parse_position(text)?),
        None => None,
    };
    let filter = Filter {
        tenant: query.tenant,
        job_type: query.job_type,
        kinds: query.kind.as_deref().map(parse_kinds).transpose()?,
        bound: caller
            .principal()
            .tenants
            .as_ref()
            .map(|t| t.iter().map(|t| t.to_string()).collect()),
    };
    let hub = http.raft.events();
    let (head, tail): (Vec<SseEvent>, _) = match hub.subscribe(after) {
        Ok((backlog, live)) => {
            let last = backlog.last().map(|e| e.position()).or(after);
            let head = backlog
                .iter()
                .filter_map(|e| shown(e, &filter))
                .map(|d| sse(&d))
                .collect();
            (head, Some((live, last)))
        }
        Err(gone) => {
            let detail = format!(
                "resume point gone: this node keeps events after {}-{} only; read the current state and watch anew",
                gone.floor.0, gone.floor.1
            );
            (vec![control("gone", detail)], None)
        }
    };
    let live = stream::unfold(
        tail.map(|(live, last)| (live, last, filter)),
        |state| async move {
            let (mut live, mut last, filter) = state?;
            loop {
                match live.recv().await {
                    Ok(event) => {
                        if let EventBody::Jumped = event.body {
                            let detail = "resume point gone: this node installed a snapshot; read the current state and watch anew".to_owned();
                            return Some((control("gone", detail), None));
                        }
                        if last.is_some_and(|l| event.position() <= l) {
                            continue;
                        }
                        last = Some(event.position());
                        if let Some(data) = shown(&event, &filter) {
                            return Some((sse(&data), Some((live, last, filter))));
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        let detail = format!(
                            "{missed} events behind: reconnect with Last-Event-ID to resume"
                        );
                        return Some((control("lagged", detail), None));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    let keep_alive = stream::unfold(tokio::time::interval(KEEP_ALIVE), |mut tick| async move {
        tick.tick().await;
        Some((SseEvent::default().comment("keep-alive"), tick))
    })
    .skip(1);
    // The stream ends when the events do (a `None` marks it), keep-alives or not.
    let events = stream::iter(head)
        .chain(live)
        .map(Some)
        .chain(stream::once(async { None }));
    let merged = stream::select(events, keep_alive.map(Some))
        .take_while(|e| std::future::ready(e.is_some()))
        .filter_map(|e| std::future::ready(e.map(Ok)));
    Ok(Sse::new(merged))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_parse_with_or_without_an_ordinal() {
        assert_eq!(parse_position("12-3").ok(), Some((12, 3)));
        assert_eq!(parse_position(" 12 ").ok(), Some((12, u32::MAX)));
        assert!(parse_position("12-").is_err());
        assert!(parse_position("x").is_err());
    }

    #[test]
    fn kinds_are_checked_and_every_job_event_has_one() {
        let kinds = parse_kinds("leased, succeeded,,leader").ok();
        let want: BTreeSet<String> = ["leased", "succeeded", "leader"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(kinds, Some(want));
        assert!(parse_kinds("leased,finished").is_err());
        assert!(parse_kinds(" , ").is_err());
        use rota_state_machine::{AttemptOutcome, JobId, LeaseId, WorkerId};
        let every = [
            JobEventKind::Enqueued,
            JobEventKind::Ready,
            JobEventKind::Leased {
                lease_id: LeaseId(1),
                worker: WorkerId::new("w"),
            },
            JobEventKind::AttemptEnded {
                attempt: 1,
                outcome: AttemptOutcome::TimedOut,
            },
            JobEventKind::RetryScheduled { retry_at_ms: 5 },
            JobEventKind::Succeeded,
            JobEventKind::DeadLettered {
                error: "e".to_owned(),
            },
            JobEventKind::Canceled {
                reason: "r".to_owned(),
            },
            JobEventKind::Replayed { new_job: JobId(2) },
        ];
        let named: BTreeSet<&str> = every.iter().map(job_kind).collect();
        assert_eq!(named.len(), every.len(), "one name per kind");
        for event in every {
            assert!(KINDS.contains(&job_kind(&event)), "{event:?}");
        }
    }
}
