//! Quotas, rate limits, throttles, paused sources, circuit breakers and maintenance mode.

mod common;
use common::{spec, stamp, Cluster};
use rota_state_machine::*;

fn quota(
    c: &mut Cluster,
    tenant: &str,
    job_type: Option<&str>,
    max_active: Option<u32>,
    per_hour: Option<u32>,
    burst: Option<u32>,
) {
    c.apply(Command::SetQuota {
        tenant: TenantId::new(tenant),
        job_type: job_type.map(JobType::new),
        max_active,
        max_per_hour: per_hour,
        burst,
        stamp: stamp(),
    })
    .expect("quota accepted");
}

#[test]
fn quota_max_active_holds_back_leases() {
    let mut c = Cluster::new();
    quota(&mut c, "acme", None, Some(2), None, None);
    for _ in 0..5 {
        c.enqueue(spec("acme", "t"));
    }
    let other = c.enqueue(spec("globex", "t"));
    let grants = c.lease("w", &["t"], 10);
    let acme: Vec<_> = grants
        .iter()
        .filter(|g| g.tenant.as_str() == "acme")
        .collect();
    assert_eq!(acme.len(), 2);
    assert!(
        grants.iter().any(|g| g.job_id == other),
        "other tenants are unaffected"
    );
    assert!(
        c.lease("w", &["t"], 10).is_empty(),
        "held back while two are active"
    );
    c.succeed(acme[0]);
    assert_eq!(
        c.lease("w", &["t"], 10).len(),
        1,
        "a finished job frees a slot"
    );
    // Held-back jobs wait; none is dropped.
    assert_eq!(c.state.queue_depth()[0].ready, 2);
}

#[test]
fn quota_per_job_type_only_limits_that_type() {
    let mut c = Cluster::new();
    quota(&mut c, "acme", Some("heavy"), Some(1), None, None);
    for _ in 0..3 {
        c.enqueue(spec("acme", "heavy"));
        c.enqueue(spec("acme", "light"));
    }
    let grants = c.lease("w", &["heavy", "light"], 10);
    let heavy = grants
        .iter()
        .filter(|g| g.job_type.as_str() == "heavy")
        .count();
    assert_eq!((heavy, grants.len()), (1, 4));
}

#[test]
fn rate_limit_is_a_token_bucket_over_log_time() {
    let mut c = Cluster::new();
    // 60 per hour = one a minute, bursting to 3.
    quota(&mut c, "acme", None, None, Some(60), Some(3));
    for _ in 0..10 {
        c.enqueue(spec("acme", "t"));
    }
    let burst = c.lease("w", &["t"], 10);
    assert_eq!(burst.len(), 3);
    for g in &burst {
        c.succeed(g);
    }
    c.advance(59_999);
    assert!(c.lease("w", &["t"], 10).is_empty());
    c.advance(1);
    assert_eq!(c.lease("w", &["t"], 10).len(), 1);
    c.advance(3_600_000);
    assert_eq!(
        c.lease("w", &["t"], 10).len(),
        3,
        "refill stops at the burst size"
    );
}

#[test]
fn bad_quotas_are_rejected() {
    let mut c = Cluster::new();
    let bad = [(Some(0), None), (None, Some(5))];
    for (per_hour, burst) in bad {
        let err = c
            .apply(Command::SetQuota {
                tenant: TenantId::new("acme"),
                job_type: None,
                max_active: None,
                max_per_hour: per_hour,
                burst,
                stamp: stamp(),
            })
            .unwrap_err();
        assert!(matches!(err, SchedulerError::InvalidInput { .. }), "{err}");
    }
    assert_eq!(c.state.quotas().count(), 0);
}

#[test]
fn throttle_caps_concurrency_of_a_source() {
    let mut c = Cluster::new();
    for _ in 0..4 {
        c.enqueue(spec("acme", "t"));
        c.enqueue(spec("globex", "t"));
    }
    let throttle = |cap| Command::Throttle {
        scope: Scope::job_type("t"),
        max_concurrent: cap,
        stamp: stamp(),
    };
    c.apply(throttle(Some(3))).unwrap();
    assert_eq!(c.lease("w", &["t"], 10).len(), 3);
    assert_eq!(c.state.active(&Scope::job_type("t")), 3);
    c.apply(throttle(None)).unwrap();
    assert_eq!(c.lease("w", &["t"], 10).len(), 5);
}

