//! Client secrets and client authentication (RFC 6749 section 2.3.1, OpenID Connect Core
//! section 9: `client_secret_basic`, `client_secret_post`).

use std::collections::HashMap;

use axum::http::{header, HeaderMap};
use base64::Engine;
use subtle::ConstantTimeEq;

pub use super::secrets::{hash_secret, verify_secret, SecretCache, ARGON2_AT_ONCE};
use crate::store::{AuthMethod, ClientRecord};
use crate::util::Secret;
use countersign_log::ApiError;

/// Longest client id or secret accepted anywhere (a bound on work before any lookup).
pub const MAX_CREDENTIAL_CHARS: usize = 256;

/// [`verify_secret`] for the async handlers: a cache miss runs argon2 on the blocking pool
/// (never on an async worker, where tens of milliseconds would stall every request queued
/// behind it), at most [`ARGON2_AT_ONCE`] at a time. Each argon2 run needs a token of the
/// source's and the client's guess buckets, and a place in a bounded queue
/// ([`crate::limits`]); a secret cached from an earlier success needs neither.
pub async fn verify_secret_async(
    ciba: &std::sync::Arc<crate::state::Approvals>,
    client: &ClientRecord,
    presented: &Secret,
    source: Option<std::net::IpAddr>,
) -> Result<bool, ApiError> {
    let quick = |c: &crate::state::Approvals| {
        let stored = &client.secret_hash;
        let digest = presented.sha256();
        if let Some(h) = stored.strip_prefix("sha256:") {
            return Some(hex::decode(h).is_ok_and(|h| bool::from(h.as_slice().ct_eq(&digest))));
        }
        c.secret_cache
            .check(&client.client_id, stored, &digest)
            .then_some(true)
    };
    if let Some(ok) = quick(ciba) {
        return Ok(ok);
    }
    ciba.limits
        .guess(&ciba.metrics, &client.client_id, source)?;
    let _place = ciba.limits.argon2_place(&ciba.metrics)?;
    let Ok(_permit) = ciba.secret_cache.2.acquire().await else {
        return Ok(false);
    };
    // Whoever held the permit before may just have verified this very secret.
    if let Some(ok) = quick(ciba) {
        return Ok(ok);
    }
    let (c, client, presented) = (ciba.clone(), client.clone(), presented.clone());
    Ok(
        tokio::task::spawn_blocking(move || verify_secret(&c.secret_cache, &client, &presented))
            .await
            .unwrap_or(false),
    )
}

/// Percent-decoding of `application/x-www-form-urlencoded` (`+` is a space), as RFC 6749
/// section 2.3.1 requires for the id and secret inside HTTP Basic.
fn form_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                // Two hex digits exactly: u8::from_str_radix alone would take "+3" as 3.
                let h = b.get(i + 1..i + 3)?;
                if !h.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Credentials a request presented.
pub struct Presented {
    /// Claimed client id.
    pub client_id: String,
    /// Presented secret.
    pub secret: Secret,
    /// How they were presented.
    pub method: AuthMethod,
}

