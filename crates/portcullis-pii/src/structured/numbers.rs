//! Runs of digits: an identity number, SSN, card, phone or ZIP code, read in that order.

use super::cand;
use super::cards::{card_brand, groups_look_like_card, luhn};
use super::ids::ssn;
use super::phones::phone;
use crate::context::{Ctx, adjust, class};
use crate::{Candidate, EntityType};
use std::ops::Range;

pub(super) fn number(text: &str, span: Range<usize>) -> Option<Candidate> {
    let s = &text[span.clone()];
    let (main, ext) = split_extension(s);
    let digits: String = main.chars().filter(char::is_ascii_digit).collect();
    let n = digits.len();
    if n > 19 {
        return None;
    }
    let seps: Vec<char> = main.chars().filter(|c| !c.is_ascii_digit()).collect();
    let plain_groups = seps.iter().all(|c| *c == ' ' || *c == '-');
    let ctx = Ctx::of(text, &span);

    // An identity document says so nearby; read that first.
    if (6..=15).contains(&n) && ctx.before(class::PASSPORT) {
        return Some(cand(EntityType::UsPassport, span, 0.8, "passport"));
    }
    if (5..=15).contains(&n) && ctx.before(class::LICENSE) {
        return Some(cand(
            EntityType::UsDriverLicense,
            span,
            0.75,
            "driver_license",
        ));
    }
    if ext.is_none()
        && plain_groups
        && let Some(c) = ssn(ctx, &span, main, &digits)
    {
        return Some(c);
    }
    if ext.is_none() && plain_groups && (12..=19).contains(&n) && luhn(&digits) {
        let brand = card_brand(&digits);
        let grouped = seps.is_empty() || groups_look_like_card(main);
        if grouped {
            let base = if brand.is_some() { 0.9 } else { 0.45 };
            let score = adjust(base, ctx.near(class::CARD), false);
            return Some(cand(
                EntityType::CreditCard,
                span,
                score,
                brand.unwrap_or("luhn"),
            ));
        }
    }
    if let Some(c) = phone(ctx, span.clone(), main, &digits) {
        return Some(c);
    }
    if n == 5 || (n == 9 && main.len() == 10 && main.as_bytes()[5] == b'-') {
        let zip_ctx = ctx.near(class::ZIP);
        let addr_ctx = ctx.near(class::ADDRESS);
        if zip_ctx || addr_ctx {
            let score = if zip_ctx { 0.75 } else { 0.5 };
            return Some(cand(EntityType::Postcode, span, score, "zip_code"));
        }
    }
    None
}

fn split_extension(s: &str) -> (&str, Option<&str>) {
    for marker in ["ext.", "ext", "x", "#"] {
        if let Some(i) = s.rfind(marker)
            && i > 0
        {
            let rest = s[i + marker.len()..].trim_start();
            if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
                return (s[..i].trim_end(), Some(rest));
            }
        }
    }
    (s, None)
}
