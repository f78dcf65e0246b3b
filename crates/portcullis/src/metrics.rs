//! Prometheus metrics (`GET /metrics`) and alerts: what operators watch, in one registry.
//! An alert is a WARN log line with `alert=<kind>` plus a counter, so both log pipelines and
//! Prometheus rules can page on it.

use portcullis_core::{GuardRecord, Outcome};
use portcullis_store::AuditRecord;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

/// Labels of `portcullis_requests_total`: what was asked of which route and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub model: String,
    pub status: u16,
    pub outcome: String,
}

/// Labels of `portcullis_guard_verdicts_total`: one guard's verdict.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GuardLabels {
    pub guard: String,
    pub direction: String,
    pub action: String,
    /// The mode the guard ran in for the request (`enforce`, or `monitor` — configured, or
    /// outside a rollout's share).
    pub mode: &'static str,
}

/// Labels of `portcullis_guard_duration_seconds`: which guard, on which side of the model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GuardTimeLabels {
    pub guard: String,
    pub direction: String,
}

/// Labels of `portcullis_findings_total`: what a guard found.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    pub guard: String,
    pub kind: String,
}

/// Labels of `portcullis_alerts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

/// Labels of `portcullis_tokens_total`: `direction` is `input`, `output` or `cached_input`
/// (the part of the input the provider served from its cache).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub model: String,
    pub direction: String,
}

/// Labels of the per-model cost counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
}

/// Labels of the latency histograms and of the error and refusal counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

/// Labels of `portcullis_upstream_errors_total` and `portcullis_limit_refusals_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub route: String,
    pub code: String,
}

/// Labels of `portcullis_backend_up`: `store` (keys, audit, ledger) or `limits` (Redis or memory).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: String,
}

/// A latency histogram family: 0.5 ms to about 65 s in doublings.
type Latency<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub guard_verdicts: Family<GuardLabels, Counter>,
    pub findings: Family<FindingLabels, Counter>,
    pub alerts: Family<KindLabels, Counter>,
    pub tokens: Family<TokenLabels, Counter>,
    /// Spend in US dollars (the base unit), by served model.
    pub cost_usd: Family<ModelLabels, Counter<f64, AtomicU64>>,
    pub latency: Latency<RouteLabels>,
    pub upstream_latency: Latency<RouteLabels>,
    pub first_token: Latency<RouteLabels>,
    pub guard_latency: Latency<GuardTimeLabels>,
    pub upstream_errors: Family<CodeLabels, Counter>,
    pub limit_refusals: Family<CodeLabels, Counter>,
    pub backend_up: Family<BackendLabels, Gauge>,
    pub audit: crate::spool_watch::AuditGauges,
    pub alert_deliveries: crate::notify::Deliveries,
    /// Where alerts go beyond the log and the counter (set once the runtime is up).
    notifier: std::sync::OnceLock<crate::notify::Notifier>,
    /// Model names seen so far as label values (clients choose the name: see
    /// [`MAX_MODEL_LABELS`]).
    models: std::sync::Mutex<std::collections::HashSet<String>>,
    /// When each alert kind was last logged: during an outage the counter counts every
    /// event, the log says so once per [`ALERT_LOG_EVERY`].
    last_logged: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// The alert kinds the gateway raises, exported at 0 from the start so that rules on
/// `increase(portcullis_alerts_total[…])` see the first one.
pub const ALERT_KINDS: [&str; 12] = [
    "audit_spool_growing",
    "budget_soft_limit",
    "error_rate",
    "guard_unavailable",
    "key_store_unavailable",
    "ledger_unavailable",
    "limits_backend_down",
    "response_owner_unrecorded",
    "response_store_unavailable",
    "token_spike",
    "upstream_latency",
    "user_flag_burst",
];

/// Distinct model names kept as label values; later ones are counted as `other`. The client
/// names the model, so without a bound one caller could grow every series without limit.
pub const MAX_MODEL_LABELS: usize = 200;

/// Longest model name kept as a label value.
const MAX_MODEL_LABEL_LEN: usize = 100;

