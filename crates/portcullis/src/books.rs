//! The books: admission (rate, tokens, concurrency, money) before the upstream call, and
//! reconciliation with what was really spent after it — the "denial of wallet" defence.
//!
//! Admission returns a [`Ticket`]: settle it with the request's [`Spend`], or drop it and it
//! gives its reservation and budget hold back by itself, so no ending of a request — a client
//! that hangs up, a panic in a stream task — can leak a parallel slot or a budget hold.

use crate::auth::Caller;
use crate::config::{LimitsConfig, Policy};
use crate::metrics::Metrics;
use portcullis_core::{ApiError, Principal, Usage};
use portcullis_limits::{
    Admission, Budget, BudgetAdmission, BudgetDecision, BudgetHold, Decision, Limiter, Limits,
    Money, Pricing, Reservation, retry_headers,
};
use portcullis_store::{SpendEntry, SpendScope, Store};
use std::sync::Arc;

/// What a request asks of the books: its model, and the tokens it may use at most.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub model: &'a str,
    pub request_id: &'a str,
    /// Prompt tokens as the model's tokenizer counts them.
    pub prompt_tokens: u64,
    /// The output ceiling over every choice (`max_tokens` × `n`), or 0 for an embedding.
    pub output_tokens: u64,
}

/// What a request really consumed, as far as the gateway can know.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Spend {
    /// Nothing reached a model (refused before the call, connection failed, error answer).
    #[default]
    Nothing,
    /// The provider reported it.
    Reported(Usage),
    /// Counted by the gateway (prompt by the tokenizer, output as received): the stream ended
    /// early or the provider sent no usage.
    Estimated(Usage),
    /// Nothing can be known (the call may have run): the reservation is booked.
    Unknown,
}

impl Spend {
    /// What a failed upstream call spent: nothing when it never reached the provider, else
    /// unknown (the provider may have generated before the connection broke).
    pub fn of_failure(e: &ApiError) -> Spend {
        if e.code.as_deref() == Some("upstream_unreachable") {
            Spend::Nothing
        } else {
            Spend::Unknown
        }
    }

    /// Whether the figures are the gateway's estimate rather than the provider's report.
    pub fn estimated(&self) -> bool {
        matches!(self, Spend::Estimated(_) | Spend::Unknown)
    }
}

/// What admission granted. Settle it once with [`Books::settle`]; dropped unsettled, it
/// releases itself.
#[derive(Default)]
pub struct Ticket {
    headers: Vec<(&'static str, String)>,
    reservation: Option<Reservation>,
    limiter: Option<Arc<dyn Limiter>>,
    /// This request's worst-case cost, held against its budgets while it runs.
    hold: Option<BudgetHold>,
    charge: Option<Charge>,
    /// Prompt tokens counted at admission.
    pub prompt_tokens: u64,
    /// The output ceiling reserved at admission.
    pub output_tokens: u64,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("reservation", &self.reservation)
            .field("hold", &self.hold)
            .field("prompt_tokens", &self.prompt_tokens)
            .field("output_tokens", &self.output_tokens)
            .finish()
    }
}

/// Whom a request's spend is booked to.
#[derive(Debug, Clone)]
struct Charge {
    request_id: String,
    key_id: String,
    user: String,
    team: Option<String>,
}

impl Ticket {
    /// The `x-ratelimit-*` headers to send with the answer.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        self.headers.clone()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let (reservation, hold) = (self.reservation.take(), self.hold.take());
        if reservation.is_none() && hold.is_none() {
            return;
        }
        if let (Some(limiter), Ok(rt)) =
            (self.limiter.clone(), tokio::runtime::Handle::try_current())
        {
            rt.spawn(async move {
                if let Some(r) = reservation
                    && let Err(e) = limiter.release(&r).await
                {
                    tracing::warn!(error = %e, "could not release a rate-limit reservation");
                }
                if let Some(h) = hold
                    && let Err(e) = limiter.release_budgets(&h).await
                {
                    tracing::warn!(error = %e, "could not release a budget hold");
                }
            });
        }
    }
}

/// A refusal at admission, with the headers that tell the client when to retry.
#[derive(Debug)]
pub struct Refusal {
    pub error: ApiError,
    pub headers: Vec<(&'static str, String)>,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Refusal {
            error,
            headers: Vec::new(),
        }
    }
}

