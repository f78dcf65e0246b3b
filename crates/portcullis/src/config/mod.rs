//! The gateway's configuration: one TOML file, every setting defaulted so that no file is
//! needed, validated at start-up with errors that name the file, the key and the problem.

use portcullis_core::{FailureMode, Mode};
use portcullis_core::{Rollout, RolloutBy};
use portcullis_guards::{ParamsConfig, SizeConfig};
use portcullis_limits::{Price, UnknownModel};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod incident;
mod limits;
pub use incident::{Contact, IncidentConfig};
pub use limits::{LimitsConfig, Policy};

/// A configuration problem, said so that the user can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: String,
        key: String,
        message: String,
    },
}

impl ConfigError {
    /// A semantic problem found after parsing.
    pub fn invalid(path: &str, key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub store: StoreConfig,
    pub limits: LimitsConfig,
    pub pricing: PricingConfig,
    pub pipeline: PipelineConfig,
    pub unicode: Section<portcullis_guards::UnicodeConfig>,
    pub size: Section<SizeConfig>,
    pub params: Section<ParamsConfig>,
    pub pii: Section<portcullis_guards::PiiConfig>,
    pub injection: Section<portcullis_injection::InjectionConfig>,
    pub spotlight: Section<portcullis_injection::SpotlightConfig>,
    pub canary: Section<portcullis_injection::CanaryConfig>,
    pub moderation: Section<portcullis_moderation::ModerationConfig>,
    pub grounding: Section<portcullis_grounding::GroundingConfig>,
    pub alerts: crate::anomaly::AlertsConfig,
    pub admin: crate::admin::AdminConfig,
    pub output: OutputConfig,
    pub audit: crate::audit_log::AuditConfig,
    pub metrics: crate::scrape::MetricsConfig,
    pub review: crate::review::ReviewConfig,
    pub incident: IncidentConfig,
    /// Where the config came from, for messages (`<defaults>` when no file).
    #[serde(skip)]
    pub source: String,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Largest request body accepted (bytes); bigger bodies get 413.
    pub max_body_bytes: usize,
    /// Requests served at once (streams included); more wait up to `queue_ms`, then get 503.
    pub max_in_flight: usize,
    /// How long a request may wait for a place among those in flight, in milliseconds.
    pub queue_ms: u64,
    /// Longest a client may take to send its request headers, in seconds.
    pub header_timeout_s: u64,
    /// Longest a client may take to send its request body, in seconds.
    pub body_timeout_s: u64,
    /// Failed authentications one client address may make per minute before it is refused
    /// without a key lookup (0 turns the check off).
    pub failed_auth_per_minute: u32,
    /// Request texts larger than this (bytes) are judged on the blocking pool, off the async
    /// workers, so that a few huge requests cannot stall every other one.
    pub offload_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8787".into(),
            max_body_bytes: 4 * 1024 * 1024,
            max_in_flight: 2048,
            queue_ms: 1000,
            header_timeout_s: 10,
            body_timeout_s: 30,
            failed_auth_per_minute: 30,
            offload_bytes: 16 * 1024,
        }
    }
}

/// `[upstream]`: the provider the gateway forwards to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// OpenAI-compatible base URL, including `/v1`.
    pub base_url: String,
    /// Environment variable holding the provider key (never sent to clients).
    pub api_key_env: String,
    /// Serve the built-in deterministic model instead of calling a provider.
    pub mock: bool,
    /// Whole-request timeout in seconds (long generations stream for minutes).
    pub timeout_s: u64,
    /// Connection timeout in seconds.
    pub connect_timeout_s: u64,
    /// A streamed answer with no new bytes for this long (seconds) is cut as stalled.
    pub stream_idle_timeout_s: u64,
    /// Largest whole (non-streamed) answer accepted from the provider, in bytes.
    pub max_answer_bytes: usize,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            base_url: "https://api.openai.com/v1".into(),
            api_key_env: "OPENAI_API_KEY".into(),
            mock: false,
            timeout_s: 600,
            connect_timeout_s: 10,
            stream_idle_timeout_s: 300,
            max_answer_bytes: 64 * 1024 * 1024,
        }
    }
}

/// `[store]`: keys, audit log and spend ledger.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://FILE` (embedded default) or `postgres://…`.
    pub url: String,
    /// Where audit records wait when the store is unreachable.
    pub spool_dir: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite://portcullis.db".into(),
            spool_dir: "portcullis-spool".into(),
        }
    }
}

/// `[pricing]`: the built-in price table's overrides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PricingConfig {
    /// Extra or corrected models, USD per million tokens.
    pub models: BTreeMap<String, Price>,
    /// Price for models the table does not know.
    pub default: Option<Price>,
    /// `default` (price unknown models at `default`) or `refuse`.
    pub unknown_model: UnknownModel,
}

/// `[pipeline]`: the order guards run in. Names are the guard sections of this file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    pub input: Vec<String>,
    pub output: Vec<String>,
}

