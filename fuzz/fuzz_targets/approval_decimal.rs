//! The approval policies' exact decimals (`Decimal::parse` and its order, `spec/policy.md`,
//! Conventions). Input: up to three texts separated by newlines.
//!
//! Asserts: `parse` accepts exactly `-?[0-9]+(\.[0-9]+)?` with at most 40 digits; the order is
//! the one of a reference that pads every decimal to 40 integer and 40 fraction digits and
//! compares those strings (`-0` equals `0`); it is a total order (reflexive, antisymmetric,
//! transitive over the three texts) and `==` agrees with `cmp`.
#![no_main]

use std::cmp::Ordering;

use countersign_verifier::{Decimal, MAX_DECIMAL_DIGITS};
use libfuzzer_sys::fuzz_target;

/// The reference reading: sign and the digits padded to a fixed width, or `None`.
fn reference(text: &str) -> Option<(bool, String)> {
    let (neg, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || (rest.contains('.') && !digits(frac)) {
        return None;
    }
    if int.len() + frac.len() > MAX_DECIMAL_DIGITS {
        return None;
    }
    let padded = format!(
        "{}{int}{frac}{}",
        "0".repeat(MAX_DECIMAL_DIGITS - int.len()),
        "0".repeat(MAX_DECIMAL_DIGITS - frac.len())
    );
    let zero = padded.bytes().all(|b| b == b'0');
    Some((neg && !zero, padded))
}

fn reference_cmp(a: &(bool, String), b: &(bool, String)) -> Ordering {
    match (a.0, b.0) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => a.1.cmp(&b.1),
        (true, true) => b.1.cmp(&a.1),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let texts: Vec<&str> = text.splitn(3, '\n').collect();
    let mut parsed = Vec::new();
    for t in &texts {
        let d = Decimal::parse(t);
        let r = reference(t);
        assert_eq!(
            d.is_ok(),
            r.is_some(),
            "parse({t:?}) = {d:?}, the reference disagrees"
        );
        if let (Ok(d), Some(r)) = (d, r) {
            assert_eq!(d.cmp(&d), Ordering::Equal, "{t:?} is not equal to itself");
            assert_eq!(Decimal::parse(t), Ok(d));
            parsed.push((t, d, r));
        }
    }
    for (ta, a, ra) in &parsed {
        for (tb, b, rb) in &parsed {
            let o = a.cmp(b);
            assert_eq!(o, reference_cmp(ra, rb), "{ta:?} vs {tb:?}");
            assert_eq!(
                b.cmp(a),
                o.reverse(),
                "{ta:?} vs {tb:?} is not antisymmetric"
            );
            assert_eq!(a == b, o == Ordering::Equal);
            assert_eq!(a.partial_cmp(b), Some(o));
            for (tc, c, _) in &parsed {
                if o != Ordering::Greater && b.cmp(c) != Ordering::Greater {
                    assert_ne!(a.cmp(c), Ordering::Greater, "{ta:?} <= {tb:?} <= {tc:?}");
                }
            }
        }
    }
});
