//! Admin API of the front end (admin bearer token): clients, approvers, enrolment links, passkey
//! revocation, token key rotation. The `countersign client|approver` commands call it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use countersign_verifier::is_valid_id;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

use crate::ciba::clients::{hash_secret, MAX_CREDENTIAL_CHARS};
use crate::passkeys::revocation;
use crate::state::Approvals;
use crate::store::{
    ApproverRecord, AuthMethod, CibaStore, ClientRecord, DeliveryMode, EnrolmentLink,
};
use crate::util::now_secs;
use crate::util::Secret;
use crate::web::RouterState;
use countersign_log::ApiError;

use countersign_log::http::Admin;
use countersign_log::http::{Body, PathParam};

pub(crate) fn routes() -> Router<RouterState> {
    Router::new()
        .route("/v1/admin/clients", post(add_client).get(list_clients))
        .route("/v1/admin/clients/{id}", delete(remove_client))
        .route(
            "/v1/admin/approvers",
            post(add_approver).get(list_approvers),
        )
        .route("/v1/admin/approvers/{id}/disable", post(disable_approver))
        .route(
            "/v1/admin/approvers/{id}/revoke-passkey",
            post(revoke_passkey),
        )
        .route("/v1/admin/approvers/{id}/enrolment-link", post(new_link))
        .route("/v1/admin/token-keys/rotate", post(rotate_keys))
        .route("/v1/admin/token-keys", get(list_keys))
        .merge(crate::policy_admin::routes())
}

