//! The params guard: picks the policy for a request (key, then team, then the default), lets a
//! requested route refine it — only ever tightening: the route's policy applies on top and the
//! caller's own applies again after it, so a route can pin a model or lower a ceiling but never
//! lift one — and turns the edits into a verdict with one finding per change.

use super::{ParamPolicy, ParamsConfig};
use crate::ConfigError;
use portcullis_core::guard::{Edit, GuardError, Input, Verdict};
use portcullis_core::{ChatRequest, Context, Finding, Guard};
use serde_json::Value;
use std::collections::BTreeMap;

/// Applies a [`ParamPolicy`] to every request: the key's, else the team's, else the default,
/// refined by the route's when the request names one.
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

    /// The caller's own policy: its key's, else its team's, else the default.
    pub fn policy_for(&self, key: Option<&str>, team: Option<&str>) -> &ParamPolicy {
        key.and_then(|k| self.keys.get(k))
            .or_else(|| team.and_then(|t| self.teams.get(t)))
            .unwrap_or(&self.policy)
    }

    /// The parameters a request ends with: the caller's policy, then the route's, then the
    /// caller's again (so the route cannot loosen it). `Err` is the refusal.
    pub fn sets_for(
        &self,
        req: &ChatRequest,
        key: Option<&str>,
        team: Option<&str>,
        route: Option<&str>,
    ) -> Result<Vec<(String, Value)>, Verdict> {
        let own = self.policy_for(key, team);
        let Some(route) = route.and_then(|r| self.routes.get(r)) else {
            return own.apply(req);
        };
        let mut r = req.clone();
        let mut touched: Vec<String> = Vec::new();
        for policy in [own, route, own] {
            for (name, value) in policy.apply(&r)? {
                if r.set_param(&name, value).is_ok() && !touched.contains(&name) {
                    touched.push(name);
                }
            }
        }
        Ok(touched
            .into_iter()
            .filter_map(|name| {
                let after = r.param(&name);
                (after != req.param(&name)).then(|| (name, after.unwrap_or(Value::Null)))
            })
            .collect())
    }
}

#[async_trait::async_trait]
impl Guard for ParamsGuard {
    fn name(&self) -> &str {
        "params"
    }

    async fn check_input(&self, input: &Input<'_>, ctx: &Context) -> Result<Verdict, GuardError> {
        let sets = self.sets_for(
            input.request,
            Some(ctx.principal.key_id.as_str()),
            ctx.principal.team.as_deref(),
            ctx.route.as_deref(),
        );
        Ok(match sets {
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
            g.sets_for(&r, None, team, route)
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
            .policy_for(Some("k-1"), Some("research"))
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

    #[test]
    fn a_route_may_tighten_a_callers_policy_but_never_loosen_it() {
        let g = ParamsGuard::new(
            &toml::from_str(
                "[keys.k-2.max_tokens]\nmax = 100\n[keys.k-2.temperature]\nmax = 0.3\n\
                 [routes.big.max_tokens]\nmax = 100000\n[routes.big.temperature]\nforce = 1.5\n\
                 [routes.tight.max_tokens]\nmax = 10",
            )
            .unwrap(),
        )
        .unwrap();
        let r = req(json!({"model":"m","messages":[],"max_tokens":100000,"temperature":0.2}));
        let sets: BTreeMap<String, Value> = g
            .sets_for(&r, Some("k-2"), None, Some("big"))
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(
            sets["max_tokens"],
            json!(100),
            "the route cannot lift the key's ceiling"
        );
        assert_eq!(
            sets["temperature"],
            json!(0.3),
            "nor force past the key's range"
        );
        let sets: BTreeMap<String, Value> = g
            .sets_for(&r, Some("k-2"), None, Some("tight"))
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(sets["max_tokens"], json!(10), "but it can lower it");
    }

    #[test]
    fn both_output_ceilings_are_governed_when_a_request_sends_both() {
        let g = ParamsGuard::new(&toml::from_str("[max_tokens]\nmax = 100").unwrap()).unwrap();
        let r = req(json!({"model":"m","messages":[],"max_tokens":100000,
                           "max_completion_tokens":100000}));
        let sets: BTreeMap<String, Value> = g
            .sets_for(&r, None, None, None)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(sets["max_tokens"], json!(100));
        assert_eq!(sets["max_completion_tokens"], json!(100));
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