/// Guards that can judge requests.
pub const INPUT_GUARDS: [&str; 8] = [
    "unicode",
    "size",
    "params",
    "pii",
    "injection",
    "moderation",
    "spotlight",
    "canary",
];
/// Guards that can judge answers.
pub const OUTPUT_GUARDS: [&str; 6] = [
    "moderation",
    "pii",
    "canary",
    "grounding",
    "links",
    "system_prompt",
];

/// `[output]`: what answers must be — the JSON Schema they must match — and the leak guards
/// that are about answers only (`links`, `system_prompt` in `[pipeline] output`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// `[output.schema]`: structured output, with re-asks.
    pub schema: crate::structured::SchemaConfig,
    /// `[output.links]`: links and images to hosts outside an allow-list.
    pub links: Section<portcullis_guards::LinksConfig>,
    /// `[output.system_prompt]`: long verbatim runs of the system prompt in answers.
    pub system_prompt: Section<portcullis_injection::LeakConfig>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            input: INPUT_GUARDS.iter().map(|s| s.to_string()).collect(),
            output: OUTPUT_GUARDS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// A guard's section: how the pipeline runs it, plus the guard's own settings.
#[derive(Debug, Clone)]
pub struct Section<T> {
    /// `enforce`, `monitor` (record what it would do) or `off`.
    pub mode: Mode,
    /// What happens when the guard cannot decide (provider down, timeout).
    pub on_error: FailureMode,
    /// Longest the guard may take, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Staged rollout: an enforcing guard enforces for this share of principals (percent),
    /// monitors for the rest.
    pub rollout: Option<Rollout>,
    pub config: T,
}

// Hand-written rather than `#[serde(flatten)]`, which would silently accept misspelt keys.
impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Section<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        fn take<E: Error, V: serde::de::DeserializeOwned>(
            t: &mut toml::Table,
            key: &str,
        ) -> Result<Option<V>, E> {
            t.remove(key)
                .map(|v| {
                    v.try_into()
                        .map_err(|e: toml::de::Error| E::custom(format!("{key}: {}", e.message())))
                })
                .transpose()
        }
        let mode = take::<D::Error, Mode>(&mut table, "mode")?.unwrap_or(Mode::Enforce);
        let on_error =
            take::<D::Error, FailureMode>(&mut table, "on_error")?.unwrap_or(FailureMode::FailOpen);
        let timeout_ms = take::<D::Error, u64>(&mut table, "timeout_ms")?;
        let percent = take::<D::Error, u8>(&mut table, "rollout")?;
        let by = take::<D::Error, RolloutBy>(&mut table, "rollout_by")?;
        let rollout = rollout_setting(mode, percent, by).map_err(D::Error::custom)?;
        let config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| D::Error::custom(e.message()))?;
        Ok(Section {
            mode,
            on_error,
            timeout_ms,
            rollout,
            config,
        })
    }
}

/// Checks a section's `rollout` and `rollout_by` against its mode.
fn rollout_setting(
    mode: Mode,
    percent: Option<u8>,
    by: Option<RolloutBy>,
) -> Result<Option<Rollout>, String> {
    match (percent, by) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err("rollout_by: set `rollout = PERCENT` too, or remove it".into()),
        (Some(p), _) if p > 100 => Err(format!(
            "rollout: {p} is not a percentage; use 0 to 100 (the share of principals enforced)"
        )),
        (Some(_), _) if mode != Mode::Enforce => Err(format!(
            "rollout: applies to mode = \"enforce\" only (this guard is \"{}\"); a rollout enforces for a share and monitors the rest",
            mode.as_str()
        )),
        (Some(p), by) => Ok(Some(Rollout::new(p, by.unwrap_or_default()))),
    }
}

impl<T: Default> Default for Section<T> {
    fn default() -> Self {
        Section {
            mode: Mode::Enforce,
            on_error: FailureMode::FailOpen,
            timeout_ms: None,
            rollout: None,
            config: T::default(),
        }
    }
}

