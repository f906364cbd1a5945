//! Approver sign-in with a passkey (an assertion over a server-held challenge) and sign-out.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use countersign_log::http::Body;
use countersign_verifier::{verify_assertion, Assertion, AssertionPolicy};
use serde::Deserialize;
use serde_json::json;

use super::session::SESSION_COOKIE;
use super::{cookie_value, session_for_change, AssertionCredential, CEREMONY_TTL};
use crate::state::Approvals;
use crate::util::B64URL;
use countersign_log::ApiError;

pub(crate) async fn signin_start(
    State(ref c): State<Arc<Approvals>>,
) -> Result<Response, ApiError> {
    let (id, ch) = c.signins.start();
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

pub(crate) async fn signin_finish(
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let b: SignInFinish = body.declared_json(&headers)?;
    let cer = c.signins.open(&b.ceremony_id).ok_or_else(|| {
        ApiError::invalid_request("the sign-in is unknown, used or timed out; start again")
    })?;
    let a = b.credential.bytes()?;
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "access_denied",
            "this passkey is not enrolled for an active approver here",
        )
    };
    let (enrolment_index, enr) = c
        .log
        .enrolment_of(&a.credential_id)
        .await?
        .ok_or_else(refused)?;
    // A revoked passkey is out of the record, and its revocation in the log: either refuses.
    let cred_b64 = B64URL.encode(&a.credential_id);
    let approver = c
        .store
        .approver(&enr.approver_id)
        .await?
        .filter(|a| !a.disabled)
        .filter(|a| a.credentials.iter().any(|cr| cr.credential_id == cred_b64))
        .ok_or_else(refused)?;
    if c.log.revocation_of(enrolment_index).await?.is_some() {
        return Err(refused());
    }
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
    if !c.signins.spend(&cer) || !spend_shared(c, &cer).await? {
        return Err(ApiError::invalid_request(
            "the sign-in is unknown, used or timed out; start again",
        ));
    }
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

/// On the shared driver, also marks the sign-in used in the store, so that it is good once at
/// every instance, not once at each; true when it was not used before.
async fn spend_shared(c: &Approvals, s: &super::ceremony::OpenedSignIn) -> Result<bool, ApiError> {
    if !c.store.is_shared() {
        return Ok(true);
    }
    let key = format!(
        "{}{}",
        super::ceremony::USED_SIGNIN_PREFIX,
        hex::encode(s.nonce)
    );
    let _g = c.store.lock(&key).await?;
    if c.store.get_raw(&key).await?.is_some() {
        return Ok(false);
    }
    let mut b = crate::store::Batch::new();
    b.put(key.clone(), s.expires_ms().to_be_bytes().to_vec());
    c.store.commit(b, crate::store::Durability::Sync).await?;
    Ok(true)
}

pub(crate) async fn logout(
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    session_for_change(c, &headers).await?;
    if let Some(v) = cookie_value(&headers, SESSION_COOKIE) {
        c.sessions.remove(&c.store, v).await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(c, "", 0));
    Ok(resp)
}
