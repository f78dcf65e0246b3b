//! IP addresses: IPv4 octets that are real (IPv6 is checked where it is classified, by
//! the standard library's parser).

use super::cand;
use crate::context::{Ctx, adjust, class};
use crate::{Candidate, EntityType};
use std::ops::Range;

pub(super) fn ipv4(text: &str, span: Range<usize>) -> Option<Candidate> {
    let s = &text[span.clone()];
    let addr = s.split('/').next()?;
    let ok = addr
        .split('.')
        .all(|o| o.parse::<u16>().is_ok_and(|v| v <= 255) && (o.len() == 1 || !o.starts_with('0')));
    if !ok {
        return None;
    }
    let ctx = Ctx::of(text, &span);
    let score = adjust(
        0.8,
        ctx.near(class::IP | class::ADDRESS),
        ctx.before(class::VERSION),
    );
    Some(cand(EntityType::IpAddress, span, score, "ipv4"))
}

#[cfg(test)]
mod tests {
    use crate::EntityType;
    use crate::structured::tests::one;

    #[test]
    fn ip_addresses_are_real() {
        assert_eq!(one("host 192.168.1.20 down"), Some(EntityType::IpAddress));
        assert_eq!(
            one("from 2001:db8::8a2e:370:7334"),
            Some(EntityType::IpAddress)
        );
        assert_eq!(
            one("6e40:4041:c617:e898:c11:40d2:c669:2eb4"),
            Some(EntityType::IpAddress)
        );
        assert_eq!(one("host 300.1.1.1"), None);
        assert_eq!(one("at 12:30:45 sharp"), None);
    }
}
