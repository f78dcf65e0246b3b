//! Prices: what a call costs, from real usage, in integer micro-dollars (no floats on the
//! ledger path). Uncached prompt tokens are priced as input, cached ones as cached input,
//! completion (reasoning included) as output — never every token as output.
//!
//! Prices are kept per token in pico-dollars (exact for any list price with up to six decimals
//! per million tokens); a request's cost is rounded **up** to the micro-dollar once, so the
//! ledger never under-charges and the sum of a ledger is exact to well below a cent.

use serde::Deserialize;
use std::collections::BTreeMap;

/// Micro-dollars (1e-6 USD), the unit of every ledger amount and budget.
pub type Money = i64;

/// One micro-dollar per this many pico-dollars.
const PICOS_PER_MICRO: i128 = 1_000_000;

/// USD per million tokens. Config: `{ input = 2.5, cached_input = 1.25, output = 10.0 }`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Uncached prompt tokens.
    pub input: f64,
    /// Cached prompt tokens; defaults to `input` when the model has no cache discount.
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// Completion tokens, reasoning included.
    pub output: f64,
}

/// Pico-dollars per token for a USD-per-million price (negative or NaN count as zero).
fn picos_per_token(usd_per_million: f64) -> i128 {
    if usd_per_million.is_finite() && usd_per_million > 0.0 {
        (usd_per_million * 1e6).round() as i128
    } else {
        0
    }
}

impl Price {
    /// Whether every figure is a finite, non-negative number (else config should be refused).
    pub fn is_valid(&self) -> bool {
        [self.input, self.cached_input.unwrap_or(0.0), self.output]
            .iter()
            .all(|p| p.is_finite() && *p >= 0.0)
    }

    /// Cost of `usage` at this price, rounded up to the micro-dollar.
    pub fn cost(&self, usage: TokenUsage) -> Money {
        // Token counts come from clients and prices from config: saturate, never wrap.
        let cached = usage.cached.min(usage.prompt);
        let part = |tokens: u64, usd: f64| i128::from(tokens).saturating_mul(picos_per_token(usd));
        let picos = part(usage.prompt - cached, self.input)
            .saturating_add(part(cached, self.cached_input.unwrap_or(self.input)))
            .saturating_add(part(usage.completion, self.output));
        let micros = picos / PICOS_PER_MICRO + i128::from(picos % PICOS_PER_MICRO != 0);
        Money::try_from(micros).unwrap_or(Money::MAX)
    }
}

/// Tokens a call used, as the upstream's `usage` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// All prompt tokens, cached included.
    pub prompt: u64,
    /// The cached part of `prompt`.
    pub cached: u64,
    /// Completion tokens, reasoning included.
    pub completion: u64,
}

/// What to do with a model the table does not know. Config: `unknown_model`, default `default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnknownModel {
    /// Price it at the configured default (built in: gpt-4o's price).
    #[default]
    Default,
    /// Price nothing: the caller refuses the request.
    Refuse,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    date: String,
    models: BTreeMap<String, Price>,
}

/// The price table, built in and extended by config.
#[derive(Debug, Clone)]
pub struct Pricing {
    /// When the built-in prices were published (`YYYY-MM-DD`).
    pub date: String,
    models: BTreeMap<String, Price>,
    /// Used for unknown models under [`UnknownModel::Default`].
    pub default: Price,
    /// What to do with unknown models.
    pub unknown: UnknownModel,
}

/// The shipped table, as text (for `portcullis` to print or diff).
pub const BUILTIN_TABLE: &str = include_str!("prices.toml");

impl Pricing {
    /// The shipped table (see `prices.toml` for its date and sources).
    pub fn builtin() -> Pricing {
        // The table is part of the build; a parse failure is caught by the tests.
        let t: Table = toml::from_str(BUILTIN_TABLE).unwrap_or(Table {
            date: "unknown".into(),
            models: BTreeMap::new(),
        });
        let default = t.models.get("gpt-4o").copied().unwrap_or(Price {
            input: 2.5,
            cached_input: Some(1.25),
            output: 10.0,
        });
        Pricing {
            date: t.date,
            models: t.models,
            default,
            unknown: UnknownModel::Default,
        }
    }

