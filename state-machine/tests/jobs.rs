//! Enqueue, plans, cancel, replay, backfills, lineage, history and queries.

mod common;
use common::{spec, stamp, Cluster};
use rota_state_machine::*;

fn step(key: &str, deps: &[&str]) -> PlanStep {
    PlanStep {
        key: key.to_owned(),
        spec: spec("acme", "etl"),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
    }
}

fn submit_plan(c: &mut Cluster, steps: Vec<PlanStep>) -> (PlanId, Vec<(String, JobId)>) {
    match c.apply(Command::SubmitPlan {
        steps,
        backfill: None,
    }) {
        Ok(Reply::PlanSubmitted { plan_id, jobs }) => (plan_id, jobs),
        other => panic!("plan rejected: {other:?}"),
    }
}

fn job_of(jobs: &[(String, JobId)], key: &str) -> JobId {
    jobs.iter().find(|(k, _)| k == key).expect("step").1
}

#[test]
fn enqueue_records_spec_digest_and_history() {
    let mut c = Cluster::new();
    let id = c.enqueue(spec("acme", "email"));
    let job = c.state.job(id).unwrap();
    assert_eq!(job.status(), Status::Ready);
    assert_eq!(job.created_ms, c.now_ms);
    let expected = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"acme/email"));
    assert_eq!(job.payload_digest_hex(), expected);
    let kinds: Vec<_> = job.history.iter().map(|e| e.kind.clone()).collect();
    assert_eq!(kinds, vec![JobEventKind::Enqueued, JobEventKind::Ready]);
    assert!(job.history.iter().all(|e| e.log_index == c.index));
}

#[test]
fn idempotent_enqueue_returns_existing_job() {
    let mut c = Cluster::new();
    let mut first = spec("acme", "email");
    first.idempotency_key = Some("order-42".into());
    let id = c.enqueue(first.clone());
    let again = c.apply(Command::Enqueue {
        spec: first.clone(),
    });
    assert_eq!(
        again,
        Ok(Reply::Enqueued {
            job_id: id,
            created: false
        })
    );
    assert_eq!(c.state.job_count(), 1);
    // The same key under another tenant is another job.
    first.tenant = TenantId::new("globex");
    let other = c.enqueue(first);
    assert_ne!(other, id);
    assert_eq!(c.state.job_count(), 2);
}

#[test]
fn idempotency_holds_after_the_job_finished() {
    let mut c = Cluster::new();
    let mut s = spec("acme", "email");
    s.idempotency_key = Some("k".into());
    let id = c.enqueue(s.clone());
    let grant = c.lease("w", &["email"], 1).remove(0);
    c.succeed(&grant);
    let again = c.apply(Command::Enqueue { spec: s });
    assert_eq!(
        again,
        Ok(Reply::Enqueued {
            job_id: id,
            created: false
        })
    );
}

#[test]
fn invalid_enqueue_is_rejected_and_changes_nothing() {
    let mut c = Cluster::new();
    c.enqueue(spec("acme", "email"));
    let before = c.digest();
    let mut empty_tenant = spec("", "email");
    empty_tenant.project = "p".into();
    let mut huge = spec("acme", "email");
    huge.payload = vec![0; MAX_PAYLOAD_BYTES + 1];
    let mut no_attempts = spec("acme", "email");
    no_attempts.retry.max_attempts = 0;
    let mut unknown_dep = spec("acme", "email");
    unknown_dep.depends_on = vec![JobId(999)];
    for bad in [empty_tenant, huge, no_attempts] {
        let err = c.apply(Command::Enqueue { spec: bad }).unwrap_err();
        assert!(matches!(err, SchedulerError::InvalidInput { .. }), "{err}");
    }
    let err = c.apply(Command::Enqueue { spec: unknown_dep }).unwrap_err();
    assert_eq!(err, SchedulerError::JobNotFound(JobId(999)));
    assert_eq!(c.digest(), before);
}