/// Limits, budgets and prices.
pub struct Books {
    limiter: Arc<dyn Limiter>,
    pricing: Pricing,
    config: LimitsConfig,
    store: Store,
    metrics: Arc<Metrics>,
    /// Killed models are refused at admission, where every route names its model.
    kills: Option<Arc<crate::kill::KillSwitch>>,
}

fn usd(v: Option<f64>) -> Option<Money> {
    v.map(|x| (x * 1_000_000.0).round() as Money)
}

/// Seeding rounds a hold may need before it is answered (one per counter missing, normally).
const SEED_ROUNDS: usize = 3;

impl Books {
    /// Books over `limiter`, `store` and `pricing`.
    pub fn new(
        limiter: Arc<dyn Limiter>,
        pricing: Pricing,
        config: LimitsConfig,
        store: Store,
        metrics: Arc<Metrics>,
    ) -> Books {
        Books {
            limiter,
            pricing,
            config,
            store,
            metrics,
            kills: None,
        }
    }

    /// These books, refusing models the kill switch stops.
    pub fn with_kills(mut self, kills: Arc<crate::kill::KillSwitch>) -> Books {
        self.kills = Some(kills);
        self
    }

    /// The same limiter state, store and kill switch under new prices and limits (a reload).
    pub fn reconfigured(&self, pricing: Pricing, config: LimitsConfig) -> Books {
        Books {
            limiter: self.limiter.clone(),
            pricing,
            config,
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            kills: self.kills.clone(),
        }
    }

    /// Whether the limits backend answers.
    pub async fn ping(&self) -> Result<(), String> {
        self.limiter.ping().await.map_err(|e| e.to_string())
    }

    /// Output tokens a request without `max_tokens` may use, for the reservation.
    pub fn default_max_tokens(&self) -> u64 {
        self.config.default_max_tokens
    }

    /// The scopes a request is charged to, with their policies.
    fn scopes(&self, caller: &Caller, p: &Principal) -> Vec<(String, SpendScope, Policy)> {
        let c = &self.config;
        let key_policy: Policy = serde_json::from_value(caller.limits.clone()).unwrap_or_default();
        let user = p.end_user.clone().unwrap_or_else(|| p.user.clone());
        let mut out = vec![(
            format!("key:{}", caller.key_id),
            SpendScope::Key(caller.key_id.clone()),
            key_policy.or(&c.per_key),
        )];
        // A service key's end users are named `<key>/<user>` and never match a configured
        // user section: they cannot spend a real user's limits.
        let user_policy = if p.end_user.is_some() {
            Policy::default()
        } else {
            c.users.get(&user).cloned().unwrap_or_default()
        }
        .or(&c.per_user);
        out.push((format!("user:{user}"), SpendScope::User(user), user_policy));
        if let Some(t) = &p.team {
            let tp = c.teams.get(t).cloned().unwrap_or_default();
            out.push((format!("team:{t}"), SpendScope::Team(t.clone()), tp));
        }
        out.push(("global".into(), SpendScope::Global, c.global.clone()));
        out.retain(|(_, _, pol)| !pol.is_empty());
        out
    }

