//! WebAuthn ceremonies of the approval front end, as start/finish pairs with server-held state:
//! passkey enrolment behind a one-time link, approver sign-in, and approve/deny.
//!
//! Options and responses use the JSON shapes of `webauthn-rs-proto`
//! (`CreationChallengeResponse`, `RegisterPublicKeyCredential`, `RequestChallengeResponse`,
//! `PublicKeyCredential`), base64url without padding. Every check is the verifier crate's
//! (`verify_registration`, `verify_assertion`); a decision is verified once more by
//! [`crate::LogHandle::append_decision`] before it is logged, so nothing is logged for an
//! assertion that does not hold.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use countersign_verifier::{
    challenge, cose_alg, parse_cose_key, verify_assertion, verify_registration, Assertion,
    AssertionPolicy, Decision, Entry, RegistrationPolicy,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::api::{AppState, PathParam};
use crate::append::{DecisionRequest, EnrolmentRequest};
use crate::ciba::records::{
    ApproverRecord, Batch, ClaimRecord, CredentialRef, DecisionRecord, DeliveryMode, Durability,
    EnrolmentLink, RequestRecord, RequestStatus,
};
use crate::ciba::{ciba_of, now_secs, Ciba, CibaStore, OAuthError, Secret, B64URL};

/// How long a started ceremony may take.
const CEREMONY_TTL: Duration = Duration::from_secs(300);
/// Most ceremonies held at once (a bound on memory a flood of starts can take).
const MAX_CEREMONIES: usize = 100_000;
/// Largest ceremony body.
const MAX_BODY: usize = 64 * 1024;
/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "countersign_session";

enum Kind {
    Enrol { link_hash: [u8; 32] },
    SignIn,
}

struct Ceremony {
    kind: Kind,
    challenge: [u8; 32],
    started: Instant,
}

/// Started ceremonies, by id; each is taken once by its finish.
#[derive(Default)]
pub struct Ceremonies(Mutex<HashMap<String, Ceremony>>);

impl Ceremonies {
    fn start(&self, kind: Kind) -> Result<(String, [u8; 32]), OAuthError> {
        let mut m = match self.0.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.retain(|_, c| c.started.elapsed() < CEREMONY_TTL);
        if m.len() >= MAX_CEREMONIES {
            return Err(OAuthError::with_status(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many ceremonies in progress; retry shortly",
            ));
        }
        let id = B64URL.encode(crate::ciba::random_bytes::<16>());
        let challenge = crate::ciba::random_bytes::<32>();
        m.insert(
            id.clone(),
            Ceremony {
                kind,
                challenge,
                started: Instant::now(),
            },
        );
        Ok((id, challenge))
    }

    fn take(&self, id: &str) -> Option<Ceremony> {
        let mut m = match self.0.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.remove(id).filter(|c| c.started.elapsed() < CEREMONY_TTL)
    }
}

/// A signed-in approver.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    /// Who.
    pub approver_id: String,
    /// The CSRF token the pages send back in `X-CSRF-Token`.
    pub csrf: Secret,
    expires_at: u64,
}

/// Sessions by SHA-256 of the cookie value: stored (`s/<hash hex>`, so a restart signs nobody
/// out) and cached in memory. The cookie itself is never stored; the session's CSRF token is,
/// which weakens nothing: it is useless without the cookie. Expired sessions are deleted by the
/// clean-up sweep.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<[u8; 32], Session>>);

/// Prefix of stored sessions.
pub const SESSION_PREFIX: &str = "s/";

fn session_key(hash: &[u8; 32]) -> String {
    format!("{SESSION_PREFIX}{}", hex::encode(hash))
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        match self.0.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        }
    }

    /// A new session, stored before its cookie is handed out.
    async fn create(
        &self,
        store: &CibaStore,
        approver_id: &str,
        ttl: u64,
    ) -> Result<(Secret, Session), OAuthError> {
        let token = Secret::generate();
        let s = Session {
            approver_id: approver_id.to_owned(),
            csrf: Secret::generate(),
            expires_at: now_secs() + ttl,
        };
        let hash = token.sha256();
        let mut b = Batch::new();
        b.put_json(session_key(&hash), &s)?;
        // Not synced: a session lost with the machine only means signing in again.
        store.commit(b, Durability::Deferred).await?;
        let mut m = self.lock();
        let now = now_secs();
        m.retain(|_, s| s.expires_at > now);
        m.insert(hash, s.clone());
        Ok((token, s))
    }

    /// Signs an approver out everywhere.
    pub fn drop_approver(&self, store: &CibaStore, approver_id: &str) {
        self.lock().retain(|_, s| s.approver_id != approver_id);
        match stored_sessions_where(store, |s| s.approver_id == approver_id) {
            Ok(b) => store.commit_in_background(b),
            // The approver record is disabled first, and every session check reads it.
            Err(e) => tracing::warn!(error = %e, "could not read the stored sessions"),
        }
    }

    fn get(&self, store: &CibaStore, token: &str) -> Option<Session> {
        let h = countersign_verifier::sha256(token.as_bytes());
        let now = now_secs();
        if let Some(s) = self.lock().get(&h).filter(|s| s.expires_at > now) {
            return Some(s.clone());
        }
        // Not in memory: made before a restart, or not a session at all.
        let s = store
            .get::<Session>(&session_key(&h))
            .ok()
            .flatten()
            .filter(|s| s.expires_at > now)?;
        self.lock().insert(h, s.clone());
        Some(s)
    }

    fn remove(&self, store: &CibaStore, token: &str) {
        let h = countersign_verifier::sha256(token.as_bytes());
        self.lock().remove(&h);
        let mut b = Batch::new();
        b.delete(session_key(&h));
        store.commit_in_background(b);
    }
}

