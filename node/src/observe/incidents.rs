//! Incidents: what an on-call person must hear of without polling. A circuit breaker
//! tripping, and a job type's dead letters reaching a threshold within a window of log
//! time, are logged as `rota::incident` warnings flagged `ops = true`, and, when a webhook
//! is configured, POSTed to it as JSON signed with a shared secret (HMAC-SHA256 of the body
//! in `X-Rota-Signature: sha256=<hex>`), retried with backoff. Raised by the node that
//! proposed the entry, so a cluster raises each incident once (a leader change in the middle
//! of a delivery's retries can still lose or, rarely, repeat one: `X-Rota-Delivery`, the
//! event's log position, lets a receiver drop a repeat).

use super::labels::{MAX_PAIRS, OTHER};
use hmac::{Hmac, Mac};
use rota_raft::{Event, EventBody, NodeId};
use rota_state_machine::{GovernanceChange, JobEventKind, Note};
use serde::Serialize;
use sha2::Sha256;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Where incidents are pushed.
#[derive(Clone)]
pub struct Webhook {
    /// An `http://` or `https://` URL (https trusts the system's roots).
    pub url: String,
    /// The shared secret the signature is made with.
    pub secret: String,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A URL may carry credentials (user:password@): not for logs.
        let url = match reqwest::Url::parse(&self.url) {
            Ok(mut url) => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("redacted"));
                }
                url.to_string()
            }
            Err(_) => "<unparsable>".to_owned(),
        };
        f.debug_struct("Webhook")
            .field("url", &url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Webhook {
    /// A webhook to `url`, signed with `secret`; refused unless `url` is http(s) and the
    /// secret is non-empty.
    pub fn new(url: &str, secret: &str) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(format!("{url:?}: not an http:// or https:// URL"));
        }
        if secret.trim().is_empty() {
            return Err("the webhook needs a shared secret to sign with".to_owned());
        }
        Ok(Self {
            url: url.to_owned(),
            secret: secret.trim().to_owned(),
        })
    }
}

/// When incidents are raised, and where they go.
#[derive(Clone, Debug)]
pub struct IncidentSettings {
    /// Where to push them; `None`: logged only.
    pub webhook: Option<Webhook>,
    /// Dead letters of one job type within `window` that raise an incident.
    pub dead_letters: u32,
    /// The window, in log time.
    pub window: Duration,
}

impl Default for IncidentSettings {
    fn default() -> Self {
        Self {
            webhook: None,
            dead_letters: 10,
            window: Duration::from_secs(3600),
        }
    }
}

/// One incident, as the webhook receives it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    /// The log position of the event that raised it (`INDEX-ORDINAL`): the same on every
    /// node, so a receiver can drop a repeat.
    pub id: String,
    /// `breaker_tripped` or `dead_letters`.
    pub kind: &'static str,
    /// The job type concerned.
    pub job_type: String,
    /// What happened, for a person.
    pub detail: String,
    /// The entry's index.
    pub log_index: u64,
    /// Its log time, in Unix milliseconds.
    pub at_ms: u64,
    /// The node that raised it.
    pub node: NodeId,
}

/// Raises incidents from the events a node proposed.
pub struct Incidents {
    settings: IncidentSettings,
    /// Per job type, the log times of its recent dead letters.
    dead: BTreeMap<String, VecDeque<u64>>,
    /// Per job type, when its last dead-letter incident was raised.
    raised: BTreeMap<String, u64>,
    outbox: Option<mpsc::Sender<Incident>>,
}

/// Incidents waiting for the webhook; past this, new ones are logged and not pushed.
const OUTBOX: usize = 1_024;
/// Attempts per delivery, and the first wait between them (doubled each time).
const ATTEMPTS: u32 = 6;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

impl Incidents {
    /// Incidents as `settings` say; starts the webhook's delivery task (until `stop`).
    pub fn start(settings: IncidentSettings, stop: watch::Receiver<bool>) -> Self {
        let outbox = settings.webhook.clone().map(|hook| {
            let (outbox, pending) = mpsc::channel(OUTBOX);
            tokio::spawn(deliver(hook, pending, stop));
            outbox
        });
        Self {
            settings,
            dead: BTreeMap::new(),
            raised: BTreeMap::new(),
            outbox,
        }
    }

