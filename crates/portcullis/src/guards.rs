//! Builds the pipeline from the configuration: the guard sections, in the order
//! `[pipeline]` lists them, each with its mode, failure policy and timeout.

use crate::config::{Config, Section};
use crate::upstream::Upstream;
use portcullis_core::{ApiError, ChatRequest, Context, Guard, Pipeline, Stage};
use portcullis_guards::{ParamsGuard, SizeGuard};
use std::sync::Arc;
use std::time::Duration;

fn stage<T>(section: &Section<T>, guard: Arc<dyn Guard>) -> Stage {
    Stage::new(guard)
        .mode(section.mode)
        .on_error(section.on_error)
        .timeout(section.timeout_ms.map(Duration::from_millis))
        .rollout(section.rollout)
}

/// A guard section that cannot be built; the message names the setting.
#[derive(Debug, thiserror::Error)]
#[error("guard '{guard}': {message}")]
pub struct BuildError {
    pub guard: String,
    pub message: String,
}

fn guard_error(guard: &str, e: impl std::fmt::Display) -> BuildError {
    BuildError {
        guard: guard.to_owned(),
        message: e.to_string(),
    }
}

/// Loads tokenizers and models now, so the first request does not pay for it.
pub fn warm_up() {
    use portcullis_core::tokens::Encoding;
    let _ = Encoding::O200k.count("warm up");
    let _ = Encoding::Cl100k.count("warm up");
    let _ = portcullis_injection::Detector::builtin().score("warm up");
    let _ = portcullis_moderation::classifier::Model::builtin().score("warm up");
    let _ = portcullis_pii::scan(
        "warm up ann@example.com 4111 1111 1111 1111 Ann Lee",
        &portcullis_pii::ScanOptions::default(),
    );
}

/// The input and output stages `config` asks for.
pub fn build(config: &Config, upstream: &Upstream) -> Result<Pipeline, BuildError> {
    Ok(Pipeline::new(
        input_stages(config, upstream, None)?,
        output_stages(config, upstream)?,
    ))
}

/// The guards that judge text sent to the provider without a chat around it (embedding and
/// moderation input): hidden text, size, and personal data and secrets — what may leave for
/// the provider.
/// Injection and moderation do not judge it: an embedding follows no instructions, and a
/// moderation request exists to carry harmful text to a classifier.
pub const TEXT_GUARDS: [&str; 3] = ["unicode", "size", "pii"];

/// The pipeline for embedding and moderation input: the configured [`TEXT_GUARDS`], in order.
pub fn build_text(config: &Config, upstream: &Upstream) -> Result<Pipeline, BuildError> {
    Ok(Pipeline::new(
        input_stages(config, upstream, Some(&TEXT_GUARDS))?,
        Vec::new(),
    ))
}

fn input_stages(
    config: &Config,
    upstream: &Upstream,
    only: Option<&[&str]>,
) -> Result<Vec<Stage>, BuildError> {
    let mut input = Vec::new();
    for name in &config.pipeline.input {
        if only.is_some_and(|o| !o.contains(&name.as_str())) {
            continue;
        }
        let s = match name.as_str() {
            "unicode" => Some(stage(
                &config.unicode,
                Arc::new(portcullis_guards::UnicodeGuard::new(&config.unicode.config)),
            )),
            "size" => Some(stage(
                &config.size,
                Arc::new(SizeGuard::new(&config.size.config)),
            )),
            "params" if !config.params.config.is_empty() => {
                let g = ParamsGuard::new(&config.params.config)
                    .map_err(|e| guard_error("params", e))?;
                Some(stage(&config.params, Arc::new(g)))
            }
            "moderation" if config.moderation.config.input => {
                Some(moderation(config, upstream)?.beside(config.moderation.config.concurrent))
            }
            "pii" if config.pii.config.input => Some(pii(config)?),
            "injection" => {
                let g = portcullis_injection::InjectionGuard::new(&config.injection.config)
                    .map_err(|e| guard_error("injection", e))?;
                Some(stage(&config.injection, Arc::new(g)))
            }
            "spotlight" if config.spotlight.config.is_on() => {
                let g = portcullis_injection::SpotlightGuard::new(&config.spotlight.config);
                Some(stage(&config.spotlight, Arc::new(g)))
            }
            "canary" if config.canary.config.enabled => Some(stage(
                &config.canary,
                Arc::new(portcullis_injection::CanaryGuard::new(
                    &config.canary.config,
                )),
            )),
            _ => None,
        };
        input.extend(s);
    }
    Ok(input)
}

