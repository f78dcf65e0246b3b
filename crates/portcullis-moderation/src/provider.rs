//! The provider contract: what a moderator answers per text ([`Moderation`]), how it fails
//! ([`ProviderError`]), the [`Moderator`] trait, and the built-in classifier as one.

use crate::classifier::Model;
use std::collections::BTreeMap;

/// One text's moderation result.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Moderation {
    /// The provider's own verdict.
    pub flagged: bool,
    /// The provider's per-category verdicts.
    pub categories: BTreeMap<String, bool>,
    /// Per-category scores in [0, 1].
    pub scores: BTreeMap<String, f32>,
}

/// A moderation provider failed (down, timed out, answered nonsense).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("moderation provider {provider}: {message}")]
pub struct ProviderError {
    pub provider: String,
    pub message: String,
}

/// Something that moderates texts: the local classifier, or an upstream `/v1/moderations`.
#[async_trait::async_trait]
pub trait Moderator: Send + Sync {
    /// Name used in findings and metrics.
    fn name(&self) -> &str;
    /// One result per text, in order.
    async fn moderate(&self, texts: &[String]) -> Result<Vec<Moderation>, ProviderError>;
}

/// The built-in classifier as a provider.
#[derive(Debug, Clone, Copy)]
pub struct LocalModerator {
    model: &'static Model,
}

impl LocalModerator {
    /// The classifier this build embeds.
    pub fn builtin() -> Self {
        LocalModerator {
            model: Model::builtin(),
        }
    }
}

#[async_trait::async_trait]
impl Moderator for LocalModerator {
    fn name(&self) -> &str {
        "local"
    }

    async fn moderate(&self, texts: &[String]) -> Result<Vec<Moderation>, ProviderError> {
        Ok(texts.iter().map(|t| self.judge(t)).collect())
    }
}

/// The category the local classifier reports when its `request` gate flags a text: it asks
/// for harmful help (instructions to hurt, to defraud, to make weapons …) whatever its words.
/// The category heads at 0.5 or more say what kind of harm, beside it.
pub const HARMFUL_REQUEST: &str = "harmful_request";

impl LocalModerator {
    /// One text's result: flagged when either gate reaches the threshold. The `content` gate
    /// names the categories its heads score at 0.5 or more (the best one when none does); the
    /// `request` gate adds [`HARMFUL_REQUEST`].
    pub fn judge(&self, text: &str) -> Moderation {
        let s = self.model.score(text);
        let t = self.model.threshold;
        let (content, request) = (s.gates[0] >= t, s.gates[1] >= t);
        let mut m = Moderation {
            flagged: content || request,
            ..Moderation::default()
        };
        let best = s
            .categories
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(c, _)| *c);
        let named = s.categories.iter().any(|(_, v)| *v >= 0.5);
        for (c, v) in &s.categories {
            m.scores.insert((*c).to_owned(), *v);
            let on = m.flagged && (*v >= 0.5 || (content && !named && best == Some(*c)));
            m.categories.insert((*c).to_owned(), on);
        }
        m.scores.insert(HARMFUL_REQUEST.into(), s.gates[1]);
        m.categories.insert(HARMFUL_REQUEST.into(), request);
        m.scores.insert("flagged".into(), s.flagged);
        m
    }
}
