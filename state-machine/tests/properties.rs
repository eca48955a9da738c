//! Property tests: random command sequences across many tenants, job types and workers,
//! with failures, expiries and governance changes. After every step the invariants hold;
//! the same sequence always gives the same digest; snapshot-restore mid-way changes nothing.

use proptest::prelude::*;
use rota_state_machine::*;
use std::collections::BTreeMap;

const TENANTS: [&str; 4] = ["t0", "t1", "t2", "t3"];
const TYPES: [&str; 3] = ["a", "b", "c"];
const WORKERS: [&str; 3] = ["w0", "w1", "w2"];

/// A command in terms the generator can pick without knowing the state; `Driver` turns it
/// into a real `Command` against what exists so far (grant and job picks are indexes).
#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Enqueue {
        tenant: usize,
        job_type: usize,
        priority: u16,
        key: Option<u8>,
        dep: Option<usize>,
        delay_ms: u64,
        attempts: u32,
    },
    Plan {
        tenant: usize,
        deps: Vec<Vec<usize>>,
    },
    Lease {
        worker: usize,
        types: Vec<usize>,
        max: u32,
    },
    Heartbeat {
        grant: usize,
    },
    Complete {
        grant: usize,
        outcome: u8,
    },
    Cancel {
        job: usize,
    },
    Replay {
        job: usize,
    },
    Quota {
        tenant: usize,
        job_type: Option<usize>,
        max_active: Option<u32>,
        per_hour: Option<u32>,
    },
    Throttle {
        job_type: usize,
        cap: Option<u32>,
    },
    Pause {
        tenant: usize,
        resume: bool,
    },
    Breaker {
        job_type: usize,
        reset: bool,
    },
    Maintenance(bool),
    Schedule {
        tenant: usize,
        job_type: usize,
        every_s: u64,
    },
    /// A lease sent as a client request with the next sequence number.
    ClientLease {
        worker: usize,
        max: u32,
    },
    /// The last client request sent again, as after a timeout.
    Retry,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..40_000).prop_map(Op::Advance),
        1 => Just(Op::Advance(120_000)),
        8 => (0..4usize, 0..3usize, 0..300u16, proptest::option::weighted(0.3, 0..6u8), proptest::option::weighted(0.2, 0..64usize), prop_oneof![3 => Just(0u64), 1 => 1..20_000u64], 1..4u32)
            .prop_map(|(tenant, job_type, priority, key, dep, delay_ms, attempts)| Op::Enqueue { tenant, job_type, priority, key, dep, delay_ms, attempts }),
        1 => (0..4usize, proptest::collection::vec(proptest::collection::vec(0..8usize, 0..3), 1..5))
            .prop_map(|(tenant, deps)| Op::Plan { tenant, deps }),
        8 => (0..3usize, proptest::collection::vec(0..3usize, 1..3), 1..6u32)
            .prop_map(|(worker, types, max)| Op::Lease { worker, types, max }),
        3 => grant_pick().prop_map(|grant| Op::Heartbeat { grant }),
        10 => (grant_pick(), 0..10u8).prop_map(|(grant, outcome)| Op::Complete { grant, outcome }),
        1 => (0..64usize).prop_map(|job| Op::Cancel { job }),
        1 => (0..64usize).prop_map(|job| Op::Replay { job }),
        1 => (0..4usize, proptest::option::of(0..3usize), proptest::option::of(0..4u32), proptest::option::of(1..7_200u32))
            .prop_map(|(tenant, job_type, max_active, per_hour)| Op::Quota { tenant, job_type, max_active, per_hour }),
        1 => (0..3usize, proptest::option::of(0..4u32)).prop_map(|(job_type, cap)| Op::Throttle { job_type, cap }),
        1 => (0..4usize, any::<bool>()).prop_map(|(tenant, resume)| Op::Pause { tenant, resume }),
        1 => (0..3usize, any::<bool>()).prop_map(|(job_type, reset)| Op::Breaker { job_type, reset }),
        1 => any::<bool>().prop_map(Op::Maintenance),
        1 => (0..4usize, 0..3usize, 1..120u64).prop_map(|(tenant, job_type, every_s)| Op::Schedule { tenant, job_type, every_s }),
        3 => (0..3usize, 1..4u32).prop_map(|(worker, max)| Op::ClientLease { worker, max }),
        2 => Just(Op::Retry),
    ]
}

