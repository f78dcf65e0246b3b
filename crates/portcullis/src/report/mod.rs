//! The compliance report (`portcullis report`): what the live config turns on, layer by
//! layer; the pre-production checklist with each item's status derived from recorded facts
//! (red-team runs, rollout settings and their history, review labels, limits, contacts); the
//! period's traffic, blocks, alerts, spend against budgets and policy changes from the store
//! ([`period`]); and the incident runbook headed by the configured contacts. Rendered by
//! [`render`].

pub mod period;
pub mod render;

use crate::config::{Config, Contact};
use crate::review::stats;
use period::{History, Spend};
use portcullis_core::{Mode, Pipeline, Stage};
use portcullis_store::{AlertSummary, AuditFilter, Store, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;

/// One active control: a guard stage, or a gateway-wide one (limits, audit, kill switch).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Control {
    /// `input`, `model`, `output` or `gateway`.
    pub layer: &'static str,
    pub name: String,
    /// `enforce`, `monitor`, or `enforce 10% by user, monitor the rest`.
    pub mode: String,
    /// Its thresholds and settings as configured (the file's own keys; others are defaults).
    pub settings: String,
}

/// One checklist item and whether the facts say it is done.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckItem {
    pub item: &'static str,
    pub done: bool,
    /// The facts the status rests on.
    pub evidence: String,
}

/// The period's traffic from the audit store.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Traffic {
    pub requests: u64,
    /// Requests per outcome (`allowed`, `flagged`, `blocked`, `failed`).
    pub outcomes: BTreeMap<String, u64>,
    /// Requests each guard refused.
    pub blocks_by_guard: BTreeMap<String, u64>,
    /// Requests each guard would have refused in monitor mode.
    pub would_block_by_guard: BTreeMap<String, u64>,
    pub spend_usd: f64,
    /// The period held more records than the report reads ([`MAX_RECORDS`]); the figures
    /// cover the newest of them only.
    pub capped: bool,
}

/// Most audit records one report reads.
pub const MAX_RECORDS: i64 = 100_000;

/// Shadow precision of a guard with labels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shadow {
    pub guard: String,
    pub labelled: u64,
    pub precision: Option<f64>,
    pub interval: Option<(f64, f64)>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub generated: String,
    pub config: String,
    pub days: u32,
    pub controls: Vec<Control>,
    pub checklist: Vec<CheckItem>,
    pub traffic: Traffic,
    pub shadow: Vec<Shadow>,
    /// The period's alerts per kind, most frequent first.
    pub alerts: Vec<AlertSummary>,
    /// Spend against the configured budgets, and the top spenders.
    pub spend: Spend,
    /// The period's changes of guards' modes and rollout shares.
    pub history: History,
    /// Who to call, in order (`[incident] contacts`): the head of the runbook.
    pub contacts: Vec<Contact>,
    /// Incident steps: (situation, command).
    pub runbook: Vec<(String, String)>,
}

/// Guards that govern what reaches the model rather than the text itself.
const MODEL_LAYER: [&str; 2] = ["params", "moderation"];

fn stage_control(stage: &Stage, output: bool, config: &Config) -> Control {
    let name = stage.guard.name().to_owned();
    let layer = if output {
        "output"
    } else if MODEL_LAYER.contains(&name.as_str()) {
        "model"
    } else {
        "input"
    };
    let mode = match (stage.mode, stage.rollout) {
        (Mode::Enforce, Some(r)) => format!(
            "enforce {}% by {}, monitor the rest",
            r.percent,
            match r.by {
                portcullis_core::RolloutBy::Key => "key",
                portcullis_core::RolloutBy::User => "user",
            }
        ),
        (m, _) => m.as_str().to_owned(),
    };
    let mut settings = file_settings(config, &name);
    let on_error = serde_json::to_value(stage.on_error).unwrap_or_default();
    settings.push(format!("on_error = {}", on_error.as_str().unwrap_or("?")));
    if let Some(t) = stage.timeout {
        settings.push(format!("timeout_ms = {}", t.as_millis()));
    }
    Control {
        layer,
        name,
        mode,
        settings: settings.join("; "),
    }
}

/// The keys the config file sets in `[section]` (not mode/rollout, which the mode shows).
fn file_settings(config: &Config, section: &str) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(&config.source) else {
        return Vec::new();
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let Some(toml::Value::Table(t)) = table.get(section) else {
        return Vec::new();
    };
    t.iter()
        .filter(|(k, _)| {
            !["mode", "rollout", "rollout_by", "on_error", "timeout_ms"].contains(&k.as_str())
        })
        .map(|(k, v)| format!("{k} = {v}"))
        .collect()
}

