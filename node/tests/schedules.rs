//! Schedules through the API: a cron schedule fires on the log's time across a leader kill
//! and never twice; after downtime each catch-up policy does what it says; the calls and
//! their refusals.

mod common;

use common::ManualClock;
use rota_client::proto as pb;
use rota_client::{Client, ClientConfig};
use rota_node::{NodeSettings, RunningNode};
use std::collections::BTreeMap;
use std::time::Duration;

/// 2027-01-15T08:00:00Z, a whole minute.
const T0: u64 = 1_800_000_000_000;
const MINUTE: u64 = 60_000;

fn client(nodes: &[&RunningNode]) -> Client {
    Client::with_config(ClientConfig {
        retry_for: Duration::from_secs(20),
        ..ClientConfig::new(nodes.iter().map(|n| n.addr().to_string()))
    })
    .expect("client")
}

fn stamp(reason: &str) -> Option<pb::Stamp> {
    Some(pb::Stamp {
        actor: "test".to_owned(),
        reason: reason.to_owned(),
        ticket: Some("OPS-1".to_owned()),
    })
}

fn create(
    id: &str,
    cadence: pb::create_schedule_request::Cadence,
    catch_up: pb::CatchUp,
    catch_up_max: u32,
) -> pb::CreateScheduleRequest {
    pb::CreateScheduleRequest {
        session: None,
        id: id.to_owned(),
        template: Some(pb::JobSpec {
            tenant: "acme".to_owned(),
            job_type: "report".to_owned(),
            payload: id.as_bytes().to_vec(),
            ..pb::JobSpec::default()
        }),
        cadence: Some(cadence),
        catch_up: catch_up.into(),
        catch_up_max,
        start_ms: None,
        end_ms: None,
        stamp: stamp("nightly reports"),
    }
}

/// Each schedule's fired jobs: schedule name to the idempotency keys of its jobs.
async fn fired(client: &Client) -> BTreeMap<String, Vec<String>> {
    let jobs = client
        .list_jobs(pb::ListJobsRequest {
            limit: 1_000,
            ..pb::ListJobsRequest::default()
        })
        .await
        .expect("list jobs")
        .jobs;
    let mut fired: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for job in jobs {
        if let Some(schedule) = job.schedule_id {
            let key = job.spec.and_then(|s| s.idempotency_key).expect("a key");
            fired.entry(schedule).or_default().push(key);
        }
    }
    fired
}

