//! COSE_Key parsing (RFC 9052 section 7, RFC 9053) for the three WebAuthn algorithms we accept:
//! ES256 (EC2, P-256), EdDSA (OKP, Ed25519) and RS256 (RSA, RFC 8230).

use alloc::vec::Vec;
use core::fmt;

use minicbor::data::Type;
use minicbor::Decoder;

use crate::crypto::PublicKey;

/// The largest COSE key accepted, in bytes (an RSA-8192 key is about 1,050).
pub const MAX_COSE_KEY_BYTES: usize = 2048;

/// COSE algorithm identifiers (IANA "COSE Algorithms").
pub const ALG_ES256: i64 = -7;
/// EdDSA.
pub const ALG_EDDSA: i64 = -8;
/// RSASSA-PKCS1-v1_5 with SHA-256.
pub const ALG_RS256: i64 = -257;

/// Why a COSE key was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CoseKeyError {
    /// Not well-formed CBOR of the expected shape; the text says what was wrong.
    Malformed(&'static str),
    /// Longer than [`MAX_COSE_KEY_BYTES`].
    TooLarge,
    /// A key type, curve or algorithm other than ES256, EdDSA (Ed25519) and RS256.
    Unsupported,
    /// Bytes follow the key where none are allowed.
    TrailingBytes,
}

impl fmt::Display for CoseKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoseKeyError::Malformed(why) => write!(f, "malformed COSE key: {why}"),
            CoseKeyError::TooLarge => {
                write!(f, "COSE key is larger than {MAX_COSE_KEY_BYTES} bytes")
            }
            CoseKeyError::Unsupported => {
                f.write_str("unsupported COSE key (only ES256/P-256, EdDSA/Ed25519 and RS256)")
            }
            CoseKeyError::TrailingBytes => f.write_str("bytes after the COSE key"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for CoseKeyError {}

/// Parses a COSE key that must span all of `bytes`.
pub fn parse_cose_key(bytes: &[u8]) -> Result<PublicKey, CoseKeyError> {
    let (key, used) = parse_cose_key_prefix(bytes)?;
    if used != bytes.len() {
        return Err(CoseKeyError::TrailingBytes);
    }
    Ok(key)
}

/// Parses a COSE key at the start of `bytes` and returns it with the number of bytes it used
/// (authenticator data carries the key with extensions after it and no length prefix).
///
/// Only a definite-length map with integer labels and integer or byte-string values is
/// accepted; duplicate labels are rejected, unknown labels are skipped.
pub fn parse_cose_key_prefix(bytes: &[u8]) -> Result<(PublicKey, usize), CoseKeyError> {
    let mut d = Decoder::new(bytes);
    let m = |_| CoseKeyError::Malformed("not a CBOR map of integer labels");
    let n = d
        .map()
        .map_err(m)?
        .ok_or(CoseKeyError::Malformed("indefinite-length map"))?;
    if n > 16 {
        return Err(CoseKeyError::Malformed("too many entries"));
    }
    let mut seen: Vec<i64> = Vec::new();
    let (mut kty, mut alg, mut crv) = (None, None, None);
    let (mut b_neg2, mut b_neg3, mut b_neg1) = (None, None, None);
    for _ in 0..n {
        let label = d.i64().map_err(m)?;
        if seen.contains(&label) {
            return Err(CoseKeyError::Malformed("duplicate label"));
        }
        seen.push(label);
        let ty = d.datatype().map_err(m)?;
        match ty {
            Type::U8
            | Type::U16
            | Type::U32
            | Type::U64
            | Type::I8
            | Type::I16
            | Type::I32
            | Type::I64 => {
                let v = d
                    .i64()
                    .map_err(|_| CoseKeyError::Malformed("integer out of range"))?;
                match label {
                    1 => kty = Some(v),
                    3 => alg = Some(v),
                    -1 => crv = Some(v),
                    _ => {}
                }
            }
            Type::Bytes => {
                let v = d.bytes().map_err(m)?;
                match label {
                    -1 => b_neg1 = Some(v),
                    -2 => b_neg2 = Some(v),
                    -3 => b_neg3 = Some(v),
                    _ => {}
                }
            }
            _ => {
                return Err(CoseKeyError::Malformed(
                    "value is neither integer nor byte string",
                ))
            }
        }
    }
    let used = d.position();
    if used > MAX_COSE_KEY_BYTES {
        return Err(CoseKeyError::TooLarge);
    }
    let key = match (kty, alg) {
        // EC2 / ES256: crv 1 (P-256), x and y 32 bytes each.
        (Some(2), Some(ALG_ES256)) => {
            let (Some(1), Some(x), Some(y)) = (crv, b_neg2, b_neg3) else {
                return Err(CoseKeyError::Unsupported);
            };
            if x.len() != 32 || y.len() != 32 {
                return Err(CoseKeyError::Malformed("EC2 coordinates are not 32 bytes"));
            }
            let mut p = [0u8; 65];
            p[0] = 0x04;
            p[1..33].copy_from_slice(x);
            p[33..].copy_from_slice(y);
            // A point off the curve could never verify; refuse it at enrolment, not at approval.
            if p256::ecdsa::VerifyingKey::from_sec1_bytes(&p).is_err() {
                return Err(CoseKeyError::Malformed("EC2 point is not on P-256"));
            }
            PublicKey::Es256(p)
        }
        // OKP / EdDSA: crv 6 (Ed25519), x 32 bytes.
        (Some(1), Some(ALG_EDDSA)) => {
            let (Some(6), Some(x)) = (crv, b_neg2) else {
                return Err(CoseKeyError::Unsupported);
            };
            let x: [u8; 32] = x
                .try_into()
                .map_err(|_| CoseKeyError::Malformed("Ed25519 key is not 32 bytes"))?;
            // A key of small order (the identity among them) lets one signature verify for
            // every message under cofactorless verification: refused at enrolment, as an
            // invalid point is.
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&x)
                .map_err(|_| CoseKeyError::Malformed("Ed25519 key is not a curve point"))?;
            if vk.is_weak() {
                return Err(CoseKeyError::Malformed(
                    "Ed25519 key is of small order (a weak key any signature can match)",
                ));
            }
            PublicKey::Ed25519(x)
        }
        // RSA / RS256: n (-1) and e (-2) as big-endian byte strings.
        (Some(3), Some(ALG_RS256)) => {
            let (Some(nn), Some(e)) = (b_neg1, b_neg2) else {
                return Err(CoseKeyError::Malformed("RSA key without n or e"));
            };
            let strip = |b: &[u8]| -> Vec<u8> {
                let i = b.iter().position(|x| *x != 0).unwrap_or(b.len());
                b[i..].to_vec()
            };
            let (nn, e) = (strip(nn), strip(e));
            // Both backends must agree: ring takes odd exponents from 3 to 2^33 - 1.
            let e_val = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            if nn.is_empty() || e.len() > 5 || !(3..1 << 33).contains(&e_val) || e_val % 2 == 0 {
                return Err(CoseKeyError::Malformed(
                    "RSA modulus or exponent out of range",
                ));
            }
            PublicKey::Rs256 { n: nn, e }
        }
        (None, _) => return Err(CoseKeyError::Malformed("no key type (label 1)")),
        (_, None) => return Err(CoseKeyError::Malformed("no algorithm (label 3)")),
        _ => return Err(CoseKeyError::Unsupported),
    };
    Ok((key, used))
}

