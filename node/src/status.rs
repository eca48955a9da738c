//! Every error a node returns, mapped to its gRPC status in one place. Each status carries
//! a readable message and, under `rota-error`, a stable kind a program can match.

use rota_client::proto as pb;
use rota_client::{ERROR_KIND_KEY, LEADER_KEY};
use rota_raft::ClusterError;
use rota_state_machine::SchedulerError;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// A status with the `rota-error` kind attached.
pub fn with_kind(code: Code, kind: &'static str, message: impl Into<String>) -> Status {
    let mut status = Status::new(code, message);
    status
        .metadata_mut()
        .insert(ERROR_KIND_KEY, MetadataValue::from_static(kind));
    status
}

/// A request over one of the node's byte budgets, named so the caller can find the setting.
pub fn over_budget(limit: &str, message: impl std::fmt::Display) -> Status {
    with_kind(
        Code::ResourceExhausted,
        "over_budget",
        format!("{message} ({limit})"),
    )
}

/// A field the request got wrong.
pub fn invalid(field: &str, message: impl std::fmt::Display) -> Status {
    with_kind(
        Code::InvalidArgument,
        "invalid_input",
        format!("invalid {field}: {message}"),
    )
}

/// A refusal by the scheduler: the request was applied to the log and changed nothing.
pub fn scheduler(error: &SchedulerError) -> Status {
    let (code, kind) = scheduler_kind(error);
    with_kind(code, kind, error.to_string())
}

/// One refused item of a batch, with the kind and message a single call would carry.
pub fn item_error(error: &SchedulerError) -> pb::ItemError {
    pb::ItemError {
        kind: scheduler_kind(error).1.to_owned(),
        message: error.to_string(),
    }
}

fn scheduler_kind(error: &SchedulerError) -> (Code, &'static str) {
    use SchedulerError as E;
    match error {
        E::InvalidInput { .. } => (Code::InvalidArgument, "invalid_input"),
        E::JobNotFound(_) => (Code::NotFound, "job_not_found"),
        E::StaleLease { .. } => (Code::FailedPrecondition, "stale_lease"),
        E::JobCanceled { .. } => (Code::FailedPrecondition, "job_canceled"),
        E::WrongState { .. } => (Code::FailedPrecondition, "wrong_state"),
        E::DependencyFailed { .. } => (Code::FailedPrecondition, "dependency_failed"),
        E::PlanCycle { .. } => (Code::InvalidArgument, "plan_cycle"),
        E::UnknownPlanStep { .. } => (Code::InvalidArgument, "unknown_plan_step"),
        E::DuplicatePlanStep(_) => (Code::InvalidArgument, "duplicate_plan_step"),
        E::BackfillNeedsReasonAndTicket => (Code::InvalidArgument, "backfill_incomplete"),
        E::ScheduleExists(_) => (Code::AlreadyExists, "schedule_exists"),
        E::ScheduleNotFound(_) => (Code::NotFound, "schedule_not_found"),
        E::InvalidCron { .. } => (Code::InvalidArgument, "invalid_cron"),
        E::StaleRequest { .. } => (Code::FailedPrecondition, "stale_request"),
        E::BreakerNotOpen(_) => (Code::FailedPrecondition, "breaker_not_open"),
        E::Archived(_) => (Code::FailedPrecondition, "archived"),
        E::AlreadyBootstrapped => (Code::FailedPrecondition, "already_bootstrapped"),
        E::TokenExists(_) => (Code::AlreadyExists, "token_exists"),
        E::TokenNotFound(_) => (Code::NotFound, "token_not_found"),
        E::TooManyTokens(_) => (Code::ResourceExhausted, "too_many_tokens"),
        E::PlanNotFound(_) => (Code::NotFound, "plan_not_found"),
        E::IncidentNotOpen(_) => (Code::FailedPrecondition, "incident_not_open"),
        E::TenantBlocked { .. } => (Code::FailedPrecondition, "tenant_blocked"),
    }
}

/// An archived record that could not be read back: this node's disk, not the request.
pub fn archive(error: &rota_raft::ArchiveReadError) -> Status {
    with_kind(Code::Internal, "archive", error.to_string())
}