/// Shortest gap between two log lines of one alert kind.
pub const ALERT_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("portcullis");
        let requests = Family::<RequestLabels, Counter>::default();
        r.register(
            "requests",
            "Requests by route, model asked, status and outcome",
            requests.clone(),
        );
        let guard_verdicts = Family::<GuardLabels, Counter>::default();
        r.register(
            "guard_verdicts",
            "Guard verdicts by guard, direction, action and the mode the guard ran in (enforce, or monitor: configured or outside a rollout's share)",
            guard_verdicts.clone(),
        );
        let findings = Family::<FindingLabels, Counter>::default();
        r.register(
            "findings",
            "What flagged or blocked requests and answers held (moderation categories, attack signals, entity types), by guard",
            findings.clone(),
        );
        let alerts = Family::<KindLabels, Counter>::default();
        r.register("alerts", "Alerts raised, by kind", alerts.clone());
        for kind in ALERT_KINDS {
            let _ = alerts.get_or_create(&KindLabels { kind: kind.into() });
        }
        let tokens = Family::<TokenLabels, Counter>::default();
        r.register(
            "tokens",
            "Tokens used upstream, by model and direction (input, output, cached_input)",
            tokens.clone(),
        );
        let cost_usd = Family::<ModelLabels, Counter<f64, AtomicU64>>::default();
        r.register_with_unit(
            "cost",
            "Spend by served model",
            Unit::Other("usd".into()),
            cost_usd.clone(),
        );
        let histogram =
            || -> Latency<RouteLabels> { Family::new_with_constructor(latency_histogram) };
        let latency = histogram();
        r.register_with_unit(
            "request_duration",
            "Time from request to last byte, by route",
            Unit::Seconds,
            latency.clone(),
        );
        let upstream_latency = histogram();
        r.register_with_unit(
            "upstream_duration",
            "Time from the upstream call to its first byte (its answer, or a stream's first event), by route",
            Unit::Seconds,
            upstream_latency.clone(),
        );
        let first_token = histogram();
        r.register_with_unit(
            "time_to_first_token",
            "Streamed requests: time from the upstream call to its first event, by route",
            Unit::Seconds,
            first_token.clone(),
        );
        let guard_latency: Latency<GuardTimeLabels> =
            Family::new_with_constructor(latency_histogram);
        r.register_with_unit(
            "guard_duration",
            "Time each guard took on a request or answer",
            Unit::Seconds,
            guard_latency.clone(),
        );
        let upstream_errors = Family::<CodeLabels, Counter>::default();
        r.register(
            "upstream_errors",
            "Requests the upstream failed (unreachable, timed out, 5xx, broken stream), by route and error code",
            upstream_errors.clone(),
        );
        let limit_refusals = Family::<CodeLabels, Counter>::default();
        r.register(
            "limit_refusals",
            "Requests refused with 429 by a rate limit, budget or the in-flight bound, by route and error code",
            limit_refusals.clone(),
        );
        let backend_up = Family::<BackendLabels, Gauge>::default();
        r.register(
            "backend_up",
            "1 when the backend answered its ping at the last scrape, else 0 (store, limits)",
            backend_up.clone(),
        );
        let audit = crate::spool_watch::AuditGauges::register(&mut r);
        let alert_deliveries = crate::notify::Deliveries::default();
        r.register(
            "alert_deliveries",
            "Alert deliveries by sink (webhook, store, queue) and result (ok, retried, failed, dropped)",
            alert_deliveries.clone(),
        );
        for (sink, result) in [
            ("webhook", "ok"),
            ("webhook", "retried"),
            ("webhook", "failed"),
            ("store", "ok"),
            ("store", "failed"),
            ("queue", "dropped"),
        ] {
            let _ = alert_deliveries.get_or_create(&crate::notify::DeliveryLabels {
                sink: sink.into(),
                result: result.into(),
            });
        }
        Metrics {
            registry: r,
            requests,
            guard_verdicts,
            findings,
            alerts,
            tokens,
            cost_usd,
            latency,
            upstream_latency,
            first_token,
            guard_latency,
            upstream_errors,
            limit_refusals,
            backend_up,
            audit,
            alert_deliveries,
            notifier: Default::default(),
            models: Default::default(),
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
        let direction = format!("{:?}", g.direction).to_lowercase();
        self.guard_latency
            .get_or_create(&GuardTimeLabels {
                guard: g.guard.clone(),
                direction: direction.clone(),
            })
            .observe(g.micros as f64 / 1e6);
        self.guard_verdicts
            .get_or_create(&GuardLabels {
                guard: g.guard.clone(),
                direction,
                action: serde_json::to_value(g.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                mode: g.mode.as_str(),
            })
            .inc();
        flagged
    }

    /// Counts one finished request from its audit record: the request, its tokens and cost,
    /// its latencies, and whether the upstream failed it or a limit refused it.
    pub fn observe_request(&self, r: &AuditRecord) {
        let route = r.route.clone().unwrap_or_default();
        let model = self.model_label(r.model.as_deref().unwrap_or_default());
        self.requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                model: model.clone(),
                status: u16::try_from(r.status).unwrap_or(0),
                outcome: r.outcome.clone(),
            })
            .inc();
        for (direction, n) in [
            ("input", r.prompt_tokens),
            ("output", r.completion_tokens),
            ("cached_input", r.cached_tokens),
        ] {
            if n > 0 {
                self.tokens
                    .get_or_create(&TokenLabels {
                        model: model.clone(),
                        direction: direction.into(),
                    })
                    .inc_by(n.unsigned_abs());
            }
        }
        if r.cost_micros > 0 {
            self.cost_usd
                .get_or_create(&ModelLabels {
                    model: model.clone(),
                })
                .inc_by(r.cost_micros as f64 / 1e6);
        }
        let by_route = RouteLabels {
            route: route.clone(),
        };
        self.latency
            .get_or_create(&by_route)
            .observe(r.latency_ms as f64 / 1000.0);
        if let Some(ms) = r.upstream_ms {
            let secs = ms as f64 / 1000.0;
            self.upstream_latency.get_or_create(&by_route).observe(secs);
            if r.stream {
                self.first_token.get_or_create(&by_route).observe(secs);
            }
        }
        if let Some(code) = upstream_failure(r) {
            self.upstream_errors
                .get_or_create(&CodeLabels {
                    route: route.clone(),
                    code,
                })
                .inc();
        }
        if r.status == 429 {
            self.limit_refusals
                .get_or_create(&CodeLabels {
                    route,
                    code: r.error_code.clone().unwrap_or_default(),
                })
                .inc();
        }
    }

    /// The label value for `model`: itself while fewer than [`MAX_MODEL_LABELS`] names were
    /// seen (and it is short), else `other`.
    fn model_label(&self, model: &str) -> String {
        if model.len() > MAX_MODEL_LABEL_LEN {
            return "other".into();
        }
        let Ok(mut seen) = self.models.lock() else {
            return "other".into();
        };
        if seen.contains(model) {
            return model.to_owned();
        }
        if seen.len() >= MAX_MODEL_LABELS {
            return "other".into();
        }
        seen.insert(model.to_owned());
        model.to_owned()
    }

    /// Records whether `backend` answered its ping (refreshed on every scrape).
    pub fn backend(&self, backend: &str, up: bool) {
        self.backend_up
            .get_or_create(&BackendLabels {
                backend: backend.to_owned(),
            })
            .set(i64::from(up));
    }

    /// Sends alerts on to `notifier` too (webhook, store) from now on; the first call wins.
    pub fn deliver_to(&self, notifier: crate::notify::Notifier) {
        let _ = self.notifier.set(notifier);
    }

    /// Raises an alert about the gateway as a whole.
    pub fn alert(&self, kind: &str, detail: &str) {
        self.alert_about(kind, "gateway", detail, serde_json::Value::Null);
    }

    /// Raises an alert about `subject` (a user, the upstream, the gateway): a WARN line
    /// operators can route, a counter they can graph, and — once per cool-down per kind and
    /// subject — a stored alert and a webhook post.
    pub fn alert_about(&self, kind: &str, subject: &str, detail: &str, details: serde_json::Value) {
        let now = std::time::Instant::now();
        let log = self.last_logged.lock().map_or(true, |mut last| {
            let key = format!("{kind}\u{0}{subject}");
            let due = last
                .get(&key)
                .is_none_or(|t| now.duration_since(*t) >= ALERT_LOG_EVERY);
            if due {
                last.insert(key, now);
            }
            due
        });
        if log {
            tracing::warn!(alert = kind, subject, "{detail}");
        }
        self.alerts
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
        if let Some(n) = self.notifier.get() {
            n.raise(
                portcullis_store::StoredAlert {
                    time_ms: portcullis_store::now_ms(),
                    kind: kind.to_owned(),
                    subject: subject.to_owned(),
                    message: detail.to_owned(),
                    details,
                },
                now,
            );
        }
    }
}

