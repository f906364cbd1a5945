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

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use countersign_verifier::{
    challenge, cose_alg, parse_cose_key, verify_assertion, verify_registration, Assertion,
    AssertionPolicy, Decision, RegistrationPolicy,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::request::{self, AssertionBytes, DecideError, DecideRequest, TransitionError};
use crate::store::{
    ApproverRecord, Batch, CredentialRef, Durability, EnrolmentLink, RequestRecord, RequestStatus,
};
use crate::{now_secs, ApiError, Approvals, CibaStore, Secret, B64URL};
use countersign_log::http::{Body, PathParam};
use countersign_log::log::EnrolmentRequest;

/// How long a started ceremony may take.
const CEREMONY_TTL: Duration = Duration::from_secs(300);
/// Most ceremonies held at once (a bound on memory a flood of starts can take).
const MAX_CEREMONIES: usize = 100_000;
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
    fn start(&self, kind: Kind) -> Result<(String, [u8; 32]), ApiError> {
        let mut m = match self.0.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.retain(|_, c| c.started.elapsed() < CEREMONY_TTL);
        if m.len() >= MAX_CEREMONIES {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many ceremonies in progress; retry shortly",
            ));
        }
        let id = B64URL.encode(crate::random_bytes::<16>());
        let challenge = crate::random_bytes::<32>();
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
    ) -> Result<(Secret, Session), ApiError> {
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
) -> Result<Batch, countersign_log::storage::StorageError> {
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
) -> Result<usize, countersign_log::storage::StorageError> {
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
pub(crate) fn session_of(c: &Approvals, headers: &HeaderMap) -> Option<Session> {
    session_and_approver(c, headers).map(|(s, _)| s)
}

/// The session of a page request and its (enabled) approver's record.
fn session_and_approver(c: &Approvals, headers: &HeaderMap) -> Option<(Session, ApproverRecord)> {
    let s = c
        .sessions
        .get(&c.store, cookie_value(headers, SESSION_COOKIE)?)?;
    // A disabled approver's sessions are dropped when disabled; this also covers a restart race.
    match c.store.approver(&s.approver_id) {
        Ok(Some(a)) if !a.disabled => Some((s, a)),
        _ => None,
    }
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "login_required",
        "sign in with your passkey first",
    )
}

/// The session of a state-changing request. CSRF defence in depth: the cookie is
/// `SameSite=Strict`, the body must be JSON (a cross-site form cannot send it without a
/// preflight), and the per-session CSRF token must come back in `X-CSRF-Token`.
pub(crate) fn session_for_change(c: &Approvals, headers: &HeaderMap) -> Result<Session, ApiError> {
    change_session_and_approver(c, headers).map(|(s, _)| s)
}

/// [`session_for_change`] with the approver's record.
fn change_session_and_approver(
    c: &Approvals,
    headers: &HeaderMap,
) -> Result<(Session, ApproverRecord), ApiError> {
    let (s, approver) = session_and_approver(c, headers).ok_or_else(unauthorized)?;
    let sent = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !bool::from(sent.as_bytes().ct_eq(s.csrf.expose().as_bytes())) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "the page is out of date; reload it and try again",
        ));
    }
    Ok((s, approver))
}

fn b64(name: &str, s: &str) -> Result<Vec<u8>, ApiError> {
    B64URL
        .decode(s.trim_end_matches('='))
        .map_err(|_| ApiError::invalid_request(format!("{name} is not base64url")))
}

