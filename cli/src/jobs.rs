//! Producers' and operators' job commands: `rota job`, `rota plan`, `rota dlq`, and the
//! plan file format.

use crate::args::{DlqCmd, Global, JobCmd, PlanCmd, SubmitArgs};
use crate::output::{status_name, table, Output};
use anyhow::{bail, Context, Result};
use rota_client::proto as pb;
use rota_client::Client;
use serde::Deserialize;
use serde_json::{json, Value};

/// `rota job ...`.
pub async fn job(cmd: JobCmd, global: &Global, client: &Client, out: &Output) -> Result<()> {
    match cmd {
        JobCmd::Submit(args) => submit(*args, client, out).await,
        JobCmd::List {
            status,
            tenant,
            job_type,
            limit,
            after,
            archived,
        } => {
            let status = match status {
                None => pb::JobStatus::Unspecified,
                Some(name) => parse_status(&name)?,
            };
            let page = client
                .list_jobs(pb::ListJobsRequest {
                    status: status as i32,
                    tenant,
                    job_type,
                    since_ms: None,
                    until_ms: None,
                    after,
                    limit,
                    read: global.read_options(),
                    summary: true,
                    archived,
                })
                .await?;
            out.jobs(&page);
            Ok(())
        }
        JobCmd::Show { id, signed } => {
            let answer = client
                .get_job(pb::GetJobRequest {
                    signed,
                    job_id: id,
                    read: global.read_options(),
                })
                .await?;
            if signed {
                let envelope = answer
                    .signed
                    .context("the node answered without the signed record")?;
                // The envelope is JSON as the node wrote it: printed byte for byte.
                println!("{}", String::from_utf8_lossy(&envelope));
                return Ok(());
            }
            let job = answer.job.context("the node answered without the job")?;
            out.job(&job);
            Ok(())
        }
        JobCmd::Cancel { id, reason } => {
            client
                .cancel_job(pb::CancelJobRequest {
                    session: None,
                    job_id: id,
                    stamp: Some(global.stamp(reason, None)),
                })
                .await?;
            out.show(json!({"job_id": id, "canceled": true}), || {
                format!("job {id} canceled")
            });
            Ok(())
        }
        JobCmd::Replay { id, reason } => {
            let answer = client
                .replay_job(pb::ReplayJobRequest {
                    session: None,
                    job_id: id,
                    stamp: Some(global.stamp(reason, None)),
                })
                .await?;
            out.show(json!({"replay_of": id, "job_id": answer.job_id}), || {
                format!("job {id} replayed as job {}", answer.job_id)
            });
            Ok(())
        }
        JobCmd::Release { id, lease, why } => {
            client
                .release_lease(pb::ReleaseLeaseRequest {
                    session: None,
                    job_id: id,
                    lease_id: lease,
                    stamp: Some(global.stamp(why.reason, why.ticket)),
                })
                .await?;
            out.show(json!({"job_id": id, "released": true}), || {
                format!("job {id}: lease released, the job is ready again")
            });
            Ok(())
        }
    }
}

async fn submit(args: SubmitArgs, client: &Client, out: &Output) -> Result<()> {
    let spec = submit_spec(args)?;
    let answer = client
        .enqueue(pb::EnqueueRequest {
            session: None,
            spec: Some(spec),
        })
        .await?;
    out.show(
        json!({"job_id": answer.job_id, "created": answer.created}),
        || match answer.created {
            true => format!("job {} enqueued", answer.job_id),
            false => format!(
                "job {} already exists for this idempotency key",
                answer.job_id
            ),
        },
    );
    Ok(())
}

/// `rota lineage ARTIFACT`.
pub async fn lineage(
    artifact: String,
    direction: pb::LineageDirection,
    depth: u32,
    global: &Global,
    client: &Client,
    out: &Output,
) -> Result<()> {
    let answer = client
        .get_lineage(pb::GetLineageRequest {
            artifact: artifact.clone(),
            direction: direction.into(),
            depth,
            read: global.read_options(),
        })
        .await?;
    let links: Vec<Value> = answer
        .links
        .iter()
        .map(|l| {
            let a = l.artifact.clone().unwrap_or_default();
            json!({
                "job_id": l.job_id,
                "tenant": l.tenant,
                "job_type": l.job_type,
                "status": status_name(l.status),
                "wrote": l.wrote,
                "artifact": {"name": a.name, "uri": a.uri, "digest": a.digest},
                "depth": l.depth,
            })
        })
        .collect();
    out.show(
        json!({"links": links, "truncated": answer.truncated}),
        || {
            if answer.links.is_empty() {
                return format!("no job in memory wrote or read {artifact}");
            }
            let mut table = table(&["depth", "job", "tenant/type", "status", "", "artifact"]);
            for l in &answer.links {
                let a = l.artifact.clone().unwrap_or_default();
                table.add_row(vec![
                    l.depth.to_string(),
                    l.job_id.to_string(),
                    format!("{}/{}", l.tenant, l.job_type),
                    status_name(l.status).to_owned(),
                    if l.wrote { "wrote" } else { "read" }.to_owned(),
                    format!("{} ({})", a.name, a.uri),
                ]);
            }
            let more = if answer.truncated {
                "\n(cut at 1,000 links)"
            } else {
                ""
            };
            format!("{table}{more}")
        },
    );
    Ok(())
}

