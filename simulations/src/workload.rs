//! Simulated producers and workers. They use the real `rota-client` and record what the
//! cluster answered in the history.

use crate::history::{self, Event, History};
use crate::seed::SplitMix;
use rota_client::proto as pb;
use rota_client::{Client, ClientError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The job type every simulated job has.
pub const JOB_TYPE: &str = "work";
/// Lease time-to-live the workers ask for.
pub const TTL_MS: u64 = 2_000;
/// How long a worker's lease call waits for a job (a long poll, `wait_ms`). A lease's
/// grant falls between its ask and its answer either way, so the checks that read those
/// times (10-14) raise no false alarm, but a poll that waited is judged against a wider
/// window (docs/simulations.md, check 11). An idle worker costs one call a second rather
/// than ten, except when the node answers at once (maintenance, something due).
const LEASE_WAIT_MS: u32 = 1_000;
/// The tenant with a `max_active` quota, and the quota.
pub const QUOTA_TENANT: &str = "t0";
pub const QUOTA_MAX_ACTIVE: u32 = 2;

/// What a job's payload tells the workers to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    Succeed,
    FailOnce,
    FailAlways,
    /// Runs longer than a lease TTL, kept alive by heartbeats.
    Slow,
}

impl Script {
    fn pick(rng: &mut SplitMix) -> Self {
        match rng.range(0, 10) {
            0 => Script::FailAlways,
            1 | 2 => Script::FailOnce,
            3 => Script::Slow,
            _ => Script::Succeed,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Script::Succeed => "succeed",
            Script::FailOnce => "fail-once",
            Script::FailAlways => "fail-always",
            Script::Slow => "slow",
        }
    }

    fn parse(payload: &[u8]) -> Self {
        match payload.split(|b| *b == b':').next() {
            Some(b"fail-once") => Script::FailOnce,
            Some(b"fail-always") => Script::FailAlways,
            Some(b"slow") => Script::Slow,
            _ => Script::Succeed,
        }
    }
}

fn spec(tenant: &str, script: Script, tag: &str, key: Option<String>) -> pb::JobSpec {
    pb::JobSpec {
        tenant: tenant.to_owned(),
        job_type: JOB_TYPE.to_owned(),
        payload: format!("{}:{tag}", script.name()).into_bytes(),
        idempotency_key: key,
        retry: Some(pb::RetryPolicy {
            max_attempts: 3,
            base_backoff_ms: 50,
            max_backoff_ms: 400,
        }),
        lease_ttl_ms: Some(TTL_MS),
        ..pb::JobSpec::default()
    }
}

fn stamp() -> pb::Stamp {
    pb::Stamp {
        actor: "simulation".to_owned(),
        reason: "quota under test".to_owned(),
        ticket: None,
    }
}

/// Sets the quota the checker holds the ledger to; retried until the cluster answers.
pub async fn set_quota(client: &Client) {
    loop {
        let request = pb::SetQuotaRequest {
            session: None,
            tenant: QUOTA_TENANT.to_owned(),
            job_type: None,
            max_active: Some(QUOTA_MAX_ACTIVE),
            max_per_hour: None,
            burst: None,
            stamp: Some(stamp()),
        };
        if client.set_quota(request).await.is_ok() {
            return;
        }
    }
}

/// Retention windows short enough that most jobs leave memory for the archive during a
/// run (and idempotency keys are re-sent after their jobs were archived), while the archive
/// keeps everything until the checker has read it.
pub fn retention() -> pb::Retention {
    pb::Retention {
        succeeded_ms: Some(3_000),
        canceled_ms: Some(3_000),
        dead_lettered_ms: Some(5_000),
        history_ms: Some(10_000),
        archive_ms: Some(3_600_000),
    }
}

/// Sets `retention()`; retried until the cluster answers.
pub async fn set_retention(client: &Client) {
    loop {
        let request = pb::SetRetentionRequest {
            session: None,
            retention: Some(retention()),
            stamp: Some(stamp()),
        };
        if client.set_retention(request).await.is_ok() {
            return;
        }
    }
}

/// How much a producer does.
#[derive(Clone, Copy, Debug)]
pub struct Work {
    /// Jobs enqueued, spread over about `PRODUCE_MS`.
    pub jobs: u64,
    /// Three-step plans submitted after them.
    pub plans: u64,
}

/// About how long a producer takes to enqueue its jobs, in simulated ms.
const PRODUCE_MS: u64 = 15_000;

