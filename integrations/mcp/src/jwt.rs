//! The access token's signature: a compact JWS (RFC 7515) with `alg` EdDSA (RFC 8037), checked
//! against the server's JWKS (`/jwks.json`) with the verifier crate's Ed25519 check, so no JWT
//! crate is needed for the one algorithm the server signs with.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

/// Longest token accepted (the server's tokens are a few kilobytes: the authorization details
/// are at most 16 KiB).
const MAX_JWT_BYTES: usize = 64 * 1024;

/// Why a token's signature was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url parts of JSON, or too long.
    Malformed(&'static str),
    /// An algorithm other than EdDSA (`none` included).
    Algorithm,
    /// Another `typ` than the one expected (an ID token offered as an access token).
    Type,
    /// No key of the JWKS has the token's `kid`.
    UnknownKey,
    /// The signature does not verify.
    Signature,
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtError::Malformed(what) => write!(f, "malformed token: {what}"),
            JwtError::Algorithm => f.write_str("token is not signed with EdDSA"),
            JwtError::Type => f.write_str("token is not an access token (typ at+jwt)"),
            JwtError::UnknownKey => {
                f.write_str("token is signed with a key the server's JWKS does not hold")
            }
            JwtError::Signature => f.write_str("token signature does not verify"),
        }
    }
}

/// The `kid` in a token's header, if it parses.
pub fn kid_of(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let h: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    h.get("kid")?.as_str().map(str::to_owned)
}

/// Verifies `token` (RFC 7515 section 5.2, compact serialisation) against `jwks` (RFC 7517: the
/// OKP Ed25519 key with the token's `kid`), requiring header `typ` `typ`; returns the claims.
pub fn verify(token: &str, jwks: &Value, typ: &str) -> Result<Map<String, Value>, JwtError> {
    if token.len() > MAX_JWT_BYTES {
        return Err(JwtError::Malformed("too long"));
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(c64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("not three parts"));
    };
    let json = |p: &str| -> Option<Map<String, Value>> {
        match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()? {
            Value::Object(o) => Some(o),
            _ => None,
        }
    };
    let header = json(h64).ok_or(JwtError::Malformed("header"))?;
    let claims = json(c64).ok_or(JwtError::Malformed("claims"))?;
    let sig = URL_SAFE_NO_PAD
        .decode(s64)
        .map_err(|_| JwtError::Malformed("signature"))?;
    if header.get("alg").and_then(Value::as_str) != Some("EdDSA") {
        return Err(JwtError::Algorithm);
    }
    if header.get("typ").and_then(Value::as_str) != Some(typ) {
        return Err(JwtError::Type);
    }
    // A kid is required: without one any key of the set would do, and which one signed could not
    // be told after a rotation.
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(JwtError::UnknownKey)?;
    let key = jwks
        .get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|k| {
            k.get("kid").and_then(Value::as_str) == Some(kid)
                && k.get("kty").and_then(Value::as_str) == Some("OKP")
                && k.get("crv").and_then(Value::as_str) == Some("Ed25519")
        })
        .ok_or(JwtError::UnknownKey)?;
    let x: [u8; 32] = key
        .get("x")
        .and_then(Value::as_str)
        .and_then(|x| URL_SAFE_NO_PAD.decode(x).ok())
        .and_then(|x| x.try_into().ok())
        .ok_or(JwtError::UnknownKey)?;
    let signing_input = &token[..h64.len() + 1 + c64.len()];
    if !countersign_verifier::verify_ed25519(&x, signing_input.as_bytes(), &sig) {
        return Err(JwtError::Signature);
    }
    Ok(claims)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use serde_json::json;

    pub(crate) const KEY: [u8; 32] = [7; 32];

    pub(crate) fn jwks() -> Value {
        let k = SigningKey::from_bytes(&KEY);
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "alg": "EdDSA",
            "x": URL_SAFE_NO_PAD.encode(k.verifying_key().as_bytes())}]})
    }

    pub(crate) fn sign(header: &Value, claims: &Value, key: &[u8; 32]) -> String {
        let mut t = URL_SAFE_NO_PAD.encode(header.to_string());
        t.push('.');
        t.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = SigningKey::from_bytes(key).sign(t.as_bytes());
        t.push('.');
        t.push_str(&URL_SAFE_NO_PAD.encode(sig.to_bytes()));
        t
    }

    fn header() -> Value {
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1"})
    }

    #[test]
    fn accepts_a_token_of_the_key_set() {
        let t = sign(&header(), &json!({"sub": "apv_1"}), &KEY);
        assert_eq!(kid_of(&t).as_deref(), Some("k1"));
        let c = verify(&t, &jwks(), "at+jwt").unwrap();
        assert_eq!(c["sub"], "apv_1");
    }

    #[test]
    fn refuses_forged_and_substituted_tokens() {
        let claims = json!({"sub": "apv_1"});
        // Another key, same kid.
        let t = sign(&header(), &claims, &[8; 32]);
        assert_eq!(verify(&t, &jwks(), "at+jwt"), Err(JwtError::Signature));
        // A claim changed after signing.
        let t = sign(&header(), &claims, &KEY);
        let mut parts: Vec<&str> = t.split('.').collect();
        let other = URL_SAFE_NO_PAD.encode(json!({"sub": "apv_2"}).to_string());
        parts[1] = &other;
        assert_eq!(
            verify(&parts.join("."), &jwks(), "at+jwt"),
            Err(JwtError::Signature)
        );
        // alg none, unknown kid, an ID token where an access token is expected.
        let t = sign(
            &json!({"alg": "none", "typ": "at+jwt", "kid": "k1"}),
            &claims,
            &KEY,
        );
        assert_eq!(verify(&t, &jwks(), "at+jwt"), Err(JwtError::Algorithm));
        let t = sign(
            &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k9"}),
            &claims,
            &KEY,
        );
        assert_eq!(verify(&t, &jwks(), "at+jwt"), Err(JwtError::UnknownKey));
        let t = sign(&json!({"alg": "EdDSA", "typ": "at+jwt"}), &claims, &KEY);
        assert_eq!(verify(&t, &jwks(), "at+jwt"), Err(JwtError::UnknownKey));
        let t = sign(
            &json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"}),
            &claims,
            &KEY,
        );
        assert_eq!(verify(&t, &jwks(), "at+jwt"), Err(JwtError::Type));
        assert!(matches!(
            verify("a.b", &jwks(), "at+jwt"),
            Err(JwtError::Malformed(_))
        ));
        assert!(matches!(
            verify("a.b.c.d", &jwks(), "at+jwt"),
            Err(JwtError::Malformed(_))
        ));
    }
}