/// A cluster-level failure: most mean "ask again, maybe elsewhere". A node whose Raft has
/// stopped on an error answers `unavailable` too, so its clients move to another node.
pub fn cluster(error: &ClusterError) -> Status {
    match error {
        ClusterError::NotLeader { leader } => {
            not_leader(leader.as_ref().map(|(_, node)| node.addr.as_str()))
        }
        e if e.is_stopping() => shutting_down(&e.to_string()),
        e if e.is_refused_membership() => {
            with_kind(Code::FailedPrecondition, "membership", e.to_string())
        }
        e if e.is_already_initialized() => already_initialized(),
        ClusterError::Transfer(why) => with_kind(Code::FailedPrecondition, "transfer", why.clone()),
        ClusterError::Initialize(_) => invalid("members", error),
        ClusterError::Fatal(_)
        | ClusterError::Timeout(_)
        | ClusterError::Write(_)
        | ClusterError::Read(_)
        | ClusterError::Shutdown(_)
        | ClusterError::Deposed(_) => {
            with_kind(Code::Unavailable, "unavailable", error.to_string())
        }
        ClusterError::Storage(_)
        | ClusterError::Io(_)
        | ClusterError::Config(_)
        | ClusterError::UnusableSnapshot { .. } => internal(error.to_string()),
    }
}

/// The node is stopping: the call may or may not have taken effect; ask another node.
pub fn shutting_down(what: &str) -> Status {
    with_kind(
        Code::Unavailable,
        "shutting_down",
        format!("{what}; a write may or may not have been applied: retry it with the same session on another node"),
    )
}

/// No plan has this id.
pub fn plan_not_found(id: impl std::fmt::Display) -> Status {
    with_kind(Code::NotFound, "plan_not_found", format!("{id} not found"))
}

/// `RemoveNode` of an id that is not a voter.
pub fn node_not_found(id: u64) -> Status {
    with_kind(
        Code::NotFound,
        "node_not_found",
        format!("node {id} is not a member of this cluster"),
    )
}

/// This node already belongs to a founded cluster.
pub fn already_initialized() -> Status {
    with_kind(
        Code::FailedPrecondition,
        "already_initialized",
        "this node already belongs to an initialized cluster",
    )
}

/// What a follower answers when a forwarded call fails. The leader's own answers pass
/// through as they are: its errors carry their kind, and what the gRPC layer refused at the
/// leader (a message over the size limit, say) is the same refusal the leader would give
/// directly. A transport failure (the leader just died, or cannot be reached) becomes
/// `unavailable`; since the leader may have committed a write before it went, the message
/// says so. Retrying with the same session is safe: a write already applied is answered
/// once.
pub fn forwarded(leader: &str, status: Status) -> Status {
    let transport = matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    );
    if status.metadata().contains_key(ERROR_KIND_KEY) || !transport {
        return status;
    }
    with_kind(
        Code::Unavailable,
        "unavailable",
        format!(
            "the leader at {leader} did not answer ({}: {}); a write may or may not have been applied, retry it with the same session",
            status.code(),
            status.message()
        ),
    )
}

/// Whether a forwarded call failed because the leader could not be reached or went away
/// (not an answer of the leader's, nor a call that merely ran out of time there).
pub fn leader_unreachable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled
    ) && !status.metadata().contains_key(ERROR_KIND_KEY)
}

/// This node can't serve the request because it doesn't lead; names the leader if known.
pub fn not_leader(leader: Option<&str>) -> Status {
    let message = match leader {
        Some(addr) => format!("this node is not the leader; the leader is at {addr}"),
        None => "no leader is elected right now; try again shortly".to_owned(),
    };
    let mut status = with_kind(Code::Unavailable, "not_leader", message);
    if let Some(value) = leader.and_then(|addr| MetadataValue::try_from(addr).ok()) {
        status.metadata_mut().insert(LEADER_KEY, value);
    }
    status
}

/// A failure inside this node that the caller can do nothing about but report.
pub fn internal(message: impl Into<String>) -> Status {
    with_kind(Code::Internal, "internal", message)
}

/// The state machine answered a command with a reply of another command: a bug, reported
/// rather than panicked on.
pub fn unexpected(reply: &impl std::fmt::Debug) -> Status {
    with_kind(
        Code::Internal,
        "internal",
        format!("unexpected reply from the scheduler: {reply:?}"),
    )
}

/// A call without credentials this cluster accepts. Never names the secret presented.
pub fn unauthenticated(message: impl Into<String>) -> Status {
    with_kind(Code::Unauthenticated, "unauthenticated", message)
}

/// A principal that lacks the scope a call needs.
pub fn missing_scope(message: impl Into<String>) -> Status {
    with_kind(Code::PermissionDenied, "missing_scope", message)
}

/// A principal bound to tenants reaching for another tenant's work, or for what is
/// cluster-wide.
pub fn other_tenant(message: impl Into<String>) -> Status {
    with_kind(Code::PermissionDenied, "tenant_denied", message)
}