/// Enqueues `work.jobs` jobs, each under an idempotency key, re-sends some keys through a
/// second client (new sessions: only the key dedupes them), and submits `work.plans` plans.
pub async fn produce(
    name: &str,
    client: Client,
    again_client: Client,
    work: Work,
    history: History,
    mut rng: SplitMix,
) {
    // One to six jobs a call (one alone goes by `Enqueue`, more by `EnqueueBatch`), and
    // between two calls a pause of PRODUCE_MS over the jobs per job sent on average, drawn
    // from a sixth of that to eleven sixths.
    let pace = PRODUCE_MS / work.jobs.max(1);
    let mut keys = Vec::new();
    let mut n = 0;
    while n < work.jobs {
        let size = rng.range(1, 7).min(work.jobs - n);
        let batch: Vec<KeyedJob> = (n..n + size)
            .map(|n| KeyedJob {
                tenant: if n % 2 == 0 { QUOTA_TENANT } else { "t1" },
                script: Script::pick(&mut rng),
                key: format!("{name}-{n}"),
            })
            .collect();
        enqueue(name, &client, &batch, &history).await;
        keys.extend(batch);
        n += size;
        let pause = rng.range(pace * size / 6, pace * size * 11 / 6);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    let again: Vec<KeyedJob> = keys.into_iter().filter(|_| rng.chance(25)).collect();
    for batch in again.chunks(4) {
        enqueue(&format!("{name}-again"), &again_client, batch, &history).await;
    }
    for p in 0..work.plans {
        let steps = [("a", vec![]), ("b", vec!["a"]), ("c", vec!["a", "b"])]
            .into_iter()
            .map(|(key, deps)| pb::PlanStep {
                key: key.to_owned(),
                spec: Some(spec(
                    "t1",
                    Script::Succeed,
                    &format!("{name}-plan{p}-{key}"),
                    None,
                )),
                depends_on: deps.into_iter().map(str::to_owned).collect(),
            })
            .collect();
        let request = pb::SubmitPlanRequest {
            session: None,
            steps,
            backfill: None,
        };
        if let Ok(answer) = client.submit_plan(request).await {
            history.record(Event::PlanSubmitted {
                plan: answer.plan_id,
                jobs: answer.jobs.into_iter().map(|j| (j.key, j.job_id)).collect(),
            });
        }
    }
}

/// A job the producer enqueues under its idempotency key.
struct KeyedJob {
    tenant: &'static str,
    script: Script,
    key: String,
}

impl KeyedJob {
    fn spec(&self) -> pb::JobSpec {
        spec(self.tenant, self.script, &self.key, Some(self.key.clone()))
    }
}

/// Enqueues `jobs` in one call (`Enqueue` for one, `EnqueueBatch` for more), sending it
/// again until the cluster answers (the keys make every retry safe). A refusal the
/// cluster names (a `rota-error` kind, for the call or for one job of a batch) fails the
/// seed: nothing the producer sends should be refused, and sending it again would never
/// end. A status with no kind (a transport's) counts as no answer.
async fn enqueue(name: &str, client: &Client, jobs: &[KeyedJob], history: &History) {
    let unanswered = |job: &KeyedJob| {
        history.record(Event::EnqueueUnanswered {
            producer: name.to_owned(),
            key: job.key.clone(),
        });
    };
    let enqueued = |job: &KeyedJob, answer: pb::EnqueueResponse| {
        history.record(Event::Enqueued {
            producer: name.to_owned(),
            tenant: job.tenant.to_owned(),
            key: job.key.clone(),
            job: answer.job_id,
            created: answer.created,
        });
    };
    loop {
        if let [job] = jobs {
            let request = pb::EnqueueRequest {
                session: None,
                spec: Some(job.spec()),
            };
            match client.enqueue(request).await {
                Ok(answer) => return enqueued(job, answer),
                Err(e) if e.kind().is_some() => {
                    panic!("{name}: enqueue of {} refused: {e}", job.key)
                }
                Err(_) => unanswered(job),
            }
            continue;
        }
        let request = pb::EnqueueBatchRequest {
            session: None,
            specs: jobs.iter().map(KeyedJob::spec).collect(),
        };
        let answer = match client.enqueue_batch(request).await {
            Ok(answer) => answer,
            Err(e) if e.kind().is_some() => {
                panic!("{name}: a batch of {} refused: {e}", jobs.len())
            }
            Err(_) => {
                jobs.iter().for_each(unanswered);
                continue;
            }
        };
        assert_eq!(
            answer.results.len(),
            jobs.len(),
            "{name}: a batch answered for {} of its {} jobs",
            answer.results.len(),
            jobs.len()
        );
        for (job, result) in jobs.iter().zip(answer.results) {
            match result.result {
                Some(pb::enqueue_result::Result::Enqueued(answer)) => enqueued(job, answer),
                Some(pb::enqueue_result::Result::Error(e)) => {
                    panic!(
                        "{name}: enqueue of {} refused: {}: {}",
                        job.key, e.kind, e.message
                    )
                }
                None => panic!("{name}: a batch answered nothing for {}", job.key),
            }
        }
        return;
    }
}

/// What kind of worker a simulated worker is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Worker {
    /// Leases up to four jobs a call, as a long poll of up to `LEASE_WAIT_MS` if `wait`, else
    /// asking again 100 ms after an empty answer.
    Lease { wait: bool },
    /// Leases one job at a time without a wait, every 1.5 s, and reports past its TTL.
    Zombie,
}