/// Mostly one of the newest grants (likely live), sometimes an old one (likely stale).
fn grant_pick() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 0..3usize, 1 => 0..64usize]
}

fn stamp() -> Stamp {
    Stamp::new("prop", "property test")
}

/// Applies ops, remembering grants and job ids, and checking the invariants after each.
struct Driver {
    state: State,
    index: u64,
    now_ms: u64,
    grants: Vec<Grant>,
    max_token: u64,
    schedules: u32,
    last_request: Option<(ClientRequest, Response)>,
}

impl Driver {
    fn new() -> Self {
        Self {
            state: State::new(),
            index: 0,
            now_ms: 1_700_000_000_000,
            grants: Vec::new(),
            max_token: 0,
            schedules: 0,
            last_request: None,
        }
    }

    fn job(&self, pick: usize) -> JobId {
        JobId((pick % self.state.job_count().max(1)) as u64)
    }

    fn grant(&self, pick: usize) -> Option<Grant> {
        // Newer grants are likelier live; pick from the end.
        let n = self.grants.len();
        (n > 0).then(|| self.grants[n - 1 - pick % n].clone())
    }

    fn command(&mut self, op: &Op) -> Option<Command> {
        let command = match op.clone() {
            Op::Advance(ms) => {
                self.now_ms += ms;
                Command::Tick
            }
            Op::Enqueue {
                tenant,
                job_type,
                priority,
                key,
                dep,
                delay_ms,
                attempts,
            } => {
                let mut spec = JobSpec::new(
                    TENANTS[tenant],
                    TYPES[job_type],
                    vec![tenant as u8, job_type as u8],
                );
                spec.priority = priority;
                spec.idempotency_key = key.map(|k| format!("key-{k}"));
                spec.depends_on = dep
                    .filter(|_| self.state.job_count() > 0)
                    .map(|d| self.job(d))
                    .into_iter()
                    .collect();
                spec.not_before_ms = (delay_ms > 0).then_some(self.now_ms + delay_ms);
                spec.retry = RetryPolicy {
                    max_attempts: attempts,
                    base_backoff_ms: 500,
                    max_backoff_ms: 8_000,
                };
                spec.lease_ttl_ms = 10_000;
                Command::Enqueue { spec }
            }
            Op::Plan { tenant, deps } => {
                let steps = deps
                    .iter()
                    .enumerate()
                    .map(|(i, ds)| PlanStep {
                        key: format!("s{i}"),
                        spec: JobSpec::new(TENANTS[tenant], TYPES[i % 3], vec![i as u8]),
                        // References to later steps make cycles or unknown keys now and then.
                        depends_on: ds.iter().map(|d| format!("s{d}")).collect(),
                    })
                    .collect();
                Command::SubmitPlan {
                    steps,
                    backfill: None,
                }
            }
            Op::Lease { worker, types, max } => Command::Lease {
                worker: WorkerId::new(WORKERS[worker]),
                job_types: types.iter().map(|&t| JobType::new(TYPES[t])).collect(),
                max,
                ttl_ms: None,
            },
            Op::Heartbeat { grant } => {
                let g = self.grant(grant)?;
                Command::Heartbeat {
                    job_id: g.job_id,
                    lease_id: g.lease_id,
                }
            }
            Op::Complete { grant, outcome } => {
                let g = self.grant(grant)?;
                let completion = match outcome {
                    0..=5 => Completion::Succeeded { outputs: vec![] },
                    6..=7 => Completion::Failed {
                        retryable: true,
                        error: "flaky".into(),
                    },
                    8 => Completion::Failed {
                        retryable: false,
                        error: "fatal".into(),
                    },
                    _ => Completion::Canceled {
                        reason: "gave up".into(),
                    },
                };
                Command::Complete {
                    job_id: g.job_id,
                    lease_id: g.lease_id,
                    completion,
                }
            }
            Op::Cancel { job } => Command::Cancel {
                job_id: self.job(job),
                stamp: stamp(),
            },
            Op::Replay { job } => Command::Replay {
                job_id: self.job(job),
                stamp: stamp(),
            },
            Op::Quota {
                tenant,
                job_type,
                max_active,
                per_hour,
            } => Command::SetQuota {
                tenant: TenantId::new(TENANTS[tenant]),
                job_type: job_type.map(|t| JobType::new(TYPES[t])),
                max_active,
                max_per_hour: per_hour,
                burst: None,
                stamp: stamp(),
            },
            Op::Throttle { job_type, cap } => Command::Throttle {
                scope: Scope::job_type(TYPES[job_type]),
                max_concurrent: cap,
                stamp: stamp(),
            },
            Op::Pause {
                tenant,
                resume: false,
            } => Command::PauseSource {
                scope: Scope::tenant(TENANTS[tenant]),
                stamp: stamp(),
            },
            Op::Pause {
                tenant,
                resume: true,
            } => Command::ResumeSource {
                scope: Scope::tenant(TENANTS[tenant]),
                stamp: stamp(),
            },
            Op::Breaker {
                job_type,
                reset: true,
            } => Command::ResetBreaker {
                job_type: JobType::new(TYPES[job_type]),
                stamp: stamp(),
            },
            Op::Breaker {
                job_type,
                reset: false,
            } => Command::ConfigureBreaker {
                job_type: JobType::new(TYPES[job_type]),
                config: Some(BreakerConfig {
                    failure_threshold_percent: 80,
                    window_ms: 30_000,
                    min_attempts: 5,
                }),
                stamp: stamp(),
            },
            Op::Maintenance(enabled) => Command::SetMaintenance {
                enabled,
                stamp: stamp(),
            },
            Op::Schedule {
                tenant,
                job_type,
                every_s,
            } => {
                self.schedules += 1;
                Command::CreateSchedule {
                    id: ScheduleId::new(format!("sched-{}", self.schedules)),
                    template: JobSpec::new(TENANTS[tenant], TYPES[job_type], vec![]),
                    cadence: Cadence::Every {
                        interval_ms: every_s * 1_000,
                    },
                    catch_up: CatchUp::RunOnce,
                    start_ms: None,
                    end_ms: None,
                    stamp: stamp(),
                }
            }
            Op::ClientLease { .. } | Op::Retry => return None,
        };
        Some(command)
    }

