//! `rota schedule ...`: recurring schedules.

use crate::args::{Global, ReasonArgs, ScheduleCmd, ScheduleCreateArgs};
use crate::jobs::submit_spec;
use crate::output::{table, Output};
use anyhow::{bail, Context, Result};
use rota_client::proto as pb;
use rota_client::Client;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `rota schedule create|list|show|pause|resume|delete`.
pub async fn schedule(
    cmd: ScheduleCmd,
    global: &Global,
    client: &Client,
    out: &Output,
) -> Result<()> {
    match cmd {
        ScheduleCmd::Create(args) => {
            let name = args.name.clone();
            client
                .create_schedule(create_request(*args, global)?)
                .await?;
            out.done(&format!("schedule {name} created"));
        }
        ScheduleCmd::List => {
            let listed = client
                .list_schedules(pb::ListSchedulesRequest {
                    read: global.read_options(),
                })
                .await?;
            let rows: Vec<Value> = listed.schedules.iter().map(schedule_json).collect();
            out.show(json!({ "schedules": rows }), || {
                let mut table = table(&["name", "cadence", "tenant", "type", "next", "state"]);
                for s in &listed.schedules {
                    let template = s.template.clone().unwrap_or_default();
                    table.add_row(vec![
                        s.id.clone(),
                        cadence_text(s),
                        template.tenant,
                        template.job_type,
                        s.next_fire_ms.map_or("-".to_owned(), time_text),
                        state_text(s).to_owned(),
                    ]);
                }
                table.to_string()
            });
        }
        ScheduleCmd::Show { name, upcoming } => {
            let shown = client
                .get_schedule(pb::GetScheduleRequest {
                    id: name,
                    read: global.read_options(),
                    upcoming,
                })
                .await?;
            let Some(s) = shown.schedule else {
                bail!("the node answered without the schedule");
            };
            out.show(schedule_json(&s), || {
                let template = s.template.clone().unwrap_or_default();
                let mut lines = vec![
                    format!("schedule {} ({})", s.id, state_text(&s)),
                    format!("  cadence   {}", cadence_text(&s)),
                    format!("  catch-up  {}", catch_up_text(&s)),
                    format!("  job       {} / {}", template.tenant, template.job_type),
                ];
                if let Some(start) = s.start_ms {
                    lines.push(format!("  start     {}", time_text(start)));
                }
                if let Some(end) = s.end_ms {
                    lines.push(format!("  end       {}", time_text(end)));
                }
                if let Some(last) = s.last_fired_ms {
                    lines.push(format!("  last      {}", time_text(last)));
                }
                if let Some(by) = &s.created_by {
                    lines.push(format!("  created   by {}: {}", by.actor, by.reason));
                }
                lines.push("  next firings:".to_owned());
                if s.upcoming_ms.is_empty() {
                    lines.push("    none".to_owned());
                }
                for t in &s.upcoming_ms {
                    lines.push(format!("    {}", time_text(*t)));
                }
                lines.join("\n")
            });
        }
        ScheduleCmd::Pause { name, why } => {
            client
                .pause_schedule(request(name.clone(), why, global))
                .await?;
            out.done(&format!("schedule {name} paused"));
        }
        ScheduleCmd::Resume { name, why } => {
            client
                .resume_schedule(request(name.clone(), why, global))
                .await?;
            out.done(&format!("schedule {name} resumed"));
        }
        ScheduleCmd::Backfill {
            name,
            since,
            until,
            at,
            reason,
            ticket,
        } => {
            let epoch = |t: humantime::Timestamp| {
                SystemTime::from(t)
                    .duration_since(UNIX_EPOCH)
                    .map_err(|_| anyhow::anyhow!("a time before 1970"))
                    .and_then(millis)
            };
            let answer = client
                .backfill_schedule(pb::BackfillScheduleRequest {
                    session: None,
                    schedule_id: name.clone(),
                    since_ms: since.map(epoch).transpose()?,
                    until_ms: until.map(epoch).transpose()?,
                    fire_times: at.into_iter().map(epoch).collect::<Result<_>>()?,
                    stamp: Some(global.stamp(reason, Some(ticket))),
                })
                .await?;
            let jobs: Vec<Value> = answer
                .jobs
                .iter()
                .map(|j| json!({"fire_ms": j.key, "job_id": j.job_id}))
                .collect();
            out.show(json!({"plan_id": answer.plan_id, "jobs": jobs}), || {
                format!(
                    "backfill of {name}: plan {} with {} fire times (rota plan show {} for its progress)",
                    answer.plan_id,
                    answer.jobs.len(),
                    answer.plan_id
                )
            });
        }
        ScheduleCmd::Delete { name, why } => {
            client
                .delete_schedule(request(name.clone(), why, global))
                .await?;
            out.done(&format!("schedule {name} deleted (its jobs stay)"));
        }
    }
    Ok(())
}

