//! The most a request can use, from the numbers its client chose (`max_tokens` /
//! `max_completion_tokens`, `n`) and its counted prompt: what admission reserves in token
//! windows and holds against budgets.
//!
//! Every number here is client-controlled, and the release profile has no overflow checks, so
//! all arithmetic saturates: an absurd request becomes a request for "everything", which the
//! limits then refuse, never a small number that wrapped around.

use crate::pricing::{Money, Pricing, TokenUsage};

/// A request's worst case in tokens. `n` choices each may use the whole output ceiling; the
/// prompt is paid once (that is how OpenAI bills `n`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ceiling {
    /// Prompt tokens, counted with the model's tokenizer.
    pub prompt: u64,
    /// Output ceiling per choice: `max_completion_tokens`, else `max_tokens`, else the
    /// gateway's default.
    pub max_output: u64,
    /// Choices asked for (`n`); 0 counts as 1.
    pub n: u64,
}

impl Ceiling {
    /// The ceiling of a request with `prompt` tokens, `max_output` per choice and `n` choices
    /// (`None`, as when the client omits `n`, means 1).
    pub fn new(prompt: u64, max_output: u64, n: Option<u64>) -> Ceiling {
        Ceiling {
            prompt,
            max_output,
            n: n.unwrap_or(1),
        }
    }

    /// Choices that may be generated: `n`, at least 1.
    pub fn choices(&self) -> u64 {
        self.n.max(1)
    }

    /// Output tokens at worst: every choice uses its whole ceiling (saturating).
    pub fn output(&self) -> u64 {
        self.max_output.saturating_mul(self.choices())
    }

    /// Tokens to reserve in token windows ([`crate::Admission::tokens`]): prompt plus
    /// worst-case output (saturating).
    pub fn tokens(&self) -> u64 {
        self.prompt.saturating_add(self.output())
    }

    /// The worst case as usage to price: nothing cached, the whole output used.
    pub fn usage(&self) -> TokenUsage {
        TokenUsage {
            prompt: self.prompt,
            cached: 0,
            completion: self.output(),
        }
    }
}

impl Pricing {
    /// The most a request can cost (what a budget holds): every prompt token uncached and
    /// every choice using its whole output ceiling; `None` when policy refuses the model.
    pub fn worst_case_of(&self, model: &str, ceiling: Ceiling) -> Option<Money> {
        self.cost_of(model, ceiling.usage())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::Price;
    use std::collections::BTreeMap;

    #[test]
    fn n_multiplies_output_not_prompt() {
        let c = Ceiling::new(1_000, 500, Some(4));
        assert_eq!((c.choices(), c.output(), c.tokens()), (4, 2_000, 3_000));
        // Omitted or zero n is one choice.
        assert_eq!(Ceiling::new(1_000, 500, None).tokens(), 1_500);
        assert_eq!(Ceiling::new(1_000, 500, Some(0)).tokens(), 1_500);
        let p = Pricing::builtin();
        // gpt-4o: 2.5 $/M in, 10 $/M out: 1,000 in + 4 × 500 out = 2,500 + 20,000 µ$.
        assert_eq!(p.worst_case_of("gpt-4o", c), Some(22_500));
        assert_eq!(
            p.worst_case_of("gpt-4o", Ceiling::new(1_000, 500, None)),
            p.worst_case("gpt-4o", 1_000, 500)
        );
    }

    #[test]
    fn client_chosen_numbers_saturate_instead_of_wrapping() {
        let max = u64::MAX;
        assert_eq!(Ceiling::new(10, max, Some(2)).output(), max);
        assert_eq!(Ceiling::new(10, max / 2 + 1, Some(2)).tokens(), max);
        assert_eq!(Ceiling::new(max, max, Some(max)).tokens(), max);
        assert_eq!(Ceiling::new(max, 1, Some(1)).tokens(), max);
        let p = Pricing::builtin();
        // The costliest listed model at the largest numbers: a huge cost, never a wrapped one.
        let worst = p
            .worst_case_of("o1-pro", Ceiling::new(max, max, Some(max)))
            .unwrap();
        assert!(worst > 10_000_000_000_000, "{worst}");
        assert!(
            p.worst_case_of("o1-pro", Ceiling::new(max, max, Some(max)))
                >= p.worst_case_of("o1-pro", Ceiling::new(1, 1, Some(1)))
        );
    }

    #[test]
    fn absurd_prices_times_absurd_tokens_saturate() {
        let mut m = BTreeMap::new();
        m.insert(
            "dear".to_owned(),
            Price {
                input: 1e300,
                cached_input: Some(1e300),
                output: f64::MAX,
            },
        );
        let p = Pricing::builtin().with_overrides(&m, None, crate::UnknownModel::Default);
        let max = u64::MAX;
        assert_eq!(p.cost("dear", max, max / 2, max), Some(Money::MAX));
        assert_eq!(
            p.worst_case_of("dear", Ceiling::new(max, max, Some(max))),
            Some(Money::MAX)
        );
        assert_eq!(p.cost("dear", 0, 0, 0), Some(0));
    }
}
