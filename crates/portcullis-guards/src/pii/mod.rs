//! Keeps personal data and credentials from reaching the provider (and, on the way back, the
//! client) as policy says: per entity type, allow, redact, pseudonymise reversibly, hash with a
//! key, or block — over every text segment of a request (messages, content parts, names,
//! tool-call arguments, tool results).
//!
//! What is personal is decided before any action applies:
//! - contact details, identity and financial numbers, secrets, dates of birth, street
//!   addresses and postcodes are always protected (the detector keeps numbers only where they
//!   have the shape and place of one: "15, 25, 35" are not postcodes, "I am 30" no address);
//! - a name is personal data when it is about someone in the conversation (the writer,
//!   someone written to, a customer, a patient, a colleague, a record's name field, a name
//!   beside contact details: [`portcullis_pii::personal`]); with `names = "personal"` (the
//!   default) other names — public figures, characters, the subjects of questions — pass,
//!   with `names = "all"` every name the tagger finds counts;
//! - places, organisations, dates, ages, titles, nationalities and links pass by default.
//!
//! One person keeps one placeholder all conversation long: once a name is personal, the same
//! name and its parts alone ("Jane" after "Jane Roe") in every message get the same
//! replacement (`people`). Placeholders are numbered past anything the client wrote, so
//! restoring never touches the client's own text, and on a request nothing the client wrote
//! is skipped by the scan (`placeholders`).
//!
//! Known false negatives: a third person named with no personal cue ("summarise Jane Roe's
//! complaint") passes under `names = "personal"`. Known false positives: role-play and letters
//! to made-up people ("Dear Santa,") are pseudonymised. Cost class: pure CPU, the detector's
//! scan per segment plus a word search per personal name.
//!
//! ```toml
//! [pii]
//! names = "personal"          # or "all": every name the tagger finds
//! [pii.actions]
//! US_SSN = "block"
//! ORGANIZATION = "hash"
//! ```
//!
//! # Layout
//! - `config`: `[pii]`, the actions and their defaults.
//! - `people`: one person, one placeholder, across the conversation.
//! - `placeholders`: numbering that never collides with client text; masking issued ones.

mod config;
mod people;
mod placeholders;
#[cfg(test)]
mod tests;

pub use config::{
    Actions, Names, PiiAction, PiiConfig, PiiConfigError, default_input_action,
    default_output_action,
};

use config::{index, table};
use hmac::{Hmac, Mac};
use people::People;
use placeholders::{Numbering, mask_issued};
use portcullis_core::guard::{Edit, GuardError, Input, Output, Verdict};
use portcullis_core::{ApiError, Context, Finding, Guard, Segment};
use portcullis_pii::{Detection, EntityType, ScanOptions, scan};
use sha2::Sha256;
use std::ops::Range;

/// The PII and secrets guard.
#[derive(Debug, Clone)]
pub struct PiiGuard {
    input: Option<Actions>,
    output: Option<Actions>,
    opts: ScanOptions,
    names: Names,
    hash_key: Vec<u8>,
}

