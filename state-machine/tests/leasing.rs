//! Leases, fencing, heartbeats, completions, expiry, retries and the scheduling order.

mod common;
use common::{spec, stamp, Cluster};
use rota_state_machine::*;

#[test]
fn lease_grants_fencing_tokens_that_strictly_increase() {
    let mut c = Cluster::new();
    for _ in 0..5 {
        c.enqueue(spec("acme", "email"));
    }
    let first = c.lease("w1", &["email"], 2);
    let second = c.lease("w2", &["email"], 3);
    let tokens: Vec<u64> = first.iter().chain(&second).map(|g| g.lease_id.0).collect();
    assert_eq!(tokens.len(), 5);
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    // Derived from the log index: the second command's tokens sit above the first's.
    assert!(second[0].lease_id.0 >= c.index << 20);
    let g = &first[0];
    assert_eq!(g.lease_until_ms, c.now_ms + DEFAULT_LEASE_TTL_MS);
    assert_eq!(g.attempt, 1);
    assert_eq!(g.payload, b"acme/email".to_vec());
}

#[test]
fn lease_only_takes_the_job_types_asked_for() {
    let mut c = Cluster::new();
    c.enqueue(spec("acme", "email"));
    let sms = c.enqueue(spec("acme", "sms"));
    let grants = c.lease("w", &["sms", "fax"], 10);
    assert_eq!(
        grants.iter().map(|g| g.job_id).collect::<Vec<_>>(),
        vec![sms]
    );
}

#[test]
fn bad_lease_requests_are_rejected() {
    let mut c = Cluster::new();
    c.enqueue(spec("acme", "email"));
    let cases = [
        ("", vec!["email"], 1, None),
        ("w", vec![], 1, None),
        ("w", vec!["email"], 0, None),
        ("w", vec!["email"], MAX_LEASE_BATCH + 1, None),
        ("w", vec!["email"], 1, Some(1)),
    ];
    for (worker, types, max, ttl_ms) in cases {
        let command = Command::Lease {
            worker: WorkerId::new(worker),
            job_types: types.into_iter().map(JobType::new).collect(),
            max,
            ttl_ms,
        };
        let err = c.apply(command).unwrap_err();
        assert!(matches!(err, SchedulerError::InvalidInput { .. }), "{err}");
    }
    assert_eq!(c.state.last_lease_id(), 0);
}

#[test]
fn priority_then_eligible_time_then_id_within_a_tenant() {
    let mut c = Cluster::new();
    let low = c.enqueue(spec("acme", "t"));
    c.advance(10);
    let mut urgent = spec("acme", "t");
    urgent.priority = 200;
    let high = c.enqueue(urgent);
    let also_low = c.enqueue(spec("acme", "t"));
    let order: Vec<JobId> = (0..3).map(|_| c.lease("w", &["t"], 1)[0].job_id).collect();
    assert_eq!(order, vec![high, low, also_low]);
}

#[test]
fn tenant_fairness_under_skewed_load() {
    let mut c = Cluster::new();
    for _ in 0..1_000 {
        c.enqueue(spec("big", "t"));
    }
    for _ in 0..10 {
        c.enqueue(spec("small", "t"));
    }
    let mut small_served = 0;
    for _ in 0..4 {
        let grants = c.lease("w", &["t"], 5);
        small_served += grants
            .iter()
            .filter(|g| g.tenant.as_str() == "small")
            .count();
        for g in &grants {
            c.succeed(g);
        }
    }
    // Round-robin over tenants: of 20 grants the small tenant gets half, though it has 1%
    // of the work.
    assert_eq!(small_served, 10);
}

#[test]
fn round_robin_continues_across_lease_calls() {
    let mut c = Cluster::new();
    for tenant in ["a", "b", "c"] {
        for _ in 0..3 {
            c.enqueue(spec(tenant, "t"));
        }
    }
    let served: Vec<String> = (0..6)
        .map(|_| c.lease("w", &["t"], 1)[0].tenant.to_string())
        .collect();
    assert_eq!(served, vec!["a", "b", "c", "a", "b", "c"]);
}

