//! Guards that judge the shape of a request rather than its meaning: how big it is, and which
//! model parameters it may use. Content detectors (PII, injection, moderation) live in their
//! own crates.

pub mod params;
pub mod size;

pub use params::{ParamPolicy, ParamRule, ParamsConfig, ParamsGuard, Preset};
pub use size::{SizeConfig, SizeGuard};

/// A guard's configuration does not make sense; the message names the setting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);