/// `rota plan ...`.
pub async fn plan(cmd: PlanCmd, global: &Global, client: &Client, out: &Output) -> Result<()> {
    match cmd {
        PlanCmd::Submit { file } => {
            let answer = client.submit_plan(plan_file(&file)?).await?;
            let jobs: Vec<Value> = answer
                .jobs
                .iter()
                .map(|j| json!({"key": j.key, "job_id": j.job_id}))
                .collect();
            out.show(json!({"plan_id": answer.plan_id, "jobs": jobs}), || {
                let mut table = table(&["step", "job"]);
                for j in &answer.jobs {
                    table.add_row(vec![j.key.clone(), j.job_id.to_string()]);
                }
                format!("plan {} submitted\n{table}", answer.plan_id)
            });
        }
        PlanCmd::Show { id } => {
            let plan = client
                .get_plan(pb::GetPlanRequest {
                    plan_id: id,
                    read: global.read_options(),
                })
                .await?;
            out.plan(&plan);
        }
        PlanCmd::Cancel { id, reason } => {
            let answer = client
                .cancel_plan(pb::CancelPlanRequest {
                    session: None,
                    plan_id: id,
                    stamp: Some(global.stamp(reason, None)),
                })
                .await?;
            out.show(json!({"plan_id": id, "canceled": answer.canceled}), || {
                format!("plan {id}: {} jobs canceled", answer.canceled.len())
            });
        }
    }
    Ok(())
}

/// `rota dlq list`.
pub async fn dlq(cmd: DlqCmd, global: &Global, client: &Client, out: &Output) -> Result<()> {
    let DlqCmd::List { limit, after } = cmd;
    let page = client
        .list_dead_letters(pb::ListDeadLettersRequest {
            after,
            limit,
            read: global.read_options(),
        })
        .await?;
    out.jobs(&page);
    Ok(())
}

pub fn submit_spec(args: SubmitArgs) -> Result<pb::JobSpec> {
    let payload = match (args.payload, args.payload_file) {
        (Some(text), _) => text.into_bytes(),
        (None, Some(path)) => std::fs::read(&path)
            .with_context(|| format!("reading the payload from {}", path.display()))?,
        (None, None) => Vec::new(),
    };
    let default_retry = rota_state_machine::RetryPolicy::default();
    let backoff = |d: Option<humantime::Duration>, default: u64| -> Result<u64> {
        d.map_or(Ok(default), |d| {
            u64::try_from(d.as_millis()).context("the backoff is out of range")
        })
    };
    let retry = match (args.max_attempts, args.base_backoff, args.max_backoff) {
        (None, None, None) => None,
        (max_attempts, base, max) => Some(pb::RetryPolicy {
            max_attempts: max_attempts.unwrap_or(default_retry.max_attempts),
            base_backoff_ms: backoff(base, default_retry.base_backoff_ms)?,
            max_backoff_ms: backoff(max, default_retry.max_backoff_ms)?,
        }),
    };
    let not_before_ms = args
        .not_before
        .map(|t| {
            std::time::SystemTime::from(t)
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .and_then(|d| u64::try_from(d.as_millis()).ok())
                .context("--not-before is out of range")
        })
        .transpose()?;
    let backfill = match (args.backfill_reason, args.backfill_ticket) {
        (Some(reason), Some(ticket)) => Some(pb::Backfill { reason, ticket }),
        _ => None,
    };
    Ok(pb::JobSpec {
        tenant: args.tenant,
        job_type: args.job_type,
        payload,
        project: args.project,
        idempotency_key: args.idempotency_key,
        priority: args.priority,
        depends_on: args.depends_on,
        not_before_ms,
        retry,
        lease_ttl_ms: args.lease_ttl_ms,
        correlation_id: args.correlation_id,
        inputs: args
            .inputs
            .iter()
            .map(|text| artifact(text))
            .collect::<Result<_>>()?,
        backfill,
        traceparent: None,
    })
}

