//! What the fuzz targets share: the test-vector log and witness keys (so seeds from
//! `testvectors/` reach the signature checks) and small reference implementations the targets
//! compare the parsers against.

use countersign_verifier::VerifierKey;

/// The generated test vectors' log key (`testvectors/README.md`: seed `0x11` x 32).
pub const LOG_VKEY: &str =
    "countersign.test/log+9b5d646a+AdBKsjJ0K7SrOhNovUYV5ObQIkq3GgFrr4UgozLJd4c3";
/// The test vectors' witness key (`checkpoints/valid-cosigned.json`).
pub const WITNESS_VKEY: &str =
    "witness.countersign.test/w1+59239ae5+BKCapfR6Z1mAL/lV+NwtKhSlyZ0jvpf4ZBJ/+Tg0VaTw";

/// The log key, parsed.
pub fn log_key() -> VerifierKey {
    match VerifierKey::parse(LOG_VKEY) {
        Ok(k) => k,
        Err(e) => panic!("the test vectors' log key does not parse: {e}"),
    }
}

/// The witness key, parsed.
pub fn witness_key() -> VerifierKey {
    match VerifierKey::parse(WITNESS_VKEY) {
        Ok(k) => k,
        Err(e) => panic!("the test vectors' witness key does not parse: {e}"),
    }
}

/// Strict `application/x-www-form-urlencoded` decoding of one name or value (WHATWG URL
/// "urlencoded parsing" without its leniency: `%` must be followed by exactly two hex digits),
/// as RFC 6749 section 2.3.1 asks of the HTTP Basic id and secret. `None` if malformed or not
/// UTF-8.
pub fn strict_form_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex_digit(*b.get(i + 1)?)?;
                let lo = hex_digit(*b.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}
