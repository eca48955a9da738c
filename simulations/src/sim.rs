//! One simulated run: the cluster, the workload, the nemesis, and the verdict.

use crate::check::{check, Final, Violation};
use crate::faults::{self, Action, FaultKind, Target, BASE_LATENCY_MS, HEAL_MS};
use crate::history::{Event, History};
use crate::net;
use crate::seed::SplitMix;
use crate::workload::{self, Worker};
use rota_client::proto as pb;
use rota_client::{Client, ClientConfig};
use rota_node::{NodeSettings, RunningNode};
use rota_raft::{MemLogStore, NodeId, RotaNode, StateStore, Storage};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use turmoil::Sim;

const PORT: u16 = 7000;
/// Log time at the simulation's start (2027-01-15).
const EPOCH_MS: u64 = 1_800_000_000_000;
/// Simulated time per step: every host runs once a step, and messages are delivered between
/// steps. Five milliseconds rather than turmoil's default of one take a seed in a fraction
/// of the steps (docs/simulations.md, "Speed").
const TICK_MS: u64 = 5;
/// How long a producer's jobs may take to drain after the faults heal.
const DRAIN_MS: u64 = 90_000;

/// A node's Raft metrics, as the nemesis reads them to find the leader.
type Metrics = watch::Receiver<openraft::RaftMetrics<NodeId, RotaNode>>;

/// What to simulate for a seed.
#[derive(Clone, Debug)]
pub struct Options {
    pub nodes: usize,
    /// Jobs the producer enqueues over about 15 simulated seconds.
    pub jobs: u64,
    /// Three-step plans it submits after them.
    pub plans: u64,
    /// Workers leasing (besides the zombie).
    pub workers: usize,
    pub fault: FaultKind,
    /// Off only to show the checker catching zombie workers.
    pub fencing: bool,
    /// The nodes' simulated disk: `None` syncs every append as it is written.
    pub disk: Option<rota_raft::SimDisk>,
}

impl Options {
    /// The defaults for a seed: fault kinds cycle with the seed, and each kind is run with
    /// three and with five nodes.
    pub fn for_seed(seed: u64) -> Self {
        let kinds = FaultKind::ALL.len() as u64;
        Self {
            nodes: if (seed / kinds).is_multiple_of(2) {
                3
            } else {
                5
            },
            jobs: 240,
            plans: 20,
            workers: 4,
            fault: FaultKind::for_seed(seed),
            fencing: true,
            disk: (FaultKind::for_seed(seed) == FaultKind::DiskFaults).then_some(
                rota_raft::SimDisk {
                    min_sync_ms: 1,
                    max_sync_ms: 25,
                    acknowledges_before_sync: false,
                },
            ),
        }
    }
}

/// The verdict on one seed.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub seed: u64,
    pub options: Options,
    /// sha256 of the recorded history: equal for equal seeds.
    pub history_digest: String,
    pub violations: Vec<Violation>,
    pub events: usize,
    /// What the clients saw, in order.
    pub history: Vec<crate::history::Record>,
    pub jobs: usize,
    /// Of those, how many the checker read from the archive (retention moved them there).
    pub archived_jobs: usize,
    /// Snapshots the nodes installed from a leader (catching up past a purged log).
    pub installs: u64,
    /// Simulated time the run took.
    pub sim_ms: u64,
    /// How far apart the nodes' clocks were set at most (check 11's allowance).
    pub clock_spread_ms: u64,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

fn client(name: &str, endpoints: &[String]) -> Client {
    let config = ClientConfig {
        dial: Some(net::dial()),
        session_prefix: Some(name.to_owned()),
        call_timeout: Duration::from_secs(3),
        retry_for: Duration::from_secs(30),
        ..ClientConfig::new(endpoints.to_vec())
    };
    match Client::with_config(config) {
        Ok(client) => client,
        Err(e) => panic!("simulation client config is fixed and valid: {e}"),
    }
}