fn check_id(what: &str, id: &str) -> Result<(), ApiError> {
    if !is_valid_id(id) || id.contains('@') || id.contains('/') {
        return Err(ApiError::invalid_request(format!(
            "{what} must be 1-255 ASCII letters, digits and -._:~ (an opaque id, not an e-mail)"
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddClient {
    client_id: String,
    secret: Option<String>,
    #[serde(default = "default_method")]
    auth_method: AuthMethod,
    #[serde(default = "default_mode")]
    mode: DeliveryMode,
    notification_endpoint: Option<String>,
    /// Public keys (JWKS) of a `private_key_jwt` client.
    jwks: Option<Value>,
    /// The only approvers the client may ask (any, when absent).
    approvers: Option<Vec<String>>,
}

/// A JWKS with 1 to 20 keys we can verify (Ed25519 OKP or P-256 EC), without private parts.
fn check_jwks(jwks: &Value) -> Result<(), ApiError> {
    let bad = |why: &str| ApiError::invalid_request(format!("jwks: {why}"));
    let keys = jwks["keys"]
        .as_array()
        .ok_or_else(|| bad("no keys array"))?;
    if keys.is_empty() || keys.len() > 20 {
        return Err(bad("give 1 to 20 keys"));
    }
    for k in keys {
        if k.get("d").is_some() {
            return Err(bad("a key holds a private part; register public keys only"));
        }
        let ok = match (k["kty"].as_str(), k["crv"].as_str()) {
            (Some("OKP"), Some("Ed25519")) => k["x"].is_string(),
            (Some("EC"), Some("P-256")) => k["x"].is_string() && k["y"].is_string(),
            _ => false,
        };
        if !ok {
            return Err(bad("only Ed25519 (OKP) and P-256 (EC) keys are supported"));
        }
    }
    if serde_json::to_vec(jwks)
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
        > 16 * 1024
    {
        return Err(bad("too large"));
    }
    Ok(())
}

fn default_method() -> AuthMethod {
    AuthMethod::ClientSecretBasic
}

fn default_mode() -> DeliveryMode {
    DeliveryMode::Poll
}

/// Whether a URL's host is this machine: a loopback address or `localhost`.
fn is_loopback(u: &reqwest::Url) -> bool {
    match u.host_str() {
        Some(h) if h.eq_ignore_ascii_case("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback()),
        None => false,
    }
}

async fn add_client(
    State(ref c): State<Arc<Approvals>>,
    _: Admin,
    body: Body,
) -> Result<Response, ApiError> {
    let b: AddClient = body.json()?;
    check_id("client_id", &b.client_id)?;
    if let Some(list) = &b.approvers {
        if list.is_empty() || list.len() > 1000 {
            return Err(ApiError::invalid_request(
                "approvers must list 1 to 1000 approver ids (leave it out to allow any)",
            ));
        }
        for a in list {
            check_id("approvers", a)?;
        }
    }
    match (&b.mode, &b.notification_endpoint) {
        (DeliveryMode::Poll, Some(_)) => {
            return Err(ApiError::invalid_request(
                "poll clients have no notification endpoint",
            ))
        }
        (DeliveryMode::Ping | DeliveryMode::Push, None) => {
            return Err(ApiError::invalid_request(
                "ping and push clients need a notification endpoint",
            ))
        }
        (_, Some(url)) => {
            let parsed = reqwest::Url::parse(url)
                .ok()
                .filter(|u| u.fragment().is_none() && url.len() <= 2048);
            let Some(u) = parsed.filter(|u| matches!(u.scheme(), "https" | "http")) else {
                return Err(ApiError::invalid_request(
                    "notification_endpoint must be an http(s) URL without a fragment",
                ));
            };
            // Push delivers tokens to it: in clear only to this machine, unless allowed.
            if u.scheme() == "http"
                && !is_loopback(&u)
                && !c.config.allow_http_notification_endpoints
            {
                return Err(ApiError::invalid_request(
                    "notification_endpoint must be https (push delivers tokens to it); plain http \
                     is accepted for loopback addresses only, unless the server runs with \
                     --allow-http-notification-endpoints",
                ));
            }
        }
        _ => {}
    }
    let key_based = b.auth_method == AuthMethod::PrivateKeyJwt;
    match (&b.jwks, key_based) {
        (Some(j), true) => check_jwks(j)?,
        (None, true) => {
            return Err(ApiError::invalid_request(
                "private_key_jwt clients need their public keys (jwks)",
            ))
        }
        (Some(_), false) => {
            return Err(ApiError::invalid_request(
                "jwks is only for private_key_jwt clients",
            ))
        }
        (None, false) => {}
    }
    if key_based && b.secret.is_some() {
        return Err(ApiError::invalid_request(
            "private_key_jwt clients have no secret",
        ));
    }
    let (secret, generated) = match b.secret {
        Some(s) if !s.is_empty() && s.len() <= MAX_CREDENTIAL_CHARS => (Secret::new(s), false),
        Some(_) => {
            return Err(ApiError::invalid_request(format!(
                "secret must be 1 to {MAX_CREDENTIAL_CHARS} bytes"
            )))
        }
        None => (Secret::generate(), true),
    };
    let record = ClientRecord {
        client_id: b.client_id.clone(),
        auth_method: b.auth_method,
        secret_hash: if key_based {
            String::new()
        } else {
            tokio::task::spawn_blocking({
                let secret = secret.clone();
                move || hash_secret(&secret, generated)
            })
            .await
            .map_err(|e| ApiError::internal("hashing a secret", e))?
            .map_err(|e| ApiError::internal("hashing a secret", e))?
        },
        jwks: b.jwks,
        mode: b.mode,
        notification_endpoint: b.notification_endpoint,
        created_at: now_secs(),
        approvers: b.approvers,
    };
    {
        let client_key = format!("c/{}", b.client_id);
        let _g = c.store.lock(&client_key).await?;
        if c.store.client(&b.client_id).await?.is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "a client with this id exists; remove it first",
            ));
        }
        c.store.put(&client_key, &record).await?;
    }
    c.secret_cache.forget(&b.client_id);
    tracing::info!(client_id = %b.client_id, mode = ?record.mode, "client added");
    let mut out = client_json(&record);
    if generated && !key_based {
        out["client_secret"] = json!(secret.expose());
    }
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

fn client_json(r: &ClientRecord) -> Value {
    json!({
        "client_id": r.client_id,
        "auth_method": r.auth_method.as_str(),
        "mode": r.mode,
        "notification_endpoint": r.notification_endpoint,
        "jwks": r.jwks,
        "created_at": r.created_at,
        "approvers": r.approvers,
    })
}

/// Every record under `prefix` (at most 10,000), rendered for the admin API.
async fn list_records<T: for<'de> Deserialize<'de>>(
    c: &Approvals,
    prefix: &str,
    what: &'static str,
    view: fn(&T) -> Value,
) -> Result<Vec<Value>, ApiError> {
    c.store
        .scan(prefix, 10_000)
        .await?
        .iter()
        .map(|(_, v)| {
            serde_json::from_slice::<T>(v)
                .map(|r| view(&r))
                .map_err(|e| ApiError::internal(what, e))
        })
        .collect()
}

async fn list_clients(State(ref c): State<Arc<Approvals>>, _: Admin) -> Result<Response, ApiError> {
    let out = list_records::<ClientRecord>(c, "c/", "client record", client_json).await?;
    Ok(Json(json!({ "clients": out })).into_response())
}

async fn remove_client(
    State(ref c): State<Arc<Approvals>>,
    _: Admin,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let client_key = format!("c/{id}");
    let _g = c.store.lock(&client_key).await?;
    if c.store.client(&id).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such client",
        ));
    }
    c.store
        .write(&[], std::slice::from_ref(&client_key))
        .await?;
    c.secret_cache.forget(&id);
    tracing::info!(client_id = %id, "client removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddApprover {
    /// Absent: the server draws an opaque id ([`new_approver_id`]).
    approver_id: Option<String>,
    email: String,
    name: Option<String>,
}

/// Creates a one-time enrolment link for an approver, which voids the approver's older ones;
/// returns its URL and expiry.
async fn create_link(
    c: &Approvals,
    approver_id: &str,
    recovery: bool,
) -> Result<(String, u64), ApiError> {
    let token = Secret::generate();
    let hash = hex::encode(token.sha256());
    let expires_at = now_secs() + c.config.enrolment_link_ttl_secs;
    c.store
        .put(
            &format!("l/{hash}"),
            &EnrolmentLink {
                approver_id: approver_id.to_owned(),
                expires_at,
                used: false,
                recovery,
            },
        )
        .await?;
    // Written after the link itself: a crash between the two leaves the older link in force,
    // never no link at all.
    c.store
        .put(&CibaStore::latest_link_key(approver_id), &hash)
        .await?;
    if recovery {
        tracing::warn!(%approver_id, "recovery enrolment link created: it may add a passkey without the approver's session");
    }
    Ok((
        format!("{}/enrol/{}", c.config.public_url, token.expose()),
        expires_at,
    ))
}

/// A new opaque approver id: `apv_` and 128 random bits in lowercase hex (36 characters, within
/// the id alphabet of spec/entry.md E9). Hex, not base64url: an id never starts with `-`, so it
/// is never read as a command-line flag.
pub(crate) fn new_approver_id() -> String {
    format!("apv_{}", hex::encode(crate::util::random_bytes::<16>()))
}

/// A warning when an operator-chosen approver id carries the person: their e-mail's local part
/// or a word of their name (3 letters or more), compared without case. Ids are written to the
/// public log forever, so `jane.doe` would publish Jane Doe's name with every decision she makes.
pub(crate) fn personal_id_warning(id: &str, email: &str, name: Option<&str>) -> Option<String> {
    let id_lower = id.to_ascii_lowercase();
    let local = email.split('@').next().unwrap_or_default().to_lowercase();
    let mut parts: Vec<String> = Vec::new();
    if local.len() >= 3 {
        parts.push(local.clone());
    }
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.chars().count() >= 3)
            .map(str::to_lowercase)
            .collect()
    };
    parts.extend(words(&local));
    parts.extend(name.map(words).unwrap_or_default());
    let hit = parts.iter().find(|p| id_lower.contains(p.as_str()))?;
    Some(format!(
        "the approver id {id:?} contains {hit:?} from the approver's e-mail address or name; \
         ids are written to the public log for good, so an opaque id (leave the id out and one \
         is generated) keeps the person out of it"
    ))
}

