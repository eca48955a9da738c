//! Three real `rota agent` processes with TLS and auth, a producer and four workers, each
//! with a token of its own: 5,000 jobs, a known share failing once and a known share failing
//! always, plans with dependencies, and the leader SIGKILLed mid-run and restarted. Nothing
//! may be lost or run to success twice. And how such agents are started: on ports the
//! kernel does not hand out to others, and named with their log when one cannot start.

use rota_benches::cluster::{
    ephemeral_start, free_port, poll, settled_digests, start_local_agents, wait_for_agreed_leader,
    wait_listening, Access, Agent, Certificates, LOWEST_PORT,
};
use rota_client::proto as pb;
use rota_client::{Client, Outcome, Worker, WorkerConfig};
use rota_state_machine::AuthScope;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinSet;

const SINGLES: u64 = 4_000;
const PLANS: u64 = 200;
/// a → b, a → c, (b, c) → d, d → e
const PLAN_SHAPE: [(&str, &[&str]); 5] = [
    ("a", &[]),
    ("b", &["a"]),
    ("c", &["a"]),
    ("d", &["b", "c"]),
    ("e", &["d"]),
];
const TOTAL: u64 = SINGLES + PLANS * PLAN_SHAPE.len() as u64;
const MAX_ATTEMPTS: u32 = 4;

/// What a job's payload tells the workers to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Script {
    Succeed,
    FailOnce,
    FailAlways,
}

impl Script {
    fn for_single(n: u64) -> Self {
        match n % 10 {
            0 => Script::FailAlways,
            1 | 2 => Script::FailOnce,
            _ => Script::Succeed,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Script::Succeed => "succeed",
            Script::FailOnce => "fail-once",
            Script::FailAlways => "fail-always",
        }
    }

    fn parse(payload: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(payload).ok()?;
        match text.split(':').next()? {
            "succeed" => Some(Script::Succeed),
            "fail-once" => Some(Script::FailOnce),
            "fail-always" => Some(Script::FailAlways),
            _ => None,
        }
    }

    fn expected(self) -> pb::JobStatus {
        match self {
            Script::FailAlways => pb::JobStatus::DeadLettered,
            _ => pb::JobStatus::Succeeded,
        }
    }
}

fn spec(script: Script, tag: String, key: Option<String>) -> pb::JobSpec {
    pb::JobSpec {
        tenant: format!("tenant-{}", tag.len() % 3),
        job_type: "work".to_owned(),
        payload: format!("{}:{tag}", script.name()).into_bytes(),
        idempotency_key: key,
        retry: Some(pb::RetryPolicy {
            max_attempts: MAX_ATTEMPTS,
            base_backoff_ms: 20,
            max_backoff_ms: 200,
        }),
        lease_ttl_ms: Some(5_000),
        ..pb::JobSpec::default()
    }
}

/// Runs the scripts; counts handler successes so the test knows when to kill the leader.
fn worker(id: usize, access: &Access, endpoints: &[String], succeeded: Arc<AtomicU64>) -> Worker {
    let client = access.client(endpoints.to_vec()).expect("client");
    let config = WorkerConfig {
        concurrency: 16,
        lease_batch: 16,
        idle_poll: Duration::from_millis(50),
        shutdown_grace: Duration::from_secs(5),
        ..WorkerConfig::new(format!("worker-{id}"))
    };
    Worker::new(client, config).handle("work", move |ctx| {
        let succeeded = succeeded.clone();
        async move {
            match Script::parse(&ctx.job.payload) {
                Some(Script::FailAlways) => Outcome::retry("scripted to fail every time"),
                Some(Script::FailOnce) if ctx.job.attempt == 1 => {
                    Outcome::retry("scripted to fail the first time")
                }
                Some(_) => {
                    succeeded.fetch_add(1, Ordering::Relaxed);
                    Outcome::success()
                }
                None => Outcome::fatal("unreadable payload"),
            }
        }
    })
}