    /// Remembers granted leases, checking their fencing tokens keep increasing.
    fn record_grants(&mut self, grants: &[Grant]) -> Result<(), TestCaseError> {
        for g in grants {
            prop_assert!(
                g.lease_id.0 > self.max_token,
                "fencing token did not increase"
            );
            self.max_token = g.lease_id.0;
        }
        self.grants.extend(grants.iter().cloned());
        Ok(())
    }

    /// Sends a client request (new or retried); a retry must return the first answer and
    /// change nothing.
    fn client_step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let request = match (op, &self.last_request) {
            (Op::ClientLease { worker, max }, last) => ClientRequest {
                client: "prop-client".into(),
                seq: last.as_ref().map_or(1, |(r, _)| r.seq + 1),
                command: Command::Lease {
                    worker: WorkerId::new(WORKERS[*worker]),
                    job_types: TYPES.iter().map(|t| JobType::new(*t)).collect(),
                    max: *max,
                    ttl_ms: None,
                },
            },
            (_, Some((last, _))) => last.clone(),
            (_, None) => return Ok(()),
        };
        let retry = matches!(op, Op::Retry);
        let before = retry.then(|| self.state.digest().unwrap());
        self.index += 1;
        let response = self
            .state
            .apply_request(request.clone(), self.now_ms, self.index);
        if let Err(broken) = self.state.check_invariants() {
            return Err(TestCaseError::fail(format!("after {op:?}: {broken}")));
        }
        if let (Some(before), Some((_, first))) = (before, &self.last_request) {
            prop_assert_eq!(&response, first, "a retry got a different answer");
            prop_assert_eq!(
                self.state.digest().unwrap(),
                before,
                "a retry changed the state"
            );
            return Ok(());
        }
        if let Ok(Reply::Leased { grants, .. }) = &response {
            self.record_grants(grants)?;
        }
        self.last_request = Some((request, response));
        Ok(())
    }

    /// Applies one op and checks everything that must hold after it.
    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        if matches!(op, Op::ClientLease { .. } | Op::Retry) {
            return self.client_step(op);
        }
        let Some(command) = self.command(op) else {
            return Ok(());
        };
        let active_before = self.quota_load();
        let jobs_before = self.state.job_count();
        let was_enqueue = matches!(command, Command::Enqueue { .. });
        // What a node checks before proposing never refuses what apply would accept.
        let checked = command.check();
        self.index += 1;
        let response = self.state.apply(command, self.now_ms, self.index);
        if let Err(broken) = self.state.check_invariants() {
            return Err(TestCaseError::fail(format!("after {op:?}: {broken}")));
        }
        if let Err(refused) = &checked {
            prop_assert!(
                response.is_err(),
                "{op:?}: check refused ({refused}) what apply accepted: {response:?}"
            );
        }
        match &response {
            Ok(Reply::Leased { grants, .. }) => {
                self.record_grants(grants)?;
                for (scope, (before, cap)) in &active_before {
                    let after = self.state.active(scope);
                    prop_assert!(
                        after <= *cap || after <= *before,
                        "max_active exceeded for {scope}: {after} > {cap}"
                    );
                }
            }
            Ok(Reply::Enqueued {
                job_id,
                created: false,
            }) => {
                prop_assert!(self.state.job(*job_id).is_some());
                prop_assert_eq!(
                    self.state.job_count(),
                    jobs_before,
                    "an idempotent enqueue created a job"
                );
            }
            Ok(Reply::Enqueued {
                job_id,
                created: true,
            }) => {
                prop_assert!(was_enqueue && self.state.job(*job_id).is_some());
            }
            _ => {}
        }
        Ok(())
    }

    /// For each scope with a `max_active` quota: (leased now, the cap).
    fn quota_load(&self) -> BTreeMap<Scope, (u32, u32)> {
        self.state
            .quotas()
            .filter_map(|(scope, q)| {
                Some((scope.clone(), (self.state.active(scope), q.max_active?)))
            })
            .collect()
    }

    fn succeeded_once(&self) -> Result<(), TestCaseError> {
        for page_job in self
            .state
            .list_jobs(&JobFilter::default(), None, MAX_PAGE)
            .jobs
        {
            let successes = page_job
                .history
                .iter()
                .filter(|e| e.kind == JobEventKind::Succeeded)
                .count();
            prop_assert!(
                successes <= 1,
                "{} succeeded {} times",
                page_job.id,
                successes
            );
        }
        Ok(())
    }
}

