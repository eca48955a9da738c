//! `GovernanceHistory`: every change with who, why, the ticket, its time and log index;
//! filtered by kind and time, paged without a gap or a repeat, archived events read back.

mod common;

use common::ManualClock;
use rota_client::proto as pb;
use rota_client::{Client, ClientConfig};
use std::time::Duration;

const T0: u64 = 1_800_000_000_000;

fn stamp(reason: &str, ticket: Option<&str>) -> Option<pb::Stamp> {
    Some(pb::Stamp {
        actor: "ops@example.com".to_owned(),
        reason: reason.to_owned(),
        ticket: ticket.map(str::to_owned),
    })
}

fn request() -> pb::GovernanceHistoryRequest {
    pb::GovernanceHistoryRequest {
        read: None,
        kinds: Vec::new(),
        since_ms: None,
        until_ms: None,
        after_index: None,
        limit: 0,
        archived: false,
    }
}

async fn history(
    client: &Client,
    request: pb::GovernanceHistoryRequest,
) -> Vec<pb::GovernanceEventView> {
    client
        .governance_history(request)
        .await
        .expect("history")
        .events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_tells_every_change_filtered_paged_and_from_the_archive() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let clock = ManualClock::at(T0);
    let node = common::one_node(common::clocked(dir.path(), &clock)).await;
    let client = Client::with_config(ClientConfig {
        retry_for: Duration::from_secs(5),
        ..ClientConfig::new([node.addr().to_string()])
    })
    .expect("client");

    // Changes at known times: a quota, maintenance on and off, a throttle.
    client
        .set_quota(pb::SetQuotaRequest {
            session: None,
            tenant: "acme".to_owned(),
            job_type: None,
            max_active: Some(5),
            max_per_hour: None,
            burst: None,
            stamp: stamp("acme's share", Some("OPS-1")),
        })
        .await
        .expect("quota");
    clock.advance(60_000);
    for enabled in [true, false] {
        client
            .set_maintenance(pb::SetMaintenanceRequest {
                session: None,
                enabled,
                stamp: stamp("upgrade", Some("CHG-7")),
            })
            .await
            .expect("maintenance");
    }
    clock.advance(60_000);
    client
        .throttle(pb::ThrottleRequest {
            session: None,
            scope: Some(pb::Scope {
                tenant: None,
                job_type: Some("etl".to_owned()),
            }),
            max_concurrent: Some(2),
            stamp: stamp("db is slow", None),
        })
        .await
        .expect("throttle");

    let all = history(&client, request()).await;
    let kinds: Vec<&str> = all.iter().map(|e| e.kind.as_str()).collect();
    // The node set the default retention windows as it started: that is a change too.
    assert_eq!(
        kinds,
        [
            "retention_set",
            "quota_set",
            "maintenance",
            "maintenance",
            "throttled"
        ],
        "{all:#?}"
    );
    let quota = &all[1];
    let who = quota.stamp.as_ref().expect("a stamp");
    assert_eq!(
        (
            who.actor.as_str(),
            who.reason.as_str(),
            who.ticket.as_deref()
        ),
        ("ops@example.com", "acme's share", Some("OPS-1"))
    );
    assert_eq!(quota.at_ms, T0);
    assert!(
        quota.detail.contains("max_active: Some(5)"),
        "{}",
        quota.detail
    );
    assert!(all.windows(2).all(|w| w[0].log_index < w[1].log_index));
    assert!(all.iter().all(|e| !e.archived));

    // By kind, by time.
    let maintenance = history(
        &client,
        pb::GovernanceHistoryRequest {
            kinds: vec!["maintenance".to_owned()],
            ..request()
        },
    )
    .await;
    assert_eq!(maintenance.len(), 2);
    assert!(maintenance[0].detail.contains("enabled: true"));
    assert!(maintenance[1].detail.contains("enabled: false"));
    let window = history(
        &client,
        pb::GovernanceHistoryRequest {
            since_ms: Some(T0 + 60_000),
            until_ms: Some(T0 + 120_000),
            ..request()
        },
    )
    .await;
    assert_eq!(window, maintenance, "the two changes of the second minute");
    let unknown = client
        .governance_history(pb::GovernanceHistoryRequest {
            kinds: vec!["coffee".to_owned()],
            ..request()
        })
        .await
        .expect_err("an unknown kind");
    assert_eq!(unknown.kind(), Some("invalid_input"), "{unknown}");
    assert!(
        unknown.to_string().contains("quota_set"),
        "names the kinds: {unknown}"
    );

    // Pages of two: every event once, in order.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = client
            .governance_history(pb::GovernanceHistoryRequest {
                limit: 2,
                after_index: after,
                ..request()
            })
            .await
            .expect("page");
        assert!(page.events.len() <= 2);
        paged.extend(page.events);
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(paged, all);

    // A short history window moves the events to the archive; `archived` reads them back.
    client
        .set_retention(pb::SetRetentionRequest {
            session: None,
            retention: Some(pb::Retention {
                history_ms: Some(1_000),
                ..pb::Retention::default()
            }),
            stamp: stamp("short history", None),
        })
        .await
        .expect("retention");
    // Swept once a minute of log time.
    clock.advance(120_000);
    let mut live = Vec::new();
    for _ in 0..200 {
        live = history(&client, request()).await;
        if live.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(live.is_empty(), "still in memory: {live:#?}");
    let archived = history(
        &client,
        pb::GovernanceHistoryRequest {
            archived: true,
            ..request()
        },
    )
    .await;
    assert_eq!(archived.len(), all.len() + 1, "{archived:#?}");
    assert!(archived.iter().all(|e| e.archived));
    let same: Vec<(u64, &str)> = archived[..all.len()]
        .iter()
        .map(|e| (e.log_index, e.kind.as_str()))
        .collect();
    let before: Vec<(u64, &str)> = all.iter().map(|e| (e.log_index, e.kind.as_str())).collect();
    assert_eq!(same, before);
    assert_eq!(archived[all.len()].kind, "retention_set");
    node.shutdown().await.expect("node stops");
}
