//! The books: admission (rate, tokens, concurrency, money) before the upstream call, and
//! reconciliation with real usage after it — the "denial of wallet" defence.

use crate::auth::Caller;
use crate::config::{LimitsConfig, Policy};
use crate::metrics::Metrics;
use portcullis_core::{ApiError, ChatRequest, Principal, Usage, tokens};
use portcullis_limits::{
    Admission, BudgetWindow, Decision, Limiter, Limits, Money, Pricing, Reservation,
};
use portcullis_store::{SpendEntry, SpendScope, Store};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// What admission granted; settle or release it exactly once.
#[derive(Debug, Default)]
pub struct Ticket {
    headers: Vec<(&'static str, String)>,
    reservation: Option<Reservation>,
    /// Budget scopes holding this request's worst-case cost while it runs.
    held: Vec<(String, Money)>,
    charge: Option<Charge>,
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
    in_flight: Mutex<HashMap<String, Money>>,
    soft_alerted: Mutex<HashSet<String>>,
}

struct BudgetScope {
    id: String,
    scope: SpendScope,
    daily: Option<Money>,
    monthly: Option<Money>,
}

fn usd(v: Option<f64>) -> Option<Money> {
    v.map(|x| (x * 1_000_000.0).round() as Money)
}

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
            in_flight: Mutex::new(HashMap::new()),
            soft_alerted: Mutex::new(HashSet::new()),
        }
    }

    /// Whether the limits backend answers.
    pub async fn ping(&self) -> Result<(), String> {
        self.limiter.ping().await.map_err(|e| e.to_string())
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
        let user_policy = c
            .users
            .get(&user)
            .cloned()
            .unwrap_or_default()
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
        req: &ChatRequest,
        request_id: &str,
    ) -> Result<Ticket, Refusal> {
        let charge = Charge {
            request_id: request_id.to_owned(),
            key_id: caller.key_id.clone(),
            user: principal
                .end_user
                .clone()
                .unwrap_or_else(|| principal.user.clone()),
            team: principal.team.clone(),
        };
        let Some(_) = self.pricing.price(&req.model) else {
            return Err(ApiError::policy(
                "model_not_priced",
                format!(
                    "The model '{}' has no price in this gateway's table and policy refuses unpriced models.",
                    req.model
                ),
            )
            .with_param("model")
            .into());
        };
        let scopes = self.scopes(caller, principal);
        if scopes.is_empty() {
            return Ok(Ticket {
                charge: Some(charge),
                ..Ticket::default()
            });
        }
        let prompt = tokens::count_prompt(req);
        let output = req
            .max_output_tokens()
            .unwrap_or(self.config.default_max_tokens);
        let mut ticket = Ticket {
            charge: Some(charge),
            ..Ticket::default()
        };
        // Money first: a request that would break a budget is refused before it costs anything.
        let budgets: Vec<BudgetScope> = scopes
            .iter()
            .filter(|(_, _, p)| p.budget_daily_usd.is_some() || p.budget_monthly_usd.is_some())
            .map(|(id, scope, p)| BudgetScope {
                id: id.clone(),
                scope: scope.clone(),
                daily: usd(p.budget_daily_usd),
                monthly: usd(p.budget_monthly_usd),
            })
            .collect();
        if !budgets.is_empty() {
            let worst = self
                .pricing
                .worst_case(&req.model, prompt, output)
                .unwrap_or(0);
            self.check_budgets(&budgets, worst).await?;
            if let Ok(mut f) = self.in_flight.lock() {
                for b in &budgets {
                    *f.entry(b.id.clone()).or_default() += worst;
                    ticket.held.push((b.id.clone(), worst));
                }
            }
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
            tokens: prompt + output,
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
                Ok(ticket)
            }
            Ok(Decision::Refused(f)) => {
                self.unhold(&mut ticket);
                let mut headers = f.headroom.headers();
                headers.push(("retry-after", f.retry_after.as_secs().max(1).to_string()));
                headers.push(("retry-after-ms", f.retry_after.as_millis().to_string()));
                Err(Refusal {
                    error: ApiError::rate_limited(f.message()),
                    headers,
                })
            }
            Err(e) => {
                self.unhold(&mut ticket);
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

    async fn check_budgets(&self, budgets: &[BudgetScope], worst: Money) -> Result<(), Refusal> {
        let now = portcullis_store::now_ms();
        let day = BudgetWindow::Day.period(now).start_ms;
        let month = BudgetWindow::Month.period(now).start_ms;
        for b in budgets {
            let in_flight = self
                .in_flight
                .lock()
                .map(|f| f.get(&b.id).copied().unwrap_or(0))
                .unwrap_or(0);
            for (limit, since, period) in [(b.daily, day, "daily"), (b.monthly, month, "monthly")] {
                let Some(limit) = limit else { continue };
                let spent = match self.store.spend_total(&b.scope, since).await {
                    Ok(s) => s,
                    Err(e) => {
                        self.metrics
                            .alert("ledger_unavailable", &format!("cannot read spend: {e}"));
                        if self.config.on_error == portcullis_limits::FailMode::FailClosed {
                            return Err(ApiError::unavailable(
                                "ledger_unavailable",
                                "The gateway cannot check budgets right now; try again shortly.",
                            )
                            .into());
                        }
                        continue;
                    }
                };
                if spent + in_flight + worst > limit {
                    return Err(ApiError::insufficient_quota(format!(
                        "The {period} budget of ${:.2} for '{}' would be exceeded (spent ${:.4}, this request may cost up to ${:.4}).",
                        limit as f64 / 1e6,
                        b.id,
                        (spent + in_flight) as f64 / 1e6,
                        worst as f64 / 1e6
                    ))
                    .into());
                }
                let soft = (limit as f64 * self.config.soft_budget) as Money;
                if spent + in_flight + worst >= soft {
                    let mark = format!("{}:{period}:{since}", b.id);
                    let first = self
                        .soft_alerted
                        .lock()
                        .map(|mut s| s.insert(mark))
                        .unwrap_or(false);
                    if first {
                        self.metrics.alert(
                            "budget_soft_limit",
                            &format!(
                                "'{}' has used {:.0} % of its {period} budget",
                                b.id,
                                (spent + in_flight + worst) as f64 * 100.0 / limit as f64
                            ),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    fn unhold(&self, ticket: &mut Ticket) {
        if let Ok(mut f) = self.in_flight.lock() {
            for (id, amount) in ticket.held.drain(..) {
                if let Some(v) = f.get_mut(&id) {
                    *v -= amount;
                    if *v <= 0 {
                        f.remove(&id);
                    }
                }
            }
        }
    }

    /// Reconciles a ticket with what the call really used, and books its cost.
    pub async fn settle(&self, mut ticket: Ticket, model: &str, usage: Option<&Usage>) {
        if let Some(r) = ticket.reservation.take() {
            let actual = usage.map_or(r.tokens, |u| u.prompt_tokens + u.completion_tokens);
            if let Err(e) = self.limiter.settle(&r, actual).await {
                tracing::warn!(error = %e, "could not settle a rate-limit reservation");
            }
        }
        // The audit writer books every request's spend in batches; a request under a budget is
        // booked here at once, so the next admission already sees it.
        let budgeted = !ticket.held.is_empty();
        if let (true, Some(u), Some(c)) = (budgeted, usage, ticket.charge.take()) {
            let cost = self.cost_micros(model, u).unwrap_or(0);
            let entry = SpendEntry {
                request_id: c.request_id,
                time_ms: portcullis_store::now_ms(),
                key_id: Some(c.key_id),
                user: Some(c.user),
                team: c.team,
                model: Some(model.to_owned()),
                cost_micros: cost,
                prompt_tokens: u.prompt_tokens as i64,
                completion_tokens: u.completion_tokens as i64,
            };
            if let Err(e) = self.store.record_spend(&entry).await {
                self.metrics
                    .alert("ledger_unavailable", &format!("cannot record spend: {e}"));
            }
        }
        self.unhold(&mut ticket);
    }

    /// Gives back a ticket whose call failed.
    pub async fn release(&self, mut ticket: Ticket) {
        if let Some(r) = ticket.reservation.take()
            && let Err(e) = self.limiter.release(&r).await
        {
            tracing::warn!(error = %e, "could not release a rate-limit reservation");
        }
        self.unhold(&mut ticket);
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