#[test]
fn stale_fencing_token_cannot_complete() {
    let mut c = Cluster::new();
    let id = c.enqueue(spec("acme", "t"));
    let zombie = c.lease("w1", &["t"], 1).remove(0);
    c.advance(DEFAULT_LEASE_TTL_MS); // the lease expires: a timed-out attempt
    assert_eq!(c.status(id), Status::Failed);
    c.advance(DEFAULT_LEASE_TTL_MS * 20); // past any backoff
    let fresh = c.lease("w2", &["t"], 1).remove(0);
    assert!(fresh.lease_id > zombie.lease_id);
    let before = c.digest();
    let late = c.complete(&zombie, Completion::Succeeded { outputs: vec![] });
    assert_eq!(
        late,
        Err(SchedulerError::StaleLease {
            job_id: id,
            presented: zombie.lease_id
        })
    );
    let hb = c.apply(Command::Heartbeat {
        job_id: id,
        lease_id: zombie.lease_id,
    });
    assert!(matches!(hb, Err(SchedulerError::StaleLease { .. })));
    assert_eq!(c.digest(), before, "a stale token changes nothing");
    c.succeed(&fresh);
    assert_eq!(c.status(id), Status::Succeeded);
}

#[test]
fn unknown_job_and_unknown_token_are_typed_errors() {
    let mut c = Cluster::new();
    let id = c.enqueue(spec("acme", "t"));
    let hb = c.apply(Command::Heartbeat {
        job_id: JobId(404),
        lease_id: LeaseId(1),
    });
    assert_eq!(hb, Err(SchedulerError::JobNotFound(JobId(404))));
    let done = c.apply(Command::Complete {
        job_id: id,
        lease_id: LeaseId(12345),
        completion: Completion::Succeeded { outputs: vec![] },
    });
    assert_eq!(
        done,
        Err(SchedulerError::StaleLease {
            job_id: id,
            presented: LeaseId(12345)
        })
    );
    assert_eq!(c.status(id), Status::Ready);
}

#[test]
fn second_completion_of_the_same_lease_is_rejected() {
    let mut c = Cluster::new();
    let id = c.enqueue(spec("acme", "t"));
    let g = c.lease("w", &["t"], 1).remove(0);
    c.succeed(&g);
    let again = c.complete(&g, Completion::Succeeded { outputs: vec![] });
    assert_eq!(
        again,
        Err(SchedulerError::StaleLease {
            job_id: id,
            presented: g.lease_id
        })
    );
    let job = c.state.job(id).unwrap();
    assert_eq!(job.attempts.len(), 1);
    let successes = job
        .history
        .iter()
        .filter(|e| e.kind == JobEventKind::Succeeded)
        .count();
    assert_eq!(successes, 1);
}

#[test]
fn heartbeat_renews_the_lease() {
    let mut c = Cluster::new();
    let id = c.enqueue(spec("acme", "t"));
    let g = c.lease("w", &["t"], 1).remove(0);
    for _ in 0..5 {
        c.advance(DEFAULT_LEASE_TTL_MS - 1);
        let ack = c.apply(Command::Heartbeat {
            job_id: id,
            lease_id: g.lease_id,
        });
        assert_eq!(
            ack,
            Ok(Reply::HeartbeatAck {
                lease_until_ms: c.now_ms + DEFAULT_LEASE_TTL_MS,
                canceled: false
            })
        );
    }
    assert_eq!(c.status(id), Status::Leased);
    c.succeed(&g);
}

#[test]
fn expired_lease_is_a_timed_out_attempt_and_retries() {
    let mut c = Cluster::new();
    let id = c.enqueue(spec("acme", "t"));
    let g = c.lease("w", &["t"], 1).remove(0);
    c.advance(DEFAULT_LEASE_TTL_MS - 1);
    assert_eq!(c.status(id), Status::Leased);
    c.advance(1);
    let job = c.state.job(id).unwrap();
    assert_eq!(job.attempts[0].outcome, Some(AttemptOutcome::TimedOut));
    let JobState::Failed { retry_at_ms, error } = &job.state else {
        panic!("expected a retry, got {:?}", job.state);
    };
    assert!(error.contains(&g.lease_id.to_string()));
    let wait = retry_at_ms - c.now_ms;
    assert_eq!(wait, backoff_ms(id, 1, &RetryPolicy::default()));
}