/// The deletion of every stored session `pred` holds for (and of unreadable ones).
fn stored_sessions_where(
    store: &CibaStore,
    pred: impl Fn(&Session) -> bool,
) -> Result<Batch, crate::storage::StorageError> {
    let mut b = Batch::new();
    for (k, v) in store.scan(SESSION_PREFIX, usize::MAX)? {
        if serde_json::from_slice::<Session>(&v).map_or(true, |s| pred(&s)) {
            b.delete(k);
        }
    }
    Ok(b)
}

/// Deletes the stored sessions that expired before `now`; how many.
pub async fn sweep_sessions(
    store: &CibaStore,
    now: u64,
) -> Result<usize, crate::storage::StorageError> {
    let b = stored_sessions_where(store, |s| s.expires_at <= now)?;
    let n = b.len();
    store.commit(b, Durability::Deferred).await?;
    Ok(n)
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The session of a page request (GET: no CSRF check needed, nothing changes).
pub(crate) fn session_of(c: &Ciba, headers: &HeaderMap) -> Option<Session> {
    session_and_approver(c, headers).map(|(s, _)| s)
}

/// The session of a page request and its (enabled) approver's record.
fn session_and_approver(c: &Ciba, headers: &HeaderMap) -> Option<(Session, ApproverRecord)> {
    let s = c
        .sessions
        .get(&c.store, cookie_value(headers, SESSION_COOKIE)?)?;
    // A disabled approver's sessions are dropped when disabled; this also covers a restart race.
    match c.store.approver(&s.approver_id) {
        Ok(Some(a)) if !a.disabled => Some((s, a)),
        _ => None,
    }
}

fn unauthorized() -> OAuthError {
    OAuthError::with_status(
        StatusCode::UNAUTHORIZED,
        "login_required",
        "sign in with your passkey first",
    )
}

/// The session of a state-changing request. CSRF defence in depth: the cookie is
/// `SameSite=Strict`, the body must be JSON (a cross-site form cannot send it without a
/// preflight), and the per-session CSRF token must come back in `X-CSRF-Token`.
pub(crate) fn session_for_change(c: &Ciba, headers: &HeaderMap) -> Result<Session, OAuthError> {
    change_session_and_approver(c, headers).map(|(s, _)| s)
}

/// [`session_for_change`] with the approver's record.
fn change_session_and_approver(
    c: &Ciba,
    headers: &HeaderMap,
) -> Result<(Session, ApproverRecord), OAuthError> {
    let (s, approver) = session_and_approver(c, headers).ok_or_else(unauthorized)?;
    let sent = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !bool::from(sent.as_bytes().ct_eq(s.csrf.expose().as_bytes())) {
        return Err(OAuthError::with_status(
            StatusCode::FORBIDDEN,
            "csrf",
            "the page is out of date; reload it and try again",
        ));
    }
    Ok((s, approver))
}

fn json_body<T: for<'de> Deserialize<'de>>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, OAuthError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim() == "application/json")
        });
    if !is_json {
        return Err(OAuthError::invalid_request(
            "the body must be application/json",
        ));
    }
    let body = body.map_err(|r| {
        OAuthError::with_status(
            r.status(),
            "invalid_request",
            "the request body could not be read",
        )
    })?;
    if body.len() > MAX_BODY {
        return Err(OAuthError::with_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "the request body is too large",
        ));
    }
    serde_json::from_slice(&body)
        .map_err(|e| OAuthError::invalid_request(format!("invalid JSON body: {e}")))
}

fn b64(name: &str, s: &str) -> Result<Vec<u8>, OAuthError> {
    B64URL
        .decode(s.trim_end_matches('='))
        .map_err(|_| OAuthError::invalid_request(format!("{name} is not base64url")))
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/enrol/start", post(enrol_start))
        .route("/v1/enrol/finish", post(enrol_finish))
        .route("/v1/session/start", post(signin_start))
        .route("/v1/session/finish", post(signin_finish))
        .route("/v1/session/logout", post(logout))
        .route("/v1/inbox", get(inbox))
        .route("/v1/requests/{request_id}", get(request_detail))
        .route("/v1/requests/{request_id}/decide/start", post(decide_start))
        .route(
            "/v1/requests/{request_id}/decide/finish",
            post(decide_finish),
        )
}

