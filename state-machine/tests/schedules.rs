//! Recurring schedules on log time.

mod common;
use common::{spec, stamp, Cluster};
use rota_state_machine::*;

const MINUTE: u64 = 60_000;

fn create_command(id: &str, cadence: Cadence, catch_up: CatchUp) -> Command {
    Command::CreateSchedule {
        id: ScheduleId::new(id),
        template: spec("acme", "report"),
        cadence,
        catch_up,
        start_ms: None,
        end_ms: None,
        stamp: stamp(),
    }
}

fn create(c: &mut Cluster, id: &str, cadence: Cadence, catch_up: CatchUp) {
    c.apply(create_command(id, cadence, catch_up))
        .expect("schedule accepted");
}

fn fired(c: &Cluster, id: &str) -> Vec<u64> {
    c.state
        .list_jobs(&JobFilter::default(), None, MAX_PAGE)
        .jobs
        .iter()
        .filter_map(|j| j.origin.schedule.clone())
        .filter(|(s, _)| s.as_str() == id)
        .map(|(_, at)| at)
        .collect()
}

#[test]
fn interval_schedule_fires_on_log_time() {
    let mut c = Cluster::new();
    let start = c.now_ms;
    create(
        &mut c,
        "every-minute",
        Cadence::Every {
            interval_ms: MINUTE,
        },
        CatchUp::Skip,
    );
    for _ in 0..3 {
        c.advance(MINUTE);
    }
    assert_eq!(
        fired(&c, "every-minute"),
        vec![start + MINUTE, start + 2 * MINUTE, start + 3 * MINUTE]
    );
    let job = c.state.list_jobs(&JobFilter::default(), None, 1).jobs[0];
    let key = job.spec.idempotency_key.clone().unwrap();
    assert_eq!(key, format!("schedule:every-minute:{}", start + MINUTE));
}

#[test]
fn schedule_firing_is_never_doubled() {
    let mut c = Cluster::new();
    let start = c.now_ms;
    create(
        &mut c,
        "s",
        Cadence::Every {
            interval_ms: MINUTE,
        },
        CatchUp::Skip,
    );
    c.advance(MINUTE);
    // Many commands at and just after the fire time evaluate the schedule again.
    for _ in 0..10 {
        c.advance(1);
    }
    assert_eq!(fired(&c, "s").len(), 1);
    // Recreating the schedule under the same name cannot re-fire a past firing either.
    c.apply(Command::DeleteSchedule {
        id: ScheduleId::new("s"),
        stamp: stamp(),
    })
    .unwrap();
    let t = c.now_ms;
    create(
        &mut c,
        "s",
        Cadence::Every {
            interval_ms: MINUTE,
        },
        CatchUp::Skip,
    );
    c.advance(MINUTE);
    assert_eq!(fired(&c, "s"), vec![start + MINUTE, t + MINUTE]);
}

#[test]
fn downtime_with_skip_drops_missed_firings() {
    let mut c = Cluster::new();
    let start = c.now_ms;
    create(
        &mut c,
        "s",
        Cadence::Every {
            interval_ms: 10 * MINUTE,
        },
        CatchUp::Skip,
    );
    // 65 minutes of silence: six firings missed, the latest five minutes ago.
    c.advance(65 * MINUTE);
    assert!(fired(&c, "s").is_empty());
    c.advance(5 * MINUTE);
    assert_eq!(
        fired(&c, "s"),
        vec![start + 70 * MINUTE],
        "the next on-time firing runs"
    );
}

#[test]
fn downtime_with_run_once_makes_up_one_run() {
    let mut c = Cluster::new();
    let start = c.now_ms;
    create(
        &mut c,
        "s",
        Cadence::Every {
            interval_ms: 10 * MINUTE,
        },
        CatchUp::RunOnce,
    );
    c.advance(65 * MINUTE);
    assert_eq!(
        fired(&c, "s"),
        vec![start + 60 * MINUTE],
        "one run, for the latest missed"
    );
}

#[test]
fn downtime_with_run_each_makes_up_every_missed_firing_up_to_its_bound() {
    let mut c = Cluster::new();
    let start = c.now_ms;
    let every_ten = Cadence::Every {
        interval_ms: 10 * MINUTE,
    };
    create(
        &mut c,
        "all",
        every_ten.clone(),
        CatchUp::RunEach { max: 100 },
    );
    create(&mut c, "four", every_ten, CatchUp::RunEach { max: 4 });
    // 65 minutes of silence: six firings missed.
    c.advance(65 * MINUTE);
    let missed: Vec<u64> = (1..=6).map(|k| start + k * 10 * MINUTE).collect();
    assert_eq!(fired(&c, "all"), missed, "each missed firing, oldest first");
    assert_eq!(fired(&c, "four"), missed[2..], "the latest four");
    // Evaluated again, nothing is made up twice; the next firing comes on time.
    c.advance(1);
    assert_eq!(fired(&c, "all").len(), 6);
    c.advance(5 * MINUTE);
    assert_eq!(fired(&c, "all").last(), Some(&(start + 70 * MINUTE)));
    assert_eq!(fired(&c, "all").len(), 7);
    let schedule = c
        .state
        .schedules()
        .find(|s| s.id.as_str() == "all")
        .unwrap();
    assert_eq!(schedule.last_fired_ms, Some(start + 70 * MINUTE));
}