#[test]
fn paused_source_is_not_leased_until_resumed() {
    let mut c = Cluster::new();
    let paused = c.enqueue(spec("acme", "t"));
    let other = c.enqueue(spec("acme", "u"));
    c.apply(Command::PauseSource {
        scope: Scope::pair("acme", "t"),
        stamp: stamp(),
    })
    .unwrap();
    let grants = c.lease("w", &["t", "u"], 10);
    assert_eq!(
        grants.iter().map(|g| g.job_id).collect::<Vec<_>>(),
        vec![other]
    );
    c.apply(Command::ResumeSource {
        scope: Scope::pair("acme", "t"),
        stamp: stamp(),
    })
    .unwrap();
    assert_eq!(c.lease("w", &["t"], 10)[0].job_id, paused);
    let changes: Vec<_> = c
        .state
        .governance_history()
        .iter()
        .map(|e| e.change.clone())
        .collect();
    assert_eq!(
        changes,
        vec![
            GovernanceChange::SourcePaused {
                scope: Scope::pair("acme", "t")
            },
            GovernanceChange::SourceResumed {
                scope: Scope::pair("acme", "t")
            }
        ]
    );
}

#[test]
fn scope_naming_nothing_is_rejected() {
    let mut c = Cluster::new();
    let everything = Scope {
        tenant: None,
        job_type: None,
    };
    let err = c
        .apply(Command::PauseSource {
            scope: everything,
            stamp: stamp(),
        })
        .unwrap_err();
    assert!(matches!(err, SchedulerError::InvalidInput { ref field, .. } if field == "scope"));
}

#[test]
fn circuit_breaker_trips_on_failure_rate_and_opens_an_incident() {
    let mut c = Cluster::new();
    let config = BreakerConfig {
        failure_threshold_percent: 50,
        window_ms: 60_000,
        min_attempts: 4,
    };
    c.apply(Command::ConfigureBreaker {
        job_type: JobType::new("pay"),
        config: Some(config),
        stamp: stamp(),
    })
    .unwrap();
    for _ in 0..10 {
        let mut s = spec("acme", "pay");
        s.retry.max_attempts = 1;
        c.enqueue(s);
    }
    let grants = c.lease("w", &["pay"], 4);
    c.succeed(&grants[0]);
    c.fail(&grants[1], true);
    c.fail(&grants[2], true);
    assert!(
        c.state.incidents(true).is_empty(),
        "3 attempts are under min_attempts"
    );
    c.succeed(&grants[3]);
    let open = c.state.incidents(true);
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].job_type.as_str(), "pay");
    assert_eq!(open[0].failure_rate_percent, 50);
    assert!(
        c.lease("w", &["pay"], 10).is_empty(),
        "the job type is paused"
    );
    let tripped =
        c.state.governance_history().iter().any(|e| {
            e.stamp.is_none() && matches!(e.change, GovernanceChange::BreakerTripped { .. })
        });
    assert!(tripped);
    c.apply(Command::ResetBreaker {
        job_type: JobType::new("pay"),
        stamp: stamp(),
    })
    .unwrap();
    assert!(c.state.incidents(true).is_empty());
    assert_eq!(c.state.incidents(false).len(), 1);
    assert_eq!(c.lease("w", &["pay"], 10).len(), 6);
}

#[test]
fn breaker_forgets_outcomes_outside_its_window() {
    let mut c = Cluster::new();
    let config = BreakerConfig {
        failure_threshold_percent: 50,
        window_ms: 10_000,
        min_attempts: 2,
    };
    c.apply(Command::ConfigureBreaker {
        job_type: JobType::new("pay"),
        config: Some(config),
        stamp: stamp(),
    })
    .unwrap();
    for _ in 0..3 {
        let mut s = spec("acme", "pay");
        s.retry.max_attempts = 1;
        c.enqueue(s);
    }
    let g = c.lease("w", &["pay"], 1).remove(0);
    c.fail(&g, false);
    c.advance(20_000);
    let g = c.lease("w", &["pay"], 1).remove(0);
    c.fail(&g, false);
    assert!(
        c.state.incidents(true).is_empty(),
        "the first failure left the window"
    );
}

