//! The PII guard on whole requests: what reaches the provider, byte for byte, and what comes
//! back. The ordinary prompts are issue 19's; the placeholder cases issue 20's.

use super::*;
use portcullis_core::context::Vault;
use portcullis_core::guard::Action;
use portcullis_core::{ChatRequest, Principal, Source};

fn req() -> ChatRequest {
    serde_json::from_str(r#"{"model":"m","messages":[]}"#).unwrap()
}

fn segments(turns: &[(Source, &str)]) -> Vec<Segment> {
    turns.iter().map(|(s, t)| Segment::free(*t, *s)).collect()
}

async fn judge(guard: &PiiGuard, segs: &[Segment]) -> Verdict {
    let r = req();
    let ctx = Context::new("t", Principal::default());
    let input = Input {
        request: &r,
        segments: segs,
    };
    guard.check_input(&input, &ctx).await.unwrap()
}

async fn run(guard: &PiiGuard, texts: &[&str]) -> Verdict {
    let turns: Vec<(Source, &str)> = texts.iter().map(|t| (Source::User, *t)).collect();
    judge(guard, &segments(&turns)).await
}

/// The texts the provider would see after the verdict's edits, and the vault they fill.
fn applied(segs: &[Segment], v: &Verdict) -> (Vec<String>, Vault) {
    let mut texts: Vec<String> = segs.iter().map(|s| s.text.clone()).collect();
    let mut vault = Vault::default();
    let Action::Transform(edits) = &v.action else {
        return (texts, vault);
    };
    let mut replaces: Vec<(usize, Range<usize>, &str)> = Vec::new();
    for e in edits {
        match e {
            Edit::Replace {
                segment,
                range,
                with,
            } => replaces.push((*segment, range.clone(), with)),
            Edit::Remember {
                placeholder,
                original,
            } => vault.remember(placeholder.clone(), original.clone()),
            _ => {}
        }
    }
    replaces.sort_by_key(|(s, r, _)| std::cmp::Reverse((*s, r.start)));
    for (s, r, with) in replaces {
        texts[s].replace_range(r, with);
    }
    (texts, vault)
}

fn replaced(v: &Verdict) -> Vec<String> {
    match &v.action {
        Action::Transform(edits) => edits
            .iter()
            .filter_map(|e| match e {
                Edit::Replace { with, .. } => Some(with.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn default_guard() -> PiiGuard {
    PiiGuard::new(&PiiConfig::default()).unwrap()
}

#[tokio::test]
async fn issue_19_ordinary_prompts_pass_unchanged() {
    let g = default_guard();
    for prompt in [
        "Who was Abraham Lincoln and what did he do in Springfield, Illinois?",
        "Tell me about Marie Curie's research.",
        "What happened at the Battle of Gettysburg?",
        "Invent a new word and explain it.",
        "Plot these values as a bar chart: 15, 25, 35, 45",
        "I am 30",
        "Write a short story about a detective named Sarah who solves a murder in Paris.",
        "What is the capital of France, and who founded Microsoft?",
    ] {
        let v = run(&g, &[prompt]).await;
        assert!(
            matches!(v.action, Action::Allow | Action::Flag),
            "{prompt:?} would be altered: {v:?}"
        );
    }
}

#[tokio::test]
async fn issue_19_one_person_one_placeholder_all_conversation_long() {
    let g = default_guard();
    let segs = segments(&[
        (
            Source::User,
            "My name is Jane Roe, my email is jane.roe@example.org",
        ),
        (Source::Assistant, "Thanks! How can I help?"),
        (Source::User, "Draft a reply to my landlord."),
        (Source::Assistant, "Sure, Jane."),
    ]);
    let v = judge(&g, &segs).await;
    let (texts, vault) = applied(&segs, &v);
    assert_eq!(texts[0], "My name is [PERSON_1], my email is [EMAIL_1]");
    assert_eq!(texts[1], "Thanks! How can I help?");
    assert_eq!(texts[3], "Sure, [PERSON_1].");
    assert_eq!(
        vault.restore("Dear [PERSON_1] ([EMAIL_1])"),
        "Dear Jane Roe (jane.roe@example.org)",
        "the placeholder stands for the whole name"
    );
}

#[tokio::test]
async fn issue_19_a_name_after_an_introduction_is_a_name() {
    let g = default_guard();
    let segs = segments(&[(Source::User, "My name is José Müller-Lüdenscheidt.")]);
    let (texts, vault) = applied(&segs, &judge(&g, &segs).await);
    assert_eq!(texts[0], "My name is [PERSON_1].");
    assert_eq!(vault.restore("[PERSON_1]"), "José Müller-Lüdenscheidt");
}

#[tokio::test]
async fn issue_19_json_stays_json() {
    let g = default_guard();
    let text = r#"Validate this record: {"name": "Ann", "age": 30}"#;
    let segs = segments(&[(Source::User, text)]);
    let (texts, _) = applied(&segs, &judge(&g, &segs).await);
    let json = &texts[0][texts[0].find('{').unwrap()..];
    let v: serde_json::Value = serde_json::from_str(json).expect("still JSON");
    assert_eq!(v["age"], 30);
    assert_eq!(v["name"], "[PERSON_1]", "a name field is personal");
}

#[tokio::test]
async fn names_all_takes_every_name() {
    let g = PiiGuard::new(&PiiConfig {
        names: Names::All,
        ..PiiConfig::default()
    })
    .unwrap();
    let v = run(&g, &["Who was Abraham Lincoln? Lincoln was president."]).await;
    assert_eq!(replaced(&v), vec!["[PERSON_1]", "[PERSON_1]"]);
}

#[tokio::test]
async fn issue_20_client_text_shaped_like_a_placeholder_is_scanned() {
    let g = default_guard();
    let key = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z";
    let text = format!("Use [SECRET:{key}] and [EMAIL:ann@example.com] here");
    let segs = segments(&[(Source::User, &text)]);
    let (texts, _) = applied(&segs, &judge(&g, &segs).await);
    assert_eq!(texts[0], "Use [SECRET:[SECRET]] and [EMAIL:[EMAIL_1]] here");
}

#[tokio::test]
async fn issue_20_a_client_literal_placeholder_is_never_restored() {
    let g = default_guard();
    let segs = segments(&[(
        Source::User,
        "In the template, [PERSON_1] and [EMAIL_1] are placeholders. I'm Jane Roe, jane.roe@example.org.",
    )]);
    let (texts, vault) = applied(&segs, &judge(&g, &segs).await);
    assert_eq!(
        texts[0],
        "In the template, [PERSON_1] and [EMAIL_1] are placeholders. I'm [PERSON_2], [EMAIL_2]."
    );
    assert_eq!(
        vault.restore("[PERSON_1] and [EMAIL_1] stay; [PERSON_2] is back."),
        "[PERSON_1] and [EMAIL_1] stay; Jane Roe is back."
    );
}

#[tokio::test]
async fn answers_skip_only_issued_placeholders() {
    let g = default_guard();
    let r = req();
    let mut ctx = Context::new("t", Principal::default());
    ctx.vault.remember("[PERSON_1]".into(), "Jane Roe".into());
    let key = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z";
    let answer = format!("Hello [PERSON_1], your key is [SECRET:{key}].");
    let segs = segments(&[(Source::Output, &answer)]);
    let output = Output {
        request: &r,
        segments: &segs,
        window: None,
    };
    let v = g.check_output(&output, &ctx).await.unwrap();
    assert_eq!(replaced(&v), vec!["[SECRET]"]);
}

#[tokio::test]
async fn default_policy_pseudonymises_stably_and_redacts_secrets() {
    let g = default_guard();
    let v = run(
        &g,
        &[
            "Mail ann@example.com or bob@example.com, key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
            "Please reply to ann@example.com soon.",
        ],
    )
    .await;
    assert_eq!(
        replaced(&v),
        vec!["[EMAIL_1]", "[EMAIL_2]", "[SECRET]", "[EMAIL_1]"]
    );
    assert!(v.findings.iter().all(|f| f.note.as_deref().is_some()));
}

#[tokio::test]
async fn block_names_types_never_values() {
    let mut c = PiiConfig::default();
    c.actions.insert("US_SSN".into(), PiiAction::Block);
    let g = PiiGuard::new(&c).unwrap();
    let v = run(&g, &["my SSN is 536-32-3065"]).await;
    let Action::Block(e) = &v.action else {
        panic!("expected a block, got {v:?}")
    };
    assert_eq!(e.status, 403);
    let msg = serde_json::to_string(&e.body()).unwrap();
    assert!(
        msg.contains("US_SSN") && !msg.contains("536-32-3065"),
        "{msg}"
    );
}

#[tokio::test]
async fn hash_is_keyed_and_stable_and_links_a_person() {
    let mut c = PiiConfig::default();
    c.actions.insert("EMAIL".into(), PiiAction::Hash);
    c.actions.insert("PERSON".into(), PiiAction::Hash);
    let g = PiiGuard::new(&c).unwrap();
    let a = replaced(&run(&g, &["ann@example.com"]).await);
    let b = replaced(&run(&g, &["ann@example.com"]).await);
    assert_eq!(a, b);
    assert!(a[0].starts_with("[EMAIL:") && a[0].len() == "[EMAIL:]".len() + 12);
    assert!(!a[0].contains("ann"));
    let v = replaced(&run(&g, &["I'm Ann Lee.", "Thanks, Ann."]).await);
    assert_eq!(v.len(), 2);
    assert_eq!(v[0], v[1], "a name's parts hash as the whole name");
}

#[test]
fn config_errors_say_what_to_fix() {
    let mut c = PiiConfig::default();
    c.actions.insert("EMIAL".into(), PiiAction::Block);
    let e = PiiGuard::new(&c).unwrap_err().to_string();
    assert!(e.contains("EMIAL") && e.contains("EMAIL"), "{e}");
    let mut c = PiiConfig::default();
    c.output_actions
        .insert("PERSON".into(), PiiAction::Pseudonymise);
    assert!(matches!(
        PiiGuard::new(&c),
        Err(PiiConfigError::OutputPseudonym(_))
    ));
}

#[test]
fn names_is_a_setting() {
    let c: PiiConfig = toml::from_str("names = \"all\"").unwrap();
    assert_eq!(c.names, Names::All);
    assert_eq!(PiiConfig::default().names, Names::Personal);
    assert!(toml::from_str::<PiiConfig>("names = \"some\"").is_err());
}