#[test]
fn not_before_holds_a_job_pending_until_log_time_reaches_it() {
    let mut c = Cluster::new();
    let mut s = spec("acme", "report");
    s.not_before_ms = Some(c.now_ms + 5_000);
    let id = c.enqueue(s);
    assert_eq!(c.status(id), Status::Pending);
    assert!(c.lease("w", &["report"], 5).is_empty());
    c.advance(4_999);
    assert_eq!(c.status(id), Status::Pending);
    c.advance(1);
    assert_eq!(c.status(id), Status::Ready);
    assert_eq!(c.lease("w", &["report"], 5).len(), 1);
}

#[test]
fn dependent_job_waits_for_its_dependency_to_succeed() {
    let mut c = Cluster::new();
    let first = c.enqueue(spec("acme", "extract"));
    let mut then = spec("acme", "load");
    then.depends_on = vec![first];
    let second = c.enqueue(then);
    assert_eq!(c.status(second), Status::Pending);
    assert!(c.lease("w", &["load"], 1).is_empty());
    let grant = c.lease("w", &["extract"], 1).remove(0);
    c.succeed(&grant);
    assert_eq!(c.status(second), Status::Ready);
}

#[test]
fn enqueue_on_a_dead_dependency_is_rejected() {
    let mut c = Cluster::new();
    let first = c.enqueue(spec("acme", "extract"));
    c.apply(Command::Cancel {
        job_id: first,
        stamp: stamp(),
    })
    .unwrap();
    let mut then = spec("acme", "load");
    then.depends_on = vec![first];
    let err = c.apply(Command::Enqueue { spec: then }).unwrap_err();
    assert_eq!(
        err,
        SchedulerError::DependencyFailed {
            dependency: first,
            status: Status::Canceled
        }
    );
}

#[test]
fn plan_steps_run_in_dependency_order() {
    let mut c = Cluster::new();
    let (plan, jobs) = submit_plan(
        &mut c,
        vec![
            step("load", &["extract", "clean"]),
            step("extract", &[]),
            step("clean", &["extract"]),
        ],
    );
    let mut order = Vec::new();
    for _ in 0..3 {
        let grants = c.lease("w", &["etl"], 10);
        assert_eq!(grants.len(), 1, "exactly one step is ready at a time here");
        order.push(grants[0].job_id);
        c.succeed(&grants[0]);
    }
    assert_eq!(
        order,
        vec![
            job_of(&jobs, "extract"),
            job_of(&jobs, "clean"),
            job_of(&jobs, "load")
        ]
    );
    let view = c.state.plan(plan).unwrap();
    assert_eq!(view.status, PlanStatus::Succeeded);
    let origin = &c.state.job(job_of(&jobs, "load")).unwrap().origin;
    assert_eq!(origin.plan, Some((plan, "load".to_owned())));
}

#[test]
fn plan_with_cycle_is_rejected() {
    let mut c = Cluster::new();
    let before = c.digest();
    let err = c
        .apply(Command::SubmitPlan {
            steps: vec![step("a", &["b"]), step("b", &["a"]), step("c", &[])],
            backfill: None,
        })
        .unwrap_err();
    assert_eq!(
        err,
        SchedulerError::PlanCycle {
            steps: vec!["a".into(), "b".into()]
        }
    );
    assert_eq!(c.state.job_count(), 0);
    assert_eq!(c.digest(), before);
}

#[test]
fn plan_with_unknown_reference_is_rejected_whole() {
    let mut c = Cluster::new();
    let err = c
        .apply(Command::SubmitPlan {
            steps: vec![step("a", &[]), step("b", &["nope"])],
            backfill: None,
        })
        .unwrap_err();
    assert_eq!(
        err,
        SchedulerError::UnknownPlanStep {
            step: "b".into(),
            missing: "nope".into()
        }
    );
    assert_eq!(c.state.job_count(), 0);
}

#[test]
fn plan_with_duplicate_step_key_is_rejected() {
    let mut c = Cluster::new();
    let err = c
        .apply(Command::SubmitPlan {
            steps: vec![step("a", &[]), step("a", &[])],
            backfill: None,
        })
        .unwrap_err();
    assert_eq!(err, SchedulerError::DuplicatePlanStep("a".into()));
}

