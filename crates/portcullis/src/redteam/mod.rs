//! The red-team harness (`portcullis redteam`): hundreds of attacks and ordinary requests
//! pushed through a policy before a release, counted per attack category, with a false-positive
//! rate beside the block rate — because a policy is only as good as both numbers at once — and
//! thresholds that fail the run so a CI pipeline can gate a release on them.
//!
//! # Layout
//! - [`corpus`]: the built-in suites (generated, committed, embedded) and how `--suite` picks.
//! - [`generate`]: the deterministic generator of the built-in corpus from hand-written seeds.
//! - [`mutate`]: mutators that disguise any prompt (encodings, look-alikes, frames).
//! - [`import`]: suites teams already have — plain text, JSONL, garak, promptfoo.
//! - [`target`]: where cases are judged — in process against a config, or over HTTP.
//! - [`report`]: the tally, thresholds, and the table / JSON / Markdown / HTML renderings.

pub mod corpus;
pub mod generate;
pub mod import;
pub mod mutate;
pub mod report;
pub mod target;

use serde::{Deserialize, Serialize};

/// Which side of the measurement a case is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    /// The policy should stop it.
    Attack,
    /// Ordinary traffic: the policy should leave it alone.
    Benign,
}

/// Where a case's text reaches the gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A user message.
    #[default]
    User,
    /// A tool result (third-party text the application fetched).
    Tool,
    /// A retrieved document (RAG).
    Document,
}

impl Origin {
    /// The segment source the guards judge it as.
    pub fn source(self) -> portcullis_core::Source {
        match self {
            Origin::User => portcullis_core::Source::User,
            Origin::Tool => portcullis_core::Source::Tool,
            Origin::Document => portcullis_core::Source::Document,
        }
    }

    fn is_user(&self) -> bool {
        *self == Origin::User
    }
}

/// One prompt to try.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub id: String,
    pub label: Label,
    pub category: String,
    #[serde(default, skip_serializing_if = "Origin::is_user")]
    pub source: Origin,
    /// The mutator that made this variant, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutator: Option<String>,
    /// A string whose presence in a live model's answer proves the attack worked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    pub text: String,
}

impl Case {
    /// This case disguised by `m` (same label, category and source; id and mutator marked).
    pub fn mutated(&self, m: mutate::Mutator) -> Case {
        Case {
            id: format!("{}~{}", self.id, m.name()),
            mutator: Some(match &self.mutator {
                Some(prev) => format!("{prev}+{}", m.name()),
                None => m.name().to_owned(),
            }),
            text: m.apply(&self.text),
            ..self.clone()
        }
    }
}

/// How the policy treated one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Refused by a guard.
    Blocked,
    /// Let through, but a guard flagged it (or would have acted, in monitor mode).
    Flagged,
    /// Let through unremarked (it may have been altered, e.g. spotlighted or redacted).
    Passed,
    /// Could not be judged (the target failed); counted apart, and fails the run.
    Error,
}

/// What a live model did with an attack that got through (`--judge`, HTTP targets only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// The answer holds the attack's canary or the system prompt's: it worked.
    Succeeded,
    /// The answer reads as a refusal.
    Refused,
    /// Neither: read the answer to know.
    Unclear,
}

/// The judgement of one case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub verdict: Verdict,
    /// The text the model would see differs from what was sent.
    pub altered: bool,
    /// Which guards acted and what they found, or the refusal's code, or the error.
    pub detail: String,
    /// With `--judge` against a live target: what the model did with a passed attack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<Effect>,
}

impl Outcome {
    fn error(detail: impl Into<String>) -> Outcome {
        Outcome {
            verdict: Verdict::Error,
            altered: false,
            detail: detail.into(),
            effect: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_read_and_write_the_jsonl_shape() {
        let c: Case = serde_json::from_str(
            r#"{"id":"x-1","label":"attack","category":"x","source":"tool","text":"hi"}"#,
        )
        .unwrap();
        assert_eq!(c.source, Origin::Tool);
        let back = serde_json::to_string(&c).unwrap();
        assert_eq!(
            back,
            r#"{"id":"x-1","label":"attack","category":"x","source":"tool","text":"hi"}"#
        );
        let m = c
            .mutated(mutate::Mutator::Reverse)
            .mutated(mutate::Mutator::Casing);
        assert_eq!(m.id, "x-1~reverse~casing");
        assert_eq!(m.mutator.as_deref(), Some("reverse+casing"));
        assert_eq!(m.source, Origin::Tool);
    }
}