/// The error code of a request the upstream failed: the gateway's `upstream_*` codes (the
/// provider unreachable, timed out, a broken stream), or a 5xx the provider answered itself.
fn upstream_failure(r: &AuditRecord) -> Option<String> {
    match r.error_code.as_deref() {
        Some(c) if c.starts_with("upstream_") => Some(c.to_owned()),
        _ if r.status >= 500 && r.upstream_ms.is_some() => Some(
            r.error_code
                .clone()
                .unwrap_or_else(|| format!("http_{}", r.status)),
        ),
        _ => None,
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
        let text = m.render();
        assert!(
            text.contains("portcullis_alerts_total{kind=\"limits_backend_down\"} 2"),
            "{text}"
        );
    }

    fn record(route: &str, status: i32, code: Option<&str>) -> AuditRecord {
        AuditRecord {
            request_id: "r".into(),
            time: 0,
            key_id: None,
            user: Some("alice".into()),
            team: None,
            model: Some("gpt-4o-mini".into()),
            route: Some(route.into()),
            status,
            outcome: if status < 400 { "allowed" } else { "failed" }.into(),
            error_code: code.map(str::to_owned),
            prompt_tokens: 12,
            completion_tokens: 30,
            cached_tokens: 0,
            cost_micros: 1_500,
            latency_ms: 250,
            upstream_ms: Some(200),
            stream: true,
            verdicts: serde_json::Value::Null,
            digest: String::new(),
            seq_id: String::new(),
            usage_estimated: false,
            ..AuditRecord::default()
        }
    }

    #[test]
    fn a_request_is_counted_in_base_units_under_conventional_names() {
        let m = Metrics::default();
        m.observe_request(&record("/v1/chat/completions", 200, None));
        m.observe_request(&record("/v1/chat/completions", 200, None));
        m.observe_request(&record(
            "/v1/chat/completions",
            502,
            Some("upstream_unreachable"),
        ));
        m.observe_request(&record("/v1/embeddings", 429, Some("rate_limit_exceeded")));
        m.backend("store", true);
        m.backend("limits", false);
        let text = m.render();
        for line in [
            "portcullis_requests_total{route=\"/v1/chat/completions\",model=\"gpt-4o-mini\",status=\"200\",outcome=\"allowed\"} 2",
            "portcullis_tokens_total{model=\"gpt-4o-mini\",direction=\"input\"} 48",
            "portcullis_tokens_total{model=\"gpt-4o-mini\",direction=\"output\"} 120",
            "portcullis_cost_usd_total{model=\"gpt-4o-mini\"} 0.006",
            "portcullis_request_duration_seconds_count{route=\"/v1/chat/completions\"} 3",
            "portcullis_time_to_first_token_seconds_count{route=\"/v1/embeddings\"} 1",
            "portcullis_upstream_errors_total{route=\"/v1/chat/completions\",code=\"upstream_unreachable\"} 1",
            "portcullis_limit_refusals_total{route=\"/v1/embeddings\",code=\"rate_limit_exceeded\"} 1",
            "portcullis_backend_up{backend=\"store\"} 1",
            "portcullis_backend_up{backend=\"limits\"} 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(
            !text.contains("upstream_errors_total{route=\"/v1/embeddings\""),
            "a limit refusal is no upstream error: {text}"
        );
    }

    #[test]
    fn client_chosen_model_names_cannot_grow_the_series_without_bound() {
        let m = Metrics::default();
        for i in 0..MAX_MODEL_LABELS + 50 {
            let mut r = record("/v1/chat/completions", 200, None);
            r.model = Some(format!("model-{i}"));
            m.observe_request(&r);
        }
        let mut long = record("/v1/chat/completions", 200, None);
        long.model = Some("x".repeat(500));
        m.observe_request(&long);
        let text = m.render();
        let series = text
            .lines()
            .filter(|l| l.starts_with("portcullis_requests_total{"))
            .count();
        assert_eq!(series, MAX_MODEL_LABELS + 1, "{text}");
        assert!(
            text.contains("portcullis_requests_total{route=\"/v1/chat/completions\",model=\"other\",status=\"200\",outcome=\"allowed\"} 51"),
            "{text}"
        );
        assert!(text.contains("model=\"model-0\""));
    }
}