/// A worker: leases, runs each job's script, reports. A zombie sleeps past its lease's
/// TTL before reporting, as a paused or partitioned worker would. The quick jobs of one
/// lease run first and are reported together (`CompleteBatch` for two or more, `Complete`
/// for one); then each slow one, and the zombie's, alone as soon as it is done.
pub async fn work(
    name: String,
    client: Client,
    history: History,
    stop: Arc<AtomicBool>,
    kind: Worker,
) {
    let zombie = kind == Worker::Zombie;
    let wait_ms = (kind == Worker::Lease { wait: true }).then_some(LEASE_WAIT_MS);
    while !stop.load(Ordering::SeqCst) {
        let request = pb::LeaseRequest {
            session: None,
            worker: name.clone(),
            job_types: vec![JOB_TYPE.to_owned()],
            max: if zombie { 1 } else { 4 },
            ttl_ms: Some(TTL_MS),
            wait_ms,
        };
        let asked_ms = history::now_ms();
        let jobs = match client.lease(request).await {
            Ok(answer) => answer.jobs,
            Err(_) => Vec::new(),
        };
        if jobs.is_empty() {
            tokio::time::sleep(Duration::from_millis(if zombie { 1_500 } else { 100 })).await;
            continue;
        }
        // Every lease recorded as it was answered, before any job runs.
        for job in &jobs {
            history.record(Event::Leased {
                worker: name.clone(),
                job: job.job_id,
                lease: job.lease_id,
                attempt: job.attempt,
                until_ms: job.lease_until_ms,
                asked_ms,
            });
        }
        // The quick jobs first and reported together, then any slow one: a job run after a
        // slow one would start with its lease already past its TTL.
        let (slow, quick): (Vec<_>, Vec<_>) = jobs
            .into_iter()
            .partition(|job| zombie || Script::parse(&job.payload) == Script::Slow);
        for _ in &quick {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        report(&name, &client, &history, quick).await;
        for job in slow {
            if run_slowly(&name, &client, &history, &job, zombie).await {
                report(&name, &client, &history, vec![job]).await;
            }
        }
    }
}

/// The zombie's sleep past its TTL, or a slow job's run: longer than the TTL, kept alive by
/// heartbeats. False when a heartbeat was refused: the lease is lost, there is nothing to
/// report.
async fn run_slowly(
    name: &str,
    client: &Client,
    history: &History,
    job: &pb::LeasedJob,
    zombie: bool,
) -> bool {
    if zombie {
        tokio::time::sleep(Duration::from_millis(TTL_MS * 2)).await;
        return true;
    }
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(TTL_MS / 4)).await;
        let beat = pb::HeartbeatRequest {
            session: None,
            job_id: job.job_id,
            lease_id: job.lease_id,
        };
        let asked_ms = history::now_ms();
        match client.heartbeat(beat).await {
            Ok(ack) if !ack.canceled => history.record(Event::Extended {
                worker: name.to_owned(),
                job: job.job_id,
                lease: job.lease_id,
                until_ms: ack.lease_until_ms,
                asked_ms,
            }),
            _ => return false,
        }
    }
    true
}

/// Whether a run of `job` succeeds, as its script says.
fn succeeds(job: &pb::LeasedJob) -> bool {
    match Script::parse(&job.payload) {
        Script::FailAlways => false,
        Script::FailOnce => job.attempt > 1,
        Script::Succeed | Script::Slow => true,
    }
}

fn scripted_failure() -> pb::Failed {
    pb::Failed {
        retryable: true,
        error: "scripted failure".to_owned(),
    }
}

