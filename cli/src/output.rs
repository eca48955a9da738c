//! How answers print: tables for people, one JSON value per answer with `--json`.

use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use rota_client::proto as pb;
use serde_json::{json, Value};

/// A job status as the CLI names it.
pub fn status_name(status: i32) -> &'static str {
    pb::job_status_name(status).unwrap_or("unknown")
}

fn plan_status_name(status: pb::PlanStatus) -> &'static str {
    match status {
        pb::PlanStatus::Pending => "pending",
        pb::PlanStatus::Running => "running",
        pb::PlanStatus::Failing => "failing",
        pb::PlanStatus::Succeeded => "succeeded",
        pb::PlanStatus::Failed => "failed",
        pb::PlanStatus::Unspecified => "unknown",
    }
}

/// A table with the CLI's borders and `header`.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_header(header.to_vec());
    table
}

fn scope_text(scope: &Option<pb::Scope>) -> String {
    let tenant = scope
        .as_ref()
        .and_then(|s| s.tenant.clone())
        .unwrap_or_else(|| "*".to_owned());
    let job_type = scope
        .as_ref()
        .and_then(|s| s.job_type.clone())
        .unwrap_or_else(|| "*".to_owned());
    format!("{tenant}/{job_type}")
}

fn job_json(job: &pb::Job) -> Value {
    let mut value = job_fields(job);
    // Apart: one json! of every field passes the macro's recursion limit.
    value["held_by"] = json!(job.held_by);
    value["eligible_ms"] = json!(job.eligible_ms);
    value["held_detail"] = json!(job.held_detail);
    value
}