    /// Admits the request or says why not.
    pub async fn admit(
        &self,
        caller: &Caller,
        principal: &Principal,
        claim: Claim<'_>,
    ) -> Result<Ticket, Refusal> {
        let charge = Charge {
            request_id: claim.request_id.to_owned(),
            key_id: caller.key_id.clone(),
            user: principal
                .end_user
                .clone()
                .unwrap_or_else(|| principal.user.clone()),
            team: principal.team.clone(),
        };
        if let Some(refusal) = self
            .kills
            .as_ref()
            .and_then(|k| k.current().model(claim.model))
        {
            return Err(refusal.into());
        }
        let Some(_) = self.pricing.price(claim.model) else {
            return Err(ApiError::policy(
                "model_not_priced",
                format!(
                    "The model '{}' has no price in this gateway's table and policy refuses unpriced models.",
                    claim.model
                ),
            )
            .with_param("model")
            .into());
        };
        let mut ticket = Ticket::default();
        ticket.charge = Some(charge);
        ticket.prompt_tokens = claim.prompt_tokens;
        ticket.output_tokens = claim.output_tokens;
        let scopes = self.scopes(caller, principal);
        if scopes.is_empty() {
            return Ok(ticket);
        }
        // Money first: a request that would break a budget is refused before it costs anything.
        let soft = (self.config.soft_budget * 100.0).round().clamp(0.0, 100.0) as u8;
        let mut budgets = Vec::new();
        for (id, _, p) in &scopes {
            if let Some(l) = usd(p.budget_daily_usd) {
                budgets.push((id.clone(), Budget::daily(l).with_soft_percent(soft)));
            }
            if let Some(l) = usd(p.budget_monthly_usd) {
                budgets.push((id.clone(), Budget::monthly(l).with_soft_percent(soft)));
            }
        }
        if !budgets.is_empty() {
            let worst = self
                .pricing
                .worst_case(claim.model, claim.prompt_tokens, claim.output_tokens)
                .unwrap_or(0);
            let ask = BudgetAdmission {
                budgets,
                worst,
                seeds: Vec::new(),
            };
            ticket.hold = self.hold_budgets(ask, &scopes).await?;
            ticket.limiter = Some(self.limiter.clone());
        }
        let limits: Vec<(String, Limits)> = scopes
            .iter()
            .map(|(id, _, p)| (id.clone(), p.limits()))
            .filter(|(_, l)| !l.is_empty())
            .collect();
        if limits.is_empty() {
            return Ok(ticket);
        }
        let admission = Admission {
            scopes: limits,
            tokens: claim.prompt_tokens.saturating_add(claim.output_tokens),
        };
        match self.limiter.admit(&admission).await {
            Ok(Decision::Admitted(r, head)) => {
                if r.degraded {
                    self.metrics.alert(
                        "limits_backend_down",
                        "limits backend unreachable; admitting without limits (fail_open)",
                    );
                }
                ticket.headers = head.headers();
                ticket.reservation = Some(r);
                ticket.limiter = Some(self.limiter.clone());
                Ok(ticket)
            }
            Ok(Decision::Refused(f)) => {
                let mut headers = f.headroom.headers();
                headers.extend(retry_headers(f.retry_after));
                Err(Refusal {
                    error: ApiError::rate_limited(f.message()),
                    headers,
                })
            }
            Err(e) => {
                self.metrics.alert(
                    "limits_backend_down",
                    &format!("limits backend unreachable; refusing (fail_closed): {e}"),
                );
                Err(ApiError::unavailable(
                    "limits_unavailable",
                    "The gateway cannot check rate limits right now and policy is fail_closed; try again shortly.",
                )
                .into())
            }
        }
    }

    /// Holds the worst case against every budget at once (atomically, and shared by every
    /// replica when the limiter is Redis), seeding a period's counter from the ledger the first
    /// time it is used. `None` when the ledger cannot be read and policy is fail-open.
    async fn hold_budgets(
        &self,
        mut ask: BudgetAdmission,
        scopes: &[(String, SpendScope, Policy)],
    ) -> Result<Option<BudgetHold>, Refusal> {
        let unavailable = || -> Refusal {
            ApiError::unavailable(
                "ledger_unavailable",
                "The gateway cannot check budgets right now; try again shortly.",
            )
            .into()
        };
        let fail_closed = self.config.on_error == portcullis_limits::FailMode::FailClosed;
        for _ in 0..SEED_ROUNDS {
            match self.limiter.hold_budgets(&ask).await {
                Ok(BudgetDecision::Held(hold, standings)) => {
                    for s in standings.iter().filter(|s| s.alert) {
                        self.metrics.alert("budget_soft_limit", &s.alert_message());
                    }
                    return Ok(Some(hold));
                }
                Ok(BudgetDecision::Refused(f)) => {
                    return Err(Refusal {
                        error: ApiError::insufficient_quota(f.message()),
                        headers: f.headers(),
                    });
                }
                Ok(BudgetDecision::NeedSeed(need)) => {
                    for n in need {
                        let Some((_, scope, _)) = scopes.iter().find(|(id, _, _)| *id == n.scope)
                        else {
                            continue;
                        };
                        match self.store.spend_total(scope, n.period.start_ms).await {
                            Ok(total) => ask.seeds.push(n.answer(total)),
                            Err(e) => {
                                // Never seed a guess: a seed sticks for the whole period.
                                self.metrics.alert(
                                    "ledger_unavailable",
                                    &format!("cannot read spend: {e}"),
                                );
                                return if fail_closed {
                                    Err(unavailable())
                                } else {
                                    Ok(None)
                                };
                            }
                        }
                    }
                }
                Err(e) => {
                    self.metrics.alert(
                        "limits_backend_down",
                        &format!("budgets unavailable; refusing (fail_closed): {e}"),
                    );
                    return Err(ApiError::unavailable(
                        "limits_unavailable",
                        "The gateway cannot check budgets right now and policy is fail_closed; try again shortly.",
                    )
                    .into());
                }
            }
        }
        if fail_closed {
            Err(unavailable())
        } else {
            Ok(None)
        }
    }