/// The controls `pipeline` (built from `config`) and the gateway-wide settings turn on.
pub fn controls(config: &Config, pipeline: &Pipeline) -> Vec<Control> {
    let mut out: Vec<Control> = Vec::new();
    for s in pipeline
        .input_stages()
        .iter()
        .chain(pipeline.beside_stages())
    {
        out.push(stage_control(s, false, config));
    }
    for s in pipeline.output_stages() {
        out.push(stage_control(s, true, config));
    }
    let l = &config.limits;
    let mut scopes: Vec<String> = Vec::new();
    for (name, p) in [
        ("global", &l.global),
        ("per_key", &l.per_key),
        ("per_user", &l.per_user),
    ] {
        if !p.is_empty() {
            scopes.push(format!(
                "{name} {}",
                serde_json::to_string(p).unwrap_or_default()
            ));
        }
    }
    for (kind, map) in [("users", &l.users), ("teams", &l.teams)] {
        for (name, p) in map.iter().filter(|(_, p)| !p.is_empty()) {
            scopes.push(format!(
                "{kind}.{name} {}",
                serde_json::to_string(p).unwrap_or_default()
            ));
        }
    }
    if !scopes.is_empty() {
        out.push(Control {
            layer: "gateway",
            name: "limits and budgets".into(),
            mode: "enforce".into(),
            settings: scopes.join("; "),
        });
    }
    out.push(Control {
        layer: "gateway",
        name: "audit log".into(),
        mode: "enforce".into(),
        settings: format!("store {}", crate::http::redact_url(&config.store.url)),
    });
    out.push(Control {
        layer: "gateway",
        name: "kill switch".into(),
        mode: "enforce".into(),
        settings: match &config.admin.token_env {
            Some(v) => format!("CLI and admin API (token in ${v})"),
            None => "CLI (admin API off)".into(),
        },
    });
    out
}

/// Gathers the report for the last `days` days.
pub async fn gather(
    config: &Config,
    pipeline: &Pipeline,
    store: &Store,
    days: u32,
    now_ms: i64,
) -> Result<Report, StoreError> {
    let since = now_ms - i64::from(days.max(1)) * 86_400_000;
    let controls = controls(config, pipeline);
    let records = store
        .audit_query(&AuditFilter {
            since_ms: Some(since),
            limit: Some(MAX_RECORDS),
            ..AuditFilter::default()
        })
        .await?;
    let mut traffic = Traffic {
        requests: records.len() as u64,
        capped: records.len() as i64 >= MAX_RECORDS,
        ..Traffic::default()
    };
    let mut cost: i64 = 0;
    for r in &records {
        *traffic.outcomes.entry(r.outcome.clone()).or_default() += 1;
        cost += r.cost_micros;
        let mut blocked: Vec<&str> = Vec::new();
        let mut shadowed: Vec<&str> = Vec::new();
        for v in r.verdicts.as_array().into_iter().flatten() {
            let g = v["guard"].as_str().unwrap_or_default();
            match v["outcome"].as_str() {
                Some("block") if !blocked.contains(&g) => blocked.push(g),
                Some("would_block") if !shadowed.contains(&g) => shadowed.push(g),
                _ => {}
            }
        }
        for g in blocked {
            *traffic.blocks_by_guard.entry(g.to_owned()).or_default() += 1;
        }
        for g in shadowed {
            *traffic
                .would_block_by_guard
                .entry(g.to_owned())
                .or_default() += 1;
        }
    }
    traffic.spend_usd = cost as f64 / 1e6;
    let judged = store.judged_records(since, true).await?;
    let labels = store.review_labels(since).await?;
    let shadow: Vec<Shadow> = stats::tally(&judged, &labels)
        .into_values()
        .filter(|s| s.labelled() > 0)
        .map(|s| Shadow {
            labelled: s.labelled(),
            precision: s.precision(),
            interval: s.precision_interval(),
            guard: s.guard,
        })
        .collect();
    let runs = store.redteam_runs(1).await?;
    let history = period::history(store, since).await?;
    let checklist = checklist(
        config,
        &controls,
        Facts {
            last_run: runs.first(),
            shadow: &shadow,
            history: &history,
        },
    );
    Ok(Report {
        generated: crate::auth::utc(now_ms),
        config: config.source.clone(),
        days,
        controls,
        checklist,
        traffic,
        shadow,
        alerts: period::alerts(store, since).await?,
        spend: period::spend(config, store, since, now_ms).await?,
        history,
        contacts: config.incident.contacts.clone(),
        runbook: runbook(config),
    })
}

fn rate(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{:.1} %", x * 100.0))
}

/// The recorded facts the checklist rests on, besides the config and its controls.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The latest red-team run.
    pub last_run: Option<&'a portcullis_store::RedteamRun>,
    /// Labelled shadow precision per guard.
    pub shadow: &'a [Shadow],
    /// The period's policy changes, and each guard's latest.
    pub history: &'a History,
}

