//! The `rota` binary as an operator uses it: `rota dev` and the client subcommands, tables
//! and `--json`, non-zero exits with clear errors, and a graceful stop on SIGTERM.

use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn rota(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(args)
        .env("ROTA_ENDPOINTS", endpoint)
        .env("ROTA_ACTOR", "ops@example.com")
        .output()
        .expect("rota runs")
}

fn ok(endpoint: &str, args: &[&str]) -> String {
    let out = rota(endpoint, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "rota {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `rota` with `args` and checks that it fails, saying `saying` on stderr.
fn refused(endpoint: &str, args: &[&str], saying: &str) {
    let out = rota(endpoint, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "rota {args:?} succeeded");
    assert!(stderr.contains(saying), "rota {args:?}: {stderr}");
}

fn json(endpoint: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let text = ok(endpoint, &all);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("rota {args:?} printed no JSON ({e}): {text}"))
}

#[test]
fn an_operator_drives_a_dev_node_from_the_command_line() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let endpoint = format!(
        "127.0.0.1:{}",
        rota_benches::cluster::free_port().expect("a free port")
    );
    let dev = Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(["dev", "--listen", &endpoint, "--http-listen", "127.0.0.1:0"])
        .env("ROTA_DEV_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("rota dev starts");

    let first = json(
        &endpoint,
        &[
            "job",
            "submit",
            "--tenant",
            "acme",
            "--type",
            "email",
            "--payload",
            "hi",
        ],
    );
    let job = first["job_id"].as_u64().expect("a job id");
    assert_eq!(first["created"], Value::Bool(true));
    let listed = json(&endpoint, &["job", "list", "--status", "ready"]);
    assert_eq!(listed["jobs"][0]["id"].as_u64(), Some(job));
    assert!(
        ok(&endpoint, &["job", "list"]).contains("acme"),
        "a table by default"
    );
    let shown = json(&endpoint, &["job", "show", &job.to_string()]);
    assert_eq!(shown["status"], "ready");
    assert_eq!(shown["history"][0]["kind"], "enqueued");

    // Every field of the wire's job spec from flags.
    let full = json(
        &endpoint,
        &[
            "job",
            "submit",
            "--tenant",
            "acme",
            "--type",
            "etl",
            "--project",
            "billing",
            "--priority",
            "7",
            "--not-before",
            "2099-01-01T00:00:00Z",
            "--correlation-id",
            "order-42",
            "--input",
            "name=raw,uri=s3://b/raw.csv,digest=sha256:ab",
            "--input",
            "name=rates,uri=s3://b/rates.csv",
            "--backfill-reason",
            "rerun december",
            "--backfill-ticket",
            "OPS-9",
            "--max-attempts",
            "4",
            "--base-backoff",
            "2s",
            "--max-backoff",
            "1m",
        ],
    );
    let full = json(
        &endpoint,
        &[
            "job",
            "show",
            &full["job_id"].as_u64().expect("id").to_string(),
        ],
    );
    assert_eq!(full["status"], "pending", "{full}");
    assert_eq!(full["project"], "billing");
    assert_eq!(full["priority"], 7);
    assert_eq!(full["not_before_ms"].as_u64(), Some(4_070_908_800_000));
    assert_eq!(full["correlation_id"], "order-42");
    assert_eq!(full["inputs"][0]["digest"], "sha256:ab");
    assert_eq!(full["inputs"][1]["uri"], "s3://b/rates.csv");
    assert_eq!(full["backfill"]["ticket"], "OPS-9");
    assert_eq!(
        full["retry"],
        serde_json::json!({"max_attempts": 4, "base_backoff_ms": 2000, "max_backoff_ms": 60000})
    );
    let lineage = json(&endpoint, &["lineage", "sha256:ab"]);
    assert_eq!(lineage["links"][0]["job_id"], full["id"], "{lineage}");
    assert_eq!(lineage["links"][0]["wrote"], false);
    assert_eq!(lineage["links"][0]["artifact"]["name"], "raw");
    assert!(ok(&endpoint, &["lineage", "s3://b/rates.csv"]).contains("read"));
    assert!(ok(&endpoint, &["lineage", "nothing"]).contains("no job in memory"));
    refused(
        &endpoint,
        &[
            "job", "submit", "--tenant", "acme", "--type", "etl", "--input", "raw.csv",
        ],
        "name=NAME,uri=URI",
    );

    // Schedules: made, shown with their next firings, paused, resumed, deleted.
    ok(
        &endpoint,
        &[
            "schedule",
            "create",
            "nightly",
            "--cron",
            "0 3 * * *",
            "--catch-up",
            "run-each",
            "--catch-up-max",
            "3",
            "--tenant",
            "acme",
            "--type",
            "report",
            "--reason",
            "nightly report",
            "--ticket",
            "OPS-10",
        ],
    );
    let shown = json(
        &endpoint,
        &["schedule", "show", "nightly", "--upcoming", "3"],
    );
    assert_eq!(shown["cron"], "0 3 * * *");
    assert_eq!(shown["catch_up"], "run-each (at most 3)");
    assert_eq!(shown["created_by"]["ticket"], "OPS-10");
    let upcoming = shown["upcoming_ms"].as_array().expect("fire times");
    assert_eq!(upcoming.len(), 3);
    for pair in upcoming.windows(2) {
        let (a, b) = (pair[0].as_u64().unwrap(), pair[1].as_u64().unwrap());
        assert_eq!(b - a, 86_400_000, "daily at 03:00 UTC");
        assert_eq!(a % 86_400_000, 3 * 3_600_000);
    }
    assert!(ok(&endpoint, &["schedule", "list"]).contains("cron 0 3 * * *"));
    let backfilled = json(
        &endpoint,
        &[
            "schedule",
            "backfill",
            "nightly",
            "--at",
            "2026-01-01T03:00:00Z",
            "--at",
            "2026-01-02T03:00:00Z",
            "--reason",
            "missed nights",
            "--ticket",
            "OPS-11",
        ],
    );
    assert_eq!(
        backfilled["jobs"].as_array().map(Vec::len),
        Some(2),
        "{backfilled}"
    );
    let plan_id = backfilled["plan_id"].as_u64().expect("a plan").to_string();
    let canceled = json(
        &endpoint,
        &["plan", "cancel", &plan_id, "--reason", "not needed"],
    );
    assert_eq!(canceled["canceled"].as_array().map(Vec::len), Some(2));
    refused(
        &endpoint,
        &[
            "schedule",
            "backfill",
            "nightly",
            "--at",
            "2026-01-01T04:00:00Z",
            "--reason",
            "r",
            "--ticket",
            "T",
        ],
        "not a past fire time",
    );
    ok(
        &endpoint,
        &["schedule", "pause", "nightly", "--reason", "freeze"],
    );
    assert_eq!(
        json(&endpoint, &["schedule", "list"])["schedules"][0]["paused"],
        true
    );
    ok(
        &endpoint,
        &["schedule", "resume", "nightly", "--reason", "thaw"],
    );
    ok(
        &endpoint,
        &["schedule", "delete", "nightly", "--reason", "gone"],
    );
    assert_eq!(
        json(&endpoint, &["schedule", "list"])["schedules"],
        serde_json::json!([])
    );
    let history = json(
        &endpoint,
        &[
            "governance",
            "history",
            "--kind",
            "schedule_created",
            "--kind",
            "schedule_deleted",
        ],
    );
    let events = history["events"].as_array().expect("events");
    assert_eq!(events.len(), 2, "{history}");
    assert_eq!(events[0]["kind"], "schedule_created");
    assert_eq!(events[0]["ticket"], "OPS-10");
    assert_eq!(events[0]["actor"], "ops@example.com");
    assert_eq!(events[1]["kind"], "schedule_deleted");
    assert_eq!(events[1]["reason"], "gone");
    let table = ok(&endpoint, &["governance", "history"]);
    assert!(
        table.contains("schedule_paused") && table.contains("schedule_resumed"),
        "{table}"
    );
    refused(
        &endpoint,
        &[
            "schedule",
            "create",
            "x",
            "--cron",
            "61 * * * *",
            "--tenant",
            "acme",
            "--type",
            "r",
            "--reason",
            "r",
        ],
        "61 * * * *",
    );

    // Audit: the dev node made its key in its data directory; a bundle verifies with it,
    // and a changed byte is named by file and line. A key of one's own: keygen.
    let bundle = dir.path().join("bundle");
    let exported = json(
        &endpoint,
        &["audit", "export", "--out", bundle.to_str().expect("utf-8")],
    );
    assert!(exported["jobs"].as_u64() >= Some(2), "{exported}");
    let public = dir.path().join("audit.pub");
    let verify = |key: &std::path::Path| {
        rota(
            &endpoint,
            &[
                "audit",
                "verify",
                bundle.to_str().expect("utf-8"),
                "--key",
                key.to_str().expect("utf-8"),
            ],
        )
    };
    let verified = verify(&public);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(String::from_utf8_lossy(&verified.stdout).contains("bundle verifies"));
    let keys = dir.path().join("keys");
    let made = json(
        &endpoint,
        &["audit", "keygen", "--out", keys.to_str().expect("utf-8")],
    );
    assert_eq!(made["key_id"].as_str().map(str::len), Some(16));
    let wrong = verify(&keys.join("audit.pub"));
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("no signature by key"));
    let jobs_file = bundle.join("jobs.jsonl");
    let text = std::fs::read_to_string(&jobs_file).expect("jobs.jsonl");
    std::fs::write(&jobs_file, text.replacen("acme", "acmf", 1)).expect("tamper");
    let tampered = verify(&public);
    assert!(!tampered.status.success());
    let said = String::from_utf8_lossy(&tampered.stderr);
    assert!(said.contains("jobs.jsonl line 1"), "{said}");

    // The runbook: block a tenant, its enqueue is refused with the reason; unblock it.
    ok(
        &endpoint,
        &["tenant", "block", "noisy", "--reason", "floods the queue"],
    );
    refused(
        &endpoint,
        &["job", "submit", "--tenant", "noisy", "--type", "etl"],
        "floods the queue",
    );
    ok(
        &endpoint,
        &["tenant", "unblock", "noisy", "--reason", "calm"],
    );
    ok(
        &endpoint,
        &["job", "submit", "--tenant", "noisy", "--type", "etl"],
    );
    let not_leased = rota(
        &endpoint,
        &["job", "release", &job.to_string(), "--reason", "r"],
    );
    assert!(!not_leased.status.success());

    // The same as one tar archive, verified as it is.
    let archive = dir.path().join("bundle.tar");
    let archive_arg = archive.to_str().expect("utf-8");
    ok(&endpoint, &["audit", "export", "--out", archive_arg]);
    let public_arg = public.to_str().expect("utf-8");
    let verified = ok(
        &endpoint,
        &["audit", "verify", archive_arg, "--key", public_arg],
    );
    assert!(verified.contains("bundle verifies"), "{verified}");

    // One job signed, checked offline; a changed payload is caught.
    let envelope = ok(&endpoint, &["job", "show", &job.to_string(), "--signed"]);
    let signed = dir.path().join("job.dsse.json");
    std::fs::write(&signed, &envelope).expect("envelope file");
    let signed_arg = signed.to_str().expect("utf-8");
    let opened = json(
        &endpoint,
        &["audit", "verify-job", signed_arg, "--key", public_arg],
    );
    assert_eq!(opened["statement"]["job"]["job_id"], job, "{opened}");
    let mut forged: Value = serde_json::from_str(&envelope).expect("JSON");
    forged["payload"] = Value::from("eyJqb2JfaWQiOjk5fQ==");
    std::fs::write(&signed, forged.to_string()).expect("forged file");
    refused(
        &endpoint,
        &["audit", "verify-job", signed_arg, "--key", public_arg],
        "does not verify",
    );

    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        "steps:\n  - key: extract\n    tenant: acme\n    type: etl\n  - key: load\n    tenant: acme\n    type: etl\n    depends_on: [extract]\n",
    )
    .expect("plan file");
    let submitted = json(
        &endpoint,
        &["plan", "submit", plan.to_str().expect("utf-8")],
    );
    assert_eq!(submitted["jobs"].as_array().map(Vec::len), Some(2));
    let plan_id = submitted["plan_id"].as_u64().expect("plan id").to_string();
    assert_eq!(
        json(&endpoint, &["plan", "show", &plan_id])["status"],
        "pending"
    );

    ok(
        &endpoint,
        &[
            "quota",
            "set",
            "--tenant",
            "acme",
            "--max-active",
            "5",
            "--reason",
            "fair share",
        ],
    );
    ok(
        &endpoint,
        &[
            "throttle",
            "--type",
            "etl",
            "--max-concurrent",
            "2",
            "--reason",
            "db load",
        ],
    );
    ok(
        &endpoint,
        &[
            "source",
            "pause",
            "--tenant",
            "acme",
            "--type",
            "email",
            "--reason",
            "bad batch",
        ],
    );
    ok(&endpoint, &["maintenance", "on", "--reason", "upgrade"]);
    let governance = json(&endpoint, &["governance"]);
    assert_eq!(governance["maintenance"]["reason"], "upgrade");
    assert_eq!(governance["quotas"][0]["max_active"], 5);
    assert_eq!(governance["throttles"][0]["max_concurrent"], 2);
    assert_eq!(governance["paused"][0]["reason"], "bad batch");
    ok(&endpoint, &["maintenance", "off", "--reason", "done"]);
    ok(
        &endpoint,
        &[
            "breaker",
            "set",
            "email",
            "--threshold-percent",
            "50",
            "--reason",
            "flaky smtp",
        ],
    );
    let no_trip = rota(
        &endpoint,
        &["breaker", "reset", "email", "--reason", "nothing open"],
    );
    assert!(!no_trip.status.success(), "no breaker is open yet");
    assert!(String::from_utf8_lossy(&no_trip.stderr).contains("no circuit breaker is open"));
    ok(
        &endpoint,
        &["breaker", "remove", "email", "--reason", "smtp fixed"],
    );
    ok(
        &endpoint,
        &[
            "source", "resume", "--tenant", "acme", "--type", "email", "--reason", "fixed",
        ],
    );
    ok(
        &endpoint,
        &["throttle", "--type", "etl", "--lift", "--reason", "db fine"],
    );

    let canceled = json(
        &endpoint,
        &["job", "cancel", &job.to_string(), "--reason", "not needed"],
    );
    assert_eq!(canceled["canceled"], Value::Bool(true));
    let replayed = json(
        &endpoint,
        &[
            "job",
            "replay",
            &job.to_string(),
            "--reason",
            "needed after all",
        ],
    );
    assert_eq!(replayed["replay_of"].as_u64(), Some(job));
    assert_eq!(
        json(&endpoint, &["dlq", "list"])["jobs"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    let status = json(&endpoint, &["cluster", "status"]);
    assert_eq!(status["nodes"][0]["role"], "leader");

    // Clear errors and non-zero exits.
    refused(
        &endpoint,
        &["job", "show", "424242"],
        "job-424242 not found",
    );
    refused(
        &endpoint,
        &["job", "cancel", &job.to_string(), "--reason", "twice"],
        "cannot be canceled",
    );
    refused(
        &endpoint,
        &["job", "list", "--status", "done"],
        "unknown status",
    );
    let down = rota("127.0.0.1:1", &["job", "list", "--wait-secs", "1"]);
    assert!(!down.status.success(), "no node at that address");

    // Retention: the canceled job leaves memory a second after it was canceled, and is
    // still shown, from the archive.
    ok(
        &endpoint,
        &[
            "retention",
            "set",
            "--canceled",
            "1s",
            "--reason",
            "tight memory",
        ],
    );
    let retention = json(&endpoint, &["retention", "show"]);
    assert_eq!(retention["canceled_ms"], 1_000);
    assert_eq!(retention["succeeded_ms"], 3_600_000, "the others kept");
    let deadline = Instant::now() + Duration::from_secs(20);
    let archived = loop {
        let shown = json(&endpoint, &["job", "show", &job.to_string()]);
        if shown["archived"] == Value::Bool(true) || Instant::now() > deadline {
            break shown;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(archived["archived"], Value::Bool(true), "{archived}");
    assert_eq!(archived["status"], "canceled");
    let listed = json(&endpoint, &["job", "list", "--archived"]);
    assert_eq!(listed["jobs"][0]["id"].as_u64(), Some(job));
    assert!(json(&endpoint, &["retention", "show"])["archive"]["records"].as_u64() >= Some(1));
    refused(
        &endpoint,
        &["job", "replay", &job.to_string(), "--reason", "too late"],
        "is archived",
    );

    // Tokens: made (the secret printed once), listed without it, revoked. A dev node runs
    // without TLS, so without auth: it makes no bootstrap token.
    let made = json(
        &endpoint,
        &[
            "token",
            "create",
            "--name",
            "ci",
            "--scopes",
            "orchestrator:*",
            "--tenants",
            "acme",
            "--ttl",
            "1h",
            "--reason",
            "the test",
        ],
    );
    let secret = made["secret"].as_str().expect("a secret").to_owned();
    assert!(
        secret.starts_with("rota_") && secret.len() == 69,
        "{secret}"
    );
    let tokens = json(&endpoint, &["token", "list"]);
    assert_eq!(tokens["tokens"][0]["name"], "ci");
    assert_eq!(tokens["tokens"][0]["tenants"][0], "acme");
    assert!(
        !tokens.to_string().contains(&secret),
        "the list shows a secret"
    );
    refused(
        &endpoint,
        &[
            "token", "create", "--name", "ci", "--scopes", "*", "--reason", "again",
        ],
        "already exists",
    );
    ok(&endpoint, &["token", "revoke", "ci", "--reason", "done"]);
    assert_eq!(
        json(&endpoint, &["token", "list"])["tokens"],
        serde_json::json!([])
    );
    let bad_scope = rota(
        &endpoint,
        &[
            "token", "create", "--name", "x", "--scopes", "orch:all", "--reason", "r",
        ],
    );
    assert!(String::from_utf8_lossy(&bad_scope.stderr).contains("unknown scope"));

    // One node has nobody to hand leadership to.
    refused(
        &endpoint,
        &["cluster", "transfer-leader"],
        "nobody to hand leadership to",
    );

    // A backup, checked, and a new node seeded from it.
    let backup = dir.path().join("backup.snap");
    let backup_arg = backup.display().to_string();
    let saved = json(&endpoint, &["snapshot", "save", &backup_arg]);
    let digest = saved["stateDigest"].as_str().expect("a digest").to_owned();
    let info = json(&endpoint, &["snapshot", "info", &backup_arg]);
    assert_eq!(info["stateDigest"], saved["stateDigest"]);
    assert_eq!(info["sha256"], saved["sha256"]);
    let restored = dir.path().join("restored");
    let restored_arg = restored.display().to_string();
    let seeded = json(
        &endpoint,
        &[
            "snapshot",
            "restore",
            &backup_arg,
            "--data-dir",
            &restored_arg,
        ],
    );
    assert_eq!(seeded["stateDigest"].as_str(), Some(digest.as_str()));
    let again = rota(
        &endpoint,
        &[
            "snapshot",
            "restore",
            &backup_arg,
            "--data-dir",
            &restored_arg,
        ],
    );
    assert!(!again.status.success(), "a node's directory is refused");

    stop(dev, true);

    let second = format!(
        "127.0.0.1:{}",
        rota_benches::cluster::free_port().expect("a free port")
    );
    let from_backup = Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(["dev", "--listen", &second, "--http-listen", "127.0.0.1:0"])
        .args(["--data-dir", &restored_arg])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("rota dev starts on the restored data");
    let shown = json(
        &second,
        &["job", "show", &job.to_string(), "--wait-secs", "10"],
    );
    assert_eq!(
        shown["id"].as_u64(),
        Some(job),
        "the backed-up job is there"
    );
    stop(from_backup, false);
}

/// SIGTERM, and the node stops gracefully; `first` also checks what `rota dev` printed.
fn stop(mut dev: std::process::Child, first: bool) {
    let killed = Command::new("kill")
        .args(["-TERM", &dev.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = dev.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "rota dev did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = dev.wait_with_output().expect("output");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(exit.success(), "exit {exit:?}: {printed}");
    assert!(printed.contains("stopped"), "{printed}");
    if first {
        assert!(printed.contains("listening on"), "{printed}");
        assert!(printed.contains("auth is OFF"), "{printed}");
    }
}