#[test]
fn failed_attempts_back_off_exponentially_with_deterministic_jitter() {
    let policy = RetryPolicy {
        max_attempts: 10,
        base_backoff_ms: 1_000,
        max_backoff_ms: 60_000,
    };
    for attempt in 1..=8u32 {
        let exp = (1_000u64 << (attempt - 1)).min(60_000);
        let b = backoff_ms(JobId(7), attempt, &policy);
        assert!(
            (exp / 2..=exp).contains(&b),
            "attempt {attempt}: {b} not in [{}, {exp}]",
            exp / 2
        );
        assert_eq!(
            b,
            backoff_ms(JobId(7), attempt, &policy),
            "same inputs, same jitter"
        );
    }
    let spread: std::collections::BTreeSet<u64> =
        (0..50).map(|j| backoff_ms(JobId(j), 3, &policy)).collect();
    assert!(
        spread.len() > 40,
        "jitter spreads jobs that failed together"
    );
}

#[test]
fn retry_becomes_ready_when_backoff_passes() {
    let mut c = Cluster::new();
    let id = c.enqueue(spec("acme", "t"));
    let g = c.lease("w", &["t"], 1).remove(0);
    c.fail(&g, true);
    let JobState::Failed { retry_at_ms, .. } = c.state.job(id).unwrap().state else {
        panic!("should be failed");
    };
    assert!(c.lease("w", &["t"], 1).is_empty());
    c.advance(retry_at_ms - c.now_ms);
    assert_eq!(c.status(id), Status::Ready);
    let again = c.lease("w", &["t"], 1).remove(0);
    assert_eq!(again.attempt, 2);
}

#[test]
fn dead_letter_after_max_attempts() {
    let mut c = Cluster::new();
    let mut s = spec("acme", "t");
    s.retry.max_attempts = 3;
    let id = c.enqueue(s);
    for attempt in 1..=3 {
        c.advance(600_000);
        let g = c.lease("w", &["t"], 1).remove(0);
        assert_eq!(g.attempt, attempt);
        c.complete(
            &g,
            Completion::Failed {
                retryable: true,
                error: format!("err {attempt}"),
            },
        )
        .unwrap();
    }
    let job = c.state.job(id).unwrap();
    assert_eq!(
        job.state,
        JobState::DeadLettered {
            at_ms: c.now_ms,
            error: "err 3".into()
        }
    );
    assert_eq!(
        c.state
            .dead_letters(None, 10)
            .jobs
            .iter()
            .map(|j| j.id)
            .collect::<Vec<_>>(),
        vec![id]
    );
    c.advance(600_000);
    assert!(c.lease("w", &["t"], 1).is_empty());
}

#[test]
fn non_retryable_failure_dead_letters_at_once() {
    let mut c = Cluster::new();
    let id = c.enqueue(spec("acme", "t"));
    let g = c.lease("w", &["t"], 1).remove(0);
    c.fail(&g, false);
    assert_eq!(c.status(id), Status::DeadLettered);
    assert_eq!(c.state.job(id).unwrap().attempts.len(), 1);
}

#[test]
fn worker_can_give_a_job_up() {
    let mut c = Cluster::new();
    let id = c.enqueue(spec("acme", "t"));
    let g = c.lease("w", &["t"], 1).remove(0);
    let done = c.complete(
        &g,
        Completion::Canceled {
            reason: "input vanished".into(),
        },
    );
    assert_eq!(
        done,
        Ok(Reply::Completed {
            job_id: id,
            status: Status::Canceled
        })
    );
}