#[test]
fn a_schedule_fires_from_its_start_to_its_end_and_shows_what_comes() {
    let mut c = Cluster::new();
    let now = c.now_ms;
    c.apply(Command::CreateSchedule {
        id: ScheduleId::new("window"),
        template: spec("acme", "report"),
        cadence: Cadence::Every {
            interval_ms: MINUTE,
        },
        catch_up: CatchUp::Skip,
        start_ms: Some(now + 10 * MINUTE),
        end_ms: Some(now + 12 * MINUTE + 30_000),
        stamp: stamp(),
    })
    .unwrap();
    let schedule = c.state.schedules().next().unwrap();
    assert_eq!(
        schedule.upcoming(5),
        vec![now + 10 * MINUTE, now + 11 * MINUTE, now + 12 * MINUTE],
        "from the start, none past the end"
    );
    for _ in 0..20 {
        c.advance(MINUTE);
    }
    assert_eq!(
        fired(&c, "window"),
        vec![now + 10 * MINUTE, now + 11 * MINUTE, now + 12 * MINUTE]
    );
    let schedule = c.state.schedules().next().unwrap();
    assert_eq!(schedule.next_fire_ms, None, "ended");
    assert!(schedule.upcoming(5).is_empty());
}

#[test]
fn a_start_in_the_past_counts_its_firings_as_missed() {
    let mut c = Cluster::new();
    let now = c.now_ms;
    c.apply(Command::CreateSchedule {
        id: ScheduleId::new("past"),
        template: spec("acme", "report"),
        cadence: Cadence::Every {
            interval_ms: MINUTE,
        },
        catch_up: CatchUp::RunEach { max: 3 },
        start_ms: Some(now - 10 * MINUTE),
        end_ms: None,
        stamp: stamp(),
    })
    .unwrap();
    c.advance(1);
    assert_eq!(
        fired(&c, "past"),
        vec![now - 2 * MINUTE, now - MINUTE, now],
        "the latest three since the start"
    );
}

#[test]
fn cron_schedule_fires_at_matching_times() {
    let mut c = Cluster::new();
    // Start at 2026-01-01T00:00:00Z.
    c.now_ms = 1_767_225_600_000;
    c.advance(0);
    create(
        &mut c,
        "hourly",
        Cadence::Cron {
            expression: "0 * * * *".into(),
        },
        CatchUp::Skip,
    );
    for _ in 0..(3 * 60) {
        c.advance(MINUTE);
    }
    let hour = 60 * MINUTE;
    let base = 1_767_225_600_000;
    assert_eq!(
        fired(&c, "hourly"),
        vec![base + hour, base + 2 * hour, base + 3 * hour]
    );
}

#[test]
fn paused_schedule_does_not_fire_and_resumes_forward() {
    let mut c = Cluster::new();
    create(
        &mut c,
        "s",
        Cadence::Every {
            interval_ms: MINUTE,
        },
        CatchUp::RunOnce,
    );
    let pause = |paused| Command::PauseSchedule {
        id: ScheduleId::new("s"),
        paused,
        stamp: stamp(),
    };
    c.apply(pause(true)).unwrap();
    c.advance(5 * MINUTE);
    assert!(fired(&c, "s").is_empty());
    c.apply(pause(false)).unwrap();
    assert!(
        fired(&c, "s").is_empty(),
        "firings during the pause are not made up"
    );
    c.advance(MINUTE);
    assert_eq!(fired(&c, "s").len(), 1);
}

#[test]
fn bad_schedules_are_rejected() {
    let mut c = Cluster::new();
    let every_minute = Cadence::Every {
        interval_ms: MINUTE,
    };
    let bad_cron = Cadence::Cron {
        expression: "61 * * * *".into(),
    };
    let too_fast = Cadence::Every { interval_ms: 10 };
    assert!(matches!(
        c.apply(create_command("x", bad_cron, CatchUp::Skip)),
        Err(SchedulerError::InvalidCron { .. })
    ));
    assert!(matches!(
        c.apply(create_command("x", too_fast, CatchUp::Skip)),
        Err(SchedulerError::InvalidInput { .. })
    ));
    for max in [0, MAX_CATCH_UP + 1] {
        assert!(matches!(
            c.apply(create_command(
                "x",
                every_minute.clone(),
                CatchUp::RunEach { max }
            )),
            Err(SchedulerError::InvalidInput { .. })
        ));
    }
    let now = c.now_ms;
    let mut backfill = create_command("x", every_minute.clone(), CatchUp::Skip);
    if let Command::CreateSchedule { template, .. } = &mut backfill {
        template.backfill = Some(Backfill {
            reason: "r".into(),
            ticket: "T-1".into(),
        });
    }
    assert!(matches!(
        c.apply(backfill),
        Err(SchedulerError::InvalidInput { ref field, .. }) if field == "template"
    ));
    for (start_ms, end_ms) in [
        (Some(0), None),
        (Some(30_000), None), // less than one interval after 1970
        (Some(253_402_300_800_000), None),
        (None, Some(u64::MAX)),
        (None, Some(now)),
        (Some(now + 10 * MINUTE), Some(now + 5 * MINUTE)),
        // Ends before its first firing.
        (None, Some(now + 30_000)),
    ] {
        let windowed = Command::CreateSchedule {
            id: ScheduleId::new("x"),
            template: spec("acme", "report"),
            cadence: every_minute.clone(),
            catch_up: CatchUp::Skip,
            start_ms,
            end_ms,
            stamp: stamp(),
        };
        assert!(
            matches!(c.apply(windowed), Err(SchedulerError::InvalidInput { .. })),
            "{start_ms:?}..{end_ms:?}"
        );
    }
    create(&mut c, "x", every_minute.clone(), CatchUp::Skip);
    assert_eq!(
        c.apply(create_command("x", every_minute, CatchUp::Skip)),
        Err(SchedulerError::ScheduleExists(ScheduleId::new("x")))
    );
    let missing = Command::DeleteSchedule {
        id: ScheduleId::new("nope"),
        stamp: stamp(),
    };
    assert_eq!(
        c.apply(missing),
        Err(SchedulerError::ScheduleNotFound(ScheduleId::new("nope")))
    );
}
