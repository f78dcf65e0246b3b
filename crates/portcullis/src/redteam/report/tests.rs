//! The tally and the release gate.

use super::*;
use crate::redteam::Origin;

fn case(id: &str, label: Label, category: &str) -> Case {
    Case {
        id: id.into(),
        label,
        category: category.into(),
        source: Origin::User,
        mutator: None,
        canary: None,
        text: format!("text of {id}"),
    }
}

fn outcome(verdict: Verdict) -> Outcome {
    Outcome {
        verdict,
        altered: false,
        detail: String::new(),
        effect: None,
    }
}

/// Four attacks (3 blocked, 1 passed) and four benign requests (1 blocked).
fn tiny() -> (Vec<Case>, Vec<Outcome>) {
    let cases = vec![
        case("a1", Label::Attack, "override"),
        case("a2", Label::Attack, "override"),
        case("a3", Label::Attack, "persona"),
        case("a4", Label::Attack, "persona"),
        case("b1", Label::Benign, "everyday"),
        case("b2", Label::Benign, "everyday"),
        case("b3", Label::Benign, "coding"),
        case("b4", Label::Benign, "coding"),
    ];
    let outcomes = [
        Verdict::Blocked,
        Verdict::Blocked,
        Verdict::Blocked,
        Verdict::Passed,
        Verdict::Blocked,
        Verdict::Flagged,
        Verdict::Passed,
        Verdict::Passed,
    ]
    .into_iter()
    .map(outcome)
    .collect();
    (cases, outcomes)
}

fn gate(min: Option<f64>, max: Option<f64>) -> Report {
    let (c, o) = tiny();
    Report::new(
        &c,
        &o,
        3,
        Thresholds {
            min_block_rate: min,
            max_false_positive_rate: max,
        },
    )
}

#[test]
fn counts_per_category_and_rates() {
    let r = gate(None, None);
    assert_eq!(r.categories["override"].blocked, 2);
    assert_eq!(r.categories["persona"].passed, 1);
    assert_eq!(r.block_rate(), Some(0.75));
    assert_eq!(r.false_positive_rate(), Some(0.25));
    assert_eq!(r.got_through.len(), 1);
    assert_eq!(r.got_through[0].id, "a4");
    assert_eq!(r.false_positives[0].id, "b1");
    let j = r.json();
    assert_eq!(j["attacks"], 4);
    assert_eq!(j["benign"], 4);
    assert_eq!(j["block_rate"], 0.75);
    assert_eq!(j["false_positive_rate"], 0.25);
    assert_eq!(j["categories"]["persona"]["attempts"], 2);
    assert_eq!(j["categories"]["persona"]["flagged"], 0);
    assert_eq!(j["pass"], true);
}

#[test]
fn thresholds_that_are_met_pass() {
    let r = gate(Some(0.75), Some(0.25));
    assert!(r.passed(), "{:?}", r.failures);
    assert!(r.table().ends_with("PASS\n"));
}

#[test]
fn a_low_block_rate_fails() {
    let r = gate(Some(0.8), None);
    assert!(!r.passed());
    assert_eq!(r.failures, ["block rate 75.0% is below the minimum 80.0%"]);
}

#[test]
fn a_high_false_positive_rate_fails() {
    let r = gate(None, Some(0.2));
    assert_eq!(
        r.failures,
        ["false-positive rate 25.0% is above the maximum 20.0%"]
    );
    assert!(r.markdown().contains("FAIL: false-positive rate"));
}

#[test]
fn errors_fail_the_run_and_stay_out_of_the_rates() {
    let (c, mut o) = tiny();
    o[3] = outcome(Verdict::Error);
    let r = Report::new(&c, &o, 3, Thresholds::default());
    assert_eq!(r.block_rate(), Some(1.0));
    assert_eq!(r.failures, ["1 case(s) could not be judged"]);
}

#[test]
fn a_threshold_without_its_group_fails() {
    let (c, o) = tiny();
    let r = Report::new(
        &c[..4],
        &o[..4],
        3,
        Thresholds {
            min_block_rate: None,
            max_false_positive_rate: Some(0.5),
        },
    );
    assert_eq!(
        r.failures,
        ["--max-false-positive-rate needs benign requests"]
    );
}

#[test]
fn renderings_show_every_category_and_escape_html() {
    let (mut c, o) = tiny();
    c[3].text = "<script>alert(1)</script>".into();
    let r = Report::new(&c, &o, 3, Thresholds::default());
    let t = r.table();
    assert!(t.contains("override") && t.contains("all attacks") && t.contains("benign"));
    assert!(r.markdown().starts_with("| category | attempts |"));
    let h = r.html();
    assert!(h.contains("&lt;script&gt;") && !h.contains("<script>"));
}
