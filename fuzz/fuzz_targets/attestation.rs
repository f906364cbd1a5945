//! Registration (WebAuthn L3 section 7.1): the attestation object's CBOR, the authenticator
//! data with its attested credential and extensions, the `none` and `packed` statements (with
//! or without `x5c`). The input is a 2-byte big-endian length, that many bytes of
//! clientDataJSON, then the attestation object; the challenge and origin the relying party
//! expects are taken from the clientDataJSON itself so every input can reach the parsers.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use countersign_verifier::{
    parse_cose_key, verify_registration, ClientData, RegistrationPolicy, MAX_CREDENTIAL_ID_BYTES,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let n = usize::from(u16::from_be_bytes(*len));
    if n > rest.len() {
        return;
    }
    let (client_data_json, attestation_object) = rest.split_at(n);
    let (challenge, origin) = match ClientData::parse(client_data_json) {
        Ok(c) => (
            URL_SAFE_NO_PAD.decode(&c.challenge).unwrap_or_default(),
            c.origin,
        ),
        Err(_) => (Vec::new(), String::new()),
    };
    let origins = [origin.as_str(), "https://example.org"];
    for rp_id in ["example.org", "approve.countersign.test"] {
        let policy = RegistrationPolicy {
            rp_id,
            allowed_origins: &origins,
            require_user_verification: false,
            aaguid_allowlist: None,
        };
        let Ok(cred) =
            verify_registration(attestation_object, client_data_json, &challenge, &policy)
        else {
            continue;
        };
        assert!(!cred.credential_id.is_empty());
        assert!(cred.credential_id.len() <= MAX_CREDENTIAL_ID_BYTES);
        // The key is returned as the bytes the authenticator sent, and those parse alone.
        assert!(parse_cose_key(&cred.public_key_cose).is_ok());
        assert!(attestation_object
            .windows(cred.public_key_cose.len())
            .any(|w| w == cred.public_key_cose.as_slice()));
    }
});