#[test]
fn reset_of_a_closed_breaker_is_an_error() {
    let mut c = Cluster::new();
    let err = c
        .apply(Command::ResetBreaker {
            job_type: JobType::new("pay"),
            stamp: stamp(),
        })
        .unwrap_err();
    assert_eq!(err, SchedulerError::BreakerNotOpen("pay".into()));
}

#[test]
fn maintenance_mode_stops_leases_not_completions() {
    let mut c = Cluster::new();
    let a = c.enqueue(spec("acme", "t"));
    let leased = c.lease("w", &["t"], 1).remove(0);
    assert_eq!(leased.job_id, a);
    let mut on = stamp();
    on.ticket = Some("CHG-12".into());
    c.apply(Command::SetMaintenance {
        enabled: true,
        stamp: on.clone(),
    })
    .unwrap();
    let b = c.enqueue(spec("acme", "t"));
    let held = c.apply(Command::Lease {
        worker: WorkerId::new("w"),
        job_types: vec![JobType::new("t")],
        max: 10,
        ttl_ms: None,
    });
    assert_eq!(
        held,
        Ok(Reply::Leased {
            grants: vec![],
            held: Some(LeaseHold::Maintenance)
        })
    );
    let hb = c.apply(Command::Heartbeat {
        job_id: a,
        lease_id: leased.lease_id,
    });
    assert!(hb.is_ok());
    c.succeed(&leased);
    assert_eq!(c.state.maintenance(), Some(&on));
    c.apply(Command::SetMaintenance {
        enabled: false,
        stamp: stamp(),
    })
    .unwrap();
    assert_eq!(c.lease("w", &["t"], 1)[0].job_id, b);
    let tickets: Vec<Option<&str>> = c
        .state
        .governance_history()
        .iter()
        .map(|e| e.stamp.as_ref().and_then(|s| s.ticket.as_deref()))
        .collect();
    assert_eq!(tickets, vec![Some("CHG-12"), None]);
}

#[test]
fn every_governance_change_records_actor_reason_and_ticket() {
    let mut c = Cluster::new();
    let mut s = Stamp::new("alice", "black friday");
    s.ticket = Some("OPS-99".into());
    let commands = vec![
        Command::SetQuota {
            tenant: TenantId::new("a"),
            job_type: None,
            max_active: Some(5),
            max_per_hour: None,
            burst: None,
            stamp: s.clone(),
        },
        Command::Throttle {
            scope: Scope::tenant("a"),
            max_concurrent: Some(2),
            stamp: s.clone(),
        },
        Command::PauseSource {
            scope: Scope::tenant("a"),
            stamp: s.clone(),
        },
        Command::ResumeSource {
            scope: Scope::tenant("a"),
            stamp: s.clone(),
        },
        Command::ConfigureBreaker {
            job_type: JobType::new("t"),
            config: None,
            stamp: s.clone(),
        },
        Command::SetMaintenance {
            enabled: true,
            stamp: s.clone(),
        },
    ];
    let n = commands.len();
    for command in commands {
        c.apply(command).unwrap();
    }
    let history = c.state.governance_history();
    assert_eq!(history.len(), n);
    assert!(history.iter().all(|e| e.stamp.as_ref() == Some(&s)));
    assert!(history.windows(2).all(|w| w[0].log_index < w[1].log_index));
}

