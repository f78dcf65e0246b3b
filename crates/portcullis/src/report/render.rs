//! The report as Markdown (for a repository or a ticket) and as one self-contained HTML page
//! (inline styles, no scripts or external assets) that prints well.

use super::Report;
use std::fmt::Write;

fn yes(done: bool) -> &'static str {
    if done { "done" } else { "NOT done" }
}

/// Markdown.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Portcullis compliance report\n");
    let _ = writeln!(
        s,
        "Generated {} from `{}`; traffic over the last {} days.\n",
        r.generated, r.config, r.days
    );
    let _ = writeln!(
        s,
        "## Pre-production checklist\n\n| item | status | evidence |\n|---|---|---|"
    );
    for c in &r.checklist {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            c.item,
            yes(c.done),
            cell(&c.evidence)
        );
    }
    let _ = writeln!(
        s,
        "\n## Active controls\n\n| layer | control | mode | settings |\n|---|---|---|---|"
    );
    for c in &r.controls {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            c.layer,
            c.name,
            c.mode,
            cell(&c.settings)
        );
    }
    let t = &r.traffic;
    let _ = writeln!(
        s,
        "\n## Traffic\n\n{} requests, ${:.4} spent.{}\n",
        t.requests,
        t.spend_usd,
        capped_note(t)
    );
    if !t.outcomes.is_empty() {
        let _ = writeln!(s, "| outcome | requests |\n|---|---|");
    }
    for (k, v) in &t.outcomes {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    if !guards(r).is_empty() {
        let _ = writeln!(
            s,
            "\n| guard | blocked | would have blocked (monitor) |\n|---|---|---|"
        );
    }
    for g in guards(r) {
        let _ = writeln!(
            s,
            "| {g} | {} | {} |",
            t.blocks_by_guard.get(&g).unwrap_or(&0),
            t.would_block_by_guard.get(&g).unwrap_or(&0)
        );
    }
    if !r.shadow.is_empty() {
        let _ = writeln!(
            s,
            "\n## Shadow precision\n\n| guard | labelled | precision | 95 % interval |\n|---|---|---|---|"
        );
        for x in &r.shadow {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                x.guard,
                x.labelled,
                x.precision.map_or("-".into(), |p| format!("{p:.3}")),
                x.interval
                    .map_or("-".into(), |(a, b)| format!("{a:.3}–{b:.3}"))
            );
        }
    }
    let _ = writeln!(s, "\n## Alerts\n");
    if r.alerts.is_empty() {
        let _ = writeln!(s, "No alerts in the period.");
    } else {
        let _ = writeln!(
            s,
            "| alert | count | subjects | first | last | latest message |\n|---|---|---|---|---|---|"
        );
    }
    for row in alert_rows(r) {
        let _ = writeln!(s, "| {} |", row.map(|c| cell(&c)).join(" | "));
    }
    let _ = writeln!(s, "\n## Spend against budgets\n");
    if r.spend.budgets.is_empty() {
        let _ = writeln!(
            s,
            "No budgets configured (`[limits]` budget_daily_usd / budget_monthly_usd)."
        );
    } else {
        let _ = writeln!(
            s,
            "| scope | budget | period | spent | used | spent in the report's days |\n|---|---|---|---|---|---|"
        );
    }
    for row in budget_rows(r) {
        let _ = writeln!(s, "| {} |", row.map(|c| cell(&c)).join(" | "));
    }
    if r.spend.more_budgets > 0 {
        let _ = writeln!(
            s,
            "\n{} more budget lines, less used, are not listed.",
            r.spend.more_budgets
        );
    }
    if !r.spend.top.is_empty() {
        let _ = writeln!(
            s,
            "\nTop spenders over the period:\n\n| by | name | requests | spent |\n|---|---|---|---|"
        );
    }
    for row in top_rows(r) {
        let _ = writeln!(s, "| {} |", row.map(|c| cell(&c)).join(" | "));
    }
    let _ = writeln!(s, "\n## Policy changes\n");
    if r.history.events.is_empty() {
        let _ = writeln!(s, "No guard changed mode or rollout share in the period.");
    } else {
        let _ = writeln!(
            s,
            "| time | guard | from | to | how | who |\n|---|---|---|---|---|---|"
        );
    }
    for row in history_rows(r) {
        let _ = writeln!(s, "| {} |", row.map(|c| cell(&c)).join(" | "));
    }
    let _ = writeln!(s, "\n## Incident runbook\n");
    if r.contacts.is_empty() {
        let _ = writeln!(
            s,
            "**No contacts configured**: add `[incident] contacts` so the runbook says whom to call.\n"
        );
    } else {
        let _ = writeln!(
            s,
            "Who to call, in this order:\n\n| name | role | reach |\n|---|---|---|"
        );
        for c in &r.contacts {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                cell(&c.name),
                cell(&c.role),
                cell(&c.reach)
            );
        }
        let _ = writeln!(s);
    }
    for (what, cmd) in &r.runbook {
        let _ = writeln!(s, "- **{what}**: `{cmd}`");
    }
    s
}