/// Waits (bounded) until `schedule` has fired `count` jobs; returns their keys.
async fn wait_fired(client: &Client, schedule: &str, count: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..400 {
        seen = fired(client).await.remove(schedule).unwrap_or_default();
        if seen.len() >= count {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{schedule} fired {seen:?}, not {count} jobs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_schedule_fires_on_log_time_across_a_leader_kill_without_a_double() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let clock = ManualClock::at(T0 + 1_000);
    let mut nodes = common::cluster_with(dir.path(), |settings: &mut NodeSettings| {
        settings.clock = clock.clock();
        settings.tick_interval = Duration::from_millis(20);
    })
    .await;
    let everyone = client(&nodes.iter().collect::<Vec<_>>());
    everyone
        .create_schedule(create(
            "minutely",
            pb::create_schedule_request::Cadence::Cron("* * * * *".to_owned()),
            pb::CatchUp::Skip,
            0,
        ))
        .await
        .expect("schedule created");
    let shown = everyone
        .get_schedule(pb::GetScheduleRequest {
            id: "minutely".to_owned(),
            read: None,
            upcoming: 3,
        })
        .await
        .expect("get schedule")
        .schedule
        .expect("a schedule");
    assert_eq!(
        shown.upcoming_ms,
        vec![T0 + MINUTE, T0 + 2 * MINUTE, T0 + 3 * MINUTE]
    );
    assert_eq!(
        shown.created_by.expect("stamp").ticket.as_deref(),
        Some("OPS-1")
    );

    // Nothing fires before its time, whatever the wall clock does.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fired(&everyone).await.is_empty());
    clock.advance(MINUTE);
    let first = wait_fired(&everyone, "minutely", 1).await;
    assert_eq!(first, [format!("schedule:minutely:{}", T0 + MINUTE)]);

    // The leader dies just past the next fire time; the new leader fires it, once.
    let leader = nodes
        .iter()
        .position(|n| n.raft().is_leader())
        .expect("a leader");
    clock.advance(MINUTE);
    nodes.remove(leader).shutdown().await.expect("leader stops");
    for node in &nodes {
        node.raft()
            .wait_for_leader(Duration::from_secs(20))
            .await
            .expect("a new leader");
    }
    let survivors = client(&nodes.iter().collect::<Vec<_>>());
    let keys = wait_fired(&survivors, "minutely", 2).await;
    clock.advance(MINUTE);
    let keys_after = wait_fired(&survivors, "minutely", 3).await;
    // Ticks at and after each fire time re-evaluate it: still one job a firing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let last = fired(&survivors)
        .await
        .remove("minutely")
        .unwrap_or_default();
    let expected: Vec<String> = (1..=3)
        .map(|k| format!("schedule:minutely:{}", T0 + k * MINUTE))
        .collect();
    assert_eq!(
        last, expected,
        "one job per firing (after the kill: {keys:?}, {keys_after:?})"
    );
    for node in nodes {
        node.shutdown().await.expect("node stops");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_downtime_each_catch_up_policy_does_what_it_says() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let clock = ManualClock::at(T0);
    let settings = || common::clocked(dir.path(), &clock);
    let node = common::one_node(settings()).await;
    let c = client(&[&node]);
    // Every five minutes: a firing more than a minute late is missed.
    let every_five = pb::create_schedule_request::Cadence::IntervalMs(5 * MINUTE);
    for (id, policy, max) in [
        ("skip", pb::CatchUp::Unspecified, 0),
        ("once", pb::CatchUp::RunOnce, 0),
        ("each", pb::CatchUp::RunEach, 3),
    ] {
        c.create_schedule(create(id, every_five.clone(), policy, max))
            .await
            .expect("schedule created");
    }
    node.shutdown().await.expect("node stops");

    // Down for 52.5 minutes: ten firings missed by every schedule, the latest by 2.5.
    clock.advance(52 * MINUTE + 30_000);
    let node = RunningNode::start(settings()).await.expect("node restarts");
    node.raft()
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("leads again");
    let c = client(&[&node]);
    let once = wait_fired(&c, "once", 1).await;
    let each = wait_fired(&c, "each", 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = fired(&c).await;
    assert_eq!(all.get("skip"), None, "skip drops what it missed: {all:?}");
    assert_eq!(once, [format!("schedule:once:{}", T0 + 50 * MINUTE)]);
    let latest_three: Vec<String> = [40, 45, 50]
        .iter()
        .map(|m| format!("schedule:each:{}", T0 + m * MINUTE))
        .collect();
    assert_eq!(each, latest_three);
    assert_eq!(all["each"], latest_three, "nothing more");

    // From here all three fire on time again.
    clock.advance(2 * MINUTE + 30_000);
    for id in ["skip", "once", "each"] {
        let keys = wait_fired(&c, id, 1).await;
        assert_eq!(
            keys.last(),
            Some(&format!("schedule:{id}:{}", T0 + 55 * MINUTE))
        );
    }
    node.shutdown().await.expect("node stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_listed_paused_resumed_deleted_and_bad_ones_refused() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let clock = ManualClock::at(T0);
    let node = common::one_node(common::clocked(dir.path(), &clock)).await;
    let c = client(&[&node]);
    let hourly = pb::create_schedule_request::Cadence::Cron("@hourly".to_owned());
    c.create_schedule(create("a", hourly.clone(), pb::CatchUp::Skip, 0))
        .await
        .expect("created");

    // Each refusal: its kind, and a word of its message.
    let refused = |request: pb::CreateScheduleRequest, kind: &'static str, words: &'static str| {
        let c = c.clone();
        async move {
            let error = c.create_schedule(request).await.expect_err("refused");
            assert_eq!(error.kind(), Some(kind), "{error}");
            assert!(
                error.to_string().contains(words),
                "{error} should say {words:?}"
            );
        }
    };
    refused(
        create("a", hourly.clone(), pb::CatchUp::Skip, 0),
        "schedule_exists",
        "a",
    )
    .await;
    let bad_cron = pb::create_schedule_request::Cadence::Cron("61 * * * *".to_owned());
    refused(
        create("b", bad_cron, pb::CatchUp::Skip, 0),
        "invalid_cron",
        "61 * * * *",
    )
    .await;
    refused(
        create("b", hourly.clone(), pb::CatchUp::RunEach, 500),
        "invalid_input",
        "catch_up",
    )
    .await;
    refused(
        create("b", hourly.clone(), pb::CatchUp::RunOnce, 3),
        "invalid_input",
        "catch_up_max",
    )
    .await;
    let mut keyed = create("b", hourly.clone(), pb::CatchUp::Skip, 0);
    if let Some(template) = keyed.template.as_mut() {
        template.idempotency_key = Some("mine".to_owned());
    }
    refused(keyed, "invalid_input", "idempotency key").await;
    let mut no_cadence = create("b", hourly.clone(), pb::CatchUp::Skip, 0);
    no_cadence.cadence = None;
    refused(no_cadence, "invalid_input", "cadence").await;
    let mut ended = create("b", hourly.clone(), pb::CatchUp::Skip, 0);
    ended.end_ms = Some(T0 - MINUTE);
    refused(ended, "invalid_input", "end_ms").await;

    let change = |id: &str| pb::ScheduleRequest {
        session: None,
        id: id.to_owned(),
        stamp: stamp("change"),
    };
    c.pause_schedule(change("a")).await.expect("paused");
    let listed = c
        .list_schedules(pb::ListSchedulesRequest { read: None })
        .await
        .expect("list")
        .schedules;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].paused);
    assert_eq!(
        listed[0].next_fire_ms, None,
        "a paused schedule has no next firing"
    );
    c.resume_schedule(change("a")).await.expect("resumed");
    let shown = c
        .get_schedule(pb::GetScheduleRequest {
            id: "a".to_owned(),
            read: Some(pb::ReadOptions { stale: true }),
            upcoming: 0,
        })
        .await
        .expect("get")
        .schedule
        .expect("a schedule");
    assert!(!shown.paused);
    assert_eq!(shown.next_fire_ms, Some(T0 + 60 * MINUTE));
    assert_eq!(shown.upcoming_ms.len(), 5, "five unless asked");
    c.delete_schedule(change("a")).await.expect("deleted");
    let gone = c
        .get_schedule(pb::GetScheduleRequest {
            id: "a".to_owned(),
            read: None,
            upcoming: 0,
        })
        .await
        .expect_err("gone");
    assert_eq!(gone.kind(), Some("schedule_not_found"), "{gone}");
    let missing = c.pause_schedule(change("nope")).await.expect_err("unknown");
    assert_eq!(missing.kind(), Some("schedule_not_found"), "{missing}");
    node.shutdown().await.expect("node stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_runs_each_past_fire_time_once_shows_its_progress_and_cancels_whole() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    // Ten hours in: an hourly schedule made with a start at T0 has ten past fire times.
    let clock = ManualClock::at(T0 + 10 * 60 * MINUTE + 30_000);
    let node = common::one_node(common::clocked(dir.path(), &clock)).await;
    let c = client(&[&node]);
    let mut hourly = create(
        "hourly",
        pb::create_schedule_request::Cadence::IntervalMs(60 * MINUTE),
        pb::CatchUp::Skip,
        0,
    );
    hourly.start_ms = Some(T0 + 60 * MINUTE);
    c.create_schedule(hourly).await.expect("created");
    let backfill =
        |since_ms: u64, until_ms: u64, ticket: Option<&str>| pb::BackfillScheduleRequest {
            session: None,
            schedule_id: "hourly".to_owned(),
            since_ms: Some(since_ms),
            until_ms: Some(until_ms),
            fire_times: Vec::new(),
            stamp: Some(pb::Stamp {
                actor: "ops@example.com".to_owned(),
                reason: "reload after the outage".to_owned(),
                ticket: ticket.map(str::to_owned),
            }),
        };
    // Hours 2 to 5: four fire times, four jobs, one plan.
    let first = c
        .backfill_schedule(backfill(
            T0 + 2 * 60 * MINUTE,
            T0 + 6 * 60 * MINUTE,
            Some("OPS-5"),
        ))
        .await
        .expect("backfill");
    let keys: Vec<String> = first.jobs.iter().map(|j| j.key.clone()).collect();
    let expected: Vec<String> = (2..=5)
        .map(|h| (T0 + h * 60 * MINUTE).to_string())
        .collect();
    assert_eq!(keys, expected);
    let job = c
        .get_job(pb::GetJobRequest {
            signed: false,
            job_id: first.jobs[0].job_id,
            read: None,
        })
        .await
        .expect("job")
        .job
        .expect("a job");
    let spec = job.spec.expect("a spec");
    assert_eq!(
        spec.idempotency_key,
        Some(format!("schedule:hourly:{}", T0 + 2 * 60 * MINUTE)),
        "keyed as the firing is"
    );
    assert_eq!(spec.backfill.expect("a backfill mark").ticket, "OPS-5");

    // Again, and over a wider window: nothing runs twice.
    let again = c
        .backfill_schedule(backfill(
            T0 + 2 * 60 * MINUTE,
            T0 + 7 * 60 * MINUTE,
            Some("OPS-5"),
        ))
        .await
        .expect("backfill again");
    assert_eq!(again.jobs.len(), 5);
    for (old, new) in first.jobs.iter().zip(&again.jobs) {
        assert_eq!(
            old.job_id, new.job_id,
            "the same job for the same fire time"
        );
    }
    let listed = c
        .list_jobs(pb::ListJobsRequest {
            limit: 100,
            ..pb::ListJobsRequest::default()
        })
        .await
        .expect("list")
        .jobs;
    let mut keys: Vec<String> = listed
        .iter()
        .filter_map(|j| j.spec.as_ref()?.idempotency_key.clone())
        .collect();
    keys.sort();
    // Hours 2 to 6 backfilled, and hour 10, which the schedule fired itself on time (its
    // start was in the past): one job per fire time, whatever ran twice.
    let mut expected: Vec<String> = [2, 3, 4, 5, 6, 10]
        .iter()
        .map(|h| format!("schedule:hourly:{}", T0 + h * 60 * MINUTE))
        .collect();
    expected.sort();
    assert_eq!(keys, expected);

    // Its progress, then canceled as a whole; the history says who and why.
    let plan = c
        .get_plan(pb::GetPlanRequest {
            plan_id: first.plan_id,
            read: None,
        })
        .await
        .expect("plan");
    assert_eq!(plan.steps.len(), 4);
    let canceled = c
        .cancel_plan(pb::CancelPlanRequest {
            session: None,
            plan_id: first.plan_id,
            stamp: stamp("wrong data"),
        })
        .await
        .expect("cancel");
    assert_eq!(canceled.canceled.len(), 4);
    let history = c
        .governance_history(pb::GovernanceHistoryRequest {
            read: None,
            kinds: vec!["backfill".to_owned()],
            since_ms: None,
            until_ms: None,
            after_index: None,
            limit: 0,
            archived: false,
        })
        .await
        .expect("history")
        .events;
    assert_eq!(history.len(), 2, "{history:#?}");
    let who = history[0].stamp.as_ref().expect("a stamp");
    assert_eq!(
        (who.actor.as_str(), who.ticket.as_deref()),
        ("ops@example.com", Some("OPS-5"))
    );

    // Refusals: no ticket, a time that is no fire time, the future, an unknown schedule.
    let no_ticket = c
        .backfill_schedule(backfill(T0, T0 + 3 * 60 * MINUTE, None))
        .await
        .expect_err("no ticket");
    assert!(no_ticket.to_string().contains("ticket"), "{no_ticket}");
    let mut odd = backfill(0, 0, Some("OPS-5"));
    odd.since_ms = None;
    odd.until_ms = None;
    odd.fire_times = vec![T0 + 90 * MINUTE];
    let odd = c.backfill_schedule(odd).await.expect_err("not a fire time");
    assert!(odd.to_string().contains("not a past fire time"), "{odd}");
    let mut future = backfill(0, 0, Some("OPS-5"));
    future.since_ms = None;
    future.until_ms = None;
    future.fire_times = vec![T0 + 20 * 60 * MINUTE];
    let future = c.backfill_schedule(future).await.expect_err("the future");
    assert!(
        future.to_string().contains("not a past fire time"),
        "{future}"
    );
    let mut unknown = backfill(T0, T0 + 60 * MINUTE, Some("OPS-5"));
    unknown.schedule_id = "nope".to_owned();
    let unknown = c.backfill_schedule(unknown).await.expect_err("unknown");
    assert_eq!(unknown.kind(), Some("schedule_not_found"), "{unknown}");
    node.shutdown().await.expect("node stops");
}