#[test]
fn an_incident_is_acknowledged_then_resolved_which_resets_its_breaker() {
    let mut c = Cluster::new();
    c.apply(Command::ConfigureBreaker {
        job_type: JobType::new("pay"),
        config: Some(BreakerConfig {
            failure_threshold_percent: 50,
            window_ms: 60_000,
            min_attempts: 2,
        }),
        stamp: stamp(),
    })
    .unwrap();
    for _ in 0..5 {
        let mut s = spec("acme", "pay");
        s.retry.max_attempts = 1;
        c.enqueue(s);
    }
    let grants = c.lease("w", &["pay"], 2);
    c.fail(&grants[0], false);
    c.fail(&grants[1], false);
    let incident = c.state.incidents(true)[0].id;
    assert!(c.lease("w", &["pay"], 10).is_empty(), "the breaker is open");

    let on_it = Stamp {
        actor: "oncall@example.com".into(),
        reason: "looking at the payment gateway".into(),
        ticket: Some("INC-42".into()),
    };
    c.apply(Command::AcknowledgeIncident {
        incident,
        stamp: on_it.clone(),
    })
    .unwrap();
    let (at, by) = c
        .state
        .incident_ack(incident)
        .expect("acknowledged")
        .clone();
    assert_eq!((at, &by), (c.now_ms, &on_it));
    // A snapshot keeps the acknowledgement.
    let restored = State::restore(&c.state.snapshot().unwrap()).unwrap();
    assert_eq!(restored.incident_ack(incident), Some(&(at, on_it.clone())));
    assert_eq!(restored.digest().unwrap(), c.state.digest().unwrap());

    c.apply(Command::ResolveIncident {
        incident,
        stamp: stamp(),
    })
    .unwrap();
    assert!(c.state.incidents(true).is_empty());
    assert_eq!(c.lease("w", &["pay"], 10).len(), 3, "leased again");
    for command in [
        Command::ResolveIncident {
            incident,
            stamp: stamp(),
        },
        Command::AcknowledgeIncident {
            incident,
            stamp: stamp(),
        },
        Command::AcknowledgeIncident {
            incident: IncidentId(99),
            stamp: stamp(),
        },
    ] {
        assert!(matches!(
            c.apply(command),
            Err(SchedulerError::IncidentNotOpen(_))
        ));
    }
    let kinds: Vec<&str> = c
        .state
        .governance_history()
        .iter()
        .map(|e| e.change.kind())
        .collect();
    assert!(
        kinds.ends_with(&["incident_acknowledged", "incident_resolved"]),
        "{kinds:?}"
    );
}

#[test]
fn a_job_held_back_by_a_quota_shows_as_pending_with_its_next_eligible_time() {
    let mut c = Cluster::new();
    // One an hour, bursting to one: after the first lease, the next token is an hour off.
    quota(&mut c, "acme", None, None, Some(1), Some(1));
    let first = c.enqueue(spec("acme", "t"));
    let second = c.enqueue(spec("acme", "t"));
    let free = c.enqueue(spec("globex", "u"));
    let shown = |c: &Cluster, id| {
        let job = c.state.job(id).expect("in memory");
        (c.state.shown_status(job), c.state.job_hold(job))
    };
    assert_eq!(shown(&c, second), (Status::Ready, None), "a token is there");
    let granted = c.lease("w", &["t"], 1);
    assert_eq!(granted[0].job_id, first);
    let leased_at = c.state.now_ms();
    let (status, hold) = shown(&c, second);
    assert_eq!(status, Status::Pending);
    let hold = hold.expect("held back");
    assert_eq!(hold.kind(), "rate_limit");
    assert_eq!(hold.eligible_ms(), Some(leased_at + 3_600_000));
    assert_eq!(c.state.job(second).map(Job::status), Some(Status::Ready));
    assert_eq!(
        shown(&c, free),
        (Status::Ready, None),
        "other tenants are free"
    );

    // Listings filter on the status shown: the held job is pending, not ready.
    let ids = |c: &Cluster, status| {
        let filter = JobFilter {
            status: Some(status),
            ..JobFilter::default()
        };
        let page = c.state.list_jobs(&filter, None, 100);
        page.jobs.iter().map(|j| j.id).collect::<Vec<_>>()
    };
    let waiting = c.enqueue(JobSpec {
        not_before_ms: Some(c.state.now_ms() + 10_000),
        ..spec("globex", "u")
    });
    assert_eq!(ids(&c, Status::Pending), vec![second, waiting]);
    assert_eq!(ids(&c, Status::Ready), vec![free]);
    // A page at a time, across the two kinds of pending.
    let pending = JobFilter {
        status: Some(Status::Pending),
        ..JobFilter::default()
    };
    let page = c.state.list_jobs(&pending, None, 1);
    assert_eq!(page.jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [second]);
    assert_eq!(page.next_after, Some(second));
    let page = c.state.list_jobs(&pending, page.next_after, 1);
    assert_eq!(
        page.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        [waiting]
    );
    assert_eq!(page.next_after, None);

    // When the token comes, it is ready again, and leased.
    c.advance(3_600_000);
    assert_eq!(shown(&c, second), (Status::Ready, None));
    let granted = c.lease("w", &["t"], 1);
    assert_eq!(granted[0].job_id, second);
}