/// Reports the outcomes of `jobs`, run to their end, and records what the cluster answered.
async fn report(name: &str, client: &Client, history: &History, jobs: Vec<pb::LeasedJob>) {
    let completed = |job: &pb::LeasedJob, status: i32| {
        history.record(Event::Completed {
            worker: name.to_owned(),
            job: job.job_id,
            lease: job.lease_id,
            succeeded: succeeds(job),
            status,
        });
    };
    let refused = |job: &pb::LeasedJob, kind: String| {
        history.record(Event::CompletionRefused {
            worker: name.to_owned(),
            job: job.job_id,
            lease: job.lease_id,
            kind,
        });
    };
    match &jobs[..] {
        [] => {}
        [job] => {
            use pb::complete_request::Outcome;
            let outcome = if succeeds(job) {
                Outcome::Succeeded(pb::Succeeded { outputs: vec![] })
            } else {
                Outcome::Failed(scripted_failure())
            };
            let request = pb::CompleteRequest {
                session: None,
                job_id: job.job_id,
                lease_id: job.lease_id,
                outcome: Some(outcome),
            };
            match client.complete(request).await {
                Ok(answer) => completed(job, answer.status),
                Err(e) => refused(job, refusal(&e)),
            }
        }
        jobs => {
            use pb::complete_item::Outcome;
            let items = jobs
                .iter()
                .map(|job| pb::CompleteItem {
                    job_id: job.job_id,
                    lease_id: job.lease_id,
                    outcome: Some(if succeeds(job) {
                        Outcome::Succeeded(pb::Succeeded { outputs: vec![] })
                    } else {
                        Outcome::Failed(scripted_failure())
                    }),
                })
                .collect();
            let request = pb::CompleteBatchRequest {
                session: None,
                items,
            };
            match client.complete_batch(request).await {
                Ok(answer) => {
                    let mut results = answer.results.into_iter();
                    for job in jobs {
                        match results.next().and_then(|r| r.result) {
                            Some(pb::complete_result::Result::Completed(answer)) => {
                                completed(job, answer.status);
                            }
                            Some(pb::complete_result::Result::Error(e)) => refused(job, e.kind),
                            // Missing from the answer: its outcome is unknown.
                            None => refused(job, "Unanswered".to_owned()),
                        }
                    }
                }
                Err(e) => jobs.iter().for_each(|job| refused(job, refusal(&e))),
            }
        }
    }
}

fn refusal(e: &ClientError) -> String {
    e.kind()
        .map_or_else(|| format!("{:?}", e.code()), str::to_owned)
}

/// The operator of an `AdminCalls` seed, while the nemesis cuts a node off: maintenance on
/// for a while and off again, three of the latest enqueued jobs canceled, the quota tenant's `max_active`
/// lowered to one for a while and restored. Each acknowledged call is recorded with the
/// time it was first asked, so the checker can tell what must hold between them.
pub async fn operate(client: Client, history: History, mut rng: SplitMix) {
    tokio::time::sleep(Duration::from_millis(rng.range(4_000, 8_000))).await;
    maintenance(&client, &history, true).await;
    tokio::time::sleep(Duration::from_millis(rng.range(1_000, 3_000))).await;
    maintenance(&client, &history, false).await;

    tokio::time::sleep(Duration::from_millis(rng.range(500, 2_000))).await;
    let enqueued: Vec<u64> = history
        .records()
        .into_iter()
        .filter_map(|r| match r.event {
            Event::Enqueued { job, .. } => Some(job),
            _ => None,
        })
        .collect();
    // The latest jobs are the likeliest still to wait or run.
    let latest = &enqueued[enqueued.len().saturating_sub(6)..];
    for _ in 0..3 {
        let Some(&job) = latest.get(rng.range(0, latest.len() as u64) as usize) else {
            break;
        };
        let request = pb::CancelJobRequest {
            session: None,
            job_id: job,
            stamp: Some(operator_stamp("cancel under test")),
        };
        // Once: a job that already finished is refused, which is fine.
        if client.cancel_job(request).await.is_ok() {
            history.record(Event::CancelAcknowledged { job });
        }
        tokio::time::sleep(Duration::from_millis(rng.range(100, 800))).await;
    }

    tokio::time::sleep(Duration::from_millis(rng.range(500, 2_000))).await;
    quota(&client, &history, 1).await;
    tokio::time::sleep(Duration::from_millis(rng.range(2_000, 5_000))).await;
    quota(&client, &history, QUOTA_MAX_ACTIVE).await;
}

