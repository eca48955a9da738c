//! `--scrape-metrics`: a Prometheus server's load on the started agents, so that a run can
//! show what being watched costs. Each agent's `/metrics` is fetched in turn at the given
//! interval (a slow answer delays the next round, as a scrape timeout would not); the
//! answers are counted and thrown away.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The scraping task and its counts.
pub(crate) struct Scraper {
    task: JoinHandle<()>,
    answered: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

/// Scrapes each of `urls` every `every`, until stopped.
pub(crate) fn start(urls: Vec<String>, every: Duration) -> Scraper {
    let answered = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let (ok, bad) = (answered.clone(), failed.clone());
    let task = tokio::spawn(async move {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
        {
            Ok(client) => client,
            Err(_) => return,
        };
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            for url in &urls {
                let body = match client.get(url).send().await {
                    Ok(response) if response.status().is_success() => response.bytes().await.ok(),
                    _ => None,
                };
                match body {
                    Some(_) => ok.fetch_add(1, Ordering::Relaxed),
                    // An agent being restarted after a kill does not answer.
                    None => bad.fetch_add(1, Ordering::Relaxed),
                };
            }
        }
    });
    Scraper {
        task,
        answered,
        failed,
    }
}

impl Scraper {
    /// Stops scraping; the scrapes answered and failed.
    pub(crate) fn stop(self) -> (u64, u64) {
        self.task.abort();
        (
            self.answered.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}