    /// The table with config overrides and additions, a default price and the unknown-model
    /// policy.
    pub fn with_overrides(
        mut self,
        models: &BTreeMap<String, Price>,
        default: Option<Price>,
        unknown: UnknownModel,
    ) -> Pricing {
        for (m, p) in models {
            self.models.insert(m.to_ascii_lowercase(), *p);
        }
        if let Some(d) = default {
            self.default = d;
        }
        self.unknown = unknown;
        self
    }

    /// Models whose configured price is not a finite non-negative number (to refuse config).
    pub fn invalid_prices(&self) -> Vec<String> {
        let mut bad: Vec<String> = self
            .models
            .iter()
            .filter(|(_, p)| !p.is_valid())
            .map(|(m, _)| m.clone())
            .collect();
        if !self.default.is_valid() {
            bad.push("default".into());
        }
        bad
    }

    /// Every priced model, by name.
    pub fn models(&self) -> impl Iterator<Item = (&str, &Price)> {
        self.models.iter().map(|(m, p)| (m.as_str(), p))
    }

    /// The listed price of `model`: exact name; else without a provider prefix
    /// (`openai/gpt-4o`) and a snapshot date (`gpt-4o-2024-08-06`, `gpt-4-0613`); else the
    /// longest listed name it starts with, followed by `-` (`gpt-4o-mini-…` → `gpt-4o-mini`,
    /// never `gpt-4o`). `None` when unlisted.
    pub fn lookup(&self, model: &str) -> Option<Price> {
        let lower = model.trim().to_ascii_lowercase();
        if let Some(p) = self.models.get(&lower) {
            return Some(*p);
        }
        let m = lower.rsplit('/').next().unwrap_or(&lower);
        if let Some(p) = self.models.get(m) {
            return Some(*p);
        }
        let base = strip_snapshot(m);
        if let Some(p) = self.models.get(base) {
            return Some(*p);
        }
        self.models
            .iter()
            .filter(|(name, _)| {
                base.len() > name.len()
                    && base.starts_with(name.as_str())
                    && base.as_bytes()[name.len()] == b'-'
            })
            .max_by_key(|(name, _)| name.len())
            .map(|(_, p)| *p)
    }

    /// The price to charge, or `None` when policy refuses unknown models.
    pub fn price(&self, model: &str) -> Option<Price> {
        self.lookup(model).or(match self.unknown {
            UnknownModel::Default => Some(self.default),
            UnknownModel::Refuse => None,
        })
    }

    /// Cost of real usage (`prompt` includes `cached`), rounded up to the micro-dollar;
    /// `None` when the model is unpriced and policy refuses unknown models.
    pub fn cost(&self, model: &str, prompt: u64, cached: u64, completion: u64) -> Option<Money> {
        self.cost_of(
            model,
            TokenUsage {
                prompt,
                cached,
                completion,
            },
        )
    }

    /// Cost of `usage` on `model`, rounded up to the micro-dollar.
    pub fn cost_of(&self, model: &str, usage: TokenUsage) -> Option<Money> {
        Some(self.price(model)?.cost(usage))
    }

    /// The most a one-choice request can cost: every prompt token uncached, the whole output
    /// ceiling used. A request with `n` choices: [`Pricing::worst_case_of`].
    pub fn worst_case_cost(
        &self,
        model: &str,
        prompt_tokens: u64,
        max_output_tokens: u64,
    ) -> Option<Money> {
        self.cost(model, prompt_tokens, 0, max_output_tokens)
    }

    /// Same as [`Pricing::worst_case_cost`] (one choice; `n` choices: [`Pricing::worst_case_of`]).
    pub fn worst_case(&self, model: &str, prompt: u64, max_output: u64) -> Option<Money> {
        self.worst_case_cost(model, prompt, max_output)
    }
}

/// `model` without a trailing snapshot date: `-YYYY-MM-DD` or `-MMDD`.
fn strip_snapshot(model: &str) -> &str {
    let b = model.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let n = b.len();
    if n > 11
        && b[n - 11] == b'-'
        && b[n - 6] == b'-'
        && b[n - 3] == b'-'
        && digits(n - 10..n - 6)
        && digits(n - 5..n - 3)
        && digits(n - 2..n)
    {
        return &model[..n - 11];
    }
    if n > 5 && b[n - 5] == b'-' && digits(n - 4..n) {
        return &model[..n - 5];
    }
    model
}

