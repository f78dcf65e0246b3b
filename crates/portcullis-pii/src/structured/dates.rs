//! Dates: numeric dates that are real calendar dates, and dates of birth by their context
//! words.

use super::cand;
use crate::context::{Ctx, class};
use crate::{Candidate, EntityType};
use std::ops::Range;

pub(super) fn date(text: &str, span: Range<usize>) -> Option<Candidate> {
    let s = &text[span.clone()];
    if s.bytes().next()?.is_ascii_digit() && !numeric_date_ok(s) {
        return None;
    }
    if Ctx::of(text, &span).near(class::BIRTH) {
        Some(cand(EntityType::DateOfBirth, span, 0.85, "date_of_birth"))
    } else {
        Some(cand(EntityType::Date, span, 0.6, "date"))
    }
}

/// A numeric date whose parts can be a real day, month and year in some order.
fn numeric_date_ok(s: &str) -> bool {
    let date_part = s.split([' ', 'T']).next().unwrap_or(s);
    let parts: Vec<u32> = date_part
        .split(['/', '.', '-'])
        .filter_map(|p| p.parse().ok())
        .collect();
    let [a, b, c] = parts[..] else {
        return false;
    };
    let day_month = |d: u32, m: u32| (1..=12).contains(&m) && (1..=31).contains(&d);
    if date_part
        .split(['/', '.', '-'])
        .next()
        .is_some_and(|p| p.len() == 4)
    {
        return (1000..=2999).contains(&a) && day_month(c, b);
    }
    let year_ok = c <= 99 || (1000..=2999).contains(&c);
    year_ok && (day_month(a, b) || day_month(b, a))
}

#[cfg(test)]
mod tests {
    use crate::EntityType;
    use crate::structured::tests::one;

    #[test]
    fn dates_become_birth_dates_in_context() {
        assert_eq!(one("born on 1/27/1952"), Some(EntityType::DateOfBirth));
        assert_eq!(one("DOB: 1990-04-12"), Some(EntityType::DateOfBirth));
        assert_eq!(one("the meeting is on 12/11/2024"), Some(EntityType::Date));
        assert_eq!(one("born March 3, 1961"), Some(EntityType::DateOfBirth));
        assert_ne!(one("ratio 45/99/77"), Some(EntityType::Date));
    }
}
