//! Operators' governance commands: quotas, throttles, paused sources, maintenance mode,
//! circuit breakers, and the view of all of them (`rota governance`).

use crate::args::{
    BreakerCmd, Global, GovernanceCmd, IncidentCmd, MaintenanceCmd, QuotaCmd, RetentionCmd,
    ScopeArgs, SourceCmd, TenantCmd, ThrottleArgs,
};
use crate::output::{table, Output};
use anyhow::{bail, Context, Result};
use rota_client::proto as pb;
use rota_client::Client;
use serde_json::{json, Value};

/// `rota quota set`.
pub async fn quota(cmd: QuotaCmd, global: &Global, client: &Client, out: &Output) -> Result<()> {
    let QuotaCmd::Set {
        tenant,
        job_type,
        max_active,
        max_per_hour,
        burst,
        reason,
        ticket,
    } = cmd;
    client
        .set_quota(pb::SetQuotaRequest {
            session: None,
            tenant,
            job_type,
            max_active,
            max_per_hour,
            burst,
            stamp: Some(global.stamp(reason, ticket)),
        })
        .await?;
    out.done("quota set");
    Ok(())
}

/// `rota tenant block|unblock`.
pub async fn tenant(cmd: TenantCmd, global: &Global, client: &Client, out: &Output) -> Result<()> {
    let (tenant, blocked, why) = match cmd {
        TenantCmd::Block { tenant, why } => (tenant, true, why),
        TenantCmd::Unblock { tenant, why } => (tenant, false, why),
    };
    client
        .block_tenant(pb::BlockTenantRequest {
            session: None,
            tenant: tenant.clone(),
            blocked,
            stamp: Some(global.stamp(why.reason, why.ticket)),
        })
        .await?;
    out.done(&match blocked {
        true => format!("tenant {tenant} blocked: its enqueues are refused, its jobs held"),
        false => format!("tenant {tenant} unblocked"),
    });
    Ok(())
}

/// `rota throttle`: sets or lifts a concurrency cap.
pub async fn throttle(
    args: ThrottleArgs,
    global: &Global,
    client: &Client,
    out: &Output,
) -> Result<()> {
    let max_concurrent = if args.lift { None } else { args.max_concurrent };
    client
        .throttle(pb::ThrottleRequest {
            session: None,
            scope: Some(scope(args.scope)?),
            max_concurrent,
            stamp: Some(global.stamp(args.reason, None)),
        })
        .await?;
    out.done(if max_concurrent.is_some() {
        "throttle set"
    } else {
        "throttle lifted"
    });
    Ok(())
}

/// `rota source pause|resume`.
pub async fn source(cmd: SourceCmd, global: &Global, client: &Client, out: &Output) -> Result<()> {
    match cmd {
        SourceCmd::Pause { scope: s, reason } => {
            let request = pb::SourceRequest {
                session: None,
                scope: Some(scope(s)?),
                stamp: Some(global.stamp(reason, None)),
            };
            client.pause_source(request).await?;
            out.done("source paused");
        }
        SourceCmd::Resume { scope: s, reason } => {
            let request = pb::SourceRequest {
                session: None,
                scope: Some(scope(s)?),
                stamp: Some(global.stamp(reason, None)),
            };
            client.resume_source(request).await?;
            out.done("source resumed");
        }
    }
    Ok(())
}

/// `rota maintenance on|off`.
pub async fn maintenance(
    cmd: MaintenanceCmd,
    global: &Global,
    client: &Client,
    out: &Output,
) -> Result<()> {
    let (enabled, reason) = match cmd {
        MaintenanceCmd::On { reason } => (true, reason),
        MaintenanceCmd::Off { reason } => (false, reason),
    };
    client
        .set_maintenance(pb::SetMaintenanceRequest {
            session: None,
            enabled,
            stamp: Some(global.stamp(reason, None)),
        })
        .await?;
    out.done(if enabled {
        "maintenance mode on: no new leases"
    } else {
        "maintenance mode off"
    });
    Ok(())
}

/// `rota breaker set|remove|reset`.
pub async fn breaker(
    cmd: BreakerCmd,
    global: &Global,
    client: &Client,
    out: &Output,
) -> Result<()> {
    match cmd {
        BreakerCmd::Set {
            job_type,
            threshold_percent,
            window_ms,
            min_attempts,
            reason,
        } => {
            let config = pb::BreakerConfig {
                failure_threshold_percent: threshold_percent,
                window_ms,
                min_attempts,
            };
            configure_breaker(client, global, job_type, Some(config), reason).await?;
            out.done("breaker set");
        }
        BreakerCmd::Remove { job_type, reason } => {
            configure_breaker(client, global, job_type, None, reason).await?;
            out.done("breaker removed");
        }
        BreakerCmd::Reset { job_type, reason } => {
            client
                .reset_breaker(pb::ResetBreakerRequest {
                    session: None,
                    job_type,
                    stamp: Some(global.stamp(reason, None)),
                })
                .await?;
            out.done("breaker reset");
        }
    }
    Ok(())
}

