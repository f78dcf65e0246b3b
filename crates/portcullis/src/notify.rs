//! Alerts that reach people: each alert is kept in the store and posted to a webhook (generic
//! JSON or Slack-shaped), by a background task behind a bounded queue so that a slow or down
//! receiver never holds up a request. The same kind about the same subject is sent once per
//! cool-down; a failed post is retried with exponential backoff.

use portcullis_store::{Store, StoredAlert};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How the webhook body is shaped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// `{"source","kind","subject","message","details","time_ms"}`.
    #[default]
    Json,
    /// A Slack incoming-webhook message (`{"text", "blocks"}`); Mattermost and most chat
    /// tools accept it too.
    Slack,
}

/// `[alerts.webhook]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Environment variable holding the URL to POST alerts to; none named (or unset), no
    /// webhook: alerts still go to the log, the metrics and the store.
    pub url_env: Option<String>,
    pub format: WebhookFormat,
    /// Per-attempt timeout, in seconds.
    pub timeout_s: u64,
    /// Attempts per alert before it is given up (counted as failed).
    pub max_attempts: u32,
    /// Wait before the first retry, doubled after each (capped at 60 s), in milliseconds.
    pub backoff_ms: u64,
    /// Alerts waiting for delivery at most; beyond this new ones are dropped (and counted).
    pub queue: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url_env: None,
            format: WebhookFormat::Json,
            timeout_s: 5,
            max_attempts: 6,
            backoff_ms: 500,
            queue: 1024,
        }
    }
}

/// Labels of `portcullis_alert_deliveries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// `webhook`, `store` or `queue`.
    pub sink: String,
    /// `ok`, `failed`, `retried` or `dropped`.
    pub result: String,
}

/// Counts of delivery attempts and their results.
pub type Deliveries = Family<DeliveryLabels, Counter>;

fn count(d: &Deliveries, sink: &str, result: &str) {
    d.get_or_create(&DeliveryLabels {
        sink: sink.into(),
        result: result.into(),
    })
    .inc();
}

/// The body posted for `a` in `format`.
pub fn payload(format: WebhookFormat, a: &StoredAlert) -> Value {
    match format {
        WebhookFormat::Json => json!({
            "source": "portcullis",
            "kind": a.kind,
            "subject": a.subject,
            "message": a.message,
            "details": a.details,
            "time_ms": a.time_ms,
        }),
        WebhookFormat::Slack => {
            let headline = format!(
                ":rotating_light: Portcullis alert `{}` — {}",
                a.kind, a.subject
            );
            json!({
                "text": format!("{headline}: {}", a.message),
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{headline}*\n{}", a.message)}},
                    {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("details: `{}`", a.details)}]},
                ],
            })
        }
    }
}

/// Where a webhook posts.
struct Webhook {
    url: String,
    format: WebhookFormat,
    client: reqwest::Client,
    attempts: u32,
    backoff: Duration,
}

impl Webhook {
    /// Posts `a`, retrying with backoff; whether it was delivered.
    async fn deliver(&self, a: &StoredAlert, deliveries: &Deliveries) -> bool {
        let body = payload(self.format, a);
        let mut wait = self.backoff;
        for attempt in 1..=self.attempts.max(1) {
            let sent = self.client.post(&self.url).json(&body).send().await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    count(deliveries, "webhook", "ok");
                    return true;
                }
                Ok(r) => {
                    tracing::warn!(kind = %a.kind, status = %r.status(), attempt, "alert webhook refused the alert")
                }
                Err(e) => {
                    // Without the URL: a Slack webhook URL is itself the secret.
                    let e = e.without_url();
                    tracing::warn!(kind = %a.kind, error = %e, attempt, "alert webhook unreachable")
                }
            }
            if attempt < self.attempts {
                count(deliveries, "webhook", "retried");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(60));
            }
        }
        count(deliveries, "webhook", "failed");
        false
    }
}

/// Dedupes alerts and hands them to the delivery task.
pub struct Notifier {
    cooldown: Duration,
    last: Mutex<HashMap<(String, String), Instant>>,
    tx: mpsc::Sender<StoredAlert>,
    deliveries: Deliveries,
}

/// (kind, subject) pairs remembered at most for the cool-down.
const MAX_REMEMBERED: usize = 100_000;

