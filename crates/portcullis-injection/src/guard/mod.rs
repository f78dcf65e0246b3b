//! The guards: injection detection per source, spotlighting of untrusted text with
//! per-request boundaries, and canary tokens that reveal a leaked system prompt.
//!
//! # Layout
//! - `injection`: [`InjectionGuard`] and its per-source policy ([`InjectionConfig`]).
//! - `spotlight`: [`SpotlightGuard`], its modes and per-route settings ([`SpotlightConfig`]).
//! - `canary`: [`CanaryGuard`] ([`CanaryConfig`]).
//! - `leak`: [`SystemPromptLeakGuard`]: long verbatim runs of the system prompt in answers.

mod canary;
mod injection;
mod leak;
mod spotlight;

pub use canary::{CanaryConfig, CanaryGuard};
pub use injection::{
    InjectionConfig, InjectionGuard, OnAttack, SourcePolicy, USER_UNGROUNDED_THRESHOLD,
};
pub use leak::{LeakAction, LeakConfig, SystemPromptLeakGuard, shared_runs};
pub use spotlight::{SpotlightConfig, SpotlightGuard, SpotlightMode, SpotlightRoute};

use portcullis_core::Message;

/// Why a guard's config is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn system_message(text: &str) -> Option<Message> {
    // Built through serde so the message carries exactly the wire shape.
    serde_json::from_value(serde_json::json!({"role": "system", "content": text})).ok()
}

/// A chat request from its JSON.
#[cfg(test)]
fn req(v: serde_json::Value) -> portcullis_core::ChatRequest {
    serde_json::from_value(v).unwrap()
}