/// An amount as dollars with six decimals, e.g. `$1.234567` (for tables and messages).
pub fn format_usd(m: Money) -> String {
    let sign = if m < 0 { "-" } else { "" };
    let a = m.unsigned_abs();
    format!("{sign}${}.{:06}", a / 1_000_000, a % 1_000_000)
}

/// Parses a dollar amount such as `12`, `12.5` or `$0.000125` exactly (at most six decimals).
pub fn parse_usd(s: &str) -> Option<Money> {
    let s = s.trim();
    let s = s.strip_prefix('$').unwrap_or(s);
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty()
        || frac.len() > 6
        || !whole.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let w: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let f: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    w.checked_mul(1_000_000)?.checked_add(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_table_parses_and_is_dated() {
        let t: Table = toml::from_str(BUILTIN_TABLE).unwrap();
        assert!(t.models.len() > 30);
        let p = Pricing::builtin();
        assert_eq!(p.date, "2025-08-15");
        assert!(p.invalid_prices().is_empty());
        for (m, price) in p.models() {
            assert!(price.output >= price.input || price.output == 0.0, "{m}");
            assert!(
                price.cached_input.unwrap_or(price.input) <= price.input,
                "{m}"
            );
        }
    }

    #[test]
    fn costs_are_exact_and_split_by_token_kind() {
        let p = Pricing::builtin();
        // gpt-4o-mini: 0.15 in, 0.075 cached, 0.60 out per million.
        // 600 uncached + 400 cached + 500 out = 90 + 30 + 300 µ$.
        assert_eq!(p.cost("gpt-4o-mini", 1_000, 400, 500), Some(420));
        assert_eq!(
            p.cost_of(
                "gpt-4o-mini",
                TokenUsage {
                    prompt: 1_000,
                    cached: 400,
                    completion: 500
                }
            ),
            Some(420)
        );
        // Output is priced as output, input as input.
        assert_eq!(p.cost("gpt-4o", 1_000_000, 0, 0), Some(2_500_000));
        assert_eq!(p.cost("gpt-4o", 0, 0, 1_000_000), Some(10_000_000));
        // Sub-micro-dollar amounts round up once per request, never to zero.
        // gpt-5-nano cached: 0.005 $/M = 0.005 µ$ per token.
        assert_eq!(p.cost("gpt-5-nano", 1, 1, 0), Some(1));
        assert_eq!(p.cost("gpt-5-nano", 200_000, 200_000, 0), Some(1_000));
        // Cached beyond prompt is clamped.
        assert_eq!(p.cost("gpt-4o", 10, 50, 0), p.cost("gpt-4o", 10, 10, 0));
        // Huge usage does not overflow.
        assert!(p.cost("o1-pro", u64::MAX, 0, u64::MAX).unwrap() > 0);
    }

    #[test]
    fn ledger_sums_agree_to_the_micro_dollar() {
        // 1,000 identical requests: per-request rounding differs from the exact total by
        // less than a micro-dollar each, so at most 1,000 µ$ = $0.001 — never a cent.
        let p = Pricing::builtin();
        let one = p.cost("gpt-4.1-nano", 333, 111, 77).unwrap();
        let picos = (222 * 100_000 + 111 * 25_000 + 77 * 400_000) as i128;
        let exact_total = picos * 1_000;
        let ledger_total = i128::from(one) * 1_000 * PICOS_PER_MICRO;
        assert!(ledger_total >= exact_total);
        assert!(ledger_total - exact_total < 1_000 * PICOS_PER_MICRO);
    }

    #[test]
    fn snapshots_and_provider_prefixes_resolve_to_the_family() {
        let p = Pricing::builtin();
        let mini = p.lookup("gpt-4o-mini").unwrap();
        assert_eq!(p.lookup("gpt-4o-mini-2024-07-18"), Some(mini));
        assert_eq!(p.lookup("openai/gpt-4o-mini"), Some(mini));
        assert_eq!(p.lookup("OpenAI/GPT-4o-mini-2024-07-18"), Some(mini));
        assert_eq!(p.lookup("gpt-4o-2024-08-06"), p.lookup("gpt-4o"));
        assert_eq!(p.lookup("gpt-4-0613"), p.lookup("gpt-4"));
        assert_eq!(p.lookup("gpt-3.5-turbo-0125"), p.lookup("gpt-3.5-turbo"));
        // A snapshot with its own price keeps it.
        assert_eq!(p.lookup("gpt-4o-2024-05-13").unwrap().input, 5.0);
        // Longest family wins: gpt-4o-mini is not gpt-4o, gpt-4.1-mini is not gpt-4.1.
        assert_eq!(p.lookup("gpt-4.1-mini").unwrap().output, 1.6);
        assert_eq!(p.lookup("gpt-4o-mini-some-variant"), Some(mini));
        assert_eq!(
            p.lookup("gpt-4o-realtime-preview-2024-12-17")
                .unwrap()
                .output,
            20.0
        );
        // Names that merely share letters are not matched.
        assert_eq!(p.lookup("gpt-4oo"), None);
        assert_eq!(p.lookup("o3x"), None);
        assert_eq!(strip_snapshot("gpt-4o-2024-08-06"), "gpt-4o");
        assert_eq!(strip_snapshot("gpt-4-0613"), "gpt-4");
        assert_eq!(strip_snapshot("o3"), "o3");
    }

    #[test]
    fn unknown_models_follow_policy() {
        let p = Pricing::builtin();
        assert_eq!(p.lookup("my-finetune"), None);
        assert_eq!(p.cost("my-finetune", 1_000_000, 0, 0), Some(2_500_000));
        let strict =
            Pricing::builtin().with_overrides(&BTreeMap::new(), None, UnknownModel::Refuse);
        assert_eq!(strict.cost("my-finetune", 1, 0, 1), None);
        assert_eq!(strict.price("ft:gpt-4o-mini:acme::x"), None);
        let mut extra = BTreeMap::new();
        extra.insert(
            "my-finetune".to_owned(),
            Price {
                input: 1.0,
                cached_input: None,
                output: 2.0,
            },
        );
        extra.insert(
            "gpt-4o".to_owned(),
            Price {
                input: 2.0,
                cached_input: Some(1.0),
                output: 8.0,
            },
        );
        let cheap = Price {
            input: 0.5,
            cached_input: None,
            output: 0.5,
        };
        let p = Pricing::builtin().with_overrides(&extra, Some(cheap), UnknownModel::Default);
        assert_eq!(
            p.cost("my-finetune", 1_000_000, 0, 1_000_000),
            Some(3_000_000)
        );
        // Overrides replace built-in prices, snapshots included.
        assert_eq!(
            p.cost("gpt-4o-2024-08-06", 1_000_000, 0, 0),
            Some(2_000_000)
        );
        assert_eq!(p.cost("who-knows", 1_000_000, 0, 0), Some(500_000));
        assert_eq!(
            p.worst_case_cost("gpt-4o", 1_000, 1_000),
            p.cost("gpt-4o", 1_000, 0, 1_000)
        );
        assert_eq!(p.worst_case("gpt-4o", 1_000, 1_000), Some(10_000));
    }

    #[test]
    fn config_prices_are_strict_and_checked() {
        let p: Price = toml::from_str("input = 1.0\noutput = 2.0").unwrap();
        assert_eq!(p.cached_input, None);
        assert!(toml::from_str::<Price>("input = 1.0\noutput = 2.0\ncache = 1").is_err());
        let mut bad = BTreeMap::new();
        bad.insert(
            "x".to_owned(),
            Price {
                input: -1.0,
                cached_input: None,
                output: f64::NAN,
            },
        );
        let p = Pricing::builtin().with_overrides(&bad, None, UnknownModel::Default);
        assert_eq!(p.invalid_prices(), ["x"]);
        // An invalid price never yields negative money.
        assert_eq!(p.cost("x", 1_000, 0, 1_000), Some(0));
    }

    #[test]
    fn dollars_print_and_parse_exactly() {
        assert_eq!(format_usd(1_234_567), "$1.234567");
        assert_eq!(format_usd(-5), "-$0.000005");
        assert_eq!(parse_usd("12"), Some(12_000_000));
        assert_eq!(parse_usd("$0.000125"), Some(125));
        assert_eq!(parse_usd("2.5"), Some(2_500_000));
        assert_eq!(parse_usd(".5"), Some(500_000));
        assert_eq!(parse_usd("0.0000001"), None);
        assert_eq!(parse_usd("-1"), None);
        assert_eq!(parse_usd("1e3"), None);
        assert_eq!(parse_usd(""), None);
    }
}