/// COSE algorithm number of a key.
pub fn cose_alg(key: &PublicKey) -> i64 {
    match key {
        PublicKey::Es256(_) => ALG_ES256,
        PublicKey::Ed25519(_) => ALG_EDDSA,
        PublicKey::Rs256 { .. } => ALG_RS256,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The Ed25519 base point's encoding: a valid key of large order.
    fn base_point() -> [u8; 32] {
        let mut x = [0x66u8; 32];
        x[0] = 0x58;
        x
    }

    // {1: 1, 3: -8, -1: 6, -2: h'..'} (OKP Ed25519)
    fn okp_with(x: &[u8; 32]) -> Vec<u8> {
        let mut v = alloc::vec![0xa4, 0x01, 0x01, 0x03, 0x27, 0x20, 0x06, 0x21, 0x58, 0x20];
        v.extend_from_slice(x);
        v
    }

    /// A valid Ed25519 COSE key (the other modules' tests use it too).
    pub(crate) fn okp() -> Vec<u8> {
        okp_with(&base_point())
    }

    #[test]
    fn parses_okp() {
        assert_eq!(parse_cose_key(&okp()), Ok(PublicKey::Ed25519(base_point())));
    }

    #[test]
    fn refuses_weak_and_invalid_ed25519_keys() {
        // The identity, and a point of order 2 (y = -1): small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut order2 = [0xffu8; 32];
        order2[0] = 0xec;
        order2[31] = 0x7f;
        for weak in [identity, order2] {
            assert_eq!(
                parse_cose_key(&okp_with(&weak)),
                Err(CoseKeyError::Malformed(
                    "Ed25519 key is of small order (a weak key any signature can match)"
                ))
            );
        }
        // y = 2 is not the y of any curve point.
        let mut off = [0u8; 32];
        off[0] = 2;
        assert_eq!(
            parse_cose_key(&okp_with(&off)),
            Err(CoseKeyError::Malformed("Ed25519 key is not a curve point"))
        );
    }

    #[test]
    fn rejects_bad_keys() {
        let mut t = okp();
        t.push(0);
        assert_eq!(parse_cose_key(&t), Err(CoseKeyError::TrailingBytes));
        let mut dup = okp();
        dup[5] = 0x01; // label -1 replaced by 3 -> duplicate alg
        dup[6] = 0x27;
        assert!(parse_cose_key(&dup).is_err());
        assert!(parse_cose_key(&okp()[..20]).is_err());
        assert!(parse_cose_key(&[]).is_err());
        assert!(parse_cose_key(&[0xbf, 0xff]).is_err());
        let mut wrong_alg = okp();
        wrong_alg[4] = 0x26; // alg -7 with OKP
        assert_eq!(parse_cose_key(&wrong_alg), Err(CoseKeyError::Unsupported));
    }
}