    /// Looks at one event this node proposed.
    pub fn see(&mut self, event: &Event, me: NodeId) {
        let EventBody::Note(note) = &event.body else {
            return;
        };
        let incident = |kind, job_type: &str, detail: String, at_ms: u64| Incident {
            id: format!("{}-{}", event.index, event.ordinal),
            kind,
            job_type: job_type.to_owned(),
            detail,
            log_index: event.index,
            at_ms,
            node: me,
        };
        match note {
            Note::Governance {
                change: GovernanceChange::BreakerTripped { job_type, incident: id },
                at_ms,
                ..
            } => self.raise(incident(
                "breaker_tripped",
                job_type.as_str(),
                format!("the circuit breaker of job type {job_type} tripped (incident {id}): its jobs are not leased until it is reset"),
                *at_ms,
            )),
            Note::Job {
                job_type,
                event: JobEventKind::DeadLettered { .. },
                at_ms,
                ..
            } => {
                let window = u64::try_from(self.settings.window.as_millis()).unwrap_or(u64::MAX);
                let key = if self.dead.contains_key(job_type.as_str()) || self.dead.len() < MAX_PAIRS {
                    job_type.to_string()
                } else {
                    OTHER.to_owned()
                };
                let threshold = self.settings.dead_letters.max(1) as usize;
                // The latest `threshold` times are all the check needs: memory stays
                // bounded however fast jobs fail.
                let times = self.dead.entry(key.clone()).or_default();
                times.push_back(*at_ms);
                while times.len() > threshold
                    || times
                        .front()
                        .is_some_and(|&t| t.saturating_add(window) < *at_ms)
                {
                    times.pop_front();
                }
                let count = times.len();
                let quiet = self
                    .raised
                    .get(&key)
                    .is_none_or(|&last| last.saturating_add(window) <= *at_ms);
                if count >= threshold && quiet {
                    self.raised.insert(key.clone(), *at_ms);
                    self.raise(incident(
                        "dead_letters",
                        &key,
                        format!(
                            "{count} jobs of type {key} were dead-lettered within {}",
                            humanize(self.settings.window)
                        ),
                        *at_ms,
                    ));
                }
            }
            _ => {}
        }
    }

    fn raise(&self, incident: Incident) {
        tracing::warn!(
            target: "rota::incident",
            ops = true,
            kind = incident.kind,
            jobType = incident.job_type.as_str(),
            node = incident.node,
            logIndex = incident.log_index,
            id = incident.id.as_str(),
            atMs = incident.at_ms,
            "incident: {}",
            incident.detail
        );
        if let Some(outbox) = &self.outbox {
            if let Err(e) = outbox.try_send(incident) {
                tracing::error!(target: "rota::incident", error = %e, "the webhook's outbox is full: this incident is logged only");
            }
        }
    }
}

fn humanize(window: Duration) -> String {
    let secs = window.as_secs();
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Posts each incident to the webhook, retrying with backoff, until `stop`.
async fn deliver(
    hook: Webhook,
    mut pending: mpsc::Receiver<Incident>,
    mut stop: watch::Receiver<bool>,
) {
    // No redirects: a signed body goes to the configured URL and nowhere else.
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(target: "rota::incident", error = %e, "no HTTP client for the incident webhook");
            return;
        }
    };
    loop {
        let incident = tokio::select! {
            incident = pending.recv() => match incident {
                Some(incident) => incident,
                None => return,
            },
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let body = match serde_json::to_vec(&incident) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(target: "rota::incident", error = %e, "could not encode an incident");
                continue;
            }
        };
        let signed = signature(&hook.secret, &body);
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let sent = client
                .post(&hook.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("X-Rota-Signature", &signed)
                .header("X-Rota-Delivery", &incident.id)
                .body(body.clone())
                .send()
                .await;
            let why = match sent {
                Ok(response) if response.status().is_success() => break,
                Ok(response) => format!("answered {}", response.status()),
                Err(e) => e.to_string(),
            };
            if attempt == ATTEMPTS {
                tracing::error!(target: "rota::incident", id = incident.id.as_str(), %why, "gave up pushing an incident to the webhook after {ATTEMPTS} attempts");
                break;
            }
            tracing::warn!(target: "rota::incident", id = incident.id.as_str(), %why, attempt, "the incident webhook failed; retrying");
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_needs_an_http_url_and_a_secret() {
        assert!(Webhook::new("http://127.0.0.1:9/hook", "s3cret").is_ok());
        assert!(Webhook::new("https://ops.example.com/hook", "s3cret").is_ok());
        assert!(Webhook::new("ftp://ops.example.com/hook", "s3cret").is_err());
        assert!(Webhook::new("not a url", "s3cret").is_err());
        assert!(Webhook::new("http://127.0.0.1:9/hook", "  ").is_err());
        let debug = format!("{:?}", Webhook::new("http://u:pw@h/x", "s3cret").unwrap());
        assert!(
            !debug.contains("s3cret") && !debug.contains("pw@"),
            "{debug}"
        );
    }

    #[test]
    fn the_signature_is_the_bodys_hmac() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
