//! COSE_Key parsing (RFC 9052 section 7, the three algorithms we accept): a key parsed from the
//! front of a buffer parses alone, to the same key, from exactly the bytes it said it used.
#![no_main]

use countersign_verifier::{
    cose_alg, parse_cose_key, parse_cose_key_prefix, ALG_EDDSA, ALG_ES256, ALG_RS256,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = parse_cose_key(data);
    let Ok((key, used)) = parse_cose_key_prefix(data) else {
        assert!(whole.is_err(), "parses whole but not as a prefix");
        return;
    };
    assert!(used > 0 && used <= data.len());
    assert_eq!(parse_cose_key(&data[..used]), Ok(key.clone()));
    if used == data.len() {
        assert_eq!(whole, Ok(key.clone()));
    } else {
        assert!(whole.is_err(), "trailing bytes accepted");
    }
    assert!([ALG_ES256, ALG_EDDSA, ALG_RS256].contains(&cose_alg(&key)));
});