async fn add_approver(
    State(ref c): State<Arc<Approvals>>,
    _: Admin,
    body: Body,
) -> Result<Response, ApiError> {
    let b: AddApprover = body.json()?;
    let chosen = b.approver_id.is_some();
    let approver_id = b.approver_id.clone().unwrap_or_else(new_approver_id);
    check_id("approver_id", &approver_id)?;
    let email = b.email.trim().to_lowercase();
    let valid_email = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
        && !email
            .chars()
            .any(|ch| ch.is_whitespace() || ch.is_control() || ch == '/');
    if !valid_email {
        return Err(ApiError::invalid_request("email is not an e-mail address"));
    }
    if let Some(n) = &b.name {
        if n.is_empty()
            || n.chars().count() > 128
            || n.chars().any(countersign_verifier::is_unsafe_display_char)
        {
            return Err(ApiError::invalid_request(
                "name must be 1 to 128 characters of plain text",
            ));
        }
    }
    let (url, expires_at) = {
        let approver_key = format!("a/{approver_id}");
        let email_key = format!("m/{email}");
        let _g = c.store.lock_all(&[&approver_key, &email_key]).await?;
        if c.store.approver(&approver_id).await?.is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "an approver with this id exists",
            ));
        }
        if c.store.get_raw(&email_key).await?.is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "an approver with this e-mail exists",
            ));
        }
        let rec = ApproverRecord {
            approver_id: approver_id.clone(),
            email: email.clone(),
            name: b.name.clone(),
            disabled: false,
            credentials: Vec::new(),
            created_at: now_secs(),
            sessions_not_before_ms: 0,
        };
        c.store
            .write(
                &[
                    (approver_key.clone(), crate::store::CibaStore::encode(&rec)?),
                    (email_key.clone(), approver_id.clone().into_bytes()),
                ],
                &[],
            )
            .await?;
        create_link(c, &approver_id, false).await?
    };
    tracing::info!(approver_id = %approver_id, "approver added");
    let mut answer = json!({
        "approver_id": approver_id,
        "enrolment_url": url,
        "expires_at": expires_at,
    });
    if let Some(w) = chosen
        .then(|| personal_id_warning(&approver_id, &email, b.name.as_deref()))
        .flatten()
    {
        answer["warning"] = json!(w);
    }
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