#[test]
fn a_pause_outranks_a_rate_in_what_a_held_job_shows() {
    let mut c = Cluster::new();
    quota(&mut c, "acme", None, None, Some(1), Some(1));
    c.enqueue(spec("acme", "t"));
    let second = c.enqueue(spec("acme", "t"));
    c.lease("w", &["t"], 1);
    c.apply(Command::PauseSource {
        scope: Scope {
            tenant: None,
            job_type: Some(JobType::new("t")),
        },
        stamp: stamp(),
    })
    .expect("paused");
    let job = c.state.job(second).expect("in memory");
    let hold = c.state.job_hold(job).expect("held back");
    // The rate's token would come in an hour, but the pause has no end in sight.
    assert_eq!((hold.kind(), hold.eligible_ms()), ("paused", None));
}

#[test]
fn a_job_held_back_by_a_cap_shows_as_pending_with_no_time() {
    let mut c = Cluster::new();
    quota(&mut c, "acme", Some("t"), Some(1), None, None);
    c.enqueue(spec("acme", "t"));
    let second = c.enqueue(spec("acme", "t"));
    let grant = c.lease("w", &["t"], 5).remove(0);
    let job = c.state.job(second).expect("in memory");
    let hold = c.state.job_hold(job).expect("held back");
    assert_eq!((hold.kind(), hold.eligible_ms()), ("quota", None));
    assert!(hold.describe().contains("acme"), "{}", hold.describe());
    c.succeed(&grant);
    let job = c.state.job(second).expect("in memory");
    assert_eq!(c.state.job_hold(job), None, "a slot freed");
}

#[test]
fn membership_changes_go_in_the_governance_history() {
    let mut c = Cluster::new();
    let note = |c: &mut Cluster, change: MembershipChange| {
        c.apply(Command::NoteMembership {
            change,
            stamp: stamp(),
        })
    };
    note(
        &mut c,
        MembershipChange::LearnerAdded {
            node: 4,
            addr: "10.0.0.4:7071".to_owned(),
        },
    )
    .expect("recorded");
    note(&mut c, MembershipChange::Promoted { node: 4 }).expect("recorded");
    note(
        &mut c,
        MembershipChange::Removed {
            node: 2,
            voter: true,
            forced: true,
        },
    )
    .expect("recorded");
    let kinds: Vec<_> = c
        .state
        .governance_history()
        .iter()
        .filter(|e| e.change.kind() == "membership")
        .map(|e| (e.change.clone(), e.stamp.clone()))
        .collect();
    assert_eq!(kinds.len(), 3);
    assert_eq!(
        kinds[2].0,
        GovernanceChange::Membership {
            change: MembershipChange::Removed {
                node: 2,
                voter: true,
                forced: true
            }
        }
    );
    assert_eq!(kinds[0].1.as_ref(), Some(&stamp()));
    assert!(GovernanceChange::KINDS.contains(&"membership"));

    // A record with no reason, or an address no node could have, is refused.
    let refused = note(
        &mut c,
        MembershipChange::LearnerAdded {
            node: 5,
            addr: "a\nb".to_owned(),
        },
    );
    assert!(refused.is_err(), "{refused:?}");
    let unstamped = c.apply(Command::NoteMembership {
        change: MembershipChange::Promoted { node: 5 },
        stamp: Stamp::new("ops", ""),
    });
    assert!(unstamped.is_err(), "{unstamped:?}");
}