fn output_stages(config: &Config, upstream: &Upstream) -> Result<Vec<Stage>, BuildError> {
    let mut output = Vec::new();
    for name in &config.pipeline.output {
        let s = match name.as_str() {
            "moderation" if config.moderation.config.output => Some(moderation(config, upstream)?),
            "pii" if config.pii.config.output => Some(pii(config)?),
            "canary" if config.canary.config.enabled => Some(stage(
                &config.canary,
                Arc::new(portcullis_injection::CanaryGuard::new(
                    &config.canary.config,
                )),
            )),
            "grounding" => {
                let g = portcullis_grounding::GroundingGuard::new(&config.grounding.config)
                    .map_err(|e| guard_error("grounding", e))?;
                Some(stage(&config.grounding, Arc::new(g)))
            }
            "links" if config.output.links.config.enabled => {
                let g = portcullis_guards::LinksGuard::new(&config.output.links.config)
                    .map_err(|e| guard_error("links", e))?;
                Some(stage(&config.output.links, Arc::new(g)))
            }
            "system_prompt" if config.output.system_prompt.config.enabled => Some(stage(
                &config.output.system_prompt,
                Arc::new(portcullis_injection::SystemPromptLeakGuard::new(
                    &config.output.system_prompt.config,
                )),
            )),
            _ => None,
        };
        output.extend(s);
    }
    Ok(output)
}

fn pii(config: &Config) -> Result<Stage, BuildError> {
    let g =
        portcullis_guards::PiiGuard::new(&config.pii.config).map_err(|e| guard_error("pii", e))?;
    Ok(stage(&config.pii, Arc::new(g)))
}

fn moderation(config: &Config, upstream: &Upstream) -> Result<Stage, BuildError> {
    use portcullis_moderation::{LocalModerator, ModerationGuard, Moderator, ProviderKind};
    let c = &config.moderation.config;
    let provider: Arc<dyn Moderator> = match c.provider {
        ProviderKind::Local => Arc::new(LocalModerator::builtin()),
        ProviderKind::Upstream => Arc::new(crate::upstream::moderation::UpstreamModerator::new(
            upstream.clone(),
            &c.model,
        )),
    };
    if c.sources.is_empty() && c.input {
        return Err(guard_error(
            "moderation",
            "sources is empty but input = true",
        ));
    }
    Ok(stage(
        &config.moderation,
        Arc::new(ModerationGuard::new(c, provider)),
    ))
}

/// Runs the input stages over `req`. Small requests are judged here; a request whose text is
/// over `offload_bytes` is judged on the blocking pool (at most `heavy`'s permits at once), so
/// a few huge requests cannot starve the async workers that every other request — and
/// `/readyz` — need.
pub async fn run_input(
    pipeline: &Arc<Pipeline>,
    heavy: &Arc<tokio::sync::Semaphore>,
    offload_bytes: usize,
    mut req: ChatRequest,
    ctx: &mut Context,
) -> (ChatRequest, Result<(), ApiError>) {
    let bytes: usize = req.segments().iter().map(|s| s.text.len()).sum();
    if bytes <= offload_bytes {
        let r = pipeline.run_input(&mut req, ctx).await;
        return (req, r);
    }
    let Ok(permit) = heavy.clone().acquire_owned().await else {
        let r = pipeline.run_input(&mut req, ctx).await;
        return (req, r);
    };
    let pipeline = pipeline.clone();
    let rt = tokio::runtime::Handle::current();
    let mut owned = std::mem::replace(
        ctx,
        Context::new(ctx.request_id.clone(), ctx.principal.clone()),
    );
    let joined = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let r = rt.block_on(pipeline.run_input(&mut req, &mut owned));
        (req, owned, r)
    })
    .await;
    match joined {
        Ok((req, owned, r)) => {
            *ctx = owned;
            (req, r)
        }
        Err(e) => (
            ChatRequest::default(),
            Err(ApiError::internal(format!("A guard failed: {e}"))),
        ),
    }
}
