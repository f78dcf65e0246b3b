//! Prometheus metrics (`GET /metrics`) and alerts: what operators watch, in one registry.
//! An alert is a WARN log line with `alert=<kind>` plus a counter, so both log pipelines and
//! Prometheus rules can page on it.

use portcullis_core::{GuardRecord, Outcome};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub status: u16,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GuardLabels {
    pub guard: String,
    pub direction: String,
    pub outcome: String,
    /// The mode the guard ran in for the request (`enforce`, or `monitor` — configured, or
    /// outside a rollout's share).
    pub mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    pub guard: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub guard_outcomes: Family<GuardLabels, Counter>,
    pub findings: Family<FindingLabels, Counter>,
    pub alerts: Family<KindLabels, Counter>,
    pub tokens: Family<KindLabels, Counter>,
    pub cost_micros: Counter,
    pub latency: Histogram,
    pub upstream_latency: Histogram,
    /// When each alert kind was last logged: during an outage the counter counts every
    /// event, the log says so once per [`ALERT_LOG_EVERY`].
    last_logged: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// Shortest gap between two log lines of one alert kind.
pub const ALERT_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by route, status and outcome",
            requests.clone(),
        );
        let guard_outcomes = Family::<GuardLabels, Counter>::default();
        registry.register(
            "guard_outcomes",
            "Guard verdicts by guard, direction, outcome and the mode the guard ran in",
            guard_outcomes.clone(),
        );
        let findings = Family::<FindingLabels, Counter>::default();
        registry.register(
            "findings",
            "What flagged or blocked requests and answers held (moderation categories, attack signals, entity types), by guard",
            findings.clone(),
        );
        let alerts = Family::<KindLabels, Counter>::default();
        registry.register("alerts", "Alerts raised, by kind", alerts.clone());
        let tokens = Family::<KindLabels, Counter>::default();
        registry.register(
            "tokens",
            "Tokens used upstream (prompt, completion, cached)",
            tokens.clone(),
        );
        let cost_micros = Counter::default();
        registry.register(
            "cost_micro_usd",
            "Spend in micro-dollars",
            cost_micros.clone(),
        );
        let latency = Histogram::new(exponential_buckets(0.0005, 2.0, 18));
        registry.register(
            "request_duration_seconds",
            "Time from request to last byte",
            latency.clone(),
        );
        let upstream_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 18));
        registry.register(
            "upstream_duration_seconds",
            "Time to the upstream's first byte",
            upstream_latency.clone(),
        );
        Metrics {
            registry,
            requests,
            guard_outcomes,
            findings,
            alerts,
            tokens,
            cost_micros,
            latency,
            upstream_latency,
            last_logged: Default::default(),
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Counts one guard's verdict on a request (its outcome; the findings of a flag or block)
    /// and alerts when the guard could not decide. Returns whether it flagged or blocked.
    pub fn observe_guard(&self, g: &GuardRecord) -> bool {
        if matches!(g.outcome, Outcome::ErrorOpen | Outcome::ErrorClosed) {
            let how = if g.outcome == Outcome::ErrorOpen {
                "failed open"
            } else {
                "failed closed"
            };
            self.alert(
                "guard_unavailable",
                &format!(
                    "guard '{}' could not decide and {how}: {}",
                    g.guard,
                    g.error.as_deref().unwrap_or("no detail")
                ),
            );
        }
        let flagged = matches!(
            g.outcome,
            Outcome::Flag | Outcome::Block | Outcome::WouldBlock
        );
        if flagged {
            for f in &g.findings {
                self.findings
                    .get_or_create(&FindingLabels {
                        guard: g.guard.clone(),
                        kind: f.kind.clone(),
                    })
                    .inc();
            }
        }
        self.guard_outcomes
            .get_or_create(&GuardLabels {
                guard: g.guard.clone(),
                direction: format!("{:?}", g.direction).to_lowercase(),
                outcome: serde_json::to_value(g.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                mode: g.mode.as_str(),
            })
            .inc();
        flagged
    }

    /// Raises an alert: a WARN line operators can route, and a counter they can graph.
    pub fn alert(&self, kind: &str, detail: &str) {
        let now = std::time::Instant::now();
        let log = self.last_logged.lock().map_or(true, |mut last| {
            let due = last
                .get(kind)
                .is_none_or(|t| now.duration_since(*t) >= ALERT_LOG_EVERY);
            if due {
                last.insert(kind.to_owned(), now);
            }
            due
        });
        if log {
            tracing::warn!(alert = kind, "{detail}");
        }
        self.alerts
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_count_and_render() {
        let m = Metrics::default();
        m.alert("limits_backend_down", "redis unreachable");
        m.alert(
            "limits_backend_down",
            "still unreachable (counted, not logged again)",
        );
        m.requests
            .get_or_create(&RequestLabels {
                route: "/v1/chat/completions".into(),
                status: 200,
                outcome: "allowed".into(),
            })
            .inc();
        let text = m.render();
        assert!(
            text.contains("portcullis_alerts_total{kind=\"limits_backend_down\"} 2"),
            "{text}"
        );
        assert!(text.contains("portcullis_requests_total{route=\"/v1/chat/completions\",status=\"200\",outcome=\"allowed\"} 1"), "{text}");
    }
}