// ---- enrolment ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolStart {
    token: String,
}

fn valid_link(c: &Ciba, token: &str) -> Result<([u8; 32], EnrolmentLink), OAuthError> {
    let h = Secret::new(token).sha256();
    let gone = || {
        OAuthError::with_status(
            StatusCode::GONE,
            "invalid_link",
            "this enrolment link is unknown, used or expired; ask your administrator for a new one",
        )
    };
    if token.len() > 128 {
        return Err(gone());
    }
    let link: EnrolmentLink = c
        .store
        .get(&format!("l/{}", hex::encode(h)))?
        .ok_or_else(gone)?;
    if link.used || link.expires_at <= now_secs() {
        return Err(gone());
    }
    Ok((h, link))
}

/// The enrolment link's approver, for the enrolment page (None if the link is not usable).
pub(crate) fn link_approver(c: &Ciba, token: &str) -> Option<ApproverRecord> {
    let (_, link) = valid_link(c, token).ok()?;
    c.store
        .approver(&link.approver_id)
        .ok()
        .flatten()
        .filter(|a| !a.disabled)
}

async fn enrol_start(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthError> {
    let c = ciba_of(&s)?;
    let b: EnrolStart = json_body(&headers, body)?;
    let (link_hash, link) = valid_link(c, &b.token)?;
    let approver = c
        .store
        .approver(&link.approver_id)?
        .filter(|a| !a.disabled)
        .ok_or_else(|| {
            OAuthError::with_status(StatusCode::GONE, "invalid_link", "the approver is disabled")
        })?;
    let (id, ch) = c.ceremonies.start(Kind::Enrol { link_hash })?;
    let policy = s.log.policy();
    let exclude: Vec<Value> = approver
        .credentials
        .iter()
        .map(|cr| json!({"type": "public-key", "id": cr.credential_id}))
        .collect();
    Ok(Json(json!({
        "ceremony_id": id,
        "publicKey": {
            "rp": {"id": policy.rp_id, "name": "Countersign"},
            "user": {
                "id": B64URL.encode(approver.approver_id.as_bytes()),
                "name": approver.email,
                "displayName": approver.name.clone().unwrap_or_else(|| approver.email.clone()),
            },
            "challenge": B64URL.encode(ch),
            "pubKeyCredParams": [
                {"type": "public-key", "alg": -7},
                {"type": "public-key", "alg": -8},
                {"type": "public-key", "alg": -257},
            ],
            "timeout": CEREMONY_TTL.as_millis() as u64,
            "excludeCredentials": exclude,
            "authenticatorSelection": {
                "residentKey": "preferred",
                "requireResidentKey": false,
                "userVerification": if policy.require_user_verification { "required" } else { "preferred" },
            },
            "attestation": "none",
        },
    }))
    .into_response())
}

#[derive(Deserialize)]
struct RegisterResponse {
    #[serde(rename = "attestationObject")]
    attestation_object: String,
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
}

#[derive(Deserialize)]
struct RegisterCredential {
    #[serde(rename = "rawId")]
    raw_id: String,
    #[serde(rename = "type")]
    type_: String,
    response: RegisterResponse,
}

#[derive(Deserialize)]
struct EnrolFinish {
    ceremony_id: String,
    token: String,
    credential: RegisterCredential,
}

async fn enrol_finish(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthError> {
    let c = ciba_of(&s)?.clone();
    let b: EnrolFinish = json_body(&headers, body)?;
    let cer = c.ceremonies.take(&b.ceremony_id).ok_or_else(|| {
        OAuthError::invalid_request("the enrolment ceremony is unknown or timed out; start again")
    })?;
    let (link_hash, link) = valid_link(&c, &b.token)?;
    match cer.kind {
        Kind::Enrol { link_hash: h } if h == link_hash => {}
        _ => {
            return Err(OAuthError::invalid_request(
                "the ceremony belongs to another link",
            ))
        }
    }
    if b.credential.type_ != "public-key" {
        return Err(OAuthError::invalid_request(
            "credential type must be public-key",
        ));
    }
    let att = b64(
        "attestationObject",
        &b.credential.response.attestation_object,
    )?;
    let cdj = b64("clientDataJSON", &b.credential.response.client_data_json)?;
    let policy = s.log.policy().clone();
    let origins: Vec<&str> = policy.allowed_origins.iter().map(String::as_str).collect();
    let reg = verify_registration(
        &att,
        &cdj,
        &cer.challenge,
        &RegistrationPolicy {
            rp_id: &policy.rp_id,
            allowed_origins: &origins,
            require_user_verification: policy.require_user_verification,
            aaguid_allowlist: c.config.aaguid_allowlist.as_deref(),
        },
    )
    .map_err(|e| {
        tracing::info!(approver_id = %link.approver_id, error = %e, "enrolment refused");
        OAuthError::bad(
            "invalid_registration",
            format!("the passkey could not be enrolled: {e}"),
        )
    })?;
    if B64URL.encode(&reg.credential_id) != b.credential.raw_id.trim_end_matches('=') {
        return Err(OAuthError::invalid_request(
            "rawId is not the attested credential id",
        ));
    }
    let alg = parse_cose_key(&reg.public_key_cose)
        .map(|k| cose_alg(&k))
        .map_err(|e| OAuthError::bad("invalid_registration", format!("public key: {e}")))?;
    let link_key = format!("l/{}", hex::encode(link_hash));
    // Claim the link before logging, so one link enrols one passkey even under a race.
    {
        let _g = c.store.lock(&link_key).await;
        let mut l: EnrolmentLink = c.store.get(&link_key)?.ok_or_else(|| {
            OAuthError::with_status(StatusCode::GONE, "invalid_link", "the link is gone")
        })?;
        if l.used {
            return Err(OAuthError::with_status(
                StatusCode::GONE,
                "invalid_link",
                "the link was used",
            ));
        }
        l.used = true;
        c.store.put(&link_key, &l).await?;
    }
    let appended = s
        .log
        .append_enrolment(EnrolmentRequest {
            approver_id: link.approver_id.clone(),
            credential_id: reg.credential_id.clone(),
            public_key: reg.public_key_cose.clone(),
            aaguid: reg.aaguid,
            attestation_format: reg.attestation_format.clone(),
        })
        .await;
    let a = match appended {
        Ok(a) if !a.existing => a,
        other => {
            // Give the link back: nothing new was enrolled.
            let _g = c.store.lock(&link_key).await;
            if let Some(mut l) = c.store.get::<EnrolmentLink>(&link_key)? {
                l.used = false;
                c.store.put(&link_key, &l).await?;
            }
            return Err(match other {
                Ok(_) => OAuthError::with_status(
                    StatusCode::CONFLICT,
                    "already_enrolled",
                    "this passkey is already enrolled",
                ),
                Err(e) => append_error("enrolment", e),
            });
        }
    };
    {
        let approver_key = format!("a/{}", link.approver_id);
        let _g = c.store.lock(&approver_key).await;
        let mut ap = c
            .store
            .approver(&link.approver_id)?
            .ok_or_else(|| OAuthError::internal("enrol_finish", "approver vanished"))?;
        ap.credentials.push(CredentialRef {
            credential_id: B64URL.encode(&reg.credential_id),
            enrolment_index: a.index,
            alg,
        });
        c.store.put(&approver_key, &ap).await?;
    }
    tracing::info!(approver_id = %link.approver_id, index = a.index, "passkey enrolled");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "approver_id": link.approver_id,
            "credential_id": B64URL.encode(&reg.credential_id),
            "log_index": a.index,
            "leaf_hash": a.leaf_hash.to_hex(),
            "tree_size": a.tree_size,
        })),
    )
        .into_response())
}