#[test]
fn long_worker_errors_are_clipped_not_rejected() {
    let mut c = Cluster::new();
    let id = c.enqueue(spec("acme", "t"));
    let g = c.lease("w", &["t"], 1).remove(0);
    let error = "é".repeat(10_000);
    c.complete(
        &g,
        Completion::Failed {
            retryable: false,
            error,
        },
    )
    .unwrap();
    let JobState::DeadLettered { error, .. } = &c.state.job(id).unwrap().state else {
        panic!("dead-lettered expected");
    };
    assert!(error.len() <= 4_096 && !error.is_empty());
}

#[test]
fn lease_ttl_override_applies_to_the_grant() {
    let mut c = Cluster::new();
    c.enqueue(spec("acme", "t"));
    let command = Command::Lease {
        worker: WorkerId::new("w"),
        job_types: vec![JobType::new("t")],
        max: 1,
        ttl_ms: Some(5_000),
    };
    let Ok(Reply::Leased { grants, .. }) = c.apply(command) else {
        panic!()
    };
    assert_eq!(grants[0].lease_until_ms, c.now_ms + 5_000);
    c.advance(5_000);
    assert_eq!(c.status(grants[0].job_id), Status::Failed);
}

#[test]
fn canceling_a_leased_job_frees_its_quota_slot() {
    let mut c = Cluster::new();
    c.apply(Command::SetQuota {
        tenant: TenantId::new("acme"),
        job_type: None,
        max_active: Some(1),
        max_per_hour: None,
        burst: None,
        stamp: stamp(),
    })
    .unwrap();
    let first = c.enqueue(spec("acme", "t"));
    c.enqueue(spec("acme", "t"));
    assert_eq!(c.lease("w", &["t"], 5).len(), 1);
    c.apply(Command::Cancel {
        job_id: first,
        stamp: stamp(),
    })
    .unwrap();
    assert_eq!(c.lease("w", &["t"], 5).len(), 1);
}

#[test]
fn next_due_is_the_earliest_lease_expiry_timer_or_retention_and_none_when_idle() {
    let mut c = Cluster::new();
    let job = c.enqueue(spec("acme", "email"));
    assert_eq!(c.state.next_due_ms(), None, "a ready job waits on no clock");
    let grant = c.lease("w", &["email"], 1).remove(0);
    assert_eq!(grant.ttl_ms, DEFAULT_LEASE_TTL_MS);
    assert_eq!(c.state.next_due_ms(), Some(grant.lease_until_ms));
    let mut later = spec("acme", "email");
    later.not_before_ms = Some(c.now_ms + 5);
    c.enqueue(later);
    assert_eq!(c.state.next_due_ms(), Some(c.now_ms + 5));
    c.advance(10);
    assert_eq!(c.state.next_due_ms(), Some(grant.lease_until_ms));
    let done = c.apply(Command::Complete {
        job_id: job,
        lease_id: grant.lease_id,
        completion: Completion::Succeeded { outputs: vec![] },
    });
    assert!(done.is_ok(), "{done:?}");
    assert_eq!(
        c.state.next_due_ms(),
        None,
        "no retention set: nothing waits"
    );
    c.apply(Command::SetRetention {
        change: RetentionChange::default(),
        stamp: Stamp::new("ops", "defaults"),
    })
    .unwrap();
    let r = *c.state.retention().expect("set");
    assert_eq!(
        c.state.next_due_ms(),
        Some(c.now_ms + r.succeeded_ms),
        "the finished job leaves memory when its retention window ends"
    );
    c.advance(r.succeeded_ms);
    assert!(c.state.job(job).is_none(), "archived");
    assert!(
        c.state.next_due_ms().is_some_and(|due| due > c.now_ms),
        "then the archive's window and the history's"
    );
}