/// Extracts client credentials from `Authorization: Basic` or the form; exactly one method may
/// be used (RFC 6749 section 2.3: a client MUST NOT use more than one).
pub fn presented(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Presented, ApiError> {
    if form.contains_key("client_assertion") || form.contains_key("client_assertion_type") {
        return presented_assertion(headers, form);
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then(|| rest.trim())
        });
    let post_secret = form.get("client_secret");
    match (basic, post_secret) {
        (Some(_), Some(_)) => Err(ApiError::invalid_request(
            "use one client authentication method, not Basic and client_secret together",
        )),
        (Some(b), None) => {
            let bad = || ApiError::invalid_client("malformed HTTP Basic credentials");
            if b.len() > 4 * MAX_CREDENTIAL_CHARS {
                return Err(bad());
            }
            let raw = crate::util::B64STD.decode(b).map_err(|_| bad())?;
            let raw = String::from_utf8(raw).map_err(|_| bad())?;
            let (id, secret) = raw.split_once(':').ok_or_else(bad)?;
            let (id, secret) = (
                form_decode(id).ok_or_else(bad)?,
                form_decode(secret).ok_or_else(bad)?,
            );
            if let Some(form_id) = form.get("client_id") {
                if *form_id != id {
                    return Err(ApiError::invalid_request(
                        "client_id in the body differs from the authenticated client",
                    ));
                }
            }
            Ok(Presented {
                client_id: id,
                secret: Secret::new(secret),
                method: AuthMethod::ClientSecretBasic,
            })
        }
        (None, Some(secret)) => {
            let id = form
                .get("client_id")
                .ok_or_else(|| ApiError::invalid_client("client_secret without client_id"))?;
            Ok(Presented {
                client_id: id.clone(),
                secret: Secret::new(secret.clone()),
                method: AuthMethod::ClientSecretPost,
            })
        }
        (None, None) => Err(ApiError::invalid_client(
            "client authentication is required (client_secret_basic or client_secret_post)",
        )),
    }
}

/// Authenticates the client of a request that came from `source`; every failure is the same
/// `invalid_client` so the answer does not tell which ids exist (a limit's 429 or 503 aside).
pub async fn authenticate(
    ciba: &std::sync::Arc<crate::state::Approvals>,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    source: Option<std::net::IpAddr>,
) -> Result<ClientRecord, ApiError> {
    authenticate_with(ciba, headers, form, true, source).await
}

/// Like [`authenticate`]; `strict_method` false lets a `client_secret_post` client use HTTP
/// Basic where no form body exists (GET of its evidence).
pub async fn authenticate_with(
    ciba: &std::sync::Arc<crate::state::Approvals>,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    strict_method: bool,
    source: Option<std::net::IpAddr>,
) -> Result<ClientRecord, ApiError> {
    let p = presented(headers, form)?;
    let fail = || ApiError::invalid_client("client authentication failed");
    let max_secret = if p.method == AuthMethod::PrivateKeyJwt {
        MAX_ASSERTION_BYTES
    } else {
        MAX_CREDENTIAL_CHARS
    };
    if p.client_id.is_empty()
        || p.client_id.len() > MAX_CREDENTIAL_CHARS
        || p.secret.expose().len() > max_secret
    {
        return Err(fail());
    }
    let Some(client) = ciba.store.client(&p.client_id).await? else {
        // Debug-formatted: an unknown client id is the caller's text, and a newline in it
        // must not start a forged log line.
        tracing::info!(client_id = ?p.client_id, "unknown client");
        return Err(fail());
    };
    // A key-based client never authenticates with a secret, nor a secret client with a JWT.
    let is_jwt = |m: AuthMethod| m == AuthMethod::PrivateKeyJwt;
    let method_ok = if strict_method {
        client.auth_method == p.method
    } else {
        is_jwt(client.auth_method) == is_jwt(p.method)
    };
    let ok = method_ok
        && if is_jwt(p.method) {
            match verify_client_assertion(ciba, &client, p.secret.expose()) {
                Some((jti, exp)) => remember_jti(ciba, &client.client_id, &jti, exp).await?,
                None => false,
            }
        } else {
            verify_secret_async(ciba, &client, &p.secret, source).await?
        };
    if !ok {
        tracing::info!(client_id = ?p.client_id, "client authentication failed");
        return Err(fail());
    }
    Ok(client)
}

/// The `client_assertion_type` of RFC 7523 section 2.2.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Longest client assertion accepted.
pub const MAX_ASSERTION_BYTES: usize = 8 * 1024;
/// Longest lifetime a client assertion may claim (its `exp` from now).
const MAX_ASSERTION_LIFETIME_SECS: u64 = 3600;

