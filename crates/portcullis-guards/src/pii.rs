//! Keeps personal data and credentials from reaching the provider (and, on the way back, the
//! client) as policy says: per entity type, allow, redact, pseudonymise reversibly, hash with a
//! key, or block.

use hmac::{Hmac, Mac};
use portcullis_core::guard::{Edit, GuardError, Input, Output, Verdict};
use portcullis_core::{ApiError, Context, Finding, Guard, Segment};
use portcullis_pii::{Detection, EntityType, ScanOptions, scan};
use serde::Deserialize;
use sha2::Sha256;
use std::collections::BTreeMap;

/// What to do with one kind of finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PiiAction {
    /// Leave it (and do not record it).
    Allow,
    /// Replace with the type, `[EMAIL]`.
    Redact,
    /// Replace with a per-request placeholder, `[EMAIL_1]`, restored in the answer.
    #[serde(alias = "pseudonymize")]
    Pseudonymise,
    /// Replace with a keyed hash, `[EMAIL:3f2a…]`: the same value gives the same token.
    Hash,
    /// Refuse the request (403 naming the types, never the values).
    Block,
}

/// `[pii]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PiiConfig {
    /// Scan requests.
    pub input: bool,
    /// Scan answers.
    pub output: bool,
    /// Run the learned name/place/organisation tagger (off: structured and secrets only).
    pub ner: bool,
    /// Findings scoring below this are ignored.
    pub min_score: f32,
    /// Request-side action per entity type (`EMAIL = "block"`); unlisted types keep the defaults.
    pub actions: BTreeMap<String, PiiAction>,
    /// Answer-side action per entity type; unlisted types keep the output defaults.
    pub output_actions: BTreeMap<String, PiiAction>,
    /// Environment variable holding the key for `hash` (a random per-process key if unset).
    pub hash_key_env: String,
}

impl Default for PiiConfig {
    fn default() -> Self {
        PiiConfig {
            input: true,
            output: true,
            ner: true,
            min_score: 0.5,
            actions: BTreeMap::new(),
            output_actions: BTreeMap::new(),
            hash_key_env: "PORTCULLIS_PII_HASH_KEY".into(),
        }
    }
}

/// The request-side default: structured PII and names pseudonymised, secrets redacted.
pub fn default_input_action(t: EntityType) -> PiiAction {
    use EntityType::*;
    match t {
        Email | Phone | UsSsn | CreditCard | Iban | IpAddress | DateOfBirth | UsPassport
        | UsDriverLicense | Address | Postcode | Person => PiiAction::Pseudonymise,
        Secret => PiiAction::Redact,
        Date | Url | Location | Organization | Title | Nrp | Age => PiiAction::Allow,
    }
}

/// The answer-side default: secrets and financial / identity numbers the model should never
/// hand out are redacted; the rest is the answer's business.
pub fn default_output_action(t: EntityType) -> PiiAction {
    use EntityType::*;
    match t {
        Secret | CreditCard | UsSsn | Iban | UsPassport | UsDriverLicense => PiiAction::Redact,
        _ => PiiAction::Allow,
    }
}

/// Why a `[pii]` section cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PiiConfigError {
    #[error("{table}: unknown entity type '{name}'; known types: {known}")]
    UnknownType {
        table: &'static str,
        name: String,
        known: String,
    },
    #[error("min_score must be between 0 and 1, not {0}")]
    MinScore(f32),
    #[error("pseudonymise cannot apply to answers ({0}): there is nothing to restore it from")]
    OutputPseudonym(String),
}

/// The PII and secrets guard.
#[derive(Debug, Clone)]
pub struct PiiGuard {
    input: Option<[PiiAction; EntityType::ALL.len()]>,
    output: Option<[PiiAction; EntityType::ALL.len()]>,
    opts: ScanOptions,
    hash_key: Vec<u8>,
}

fn table(
    name: &'static str,
    overrides: &BTreeMap<String, PiiAction>,
    default: fn(EntityType) -> PiiAction,
) -> Result<[PiiAction; EntityType::ALL.len()], PiiConfigError> {
    let mut t = EntityType::ALL.map(default);
    for (k, a) in overrides {
        let Some(e) = EntityType::parse(k) else {
            return Err(PiiConfigError::UnknownType {
                table: name,
                name: k.clone(),
                known: EntityType::ALL.map(EntityType::name).join(", "),
            });
        };
        t[index(e)] = *a;
    }
    Ok(t)
}