/// A node's clock: simulated time, set off by `skew` ms (the nemesis moves it).
fn clock(skew: Arc<AtomicI64>) -> rota_node::Clock {
    Arc::new(move || {
        let now = EPOCH_MS + turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64;
        now.saturating_add_signed(skew.load(Ordering::SeqCst))
    })
}

/// How far apart the nodes' clocks get under `plan`: the largest offset it sets less the
/// smallest, counting the zero every clock starts at.
fn clock_spread_ms(plan: &[(u64, Action)]) -> u64 {
    let offsets = plan.iter().filter_map(|(_, action)| match action {
        Action::Skew { offset_ms, .. } => Some(*offset_ms),
        _ => None,
    });
    let (low, high) = offsets.fold((0i64, 0i64), |(low, high), o| (low.min(o), high.max(o)));
    high.abs_diff(low)
}

/// What the hosts and clients of one run share with the loop that drives it.
struct Cluster {
    /// Every host: the founding members first, then (in `Membership` seeds) the spare node
    /// the operator adds.
    names: Vec<String>,
    addrs: Vec<String>,
    /// How many hosts found the cluster (the rest wait to be added).
    founders: usize,
    registry: Arc<Mutex<BTreeMap<u64, Metrics>>>,
    history: History,
    /// Each node's state store as first made: restarts share its install count.
    stores: Mutex<Vec<StateStore>>,
    /// Each node's clock offset from simulated time, in ms.
    skews: Vec<Arc<AtomicI64>>,
}

/// Runs `seed`; `Err` when the simulation itself failed (a host errored, or the run did not
/// finish within its simulated deadline).
pub fn run(seed: u64, options: &Options) -> Result<Outcome, String> {
    let mut rng = SplitMix::new(seed);
    let deadline = HEAL_MS + DRAIN_MS + 60_000;
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .tick_duration(Duration::from_millis(TICK_MS))
        .simulation_duration(Duration::from_millis(deadline))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(BASE_LATENCY_MS))
        .build();
    let hosts = options.nodes + usize::from(options.fault == FaultKind::Membership);
    let names: Vec<String> = (1..=hosts).map(|i| format!("n{i}")).collect();
    let cluster = Cluster {
        addrs: names.iter().map(|n| format!("{n}:{PORT}")).collect(),
        names,
        founders: options.nodes,
        registry: Arc::default(),
        history: History::default(),
        stores: Mutex::default(),
        skews: (0..hosts).map(|_| Arc::default()).collect(),
    };
    add_nodes(&mut sim, &cluster, options, &mut rng);
    let result = add_clients(&mut sim, &cluster, options, &mut rng);
    let plan = faults::schedule(options.fault, options.nodes, &mut rng);
    drive(&mut sim, &cluster, &plan).map_err(|e| format!("seed {seed}: {e}"))?;
    let mut end = result
        .lock()
        .ok()
        .and_then(|mut slot| slot.take())
        .ok_or_else(|| format!("seed {seed}: the checker never reported"))?;
    end.lease_ttl_ms = workload::TTL_MS;
    end.clock_spread_ms = clock_spread_ms(&plan);
    let records = cluster.history.records();
    Ok(Outcome {
        seed,
        options: options.clone(),
        history_digest: cluster.history.digest(),
        violations: check(&records, &end),
        events: records.len(),
        history: records,
        jobs: end.jobs.len(),
        archived_jobs: end.jobs.iter().filter(|j| j.archived).count(),
        installs: cluster
            .stores
            .lock()
            .map(|stores| stores.iter().map(StateStore::installs).sum())
            .unwrap_or(0),
        sim_ms: sim.elapsed().as_millis() as u64,
        clock_spread_ms: end.clock_spread_ms,
    })
}