fn money(usd: f64) -> String {
    format!("${usd:.4}")
}

fn alert_rows(r: &Report) -> impl Iterator<Item = [String; 6]> + '_ {
    r.alerts.iter().map(|a| {
        [
            a.kind.clone(),
            a.count.to_string(),
            a.subjects.to_string(),
            crate::auth::utc(a.first_ms),
            crate::auth::utc(a.last_ms),
            a.sample.clone(),
        ]
    })
}

fn budget_rows(r: &Report) -> impl Iterator<Item = [String; 6]> + '_ {
    r.spend.budgets.iter().map(|b| {
        [
            b.scope.clone(),
            format!("{} per {}", money(b.limit_usd), b.window),
            b.period.clone(),
            money(b.spent_usd),
            format!("{:.1} %", b.share * 100.0),
            money(b.report_spend_usd),
        ]
    })
}

fn top_rows(r: &Report) -> impl Iterator<Item = [String; 4]> + '_ {
    r.spend.top.iter().map(|t| {
        [
            t.by.to_owned(),
            t.name.clone(),
            t.requests.to_string(),
            money(t.spend_usd),
        ]
    })
}

fn history_rows(r: &Report) -> impl Iterator<Item = [String; 6]> + '_ {
    r.history.events.iter().map(|e| {
        [
            crate::auth::utc(e.time_ms),
            e.guard.clone(),
            e.from.clone(),
            e.to.clone(),
            e.how.clone(),
            e.who.clone(),
        ]
    })
}