fn job_fields(job: &pb::Job) -> Value {
    let spec = job.spec.clone().unwrap_or_default();
    json!({
        "id": job.id,
        "status": status_name(job.status),
        "tenant": spec.tenant,
        "job_type": spec.job_type,
        "priority": spec.priority,
        "payload_bytes": spec.payload.len(),
        "payload_digest": job.payload_digest,
        "idempotency_key": spec.idempotency_key,
        "depends_on": spec.depends_on,
        "project": spec.project,
        "not_before_ms": spec.not_before_ms,
        "correlation_id": spec.correlation_id,
        "lease_ttl_ms": spec.lease_ttl_ms,
        "retry": spec.retry.map(|r| json!({
            "max_attempts": r.max_attempts,
            "base_backoff_ms": r.base_backoff_ms,
            "max_backoff_ms": r.max_backoff_ms,
        })),
        "inputs": spec.inputs.iter().map(artifact_json).collect::<Vec<_>>(),
        "backfill": spec.backfill.map(|b| json!({"reason": b.reason, "ticket": b.ticket})),
        "schedule_id": job.schedule_id,
        "created_ms": job.created_ms,
        "plan_id": job.plan_id,
        "plan_step": job.plan_step,
        "replay_of": job.replay_of,
        "lease_id": job.lease_id,
        "lease_worker": job.lease_worker,
        "lease_until_ms": job.lease_until_ms,
        "retry_at_ms": job.retry_at_ms,
        "finished_ms": job.finished_ms,
        "error": job.error,
        "attempt_count": job.attempt_count,
        "archived": job.archived,
        "archived_ms": job.archived_ms,
        "attempts": job.attempts.iter().map(|a| json!({
            "number": a.number, "worker": a.worker, "lease_id": a.lease_id,
            "started_ms": a.started_ms, "ended_ms": a.ended_ms,
            "outcome": pb::AttemptOutcome::try_from(a.outcome).map_or("unknown", |o| o.as_str_name()),
            "error": a.error,
            "outputs": a.outputs.iter().map(artifact_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "history": job.history.iter().map(|e| json!({
            "log_index": e.log_index, "at_ms": e.at_ms, "kind": e.kind, "detail": e.detail,
        })).collect::<Vec<_>>(),
    })
}

fn artifact_json(a: &pb::Artifact) -> Value {
    json!({"name": a.name, "uri": a.uri, "digest": a.digest})
}

/// A byte count for people: B, KiB, MiB or GiB.
fn bytes_text(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", units[unit]),
    }
}

/// A window of log time for people, as `rota retention set` takes it.
fn window_text(ms: Option<u64>) -> String {
    ms.map_or_else(
        || "-".to_owned(),
        |ms| humantime::format_duration(std::time::Duration::from_millis(ms)).to_string(),
    )
}

/// Prints answers as tables or JSON.
pub struct Output {
    /// JSON, one value per answer, instead of tables.
    pub json: bool,
}

impl Output {
    /// Prints `value` as JSON, or the text `text` makes.
    pub fn show(&self, value: Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", text());
        }
    }

    /// A new token's secret, which the cluster will never show again.
    pub fn new_token(&self, token: &pb::CreateTokenResponse) {
        self.show(
            json!({"name": token.name, "secret": token.secret, "expires_ms": token.expires_ms}),
            || {
                format!(
                    "token {:?} created{}. Its secret, shown this once (the cluster keeps only a hash):\n\n  {}\n\nUse it as ROTA_TOKEN={} (or --token), or `authorization: Bearer …` from any client.",
                    token.name,
                    token
                        .expires_ms
                        .map(|ms| format!(", expiring at log time {ms} ms"))
                        .unwrap_or_default(),
                    token.secret,
                    token.secret,
                )
            },
        );
    }

    /// The bootstrap token `rota cluster init` asked for.
    pub fn bootstrap_token(&self, token: &pb::CreateTokenResponse) {
        self.show(
            json!({"bootstrap_token": token.secret}),
            || {
                format!(
                    "\nBootstrap token (every scope; shown this once, never again):\n\n  {}\n\nWith auth on (a cluster with TLS), use it as ROTA_TOKEN to create the tokens people and workers need (`rota token create`), then revoke it.",
                    token.secret
                )
            },
        );
    }

    /// The cluster's tokens.
    pub fn tokens(&self, list: &pb::ListTokensResponse) {
        let tokens: Vec<Value> = list
            .tokens
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "scopes": t.scopes,
                    "tenants": t.tenants,
                    "created_ms": t.created_ms,
                    "expires_ms": t.expires_ms,
                    "created_by": t.created_by,
                    "expired": t.expired,
                })
            })
            .collect();
        self.show(json!({ "tokens": tokens }), || {
            let mut table = table(&["name", "scopes", "tenants", "created by", "expires"]);
            for t in &list.tokens {
                let expires = match (t.expires_ms, t.expired) {
                    (_, true) => "expired".to_owned(),
                    (Some(ms), false) => format!("at {ms} ms"),
                    (None, false) => "never".to_owned(),
                };
                let tenants = if t.tenants.is_empty() {
                    "all".to_owned()
                } else {
                    t.tenants.join(",")
                };
                table.add_row(vec![
                    t.name.clone(),
                    t.scopes.join(","),
                    tenants,
                    t.created_by.clone(),
                    expires,
                ]);
            }
            table.to_string()
        });
    }

    /// Prints the outcome of a change that answers nothing but success.
    pub fn done(&self, message: &str) {
        self.show(json!({"ok": true, "message": message}), || {
            message.to_owned()
        });
    }

    /// A page of jobs, with the flag that fetches the next.
    pub fn jobs(&self, page: &pb::ListJobsResponse) {
        let jobs: Vec<Value> = page.jobs.iter().map(job_json).collect();
        self.show(json!({"jobs": jobs, "next_after": page.next_after}), || {
            let mut table = table(&["id", "status", "tenant", "type", "attempts", "error"]);
            for job in &page.jobs {
                let spec = job.spec.clone().unwrap_or_default();
                table.add_row(vec![
                    job.id.to_string(),
                    status_name(job.status).to_owned(),
                    spec.tenant,
                    spec.job_type,
                    job.attempt_count.to_string(),
                    job.error.clone().unwrap_or_default(),
                ]);
            }
            match page.next_after {
                Some(next) => format!("{table}\nmore: --after {next}"),
                None => table.to_string(),
            }
        });
    }

    /// One job with its attempts and history.
    pub fn job(&self, job: &pb::Job) {
        self.show(job_json(job), || {
            let spec = job.spec.clone().unwrap_or_default();
            let mut text = format!(
                "job {}  {}  tenant={} type={} priority={}\npayload: {} bytes, sha256 {}\n",
                job.id,
                status_name(job.status),
                spec.tenant,
                spec.job_type,
                spec.priority.unwrap_or_default(),
                spec.payload.len(),
                job.payload_digest,
            );
            if let Some(error) = &job.error {
                text.push_str(&format!("error: {error}\n"));
            }
            if let Some(detail) = &job.held_detail {
                text.push_str(&format!("held back: {detail}"));
                if let Some(at) = job.eligible_ms {
                    text.push_str(&format!(" (eligible at log time {at})"));
                }
                text.push('\n');
            }
            if let Some(at) = job.archived_ms {
                text.push_str(&format!(
                    "archived at log time {at}: past its retention window, read-only\n"
                ));
            }
            let mut attempts = table(&[
                "attempt", "worker", "lease", "started", "ended", "outcome", "error",
            ]);
            for a in &job.attempts {
                attempts.add_row(vec![
                    a.number.to_string(),
                    a.worker.clone(),
                    a.lease_id.to_string(),
                    a.started_ms.to_string(),
                    a.ended_ms.map(|m| m.to_string()).unwrap_or_default(),
                    pb::AttemptOutcome::try_from(a.outcome)
                        .map_or("unknown", |o| o.as_str_name())
                        .to_owned(),
                    a.error.clone().unwrap_or_default(),
                ]);
            }
            let mut history = table(&["log index", "at", "event", "detail"]);
            for e in &job.history {
                history.add_row(vec![
                    e.log_index.to_string(),
                    e.at_ms.to_string(),
                    e.kind.clone(),
                    e.detail.clone(),
                ]);
            }
            text.push_str(&format!("{attempts}\n{history}"));
            text
        });
    }

    /// A plan's status and its steps.
    pub fn plan(&self, plan: &pb::GetPlanResponse) {
        let status = pb::PlanStatus::try_from(plan.status).map_or("unknown", plan_status_name);
        let steps: Vec<Value> = plan
            .steps
            .iter()
            .map(|s| json!({"key": s.key, "job_id": s.job_id, "status": status_name(s.status)}))
            .collect();
        self.show(
            json!({"plan_id": plan.plan_id, "status": status, "created_ms": plan.created_ms, "steps": steps, "archived": plan.archived}),
            || {
                let mut table = table(&["step", "job", "status"]);
                for s in &plan.steps {
                    table.add_row(vec![s.key.clone(), s.job_id.to_string(), status_name(s.status).to_owned()]);
                }
                let archived = if plan.archived { " (archived)" } else { "" };
                format!("plan {} is {status}{archived}\n{table}", plan.plan_id)
            },
        );
    }

    /// Each node's view of the cluster, and the members.
    pub fn cluster(&self, statuses: &[pb::ClusterStatusResponse]) {
        let values: Vec<Value> = statuses
            .iter()
            .map(|s| {
                json!({
                    "cluster_id": s.cluster_id,
                    "node_id": s.node_id, "role": s.role, "raft_error": s.raft_error,
                    "leader_id": s.leader_id,
                    "leader_addr": s.leader_addr, "term": s.term,
                    "last_log_index": s.last_log_index, "applied_index": s.applied_index,
                    "state_digest": s.state_digest, "log_time_ms": s.log_time_ms,
                    "members": s.members.iter().map(|m| json!({"id": m.id, "addr": m.addr, "voter": m.voter})).collect::<Vec<_>>(),
                    "jobs": s.jobs.iter().map(|c| json!({"status": status_name(c.status), "count": c.count})).collect::<Vec<_>>(),
                    "archive": s.archive.map(|a| json!({"records": a.records, "bytes": a.bytes})),
                })
            })
            .collect();
        self.show(json!({"nodes": values}), || {
            let mut table = table(&[
                "node", "role", "leader", "term", "log", "applied", "archive", "digest",
            ]);
            for s in statuses {
                let archive = s.archive.unwrap_or_default();
                table.add_row(vec![
                    s.node_id.to_string(),
                    match &s.raft_error {
                        Some(error) => format!("{} ({error})", s.role),
                        None => s.role.clone(),
                    },
                    s.leader_id
                        .map(|l| l.to_string())
                        .unwrap_or_else(|| "-".to_owned()),
                    s.term.to_string(),
                    s.last_log_index.map(|i| i.to_string()).unwrap_or_default(),
                    s.applied_index.map(|i| i.to_string()).unwrap_or_default(),
                    format!("{} records, {}", archive.records, bytes_text(archive.bytes)),
                    s.state_digest.chars().take(16).collect(),
                ]);
            }
            let members = statuses
                .first()
                .map(|s| {
                    s.members
                        .iter()
                        .map(|m| {
                            format!(
                                "{}={}{}",
                                m.id,
                                m.addr,
                                if m.voter { "" } else { " (learner)" }
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let cluster = statuses
                .iter()
                .find_map(|s| s.cluster_id.clone())
                .unwrap_or_else(|| "- (not named yet)".to_owned());
            format!("{table}\nmembers: {members}\ncluster: {cluster}")
        });
    }

    /// The retention windows in force and the archive's size, as one node sees them.
    pub fn retention(&self, status: &pb::ClusterStatusResponse) {
        let r = status.retention.unwrap_or_default();
        let archive = status.archive.unwrap_or_default();
        self.show(
            json!({
                "succeeded_ms": r.succeeded_ms, "canceled_ms": r.canceled_ms,
                "dead_lettered_ms": r.dead_lettered_ms, "history_ms": r.history_ms,
                "archive_ms": r.archive_ms,
                "archive": {"records": archive.records, "bytes": archive.bytes},
            }),
            || {
                let mut t = table(&["kept", "for"]);
                for (what, ms) in [
                    ("succeeded jobs, in memory", r.succeeded_ms),
                    ("canceled jobs, in memory", r.canceled_ms),
                    ("dead-lettered jobs, in memory", r.dead_lettered_ms),
                    ("incidents and governance history, in memory", r.history_ms),
                    ("anything archived, in the archive", r.archive_ms),
                ] {
                    t.add_row(vec![what.to_owned(), window_text(ms)]);
                }
                format!(
                    "{t}\narchive: {} records, {}",
                    archive.records,
                    bytes_text(archive.bytes)
                )
            },
        );
    }

    /// Maintenance, queue depths and every governance control in force.
    pub fn governance(&self, view: &pb::GetGovernanceResponse) {
        let quotas: Vec<Value> = view
            .quotas
            .iter()
            .map(|q| json!({"scope": scope_text(&q.scope), "max_active": q.max_active, "max_per_hour": q.max_per_hour, "burst": q.burst, "active": q.active}))
            .collect();
        let throttles: Vec<Value> = view
            .throttles
            .iter()
            .map(|t| json!({"scope": scope_text(&t.scope), "max_concurrent": t.max_concurrent, "active": t.active}))
            .collect();
        let paused: Vec<Value> = view
            .paused
            .iter()
            .map(|p| json!({"scope": scope_text(&p.scope), "reason": p.stamp.as_ref().map(|s| s.reason.clone())}))
            .collect();
        let incidents: Vec<Value> = view
            .incidents
            .iter()
            .map(|i| json!({
                "id": i.id, "job_type": i.job_type, "opened_ms": i.opened_ms,
                "failure_rate_percent": i.failure_rate_percent, "resolved": i.resolved,
                "archived": i.archived,
                "acknowledged_by": i.acknowledged_by.as_ref().map(|s| json!({"actor": s.actor, "reason": s.reason, "ticket": s.ticket})),
                "acknowledged_ms": i.acknowledged_ms,
                "resolved_by": i.resolved_by.as_ref().map(|s| json!({"actor": s.actor, "reason": s.reason, "ticket": s.ticket})),
                "resolved_ms": i.resolved_ms,
            }))
            .collect();
        let queues: Vec<Value> = view
            .queues
            .iter()
            .map(|q| json!({"tenant": q.tenant, "job_type": q.job_type, "pending": q.pending, "ready": q.ready, "leased": q.leased, "retrying": q.retrying}))
            .collect();
        let maintenance = view
            .maintenance
            .as_ref()
            .map(|s| json!({"actor": s.actor, "reason": s.reason}));
        self.show(
            json!({"quotas": quotas, "throttles": throttles, "paused": paused, "incidents": incidents, "maintenance": maintenance, "queues": queues}),
            || {
                let mut text = match &view.maintenance {
                    Some(s) => format!("maintenance mode ON ({}: {})\n", s.actor, s.reason),
                    None => "maintenance mode off\n".to_owned(),
                };
                let mut q = table(&["queue", "pending", "ready", "leased", "retrying"]);
                for d in &view.queues {
                    q.add_row(vec![format!("{}/{}", d.tenant, d.job_type), d.pending.to_string(), d.ready.to_string(), d.leased.to_string(), d.retrying.to_string()]);
                }
                let mut g = table(&["control", "scope", "setting", "active"]);
                for x in &view.quotas {
                    let setting = format!("max_active={} max_per_hour={}", x.max_active.map_or("-".to_owned(), |v| v.to_string()), x.max_per_hour.map_or("-".to_owned(), |v| v.to_string()));
                    g.add_row(vec!["quota".to_owned(), scope_text(&x.scope), setting, x.active.to_string()]);
                }
                for x in &view.throttles {
                    g.add_row(vec!["throttle".to_owned(), scope_text(&x.scope), format!("max_concurrent={}", x.max_concurrent), x.active.to_string()]);
                }
                for x in &view.paused {
                    g.add_row(vec!["paused".to_owned(), scope_text(&x.scope), x.stamp.as_ref().map(|s| s.reason.clone()).unwrap_or_default(), String::new()]);
                }
                for x in &view.incidents {
                    let state = match (x.archived, x.resolved, &x.acknowledged_by) {
                        (true, _, _) => "archived".to_owned(),
                        (false, true, _) => "resolved".to_owned(),
                        (false, false, Some(by)) => format!("OPEN, acknowledged by {}", by.actor),
                        (false, false, None) => "OPEN".to_owned(),
                    };
                    g.add_row(vec![format!("incident {}", x.id), x.job_type.clone(), format!("{}% failing", x.failure_rate_percent), state]);
                }
                text.push_str(&format!("{q}\n{g}"));
                text
            },
        );
    }
}
