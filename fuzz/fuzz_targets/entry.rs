//! The entry codec (`spec/entry.md`): every byte string has at most one decoding and each value
//! exactly one encoding, so whatever decodes must re-encode to the very same bytes.
#![no_main]

use countersign_verifier::{parse_cose_key, Entry, MAX_ENTRY_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(entry) = Entry::decode(data) else {
        return;
    };
    assert!(data.len() <= MAX_ENTRY_BYTES);
    let encoded = match entry.encode() {
        Ok(e) => e,
        Err(e) => panic!("a decoded entry does not encode: {e}"),
    };
    assert_eq!(encoded, data, "decode then encode changed the bytes");
    // The key was checked at decode time; the accessors and JSON rendering never fail.
    match &entry {
        Entry::Enrolment(e) => assert!(e.key().is_ok(), "a decoded enrolment's key fails"),
        Entry::Decision(d) => assert!(parse_cose_key(&d.public_key).is_ok()),
        Entry::Revocation(_) => {}
        // Any bytes of the right length decode; whether they are a policy is checked apart.
        Entry::Policy(p) => {
            if let Ok(v) = p.validated() {
                assert_eq!(
                    v.canonical_json(),
                    p.policy,
                    "a validated policy is not canonical"
                );
            }
        }
    }
    let json = entry.to_json();
    assert_eq!(json["kind"], entry.kind_name());
    assert_eq!(json["approver_id"], entry.approver_id());
});