fn capped_note(t: &super::Traffic) -> String {
    if t.capped {
        format!(
            " Only the newest {} records were read; use a shorter --days for the whole period.",
            super::MAX_RECORDS
        )
    } else {
        String::new()
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn guards(r: &Report) -> Vec<String> {
    let t = &r.traffic;
    let mut g: Vec<String> = t
        .blocks_by_guard
        .keys()
        .chain(t.would_block_by_guard.keys())
        .cloned()
        .collect();
    g.sort();
    g.dedup();
    g
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;max-width:960px;margin:2em auto;color:#111}\
table{border-collapse:collapse;width:100%;margin:.5em 0 1.5em}th,td{border:1px solid #bbb;padding:4px 6px;text-align:left;vertical-align:top}\
th{background:#eee}.done{color:#075e07;font-weight:600}.todo{color:#a30000;font-weight:600}code{font-size:12px}\
@media print{body{margin:0;max-width:none}h2{page-break-after:avoid}tr{page-break-inside:avoid}}";

fn table(s: &mut String, head: &[&str], rows: Vec<Vec<String>>) {
    s.push_str("<table><tr>");
    for h in head {
        let _ = write!(s, "<th>{}</th>", escape(h));
    }
    s.push_str("</tr>");
    for row in rows {
        s.push_str("<tr>");
        for c in row {
            let _ = write!(s, "<td>{c}</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>\n");
}

/// Rows of plain text, escaped for HTML cells.
fn escaped<const N: usize>(rows: impl Iterator<Item = [String; N]>) -> Vec<Vec<String>> {
    rows.map(|row| row.iter().map(|c| escape(c)).collect())
        .collect()
}

/// One self-contained HTML page.
pub fn html(r: &Report) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Portcullis compliance report</title><style>{STYLE}</style></head><body>\n<h1>Portcullis compliance report</h1><p>Generated {} from <code>{}</code>; traffic over the last {} days.</p>\n",
        escape(&r.generated),
        escape(&r.config),
        r.days
    );
    s.push_str("<h2>Pre-production checklist</h2>");
    let rows = r
        .checklist
        .iter()
        .map(|c| {
            let class = if c.done { "done" } else { "todo" };
            vec![
                escape(c.item),
                format!("<span class=\"{class}\">{}</span>", yes(c.done)),
                escape(&c.evidence),
            ]
        })
        .collect();
    table(&mut s, &["item", "status", "evidence"], rows);
    s.push_str("<h2>Active controls</h2>");
    let rows = r
        .controls
        .iter()
        .map(|c| {
            vec![
                escape(c.layer),
                escape(&c.name),
                escape(&c.mode),
                escape(&c.settings),
            ]
        })
        .collect();
    table(&mut s, &["layer", "control", "mode", "settings"], rows);
    let t = &r.traffic;
    let _ = write!(
        s,
        "<h2>Traffic</h2><p>{} requests, ${:.4} spent.{}</p>",
        t.requests,
        t.spend_usd,
        escape(&capped_note(t))
    );
    let rows = t
        .outcomes
        .iter()
        .map(|(k, v)| vec![escape(k), v.to_string()])
        .collect();
    table(&mut s, &["outcome", "requests"], rows);
    let rows = guards(r)
        .into_iter()
        .map(|g| {
            vec![
                escape(&g),
                t.blocks_by_guard.get(&g).unwrap_or(&0).to_string(),
                t.would_block_by_guard.get(&g).unwrap_or(&0).to_string(),
            ]
        })
        .collect();
    table(
        &mut s,
        &["guard", "blocked", "would have blocked (monitor)"],
        rows,
    );
    if !r.shadow.is_empty() {
        s.push_str("<h2>Shadow precision</h2>");
        let rows = r
            .shadow
            .iter()
            .map(|x| {
                vec![
                    escape(&x.guard),
                    x.labelled.to_string(),
                    x.precision.map_or("-".into(), |p| format!("{p:.3}")),
                    x.interval
                        .map_or("-".into(), |(a, b)| format!("{a:.3}–{b:.3}")),
                ]
            })
            .collect();
        table(
            &mut s,
            &["guard", "labelled", "precision", "95 % interval"],
            rows,
        );
    }
    s.push_str("<h2>Alerts</h2>");
    if r.alerts.is_empty() {
        s.push_str("<p>No alerts in the period.</p>");
    } else {
        table(
            &mut s,
            &[
                "alert",
                "count",
                "subjects",
                "first",
                "last",
                "latest message",
            ],
            escaped(alert_rows(r)),
        );
    }
    s.push_str("<h2>Spend against budgets</h2>");
    if r.spend.budgets.is_empty() {
        s.push_str("<p>No budgets configured.</p>");
    } else {
        table(
            &mut s,
            &[
                "scope",
                "budget",
                "period",
                "spent",
                "used",
                "spent in the report's days",
            ],
            escaped(budget_rows(r)),
        );
    }
    if r.spend.more_budgets > 0 {
        let _ = write!(
            s,
            "<p>{} more budget lines, less used, are not listed.</p>",
            r.spend.more_budgets
        );
    }
    if !r.spend.top.is_empty() {
        s.push_str("<p>Top spenders over the period:</p>");
        table(
            &mut s,
            &["by", "name", "requests", "spent"],
            escaped(top_rows(r)),
        );
    }
    s.push_str("<h2>Policy changes</h2>");
    if r.history.events.is_empty() {
        s.push_str("<p>No guard changed mode or rollout share in the period.</p>");
    } else {
        table(
            &mut s,
            &["time", "guard", "from", "to", "how", "who"],
            escaped(history_rows(r)),
        );
    }
    s.push_str("<h2>Incident runbook</h2>");
    if r.contacts.is_empty() {
        s.push_str("<p class=\"todo\">No contacts configured: add <code>[incident] contacts</code> so the runbook says whom to call.</p>");
    } else {
        s.push_str("<p>Who to call, in this order:</p>");
        let rows = r
            .contacts
            .iter()
            .map(|c| vec![escape(&c.name), escape(&c.role), escape(&c.reach)])
            .collect();
        table(&mut s, &["name", "role", "reach"], rows);
    }
    s.push_str("<ul>");
    for (what, cmd) in &r.runbook {
        let _ = write!(
            s,
            "<li><b>{}</b>: <code>{}</code></li>",
            escape(what),
            escape(cmd)
        );
    }
    s.push_str("</ul></body></html>\n");
    s
}