fn append_error(what: &str, e: crate::AppendError) -> OAuthError {
    match e {
        crate::AppendError::Rejected {
            status,
            code,
            description,
        } => {
            tracing::info!(code, %description, "{what} refused by the log");
            OAuthError::with_status(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                code,
                description,
            )
        }
        other => OAuthError::internal(what, format!("{other:?}")),
    }
}

// ---- sign-in ----

async fn signin_start(State(s): State<AppState>) -> Result<Response, OAuthError> {
    let c = ciba_of(&s)?;
    let (id, ch) = c.ceremonies.start(Kind::SignIn)?;
    let policy = s.log.policy();
    Ok(Json(json!({
        "ceremony_id": id,
        "publicKey": {
            "challenge": B64URL.encode(ch),
            "timeout": CEREMONY_TTL.as_millis() as u64,
            "rpId": policy.rp_id,
            "allowCredentials": [],
            "userVerification": if policy.require_user_verification { "required" } else { "preferred" },
        },
    }))
    .into_response())
}

#[derive(Deserialize)]
struct AssertionResponse {
    #[serde(rename = "authenticatorData")]
    authenticator_data: String,
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    signature: String,
}

#[derive(Deserialize)]
struct AssertionCredential {
    #[serde(rename = "rawId")]
    raw_id: String,
    #[serde(rename = "type")]
    type_: String,
    response: AssertionResponse,
}

struct AssertionBytes {
    credential_id: Vec<u8>,
    authenticator_data: Vec<u8>,
    client_data_json: Vec<u8>,
    signature: Vec<u8>,
}

