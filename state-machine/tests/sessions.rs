//! Client sessions: retried writes are answered once.

mod common;
use common::{spec, Cluster};
use rota_state_machine::*;

fn request(seq: u64, command: Command) -> ClientRequest {
    ClientRequest {
        client: "client-a".into(),
        seq,
        command,
    }
}

fn lease(max: u32) -> Command {
    Command::Lease {
        worker: WorkerId::new("w"),
        job_types: vec![JobType::new("t")],
        max,
        ttl_ms: None,
    }
}

impl Cluster {
    fn apply_request(&mut self, request: ClientRequest) -> Response {
        self.index += 1;
        let response = self.state.apply_request(request, self.now_ms, self.index);
        self.state.check_invariants().expect("invariants hold");
        response
    }
}

#[test]
fn retried_lease_returns_the_first_grants_and_leases_nothing_more() {
    let mut c = Cluster::new();
    for _ in 0..6 {
        c.enqueue(spec("acme", "t"));
    }
    let first = c.apply_request(request(1, lease(3)));
    let Ok(Reply::Leased { grants, .. }) = &first else {
        panic!("lease failed: {first:?}")
    };
    assert_eq!(grants.len(), 3);
    let tokens = c.state.last_lease_id();
    c.advance(1_000);
    let retry = c.apply_request(request(1, lease(3)));
    assert_eq!(retry, first, "the retry gets the first answer");
    assert_eq!(c.state.last_lease_id(), tokens, "no new lease was granted");
    assert_eq!(c.state.queue_depth()[0].leased, 3);
}

#[test]
fn next_sequence_is_a_new_request() {
    let mut c = Cluster::new();
    for _ in 0..6 {
        c.enqueue(spec("acme", "t"));
    }
    c.apply_request(request(1, lease(2))).unwrap();
    let second = c.apply_request(request(2, lease(2)));
    let Ok(Reply::Leased { grants, .. }) = second else {
        panic!()
    };
    assert_eq!(grants.len(), 2);
    assert_eq!(c.state.queue_depth()[0].leased, 4);
}

#[test]
fn older_sequence_is_refused_and_changes_nothing() {
    let mut c = Cluster::new();
    c.enqueue(spec("acme", "t"));
    c.apply_request(request(5, lease(1))).unwrap();
    let before = c.digest();
    let old = c.apply_request(request(4, lease(1)));
    assert_eq!(
        old,
        Err(SchedulerError::StaleRequest {
            client: "client-a".into(),
            seq: 4,
            latest: 5
        })
    );
    assert_eq!(c.digest(), before);
}

#[test]
fn a_sequence_is_answered_once_it_or_a_later_one_was_applied() {
    let mut c = Cluster::new();
    c.enqueue(spec("acme", "t"));
    assert!(!c.state.has_answered("client-a", 1), "an unknown client");
    c.apply_request(request(5, lease(1))).unwrap();
    assert!(c.state.has_answered("client-a", 5), "its latest: a retry");
    assert!(c.state.has_answered("client-a", 4), "an older one: stale");
    assert!(
        !c.state.has_answered("client-a", 6),
        "the next one is new work"
    );
    assert!(
        !c.state.has_answered("client-b", 5),
        "sessions are per client"
    );
}

#[test]
fn failed_requests_are_remembered_too() {
    let mut c = Cluster::new();
    let bad = Command::Heartbeat {
        job_id: JobId(9),
        lease_id: LeaseId(1),
    };
    let first = c.apply_request(request(1, bad.clone()));
    assert_eq!(first, Err(SchedulerError::JobNotFound(JobId(9))));
    assert_eq!(c.apply_request(request(1, bad)), first);
}

#[test]
fn sessions_survive_snapshot_and_restore() {
    let mut c = Cluster::new();
    c.enqueue(spec("acme", "t"));
    c.enqueue(spec("acme", "t"));
    let first = c.apply_request(request(1, lease(1)));
    c.state = State::restore(&c.state.snapshot().unwrap()).unwrap();
    assert_eq!(c.apply_request(request(1, lease(1))), first);
    assert_eq!(c.state.queue_depth()[0].leased, 1);
}

#[test]
fn idle_sessions_are_forgotten_after_their_ttl() {
    let mut c = Cluster::new();
    c.enqueue(spec("acme", "t"));
    c.enqueue(spec("acme", "t"));
    c.apply_request(request(1, lease(1))).unwrap();
    c.advance(SESSION_TTL_MS - 1);
    assert_eq!(c.state.session("client-a").map(|s| s.seq), Some(1));
    c.advance(1);
    assert_eq!(c.state.session("client-a"), None, "the session was dropped");
    // Past the TTL a retry is a new request: the cost of forgetting, written down.
    let again = c.apply_request(request(1, lease(1)));
    assert!(matches!(again, Ok(Reply::Leased { ref grants, .. }) if grants.len() == 1));
}

#[test]
fn a_session_keeps_no_payloads_yet_a_retried_lease_gets_them_back() {
    let mut c = Cluster::new();
    for n in 0..3u8 {
        let mut job = spec("acme", "t");
        job.payload = vec![n; 10_000];
        c.enqueue(job);
    }
    let first = c.apply_request(request(1, lease(3)));
    let Ok(Reply::Leased { grants, .. }) = &first else {
        panic!("lease failed: {first:?}");
    };
    assert!(grants.iter().all(|g| g.payload.len() == 10_000));
    let kept = &c.state.session("client-a").expect("a session").response;
    let Ok(Reply::Leased { grants: kept, .. }) = kept else {
        panic!("the session keeps the lease's answer: {kept:?}");
    };
    assert!(
        kept.iter().all(|g| g.payload.is_empty()),
        "the session keeps ids and tokens, not payloads"
    );
    let retried = c.apply_request(request(1, lease(3)));
    assert_eq!(retried, first, "the retry is answered as the first try was");
}

#[test]
fn past_the_session_limit_the_longest_idle_session_is_forgotten() {
    let mut state = State::new();
    let mut index = 0;
    let mut now_ms = 1_000_000;
    for n in 0..=MAX_SESSIONS {
        index += 1;
        now_ms += 1;
        let request = ClientRequest {
            client: format!("client-{n}"),
            seq: 1,
            command: Command::Tick,
        };
        state.apply_request(request, now_ms, index).expect("a tick");
    }
    state.check_invariants().expect("invariants hold");
    assert!(
        state.session("client-0").is_none(),
        "the longest idle went first"
    );
    assert!(state.session("client-1").is_some());
    assert!(state.session(&format!("client-{MAX_SESSIONS}")).is_some());
}
