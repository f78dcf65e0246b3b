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
        Ok(texts
            .iter()
            .map(|t| {
                let s = self.model.score(t);
                let flagged = s.flagged >= self.model.threshold;
                let mut m = Moderation {
                    flagged,
                    ..Moderation::default()
                };
                for (c, v) in s.categories {
                    m.scores.insert(c.to_owned(), v);
                    m.categories.insert(c.to_owned(), flagged && v >= 0.5);
                }
                m.scores.insert("flagged".into(), s.flagged);
                m
            })
            .collect())
    }
}