/// Enqueues every job; returns each job's script and each plan's step → job ids.
async fn produce(client: Client) -> (BTreeMap<u64, Script>, BTreeMap<u64, BTreeMap<String, u64>>) {
    let gate = Arc::new(Semaphore::new(32));
    let mut tasks = JoinSet::new();
    for n in 0..SINGLES {
        let (client, gate) = (client.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("gate");
            let script = Script::for_single(n);
            let request = pb::EnqueueRequest {
                session: None,
                spec: Some(spec(script, n.to_string(), Some(format!("single-{n}")))),
            };
            let answer = client.enqueue(request).await.expect("enqueue is answered");
            (vec![(answer.job_id, script)], None)
        });
    }
    for p in 0..PLANS {
        let (client, gate) = (client.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("gate");
            let steps: Vec<pb::PlanStep> = PLAN_SHAPE
                .iter()
                .map(|(key, deps)| {
                    let script = if p % 4 == 0 && *key == "b" {
                        Script::FailOnce
                    } else {
                        Script::Succeed
                    };
                    pb::PlanStep {
                        key: (*key).to_owned(),
                        spec: Some(spec(script, format!("plan{p}-{key}"), None)),
                        depends_on: deps.iter().map(|d| (*d).to_owned()).collect(),
                    }
                })
                .collect();
            let scripts: Vec<Script> = steps
                .iter()
                .map(|s| {
                    s.spec
                        .as_ref()
                        .and_then(|spec| Script::parse(&spec.payload))
                        .unwrap_or(Script::Succeed)
                })
                .collect();
            let request = pb::SubmitPlanRequest {
                session: None,
                steps,
                backfill: None,
            };
            let answer = client.submit_plan(request).await.expect("plan is answered");
            let jobs = answer
                .jobs
                .iter()
                .zip(scripts)
                .map(|(j, script)| (j.job_id, script))
                .collect();
            let keys = answer
                .jobs
                .iter()
                .map(|j| (j.key.clone(), j.job_id))
                .collect();
            (jobs, Some((answer.plan_id, keys)))
        });
    }
    let mut scripts = BTreeMap::new();
    let mut plans = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (jobs, plan) = done.expect("producer task");
        scripts.extend(jobs);
        if let Some((id, keys)) = plan {
            plans.insert(id, keys);
        }
    }
    (scripts, plans)
}

fn terminal(status: &pb::ClusterStatusResponse) -> u64 {
    status
        .jobs
        .iter()
        .filter(|c| {
            matches!(
                pb::JobStatus::try_from(c.status),
                Ok(pb::JobStatus::Succeeded
                    | pb::JobStatus::DeadLettered
                    | pb::JobStatus::Canceled)
            )
        })
        .map(|c| c.count)
        .sum()
}

/// The log index of a job's first event of `kind`.
fn event_index(job: &pb::Job, kind: &str) -> Option<u64> {
    job.history
        .iter()
        .find(|e| e.kind == kind)
        .map(|e| e.log_index)
}

/// `rota` with the client config file `config` and nothing in the environment to help it.
fn rota_with(config: &Path, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(["--client-config"])
        .arg(config)
        .args(args)
        .arg("--json")
        .env_remove("ROTA_ENDPOINTS")
        .env_remove("ROTA_TOKEN")
        .env_remove("ROTA_TLS_CA")
        .output()
        .expect("rota runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "rota {args:?} with {}: {}{stdout}",
        config.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).expect("JSON")
}

/// The CLI finds the cluster and its credentials in a client config file: the operator's
/// certificate named in one, the producer's token file in another (relative paths, from
/// the certificates' directory).
fn client_config_files(certs: &Path, addrs: &[String], producer_token: &str) {
    use std::os::unix::fs::PermissionsExt;
    let endpoints = format!(
        "endpoints = [{}]\ntls_ca = \"ca.crt\"\n",
        addrs
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let ops = certs.join("ops.toml");
    let ops_text = "tls_cert = \"client.ops.crt\"\ntls_key = \"client.ops.key\"\n";
    std::fs::write(&ops, format!("{endpoints}{ops_text}")).expect("ops config");
    let status = rota_with(&ops, &["cluster", "status"]);
    assert_eq!(
        status["nodes"].as_array().map(Vec::len),
        Some(3),
        "{status}"
    );

    let token = certs.join("producer.token");
    std::fs::write(&token, format!("{producer_token}\n")).expect("token file");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let producer = certs.join("producer.toml");
    std::fs::write(
        &producer,
        format!("{endpoints}token_file = \"producer.token\"\n"),
    )
    .expect("producer config");
    let page = rota_with(&producer, &["job", "list", "--limit", "1"]);
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(1), "{page}");
}