/// An artifact from `name=NAME,uri=URI[,digest=DIGEST]`.
fn artifact(text: &str) -> Result<pb::Artifact> {
    let mut artifact = pb::Artifact::default();
    for part in text.split(',') {
        match part.split_once('=') {
            Some(("name", v)) => artifact.name = v.to_owned(),
            Some(("uri", v)) => artifact.uri = v.to_owned(),
            Some(("digest", v)) => artifact.digest = Some(v.to_owned()),
            _ => anyhow::bail!(
                "--input {text:?}: expected name=NAME,uri=URI[,digest=DIGEST], found {part:?}"
            ),
        }
    }
    if artifact.name.is_empty() || artifact.uri.is_empty() {
        anyhow::bail!("--input {text:?}: name= and uri= are both required");
    }
    Ok(artifact)
}

/// A plan file: steps with dependencies by key, in JSON or YAML.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    steps: Vec<PlanFileStep>,
    backfill: Option<PlanFileBackfill>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFileBackfill {
    reason: String,
    ticket: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFileStep {
    key: String,
    tenant: String,
    #[serde(rename = "type")]
    job_type: String,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    depends_on: Vec<String>,
    priority: Option<u32>,
    max_attempts: Option<u32>,
    idempotency_key: Option<String>,
    lease_ttl_ms: Option<u64>,
}

/// Reads a plan file; YAML is a superset of JSON, so one parser reads both.
fn plan_file(path: &std::path::Path) -> Result<pb::SubmitPlanRequest> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the plan file {}", path.display()))?;
    let plan: PlanFile = serde_norway::from_str(&text)
        .with_context(|| format!("{} is not a valid plan (JSON or YAML)", path.display()))?;
    Ok(plan_request(plan))
}

fn plan_request(plan: PlanFile) -> pb::SubmitPlanRequest {
    let default_retry = rota_state_machine::RetryPolicy::default();
    let steps = plan
        .steps
        .into_iter()
        .map(|step| pb::PlanStep {
            key: step.key,
            depends_on: step.depends_on,
            spec: Some(pb::JobSpec {
                tenant: step.tenant,
                job_type: step.job_type,
                payload: step.payload.into_bytes(),
                priority: step.priority,
                idempotency_key: step.idempotency_key,
                lease_ttl_ms: step.lease_ttl_ms,
                retry: step.max_attempts.map(|max_attempts| pb::RetryPolicy {
                    max_attempts,
                    base_backoff_ms: default_retry.base_backoff_ms,
                    max_backoff_ms: default_retry.max_backoff_ms,
                }),
                ..pb::JobSpec::default()
            }),
        })
        .collect();
    pb::SubmitPlanRequest {
        session: None,
        steps,
        backfill: plan.backfill.map(|b| pb::Backfill {
            reason: b.reason,
            ticket: b.ticket,
        }),
    }
}

fn parse_status(name: &str) -> Result<pb::JobStatus> {
    match rota_state_machine::Status::parse(name) {
        Some(status) => Ok(pb::JobStatus::from_str_name(&format!("JOB_STATUS_{}", status.as_str().to_uppercase()))
            .unwrap_or(pb::JobStatus::Unspecified)),
        None => bail!(
            "unknown status {name:?}; one of: pending, ready, leased, succeeded, failed, dead_lettered, canceled"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_reads_its_name_uri_and_digest_and_bad_ones_are_refused() {
        let a = artifact("name=raw,uri=s3://bucket/day=1/x.csv,digest=sha256:ab").unwrap();
        assert_eq!(
            (a.name.as_str(), a.uri.as_str(), a.digest.as_deref()),
            ("raw", "s3://bucket/day=1/x.csv", Some("sha256:ab"))
        );
        assert!(artifact("name=raw").is_err());
        assert!(artifact("raw,uri=x").is_err());
        assert!(artifact("name=raw,uri=x,color=red").is_err());
    }

    #[test]
    fn plan_files_read_as_yaml_and_as_json() {
        let yaml = "steps:\n  - key: a\n    tenant: acme\n    type: etl\n  - key: b\n    tenant: acme\n    type: etl\n    depends_on: [a]\n";
        let json = r#"{"steps": [{"key": "a", "tenant": "acme", "type": "etl"}, {"key": "b", "tenant": "acme", "type": "etl", "depends_on": ["a"]}]}"#;
        for text in [yaml, json] {
            let plan: PlanFile = serde_norway::from_str(text).expect("valid plan");
            let request = plan_request(plan);
            assert_eq!(request.steps.len(), 2);
            assert_eq!(request.steps[1].depends_on, vec!["a".to_owned()]);
        }
    }

    #[test]
    fn plan_files_with_unknown_fields_are_refused() {
        let text = "steps:\n  - key: a\n    tenant: acme\n    type: etl\n    depend_on: [b]\n";
        let error = serde_norway::from_str::<PlanFile>(text).expect_err("typo");
        assert!(error.to_string().contains("depend_on"), "{error}");
    }

    #[test]
    fn status_names_parse_to_wire_statuses() {
        assert_eq!(
            parse_status("dead_lettered").expect("known"),
            pb::JobStatus::DeadLettered
        );
        assert!(parse_status("done").is_err());
    }
}