#[test]
fn lease_may_grant_is_false_only_when_a_valid_lease_would_grant_nothing() {
    let mut c = Cluster::new();
    let worker = WorkerId::new("w");
    let email = [JobType::new("email")];
    let may = |c: &Cluster, types: &[JobType], max: u32| {
        c.state
            .lease_may_grant(&worker, types, max, None, None, c.now_ms)
    };
    assert!(!may(&c, &email, 10), "nothing to lease");
    assert!(
        may(&c, &email, 0),
        "an invalid lease goes to the log for its error"
    );
    assert!(
        may(&c, &[], 10),
        "an invalid lease goes to the log for its error"
    );

    c.enqueue(spec("acme", "sms"));
    assert!(
        !may(&c, &email, 10),
        "ready work of another type does not count"
    );
    let job = c.enqueue(spec("acme", "email"));
    assert!(may(&c, &email, 10));

    // Leased: nothing ready, until its lease runs out (time-driven work is due).
    let grants = c.lease("w", &["email"], 1);
    assert_eq!(grants[0].job_id, job);
    assert!(!may(&c, &email, 10));
    let expired_at = grants[0].lease_until_ms;
    assert!(c
        .state
        .lease_may_grant(&worker, &email, 10, None, None, expired_at));

    // Ready work governance holds back does not count: a paused source's job waits.
    let held = c.enqueue(spec("acme", "email"));
    assert!(may(&c, &email, 10));
    c.apply(Command::PauseSource {
        scope: Scope::pair("acme", "email"),
        stamp: stamp(),
    })
    .expect("pause");
    assert!(!may(&c, &email, 10), "the only ready job is paused");
    c.apply(Command::ResumeSource {
        scope: Scope::pair("acme", "email"),
        stamp: stamp(),
    })
    .expect("resume");
    assert!(may(&c, &email, 10));
    assert_eq!(c.lease("w", &["email"], 1)[0].job_id, held);

    // Maintenance answers with its hold through the log.
    c.apply(Command::SetMaintenance {
        enabled: true,
        stamp: stamp(),
    })
    .expect("maintenance on");
    assert!(may(&c, &email, 10));
}

#[test]
fn a_backoff_as_long_as_time_itself_does_not_overflow_log_time() {
    let mut cluster = Cluster::new();
    // Log time far along, so that any backoff of half of u64::MAX or more passes its end.
    cluster.advance(u64::MAX - (1 << 62) - cluster.now_ms);
    let mut spec = spec("acme", "email");
    // A client may ask for any backoff up to u64::MAX; the retry time saturates.
    spec.retry = RetryPolicy {
        max_attempts: 3,
        base_backoff_ms: u64::MAX,
        max_backoff_ms: u64::MAX,
    };
    let job = cluster.enqueue(spec);
    let grants = cluster.lease("w1", &["email"], 1);
    let failed = Completion::Failed {
        retryable: true,
        error: "try again".to_owned(),
    };
    cluster
        .complete(&grants[0], failed)
        .expect("the failure is recorded");
    let shown = cluster.state.job(job).expect("the job");
    match &shown.state {
        JobState::Failed { retry_at_ms, .. } => assert!(*retry_at_ms > cluster.now_ms),
        other => panic!("expected a scheduled retry, got {other:?}"),
    }
}

#[test]
fn a_lease_stops_granting_before_its_payloads_pass_the_reply_budget() {
    let mut cluster = Cluster::new();
    let payload = MAX_PAYLOAD_BYTES;
    let fit = MAX_LEASE_PAYLOAD_BYTES / payload;
    for _ in 0..fit + 2 {
        let mut big = spec("acme", "email");
        big.payload = vec![9; payload];
        cluster.enqueue(big);
    }
    let first = cluster.lease("w1", &["email"], 1_000);
    assert_eq!(first.len(), fit, "as many as fit in the budget");
    let bytes: usize = first.iter().map(|g| g.payload.len()).sum();
    assert!(bytes <= MAX_LEASE_PAYLOAD_BYTES);
    let rest = cluster.lease("w1", &["email"], 1_000);
    assert_eq!(
        rest.len(),
        2,
        "the rest wait for the next lease, still ready"
    );
}

