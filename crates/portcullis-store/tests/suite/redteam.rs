//! Red-team runs: recorded whole, read back newest first.

use portcullis_store::{RedteamRun, Store};
use serde_json::json;

fn run(id: &str, time_ms: i64, pass: bool) -> RedteamRun {
    RedteamRun {
        id: id.into(),
        time_ms,
        config_source: "gw.toml".into(),
        suites: "builtin".into(),
        attacks: 362,
        blocked: 250,
        flagged: 40,
        passed: 72,
        benign: 320,
        false_positives: 3,
        errors: 0,
        block_rate: Some(0.6906),
        false_positive_rate: Some(0.0094),
        categories: json!({"obfuscation": {"attempts": 36, "blocked": 20, "flagged": 4, "passed": 12}}),
        min_block_rate: Some(0.6),
        max_false_positive_rate: None,
        pass,
    }
}

pub async fn redteam_suite(s: &Store) {
    assert!(s.redteam_runs(10).await.unwrap().is_empty());
    let first = run("rt_1", 1_000, true);
    let mut second = run("rt_2", 2_000, false);
    second.block_rate = None;
    second.attacks = 0;
    s.record_redteam_run(&first).await.unwrap();
    s.record_redteam_run(&second).await.unwrap();
    let all = s.redteam_runs(10).await.unwrap();
    assert_eq!(
        all,
        [second.clone(), first.clone()],
        "newest first, every field kept"
    );
    assert_eq!(s.redteam_runs(1).await.unwrap(), [second.clone()]);
    assert!(
        s.record_redteam_run(&first).await.is_err(),
        "an id is recorded once"
    );
}
