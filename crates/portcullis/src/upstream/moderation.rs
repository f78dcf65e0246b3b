//! The upstream's OpenAI-compatible `/v1/moderations` as a moderation provider.

use crate::upstream::Upstream;
use portcullis_moderation::{Moderation, Moderator, ProviderError};
use serde_json::{Value, json};

/// Calls `{upstream}/moderations` with the provider key.
pub struct UpstreamModerator {
    upstream: Upstream,
    model: String,
}

impl UpstreamModerator {
    /// A provider using `model` (e.g. `omni-moderation-latest`) on `upstream`.
    pub fn new(upstream: Upstream, model: &str) -> Self {
        UpstreamModerator {
            upstream,
            model: model.to_owned(),
        }
    }
}

fn fail(message: impl Into<String>) -> ProviderError {
    ProviderError {
        provider: "upstream".into(),
        message: message.into(),
    }
}

/// Reads one `results[]` entry.
fn parse(r: &Value) -> Moderation {
    let mut m = Moderation {
        flagged: r["flagged"].as_bool().unwrap_or(false),
        ..Moderation::default()
    };
    if let Some(c) = r["categories"].as_object() {
        for (k, v) in c {
            m.categories.insert(k.clone(), v.as_bool().unwrap_or(false));
        }
    }
    if let Some(s) = r["category_scores"].as_object() {
        for (k, v) in s {
            m.scores.insert(k.clone(), v.as_f64().unwrap_or(0.0) as f32);
        }
    }
    m
}

#[async_trait::async_trait]
impl Moderator for UpstreamModerator {
    fn name(&self) -> &str {
        "upstream"
    }

    async fn moderate(&self, texts: &[String]) -> Result<Vec<Moderation>, ProviderError> {
        let body = serde_json::to_vec(&json!({"model": self.model, "input": texts}))
            .map_err(|e| fail(e.to_string()))?;
        let resp = self
            .upstream
            .send(reqwest::Method::POST, "/moderations", Some(body))
            .await
            .map_err(|e| fail(e.message))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(fail(format!("answered {status}")));
        }
        let v: Value = resp.json().await.map_err(|e| fail(e.to_string()))?;
        let results = v["results"]
            .as_array()
            .ok_or_else(|| fail("no 'results' in the answer"))?;
        if results.len() != texts.len() {
            return Err(fail(format!(
                "{} results for {} inputs",
                results.len(),
                texts.len()
            )));
        }
        Ok(results.iter().map(parse).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_openai_results() {
        let m = parse(
            &json!({"flagged": true, "categories": {"violence": true, "hate": false},
                             "category_scores": {"violence": 0.91, "hate": 0.02}}),
        );
        assert!(m.flagged);
        assert!(m.categories["violence"]);
        assert!((m.scores["violence"] - 0.91).abs() < 1e-6);
    }
}