impl AssertionCredential {
    fn bytes(&self) -> Result<AssertionBytes, OAuthError> {
        if self.type_ != "public-key" {
            return Err(OAuthError::invalid_request(
                "credential type must be public-key",
            ));
        }
        Ok(AssertionBytes {
            credential_id: b64("rawId", &self.raw_id)?,
            authenticator_data: b64("authenticatorData", &self.response.authenticator_data)?,
            client_data_json: b64("clientDataJSON", &self.response.client_data_json)?,
            signature: b64("signature", &self.response.signature)?,
        })
    }
}

#[derive(Deserialize)]
struct SignInFinish {
    ceremony_id: String,
    credential: AssertionCredential,
}

fn session_cookie(c: &Ciba, value: &str, max_age: u64) -> HeaderValue {
    let secure = if c.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("countersign_session=; Max-Age=0"))
}

async fn signin_finish(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthError> {
    let c = ciba_of(&s)?;
    let b: SignInFinish = json_body(&headers, body)?;
    let cer = c
        .ceremonies
        .take(&b.ceremony_id)
        .filter(|cer| matches!(cer.kind, Kind::SignIn))
        .ok_or_else(|| {
            OAuthError::invalid_request("the sign-in is unknown or timed out; start again")
        })?;
    let a = b.credential.bytes()?;
    let refused = || {
        OAuthError::with_status(
            StatusCode::UNAUTHORIZED,
            "access_denied",
            "this passkey is not enrolled for an active approver here",
        )
    };
    let (enrolment_index, _) = s
        .log
        .store()
        .credential(&a.credential_id)?
        .ok_or_else(refused)?;
    let entry = s
        .log
        .store()
        .entry(enrolment_index)?
        .ok_or_else(|| OAuthError::internal("sign-in", "enrolment entry missing"))?;
    let Ok(Entry::Enrolment(enr)) = Entry::decode(&entry) else {
        return Err(OAuthError::internal(
            "sign-in",
            "credential points at a non-enrolment",
        ));
    };
    let approver = c
        .store
        .approver(&enr.approver_id)?
        .filter(|a| !a.disabled)
        .ok_or_else(refused)?;
    let key = enr.key().map_err(|e| OAuthError::internal("sign-in", e))?;
    let policy = s.log.policy();
    let origins: Vec<&str> = policy.allowed_origins.iter().map(String::as_str).collect();
    verify_assertion(
        &key,
        &Assertion {
            authenticator_data: &a.authenticator_data,
            client_data_json: &a.client_data_json,
            signature: &a.signature,
        },
        &cer.challenge,
        &AssertionPolicy {
            rp_id: &policy.rp_id,
            allowed_origins: &origins,
            require_user_verification: policy.require_user_verification,
            stored_sign_count: None,
        },
    )
    .map_err(|e| {
        tracing::info!(approver_id = %approver.approver_id, error = %e, "sign-in refused");
        OAuthError::with_status(
            StatusCode::UNAUTHORIZED,
            "access_denied",
            format!("sign-in failed: {e}"),
        )
    })?;
    let (token, session) = c
        .sessions
        .create(&c.store, &approver.approver_id, c.config.session_ttl_secs)
        .await?;
    tracing::info!(approver_id = %approver.approver_id, "approver signed in");
    let mut resp = Json(json!({
        "approver_id": approver.approver_id,
        "csrf_token": session.csrf.expose(),
    }))
    .into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(c, token.expose(), c.config.session_ttl_secs),
    );
    Ok(resp)
}

async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, OAuthError> {
    let c = ciba_of(&s)?;
    session_for_change(c, &headers)?;
    if let Some(v) = cookie_value(&headers, SESSION_COOKIE) {
        c.sessions.remove(&c.store, v);
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(c, "", 0));
    Ok(resp)
}

// ---- inbox and decisions ----

/// What the approver sees of a request.
pub(crate) fn request_view(r: &RequestRecord) -> Value {
    json!({
        "request_id": r.request_id,
        "client_id": r.statement.client_id,
        "binding_message": r.statement.binding_message,
        "scope": r.statement.scope,
        "authorization_details": r.statement.authorization_details,
        "requested_at": r.statement.requested_at,
        "expires_at": r.statement.expires_at,
        "status": effective_status(r),
        "decision": r.decision.as_ref().map(|d| json!({
            "log_index": d.index,
            "leaf_hash": d.leaf_hash,
            "statement_hash": d.statement_hash,
            "decided_at": d.decided_at,
        })),
    })
}

/// Status with expiry applied (a pending request past its expiry is expired).
pub(crate) fn effective_status(r: &RequestRecord) -> RequestStatus {
    if r.status == RequestStatus::Pending && now_secs() >= r.statement.expires_at {
        RequestStatus::Expired
    } else {
        r.status
    }
}