impl Notifier {
    /// Starts the delivery task for `config` (needs a Tokio runtime).
    pub fn spawn(
        config: &crate::anomaly::AlertsConfig,
        store: Option<Store>,
        deliveries: Deliveries,
    ) -> Notifier {
        let hook = &config.webhook;
        let url = hook.url_env.as_ref().and_then(|var| {
            let url = std::env::var(var).ok().filter(|u| !u.trim().is_empty());
            if url.is_none() {
                tracing::warn!(var = %var, "alert webhook off: alerts.webhook.url_env names an unset variable");
            }
            url
        });
        let webhook = url.and_then(|url| {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(hook.timeout_s.max(1)))
                .build()
                .map_err(|e| tracing::warn!(error = %e, "alert webhook off: no HTTP client"))
                .ok()?;
            Some(Webhook {
                url,
                format: hook.format,
                client,
                attempts: hook.max_attempts,
                backoff: Duration::from_millis(hook.backoff_ms),
            })
        });
        let (tx, mut rx) = mpsc::channel::<StoredAlert>(hook.queue.max(1));
        let task_deliveries = deliveries.clone();
        tokio::spawn(async move {
            while let Some(a) = rx.recv().await {
                // Both at once: a store that is down (waiting out its pool timeout) must not
                // delay the page, nor a down webhook the record.
                let stored = async {
                    if let Some(store) = &store {
                        match store.record_alert(&a).await {
                            Ok(()) => count(&task_deliveries, "store", "ok"),
                            Err(e) => {
                                count(&task_deliveries, "store", "failed");
                                tracing::warn!(kind = %a.kind, error = %e, "cannot store alert");
                            }
                        }
                    }
                };
                let posted = async {
                    if let Some(w) = &webhook {
                        w.deliver(&a, &task_deliveries).await;
                    }
                };
                tokio::join!(stored, posted);
            }
        });
        Notifier {
            cooldown: Duration::from_secs(config.cooldown_s),
            last: Mutex::new(HashMap::new()),
            tx,
            deliveries,
        }
    }

    /// Queues `a` unless the same kind about the same subject went out within the cool-down;
    /// whether it was queued. Never waits.
    pub fn raise(&self, a: StoredAlert, now: Instant) -> bool {
        let key = (a.kind.clone(), a.subject.clone());
        {
            let Ok(mut last) = self.last.lock() else {
                return false;
            };
            if last
                .get(&key)
                .is_some_and(|t| now.saturating_duration_since(*t) < self.cooldown)
            {
                return false;
            }
            if last.len() >= MAX_REMEMBERED {
                let cooldown = self.cooldown;
                last.retain(|_, t| now.saturating_duration_since(*t) < cooldown);
            }
            last.insert(key, now);
        }
        match self.tx.try_send(a) {
            Ok(()) => true,
            Err(_) => {
                count(&self.deliveries, "queue", "dropped");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(kind: &str, subject: &str) -> StoredAlert {
        StoredAlert {
            time_ms: 1,
            kind: kind.into(),
            subject: subject.into(),
            message: "m".into(),
            details: json!({"tokens": 9000}),
        }
    }

    #[tokio::test]
    async fn the_same_kind_and_subject_is_sent_once_per_cooldown() {
        let config = crate::anomaly::AlertsConfig {
            cooldown_s: 60,
            ..Default::default()
        };
        let n = Notifier::spawn(&config, None, Deliveries::default());
        let t = Instant::now();
        assert!(n.raise(alert("token_spike", "mallory"), t));
        assert!(!n.raise(alert("token_spike", "mallory"), t + Duration::from_secs(59)));
        assert!(n.raise(alert("token_spike", "trudy"), t), "another subject");
        assert!(n.raise(alert("error_rate", "mallory"), t), "another kind");
        assert!(n.raise(alert("token_spike", "mallory"), t + Duration::from_secs(61)));
    }

    #[test]
    fn payloads_are_generic_json_or_slack_shaped() {
        let a = alert("token_spike", "mallory");
        let j = payload(WebhookFormat::Json, &a);
        assert_eq!(j["kind"], "token_spike");
        assert_eq!(j["subject"], "mallory");
        assert_eq!(j["details"]["tokens"], 9000);
        let s = payload(WebhookFormat::Slack, &a);
        assert!(s["text"].as_str().unwrap().contains("token_spike"));
        assert_eq!(s["blocks"][0]["type"], "section");
        assert!(s.get("kind").is_none());
    }
}