/// One host per node, each restartable with what its disk would have kept.
fn add_nodes(sim: &mut Sim<'_>, cluster: &Cluster, options: &Options, rng: &mut SplitMix) {
    for (i, name) in cluster.names.iter().enumerate() {
        let id = i as u64 + 1;
        let log = match options.disk {
            Some(disk) => MemLogStore::default().with_disk(disk),
            None => MemLogStore::default(),
        };
        let state = StateStore::in_memory();
        if !options.fencing {
            state.disable_fencing_for_simulation();
        }
        // The replicas apply the same entries to the same state (check 6 holds them to
        // it): each checks the invariants at its own share of the indexes.
        state.share_invariant_checks(i as u64, cluster.names.len() as u64);
        if let Ok(mut stores) = cluster.stores.lock() {
            stores.push(state.clone());
        }
        let peers: BTreeMap<u64, String> = cluster
            .addrs
            .iter()
            .enumerate()
            .map(|(j, a)| (j as u64 + 1, a.clone()))
            .collect();
        let advertise = cluster.addrs[i].clone();
        let registry = cluster.registry.clone();
        let skew = cluster.skews[i].clone();
        // Distinct fixed election timeouts per node: openraft draws them at random, which
        // a seed can't replay; fixed and distinct, elections still converge.
        let election = 500 + 170 * i as u64 + rng.range(0, 60);
        sim.host(name.as_str(), move || {
            let (log, state, peers, advertise, registry, skew) = (
                log.clone(),
                state.clone(),
                peers.clone(),
                advertise.clone(),
                registry.clone(),
                skew.clone(),
            );
            async move {
                // What survives a crash: the log as far as it was synced, and the state as
                // of the last snapshot.
                let log = log.restarted();
                let state = state.restarted()?;
                let bound = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT);
                let listener = turmoil::net::TcpListener::bind(bound).await?;
                let mut settings = NodeSettings::new(id, bound, std::path::PathBuf::new());
                settings.advertise = Some(advertise);
                settings.peers = peers;
                settings.storage = Storage::Memory { log, state };
                settings.dial = Some(net::dial());
                settings.clock = clock(skew);
                settings.raft.election_timeout_min = election;
                settings.raft.election_timeout_max = election + 1;
                // A heartbeat interval of 250 ms rather than 100 (openraft 0.9 ticks at 1.5
                // intervals, so an idle leader sends one every 375 ms, under the shortest
                // election timeout): about 9% fewer instructions a seed (the leader's idle
                // AppendEntries are a good share of all messages).
                settings.raft.heartbeat_interval = 250;
                // Snapshots (and the archive they carry) every 100 entries, so a crashed
                // node restarts from one and rebuilds its archive from it, and the log kept
                // only 20 entries behind them, so a node cut off for a while catches up by
                // installing the leader's snapshot.
                settings.raft.snapshot_policy = rota_raft::SnapshotPolicy::LogsSinceLast(100);
                settings.raft.max_in_snapshot_log_to_keep = 20;
                let node =
                    RunningNode::start_with_incoming(settings, bound, net::incoming(listener))
                        .await?;
                if let Ok(mut registry) = registry.lock() {
                    registry.insert(id, node.raft().metrics());
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }
}

/// The producer, the workers (one a zombie) and the checker; the checker's verdict lands
/// in the slot returned. They all run as tasks of one client host: turmoil's every step
/// costs something per host and per pair of hosts that talk, and the faults are between
/// nodes, so separate hosts for clients would buy nothing but time.
fn add_clients(
    sim: &mut Sim<'_>,
    cluster: &Cluster,
    options: &Options,
    rng: &mut SplitMix,
) -> Arc<Mutex<Option<Final>>> {
    let mut clients = Clients::default();
    let stop = Arc::new(AtomicBool::new(false));
    // The producer and any operator still at work: the checker waits for none.
    let operators = usize::from(matches!(
        options.fault,
        FaultKind::AdminCalls | FaultKind::Membership
    ));
    let producing = Arc::new(AtomicUsize::new(1 + operators));
    let result: Arc<Mutex<Option<Final>>> = Arc::default();
    // Clients dial the founding members; the checker reads every host.
    let founders = cluster.addrs[..cluster.founders].to_vec();
    {
        let (addrs, history) = (founders.clone(), cluster.history.clone());
        let producing = producing.clone();
        let (jobs, plans) = (options.jobs, options.plans);
        let producer_rng = SplitMix::new(rng.next_u64());
        clients.add("producer", async move {
            let members = addrs
                .iter()
                .enumerate()
                .map(|(j, a)| pb::Member {
                    id: j as u64 + 1,
                    addr: a.clone(),
                    voter: true,
                    matched_index: None,
                })
                .collect::<Vec<_>>();
            let founder = client("founder", &addrs[..1]);
            // Retried until the founder answers; "already initialized" is fine too.
            let _ = founder
                .init_cluster(pb::InitClusterRequest { members })
                .await;
            let producer = client("producer", &addrs);
            workload::set_quota(&producer).await;
            workload::set_retention(&producer).await;
            let again = client("producer-again", &addrs);
            let work = workload::Work { jobs, plans };
            workload::produce("p", producer, again, work, history, producer_rng).await;
            producing.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        });
    }
    if options.fault == FaultKind::AdminCalls {
        let (addrs, history) = (founders.clone(), cluster.history.clone());
        let operator_rng = SplitMix::new(rng.next_u64());
        let producing = producing.clone();
        clients.add("operator", async move {
            workload::operate(client("operator", &addrs), history, operator_rng).await;
            producing.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        });
    }
    if options.fault == FaultKind::Membership {
        let (addrs, history) = (founders.clone(), cluster.history.clone());
        let spare = (
            cluster.founders as u64 + 1,
            cluster.addrs[cluster.founders].clone(),
        );
        let operator_rng = SplitMix::new(rng.next_u64());
        let producing = producing.clone();
        clients.add("operator", async move {
            let operator = client("operator", &addrs);
            workload::change_membership(operator, history, spare, addrs.len(), operator_rng).await;
            producing.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        });
    }
    // Every worker but the first long-polls; the first and the zombie ask without a wait,
    // so some grants are stamped the moment they were asked (checks 11-14 judge those
    // against the tightest window).
    let workers = (0..options.workers)
        .map(|w| (format!("w{w}"), Worker::Lease { wait: w > 0 }))
        .chain([("zombie".to_owned(), Worker::Zombie)]);
    // Workers still running: the checker waits for none before it reads the end.
    let working = Arc::new(AtomicUsize::new(options.workers + 1));
    for (name, kind) in workers {
        let (addrs, history) = (founders.clone(), cluster.history.clone());
        let (stop, working) = (stop.clone(), working.clone());
        clients.add(&name.clone(), async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let worker = client(&name, &addrs);
            workload::work(name, worker, history, stop, kind).await;
            working.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        });
    }
    let (addrs, slot) = (cluster.addrs.clone(), result.clone());
    clients.add("checker", async move {
        let end = finish(&addrs, &stop, &working, &producing).await;
        if let Ok(mut slot) = slot.lock() {
            *slot = Some(end);
        }
        Ok(())
    });
    sim.client("clients", clients.run());
    result
}

/// The client tasks that share the one client host.
#[derive(Default)]
struct Clients(Vec<(String, ClientTask)>);

type ClientTask = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

impl Clients {
    fn add(
        &mut self,
        name: &str,
        task: impl std::future::Future<Output = Result<(), String>> + Send + 'static,
    ) {
        self.0.push((name.to_owned(), Box::pin(task)));
    }

    /// Runs every task to its end; the first to fail (or panic) fails the host, named.
    async fn run(self) -> turmoil::Result {
        let tasks: Vec<(String, tokio::task::JoinHandle<Result<(), String>>)> = self
            .0
            .into_iter()
            .map(|(name, task)| (name, tokio::spawn(task)))
            .collect();
        for (name, task) in tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("client {name}: {e}").into()),
                Err(e) => return Err(format!("client {name} panicked: {e}").into()),
            }
        }
        Ok(())
    }
}