/// The approver's open requests, newest first.
pub(crate) fn open_requests(c: &Ciba, approver_id: &str) -> Result<Vec<RequestRecord>, OAuthError> {
    let mut out = Vec::new();
    let mut stale = Batch::new();
    for (k, rid) in c.store.pending_of(approver_id, 500) {
        let r = c
            .store
            .request_by_public_id(&rid)?
            .map(|(_, r)| r)
            .filter(|r| r.statement.approver_id == approver_id);
        match r.as_ref().map(effective_status) {
            Some(RequestStatus::Pending) => out.extend(r),
            // Being decided: not shown, but kept (a failed decision puts it back).
            Some(RequestStatus::Deciding) => {}
            // Decided, expired or vanished: the key leaves the pending index here, so the inbox
            // never fills its 500-entry window with requests nobody can decide any more. Such a
            // request never becomes decidable again, so this needs no lock, nor durability (a
            // lost deletion is made again next time).
            _ => {
                stale.delete(k);
            }
        }
    }
    c.store.commit_in_background(stale);
    out.sort_by_key(|r| std::cmp::Reverse(r.statement.requested_at));
    Ok(out)
}

async fn inbox(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, OAuthError> {
    let c = ciba_of(&s)?;
    let session = session_of(c, &headers).ok_or_else(unauthorized)?;
    let list: Vec<Value> = open_requests(c, &session.approver_id)?
        .iter()
        .map(request_view)
        .collect();
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"approver_id": session.approver_id, "requests": list, "now": now_secs()})),
    )
        .into_response())
}

fn request_not_found() -> OAuthError {
    OAuthError::with_status(StatusCode::NOT_FOUND, "not_found", "no such request")
}

/// The record key of a request by public id.
fn request_key_of(c: &Ciba, request_id: &str) -> Result<String, OAuthError> {
    if request_id.len() > 64 {
        return Err(request_not_found());
    }
    let h = c
        .store
        .get_raw(&CibaStore::public_id_key(request_id))?
        .ok_or_else(request_not_found)?;
    Ok(CibaStore::record_key_of(&String::from_utf8_lossy(&h)))
}

/// The approver's own request by public id; another approver's is "not found".
pub(crate) fn own_request(
    c: &Ciba,
    approver_id: &str,
    request_id: &str,
) -> Result<(String, RequestRecord), OAuthError> {
    let key = request_key_of(c, request_id)?;
    let r = own_request_at(c, approver_id, &key)?;
    Ok((key, r))
}

/// The approver's own request under record key `key`.
fn own_request_at(c: &Ciba, approver_id: &str, key: &str) -> Result<RequestRecord, OAuthError> {
    let nf = request_not_found;
    let r: RequestRecord = c.store.get(key)?.ok_or_else(nf)?;
    if !bool::from(
        r.statement
            .approver_id
            .as_bytes()
            .ct_eq(approver_id.as_bytes()),
    ) {
        return Err(nf());
    }
    Ok(r)
}

async fn request_detail(
    State(s): State<AppState>,
    headers: HeaderMap,
    PathParam(request_id): PathParam,
) -> Result<Response, OAuthError> {
    let c = ciba_of(&s)?;
    let session = session_of(c, &headers).ok_or_else(unauthorized)?;
    let (_, r) = own_request(c, &session.approver_id, &request_id)?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(request_view(&r)),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideStart {
    decision: String,
}

fn parse_decision(s: &str) -> Result<Decision, OAuthError> {
    Decision::parse(s)
        .ok_or_else(|| OAuthError::invalid_request("decision must be approve or deny"))
}

fn statement_for(r: &RequestRecord, d: Decision) -> countersign_verifier::Statement {
    let mut st = r.statement.clone();
    st.decision = d.as_str().to_owned();
    st
}

fn nonce_of(r: &RequestRecord) -> Result<[u8; 32], OAuthError> {
    hex::decode(&r.nonce)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| OAuthError::internal("request record", "nonce is not 32 bytes"))
}

async fn decide_start(
    State(s): State<AppState>,
    headers: HeaderMap,
    PathParam(request_id): PathParam,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthError> {
    let c = ciba_of(&s)?;
    let (session, approver) = change_session_and_approver(c, &headers)?;
    let b: DecideStart = json_body(&headers, body)?;
    let decision = parse_decision(&b.decision)?;
    let (_, r) = own_request(c, &session.approver_id, &request_id)?;
    check_decidable(&r)?;
    let st = statement_for(&r, decision);
    let canonical = st
        .canonical_json()
        .map_err(|e| OAuthError::internal("statement", e))?;
    let hash = countersign_verifier::sha256(&canonical);
    let ch = challenge(&nonce_of(&r)?, &hash);
    let policy = s.log.policy();
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "statement": st,
            "statement_canonical": String::from_utf8_lossy(&canonical),
            "statement_hash": hex::encode(hash),
            "nonce": r.nonce,
            "publicKey": {
                "challenge": B64URL.encode(ch),
                "timeout": CEREMONY_TTL.as_millis() as u64,
                "rpId": policy.rp_id,
                "allowCredentials": approver.credentials.iter().map(|cr| json!({
                    "type": "public-key", "id": cr.credential_id,
                })).collect::<Vec<_>>(),
                "userVerification": if policy.require_user_verification { "required" } else { "preferred" },
            },
        })),
    )
        .into_response())
}