#[test]
fn a_released_lease_sends_the_job_back_and_its_attempt_does_not_count() {
    let mut c = Cluster::new();
    let id = c.enqueue(JobSpec {
        retry: RetryPolicy {
            max_attempts: 2,
            base_backoff_ms: 1_000,
            max_backoff_ms: 1_000,
        },
        ..spec("acme", "t")
    });
    let stuck = c.lease("w-stuck", &["t"], 1).remove(0);
    let wrong = c.apply(Command::ReleaseLease {
        job_id: id,
        lease_id: Some(LeaseId(stuck.lease_id.0 + 1)),
        stamp: stamp(),
    });
    assert!(
        matches!(wrong, Err(SchedulerError::StaleLease { .. })),
        "another lease than the one named: {wrong:?}"
    );
    let release = |c: &mut Cluster| {
        c.apply(Command::ReleaseLease {
            job_id: id,
            lease_id: None,
            stamp: stamp(),
        })
    };
    release(&mut c).expect("released");
    assert_eq!(c.status(id), Status::Ready);
    let job = c.state.job(id).expect("in memory");
    assert!(matches!(
        job.attempts[0].outcome,
        Some(AttemptOutcome::Released { .. })
    ));
    assert_eq!(job.counted_attempts(), 0);
    // The stuck worker's lease is gone: its heartbeat is refused as stale.
    let late = c.apply(Command::Heartbeat {
        job_id: id,
        lease_id: stuck.lease_id,
    });
    assert!(
        matches!(late, Err(SchedulerError::StaleLease { .. })),
        "{late:?}"
    );
    // Leased again, it fails once: with the released attempt not counted, it is retried
    // rather than dead-lettered.
    let again = c.lease("w-2", &["t"], 1).remove(0);
    assert_eq!(again.attempt, 2);
    c.fail(&again, true);
    assert_eq!(c.status(id), Status::Failed);
    let refused = release(&mut c);
    assert!(
        matches!(refused, Err(SchedulerError::WrongState { .. })),
        "{refused:?}"
    );
    assert!(c
        .state
        .governance_history()
        .iter()
        .any(|e| e.change.kind() == "lease_released"));
}

#[test]
fn a_blocked_tenant_adds_no_work_and_is_not_leased_until_unblocked() {
    let mut c = Cluster::new();
    let waiting = c.enqueue(spec("acme", "t"));
    let block = |c: &mut Cluster, blocked| {
        c.apply(Command::BlockTenant {
            tenant: TenantId::new("acme"),
            blocked,
            stamp: stamp(),
        })
    };
    block(&mut c, true).expect("blocked");
    let refused = c.apply(Command::Enqueue {
        spec: spec("acme", "t"),
    });
    assert!(
        matches!(refused, Err(SchedulerError::TenantBlocked { .. })),
        "{refused:?}"
    );
    let plan = c.apply(Command::SubmitPlan {
        steps: vec![PlanStep {
            key: "a".to_owned(),
            spec: spec("acme", "t"),
            depends_on: vec![],
        }],
        backfill: None,
    });
    assert!(
        matches!(plan, Err(SchedulerError::TenantBlocked { .. })),
        "{plan:?}"
    );
    let other = c.enqueue(spec("globex", "t"));
    let granted = c.lease("w", &["t"], 10);
    assert_eq!(
        granted.iter().map(|g| g.job_id).collect::<Vec<_>>(),
        [other]
    );
    let job = c.state.job(waiting).expect("in memory");
    assert_eq!(c.state.shown_status(job), Status::Pending);
    assert_eq!(c.state.job_hold(job).map(|h| h.kind()), Some("blocked"));

    // Kept through a snapshot.
    let restored = State::restore(&c.state.snapshot().expect("snapshot")).expect("restore");
    assert_eq!(restored.blocked_tenants().count(), 1);

    block(&mut c, false).expect("unblocked");
    let granted = c.lease("w", &["t"], 10);
    assert_eq!(
        granted.iter().map(|g| g.job_id).collect::<Vec<_>>(),
        [waiting]
    );
    c.enqueue(spec("acme", "t"));
    let kinds: Vec<&str> = c
        .state
        .governance_history()
        .iter()
        .map(|e| e.change.kind())
        .filter(|k| k.starts_with("tenant_"))
        .collect();
    assert_eq!(kinds, ["tenant_blocked", "tenant_unblocked"]);
}