/// Steps the simulation to its end, injecting each fault of `plan` when its time comes.
fn drive(sim: &mut Sim<'_>, cluster: &Cluster, plan: &[(u64, Action)]) -> Result<(), String> {
    let mut next = 0;
    let mut crashed = BTreeSet::new();
    loop {
        let now = sim.elapsed().as_millis() as u64;
        while next < plan.len() && plan[next].0 <= now {
            let action = &plan[next].1;
            let what = apply(sim, action, cluster, &mut crashed);
            cluster.history.record_at(now, Event::Fault(what));
            next += 1;
        }
        match sim.step() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => return Err(format!("the simulation failed: {e}")),
        }
    }
}

/// The node that leads by the highest term any running node reports.
fn leader(registry: &Mutex<BTreeMap<u64, Metrics>>, crashed: &BTreeSet<usize>) -> Option<usize> {
    let registry = registry.lock().ok()?;
    registry
        .iter()
        .filter(|(id, _)| !crashed.contains(&(**id as usize - 1)))
        .filter_map(|(_, m)| {
            let m = m.borrow();
            m.current_leader.map(|l| (m.current_term, l))
        })
        .max()
        .map(|(_, l)| l as usize - 1)
}

fn apply(
    sim: &mut Sim<'_>,
    action: &Action,
    cluster: &Cluster,
    crashed: &mut BTreeSet<usize>,
) -> String {
    let (names, registry) = (&cluster.names, &cluster.registry);
    let n = names.len();
    let resolve = |target: &Target| match target {
        Target::Node(i) => *i,
        Target::Leader => leader(registry, crashed).unwrap_or(0),
    };
    match action {
        Action::Isolate { target, with } => {
            let first = resolve(target);
            let side: BTreeSet<usize> = (0..=*with).map(|k| (first + k) % n).collect();
            for a in &side {
                for b in (0..n).filter(|b| !side.contains(b)) {
                    sim.partition(names[*a].as_str(), names[b].as_str());
                }
            }
            format!(
                "isolate {:?}",
                side.iter().map(|i| &names[*i]).collect::<Vec<_>>()
            )
        }
        Action::RepairAll => {
            for a in 0..n {
                for b in (a + 1)..n {
                    sim.repair(names[a].as_str(), names[b].as_str());
                }
            }
            "repair all".to_owned()
        }
        Action::Hold(a, b) => {
            sim.hold(names[*a].as_str(), names[*b].as_str());
            format!("hold {} <-> {}", names[*a], names[*b])
        }
        Action::Release(a, b) => {
            sim.release(names[*a].as_str(), names[*b].as_str());
            format!("release {} <-> {}", names[*a], names[*b])
        }
        Action::Latency(ms) => {
            sim.set_max_message_latency(Duration::from_millis(*ms));
            format!("latency up to {ms} ms")
        }
        Action::Crash(target) => {
            let node = resolve(target);
            sim.crash(names[node].as_str());
            crashed.insert(node);
            format!("crash {}", names[node])
        }
        Action::CrashAll => {
            for (node, name) in names.iter().enumerate() {
                sim.crash(name.as_str());
                crashed.insert(node);
            }
            "crash every node".to_owned()
        }
        Action::RestartAll => {
            let restarted: Vec<String> = crashed.iter().map(|i| names[*i].clone()).collect();
            for name in &restarted {
                sim.bounce(name.as_str());
            }
            crashed.clear();
            format!("restart {restarted:?}")
        }
        Action::Skew { target, offset_ms } => {
            let node = resolve(target);
            cluster.skews[node].store(*offset_ms, Ordering::SeqCst);
            format!("clock of {} set {offset_ms:+} ms off", names[node])
        }
    }
}

