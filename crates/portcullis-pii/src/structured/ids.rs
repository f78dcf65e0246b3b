//! Identity numbers: US SSNs by the SSA's rules, passport and driving-licence numbers by the
//! words before them.

use super::cand;
use crate::context::{Ctx, adjust, class};
use crate::{Candidate, EntityType};
use std::ops::Range;

pub(super) fn ssn(ctx: Ctx, span: &Range<usize>, main: &str, digits: &str) -> Option<Candidate> {
    if digits.len() != 9 {
        return None;
    }
    let b = main.as_bytes();
    let shaped = main.len() == 11 && (b[3] == b'-' && b[6] == b'-' || b[3] == b' ' && b[6] == b' ');
    if !(shaped || main.len() == 9) {
        return None;
    }
    let (area, group, serial) = (&digits[..3], &digits[3..5], &digits[5..]);
    if area == "000" || area == "666" || area.starts_with('9') || group == "00" || serial == "0000"
    {
        return None;
    }
    if digits.bytes().all(|d| d == digits.as_bytes()[0]) || digits == "123456789" {
        return None;
    }
    let ctx = ctx.near(class::SSN);
    let base = match (shaped, b.get(3)) {
        (true, Some(b'-')) => 0.6,
        (true, _) => 0.4,
        _ => 0.1,
    };
    let score = adjust(base, ctx, false);
    (score >= 0.3).then(|| cand(EntityType::UsSsn, span.clone(), score, "us_ssn"))
}

pub(super) fn alnum_id(text: &str, span: Range<usize>) -> Option<Candidate> {
    let ctx = Ctx::of(text, &span);
    if ctx.before(class::PASSPORT) {
        return Some(cand(EntityType::UsPassport, span, 0.8, "passport"));
    }
    if ctx.before(class::LICENSE) {
        return Some(cand(
            EntityType::UsDriverLicense,
            span,
            0.75,
            "driver_license",
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::EntityType;
    use crate::structured::tests::one;

    #[test]
    fn ssns_follow_the_ssa_rules() {
        assert_eq!(one("my SSN is 536-32-3065"), Some(EntityType::UsSsn));
        assert_eq!(one("ssn 536 32 3065"), Some(EntityType::UsSsn));
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "536-00-3065",
            "536-32-0000",
        ] {
            assert_ne!(one(&format!("SSN {bad}")), Some(EntityType::UsSsn), "{bad}");
        }
    }

    #[test]
    fn identity_numbers_need_their_context_words() {
        assert_eq!(
            one("passport number 912345678"),
            Some(EntityType::UsPassport)
        );
        assert_eq!(
            one("driver's license A1234567"),
            Some(EntityType::UsDriverLicense)
        );
        assert_eq!(one("part A1234567 in stock"), None);
    }
}
