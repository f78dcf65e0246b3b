//! Payment cards: the Luhn checksum, the networks' number ranges and the way cards are
//! grouped when written.

/// Luhn checksum.
pub(crate) fn luhn(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.bytes().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// The card network whose prefix and length the number has.
pub(super) fn card_brand(d: &str) -> Option<&'static str> {
    let n = d.len();
    let p = |k: usize| d.get(..k).and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
    match () {
        _ if d.starts_with('4') && matches!(n, 13 | 16 | 19) => Some("visa"),
        _ if ((51..=55).contains(&p(2)) || (2221..=2720).contains(&p(4))) && n == 16 => {
            Some("mastercard")
        }
        _ if matches!(p(2), 34 | 37) && n == 15 => Some("amex"),
        _ if (p(4) == 6011 || p(2) == 65 || (644..=649).contains(&p(3)))
            && (16..=19).contains(&n) =>
        {
            Some("discover")
        }
        _ if ((300..=305).contains(&p(3)) || matches!(p(2), 36 | 38 | 39))
            && (14..=19).contains(&n) =>
        {
            Some("diners")
        }
        _ if (3528..=3589).contains(&p(4)) && (16..=19).contains(&n) => Some("jcb"),
        _ if p(2) == 62 && (16..=19).contains(&n) => Some("unionpay"),
        _ if (p(2) == 50 || (56..=69).contains(&p(2))) && (12..=19).contains(&n) => Some("maestro"),
        _ => None,
    }
}

/// Separated cards come in groups of four (Amex and Diners: 4-6-5 / 4-6-4).
pub(super) fn groups_look_like_card(main: &str) -> bool {
    let groups: Vec<usize> = main.split([' ', '-']).map(str::len).collect();
    let fours = groups[..groups.len() - 1].iter().all(|g| *g == 4) && groups.len() >= 3;
    fours || groups == [4, 6, 5] || groups == [4, 6, 4]
}

#[cfg(test)]
mod tests {
    use crate::EntityType;
    use crate::structured::tests::{kinds, one};

    #[test]
    fn cards_need_luhn_and_a_brand() {
        assert_eq!(
            one("card 4111 1111 1111 1111"),
            Some(EntityType::CreditCard)
        );
        assert_eq!(
            one("pay with 5500-0000-0000-0004"),
            Some(EntityType::CreditCard)
        );
        assert_eq!(one("amex 378282246310005"), Some(EntityType::CreditCard));
        assert_eq!(one("card 4111 1111 1111 1112"), None, "fails Luhn");
        assert_eq!(
            kinds("order 1234567812345670")[..].len(),
            0,
            "no brand, no context"
        );
    }
}