    /// The usage a spend books: the provider's report, the gateway's count, or — when nothing
    /// can be known — the whole reservation.
    pub fn usage_of(ticket: &Ticket, spend: &Spend) -> Option<Usage> {
        match spend {
            Spend::Nothing => None,
            Spend::Reported(u) | Spend::Estimated(u) => Some(*u),
            Spend::Unknown => Some(Usage {
                prompt_tokens: ticket.prompt_tokens,
                completion_tokens: ticket.output_tokens,
                total_tokens: ticket.prompt_tokens.saturating_add(ticket.output_tokens),
                cached_tokens: 0,
            }),
        }
    }

    /// Reconciles a ticket with what the call really used, and books its cost.
    pub async fn settle(&self, mut ticket: Ticket, model: &str, spend: Spend) {
        let usage = Books::usage_of(&ticket, &spend);
        let limiter = ticket.limiter.take();
        if let (Some(r), Some(limiter)) = (ticket.reservation.take(), &limiter) {
            let actual = usage.map_or(0, |u| u.prompt_tokens.saturating_add(u.completion_tokens));
            if let Err(e) = limiter.settle(&r, actual).await {
                tracing::warn!(error = %e, "could not settle a rate-limit reservation");
            }
        }
        let Some(hold) = ticket.hold.take() else {
            return;
        };
        let cost = usage.map_or(0, |u| self.cost_micros(model, &u).unwrap_or(0));
        // Settle the counters first, then book the ledger: a counter re-seeded in between then
        // neither misses nor double-counts this cost.
        if let Some(limiter) = &limiter
            && let Err(e) = limiter.settle_budgets(&hold, cost).await
        {
            tracing::warn!(error = %e, "could not settle a budget hold");
        }
        // The audit writer books every request's spend in batches; a budgeted request is booked
        // here at once, at the hold's time, so the ledger and the counters agree on its period.
        if let (Some(u), Some(c)) = (usage, ticket.charge.take()) {
            let entry = SpendEntry {
                request_id: c.request_id,
                time_ms: hold.at_ms,
                key_id: Some(c.key_id),
                user: Some(c.user),
                team: c.team,
                model: Some(model.to_owned()),
                cost_micros: cost,
                prompt_tokens: u.prompt_tokens as i64,
                completion_tokens: u.completion_tokens as i64,
                usage_estimated: spend.estimated(),
            };
            if let Err(e) = self.store.record_spend(&entry).await {
                self.metrics
                    .alert("ledger_unavailable", &format!("cannot record spend: {e}"));
            }
        }
    }

    /// The cost of `usage` on `model`, in micro-dollars, when the model is priced.
    pub fn cost_micros(&self, model: &str, usage: &Usage) -> Option<i64> {
        self.pricing.cost(
            model,
            usage.prompt_tokens,
            usage.cached_tokens,
            usage.completion_tokens,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spend_books_the_report_the_estimate_or_the_reservation() {
        let mut t = Ticket::default();
        t.prompt_tokens = 10;
        t.output_tokens = 500;
        let u = Usage {
            prompt_tokens: 10,
            completion_tokens: 7,
            total_tokens: 17,
            cached_tokens: 0,
        };
        assert_eq!(Books::usage_of(&t, &Spend::Nothing), None);
        assert_eq!(Books::usage_of(&t, &Spend::Reported(u)), Some(u));
        assert_eq!(Books::usage_of(&t, &Spend::Estimated(u)), Some(u));
        let all = Books::usage_of(&t, &Spend::Unknown).unwrap();
        assert_eq!((all.prompt_tokens, all.completion_tokens), (10, 500));
        assert!(Spend::Unknown.estimated() && Spend::Estimated(u).estimated());
        assert!(!Spend::Reported(u).estimated());
    }
}