async fn configure_breaker(
    client: &Client,
    global: &Global,
    job_type: String,
    config: Option<pb::BreakerConfig>,
    reason: String,
) -> Result<()> {
    client
        .configure_breaker(pb::ConfigureBreakerRequest {
            session: None,
            job_type,
            config,
            stamp: Some(global.stamp(reason, None)),
        })
        .await?;
    Ok(())
}

/// `rota governance`: everything in force, and the queues.
/// `rota governance history`: pages through the history until `limit` changes.
pub async fn history(
    cmd: GovernanceCmd,
    global: &Global,
    client: &Client,
    out: &Output,
) -> Result<()> {
    let GovernanceCmd::History {
        kinds,
        since,
        until,
        archived,
        limit,
    } = cmd;
    let millis = |t: humantime::Timestamp, flag: &str| -> Result<u64> {
        std::time::SystemTime::from(t)
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_millis()).ok())
            .with_context(|| format!("{flag} is out of range"))
    };
    let mut request = pb::GovernanceHistoryRequest {
        read: global.read_options(),
        kinds,
        since_ms: since.map(|t| millis(t, "--since")).transpose()?,
        until_ms: until.map(|t| millis(t, "--until")).transpose()?,
        after_index: None,
        limit: 1_000,
        archived,
    };
    let mut events = Vec::new();
    while events.len() < limit {
        let page = client.governance_history(request.clone()).await?;
        events.extend(page.events);
        match page.next_after {
            Some(next) => request.after_index = Some(next),
            None => break,
        }
    }
    events.truncate(limit);
    let rows: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "log_index": e.log_index,
                "at_ms": e.at_ms,
                "kind": e.kind,
                "actor": e.stamp.as_ref().map(|s| s.actor.clone()),
                "reason": e.stamp.as_ref().map(|s| s.reason.clone()),
                "ticket": e.stamp.as_ref().and_then(|s| s.ticket.clone()),
                "detail": e.detail,
                "archived": e.archived,
            })
        })
        .collect();
    out.show(json!({ "events": rows }), || {
        let mut table = table(&[
            "index", "time", "kind", "actor", "reason", "ticket", "detail",
        ]);
        for e in &events {
            let stamp = e.stamp.clone().unwrap_or_default();
            table.add_row(vec![
                e.log_index.to_string(),
                crate::schedule::time_text(e.at_ms),
                e.kind.clone(),
                stamp.actor,
                stamp.reason,
                stamp.ticket.unwrap_or_default(),
                e.detail.clone(),
            ]);
        }
        table.to_string()
    });
    Ok(())
}

pub async fn show(archived: bool, global: &Global, client: &Client, out: &Output) -> Result<()> {
    let view = client
        .get_governance(pb::GetGovernanceRequest {
            read: global.read_options(),
            archived_incidents: archived,
        })
        .await?;
    out.governance(&view);
    Ok(())
}

/// `rota retention show|set`.
pub async fn retention(
    cmd: RetentionCmd,
    global: &Global,
    client: &Client,
    out: &Output,
) -> Result<()> {
    match cmd {
        RetentionCmd::Show => {
            let status = client
                .cluster_status(pb::ClusterStatusRequest {
                    digest: false,
                    leader_view: false,
                })
                .await?;
            out.retention(&status);
        }
        RetentionCmd::Set {
            succeeded,
            canceled,
            dead_lettered,
            history,
            archive,
            reason,
            ticket,
        } => {
            let ms = |d: Option<std::time::Duration>| {
                d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            };
            client
                .set_retention(pb::SetRetentionRequest {
                    session: None,
                    retention: Some(pb::Retention {
                        succeeded_ms: ms(succeeded),
                        canceled_ms: ms(canceled),
                        dead_lettered_ms: ms(dead_lettered),
                        history_ms: ms(history),
                        archive_ms: ms(archive),
                    }),
                    stamp: Some(global.stamp(reason, ticket)),
                })
                .await?;
            out.done("retention windows set");
        }
    }
    Ok(())
}

fn scope(args: ScopeArgs) -> Result<pb::Scope> {
    if args.tenant.is_none() && args.job_type.is_none() {
        bail!("give --tenant, --type, or both");
    }
    Ok(pb::Scope {
        tenant: args.tenant,
        job_type: args.job_type,
    })
}

/// `rota incident ack|resolve`.
pub async fn incident(
    cmd: IncidentCmd,
    global: &Global,
    client: &Client,
    out: &Output,
) -> Result<()> {
    let (resolve, id, why) = match cmd {
        IncidentCmd::Ack { id, why } => (false, id, why),
        IncidentCmd::Resolve { id, why } => (true, id, why),
    };
    let request = pb::IncidentRequest {
        session: None,
        incident_id: id,
        stamp: Some(global.stamp(why.reason, why.ticket)),
    };
    if resolve {
        client.resolve_incident(request).await?;
        out.done(&format!("incident {id} resolved"));
    } else {
        client.acknowledge_incident(request).await?;
        out.done(&format!("incident {id} acknowledged"));
    }
    Ok(())
}
