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