fn operator_stamp(reason: &str) -> pb::Stamp {
    pb::Stamp {
        actor: "operator".to_owned(),
        reason: reason.to_owned(),
        ticket: None,
    }
}

/// Sets maintenance until the cluster acknowledges it; records the first ask's time.
async fn maintenance(client: &Client, history: &History, on: bool) {
    let asked_ms = history::now_ms();
    loop {
        let request = pb::SetMaintenanceRequest {
            session: None,
            enabled: on,
            stamp: Some(operator_stamp("maintenance under test")),
        };
        if client.set_maintenance(request).await.is_ok() {
            history.record(Event::Maintenance { on, asked_ms });
            return;
        }
    }
}

/// Sets the quota tenant's `max_active` until the cluster acknowledges it.
async fn quota(client: &Client, history: &History, max_active: u32) {
    let asked_ms = history::now_ms();
    loop {
        let request = pb::SetQuotaRequest {
            session: None,
            tenant: QUOTA_TENANT.to_owned(),
            job_type: None,
            max_active: Some(max_active),
            max_per_hour: None,
            burst: None,
            stamp: Some(operator_stamp("quota under test")),
        };
        if client.set_quota(request).await.is_ok() {
            history.record(Event::QuotaSet {
                tenant: QUOTA_TENANT.to_owned(),
                max_active,
                asked_ms,
            });
            return;
        }
    }
}

/// The operator of a `Membership` seed, while the nemesis cuts a founding node off: adds
/// the spare node (it catches up as a learner and is promoted once it has), waits to see it
/// a voter (asking again if a leader change dropped the promotion), then removes one of the
/// `founders` founding voters, leaving as many voters as the cluster began with.
pub async fn change_membership(
    client: Client,
    history: History,
    (spare, spare_addr): (u64, String),
    founders: usize,
    mut rng: SplitMix,
) {
    tokio::time::sleep(Duration::from_millis(rng.range(4_000, 8_000))).await;
    let stamp = || Some(operator_stamp("membership under test"));
    let add = || pb::AddNodeRequest {
        id: spare,
        addr: spare_addr.clone(),
        learner: false,
        stamp: stamp(),
    };
    // Added (or already there: a retry of an add that landed).
    loop {
        match client.add_node(add()).await {
            Ok(_) => break,
            Err(e) if e.kind() == Some("node_exists") => break,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    // Recorded once a status shows it committed (a change proposed by a leader that is
    // then cut off may be lost with it).
    let give_up = tokio::time::Instant::now() + Duration::from_secs(40);
    let mut added = false;
    let mut asked = tokio::time::Instant::now();
    while tokio::time::Instant::now() < give_up {
        let member = committed_member(&client, spare).await;
        if member.is_some() && !added {
            history.record(Event::NodeAdded { node: spare });
            added = true;
        }
        if member == Some(true) {
            history.record(Event::NodePromoted { node: spare });
            break;
        }
        // A new leader does not carry on the old one's promotion (nor, if it was lost, the
        // addition): ask again.
        if asked.elapsed() > Duration::from_secs(5) {
            let _ = client.add_node(add()).await;
            asked = tokio::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let leaving = rng.range(1, founders as u64 + 1);
    while tokio::time::Instant::now() < give_up {
        let request = pb::RemoveNodeRequest {
            id: leaving,
            force: false,
            stamp: stamp(),
        };
        // Refused while a voter is cut off (too few live voters would be left), or no
        // answer, or `node_not_found` for a removal still being committed: the status says
        // whether it is done.
        let _ = client.remove_node(request).await;
        let members = committed_members(&client).await.unwrap_or_default();
        if !members.is_empty() && members.iter().all(|(m, _)| *m != leaving) {
            history.record(Event::NodeRemoved { node: leaving });
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The committed membership a node reports, (id, voter) each; `None` without an answer.
async fn committed_members(client: &Client) -> Option<Vec<(u64, bool)>> {
    let status = client.cluster_status(status_request()).await.ok()?;
    Some(status.members.iter().map(|m| (m.id, m.voter)).collect())
}

/// Whether node `id` is a member by the committed membership a node reports, and a voter.
async fn committed_member(client: &Client, id: u64) -> Option<bool> {
    let members = committed_members(client).await?;
    members
        .iter()
        .find(|(m, _)| *m == id)
        .map(|(_, voter)| *voter)
}

fn status_request() -> pb::ClusterStatusRequest {
    pb::ClusterStatusRequest {
        digest: false,
        leader_view: true,
    }
}