fn approver_json(r: &ApproverRecord) -> Value {
    json!({
        "approver_id": r.approver_id,
        "email": r.email,
        "name": r.name,
        "disabled": r.disabled,
        "created_at": r.created_at,
        "credentials": r.credentials.iter().map(|c| json!({
            "credential_id": c.credential_id,
            "enrolment_index": c.enrolment_index,
            "alg": c.alg,
        })).collect::<Vec<_>>(),
    })
}

async fn list_approvers(
    State(ref c): State<Arc<Approvals>>,
    _: Admin,
) -> Result<Response, ApiError> {
    let out = list_records::<ApproverRecord>(
        c,
        crate::store::APPROVER_PREFIX,
        "approver record",
        approver_json,
    )
    .await?;
    Ok(Json(json!({ "approvers": out })).into_response())
}

async fn disable_approver(
    State(ref c): State<Arc<Approvals>>,
    _: Admin,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let rec = {
        let approver_key = format!("a/{id}");
        let _g = c.store.lock(&approver_key).await?;
        let mut rec =
            c.store.approver(&id).await?.ok_or_else(|| {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such approver")
            })?;
        rec.disabled = true;
        rec.sessions_not_before_ms = countersign_log::now_ms();
        c.store.put(&approver_key, &rec).await?;
        rec
    };
    c.sessions.drop_approver(&c.store, &id).await;
    tracing::info!(approver_id = %id, "approver disabled");
    // After the record: a decision started before the disable is refused by the log once the
    // revocation is in, and from then on whoever submits it. Running it again logs those a
    // failure here left out.
    let revoked = revocation::revoke_all(c, &rec).await?;
    let mut out = approver_json(&rec);
    out["revoked"] = revoked.iter().map(revoked_json).collect();
    Ok(Json(out).into_response())
}