#[tokio::test]
async fn an_agent_whose_port_is_taken_is_named_with_its_log_and_local_agents_bind_below_the_ephemeral_range(
) {
    let root = tempfile::TempDir::new().expect("temp dir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port to hold");
    let port = |p: u16| format!("127.0.0.1:{p}");
    let peer = port(free_port().expect("a free port"));
    let http = port(free_port().expect("a free port"));
    let client = port(taken.local_addr().expect("its address").port());
    let mut agent = Agent::new(
        Path::new(env!("CARGO_BIN_EXE_rota")),
        1,
        (client.clone(), peer.clone(), http),
        root.path().join("node1"),
        format!("1={peer}"),
    );
    agent.start().expect("rota agent starts");
    let down = wait_listening(std::slice::from_mut(&mut agent), Duration::from_secs(30))
        .await
        .expect_err("an agent cannot listen on a port another holds");
    let message = down.to_string();
    assert!(message.starts_with("node 1 exited"), "{message}");
    assert!(
        message.contains(&format!(
            "the client listener on {client}: Address already in use"
        )),
        "the log names the listener, its address and why: {message}"
    );
    assert!(!agent.is_running(), "an exited agent counts as stopped");

    // The agents a run starts take ports the kernel does not hand out on its own, and all
    // listen once started.
    let ephemeral = ephemeral_start();
    let mut agents = start_local_agents(
        Path::new(env!("CARGO_BIN_EXE_rota")),
        3,
        root.path(),
        &[],
        None,
    )
    .await
    .expect("three agents start");
    let mut ports = std::collections::BTreeSet::new();
    for agent in &agents {
        for addr in [&agent.addr, &agent.peer_addr, &agent.http_addr] {
            let port: u16 = addr
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("a port");
            // (A range that starts too low to draw below leaves it to the kernel.)
            assert!(
                port < ephemeral || ephemeral <= LOWEST_PORT,
                "{addr} is below {ephemeral}"
            );
            assert!(ports.insert(port), "{addr} is drawn once");
        }
    }
    assert!(
        agents.iter_mut().all(|a| a.exited().is_none()),
        "all three run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_jobs_survive_a_leader_kill_with_nothing_lost_or_doubled() {
    let root = tempfile::TempDir::new().expect("temp dir");
    let certs = root.path().join("certs");
    let certificates = Certificates::write(&certs, 3).expect("certificates");
    let ops = certificates.ops.clone();
    let bin = Path::new(env!("CARGO_BIN_EXE_rota"));
    let mut agents = start_local_agents(bin, 3, root.path(), &[], Some(&certs))
        .await
        .expect("rota agents start");
    let addrs: Vec<String> = agents.iter().map(|a| a.addr.clone()).collect();

    let run = tokio::time::timeout(Duration::from_secs(300), async {
        let founder = ops.client([addrs[0].clone()]).expect("client");
        founder
            .init_cluster(pb::InitClusterRequest { members: vec![] })
            .await
            .expect("cluster initializes");
        wait_for_agreed_leader(&ops, &addrs, 3, Duration::from_secs(30))
            .await
            .expect("leader");
        // Producer and workers each hold a token with only the scopes they need (the
        // workers' bound to the jobs' three tenants, so their leases go within them); the
        // operator's certificate watches.
        let producing = certificates
            .token(&addrs[1], "producer", &[AuthScope::Write, AuthScope::Read], &[])
            .await
            .expect("producer's token");
        let tenants = ["tenant-0", "tenant-1", "tenant-2"];
        let working = certificates
            .token(&addrs[2], "workers", &[AuthScope::Lease], &tenants)
            .await
            .expect("workers' token");

        let succeeded = Arc::new(AtomicU64::new(0));
        let mut stops = Vec::new();
        let mut workers = JoinSet::new();
        for id in 0..4 {
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            let worker = worker(id, &working, &addrs, succeeded.clone());
            workers.spawn(worker.run(async move {
                let _ = stopped.await;
            }));
        }
        let producer = tokio::spawn(produce(producing.client(addrs.clone()).expect("client")));

        // Kill the leader once the run is well under way; bring it back a little later.
        let started = Instant::now();
        while succeeded.load(Ordering::Relaxed) < TOTAL / 4 {
            assert!(started.elapsed() < Duration::from_secs(120), "the run never got going");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let leader = wait_for_agreed_leader(&ops, &addrs, 3, Duration::from_secs(30))
            .await
            .expect("leader");
        let victim = agents
            .iter_mut()
            .find(|a| a.id == leader)
            .expect("the leader is one of ours");
        victim.kill();
        let killed_at = succeeded.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(3)).await;
        victim.start().expect("rota agent restarts");

        let (scripts, plans) = producer.await.expect("producer");
        assert_eq!(scripts.len() as u64, TOTAL, "every enqueue was answered with a distinct job");

        let any = producing.client(addrs.clone()).expect("client");
        let every = Duration::from_millis(200);
        poll(&ops, &addrs, false, every, Duration::from_secs(180), "node with every job finished", |seen| {
            seen.iter().any(|s| terminal(s) == TOTAL).then_some(())
        })
        .await
        .expect("jobs all finish");
        for stop in stops {
            let _ = stop.send(());
        }
        while let Some(done) = workers.join_next().await {
            done.expect("worker task").expect("worker ran");
        }

        let jobs = any
            .list_all_jobs(pb::ListJobsRequest {
                limit: 1_000,
                ..pb::ListJobsRequest::default()
            })
            .await
            .expect("list jobs");
        assert_eq!(jobs.len() as u64, TOTAL, "the ledger holds exactly the enqueued jobs");
        let by_id: BTreeMap<u64, &pb::Job> = jobs.iter().map(|j| (j.id, j)).collect();
        for (id, script) in &scripts {
            let job = by_id.get(id).unwrap_or_else(|| panic!("job {id} was lost"));
            assert_eq!(
                pb::JobStatus::try_from(job.status),
                Ok(script.expected()),
                "job {id} scripted {script:?} ended wrongly: {job:?}"
            );
            let successes = job
                .attempts
                .iter()
                .filter(|a| a.outcome == pb::AttemptOutcome::Succeeded as i32)
                .count();
            let expected = usize::from(script.expected() == pb::JobStatus::Succeeded);
            assert_eq!(successes, expected, "job {id} recorded {successes} successes");
            if *script == Script::FailAlways {
                assert_eq!(job.attempts.len(), MAX_ATTEMPTS as usize, "job {id}: {job:?}");
            }
        }
        for (plan_id, steps) in &plans {
            for (key, deps) in PLAN_SHAPE {
                let job = by_id[&steps[key]];
                let leased = event_index(job, "leased").expect("every step ran");
                for dep in deps {
                    let done = event_index(by_id[&steps[*dep]], "succeeded").expect("dependency succeeded");
                    // One entry may carry the dependency's completion and, after it, the
                    // lease of the step it released (group commit keeps their order).
                    assert!(
                        done <= leased,
                        "plan {plan_id}: step {key} leased at index {leased} before {dep} succeeded at {done}"
                    );
                }
            }
            let plan = any
                .get_plan(pb::GetPlanRequest { plan_id: *plan_id, read: None })
                .await
                .expect("plan");
            assert_eq!(plan.status, pb::PlanStatus::Succeeded as i32, "plan {plan_id}");
        }

        let digests = settled_digests(&ops, &addrs, Duration::from_secs(30))
            .await
            .expect("settled");
        assert!(
            digests.iter().all(|d| d.2 == digests[0].2),
            "replicas disagree at the same applied index: {digests:?}"
        );
        client_config_files(&certs, &addrs, producing.token.as_deref().expect("token"));
        eprintln!(
            "{TOTAL} jobs; leader {leader} killed after {killed_at} handler successes; digests agree at {:?}",
            digests[0].1
        );
    })
    .await;
    if run.is_err() {
        for agent in &agents {
            eprintln!("--- node {} log ---\n{}", agent.id, agent.log_tail());
        }
        panic!("the end-to-end run took longer than 300 s");
    }
}