impl Config {
    /// Reads and validates `path`, or the defaults when `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            let mut c = Config {
                source: "<defaults>".into(),
                ..Config::default()
            };
            c.validate()?;
            return Ok(c);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| {
            ConfigError::invalid(origin, "(syntax)", e.to_string().trim().to_owned())
        })?;
        let mut c: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::invalid(origin, &key, e.into_inner().message().trim().to_owned())
        })?;
        c.source = origin.to_owned();
        c.validate()?;
        Ok(c)
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        let src = self.source.clone();
        if let Some((key, problem)) = self.review.problem() {
            return Err(ConfigError::invalid(&src, key, problem));
        }
        if let Some((key, problem)) = self.incident.problem() {
            return Err(ConfigError::invalid(&src, &key, problem));
        }
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::invalid(
                &src,
                "server.listen",
                format!(
                    "'{}' is not an address like 127.0.0.1:8787",
                    self.server.listen
                ),
            ));
        }
        if !(self.upstream.base_url.starts_with("http://")
            || self.upstream.base_url.starts_with("https://"))
        {
            return Err(ConfigError::invalid(
                &src,
                "upstream.base_url",
                "must start with http:// or https://",
            ));
        }
        let store = &self.store.url;
        if !(store.starts_with("sqlite:")
            || store.starts_with("postgres://")
            || store.starts_with("postgresql://"))
        {
            return Err(ConfigError::invalid(
                &src,
                "store.url",
                format!("'{store}' is neither sqlite://FILE nor postgres://…"),
            ));
        }
        let limits = &self.limits.url;
        if !(limits.starts_with("memory://")
            || limits.starts_with("redis://")
            || limits.starts_with("rediss://"))
        {
            return Err(ConfigError::invalid(
                &src,
                "limits.url",
                format!("'{limits}' is neither memory:// nor redis://…"),
            ));
        }
        if !(0.0..=1.0).contains(&self.limits.soft_budget) {
            return Err(ConfigError::invalid(
                &src,
                "limits.soft_budget",
                "must be between 0 and 1",
            ));
        }
        for (key, names, known) in [
            ("pipeline.input", &self.pipeline.input, &INPUT_GUARDS[..]),
            ("pipeline.output", &self.pipeline.output, &OUTPUT_GUARDS[..]),
        ] {
            for n in names {
                if !known.contains(&n.as_str()) {
                    return Err(ConfigError::invalid(
                        &src,
                        key,
                        format!("unknown guard '{n}'; known: {}", known.join(", ")),
                    ));
                }
            }
        }
        if let Err(e) = portcullis_guards::ParamsGuard::new(&self.params.config) {
            return Err(ConfigError::invalid(&src, "params", e.0));
        }
        if let Err(e) = portcullis_guards::LinksGuard::new(&self.output.links.config) {
            return Err(ConfigError::invalid(&src, "output.links.allow", e.0));
        }
        // Schema files are read and compiled now, so `portcullis check` reports a bad one.
        crate::structured::Schemas::load(&self.output.schema, &src)?;
        if self.output.system_prompt.config.min_words == 0 {
            return Err(ConfigError::invalid(
                &src,
                "output.system_prompt.min_words",
                "must be at least 1",
            ));
        }
        self.audit.validate(&src)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_means_working_defaults() {
        let c = Config::load(None).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8787");
        assert_eq!(c.store.url, "sqlite://portcullis.db");
        assert_eq!(c.limits.url, "memory://");
        assert_eq!(c.upstream.timeout_s, 600);
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let e = Config::parse("[server]\nlisten = 8787\n", "gw.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("gw.toml: server.listen:"), "{e}");
        let e = Config::parse("[upstream]\ntimeout = 5\n", "gw.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("upstream") && e.contains("timeout"), "{e}");
        let e = Config::parse("[server]\nlisten = \"nowhere\"\n", "gw.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.listen") && e.contains("nowhere"), "{e}");
        let e = Config::parse("[store]\nurl = \"mysql://x\"\n", "gw.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("store.url"), "{e}");
        let e = Config::parse("[pipeline]\ninput = [\"nope\"]\n", "gw.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown guard 'nope'"), "{e}");
    }

    #[test]
    fn guard_sections_carry_stage_settings_and_their_own() {
        let c = Config::parse(
            "[size]\nmode = \"monitor\"\non_error = \"fail_closed\"\nmax_messages = 3\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.size.mode, Mode::Monitor);
        assert_eq!(c.size.on_error, FailureMode::FailClosed);
        assert_eq!(c.size.config.max_messages, 3);
        assert!(Config::parse("[size]\nmax_mesages = 3\n", "t").is_err());
    }

    #[test]
    fn a_rollout_is_a_percentage_of_an_enforcing_guard() {
        let c = Config::parse(
            "[injection]\nrollout = 30\nrollout_by = \"user\"\n",
            "gw.toml",
        )
        .unwrap();
        assert_eq!(c.injection.rollout, Some(Rollout::new(30, RolloutBy::User)));
        let c = Config::parse("[pii]\nrollout = 5\n", "gw.toml").unwrap();
        assert_eq!(c.pii.rollout, Some(Rollout::new(5, RolloutBy::Key)));
        for (bad, says) in [
            ("[injection]\nrollout = 130\n", "not a percentage"),
            ("[injection]\nmode = \"monitor\"\nrollout = 30\n", "enforce"),
            ("[injection]\nrollout_by = \"user\"\n", "rollout = PERCENT"),
            (
                "[injection]\nrollout = 30\nrollout_by = \"team\"\n",
                "rollout_by",
            ),
        ] {
            let e = Config::parse(bad, "gw.toml").unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("injection"), "{bad}: {e}");
        }
    }

    #[test]
    fn review_floor_must_be_a_share() {
        let e = Config::parse("[review]\nmin_precision = 90\n", "gw.toml").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("gw.toml: review.min_precision: 90 is not a share"),
            "{e}"
        );
        let c = Config::parse("[review]\nmin_labels = 50\n", "gw.toml").unwrap();
        assert_eq!((c.review.min_labels, c.review.min_precision), (50, 0.9));
    }
}