fn index(e: EntityType) -> usize {
    EntityType::ALL.iter().position(|x| *x == e).unwrap_or(0)
}

impl PiiGuard {
    /// A guard for `config`; unknown type names and impossible actions are refused.
    pub fn new(config: &PiiConfig) -> Result<Self, PiiConfigError> {
        if !(0.0..=1.0).contains(&config.min_score) {
            return Err(PiiConfigError::MinScore(config.min_score));
        }
        let input = table("actions", &config.actions, default_input_action)?;
        let output = table(
            "output_actions",
            &config.output_actions,
            default_output_action,
        )?;
        if let Some(i) = output.iter().position(|a| *a == PiiAction::Pseudonymise) {
            return Err(PiiConfigError::OutputPseudonym(
                EntityType::ALL[i].name().to_owned(),
            ));
        }
        let hash_key = std::env::var(&config.hash_key_env)
            .ok()
            .filter(|k| !k.is_empty())
            .map(String::into_bytes)
            .unwrap_or_else(|| {
                let mut k = vec![0u8; 32];
                if getrandom::fill(&mut k).is_err() {
                    k = b"portcullis-unkeyed".to_vec();
                }
                k
            });
        Ok(PiiGuard {
            input: config.input.then_some(input),
            output: config.output.then_some(output),
            opts: ScanOptions {
                ner: config.ner,
                min_score: config.min_score,
            },
            hash_key,
        })
    }

    fn hash(&self, t: EntityType, value: &str) -> String {
        let digest = Hmac::<Sha256>::new_from_slice(&self.hash_key)
            .map(|mut m| {
                m.update(t.name().as_bytes());
                m.update(b":");
                m.update(value.as_bytes());
                hex::encode(&m.finalize().into_bytes()[..6])
            })
            .unwrap_or_default();
        format!("[{}:{digest}]", t.name())
    }

    /// Scans segments and turns findings into edits, findings, or a refusal.
    fn judge(
        &self,
        segments: &[Segment],
        actions: &[PiiAction; EntityType::ALL.len()],
        floor: usize,
        ctx: &Context,
    ) -> Verdict {
        let mut edits = Vec::new();
        let mut findings = Vec::new();
        let mut blocked: Vec<EntityType> = Vec::new();
        // Placeholders handed out in this verdict, on top of those already in the vault.
        let mut given: Vec<(String, String)> = Vec::new();
        for (si, seg) in segments.iter().enumerate() {
            for d in scan(&mask_placeholders(&seg.text), &self.opts) {
                let action = actions[index(d.entity)];
                if action == PiiAction::Allow {
                    continue;
                }
                findings.push(finding(&d, si, action));
                if d.span.start < floor {
                    continue; // already sent to the client: nothing left to change
                }
                let value = &seg.text[d.span.clone()];
                let with = match action {
                    PiiAction::Allow => continue,
                    PiiAction::Block => {
                        if !blocked.contains(&d.entity) {
                            blocked.push(d.entity);
                        }
                        continue;
                    }
                    PiiAction::Redact => format!("[{}]", d.entity.name()),
                    PiiAction::Hash => self.hash(d.entity, value),
                    PiiAction::Pseudonymise => {
                        let known =
                            ctx.vault
                                .placeholder_for(value)
                                .map(str::to_owned)
                                .or_else(|| {
                                    given
                                        .iter()
                                        .find(|(_, o)| o == value)
                                        .map(|(p, _)| p.clone())
                                });
                        match known {
                            Some(p) => p,
                            None => {
                                let prefix = format!("[{}_", d.entity.name());
                                let n = ctx.vault.count_prefix(&prefix)
                                    + given.iter().filter(|(p, _)| p.starts_with(&prefix)).count()
                                    + 1;
                                let p = format!("{prefix}{n}]");
                                given.push((p.clone(), value.to_owned()));
                                edits.push(Edit::Remember {
                                    placeholder: p.clone(),
                                    original: value.to_owned(),
                                });
                                p
                            }
                        }
                    }
                };
                edits.push(Edit::Replace {
                    segment: si,
                    range: d.span.clone(),
                    with,
                });
            }
        }
        if !blocked.is_empty() {
            blocked.sort();
            let names: Vec<&str> = blocked.iter().map(|t| t.name()).collect();
            return Verdict::block(
                ApiError::policy(
                    "pii_blocked",
                    format!(
                        "The request contains data that this gateway's policy does not allow to be sent: {}. Remove it and try again.",
                        names.join(", ")
                    ),
                ),
                findings,
            );
        }
        if edits.is_empty() {
            if findings.is_empty() {
                Verdict::allow()
            } else {
                Verdict::flag(findings)
            }
        } else {
            Verdict::transform(edits, findings)
        }
    }
}

