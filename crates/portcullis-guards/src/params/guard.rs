//! The params guard: picks the policy for a request (route, then key, then team, then the
//! default) and turns its edits into a verdict with one finding per change.

use super::{ParamPolicy, ParamsConfig};
use crate::ConfigError;
use portcullis_core::guard::{Edit, GuardError, Input, Verdict};
use portcullis_core::{Context, Finding, Guard};
use std::collections::BTreeMap;

/// Applies a [`ParamPolicy`] to every request: the route's, else the team's, else the default.
#[derive(Debug, Clone)]
pub struct ParamsGuard {
    policy: ParamPolicy,
    teams: BTreeMap<String, ParamPolicy>,
    keys: BTreeMap<String, ParamPolicy>,
    routes: BTreeMap<String, ParamPolicy>,
}

impl ParamsGuard {
    /// A guard from config, validated.
    pub fn new(config: &ParamsConfig) -> Result<Self, ConfigError> {
        let scoped = |map: &BTreeMap<String, ParamsConfig>, kind: &str| {
            map.iter()
                .map(|(name, c)| {
                    config
                        .refined_by(c)
                        .resolve()
                        .map(|p| (name.clone(), p))
                        .map_err(|e| ConfigError(format!("{kind}.{name}: {}", e.0)))
                })
                .collect::<Result<BTreeMap<_, _>, _>>()
        };
        Ok(ParamsGuard {
            policy: config.resolve()?,
            teams: scoped(&config.teams, "teams")?,
            keys: scoped(&config.keys, "keys")?,
            routes: scoped(&config.routes, "routes")?,
        })
    }

    /// The policy for a request with gateway key `key`, from `team`, on `route` (the most
    /// specific one configured: route, then key, then team, then the default).
    pub fn policy_for(
        &self,
        key: Option<&str>,
        team: Option<&str>,
        route: Option<&str>,
    ) -> &ParamPolicy {
        route
            .and_then(|r| self.routes.get(r))
            .or_else(|| key.and_then(|k| self.keys.get(k)))
            .or_else(|| team.and_then(|t| self.teams.get(t)))
            .unwrap_or(&self.policy)
    }
}

#[async_trait::async_trait]
impl Guard for ParamsGuard {
    fn name(&self) -> &str {
        "params"
    }

    async fn check_input(&self, input: &Input<'_>, ctx: &Context) -> Result<Verdict, GuardError> {
        let policy = self.policy_for(
            Some(ctx.principal.key_id.as_str()),
            ctx.principal.team.as_deref(),
            ctx.route.as_deref(),
        );
        Ok(match policy.apply(input.request) {
            Err(refusal) => refusal,
            Ok(sets) if sets.is_empty() => Verdict::allow(),
            Ok(sets) => {
                let findings = sets
                    .iter()
                    .map(|(n, _)| Finding::new("param_changed", "params", 1.0).note(n.clone()))
                    .collect();
                let edits = sets
                    .into_iter()
                    .map(|(name, value)| Edit::SetParam { name, value })
                    .collect();
                Verdict::transform(edits, findings)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::policy::tests::req;
    use serde_json::{Value, json};

    #[tokio::test]
    async fn teams_and_routes_refine_the_default() {
        let g = ParamsGuard::new(
            &toml::from_str(
                "preset = \"conservative\"\n[teams.research.temperature]\nmax = 1.0\n[routes.rag]\npin_model = \"gpt-4o-mini\"\n[keys.k-1.temperature]\nforce = 0.0",
            )
            .unwrap(),
        )
        .unwrap();
        let r = req(json!({"model":"gpt-4o","messages":[],"temperature":0.8}));
        let sets = |team: Option<&str>, route: Option<&str>| -> BTreeMap<String, Value> {
            g.policy_for(None, team, route)
                .apply(&r)
                .unwrap()
                .into_iter()
                .collect()
        };
        assert_eq!(sets(None, None)["temperature"], json!(0.3));
        let research = sets(Some("research"), None);
        assert!(
            !research.contains_key("temperature"),
            "0.8 is within the team's range"
        );
        assert_eq!(research["max_tokens"], json!(500), "the rest is inherited");
        assert_eq!(
            sets(Some("research"), Some("rag"))["model"],
            json!("gpt-4o-mini")
        );
        let key: BTreeMap<String, Value> = g
            .policy_for(Some("k-1"), Some("research"), None)
            .apply(&r)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(
            key["temperature"],
            json!(0.0),
            "a key's policy wins over its team's"
        );
        assert_eq!(key["max_tokens"], json!(500));
        assert!(
            ParamsGuard::new(
                &toml::from_str("[teams.x.temperature]\nmin = 2.0\nmax = 1.0").unwrap()
            )
            .is_err()
        );
    }

    #[tokio::test]
    async fn the_guard_reports_what_it_changed() {
        let g = ParamsGuard::new(&toml::from_str("preset = \"conservative\"").unwrap()).unwrap();
        let r =
            req(json!({"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.9}));
        let segs = r.segments();
        let ctx = Context::new("t", portcullis_core::Principal::default());
        let v = g
            .check_input(
                &Input {
                    request: &r,
                    segments: &segs,
                },
                &ctx,
            )
            .await
            .unwrap();
        assert!(matches!(v.action, portcullis_core::Action::Transform(ref e) if e.len() == 5));
        assert!(
            v.findings
                .iter()
                .any(|f| f.note.as_deref() == Some("temperature"))
        );
    }
}