fn check_decidable(r: &RequestRecord) -> Result<(), OAuthError> {
    match effective_status(r) {
        RequestStatus::Pending => Ok(()),
        RequestStatus::Expired => Err(OAuthError::with_status(
            StatusCode::GONE,
            "expired",
            "this request expired; nothing was signed or logged",
        )),
        RequestStatus::Deciding => Err(OAuthError::with_status(
            StatusCode::CONFLICT,
            "in_progress",
            "a decision on this request is being recorded",
        )),
        RequestStatus::Approved | RequestStatus::Denied => Err(OAuthError::with_status(
            StatusCode::CONFLICT,
            "already_decided",
            "this request was already decided",
        )),
    }
}

#[derive(Deserialize)]
struct DecideFinish {
    decision: String,
    credential: AssertionCredential,
}

/// Puts a claimed request back to pending after a failed decision: nothing was logged.
async fn release(c: &Arc<Ciba>, key: &str) -> Result<(), OAuthError> {
    let _g = c.store.lock(key).await;
    if let Some(mut r) = c.store.get::<RequestRecord>(key)? {
        if r.status == RequestStatus::Deciding {
            r.status = RequestStatus::Pending;
            r.claim = None;
            let mut b = Batch::new();
            b.put_json(key, &r)?.delete(CibaStore::claim_key(key));
            c.store.commit(b, Durability::Sync).await?;
            // Its expiry timer may have fired while it was claimed: a ping/push request that
            // is now past expiry gets its expiry (and push, its `expired_token`) at once.
            if r.mode != DeliveryMode::Poll && now_secs() >= r.statement.expires_at {
                crate::notify::schedule_expiry(c.clone(), key.to_owned(), r.statement.expires_at);
            }
        }
    }
    Ok(())
}

async fn decide_finish(
    State(s): State<AppState>,
    headers: HeaderMap,
    PathParam(request_id): PathParam,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthError> {
    let c = ciba_of(&s)?.clone();
    // The session's approver record, read once and enabled.
    let (session, approver) = change_session_and_approver(&c, &headers)?;
    let b: DecideFinish = json_body(&headers, body)?;
    let decision = parse_decision(&b.decision)?;
    let a = b.credential.bytes()?;
    let cred_b64 = B64URL.encode(&a.credential_id);
    let cred = approver
        .credentials
        .iter()
        .find(|cr| cr.credential_id == cred_b64)
        .ok_or_else(|| {
            OAuthError::with_status(
                StatusCode::FORBIDDEN,
                "access_denied",
                "this passkey is not one of yours",
            )
        })?
        .clone();
    // Claim the request: one decision, by its own approver, before expiry. The claim is
    // exclusive (the record's lock is held from the read to the applied write, and a claimed
    // request is not decidable), and it need not be synced on its own: the decision's synced
    // log append comes after it in the same write-ahead log, so if the decision survives a
    // crash, so does the claim (and the request then never gets a second decision).
    let key = request_key_of(&c, &request_id)?;
    let (mut r, statement_hash) = {
        let _g = c.store.lock(&key).await;
        let mut r = own_request_at(&c, &session.approver_id, &key)?;
        check_decidable(&r)?;
        r.status = RequestStatus::Deciding;
        let statement_hash = statement_for(&r, decision)
            .hash()
            .map_err(|e| OAuthError::internal("statement", e))?;
        r.claim = Some(ClaimRecord {
            assertion_key: hex::encode(crate::append::assertion_key(
                &a.credential_id,
                &a.client_data_json,
            )),
            decision: decision.as_str().to_owned(),
            enrolment_index: cred.enrolment_index,
            statement_hash: hex::encode(statement_hash),
        });
        let mut b = Batch::new();
        b.put_json(key.clone(), &r)?
            .put(CibaStore::claim_key(&key), Vec::new());
        c.store.commit(b, Durability::Deferred).await?;
        (r, statement_hash)
    };
    let result = log_decision(&s, &r, decision, statement_hash, &cred, a).await;
    let (rec, appended) = match result {
        Ok(x) => x,
        Err(e) => {
            release(&c, &key).await?;
            return Err(e);
        }
    };
    {
        // Only the claimant changes a claimed record (and clean-up leaves it alone until well
        // past its expiry), so `r` is still what is stored.
        let _g = c.store.lock(&key).await;
        r.status = match decision {
            Decision::Approve => RequestStatus::Approved,
            Decision::Deny => RequestStatus::Denied,
        };
        r.statement.decision = decision.as_str().to_owned();
        r.decision = Some(rec.clone());
        r.claim = None;
        let mut b = Batch::new();
        b.put_json(key.clone(), &r)?
            .delete(CibaStore::pending_key(
                &r.statement.approver_id,
                &r.request_id,
            ))
            .delete(CibaStore::claim_key(&key));
        c.store.commit(b, Durability::Sync).await?;
    }
    tracing::info!(
        request_id = %r.request_id,
        approver_id = %r.statement.approver_id,
        decision = decision.as_str(),
        index = rec.index,
        "decision logged"
    );
    c.metrics
        .decisions
        .get_or_create(&[("decision", decision.as_str())])
        .inc();
    c.inbox_changed(&r.statement.approver_id, &r.request_id);
    crate::notify::decided(c.clone(), key, r.clone());
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "request_id": r.request_id,
            "decision": decision.as_str(),
            "log_index": rec.index,
            "leaf_hash": rec.leaf_hash,
            "statement_hash": rec.statement_hash,
            "tree_size": appended.tree_size,
            "checkpoint": &*appended.checkpoint,
            "evidence_url": format!("{}/approve/requests/{}/evidence", c.config.public_url, r.request_id),
        })),
    )
        .into_response())
}