#[test]
fn dead_lettered_step_cancels_its_dependents_with_the_reason() {
    let mut c = Cluster::new();
    let (plan, jobs) = submit_plan(
        &mut c,
        vec![
            step("extract", &[]),
            step("load", &["extract"]),
            step("report", &["load"]),
            step("side", &[]),
        ],
    );
    let extract = c
        .lease("w", &["etl"], 10)
        .into_iter()
        .find(|g| g.job_id == job_of(&jobs, "extract"))
        .unwrap();
    c.fail(&extract, false);
    assert_eq!(c.status(job_of(&jobs, "extract")), Status::DeadLettered);
    for key in ["load", "report"] {
        let job = c.state.job(job_of(&jobs, key)).unwrap();
        let JobState::Canceled { reason, .. } = &job.state else {
            panic!("{key} should be canceled, is {:?}", job.state);
        };
        let root = job_of(&jobs, "extract");
        assert!(
            reason.contains(&format!("{root} is dead_lettered")),
            "reason names the cause: {reason}"
        );
    }
    assert_eq!(c.state.plan(plan).unwrap().status, PlanStatus::Failing);
}

#[test]
fn cancel_of_pending_ready_and_leased_jobs() {
    let mut c = Cluster::new();
    let ready = c.enqueue(spec("acme", "a"));
    let mut later = spec("acme", "a");
    later.not_before_ms = Some(c.now_ms + 60_000);
    let pending = c.enqueue(later);
    let leased = c.enqueue(spec("acme", "b"));
    let grant = c.lease("w", &["b"], 1).remove(0);
    assert_eq!(grant.job_id, leased);
    for id in [ready, pending, leased] {
        assert_eq!(
            c.apply(Command::Cancel {
                job_id: id,
                stamp: stamp()
            }),
            Ok(Reply::Canceled { job_id: id })
        );
        assert_eq!(c.status(id), Status::Canceled);
    }
    // The leased job's worker learns it at its next heartbeat, and cannot complete it.
    let hb = c.apply(Command::Heartbeat {
        job_id: leased,
        lease_id: grant.lease_id,
    });
    assert!(
        matches!(hb, Ok(Reply::HeartbeatAck { canceled: true, .. })),
        "{hb:?}"
    );
    let late = c.complete(&grant, Completion::Succeeded { outputs: vec![] });
    assert_eq!(late, Err(SchedulerError::JobCanceled { job_id: leased }));
    // A finished job cannot be canceled.
    let again = c
        .apply(Command::Cancel {
            job_id: ready,
            stamp: stamp(),
        })
        .unwrap_err();
    assert!(matches!(
        again,
        SchedulerError::WrongState {
            status: Status::Canceled,
            ..
        }
    ));
    let events = c.state.governance_history();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.stamp.as_ref() == Some(&stamp())));
}

#[test]
fn cancel_needs_an_actor_and_a_reason() {
    let mut c = Cluster::new();
    let id = c.enqueue(spec("acme", "a"));
    let err = c
        .apply(Command::Cancel {
            job_id: id,
            stamp: Stamp::new("ops", " "),
        })
        .unwrap_err();
    assert!(matches!(err, SchedulerError::InvalidInput { ref field, .. } if field == "reason"));
    assert_eq!(c.status(id), Status::Ready);
}

#[test]
fn replay_clones_payload_with_high_priority() {
    let mut c = Cluster::new();
    let mut s = spec("acme", "charge");
    s.retry.max_attempts = 1;
    s.idempotency_key = Some("charge-1".into());
    let original = c.enqueue(s);
    let grant = c.lease("w", &["charge"], 1).remove(0);
    c.fail(&grant, true);
    assert_eq!(c.status(original), Status::DeadLettered);
    c.enqueue(spec("acme", "charge")); // ordinary work queued behind the replay
    let Ok(Reply::Replayed { job_id: replay }) = c.apply(Command::Replay {
        job_id: original,
        stamp: stamp(),
    }) else {
        panic!("replay rejected");
    };
    let job = c.state.job(replay).unwrap();
    assert_eq!(job.origin.replay_of, Some(original));
    assert_eq!(job.spec.priority, REPLAY_PRIORITY);
    assert_eq!(
        job.spec.payload,
        c.state.job(original).unwrap().spec.payload
    );
    assert_eq!(job.spec.idempotency_key, None);
    assert_eq!(
        c.lease("w", &["charge"], 1)[0].job_id,
        replay,
        "replay runs first"
    );
    let last = c
        .state
        .job(original)
        .unwrap()
        .history
        .last()
        .unwrap()
        .kind
        .clone();
    assert_eq!(last, JobEventKind::Replayed { new_job: replay });
}