fn revoked_json(r: &revocation::Revoked) -> Value {
    json!({
        "credential_id": r.credential_id,
        "enrolment_index": r.enrolment_index,
        "log_index": r.log_index,
        "new": r.new,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokePasskey {
    credential_id: String,
    #[serde(default = "default_revoke_reason")]
    reason: String,
}

fn default_revoke_reason() -> String {
    "removed".to_owned()
}

async fn revoke_passkey(
    State(ref c): State<Arc<Approvals>>,
    _: Admin,
    PathParam(id): PathParam,
    body: Body,
) -> Result<Response, ApiError> {
    let b: RevokePasskey = body.json()?;
    if !revocation::REVOKE_REASONS.contains(&b.reason.as_str()) {
        return Err(ApiError::invalid_request(format!(
            "reason must be one of {}",
            revocation::REVOKE_REASONS.join(", ")
        )));
    }
    let (rec, revoked) = revocation::revoke_passkey(c, &id, &b.credential_id, &b.reason).await?;
    let mut out = approver_json(&rec);
    out["revoked"] = json!([revoked_json(&revoked)]);
    Ok(Json(out).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewLink {
    /// A recovery link may add a passkey without a session of the approver.
    #[serde(default)]
    recovery: bool,
}

async fn new_link(
    State(ref c): State<Arc<Approvals>>,
    _: Admin,
    PathParam(id): PathParam,
    body: Body,
) -> Result<Response, ApiError> {
    // An empty body is a plain link (older clients send none).
    let b: NewLink = if body.is_empty() {
        NewLink::default()
    } else {
        body.json()?
    };
    match c.store.approver(&id).await? {
        Some(r) if !r.disabled => {}
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such active approver",
            ))
        }
    }
    let (url, expires_at) = create_link(c, &id, b.recovery).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"approver_id": id, "enrolment_url": url, "expires_at": expires_at, "recovery": b.recovery})),
    )
        .into_response())
}

async fn rotate_keys(State(ref c): State<Arc<Approvals>>, _: Admin) -> Result<Response, ApiError> {
    // Rare, and it writes through the calling thread: keep it off the async workers.
    let kid = tokio::task::spawn_blocking({
        let c = c.clone();
        move || c.keys.rotate(&c.store)
    })
    .await
    .map_err(|e| ApiError::internal("rotating keys", e))??;
    tracing::info!(kid = %kid, "token signing key rotated");
    Ok(Json(json!({"kid": kid, "jwks": c.keys.jwks()})).into_response())
}

async fn list_keys(State(ref c): State<Arc<Approvals>>, _: Admin) -> Result<Response, ApiError> {
    if c.store.is_shared() {
        c.keys.reload(&c.store)?;
    }
    Ok(Json(c.keys.jwks()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_approver_ids_are_opaque_valid_ids() {
        let a = new_approver_id();
        assert!(is_valid_id(&a), "{a}");
        assert!(check_id("approver_id", &a).is_ok());
        let hex_part = a.strip_prefix("apv_").unwrap_or_default();
        assert_eq!(hex_part.len(), 32, "128 bits");
        assert!(hex_part.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_approver_id());
    }

    #[test]
    fn ids_carrying_the_person_are_flagged() {
        let w = |id, email, name| personal_id_warning(id, email, name);
        assert!(w("jane.doe", "jane.doe@example.com", None).is_some());
        assert!(w("JDoe-1", "j@example.com", Some("Jane Doe")).is_some());
        assert!(w("ops-jane", "jd@example.com", Some("Jane")).is_some());
        assert!(w("apv_7f3a9c", "jane.doe@example.com", Some("Jane Doe")).is_none());
        assert!(w("approver-17", "al@example.com", Some("Al Bo")).is_none());
    }
}