/// The brief's pre-production checklist, each item's status from facts.
pub fn checklist(config: &Config, controls: &[Control], facts: Facts<'_>) -> Vec<CheckItem> {
    let shadow = facts.shadow;
    let redteam = match facts.last_run {
        Some(r) => CheckItem {
            item: "Tested against jailbreak prompts",
            done: r.pass,
            evidence: format!(
                "red-team run {} at {}: {} attacks, block rate {}, {} benign, false-positive rate {}; {}",
                r.id,
                crate::auth::utc(r.time_ms),
                r.attacks,
                rate(r.block_rate),
                r.benign,
                rate(r.false_positive_rate),
                if r.pass {
                    "met its thresholds"
                } else {
                    "did NOT meet its thresholds"
                }
            ),
        },
        None => CheckItem {
            item: "Tested against jailbreak prompts",
            done: false,
            evidence: "no red-team run recorded; run `portcullis redteam --config …`".into(),
        },
    };
    let limited = limited_release(controls, facts.history);
    let measured = CheckItem {
        item: "Shadow verdicts reviewed",
        done: !shadow.is_empty(),
        evidence: if shadow.is_empty() {
            "no labelled would-have-blocked verdicts in the period; `portcullis review next`".into()
        } else {
            shadow
                .iter()
                .map(|s| {
                    format!(
                        "{}: {} labels, precision {}",
                        s.guard,
                        s.labelled,
                        rate(s.precision)
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        },
    };
    let limits = controls.iter().find(|c| c.name == "limits and budgets");
    vec![
        CheckItem {
            item: "Safety measures documented",
            done: true,
            evidence: format!("this report, from {}", config.source),
        },
        redteam,
        limited,
        measured,
        CheckItem {
            item: "Rate limits and budgets set",
            done: limits.is_some(),
            evidence: limits.map_or("no [limits] policy: callers are unlimited".into(), |c| {
                c.settings.clone()
            }),
        },
        incident_plan(config),
    ]
}

/// "Limited release": the period's policy changes per guard (from the history), then the
/// guards staged now that did not change in the period, with since when.
fn limited_release(controls: &[Control], history: &History) -> CheckItem {
    let (mut lines, mut done) = period::timelines(history);
    let changed: Vec<&str> = history.events.iter().map(|e| e.guard.as_str()).collect();
    for c in controls
        .iter()
        .filter(|c| c.mode.contains('%') || c.mode == "monitor")
        .filter(|c| !changed.contains(&c.name.as_str()))
    {
        let since = history.latest.get(&c.name).map_or_else(
            || " (no change recorded)".to_owned(),
            |e| format!(" since {}", crate::auth::utc(e.time_ms)),
        );
        let line = format!("{}: {}{since}", c.name, c.mode);
        if !lines.contains(&line) {
            lines.push(line);
        }
        done = true;
    }
    CheckItem {
        item: "Limited release (a share of users, under watch)",
        done,
        evidence: if lines.is_empty() {
            "every guard enforces for everyone and no staged release is recorded; set `rollout = PERCENT` or `mode = \"monitor\"`"
                .into()
        } else {
            lines.join("; ")
        },
    }
}

/// "Incident plan": done when `[incident] contacts` says whom to call.
fn incident_plan(config: &Config) -> CheckItem {
    let contacts = &config.incident.contacts;
    CheckItem {
        item: "Incident plan",
        done: !contacts.is_empty(),
        evidence: if contacts.is_empty() {
            "no one to call: add `[incident] contacts = [{ name, role, reach }]`; the runbook below has the commands only".into()
        } else {
            format!(
                "who to call: {}; runbook below: kill switch, lock-down, key revocation, demotion",
                contacts
                    .iter()
                    .map(|c| format!("{} ({}, {})", c.name, c.role, c.reach))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    }
}

/// The incident runbook, from the kill-switch and key commands, with this config.
pub fn runbook(config: &Config) -> Vec<(String, String)> {
    let c = format!(" --config {}", config.source);
    let mut steps = vec![
        (
            "A key leaked".to_owned(),
            format!("portcullis keys revoke KEY_ID{c}"),
        ),
        (
            "A key must change but clients need time".into(),
            format!("portcullis keys rotate KEY_ID --grace 1h{c}"),
        ),
        (
            "One user or team is abusing the gateway".into(),
            format!("portcullis kill user|team ID --reason \"…\"{c}"),
        ),
        (
            "A model misbehaves".into(),
            format!("portcullis kill model NAME --reason \"…\"{c}"),
        ),
        (
            "Stop everything now".into(),
            format!("portcullis kill all --reason \"…\"{c}"),
        ),
        (
            "See and lift what is stopped".into(),
            format!("portcullis kill list{c}  /  portcullis unkill SCOPE [ID]{c}"),
        ),
        (
            "A newly enforced guard refuses good traffic".into(),
            format!("portcullis demote GUARD{c}, then kill -HUP <pid>"),
        ),
        (
            "Review what happened".into(),
            format!("portcullis audit query --outcome blocked{c}"),
        ),
    ];
    if let Some(v) = &config.admin.token_env {
        steps.push((
            "Without shell access".into(),
            format!("POST /admin/kill {{\"scope\":\"all\",\"reason\":\"…\"}} with Authorization: Bearer ${v}"),
        ));
    }
    steps
}

#[cfg(test)]
mod tests;