/// At start: finishes or releases every claim a crash left. A claimed request whose assertion
/// is in the log was decided (the claim is written before the decision is appended): it gets
/// that decision, as if the crash had come after the record was updated. One whose assertion is
/// not in the log was never decided: it is open again. Returns (finished, released).
pub fn recover_claims(c: &Ciba) -> Result<(usize, usize), crate::storage::StorageError> {
    use crate::ciba::records::CLAIM_PREFIX;
    let (mut finished, mut released) = (0, 0);
    let log = c.store.log_store();
    for (ckey, _) in c.store.scan(CLAIM_PREFIX, usize::MAX)? {
        let key = CibaStore::record_key_of(ckey.trim_start_matches(CLAIM_PREFIX));
        let mut b = Batch::new();
        b.delete(ckey.clone());
        let claimed = c
            .store
            .get::<RequestRecord>(&key)?
            .filter(|r| r.status == RequestStatus::Deciding);
        let Some((mut r, claim)) = claimed.and_then(|mut r| r.claim.take().map(|claim| (r, claim)))
        else {
            // Gone, or no longer claimed: only the marker is left.
            c.store.commit_blocking(b)?;
            continue;
        };
        let logged = hex::decode(&claim.assertion_key)
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .map(|k| log.assertion_index(&k))
            .transpose()?
            .flatten();
        match (logged, claim.decision.as_str()) {
            (Some(index), d @ ("approve" | "deny")) => {
                let leaf = log.nodes(&[(0, index)])?[0];
                r.status = if d == "approve" {
                    RequestStatus::Approved
                } else {
                    RequestStatus::Denied
                };
                r.statement.decision = d.to_owned();
                r.decision = Some(DecisionRecord {
                    index,
                    leaf_hash: leaf.to_hex(),
                    enrolment_index: claim.enrolment_index,
                    statement_hash: claim.statement_hash,
                    decided_at: now_secs(),
                });
                b.delete(CibaStore::pending_key(
                    &r.statement.approver_id,
                    &r.request_id,
                ));
                finished += 1;
                tracing::info!(request_id = %r.request_id, index, decision = d, "decision recovered from the log");
            }
            _ => {
                r.status = RequestStatus::Pending;
                released += 1;
            }
        }
        b.put_json(key, &r)?;
        c.store.commit_blocking(b)?;
    }
    Ok((finished, released))
}

/// Appends the decision (`hash`: its statement's hash, computed for the claim) to the log.
async fn log_decision(
    s: &AppState,
    r: &RequestRecord,
    decision: Decision,
    hash: [u8; 32],
    cred: &CredentialRef,
    a: AssertionBytes,
) -> Result<(DecisionRecord, crate::Appended), OAuthError> {
    let req = DecisionRequest {
        decision,
        statement_hash: hash,
        nonce: nonce_of(r)?,
        approver_id: r.statement.approver_id.clone(),
        credential_id: a.credential_id,
        authenticator_data: a.authenticator_data,
        client_data_json: a.client_data_json,
        signature: a.signature,
        enrolment_index: cred.enrolment_index,
    };
    let appended = s
        .log
        .append_decision(req)
        .await
        .map_err(|e| append_error("decision", e))?;
    if appended.existing {
        // The assertion was logged before, for this very challenge: a replay, not a new decision.
        return Err(OAuthError::with_status(
            StatusCode::CONFLICT,
            "replayed_assertion",
            "this signature was already used",
        ));
    }
    Ok((
        DecisionRecord {
            index: appended.index,
            leaf_hash: appended.leaf_hash.to_hex(),
            enrolment_index: cred.enrolment_index,
            statement_hash: hex::encode(hash),
            decided_at: now_secs(),
        },
        appended,
    ))
}