fn finding(d: &Detection, segment: usize, action: PiiAction) -> Finding {
    let action = match action {
        PiiAction::Allow => "allow",
        PiiAction::Redact => "redact",
        PiiAction::Pseudonymise => "pseudonymise",
        PiiAction::Hash => "hash",
        PiiAction::Block => "block",
    };
    Finding::new(d.entity.name(), d.recognizer, d.score)
        .at(segment, d.span.clone())
        .obfuscated(d.obfuscated)
        .note(action)
}

/// The text with the gateway's own placeholders (`[PERSON_1]`, `[EMAIL]`, `[EMAIL:3f2a…]`)
/// blanked out, byte for byte: the model echoes them back and they are not new data.
fn mask_placeholders(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('[') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = text.to_owned();
    let mut at = 0;
    while let Some(open) = text[at..].find('[').map(|i| at + i) {
        let Some(close) = text[open..].find(']').map(|i| open + i) else {
            break;
        };
        let inner = &text[open + 1..close];
        let name = inner.split(':').next().unwrap_or(inner);
        let name = name
            .rsplit_once('_')
            .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .map_or(name, |(t, _)| t);
        if EntityType::parse(name).is_some() && name.bytes().all(|b| !b.is_ascii_lowercase()) {
            out.replace_range(open..=close, &" ".repeat(close - open + 1));
        }
        at = open + 1;
    }
    std::borrow::Cow::Owned(out)
}

#[async_trait::async_trait]
impl Guard for PiiGuard {
    fn name(&self) -> &str {
        "pii"
    }

    async fn check_input(&self, input: &Input<'_>, ctx: &Context) -> Result<Verdict, GuardError> {
        Ok(match &self.input {
            Some(actions) => self.judge(input.segments, actions, 0, ctx),
            None => Verdict::allow(),
        })
    }

    async fn check_output(
        &self,
        output: &Output<'_>,
        ctx: &Context,
    ) -> Result<Verdict, GuardError> {
        Ok(match &self.output {
            Some(actions) => {
                let floor = output.window.map_or(0, |w| w.editable_from);
                self.judge(output.segments, actions, floor, ctx)
            }
            None => Verdict::allow(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::guard::Action;
    use portcullis_core::{ChatRequest, Principal, Source};

    fn req() -> ChatRequest {
        serde_json::from_str(r#"{"model":"m","messages":[]}"#).unwrap()
    }

    async fn run(guard: &PiiGuard, texts: &[&str]) -> Verdict {
        let r = req();
        let segs: Vec<Segment> = texts
            .iter()
            .map(|t| Segment::free(*t, Source::User))
            .collect();
        let ctx = Context::new("t", Principal::default());
        guard
            .check_input(
                &Input {
                    request: &r,
                    segments: &segs,
                },
                &ctx,
            )
            .await
            .unwrap()
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

    #[tokio::test]
    async fn default_policy_pseudonymises_stably_and_redacts_secrets() {
        let g = PiiGuard::new(&PiiConfig::default()).unwrap();
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
    async fn hash_is_keyed_and_stable() {
        let mut c = PiiConfig::default();
        c.actions.insert("EMAIL".into(), PiiAction::Hash);
        let g = PiiGuard::new(&c).unwrap();
        let a = replaced(&run(&g, &["ann@example.com"]).await);
        let b = replaced(&run(&g, &["ann@example.com"]).await);
        assert_eq!(a, b);
        assert!(a[0].starts_with("[EMAIL:") && a[0].len() == "[EMAIL:]".len() + 12);
        assert!(!a[0].contains("ann"));
    }

    #[tokio::test]
    async fn own_placeholders_are_not_findings() {
        let g = PiiGuard::new(&PiiConfig::default()).unwrap();
        let v = run(
            &g,
            &["thanks [PERSON_1], your card [CREDIT_CARD] and [EMAIL:0a1b2c3d4e5f] are on file."],
        )
        .await;
        assert_eq!(v.action, Action::Allow, "{v:?}");
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
}
