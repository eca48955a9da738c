//! The dashboard in a real browser: Debian's headless Chromium, driven over WebDriver
//! (chromedriver), loads the dashboard from a follower of a three-node cluster. A job the
//! test submits appears, its lease and success arrive through the event stream without a
//! reload, and its page shows the attempt and its outputs. Screenshots of both pages go to
//! `ROTA_DASHBOARD_SCREENSHOTS` (a directory) or else the test's temporary directory.
//!
//! `scripts/test` installs `chromium` and `chromium-driver`; without them this test fails
//! and says so.

mod common;

use common::rest::Rest;
use common::secure::{https, SecureCluster};
use common::{cluster, follower};
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::PathBuf;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Longest the page may take to show what the test waits for.
const PATIENCE: Duration = Duration::from_secs(30);

/// A chromedriver on a free loopback port, in a process group of its own: dropping it
/// kills the group, Chromium included, even when the test fails half-way.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let pid = self.child.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        let _ = self.child.wait();
    }
}

async fn chromedriver() -> Driver {
    for path in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            std::path::Path::new(path).exists(),
            "{path} is missing: install Debian's chromium and chromium-driver (scripts/test does)"
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("chromedriver starts");
    // Held from here on, so that a failure below still kills it.
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(answer) = http.get(format!("{}/status", driver.url)).send().await {
            if answer.status().is_success() {
                return driver;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not answer on {}", driver.url);
}

/// A headless Chromium session; with `insecure`, it takes any TLS certificate (the test
/// cluster's CA is its own).
async fn browser(driver: &Driver, insecure: bool) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("acceptInsecureCerts".to_owned(), json!(insecure));
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1440,1100"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

impl Rest {
    async fn submit(&self, tenant: &str, job_type: &str, extra: Value) -> u64 {
        let mut spec = json!({"tenant": tenant, "jobType": job_type, "payload": {"n": 1}});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        self.post("/api/jobs", spec, StatusCode::CREATED).await["jobId"]
            .as_u64()
            .expect("jobId")
    }

    /// Leases one job of `job_type` for `worker`: its id and lease id.
    async fn lease(&self, worker: &str, job_type: &str) -> (u64, u64) {
        let leased = self
            .post(
                "/api/leases",
                json!({"worker": worker, "jobTypes": [job_type], "max": 1, "ttlMs": 60_000}),
                StatusCode::OK,
            )
            .await;
        let job = &leased["jobs"][0];
        (
            job["jobId"].as_u64().expect("a job leased"),
            job["leaseId"].as_u64().expect("leaseId"),
        )
    }

    async fn complete(&self, job: u64, body: Value) {
        self.post(&format!("/api/jobs/{job}/complete"), body, StatusCode::OK)
            .await;
    }
}

async fn wait_for(page: &Client, css: &str) -> fantoccini::elements::Element {
    page.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("the page never showed {css}: {e}"))
}

/// Waits until the element `css` holds text that `good` accepts (re-finding it, as the page
/// re-renders); the text.
async fn wait_for_text(page: &Client, css: &str, good: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        if let Ok(element) = page.find(Locator::Css(css)).await {
            if let Ok(text) = element.text().await {
                if good(&text) {
                    return text;
                }
                last = text;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} never showed what the test waits for; last {last:?}");
}

/// The text of the element with id `id`.
async fn text_of(page: &Client, id: &str) -> String {
    page.find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("no #{id}: {e}"))
        .text()
        .await
        .expect("text")
}

/// Types `token` into the sign-in form (replacing what is there) and sends it.
async fn sign_in(page: &Client, token: &str) {
    let field = page.find(Locator::Id("token")).await.expect("token field");
    field.clear().await.expect("cleared");
    field.send_keys(token).await.expect("typed");
    page.find(Locator::Css("#login button"))
        .await
        .expect("button")
        .click()
        .await
        .expect("clicked");
}

async fn save_screenshot(page: &Client, name: &str) -> PathBuf {
    let dir = std::env::var_os("ROTA_DASHBOARD_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    let png = page.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
    let path = dir.join(name);
    std::fs::write(&path, png).expect("screenshot written");
    eprintln!("dashboard screenshot: {}", path.display());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_jobs_live_in_a_real_browser() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let nodes = cluster(dir.path()).await;
    let via = follower(&nodes);
    let base = format!("http://{}", via.http_addr().expect("HTTP port"));
    let rest = Rest {
        http: reqwest::Client::new(),
        base: base.clone(),
    };

    // Some work already there: queued jobs of two tenants, one leased, one dead-lettered.
    for (tenant, job_type) in [("acme", "email"), ("acme", "report"), ("globex", "email")] {
        for _ in 0..3 {
            rest.submit(tenant, job_type, json!({})).await;
        }
    }
    let doomed = rest
        .submit(
            "globex",
            "resize",
            json!({"retry": {"maxAttempts": 1, "baseBackoffMs": 100, "maxBackoffMs": 1000}}),
        )
        .await;
    let (leased, lease) = rest.lease("w-resize", "resize").await;
    assert_eq!(leased, doomed);
    rest.complete(
        doomed,
        json!({"leaseId": lease, "outcome": "failed", "error": "image too large", "retryable": false}),
    )
    .await;
    rest.lease("w-report", "report").await;

    let driver = chromedriver().await;
    let page = browser(&driver, false).await;
    page.goto(&format!("{base}/"))
        .await
        .expect("the page loads");

    // The cluster as the follower sees it, replication as the leader does, the stream live.
    for node in 1..=3 {
        wait_for(&page, &format!("#members tr[data-node='{node}']")).await;
    }
    wait_for(&page, "#live.on").await;
    // Replication as the leader sees it: a matched index for every node.
    for node in 1..=3 {
        let css = format!("#members tr[data-node='{node}'] td.matched");
        wait_for_text(&page, &css, |t| t.parse::<u64>().is_ok()).await;
    }
    wait_for(&page, "#queues tr[data-tenant='globex'][data-type='email']").await;
    wait_for(&page, &format!("#dead a[data-job='{doomed}']")).await;
    let leader_line = text_of(&page, "node-line").await;
    assert!(
        leader_line.contains(&format!("node {} · follower", via.raft().id())),
        "{leader_line}"
    );
    // A mark that a reload would erase.
    page.execute("window.__stillHere = 'yes'; return true;", vec![])
        .await
        .expect("script runs");

    // A job submitted now appears through the event stream...
    let job = rest
        .submit(
            "browser",
            "render",
            json!({"inputs": [{"name": "scene", "uri": "s3://bucket/scene.json"}]}),
        )
        .await;
    wait_for(
        &page,
        &format!("#events tr[data-kind='enqueued'][data-job='{job}']"),
    )
    .await;
    wait_for(
        &page,
        "#queues tr[data-tenant='browser'][data-type='render']",
    )
    .await;

    // ...and so do its lease and its success, without a reload.
    let (leased, lease) = rest.lease("w-render", "render").await;
    assert_eq!(leased, job);
    wait_for(
        &page,
        &format!("#events tr[data-kind='leased'][data-job='{job}']"),
    )
    .await;
    rest.complete(
        job,
        json!({"leaseId": lease, "outcome": "succeeded",
               "outputs": [{"name": "frame", "uri": "s3://bucket/frame.png"}]}),
    )
    .await;
    wait_for(
        &page,
        &format!("#events tr[data-kind='succeeded'][data-job='{job}']"),
    )
    .await;
    let still_here = page
        .execute("return window.__stillHere || null;", vec![])
        .await
        .expect("script runs");
    assert_eq!(still_here, json!("yes"), "the page reloaded");
    // The chart draws the finished jobs once their five seconds are whole.
    wait_for(&page, "#chart rect.bar").await;
    // The event row names its worker.
    let row = wait_for(
        &page,
        &format!("#events tr[data-kind='leased'][data-job='{job}']"),
    )
    .await;
    let text = row.text().await.expect("row text");
    assert!(text.contains("w-render"), "{text}");
    save_screenshot(&page, "dashboard.png").await;

    // The job's page: its attempt, its lineage, its history.
    wait_for(
        &page,
        &format!("#events tr[data-kind='succeeded'] a[data-job='{job}']"),
    )
    .await
    .click()
    .await
    .expect("the job link clicks");
    wait_for(&page, "#job-title[data-status='succeeded']").await;
    let attempts = wait_for(&page, "#job-attempts tr[data-outcome='succeeded']")
        .await
        .text()
        .await
        .expect("text");
    assert!(attempts.contains("w-render"), "{attempts}");
    let lineage = text_of(&page, "job-lineage").await;
    assert!(lineage.contains("s3://bucket/scene.json"), "{lineage}");
    assert!(lineage.contains("s3://bucket/frame.png"), "{lineage}");
    wait_for(&page, "#job-history tr[data-kind='succeeded']").await;
    save_screenshot(&page, "dashboard-job.png").await;

    // A job that does not exist is said to be missing, not shown blank.
    page.goto(&format!("{base}/#/jobs/999999"))
        .await
        .expect("navigates");
    wait_for(&page, "#job-title[data-status='unknown']").await;
    let text = text_of(&page, "job-error").await;
    assert!(text.contains("not found"), "{text}");

    page.close().await.expect("the session closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_on_the_dashboard_asks_for_a_token_and_streams_with_it() {
    let cluster = SecureCluster::start().await;
    let reader = cluster
        .token("dashboard", &["orchestrator:read"], &[])
        .await;
    let producer = cluster
        .token("producer", &["orchestrator:write"], &[])
        .await;
    let via = cluster.follower().await;
    let base = format!("https://{}", via.http_addr().expect("HTTP port"));
    let http = https(cluster.certs.path(), None);

    let driver = chromedriver().await;
    let page = browser(&driver, true).await;
    page.goto(&format!("{base}/"))
        .await
        .expect("the page loads");
    // Without a token the page shows nothing but the sign-in form...
    wait_for(&page, "#login:not([hidden])").await;
    wait_for(&page, "#overview[hidden]").await;
    // ...refuses a wrong token...
    sign_in(&page, &format!("rota_{}", "0".repeat(64))).await;
    wait_for_text(&page, "#login-error", |t| t.contains("refused")).await;
    // ...and with a reader's token shows the cluster and its events, read with fetch().
    sign_in(&page, &reader).await;
    wait_for(&page, "#login[hidden]").await;
    wait_for(&page, "#members tr[data-node='1']").await;
    wait_for(&page, "#live.on").await;
    let job = {
        let answer = http
            .post(format!("{base}/api/jobs"))
            .bearer_auth(&producer)
            .json(&json!({"tenant": "acme", "jobType": "email", "payload": {}}))
            .send()
            .await
            .expect("the node answers");
        assert_eq!(answer.status(), StatusCode::CREATED);
        let made: Value = answer.json().await.expect("JSON");
        made["jobId"].as_u64().expect("jobId")
    };
    wait_for(
        &page,
        &format!("#events tr[data-kind='enqueued'][data-job='{job}']"),
    )
    .await;
    // The token is kept for this tab only: in session storage, not in local storage.
    let kept = page
        .execute(
            "return [sessionStorage.getItem('rota-token'), localStorage.length];",
            vec![],
        )
        .await
        .expect("script runs");
    assert_eq!(kept, json!([reader, 0]));

    page.close().await.expect("the session closes");
    cluster.stop().await;
}