pub(crate) fn routes() -> Router<Arc<Approvals>> {
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

fn valid_link(c: &Approvals, token: &str) -> Result<([u8; 32], EnrolmentLink), ApiError> {
    let h = Secret::new(token).sha256();
    let gone = || {
        ApiError::new(
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
pub(crate) fn link_approver(c: &Approvals, token: &str) -> Option<ApproverRecord> {
    let (_, link) = valid_link(c, token).ok()?;
    c.store
        .approver(&link.approver_id)
        .ok()
        .flatten()
        .filter(|a| !a.disabled)
}

async fn enrol_start(
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let b: EnrolStart = body.declared_json(&headers)?;
    let (link_hash, link) = valid_link(c, &b.token)?;
    let approver = c
        .store
        .approver(&link.approver_id)?
        .filter(|a| !a.disabled)
        .ok_or_else(|| {
            ApiError::new(StatusCode::GONE, "invalid_link", "the approver is disabled")
        })?;
    let (id, ch) = c.ceremonies.start(Kind::Enrol { link_hash })?;
    let policy = c.log.policy();
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
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let b: EnrolFinish = body.declared_json(&headers)?;
    let cer = c.ceremonies.take(&b.ceremony_id).ok_or_else(|| {
        ApiError::invalid_request("the enrolment ceremony is unknown or timed out; start again")
    })?;
    let (link_hash, link) = valid_link(c, &b.token)?;
    match cer.kind {
        Kind::Enrol { link_hash: h } if h == link_hash => {}
        _ => {
            return Err(ApiError::invalid_request(
                "the ceremony belongs to another link",
            ))
        }
    }
    if b.credential.type_ != "public-key" {
        return Err(ApiError::invalid_request(
            "credential type must be public-key",
        ));
    }
    let att = b64(
        "attestationObject",
        &b.credential.response.attestation_object,
    )?;
    let cdj = b64("clientDataJSON", &b.credential.response.client_data_json)?;
    let policy = c.log.policy().clone();
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
        ApiError::bad_request(
            "invalid_registration",
            format!("the passkey could not be enrolled: {e}"),
        )
    })?;
    if B64URL.encode(&reg.credential_id) != b.credential.raw_id.trim_end_matches('=') {
        return Err(ApiError::invalid_request(
            "rawId is not the attested credential id",
        ));
    }
    let alg = parse_cose_key(&reg.public_key_cose)
        .map(|k| cose_alg(&k))
        .map_err(|e| ApiError::bad_request("invalid_registration", format!("public key: {e}")))?;
    let link_key = format!("l/{}", hex::encode(link_hash));
    // Claim the link before logging, so one link enrols one passkey even under a race.
    {
        let _g = c.store.lock(&link_key).await;
        let mut l: EnrolmentLink = c
            .store
            .get(&link_key)?
            .ok_or_else(|| ApiError::new(StatusCode::GONE, "invalid_link", "the link is gone"))?;
        if l.used {
            return Err(ApiError::new(
                StatusCode::GONE,
                "invalid_link",
                "the link was used",
            ));
        }
        l.used = true;
        c.store.put(&link_key, &l).await?;
    }
    let appended = c
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
                Ok(_) => ApiError::new(
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
            .ok_or_else(|| ApiError::internal("enrol_finish", "approver vanished"))?;
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

fn append_error(what: &str, e: countersign_log::AppendError) -> ApiError {
    match e {
        countersign_log::AppendError::Refused { reason, detail } => {
            tracing::info!(code = reason.code(), %detail, "{what} refused by the log");
            countersign_log::AppendError::Refused { reason, detail }.into()
        }
        other => ApiError::internal(what, format!("{other:?}")),
    }
}

// ---- sign-in ----

async fn signin_start(State(ref c): State<Arc<Approvals>>) -> Result<Response, ApiError> {
    let (id, ch) = c.ceremonies.start(Kind::SignIn)?;
    let policy = c.log.policy();
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

impl AssertionCredential {
    fn bytes(&self) -> Result<AssertionBytes, ApiError> {
        if self.type_ != "public-key" {
            return Err(ApiError::invalid_request(
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

fn session_cookie(c: &Approvals, value: &str, max_age: u64) -> HeaderValue {
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
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let b: SignInFinish = body.declared_json(&headers)?;
    let cer = c
        .ceremonies
        .take(&b.ceremony_id)
        .filter(|cer| matches!(cer.kind, Kind::SignIn))
        .ok_or_else(|| {
            ApiError::invalid_request("the sign-in is unknown or timed out; start again")
        })?;
    let a = b.credential.bytes()?;
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "access_denied",
            "this passkey is not enrolled for an active approver here",
        )
    };
    let (_, enr) = c.log.enrolment_of(&a.credential_id)?.ok_or_else(refused)?;
    let approver = c
        .store
        .approver(&enr.approver_id)?
        .filter(|a| !a.disabled)
        .ok_or_else(refused)?;
    let key = enr.key().map_err(|e| ApiError::internal("sign-in", e))?;
    let policy = c.log.policy();
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
        ApiError::new(
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

async fn logout(
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
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
    request::effective_status(r, now_secs())
}

/// Whether two opaque ids are the same, in constant time (an id is not a secret, but whether a
/// request is someone's must not be learnt byte by byte).
pub(crate) fn same_id(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The approver's open requests, newest first.
pub(crate) fn open_requests(
    c: &Approvals,
    approver_id: &str,
) -> Result<Vec<RequestRecord>, ApiError> {
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

async fn inbox(
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
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

fn request_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such request")
}

/// The record key of a request by public id.
fn request_key_of(c: &Approvals, request_id: &str) -> Result<String, ApiError> {
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
    c: &Approvals,
    approver_id: &str,
    request_id: &str,
) -> Result<(String, RequestRecord), ApiError> {
    let key = request_key_of(c, request_id)?;
    let r = own_request_at(c, approver_id, &key)?;
    Ok((key, r))
}

/// The approver's own request under record key `key`.
fn own_request_at(c: &Approvals, approver_id: &str, key: &str) -> Result<RequestRecord, ApiError> {
    let nf = request_not_found;
    let r: RequestRecord = c.store.get(key)?.ok_or_else(nf)?;
    if !same_id(&r.statement.approver_id, approver_id) {
        return Err(nf());
    }
    Ok(r)
}

async fn request_detail(
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
    PathParam(request_id): PathParam,
) -> Result<Response, ApiError> {
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

fn parse_decision(s: &str) -> Result<Decision, ApiError> {
    Decision::parse(s).ok_or_else(|| ApiError::invalid_request("decision must be approve or deny"))
}

fn statement_for(r: &RequestRecord, d: Decision) -> countersign_verifier::Statement {
    let mut st = r.statement.clone();
    st.decision = d.as_str().to_owned();
    st
}

fn nonce_of(r: &RequestRecord) -> Result<[u8; 32], ApiError> {
    hex::decode(&r.nonce)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| ApiError::internal("request record", "nonce is not 32 bytes"))
}

async fn decide_start(
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
    PathParam(request_id): PathParam,
    body: Body,
) -> Result<Response, ApiError> {
    let (session, approver) = change_session_and_approver(c, &headers)?;
    let b: DecideStart = body.declared_json(&headers)?;
    let decision = parse_decision(&b.decision)?;
    let (_, r) = own_request(c, &session.approver_id, &request_id)?;
    check_decidable(&r)?;
    let st = statement_for(&r, decision);
    let canonical = st
        .canonical_json()
        .map_err(|e| ApiError::internal("statement", e))?;
    let hash = countersign_verifier::sha256(&canonical);
    let ch = challenge(&nonce_of(&r)?, &hash);
    let policy = c.log.policy();
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

fn check_decidable(r: &RequestRecord) -> Result<(), ApiError> {
    request::check_decidable(r, now_secs()).map_err(transition_error)
}

/// The answer to a request that cannot be decided where it stands.
fn transition_error(e: TransitionError) -> ApiError {
    let (status, code) = match e {
        TransitionError::Expired => (StatusCode::GONE, "expired"),
        TransitionError::InProgress => (StatusCode::CONFLICT, "in_progress"),
        _ => (StatusCode::CONFLICT, "already_decided"),
    };
    ApiError::new(status, code, e.to_string())
}

/// The answer to a decision that decided nothing.
fn decide_error(e: DecideError) -> ApiError {
    match e {
        DecideError::NotFound => request_not_found(),
        DecideError::Transition(t) => transition_error(t),
        DecideError::Refused(e) => append_error("decision", e),
        DecideError::Replayed => ApiError::new(
            StatusCode::CONFLICT,
            "replayed_assertion",
            "this signature was already used",
        ),
        DecideError::Storage(e) => ApiError::from(e),
        other => ApiError::internal("decision", other),
    }
}

#[derive(Deserialize)]
struct DecideFinish {
    decision: String,
    credential: AssertionCredential,
}

async fn decide_finish(
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
    PathParam(request_id): PathParam,
    body: Body,
) -> Result<Response, ApiError> {
    // The session's approver record, read once and enabled.
    let (session, approver) = change_session_and_approver(c, &headers)?;
    let b: DecideFinish = body.declared_json(&headers)?;
    let decision = parse_decision(&b.decision)?;
    let a = b.credential.bytes()?;
    let cred_b64 = B64URL.encode(&a.credential_id);
    let cred = approver
        .credentials
        .iter()
        .find(|cr| cr.credential_id == cred_b64)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "access_denied",
                "this passkey is not one of yours",
            )
        })?
        .clone();
    let key = request_key_of(c, &request_id)?;
    let decided = request::decide(
        c.clone(),
        DecideRequest {
            key,
            approver_id: session.approver_id.clone(),
            decision,
            credential: cred,
            assertion: a,
        },
    )
    .await
    .map_err(decide_error)?;
    let (r, rec, appended) = (decided.request, decided.record, decided.appended);
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