fn request(id: String, why: ReasonArgs, global: &Global) -> pb::ScheduleRequest {
    pb::ScheduleRequest {
        session: None,
        id,
        stamp: Some(global.stamp(why.reason, why.ticket)),
    }
}

fn create_request(args: ScheduleCreateArgs, global: &Global) -> Result<pb::CreateScheduleRequest> {
    use pb::create_schedule_request::Cadence;
    let cadence = match (args.cron, args.every) {
        (Some(cron), _) => Cadence::Cron(cron),
        (None, Some(every)) => Cadence::IntervalMs(millis(*every)?),
        (None, None) => bail!("give --cron or --every"),
    };
    let (catch_up, catch_up_max) = match args.catch_up.as_str() {
        "skip" => (pb::CatchUp::Skip, 0),
        "run-once" => (pb::CatchUp::RunOnce, 0),
        "run-each" => (pb::CatchUp::RunEach, args.catch_up_max),
        other => bail!("--catch-up {other:?}: skip, run-once or run-each"),
    };
    let since_epoch = |t: humantime::Timestamp, flag: &str| {
        SystemTime::from(t)
            .duration_since(UNIX_EPOCH)
            .map_err(|_| anyhow::anyhow!("{flag} is before 1970"))
            .and_then(millis)
    };
    Ok(pb::CreateScheduleRequest {
        session: None,
        id: args.name,
        template: Some(submit_spec(args.job)?),
        cadence: Some(cadence),
        catch_up: catch_up.into(),
        catch_up_max,
        start_ms: args.start.map(|t| since_epoch(t, "--start")).transpose()?,
        end_ms: args.end.map(|t| since_epoch(t, "--end")).transpose()?,
        stamp: Some(global.stamp(args.why.reason, args.why.ticket)),
    })
}

fn millis(d: Duration) -> Result<u64> {
    u64::try_from(d.as_millis()).context("the time is out of range")
}

fn schedule_json(s: &pb::Schedule) -> Value {
    let template = s.template.clone().unwrap_or_default();
    let (cron, interval_ms) = match &s.cadence {
        Some(pb::schedule::Cadence::Cron(c)) => (Some(c.clone()), None),
        Some(pb::schedule::Cadence::IntervalMs(ms)) => (None, Some(*ms)),
        None => (None, None),
    };
    json!({
        "name": s.id,
        "cron": cron,
        "interval_ms": interval_ms,
        "catch_up": catch_up_text(s),
        "tenant": template.tenant,
        "job_type": template.job_type,
        "start_ms": s.start_ms,
        "end_ms": s.end_ms,
        "paused": s.paused,
        "next_fire_ms": s.next_fire_ms,
        "last_fired_ms": s.last_fired_ms,
        "upcoming_ms": s.upcoming_ms,
        "created_by": s.created_by.as_ref().map(|b| json!({
            "actor": b.actor, "reason": b.reason, "ticket": b.ticket,
        })),
    })
}

fn cadence_text(s: &pb::Schedule) -> String {
    match &s.cadence {
        Some(pb::schedule::Cadence::Cron(c)) => format!("cron {c}"),
        Some(pb::schedule::Cadence::IntervalMs(ms)) => {
            format!(
                "every {}",
                humantime::format_duration(Duration::from_millis(*ms))
            )
        }
        None => "-".to_owned(),
    }
}

fn catch_up_text(s: &pb::Schedule) -> String {
    match pb::CatchUp::try_from(s.catch_up) {
        Ok(pb::CatchUp::RunOnce) => "run-once".to_owned(),
        Ok(pb::CatchUp::RunEach) => format!("run-each (at most {})", s.catch_up_max),
        _ => "skip".to_owned(),
    }
}

fn state_text(s: &pb::Schedule) -> &'static str {
    match (s.paused, s.next_fire_ms) {
        (true, _) => "paused",
        (false, Some(_)) => "active",
        (false, None) => "ended",
    }
}

/// A time for people: RFC 3339, or the milliseconds where humantime cannot write the year.
pub fn time_text(ms: u64) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    match write!(
        text,
        "{}",
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms))
    ) {
        Ok(()) => text,
        Err(_) => format!("{ms} ms"),
    }
}
