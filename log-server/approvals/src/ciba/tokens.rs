//! Access and ID tokens: compact JWS (RFC 7515) with EdDSA/Ed25519 (RFC 8037), keys published
//! as a JWKS.
//!
//! Signing is done with `ed25519-dalek` (already the log's checkpoint signer) and `base64`
//! rather than a JOSE crate: the server only ever *produces* tokens with one fixed algorithm and
//! header, so there is no algorithm negotiation or header parsing to get wrong; verification is
//! the resource server's job with any JOSE library and our JWKS. The one place we read a JWT
//! (`id_token_hint`) checks our own header and signature byte for byte.
//!
//! Rotation: every key ever created stays in the JWKS (they are few), so tokens signed before a
//! rotation keep validating until they expire; new tokens use the newest key.

use std::sync::RwLock;

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde_json::{json, Map, Value};
use sha2::Digest;

use crate::store::CibaStore;
use crate::util::B64URL;
use countersign_log::storage::StorageError;

/// One signing key.
struct Key {
    kid: String,
    signing: SigningKey,
    created_at: u64,
}

/// The token signing keys, newest last.
pub struct KeySet {
    keys: RwLock<Vec<Key>>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeySet(<redacted>)")
    }
}

/// The stored keys, oldest first.
fn stored_keys(store: &CibaStore) -> Result<Vec<Key>, StorageError> {
    let mut keys = Vec::new();
    for (_, v) in store.scan_blocking("k/", 1000)? {
        let rec: Value = serde_json::from_slice(&v)
            .map_err(|e| StorageError::Corrupt(format!("token key record: {e}")))?;
        let seed = rec["seed"]
            .as_str()
            .and_then(|s| hex::decode(s).ok())
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| StorageError::Corrupt("token key record without a seed".into()))?;
        let signing = SigningKey::from_bytes(&seed);
        keys.push(Key {
            kid: kid_of(&signing.verifying_key()),
            signing,
            created_at: rec["created_at"].as_u64().unwrap_or(0),
        });
    }
    keys.sort_by_key(|k| k.created_at);
    Ok(keys)
}

fn kid_of(vk: &VerifyingKey) -> String {
    B64URL.encode(&countersign_verifier::sha256(vk.as_bytes())[..12])
}

impl KeySet {
    /// Loads the keys, creating the first on first start.
    pub fn load_or_create(store: &CibaStore) -> Result<KeySet, StorageError> {
        let set = KeySet {
            keys: RwLock::new(stored_keys(store)?),
        };
        if set.read().is_empty() {
            set.rotate(store)?;
        }
        Ok(set)
    }

    /// Reads the keys again from the store (on the shared driver, where another instance may
    /// have rotated them): the JWKS then publishes every key any instance signs with.
    pub fn reload(&self, store: &CibaStore) -> Result<(), StorageError> {
        let keys = stored_keys(store)?;
        if keys.is_empty() {
            return Ok(());
        }
        *match self.keys.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        } = keys;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Key>> {
        match self.keys.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Creates a new signing key; older keys stay published. Returns the new `kid`.
    pub fn rotate(&self, store: &CibaStore) -> Result<String, StorageError> {
        let seed = crate::util::random_bytes::<32>();
        let signing = SigningKey::from_bytes(&seed);
        let kid = kid_of(&signing.verifying_key());
        // Strictly increasing creation times keep the order even within one millisecond.
        let last = self.read().last().map(|k| k.created_at).unwrap_or(0);
        let created_at = countersign_log::now_ms().max(last + 1);
        store.put_blocking(
            &format!("k/{kid}"),
            &json!({"seed": hex::encode(seed), "created_at": created_at}),
        )?;
        let mut keys = match self.keys.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        keys.push(Key {
            kid: kid.clone(),
            signing,
            created_at,
        });
        Ok(kid)
    }

    /// The JWKS document (RFC 7517; OKP keys per RFC 8037).
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .read()
            .iter()
            .rev()
            .map(|k| {
                json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": B64URL.encode(k.signing.verifying_key().as_bytes()),
                    "kid": k.kid,
                    "use": "sig",
                    "alg": "EdDSA",
                })
            })
            .collect();
        json!({ "keys": keys })
    }

    /// Signs `claims` as a compact JWS with the newest key.
    pub fn sign(&self, typ: &str, claims: &Map<String, Value>) -> Result<String, NoSigningKey> {
        let keys = self.read();
        let key = keys.last().ok_or(NoSigningKey)?;
        let header = json!({"alg": "EdDSA", "typ": typ, "kid": key.kid});
        let mut out = B64URL.encode(header.to_string());
        out.push('.');
        out.push_str(&B64URL.encode(Value::Object(claims.clone()).to_string()));
        let sig = key.signing.sign(out.as_bytes());
        out.push('.');
        out.push_str(&B64URL.encode(sig.to_bytes()));
        Ok(out)
    }

    /// Verifies a JWT this server signed (any of its keys) and returns its claims. Expiry is
    /// not checked: used for `id_token_hint`, which may be expired (CIBA section 7.1).
    pub fn verify_own(&self, jwt: &str) -> Option<Map<String, Value>> {
        if jwt.len() > 16 * 1024 {
            return None;
        }
        let mut parts = jwt.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&B64URL.decode(h).ok()?).ok()?;
        if header["alg"] != "EdDSA" {
            return None;
        }
        let kid = header["kid"].as_str()?;
        let sig = ed25519_dalek::Signature::from_slice(&B64URL.decode(s).ok()?).ok()?;
        let keys = self.read();
        let key = keys.iter().find(|k| k.kid == kid)?;
        let signed_len = h.len() + 1 + c.len();
        key.signing
            .verifying_key()
            .verify(&jwt.as_bytes()[..signed_len], &sig)
            .ok()?;
        match serde_json::from_slice(&B64URL.decode(c).ok()?).ok()? {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }
}

/// `at_hash` (OpenID Connect Core section 3.3.2.11): the left half of the access token's hash
/// with the hash of the signing algorithm; for EdDSA with Ed25519 that is SHA-512 (OpenID
/// Connect Core errata set 2).
pub fn at_hash(access_token: &str) -> String {
    let d = sha2::Sha512::digest(access_token.as_bytes());
    B64URL.encode(&d[..32])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sign_verify_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            countersign_log::storage::Store::open_with(dir.path(), crate::COLUMN_FAMILIES).unwrap();
        let cs = CibaStore::new(store).unwrap();
        let ks = KeySet::load_or_create(&cs).unwrap();
        let mut claims = Map::new();
        claims.insert("sub".into(), json!("apv"));
        let t1 = ks.sign("JWT", &claims).unwrap();
        assert_eq!(ks.verify_own(&t1).unwrap()["sub"], "apv");
        ks.rotate(&cs).unwrap();
        let t2 = ks.sign("JWT", &claims).unwrap();
        assert_ne!(t1.split('.').next(), t2.split('.').next());
        assert!(ks.verify_own(&t1).is_some(), "old tokens keep validating");
        assert_eq!(ks.jwks()["keys"].as_array().unwrap().len(), 2);
        let mut bad = t2.clone();
        bad.replace_range(bad.len() - 3.., "AAA");
        assert!(ks.verify_own(&bad).is_none());
        let reloaded = KeySet::load_or_create(&cs).unwrap();
        assert_eq!(reloaded.jwks(), ks.jwks());
    }
}

/// [`KeySet::sign`] found no key (none was ever created: the store is damaged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoSigningKey;

impl std::fmt::Display for NoSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no token signing key")
    }
}

impl std::error::Error for NoSigningKey {}