#[test]
fn a_lease_within_tenants_grants_only_their_jobs() {
    let mut c = Cluster::new();
    for tenant in ["acme", "globex", "initech", "acme"] {
        c.enqueue(spec(tenant, "email"));
    }
    let within = |tenants: &[&str]| Command::LeaseWithin {
        worker: WorkerId::new("w"),
        job_types: vec![JobType::new("email")],
        max: 10,
        ttl_ms: None,
        tenants: tenants.iter().map(|t| TenantId::from(*t)).collect(),
    };
    let granted = |reply: Reply| match reply {
        Reply::Leased { grants, .. } => grants,
        other => panic!("not a lease: {other:?}"),
    };
    let grants = granted(c.apply(within(&["acme", "initech"])).unwrap());
    let tenants: Vec<String> = grants
        .iter()
        .map(|g| c.state.job(g.job_id).unwrap().spec.tenant.to_string())
        .collect();
    assert_eq!(tenants.len(), 3, "{tenants:?}");
    assert!(tenants.iter().all(|t| t != "globex"), "{tenants:?}");
    // Nothing of theirs is left; globex's job still waits for someone allowed to take it.
    assert!(granted(c.apply(within(&["acme"])).unwrap()).is_empty());
    assert!(!c.state.lease_may_grant(
        &WorkerId::new("w"),
        &[JobType::new("email")],
        10,
        None,
        Some(&[TenantId::from("acme")].into()),
        c.now_ms
    ));
    assert_eq!(granted(c.apply(within(&["globex"])).unwrap()).len(), 1);
    // A bound lease names at least one tenant.
    let err = c.apply(within(&[])).unwrap_err();
    assert!(matches!(err, SchedulerError::InvalidInput { .. }), "{err}");
}

#[test]
fn a_worker_reported_timeout_ends_the_attempt_timed_out_and_retries_until_the_last() {
    let mut cluster = Cluster::new();
    let mut s = spec("acme", "email");
    s.retry.max_attempts = 2;
    let job = cluster.enqueue(s);
    let late = || Completion::TimedOut {
        error: "ran past 10 minutes".to_owned(),
    };
    let first = cluster.lease("w1", &["email"], 1).remove(0);
    cluster.complete(&first, late()).expect("recorded");
    let shown = cluster.state.job(job).expect("the job");
    assert_eq!(shown.attempts[0].outcome, Some(AttemptOutcome::TimedOut));
    assert_eq!(
        shown.status(),
        Status::Failed,
        "retried: an attempt remains"
    );
    cluster.advance(24 * 3_600_000);
    let second = cluster.lease("w1", &["email"], 1).remove(0);
    assert_eq!(second.attempt, 2);
    cluster.complete(&second, late()).expect("recorded");
    let shown = cluster.state.job(job).expect("the job");
    assert_eq!(shown.status(), Status::DeadLettered);
    match &shown.state {
        JobState::DeadLettered { error, .. } => {
            assert!(error.contains("timed out: ran past 10 minutes"), "{error}")
        }
        other => panic!("expected dead-lettered, got {other:?}"),
    }
}

#[test]
fn a_finished_job_keeps_no_spare_room_and_jobs_of_one_name_share_it() {
    let mut c = Cluster::new();
    let first = c.enqueue(spec("acme", "email"));
    let second = c.enqueue(spec("acme", "email"));
    for grant in c.lease("w", &["email"], 2) {
        c.succeed(&grant);
    }
    let (a, b) = match (c.state.job(first), c.state.job(second)) {
        (Some(a), Some(b)) => (a, b),
        _ => panic!("both jobs are in memory"),
    };
    for job in [a, b] {
        assert_eq!(job.status(), Status::Succeeded);
        // Kept until retention: a spare slot here is memory held for nothing, per job.
        assert_eq!(job.attempts.len(), 1);
        assert_eq!(job.attempts.capacity(), 1, "attempts of job {}", job.id);
        assert_eq!(job.history.len(), 5, "{:?}", job.history);
        assert_eq!(job.history.capacity(), 5, "history of job {}", job.id);
    }
    // The second job's names were decoded on their own, and it took the first's.
    assert!(std::sync::Arc::ptr_eq(&a.spec.tenant.0, &b.spec.tenant.0));
    assert!(std::sync::Arc::ptr_eq(
        &a.spec.job_type.0,
        &b.spec.job_type.0
    ));
}