#[test]
fn replay_works_on_every_finished_state_and_not_on_live_ones_nor_a_pending_retry() {
    let mut c = Cluster::new();
    let ok = c.enqueue(spec("acme", "a"));
    let g = c.lease("w", &["a"], 1).remove(0);
    c.succeed(&g);
    let canceled = c.enqueue(spec("acme", "a"));
    c.apply(Command::Cancel {
        job_id: canceled,
        stamp: stamp(),
    })
    .unwrap();
    let failed = c.enqueue(spec("acme", "a"));
    let g = c.lease("w", &["a"], 1).remove(0);
    c.fail(&g, true);
    assert_eq!(c.status(failed), Status::Failed);
    let dead = c.enqueue(spec("acme", "a"));
    let g = c.lease("w", &["a"], 1).remove(0);
    c.fail(&g, false);
    assert_eq!(c.status(dead), Status::DeadLettered);
    // Waiting for its retry: a replay would run beside the retry, the same work twice.
    assert_eq!(
        c.apply(Command::Replay {
            job_id: failed,
            stamp: stamp()
        }),
        Err(SchedulerError::WrongState {
            job_id: failed,
            status: Status::Failed,
            action: "replayed".to_owned()
        })
    );
    for id in [ok, canceled, dead] {
        assert!(matches!(
            c.apply(Command::Replay {
                job_id: id,
                stamp: stamp()
            }),
            Ok(Reply::Replayed { .. })
        ));
    }
    let live = c.enqueue(spec("acme", "b"));
    let err = c
        .apply(Command::Replay {
            job_id: live,
            stamp: stamp(),
        })
        .unwrap_err();
    assert!(matches!(
        err,
        SchedulerError::WrongState {
            status: Status::Ready,
            ..
        }
    ));
    let err = c
        .apply(Command::Replay {
            job_id: JobId(77),
            stamp: stamp(),
        })
        .unwrap_err();
    assert_eq!(err, SchedulerError::JobNotFound(JobId(77)));
}

#[test]
fn backfill_without_ticket_is_rejected() {
    let mut c = Cluster::new();
    let mut s = spec("acme", "etl");
    s.backfill = Some(Backfill {
        reason: "reload October".into(),
        ticket: "".into(),
    });
    let err = c.apply(Command::Enqueue { spec: s.clone() }).unwrap_err();
    assert_eq!(err, SchedulerError::BackfillNeedsReasonAndTicket);
    let err = c
        .apply(Command::SubmitPlan {
            steps: vec![step("a", &[])],
            backfill: Some(Backfill {
                reason: " ".into(),
                ticket: "OPS-1".into(),
            }),
        })
        .unwrap_err();
    assert_eq!(err, SchedulerError::BackfillNeedsReasonAndTicket);
    assert_eq!(c.state.job_count(), 0);
}

