//! Phone numbers: international numbers by country calling code and length, national ones
//! by their numbering plans.

use super::cand;
use crate::context::{Ctx, adjust, class};
use crate::{Candidate, EntityType};
use std::ops::Range;

/// Country calling codes with their national significant number lengths.
const COUNTRY_CODES: &[(&str, std::ops::RangeInclusive<usize>)] = &[
    ("1", 10..=10),
    ("44", 9..=10),
    ("49", 6..=13),
    ("33", 9..=9),
    ("91", 10..=10),
    ("55", 10..=11),
    ("61", 9..=9),
    ("41", 9..=9),
    ("34", 9..=9),
    ("39", 6..=11),
    ("31", 9..=9),
    ("32", 8..=9),
    ("43", 4..=13),
    ("45", 8..=8),
    ("46", 7..=13),
    ("47", 8..=8),
    ("48", 9..=9),
    ("351", 9..=9),
    ("353", 7..=9),
    ("358", 5..=12),
    ("30", 10..=10),
    ("36", 8..=9),
    ("420", 9..=9),
    ("7", 10..=10),
    ("81", 9..=10),
    ("82", 8..=10),
    ("86", 10..=11),
    ("52", 10..=10),
    ("54", 10..=10),
    ("27", 9..=9),
    ("64", 8..=10),
    ("65", 8..=8),
    ("972", 8..=9),
    ("971", 8..=9),
    ("90", 10..=10),
    ("234", 8..=10),
    ("63", 10..=10),
    ("62", 9..=12),
    ("60", 9..=10),
    ("66", 8..=9),
    ("84", 9..=10),
    ("92", 10..=10),
    ("880", 10..=10),
    ("20", 9..=10),
    ("57", 10..=10),
    ("56", 9..=9),
    ("51", 9..=9),
    ("58", 10..=10),
    ("40", 9..=9),
    ("380", 9..=9),
    ("370", 8..=8),
    ("371", 8..=8),
    ("372", 7..=8),
    ("354", 7..=9),
    ("352", 4..=11),
];

pub(super) fn phone(ctx: Ctx, span: Range<usize>, main: &str, digits: &str) -> Option<Candidate> {
    let n = digits.len();
    if !(7..=15).contains(&n) {
        return None;
    }
    if digits.bytes().all(|d| d == digits.as_bytes()[0]) {
        return None;
    }
    let against = ctx.before(class::NOT_PHONE);
    let ctx = ctx.near(class::PHONE);
    // A trunk prefix written as "(0)" after the country code is not part of the number.
    let intl_digits: String = main
        .replace("(0)", "")
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let separated = main.contains([' ', '-', '.', '(']);
    let (base, rule) = if main.starts_with('+') || (main.starts_with("00") && separated) {
        let rest = intl_digits.trim_start_matches("00");
        let known = COUNTRY_CODES
            .iter()
            .any(|(cc, len)| rest.starts_with(cc) && len.contains(&(rest.len() - cc.len())));
        if known {
            (0.85, "phone_e164")
        } else if (8..=15).contains(&rest.len()) {
            (0.6, "phone_intl")
        } else {
            return None;
        }
    } else if let Some(r) = national(main, digits) {
        r
    } else if separated && (7..=8).contains(&n) {
        (0.3, "phone_local")
    } else if !separated && (10..=11).contains(&n) {
        (0.25, "phone_digits")
    } else {
        return None;
    };
    let score = adjust(base, ctx, against);
    Some(cand(EntityType::Phone, span, score, rule))
}

/// Numbering-plan checks for the national formats of US/CA, UK, DE, FR, IN, BR and AU.
fn national(main: &str, d: &str) -> Option<(f32, &'static str)> {
    let n = d.len();
    let b = d.as_bytes();
    let groups: Vec<usize> = main
        .split([' ', '-', '.', '(', ')'])
        .filter(|g| !g.is_empty())
        .map(str::len)
        .collect();
    let separated = groups.len() > 1;
    let nanp = |x: &[u8]| x.len() == 10 && x[0] >= b'2' && x[3] >= b'2';
    // US / CA: (NXX) NXX-XXXX, NXX-NXX-XXXX, 1-NXX-NXX-XXXX, 001-NXX-…
    let us = match n {
        10 => nanp(b),
        11 => b[0] == b'1' && nanp(&b[1..]),
        13 => d.starts_with("001") && nanp(&b[3..]),
        _ => false,
    };
    if us && separated && groups.ends_with(&[3, 4]) {
        return Some((0.7, "phone_us"));
    }
    if n == 10 && d.starts_with('0') && d.as_bytes()[1] != b'0' {
        // FR 0X XX XX XX XX; AU 04XX XXX XXX, (0X) XXXX XXXX
        if groups == [2, 2, 2, 2, 2] {
            return Some((0.7, "phone_fr"));
        }
        if d.starts_with("04") && groups == [4, 3, 3] || groups == [2, 4, 4] {
            return Some((0.7, "phone_au"));
        }
    }
    // UK: 0 + 10 digits (01, 02, 03, 07, 08), grouped 5-6 / 4-3-4 / 3-4-4 / 4-6
    if n == 11
        && d.starts_with('0')
        && matches!(b[1], b'1' | b'2' | b'3' | b'7' | b'8')
        && separated
    {
        return Some((0.65, "phone_uk"));
    }
    // IN: mobile 10 digits starting 6-9 (often 5-5), or 0 + 10
    if n == 10 && matches!(b[0], b'6'..=b'9') && (groups == [5, 5] || !separated) {
        return Some((0.55, "phone_in"));
    }
    // BR: (XX) XXXXX-XXXX or (XX) XXXX-XXXX
    if (10..=11).contains(&n) && main.starts_with('(') && groups.first() == Some(&2) {
        return Some((0.7, "phone_br"));
    }
    // DE and other trunk-0 plans: 0 + area + subscriber, separated after the area code
    if (9..=12).contains(&n) && d.starts_with('0') && !d.starts_with("00") && separated {
        return Some((0.55, "phone_national"));
    }
    if us && separated {
        return Some((0.55, "phone_us"));
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::EntityType;
    use crate::structured::tests::one;

    #[test]
    fn phones_in_national_and_international_formats() {
        for p in [
            "+1 (415) 555-2671",
            "(415) 555-2671",
            "415-555-2671",
            "+44 20 7946 0958",
            "020 7946 0958",
            "07700 900123",
            "+49 30 12345678",
            "030 1234567",
            "01 23 45 67 89",
            "+33 1 23 45 67 89",
            "+91 98765 43210",
            "98765 43210",
            "(11) 98765-4321",
            "+55 11 98765 4321",
            "0412 345 678",
            "(02) 9876 5432",
            "+61 2 9876 5432",
            "+41 (0)71 526 99 04",
            "916.972.1680x22008",
        ] {
            assert_eq!(
                one(&format!("call me on {p} today")),
                Some(EntityType::Phone),
                "{p}"
            );
        }
        assert_eq!(one("in 2019 we sold 1500 units"), None);
    }
}
