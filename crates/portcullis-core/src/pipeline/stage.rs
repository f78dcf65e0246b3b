//! A stage: one guard in its place, with the mode (enforce / monitor / off), the failure
//! policy and the timeout the pipeline applies to it.

use super::rollout::Rollout;
use crate::context::Principal;
use crate::guard::Guard;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// How a stage acts on its verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Blocks and transforms take effect.
    #[default]
    Enforce,
    /// Verdicts are recorded, nothing is changed or refused: for trying a policy out.
    Monitor,
    /// The stage does not run.
    Off,
}

impl Mode {
    /// The name used in config, audit records, metrics labels and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
            Mode::Off => "off",
        }
    }
}

/// What happens when a guard cannot decide (provider down, timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Let the request through and record the error.
    #[default]
    FailOpen,
    /// Refuse the request with 503.
    FailClosed,
}

/// One guard in its place, with how the pipeline treats it.
#[derive(Clone)]
pub struct Stage {
    pub guard: Arc<dyn Guard>,
    pub mode: Mode,
    pub on_error: FailureMode,
    pub timeout: Option<Duration>,
    /// An input check that runs while the upstream call is under way (it may block or flag,
    /// not edit): its latency hides behind the model's, and a refusal discards the answer.
    pub beside: bool,
    /// When set, an enforcing stage enforces for this share of principals only.
    pub rollout: Option<Rollout>,
}

impl Stage {
    /// An enforcing, fail-open stage with no timeout.
    pub fn new(guard: Arc<dyn Guard>) -> Self {
        Stage {
            guard,
            mode: Mode::Enforce,
            on_error: FailureMode::FailOpen,
            timeout: None,
            beside: false,
            rollout: None,
        }
    }

    /// Runs the stage beside the upstream call instead of before it.
    pub fn beside(mut self, beside: bool) -> Self {
        self.beside = beside;
        self
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Enforces for a share of principals only (monitor for the rest).
    pub fn rollout(mut self, rollout: Option<Rollout>) -> Self {
        self.rollout = rollout;
        self
    }

    /// The mode this stage runs in for `principal`: its configured mode, narrowed to monitor
    /// for principals outside an enforcing stage's rollout share.
    pub fn mode_for(&self, principal: &Principal) -> Mode {
        match (self.mode, self.rollout) {
            (Mode::Enforce, Some(r)) => r.mode_for(self.guard.name(), principal),
            (mode, _) => mode,
        }
    }

    /// Sets the failure policy.
    pub fn on_error(mut self, on_error: FailureMode) -> Self {
        self.on_error = on_error;
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }
}

impl std::fmt::Debug for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stage")
            .field("guard", &self.guard.name())
            .field("mode", &self.mode)
            .field("on_error", &self.on_error)
            .field("timeout", &self.timeout)
            .field("rollout", &self.rollout)
            .finish()
    }
}