fn presented_assertion(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Presented, ApiError> {
    if headers.contains_key(header::AUTHORIZATION) || form.contains_key("client_secret") {
        return Err(ApiError::invalid_request(
            "use one client authentication method, not a client assertion and a secret",
        ));
    }
    if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
        return Err(ApiError::invalid_client(format!(
            "client_assertion_type must be {JWT_BEARER}"
        )));
    }
    let jwt = form
        .get("client_assertion")
        .ok_or_else(|| ApiError::invalid_client("client_assertion is missing"))?;
    // The client is named by client_id or, failing that, by the (still unverified) `sub`.
    let client_id = match form.get("client_id") {
        Some(id) => id.clone(),
        None => jwt
            .split('.')
            .nth(1)
            .and_then(|p| crate::util::B64URL.decode(p).ok())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["sub"].as_str().map(str::to_owned))
            .ok_or_else(|| ApiError::invalid_client("client assertion without sub"))?,
    };
    Ok(Presented {
        client_id,
        secret: Secret::new(jwt.clone()),
        method: AuthMethod::PrivateKeyJwt,
    })
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` of a JWS ES256 signature (`r || s`, RFC 7518
/// section 3.4), the form the verifier crate's ECDSA check takes.
fn es256_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() != 64 {
        return None;
    }
    let int = |x: &[u8]| {
        let mut v: Vec<u8> = x.iter().copied().skip_while(|b| *b == 0).collect();
        if v.first().is_none_or(|b| b & 0x80 != 0) {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    };
    let (r, s) = (int(&raw[..32]), int(&raw[32..]));
    let mut der = vec![0x30, (r.len() + s.len()) as u8];
    der.extend(r);
    der.extend(s);
    Some(der)
}

fn jwk_verifies(jwk: &serde_json::Value, alg: &str, message: &[u8], sig: &[u8]) -> bool {
    let coord = |name: &str| -> Option<[u8; 32]> {
        let b = crate::util::B64URL.decode(jwk[name].as_str()?).ok()?;
        <[u8; 32]>::try_from(b).ok()
    };
    match (alg, jwk["kty"].as_str(), jwk["crv"].as_str()) {
        ("EdDSA", Some("OKP"), Some("Ed25519")) => {
            let (Some(x), Ok(sig)) = (coord("x"), ed25519_dalek::Signature::from_slice(sig)) else {
                return false;
            };
            ed25519_dalek::VerifyingKey::from_bytes(&x)
                .is_ok_and(|k| k.verify_strict(message, &sig).is_ok())
        }
        ("ES256", Some("EC"), Some("P-256")) => {
            let (Some(x), Some(y), Some(der)) = (coord("x"), coord("y"), es256_raw_to_der(sig))
            else {
                return false;
            };
            let mut point = [0u8; 65];
            point[0] = 4;
            point[1..33].copy_from_slice(&x);
            point[33..].copy_from_slice(&y);
            countersign_verifier::verify_signature(
                &countersign_verifier::PublicKey::Es256(point),
                message,
                &der,
            )
        }
        _ => false,
    }
}

/// Checks a `private_key_jwt` client assertion (RFC 7523 section 3; OIDC Core section 9):
/// signed (EdDSA or ES256) by one of the client's registered keys, `iss` = `sub` = client id,
/// `aud` naming this server (issuer, token or backchannel endpoint), unexpired with a bounded
/// lifetime. Returns its `jti` and expiry, which [`remember_jti`] must then find new.
pub fn verify_client_assertion(
    ciba: &crate::state::Approvals,
    client: &ClientRecord,
    jwt: &str,
) -> Option<(String, u64)> {
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let json = |p: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&crate::util::B64URL.decode(p).ok()?).ok()
    };
    let (Some(header), Some(claims), Ok(sig)) = (json(h), json(c), crate::util::B64URL.decode(s))
    else {
        return None;
    };
    let alg = header["alg"].as_str()?;
    let keys = client.jwks.as_ref().and_then(|j| j["keys"].as_array())?;
    let kid = header["kid"].as_str();
    let message = &jwt.as_bytes()[..h.len() + 1 + c.len()];
    let signed = keys
        .iter()
        .filter(|k| kid.is_none() || k["kid"].as_str() == kid)
        .any(|k| jwk_verifies(k, alg, message, &sig));
    if !signed {
        return None;
    }
    let id = client.client_id.as_str();
    if claims["iss"].as_str() != Some(id) || claims["sub"].as_str() != Some(id) {
        return None;
    }
    let base = &ciba.config.public_url;
    // `{base}/`: the issuer as the `auth0` package writes it (`https://<domain>/`).
    let ours = [
        base.clone(),
        format!("{base}/"),
        format!("{base}/token"),
        format!("{base}/oauth/token"),
        format!("{base}/bc-authorize"),
    ];
    let aud_ok = match &claims["aud"] {
        serde_json::Value::String(a) => ours.contains(a),
        serde_json::Value::Array(a) => a
            .iter()
            .any(|x| x.as_str().is_some_and(|x| ours.iter().any(|o| o == x))),
        _ => false,
    };
    let now = crate::util::now_secs();
    let exp = claims["exp"].as_u64()?;
    let jti = claims["jti"]
        .as_str()
        .filter(|j| !j.is_empty() && j.len() <= 256)?;
    if !aud_ok || exp <= now || exp > now + MAX_ASSERTION_LIFETIME_SECS {
        return None;
    }
    Some((jti.to_owned(), exp))
}