fn run(ops: &[Op]) -> Result<Driver, TestCaseError> {
    let mut driver = Driver::new();
    for op in ops {
        driver.step(op)?;
    }
    driver.succeeded_once()?;
    Ok(driver)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, max_shrink_iters: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_after_every_command(ops in proptest::collection::vec(op(), 1..200)) {
        run(&ops)?;
    }

    #[test]
    fn same_commands_give_the_same_digest(ops in proptest::collection::vec(op(), 1..150)) {
        let first = run(&ops)?;
        let second = run(&ops)?;
        prop_assert_eq!(first.state.digest().unwrap(), second.state.digest().unwrap());
    }

    #[test]
    fn snapshot_and_restore_mid_way_changes_nothing(
        ops in proptest::collection::vec(op(), 2..150),
        cut in any::<proptest::sample::Index>(),
    ) {
        let straight = run(&ops)?;
        let cut = cut.index(ops.len());
        let mut driver = Driver::new();
        for op in &ops[..cut] {
            driver.step(op)?;
        }
        let bytes = driver.state.snapshot().unwrap();
        driver.state = State::restore(&bytes).unwrap();
        prop_assert!(driver.state.check_invariants().is_ok());
        for op in &ops[cut..] {
            driver.step(op)?;
        }
        prop_assert_eq!(driver.state.digest().unwrap(), straight.state.digest().unwrap());
    }
}