#[test]
fn backfill_is_recorded_in_the_history_with_its_ticket() {
    let mut c = Cluster::new();
    let mut s = spec("acme", "etl");
    s.backfill = Some(Backfill {
        reason: "reload October".into(),
        ticket: "OPS-7".into(),
    });
    let id = c.enqueue(s);
    let (_, jobs) = match c.apply(Command::SubmitPlan {
        steps: vec![step("a", &[]), step("b", &["a"])],
        backfill: Some(Backfill {
            reason: "replay week".into(),
            ticket: "OPS-8".into(),
        }),
    }) {
        Ok(Reply::PlanSubmitted { plan_id, jobs }) => (plan_id, jobs),
        other => panic!("{other:?}"),
    };
    let backfills: Vec<_> = c
        .state
        .governance_history()
        .iter()
        .filter_map(|e| match &e.change {
            GovernanceChange::Backfill { jobs, ticket } => {
                Some((jobs.clone(), ticket.clone(), e.stamp.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(backfills.len(), 2);
    assert_eq!(backfills[0].0, vec![id]);
    assert_eq!(backfills[0].1, "OPS-7");
    assert_eq!(backfills[0].2.as_ref().unwrap().reason, "reload October");
    assert_eq!(backfills[1].0.len(), jobs.len());
    assert_eq!(backfills[1].1, "OPS-8");
    let step_b = c.state.job(job_of(&jobs, "b")).unwrap();
    assert_eq!(step_b.spec.backfill.as_ref().unwrap().ticket, "OPS-8");
}

#[test]
fn lineage_keeps_inputs_and_each_attempts_outputs() {
    let mut c = Cluster::new();
    let mut s = spec("acme", "etl");
    s.inputs = vec![Artifact {
        name: "orders".into(),
        uri: "s3://in/orders".into(),
        digest: Some("sha256:ab".into()),
    }];
    let id = c.enqueue(s);
    let g = c.lease("w", &["etl"], 1).remove(0);
    let out = Artifact {
        name: "report".into(),
        uri: "s3://out/report".into(),
        digest: None,
    };
    c.complete(
        &g,
        Completion::Succeeded {
            outputs: vec![out.clone()],
        },
    )
    .unwrap();
    let lineage = c.state.lineage(id).unwrap();
    assert_eq!(lineage.inputs[0].uri, "s3://in/orders");
    assert_eq!(lineage.outputs, vec![(1, &[out][..])]);
}

fn artifact(name: &str, uri: &str) -> Artifact {
    Artifact {
        name: name.into(),
        uri: uri.into(),
        digest: Some(format!("sha256:{name}")),
    }
}

/// Enqueues a job of `job_type` reading `inputs`, runs it, and has it write `outputs`.
fn run(c: &mut Cluster, job_type: &str, inputs: &[Artifact], outputs: &[Artifact]) -> JobId {
    let mut s = spec("acme", job_type);
    s.inputs = inputs.to_vec();
    let id = c.enqueue(s);
    let g = c.lease("w", &[job_type], 1).remove(0);
    assert_eq!(g.job_id, id);
    c.complete(
        &g,
        Completion::Succeeded {
            outputs: outputs.to_vec(),
        },
    )
    .unwrap();
    id
}

#[test]
fn lineage_finds_writers_and_readers_and_walks_the_chain_up_and_down() {
    let mut c = Cluster::new();
    let raw = artifact("raw", "s3://lake/raw");
    let clean = artifact("clean", "s3://lake/clean");
    let report = artifact("report", "s3://lake/report");
    let audit = artifact("audit", "s3://lake/audit");
    let extract = run(&mut c, "extract", &[], std::slice::from_ref(&raw));
    let transform = run(
        &mut c,
        "transform",
        std::slice::from_ref(&raw),
        std::slice::from_ref(&clean),
    );
    let reporting = run(
        &mut c,
        "report",
        std::slice::from_ref(&clean),
        std::slice::from_ref(&report),
    );
    let auditing = run(
        &mut c,
        "audit",
        std::slice::from_ref(&clean),
        std::slice::from_ref(&audit),
    );
    let unrelated = run(&mut c, "other", &[], &[artifact("x", "s3://x")]);
    let all = LineageScope {
        up: true,
        down: true,
        depth: 10,
        max_links: 100,
    };
    let links = |term: &str, scope: LineageScope| -> Vec<(JobId, bool, String, u32)> {
        let (links, cut) = c.state.lineage_of(term, scope);
        assert!(!cut);
        links
            .iter()
            .map(|l| (l.job.id, l.wrote, l.artifact.name.clone(), l.depth))
            .collect()
    };
    // By name, URI or digest: who wrote `clean`, who read it.
    let direct = LineageScope { depth: 0, ..all };
    let expected = vec![
        (transform, true, "clean".to_owned(), 0),
        (reporting, false, "clean".to_owned(), 0),
        (auditing, false, "clean".to_owned(), 0),
    ];
    for term in ["clean", "s3://lake/clean", "sha256:clean"] {
        assert_eq!(links(term, direct), expected, "{term}");
    }
    // The whole chain: up to `extract`, down to the report and the audit.
    let chain = links("clean", all);
    assert_eq!(
        chain,
        vec![
            (transform, true, "clean".to_owned(), 0),
            (reporting, false, "clean".to_owned(), 0),
            (auditing, false, "clean".to_owned(), 0),
            (extract, true, "raw".to_owned(), 1),
        ],
        "down stops where nobody reads what the readers wrote"
    );
    // Up only, from the report: its writer, what that read, who wrote that, and so on.
    let up = links("report", LineageScope { down: false, ..all });
    assert_eq!(
        up,
        vec![
            (reporting, true, "report".to_owned(), 0),
            (transform, true, "clean".to_owned(), 1),
            (extract, true, "raw".to_owned(), 2),
        ]
    );
    // Down only, from raw: its writer and reader (the artifact's own are always listed),
    // then what read what the reader wrote.
    let down = links("s3://lake/raw", LineageScope { up: false, ..all });
    assert_eq!(
        down,
        vec![
            (extract, true, "raw".to_owned(), 0),
            (transform, false, "raw".to_owned(), 0),
            (reporting, false, "clean".to_owned(), 1),
            (auditing, false, "clean".to_owned(), 1),
        ]
    );
    assert!(links("nothing", all).is_empty());
    assert!(!chain.iter().any(|l| l.0 == unrelated));
    // A bound on links cuts the walk and says so.
    let (cut, truncated) = c.state.lineage_of(
        "clean",
        LineageScope {
            max_links: 2,
            ..all
        },
    );
    assert_eq!(cut.len(), 2);
    assert!(truncated);
}

#[test]
fn list_jobs_filters_and_pages() {
    let mut c = Cluster::new();
    let mut ids = Vec::new();
    for i in 0..10 {
        let tenant = if i % 2 == 0 { "acme" } else { "globex" };
        ids.push(c.enqueue(spec(tenant, "email")));
        c.advance(1_000);
    }
    let g = c.lease("w", &["email"], 1).remove(0);
    c.succeed(&g);
    let filter = JobFilter {
        tenant: Some(TenantId::new("acme")),
        ..JobFilter::default()
    };
    let first = c.state.list_jobs(&filter, None, 3);
    assert_eq!(
        first.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[0], ids[2], ids[4]]
    );
    let second = c.state.list_jobs(&filter, first.next_after, 3);
    assert_eq!(
        second.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[6], ids[8]]
    );
    assert_eq!(second.next_after, None);
    let done = JobFilter {
        status: Some(Status::Succeeded),
        ..JobFilter::default()
    };
    assert_eq!(c.state.list_jobs(&done, None, 10).jobs.len(), 1);
    let window = JobFilter {
        since_ms: Some(c.state.job(ids[3]).unwrap().created_ms),
        until_ms: Some(c.state.job(ids[6]).unwrap().created_ms),
        ..JobFilter::default()
    };
    let in_window: Vec<_> = c
        .state
        .list_jobs(&window, None, 100)
        .jobs
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(in_window, vec![ids[3], ids[4], ids[5]]);
}

#[test]
fn queue_depth_counts_per_tenant_and_type() {
    let mut c = Cluster::new();
    for _ in 0..3 {
        c.enqueue(spec("acme", "email"));
    }
    c.enqueue(spec("globex", "sms"));
    c.lease("w", &["email"], 1);
    let depth = c.state.queue_depth();
    assert_eq!(depth.len(), 2);
    assert_eq!(
        (depth[0].tenant.as_str(), depth[0].ready, depth[0].leased),
        ("acme", 2, 1)
    );
    assert_eq!((depth[1].tenant.as_str(), depth[1].ready), ("globex", 1));
}

#[test]
fn a_command_check_refuses_what_apply_refuses_before_anything_is_applied() {
    let mut cluster = Cluster::new();
    let mut blank_tenant = spec("", "email");
    blank_tenant.tenant = TenantId::new("");
    let invalid = [
        Command::Enqueue {
            spec: blank_tenant.clone(),
        },
        Command::EnqueueBatch {
            specs: vec![spec("acme", "email"), blank_tenant],
        },
        Command::Lease {
            worker: WorkerId::new("w1"),
            job_types: vec![JobType::new("email")],
            max: 0,
            ttl_ms: None,
        },
        Command::SetMaintenance {
            enabled: true,
            stamp: Stamp::new("ops", " "),
        },
    ];
    for command in invalid {
        let refused = command.check().expect_err("invalid");
        assert!(
            matches!(refused, SchedulerError::InvalidInput { .. }),
            "{refused:?}"
        );
        if let Command::EnqueueBatch { .. } = command {
            assert!(refused.to_string().contains("specs[1]"), "{refused}");
            continue;
        }
        let applied = cluster.apply(command.clone());
        assert_eq!(
            applied,
            Err(refused),
            "apply refuses {command:?} the same way"
        );
    }
    assert!(Command::Enqueue {
        spec: spec("acme", "email")
    }
    .check()
    .is_ok());
}

#[test]
fn listings_by_tenant_type_status_and_window_match_a_full_scan() {
    let mut c = Cluster::new();
    let tenants = ["acme", "globex", "initech"];
    let types = ["email", "etl"];
    for n in 0..60usize {
        c.enqueue(spec(tenants[n % 3], types[n % 2]));
        if n % 7 == 0 {
            c.advance(1_000);
        }
    }
    let grants = c.lease("w1", &["etl"], 10);
    for grant in grants.iter().take(4) {
        c.succeed(grant);
    }
    let start = c.now_ms - 9_000;
    let end = c.now_ms - 2_000;
    let filters = [
        JobFilter {
            tenant: Some(TenantId::new("globex")),
            ..JobFilter::default()
        },
        JobFilter {
            job_type: Some(JobType::new("etl")),
            since_ms: Some(start),
            ..JobFilter::default()
        },
        JobFilter {
            tenant: Some(TenantId::new("acme")),
            job_type: Some(JobType::new("email")),
            until_ms: Some(end),
            ..JobFilter::default()
        },
        JobFilter {
            status: Some(Status::Succeeded),
            ..JobFilter::default()
        },
        JobFilter {
            since_ms: Some(start),
            until_ms: Some(end),
            ..JobFilter::default()
        },
        JobFilter {
            since_ms: Some(end),
            until_ms: Some(start),
            ..JobFilter::default()
        },
    ];
    for filter in &filters {
        let expected: Vec<JobId> = (0..60)
            .map(JobId)
            .filter(|id| {
                let job = c.state.job(*id).expect("job");
                filter.status.is_none_or(|s| job.status() == s)
                    && filter.tenant.as_ref().is_none_or(|t| &job.spec.tenant == t)
                    && filter
                        .job_type
                        .as_ref()
                        .is_none_or(|t| &job.spec.job_type == t)
                    && filter.since_ms.is_none_or(|s| job.created_ms >= s)
                    && filter.until_ms.is_none_or(|u| job.created_ms < u)
            })
            .collect();
        let mut listed = Vec::new();
        let mut after = None;
        loop {
            let page = c.state.list_jobs(filter, after, 4);
            listed.extend(page.jobs.iter().map(|j| j.id));
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(listed, expected, "{filter:?}");
    }
}

#[test]
fn plan_keys_artifact_lists_and_digests_are_bounded() {
    let mut c = Cluster::new();
    let long_key = Command::SubmitPlan {
        steps: vec![step(&"k".repeat(MAX_NAME_LEN + 1), &[])],
        backfill: None,
    };
    let mut many_inputs = spec("acme", "etl");
    many_inputs.inputs = (0..=MAX_ARTIFACTS)
        .map(|n| Artifact {
            name: format!("in-{n}"),
            uri: "s3://b/k".to_owned(),
            digest: None,
        })
        .collect();
    let mut long_digest = spec("acme", "etl");
    long_digest.inputs = vec![Artifact {
        name: "in".to_owned(),
        uri: "s3://b/k".to_owned(),
        digest: Some("d".repeat(5_000)),
    }];
    let refused = [
        (long_key, "steps.key"),
        (Command::Enqueue { spec: many_inputs }, "inputs"),
        (Command::Enqueue { spec: long_digest }, "inputs.digest"),
    ];
    for (command, field) in refused {
        let error = command.check().expect_err(field);
        assert!(error.to_string().contains(field), "{error}");
        assert_eq!(
            c.apply(command),
            Err(error),
            "apply refuses it the same way"
        );
    }
}

#[test]
fn a_plan_step_reusing_a_canceled_job_that_others_depend_on_is_refused_like_a_dependency() {
    let mut c = Cluster::new();
    let mut extract = spec("acme", "etl");
    extract.idempotency_key = Some("extract-2026-12-01".into());
    let canceled = c.enqueue(extract.clone());
    c.apply(Command::Cancel {
        job_id: canceled,
        stamp: stamp(),
    })
    .unwrap();
    let steps = vec![
        PlanStep {
            key: "extract".into(),
            spec: extract.clone(),
            depends_on: vec![],
        },
        PlanStep {
            key: "load".into(),
            spec: spec("acme", "etl"),
            depends_on: vec!["extract".into()],
        },
    ];
    // As an enqueue depending on that job would be.
    let mut dependent = spec("acme", "etl");
    dependent.depends_on = vec![canceled];
    let refused = Err(SchedulerError::DependencyFailed {
        dependency: canceled,
        status: Status::Canceled,
    });
    assert_eq!(
        c.apply(Command::Enqueue { spec: dependent }).map(|_| ()),
        refused
    );
    let plan = c.apply(Command::SubmitPlan {
        steps,
        backfill: None,
    });
    assert_eq!(plan.map(|_| ()), refused);
    // A step nothing depends on may still name it: it is reused as it is.
    let alone = c.apply(Command::SubmitPlan {
        steps: vec![PlanStep {
            key: "extract".into(),
            spec: extract,
            depends_on: vec![],
        }],
        backfill: None,
    });
    assert!(matches!(alone, Ok(Reply::PlanSubmitted { ref jobs, .. }) if jobs[0].1 == canceled));
}

#[test]
fn canceling_a_plan_cancels_its_own_live_jobs_once_and_leaves_reused_and_finished_ones() {
    let mut c = Cluster::new();
    let mut shared = spec("acme", "etl");
    shared.idempotency_key = Some("shared".into());
    let reused = c.enqueue(shared.clone());
    let step = |key: &str, spec: JobSpec, deps: &[&str]| PlanStep {
        key: key.into(),
        spec,
        depends_on: deps.iter().map(|d| (*d).into()).collect(),
    };
    let Ok(Reply::PlanSubmitted { plan_id, jobs }) = c.apply(Command::SubmitPlan {
        steps: vec![
            step("a", spec("acme", "a"), &[]),
            step("b", spec("acme", "b"), &["a"]),
            step("c", spec("acme", "c"), &["b"]),
            step("done", spec("acme", "d"), &[]),
            step("shared", shared, &[]),
        ],
        backfill: None,
    }) else {
        panic!("plan refused");
    };
    let id = |key: &str| jobs.iter().find(|(k, _)| k == key).unwrap().1;
    assert_eq!(id("shared"), reused);
    let g = c.lease("w", &["d"], 1).remove(0);
    c.succeed(&g);
    // A canceled with B and C after it (they depend on it): one command, all or nothing.
    let Ok(Reply::PlanCanceled { canceled, .. }) = c.apply(Command::CancelPlan {
        plan_id,
        stamp: stamp(),
    }) else {
        panic!("cancel refused");
    };
    assert_eq!(canceled, vec![id("a"), id("b"), id("c")]);
    assert_eq!(c.status(id("done")), Status::Succeeded);
    assert_eq!(
        c.status(reused),
        Status::Ready,
        "a reused job is not the plan's"
    );
    // Again: nothing left to cancel, and no error.
    assert_eq!(
        c.apply(Command::CancelPlan {
            plan_id,
            stamp: stamp(),
        }),
        Ok(Reply::PlanCanceled {
            plan_id,
            canceled: vec![]
        })
    );
    assert_eq!(
        c.apply(Command::CancelPlan {
            plan_id: PlanId(77),
            stamp: stamp(),
        }),
        Err(SchedulerError::PlanNotFound(PlanId(77)))
    );
}