/// Prefix of the stored `jti`s of client assertions (`j/<hex SHA-256 of client id, NUL, jti>`,
/// valued the assertion's expiry as 8 big-endian bytes and the client id).
pub const JTI_PREFIX: &str = "j/";

fn jti_hash(client_id: &str, jti: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(client_id.as_bytes());
    h.update([0]);
    h.update(jti.as_bytes());
    h.finalize().into()
}

fn seen_jtis(
    ciba: &crate::state::Approvals,
) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<[u8; 32], u64>>> {
    match ciba.secret_cache.1.lock() {
        Ok(m) => m,
        Err(p) => p.into_inner(),
    }
}

/// Records the `jti` of a verified client assertion, in memory and durably, before the
/// assertion is accepted: false if it was seen before (a replay, even across a restart).
/// A client may have [`crate::CibaConfig::client_max_live_assertions`] unexpired at once;
/// beyond that its assertions are refused (429) until some expire, rather than forgotten,
/// which would let them be replayed.
pub async fn remember_jti(
    ciba: &crate::state::Approvals,
    client_id: &str,
    jti: &str,
    exp: u64,
) -> Result<bool, ApiError> {
    let hash = jti_hash(client_id, jti);
    let now = crate::util::now_secs();
    {
        let mut seen = seen_jtis(ciba);
        let mine = seen.entry(client_id.to_owned()).or_default();
        if mine.len() >= ciba.config.client_max_live_assertions {
            mine.retain(|_, e| *e > now);
        }
        if mine.contains_key(&hash) {
            return Ok(false);
        }
        if mine.len() >= ciba.config.client_max_live_assertions {
            ciba.metrics.refused("client_assertions");
            let next = mine.values().min().copied().unwrap_or(now);
            return Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "this client has too many unexpired client assertions; use shorter-lived ones",
            )
            .retry_after(u32::try_from(next.saturating_sub(now).max(1)).unwrap_or(u32::MAX)));
        }
        mine.insert(hash, exp);
    }
    let mut value = exp.to_be_bytes().to_vec();
    value.extend_from_slice(client_id.as_bytes());
    let key = format!("{JTI_PREFIX}{}", hex::encode(hash));
    // On the shared driver another instance may have seen it: the store decides, under the
    // record's lock at every instance.
    let _g = if ciba.store.is_shared() {
        let g = ciba.store.lock(&key).await?;
        if ciba.store.get_raw(&key).await?.is_some() {
            return Ok(false);
        }
        Some(g)
    } else {
        None
    };
    if let Err(e) = ciba.store.write(&[(key, value)], &[]).await {
        // Not stored: not accepted (a restart would forget it). Forgetting it here lets the
        // client retry the same assertion.
        if let Some(m) = seen_jtis(ciba).get_mut(client_id) {
            m.remove(&hash);
        }
        return Err(e.into());
    }
    Ok(true)
}