/// After the faults heal: waits for the producer, any operator and every job to finish,
/// stops the workers, waits for the members' replicas to settle, and reads the final state.
async fn finish(
    addrs: &[String],
    stop: &AtomicBool,
    working: &AtomicUsize,
    producing: &AtomicUsize,
) -> Final {
    tokio::time::sleep(Duration::from_millis(HEAL_MS + 1_000)).await;
    let reader = client("checker", addrs);
    let give_up = tokio::time::Instant::now() + Duration::from_millis(DRAIN_MS);
    loop {
        // Once the producer is done, a linearizable read of the live jobs, in summary,
        // tells whether any is still open (an archived job is finished); every job is read
        // in full only once, at the end.
        if producing.load(Ordering::SeqCst) == 0 {
            let live = reader
                .list_all_jobs(pb::ListJobsRequest {
                    summary: true,
                    ..everything(false)
                })
                .await;
            if live.is_ok_and(|jobs| jobs.iter().all(finished)) {
                break;
            }
        }
        if tokio::time::Instant::now() > give_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::SeqCst);
    // Workers finish what they hold (a zombie's sleep is the longest); then nothing writes
    // and the replicas settle.
    let stopped_by = tokio::time::Instant::now() + Duration::from_millis(workload::TTL_MS * 3);
    while working.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < stopped_by {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The client retries for its own 30 s; a read that still fails leaves no jobs, and the
    // checker reports every acknowledged one missing.
    let jobs = all_jobs(&reader).await.unwrap_or_default();
    let nodes: Vec<Client> = addrs
        .iter()
        .map(|addr| client("checker-status", std::slice::from_ref(addr)))
        .collect();
    // Every member's replica, as the membership of the most advanced host has it (a
    // removed node's replica stops where it was removed; a spare never added has none).
    let mut replicas = Vec::new();
    let mut members = Vec::new();
    for _ in 0..40 {
        let mut statuses = Vec::new();
        for one in &nodes {
            if let Ok(s) = one
                .cluster_status(pb::ClusterStatusRequest {
                    digest: true,
                    leader_view: false,
                })
                .await
            {
                statuses.push(s);
            }
        }
        members = statuses
            .iter()
            .max_by_key(|s| s.applied_index)
            .map(|s| s.members.iter().map(|m| (m.id, m.voter)).collect())
            .unwrap_or_default();
        replicas = statuses
            .into_iter()
            .filter(|s| members.iter().any(|(id, _)| *id == s.node_id))
            .map(|s| (s.node_id, s.applied_index, s.state_digest))
            .collect::<Vec<_>>();
        if !members.is_empty()
            && replicas.len() == members.len()
            && replicas.windows(2).all(|w| w[0].1 == w[1].1)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Final {
        jobs,
        replicas,
        members,
        quotas: BTreeMap::from([(
            workload::QUOTA_TENANT.to_owned(),
            workload::QUOTA_MAX_ACTIVE,
        )]),
        ..Final::default()
    }
}

fn finished(job: &pb::Job) -> bool {
    [
        pb::JobStatus::Succeeded,
        pb::JobStatus::DeadLettered,
        pb::JobStatus::Canceled,
    ]
    .iter()
    .any(|s| *s as i32 == job.status)
}

/// Every job, a thousand per page, live or archived.
fn everything(archived: bool) -> pb::ListJobsRequest {
    pb::ListJobsRequest {
        limit: 1_000,
        archived,
        ..pb::ListJobsRequest::default()
    }
}

/// Every job the cluster knows, in memory or in the archive: the live ones read first, so
/// a job archived between the two reads is seen (twice, and the archived copy kept).
async fn all_jobs(reader: &Client) -> Result<Vec<pb::Job>, rota_client::ClientError> {
    let live = reader.list_all_jobs(everything(false)).await?;
    let archived = reader.list_all_jobs(everything(true)).await?;
    let by_id: BTreeMap<u64, pb::Job> = live
        .into_iter()
        .chain(archived)
        .map(|job| (job.id, job))
        .collect();
    Ok(by_id.into_values().collect())
}