/// One thing to act on in a segment: a detection, or a mention of a personal name.
struct Item<'d> {
    entity: EntityType,
    span: Range<usize>,
    /// The detection, when the scan found it (a name's other mentions are found by search).
    detection: Option<&'d Detection>,
    /// For a name: the person it names (see [`People`]).
    person: Option<usize>,
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
            names: config.names,
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

    /// Whether a name found by the scan is personal data under this policy.
    fn personal(&self, d: &Detection) -> bool {
        d.entity == EntityType::Person && (self.names == Names::All || d.personal.is_some())
    }

    /// What to act on in one segment: its detections other than names (when their type is
    /// not allowed), and every mention of a personal name, none overlapping.
    fn items<'d>(
        &self,
        text: &str,
        found: &'d [Detection],
        people: &People,
        actions: &Actions,
    ) -> Vec<Item<'d>> {
        let mut items: Vec<Item<'d>> = found
            .iter()
            .filter(|d| d.entity != EntityType::Person)
            .filter(|d| actions[index(d.entity)] != PiiAction::Allow)
            .map(|d| Item {
                entity: d.entity,
                span: d.span.clone(),
                detection: Some(d),
                person: None,
            })
            .collect();
        if !people.is_empty() {
            // A known name wins over a place or organisation reading of the same words, not
            // over data that is acted on anyway (an e-mail address holding the name).
            let taken: Vec<Range<usize>> = items.iter().map(|i| i.span.clone()).collect();
            let named: Vec<Range<usize>> = found
                .iter()
                .filter(|d| d.entity == EntityType::Person)
                .map(|d| d.span.clone())
                .collect();
            for (span, person) in people.mentions(text, &named) {
                if taken
                    .iter()
                    .any(|t| t.start < span.end && span.start < t.end)
                {
                    continue;
                }
                let detection = found
                    .iter()
                    .find(|d| d.entity == EntityType::Person && d.span == span);
                items.push(Item {
                    entity: EntityType::Person,
                    span,
                    detection,
                    person: Some(person),
                });
            }
        }
        items.sort_by_key(|i| i.span.start);
        items
    }

    /// Scans segments and turns findings into edits, findings, or a refusal.
    fn judge(
        &self,
        segments: &[Segment],
        actions: &Actions,
        floor: usize,
        ctx: &Context,
    ) -> Verdict {
        let scans: Vec<Vec<Detection>> = segments
            .iter()
            .map(|s| scan(&mask_issued(&s.text, &ctx.vault), &self.opts))
            .collect();
        let people = if actions[index(EntityType::Person)] == PiiAction::Allow {
            People::default()
        } else {
            People::gather(segments.iter().zip(&scans).flat_map(|(s, found)| {
                found
                    .iter()
                    .filter(|d| self.personal(d))
                    .map(|d| &s.text[d.span.clone()])
            }))
        };
        let mut numbering = Numbering::new(segments.iter().map(|s| s.text.as_str()), &ctx.vault);
        let mut edits = Vec::new();
        let mut findings = Vec::new();
        let mut blocked: Vec<EntityType> = Vec::new();
        for (si, seg) in segments.iter().enumerate() {
            for item in self.items(&seg.text, &scans[si], &people, actions) {
                let action = actions[index(item.entity)];
                findings.push(finding(&item, si, action));
                if item.span.start < floor {
                    continue; // already sent to the client: nothing left to change
                }
                // A name stands for its person's fullest form, so every mention links.
                let value = match item.person {
                    Some(p) => people.full(p),
                    None => &seg.text[item.span.clone()],
                };
                let with = match action {
                    PiiAction::Allow => continue,
                    PiiAction::Block => {
                        if !blocked.contains(&item.entity) {
                            blocked.push(item.entity);
                        }
                        continue;
                    }
                    PiiAction::Redact => format!("[{}]", item.entity.name()),
                    PiiAction::Hash => self.hash(item.entity, value),
                    PiiAction::Pseudonymise => {
                        let (p, new) = numbering.placeholder(item.entity.name(), value);
                        if new {
                            edits.push(Edit::Remember {
                                placeholder: p.clone(),
                                original: value.to_owned(),
                            });
                        }
                        p
                    }
                };
                edits.push(Edit::Replace {
                    segment: si,
                    range: item.span,
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

fn finding(item: &Item<'_>, segment: usize, action: PiiAction) -> Finding {
    let (recognizer, score, obfuscated) = match item.detection {
        Some(d) => (d.recognizer, d.score, d.obfuscated),
        // Another mention of a name already found personal.
        None => ("same_person", 1.0, false),
    };
    Finding::new(item.entity.name(), recognizer, score)
        .at(segment, item.span.clone())
        .obfuscated(obfuscated)
        .note(action.name())
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
