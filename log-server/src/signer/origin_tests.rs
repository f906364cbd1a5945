#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

#[test]
fn an_origin_that_is_no_key_name_is_refused_with_the_reason() {
    for origin in ["", "has space", "plus+sign"] {
        let e = LogSigner::new(origin, &[7u8; 32]).unwrap_err();
        let SignerError::BadOrigin { origin: o, reason } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(o, origin);
        assert!(!reason.is_empty());
        assert_eq!(
            e.to_string(),
            format!("invalid log origin {origin:?} as key name: {reason}")
        );
    }
    assert_eq!(
        SignerError::Note("too many signatures".into()).to_string(),
        "note: too many signatures"
    );
    let s = LogSigner::new("example.com/log", &[7u8; 32]).unwrap();
    assert_eq!(s.origin(), "example.com/log");
    assert!(format!("{s:?}").contains(&s.verifier_key().to_vkey()));
}
