//! The report lists exactly what the config turns on, and its checklist follows the facts.

use super::*;
use std::time::Duration;

fn build(text: &str, dir: &std::path::Path) -> (Config, Pipeline) {
    let path = dir.join("gw.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(Some(&path)).unwrap();
    let upstream = crate::upstream::Upstream::new(
        "http://127.0.0.1:9/v1",
        None,
        Duration::from_secs(1),
        Duration::from_secs(1),
    )
    .unwrap();
    let pipeline = crate::guards::build(&config, &upstream).unwrap();
    (config, pipeline)
}

fn names(c: &[Control]) -> Vec<String> {
    c.iter()
        .map(|c| format!("{}:{}", c.layer, c.name))
        .collect()
}

#[test]
fn the_report_lists_exactly_the_controls_the_config_turns_on() {
    let dir = tempfile::tempdir().unwrap();
    let (config, pipeline) = build(
        "[pipeline]\ninput = [\"size\", \"injection\", \"moderation\"]\noutput = [\"pii\"]\n\
         [injection]\nrollout = 10\nrollout_by = \"user\"\n[moderation]\nmode = \"monitor\"\n\
         [size]\nmax_messages = 50\n[limits.per_key]\nrpm = 60\n",
        dir.path(),
    );
    let c = controls(&config, &pipeline);
    assert_eq!(
        names(&c),
        [
            "input:size",
            "input:injection",
            "model:moderation",
            "output:pii",
            "gateway:limits and budgets",
            "gateway:audit log",
            "gateway:kill switch"
        ]
    );
    assert_eq!(c[1].mode, "enforce 10% by user, monitor the rest");
    assert_eq!(c[2].mode, "monitor");
    assert!(
        c[0].settings.contains("max_messages = 50")
            && c[0].settings.contains("on_error = fail_open"),
        "{}",
        c[0].settings
    );
    assert!(c[4].settings.contains("\"rpm\":60"), "{}", c[4].settings);

    // Turned off, and no limits: gone from the report.
    let (config, pipeline) = build(
        "[pipeline]\ninput = [\"size\", \"injection\"]\noutput = []\n[injection]\nmode = \"off\"\n",
        dir.path(),
    );
    assert_eq!(
        names(&controls(&config, &pipeline)),
        ["input:size", "gateway:audit log", "gateway:kill switch"]
    );
}

fn run(pass: bool) -> portcullis_store::RedteamRun {
    portcullis_store::RedteamRun {
        id: "rt_1".into(),
        time_ms: 1_000,
        config_source: "gw.toml".into(),
        suites: "builtin".into(),
        attacks: 200,
        blocked: 180,
        flagged: 5,
        passed: 15,
        benign: 100,
        false_positives: 2,
        errors: 0,
        block_rate: Some(0.9),
        false_positive_rate: Some(0.02),
        categories: serde_json::json!({}),
        min_block_rate: Some(0.85),
        max_false_positive_rate: Some(0.05),
        pass,
    }
}

#[tokio::test]
async fn the_jailbreak_item_flips_when_a_passing_red_team_run_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (config, pipeline) = build("[injection]\nrollout = 25\n", dir.path());
    let store = portcullis_store::open(&format!("sqlite://{}/s.db", dir.path().display()))
        .await
        .unwrap();
    let item = |r: &Report, name: &str| {
        r.checklist
            .iter()
            .find(|c| c.item.starts_with(name))
            .cloned()
            .unwrap()
    };
    let now = portcullis_store::now_ms();
    let before = gather(&config, &pipeline, &store, 7, now).await.unwrap();
    let jb = item(&before, "Tested against jailbreak");
    assert!(
        !jb.done && jb.evidence.contains("no red-team run"),
        "{jb:?}"
    );
    let limited = item(&before, "Limited release");
    assert!(
        limited.done && limited.evidence.contains("injection: enforce 25% by key"),
        "{limited:?}"
    );
    assert!(!item(&before, "Rate limits").done);

    store.record_redteam_run(&run(false)).await.unwrap();
    let failed = gather(&config, &pipeline, &store, 7, now).await.unwrap();
    let jb = item(&failed, "Tested against jailbreak");
    assert!(!jb.done && jb.evidence.contains("did NOT meet"), "{jb:?}");

    let mut passing = run(true);
    passing.id = "rt_2".into();
    passing.time_ms = 2_000;
    store.record_redteam_run(&passing).await.unwrap();
    let after = gather(&config, &pipeline, &store, 7, now).await.unwrap();
    let jb = item(&after, "Tested against jailbreak");
    assert!(jb.done, "{jb:?}");
    assert!(
        jb.evidence.contains("block rate 90.0 %")
            && jb.evidence.contains("false-positive rate 2.0 %"),
        "{jb:?}"
    );

    let md = render::markdown(&after);
    assert!(
        md.contains("| Tested against jailbreak prompts | done |"),
        "{md}"
    );
    let html = render::html(&after);
    assert!(html.starts_with("<!doctype html>") && html.contains("@media print"));
    assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("src="));
    let json = serde_json::to_value(&after).unwrap();
    assert_eq!(json["checklist"][1]["done"], true);
}