/// Loads the stored `jti`s not yet expired at `now` (start-up) and deletes expired ones.
pub fn load_jtis(ciba: &crate::state::Approvals, now: u64) -> Result<usize, ApiError> {
    let mut expired = crate::store::Batch::new();
    let mut loaded = 0;
    let end = countersign_log::storage::kv::prefix_end(JTI_PREFIX.as_bytes());
    let mut from = JTI_PREFIX.as_bytes().to_vec();
    loop {
        let page = ciba
            .store
            .scan_range_blocking(&from, end.as_deref(), 4096)?;
        let full = page.len() == 4096;
        if let Some((last, _)) = page.last() {
            from = last.as_bytes().to_vec();
            from.push(0);
        }
        let mut seen = seen_jtis(ciba);
        for (k, v) in page {
            let hash = hex::decode(k.strip_prefix(JTI_PREFIX).unwrap_or_default())
                .ok()
                .and_then(|h| <[u8; 32]>::try_from(h).ok());
            let exp = v
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes);
            let client = v.get(8..).and_then(|c| std::str::from_utf8(c).ok());
            match (hash, exp, client) {
                (Some(h), Some(exp), Some(client)) if exp > now => {
                    seen.entry(client.to_owned()).or_default().insert(h, exp);
                    loaded += 1;
                }
                _ => {
                    expired.delete(k);
                }
            }
        }
        if !full {
            break;
        }
    }
    ciba.store.commit_blocking(expired)?;
    Ok(loaded)
}

/// Forgets the `jti`s expired at `now`, in memory and in the store (the clean-up task).
pub async fn sweep_jtis(ciba: &crate::state::Approvals, now: u64) -> Result<usize, ApiError> {
    let gone: Vec<String> = {
        let mut seen = seen_jtis(ciba);
        let mut gone = Vec::new();
        for m in seen.values_mut() {
            m.retain(|h, e| {
                let keep = *e > now;
                if !keep {
                    gone.push(format!("{JTI_PREFIX}{}", hex::encode(h)));
                }
                keep
            });
        }
        seen.retain(|_, m| !m.is_empty());
        gone
    };
    if !gone.is_empty() {
        ciba.store.write(&[], &gone).await?;
    }
    Ok(gone.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn secrets_hash_and_verify() {
        let cache = SecretCache::default();
        assert!(es256_raw_to_der(&[0u8; 63]).is_none());
        assert_eq!(
            es256_raw_to_der(&[[0x80u8; 32], [1u8; 32]].concat()).unwrap()[..5],
            [0x30, 0x45, 0x02, 0x21, 0x00]
        );
        for generated in [true, false] {
            let s = Secret::new("correct horse");
            let client = ClientRecord {
                client_id: "c1".into(),
                auth_method: AuthMethod::ClientSecretBasic,
                secret_hash: hash_secret(&s, generated).unwrap(),
                jwks: None,
                mode: crate::store::DeliveryMode::Poll,
                notification_endpoint: None,
                created_at: 0,
                approvers: None,
            };
            assert!(!client.secret_hash.contains("correct"));
            assert!(verify_secret(&cache, &client, &s));
            assert!(verify_secret(&cache, &client, &s));
            assert!(!verify_secret(&cache, &client, &Secret::new("wrong")));
            cache.forget("c1");
        }
        assert!(!format!("{:?}", Secret::new("xyz")).contains("xyz"));
    }

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode("a%3Ab+c").unwrap(), "a:b c");
        assert!(form_decode("%4").is_none());
        // fuzz/regressions/ciba_form/basic-secret-percent-plus-sign: u8::from_str_radix takes a
        // leading '+', so "%+3" decoded to 0x03 where strict form decoding refuses it.
        assert!(form_decode("3ZrucA%+3q").is_none());
        assert!(form_decode("%+f").is_none());
        assert!(form_decode("%-1").is_none());
        assert_eq!(form_decode("%2b%2B").unwrap(), "++");
    }
}
