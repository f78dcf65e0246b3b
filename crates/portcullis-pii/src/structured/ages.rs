//! Ages: the number in an age phrase.

use super::cand;
use crate::{Candidate, EntityType};
use std::ops::Range;

/// An age phrase ("turned 47", "a 38-year-old", "at the age of 61"): the number is the age.
pub(super) fn age(text: &str, span: Range<usize>) -> Option<Candidate> {
    let s = &text[span.clone()];
    let start = s.find(|c: char| c.is_ascii_digit())?;
    let len = s[start..]
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(s.len() - start);
    let years: u32 = s[start..start + len].parse().ok()?;
    (years <= 120).then(|| {
        let at = span.start + start;
        cand(EntityType::Age, at..at + len, 0.7, "age")
    })
}

#[cfg(test)]
mod tests {
    use crate::EntityType;
    use crate::structured::tests::kinds;

    #[test]
    fn ages_are_the_number_in_an_age_phrase() {
        for t in [
            "He just turned 63 years old",
            "a 38-year-old male",
            "retired at the age of 61",
        ] {
            let got = kinds(t);
            assert_eq!(got.len(), 1, "{t}");
            assert_eq!(got[0].0, EntityType::Age);
            assert!(got[0].1.bytes().all(|b| b.is_ascii_digit()), "{t}");
        }
    }
}