#[test]
fn html_escapes_what_it_did_not_write() {
    assert_eq!(
        render::escape("<b a=\"x\">&'"),
        "&lt;b a=&quot;x&quot;&gt;&amp;&#39;"
    );
}

fn item(r: &Report, name: &str) -> CheckItem {
    r.checklist
        .iter()
        .find(|c| c.item.starts_with(name))
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn alerts_budgets_policy_changes_and_contacts_come_from_the_store_and_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let store = portcullis_store::open(&format!("sqlite://{}/s.db", dir.path().display()))
        .await
        .unwrap();
    let now = portcullis_store::now_ms();
    let limits = "[limits.teams.research]\nbudget_daily_usd = 10.0\n\
                  [limits.users.alice]\nbudget_monthly_usd = 100.0\n";
    let (bare, pipeline) = build(
        &format!("[moderation]\nrollout = 10\nrollout_by = \"user\"\n{limits}"),
        dir.path(),
    );

    // Nothing recorded, no contacts: empty sections, and no incident plan.
    let r = gather(&bare, &pipeline, &store, 7, now).await.unwrap();
    assert!(r.alerts.is_empty() && r.history.events.is_empty());
    assert!(r.contacts.is_empty());
    let plan = item(&r, "Incident plan");
    assert!(
        !plan.done && plan.evidence.contains("[incident] contacts"),
        "{plan:?}"
    );
    let limited = item(&r, "Limited release");
    assert!(
        limited.done && limited.evidence.contains("(no change recorded)"),
        "{limited:?}"
    );
    assert_eq!(
        r.spend
            .budgets
            .iter()
            .map(|b| (b.scope.as_str(), b.window, b.spent_usd))
            .collect::<Vec<_>>(),
        [("team research", "day", 0.0), ("user alice", "month", 0.0)],
        "configured budgets are listed before anything is spent, fullest first, then by name"
    );

    // Two token spikes and a flag burst; $2.50 of the research team's $10 today.
    for (t, kind, who) in [
        (now - 3_000, "token_spike", "mallory"),
        (now - 2_000, "user_flag_burst", "eve"),
        (now - 1_000, "token_spike", "trudy"),
    ] {
        store
            .record_alert(&portcullis_store::StoredAlert {
                time_ms: t,
                kind: kind.into(),
                subject: who.into(),
                message: format!("{kind}: {who} well above baseline"),
                details: serde_json::json!({}),
            })
            .await
            .unwrap();
    }
    for (id, user, team, cost) in [
        ("r1", "alice", "research", 2_000_000),
        ("r2", "bob", "research", 500_000),
        ("r3", "carol", "ops", 7_000_000),
    ] {
        store
            .record_spend(&portcullis_store::SpendEntry {
                request_id: id.into(),
                time_ms: now - 500,
                key_id: Some(format!("key_{user}")),
                user: Some(user.into()),
                team: Some(team.into()),
                model: Some("gpt-4o".into()),
                cost_micros: cost,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    // Moderation: shadowed, then released to 10 % of users, then promoted to everyone.
    for (t, from, to, how) in [
        (now - 9_000, "unrecorded", "monitor", "start"),
        (
            now - 8_000,
            "monitor",
            "enforce 10% by user",
            "reload (SIGHUP)",
        ),
        (now - 7_000, "enforce 10% by user", "enforce", "promote"),
    ] {
        store
            .record_policy_event(&portcullis_store::PolicyEvent {
                time_ms: t,
                guard: "moderation".into(),
                from: from.into(),
                to: to.into(),
                how: how.into(),
                who: "ana".into(),
            })
            .await
            .unwrap();
    }
    let (config, pipeline) = build(
        &format!(
            "{limits}[incident]\ncontacts = [\n  {{ name = \"Ana Lima\", role = \"incident lead\", reach = \"+44 20 7946 0000\" }},\n  {{ name = \"platform on-call\", role = \"kill switch\", reach = \"#platform-oncall\" }},\n]\n"
        ),
        dir.path(),
    );
    let r = gather(&config, &pipeline, &store, 7, now).await.unwrap();

    assert_eq!(r.alerts.len(), 2);
    assert_eq!(
        (
            r.alerts[0].kind.as_str(),
            r.alerts[0].count,
            r.alerts[0].subjects
        ),
        ("token_spike", 2, 2)
    );
    assert!(r.alerts[0].sample.contains("trudy"), "{:?}", r.alerts[0]);

    let research = &r.spend.budgets[0];
    assert_eq!(
        (research.scope.as_str(), research.window, research.limit_usd),
        ("team research", "day", 10.0)
    );
    assert!((research.share - 0.25).abs() < 1e-9, "{research:?}");
    assert!((research.spent_usd - 2.5).abs() < 1e-9);
    let alice = &r.spend.budgets[1];
    assert_eq!(
        (alice.scope.as_str(), alice.window),
        ("user alice", "month")
    );
    assert!((alice.share - 0.02).abs() < 1e-9, "{alice:?}");
    assert_eq!(r.spend.budgets.len(), 2, "bob and carol have no budget");
    let top: Vec<(&str, &str)> = r
        .spend
        .top
        .iter()
        .map(|t| (t.by, t.name.as_str()))
        .collect();
    assert_eq!(
        &top[..4],
        [
            ("key", "key_carol"),
            ("key", "key_alice"),
            ("key", "key_bob"),
            ("user", "carol")
        ]
    );
    assert!(top.contains(&("team", "research")) && top.contains(&("team", "ops")));

    let hows: Vec<&str> = r.history.events.iter().map(|e| e.how.as_str()).collect();
    assert_eq!(hows, ["start", "reload (SIGHUP)", "promote"]);
    let limited = item(&r, "Limited release");
    assert!(
        limited.done,
        "a release to 10 % is in the history: {limited:?}"
    );
    assert!(
        limited
            .evidence
            .starts_with("moderation: monitored (never blocks) since ")
            && limited
                .evidence
                .contains(", enforced for 10 % of users (monitored for the rest) since ")
            && limited.evidence.contains(", enforced for 100 % since ")
            && limited.evidence.ends_with("(promote)"),
        "{limited:?}"
    );

    let plan = item(&r, "Incident plan");
    assert!(plan.done, "{plan:?}");
    assert!(
        plan.evidence
            .contains("Ana Lima (incident lead, +44 20 7946 0000), platform on-call"),
        "{plan:?}"
    );

    let md = render::markdown(&r);
    for want in [
        "| token_spike | 2 | 2 |",
        "| team research | $10.0000 per day |",
        "| 25.0 % |",
        "| moderation | enforce 10% by user | enforce | promote | ana |",
        "Who to call, in this order:",
        "| Ana Lima | incident lead | +44 20 7946 0000 |",
        "| Incident plan | done |",
    ] {
        assert!(md.contains(want), "{want} missing from\n{md}");
    }
    let runbook = md.split("## Incident runbook").nth(1).unwrap();
    assert!(
        runbook.find("Ana Lima").unwrap() < runbook.find("A key leaked").unwrap(),
        "contacts head the runbook"
    );
    let html = render::html(&r);
    assert!(html.contains("<td>+44 20 7946 0000</td>") && html.contains("<td>25.0 %</td>"));
    assert!(html.contains("#platform-oncall") && html.contains("<h2>Policy changes</h2>"));
    assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("src="));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["alerts"][0]["count"], 2);
    assert_eq!(json["spend"]["budgets"][0]["share"], 0.25);
    assert_eq!(json["history"]["events"][2]["how"], "promote");
    assert_eq!(json["contacts"][0]["name"], "Ana Lima");
}
