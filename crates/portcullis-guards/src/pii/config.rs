//! `[pii]`: what happens to each kind of personal data, which names count as personal, and
//! the defaults for requests and answers.

use portcullis_pii::EntityType;
use serde::Deserialize;
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

impl PiiAction {
    /// The word findings record the action by.
    pub fn name(self) -> &'static str {
        match self {
            PiiAction::Allow => "allow",
            PiiAction::Redact => "redact",
            PiiAction::Pseudonymise => "pseudonymise",
            PiiAction::Hash => "hash",
            PiiAction::Block => "block",
        }
    }
}

/// Which people's names the `PERSON` action applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Names {
    /// Names of people in the conversation: the writer ("my name is …", a signature), someone
    /// written to ("Dear …"), someone the writer knows or serves ("my colleague …", "patient
    /// …"), a record's name field ("Name: …"), a name beside contact details. Public figures,
    /// characters and the subjects of questions ("Who was Abraham Lincoln?") pass unchanged.
    #[default]
    Personal,
    /// Every name the tagger finds.
    All,
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
    /// `personal` (default): only names of people in the conversation are personal data;
    /// `all`: every name the tagger finds.
    pub names: Names,
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
            names: Names::Personal,
            actions: BTreeMap::new(),
            output_actions: BTreeMap::new(),
            hash_key_env: "PORTCULLIS_PII_HASH_KEY".into(),
        }
    }
}

/// The request-side default. Contact details, identity and financial numbers, dates of birth,
/// street addresses and postcodes (the detector keeps only those with the shape and place of
/// one) and the names of people in the conversation are pseudonymised; secrets are redacted.
/// Places, organisations, dates, ages, titles, nationalities and links are general knowledge
/// far more often than personal data ("What happened in Springfield?"), so they pass.
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

/// One action per entity type, in [`EntityType::ALL`] order.
pub type Actions = [PiiAction; EntityType::ALL.len()];

/// The defaults with `overrides` (config names) applied.
pub(super) fn table(
    name: &'static str,
    overrides: &BTreeMap<String, PiiAction>,
    default: fn(EntityType) -> PiiAction,
) -> Result<Actions, PiiConfigError> {
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

/// The position of `e` in [`EntityType::ALL`].
pub(super) fn index(e: EntityType) -> usize {
    EntityType::ALL.iter().position(|x| *x == e).unwrap_or(0)
}
