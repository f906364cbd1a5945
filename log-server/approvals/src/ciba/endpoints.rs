//! OpenID CIBA Core 1.0 endpoints: discovery (section 4), JWKS, the backchannel authentication
//! endpoint (section 7) and the token endpoint (sections 10 and 11).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use countersign_verifier::{
    find_unsafe_text, is_valid_id, parse_json_strict, validate_authorization_details,
    validate_binding_message, Statement,
};
use serde_json::{json, Value};

use crate::ciba::{approvers, clients};
use crate::state::Approvals;
use crate::state::PollState;
use crate::store::{
    CibaStore, ClientRecord, DeliveryMode, Durability, OutboxRecord, RequestRecord, RequestStatus,
};
use crate::util::now_secs;
use crate::util::Secret;
use crate::util::B64URL;
use crate::web::RouterState;
use countersign_log::http::{Body, Peer};
use countersign_log::ApiError;

/// The CIBA grant type.
pub const CIBA_GRANT: &str = "urn:openid:params:grant-type:ciba";
/// Longest `authorization_details` parameter, in bytes.
pub const MAX_AUTHORIZATION_DETAILS_BYTES: usize = 16 * 1024;
/// Longest short parameter (scope, hints, tokens), in bytes.
const MAX_SHORT_PARAM: usize = 1024;

pub(crate) fn routes() -> Router<RouterState> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks.json", get(jwks))
        .route("/bc-authorize", post(bc_authorize))
        .route("/token", post(token))
        // Auth0's token URL: its SDKs (the `auth0` npm package's `backchannel`) poll here.
        .route("/oauth/token", post(token))
}

async fn discovery(State(ref c): State<Arc<Approvals>>) -> Result<Response, ApiError> {
    let base = &c.config.public_url;
    let mut metadata = json!({
        "issuer": base,
        "backchannel_authentication_endpoint": format!("{base}/bc-authorize"),
        "backchannel_token_delivery_modes_supported": ["poll", "ping", "push"],
        "backchannel_user_code_parameter_supported": false,
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks.json"),
        "grant_types_supported": [CIBA_GRANT],
        "token_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA", "ES256"],
        "backchannel_authentication_request_signing_alg_values_supported": [],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "subject_types_supported": ["public"],
        "response_types_supported": [],
        "scopes_supported": ["openid"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time",
            "urn:openid:params:jwt:claim:auth_req_id", "at_hash"],
        "service_documentation": format!("{base}/approve"),
    });
    // RFC 9396 section 10: the types the server accepts. With none configured it accepts any,
    // which no list says (`[]` would claim that none is accepted), so the member is left out.
    if !c.config.authorization_details_types.is_empty() {
        metadata["authorization_details_types_supported"] =
            json!(c.config.authorization_details_types);
    }
    Ok(Json(metadata).into_response())
}

async fn jwks(State(ref c): State<Arc<Approvals>>) -> Result<Response, ApiError> {
    if c.store.is_shared() {
        // Another instance may have rotated the keys.
        c.keys.reload(&c.store)?;
    }
    Ok((
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(c.keys.jwks()),
    )
        .into_response())
}

fn short_param<'a>(
    form: &'a HashMap<String, String>,
    name: &str,
) -> Result<Option<&'a str>, ApiError> {
    match form.get(name) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.len() > MAX_SHORT_PARAM => Err(ApiError::invalid_request(format!(
            "{name} is longer than {MAX_SHORT_PARAM} bytes"
        ))),
        Some(v) => Ok(Some(v)),
    }
}

/// Who a request names (CIBA section 7.1: exactly one hint), before anything is looked up.
enum Hint<'a> {
    /// `login_hint`: an approver id, or an e-mail address (it holds `@`).
    Login(&'a str),
    /// An approver id: the `sub` of an ID token this server issued (`id_token_hint`), or of a
    /// `login_hint` in the `iss_sub` JSON form naming this server.
    Subject(String),
    /// A `login_hint` in the `iss_sub` JSON form naming another issuer: no one here.
    Elsewhere,
}

/// Checks which hint was given and its form (CIBA section 7.1): a hint that cannot name anyone
/// on any server is refused here, before the store is read.
fn parse_hint<'a>(c: &Approvals, form: &'a HashMap<String, String>) -> Result<Hint<'a>, ApiError> {
    let login_hint = short_param(form, "login_hint")?;
    let login_hint_token = short_param(form, "login_hint_token")?;
    let id_token_hint = form.get("id_token_hint").filter(|v| !v.is_empty());
    let n = [
        login_hint.is_some(),
        login_hint_token.is_some(),
        id_token_hint.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if n != 1 {
        return Err(ApiError::invalid_request(
            "give exactly one of login_hint, login_hint_token and id_token_hint",
        ));
    }
    if login_hint_token.is_some() {
        // We issue no login hint tokens, so none can be valid here.
        return Err(ApiError::bad_request(
            "expired_login_hint_token",
            "login_hint_token is not supported by this server; use login_hint",
        ));
    }
    if let Some(t) = id_token_hint {
        let claims = c
            .keys
            .verify_own(t)
            .filter(|cl| cl.get("iss").and_then(Value::as_str) == Some(&c.config.public_url))
            .ok_or_else(|| {
                ApiError::invalid_request("id_token_hint is not an ID token of this server")
            })?;
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return Ok(Hint::Subject(sub.to_owned()));
    }
    let login_hint = login_hint.unwrap_or_default();
    if crate::ciba::auth0::is_json_hint(login_hint) {
        return Ok(
            match crate::ciba::auth0::parse_iss_sub(login_hint, &c.config.public_url)? {
                crate::ciba::auth0::IssSub::Here(sub) => Hint::Subject(sub),
                crate::ciba::auth0::IssSub::Elsewhere => Hint::Elsewhere,
            },
        );
    }
    Ok(Hint::Login(login_hint))
}

/// The one answer for every hint that reaches no one: no such approver id, no such e-mail
/// address, a disabled approver, an approver with no passkey yet. One code, one text, so a
/// client cannot tell which (spec/design/README.md, "No approver oracle").
fn unreachable_approver() -> ApiError {
    ApiError::bad_request(
        "unknown_user_id",
        "no approver who can be asked matches the hint",
    )
}

/// Resolves the hint to an approver who can decide. Every hint costs the same two reads (the
/// e-mail index, then the approver record, read even when the first found nothing), so the
/// work, like the answer, does not say how far a hint got. A client with an approver
/// allow-list is answered alike when it names anyone else, so the list tells it nothing about
/// who exists.
async fn resolve_hint(
    c: &Approvals,
    client: &ClientRecord,
    hint: &Hint<'_>,
) -> Result<String, ApiError> {
    let candidate = match hint {
        Hint::Login(h) => {
            let by_email = c.store.get_raw(&format!("m/{}", h.to_lowercase())).await?;
            match by_email {
                Some(id) if h.contains('@') => String::from_utf8(id).unwrap_or_default(),
                _ => (*h).to_owned(),
            }
        }
        Hint::Subject(sub) => {
            let _ = c
                .store
                .get_raw(&format!("m/{}", sub.to_lowercase()))
                .await?;
            sub.clone()
        }
        // The same two reads as any hint (the empty id is no one's), then the same answer.
        Hint::Elsewhere => {
            let _ = c.store.get_raw("m/").await?;
            String::new()
        }
    };
    // An e-mail hint that matched no one reads the record of the hint itself, which an id
    // (no `@`, spec/entry.md E9) can never be.
    let approver = c.store.approver(&candidate).await?;
    let allowed = client
        .approvers
        .as_ref()
        .is_none_or(|list| list.contains(&candidate));
    match approver {
        Some(a)
            if !candidate.is_empty()
                && !candidate.contains('@')
                && !a.disabled
                && !a.credentials.is_empty() =>
        {
            if allowed {
                Ok(candidate)
            } else {
                c.metrics.refused("approver_not_allowed");
                Err(unreachable_approver())
            }
        }
        _ => Err(unreachable_approver()),
    }
}

async fn bc_authorize(
    State(ref c): State<Arc<Approvals>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let form = body.form(&headers)?;
    let client = clients::authenticate(c, &headers, &form, peer).await?;
    // The client's own limits, before any work on its request ([`crate::limits`]).
    c.limits.request(&c.metrics, &client.client_id)?;
    if c.config.client_max_pending > 0 {
        let now = now_secs();
        let (open, first_expiry) = c.store.open_requests_of_client(&client.client_id, now);
        if open >= c.config.client_max_pending {
            c.metrics.refused("client_pending");
            let wait = first_expiry.map_or(1, |e| e.saturating_sub(now).max(1));
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!(
                    "this client has {open} open requests, the most allowed; wait for decisions \
                     or expiries"
                ),
            )
            .retry_after(u32::try_from(wait).unwrap_or(u32::MAX)));
        }
    }

    if form.contains_key("request") {
        return Err(ApiError::invalid_request(
            "signed authentication requests are not supported",
        ));
    }
    let scope = short_param(&form, "scope")?
        .ok_or_else(|| ApiError::invalid_request("scope is required"))?;
    if !scope.split(' ').any(|s| s == "openid") {
        return Err(ApiError::bad_request(
            "invalid_scope",
            "scope must contain openid",
        ));
    }
    if scope
        .chars()
        .any(countersign_verifier::is_unsafe_display_char)
    {
        return Err(ApiError::bad_request(
            "invalid_scope",
            "scope holds control characters",
        ));
    }
    let notification_token = short_param(&form, "client_notification_token")?;
    if client.mode != DeliveryMode::Poll && notification_token.is_none() {
        return Err(ApiError::invalid_request(
            "client_notification_token is required for ping and push clients",
        ));
    }
    // Only the hint's form is checked here: whether it reaches anyone is looked up after every
    // other check, so that a request refused for its binding message or its details is refused
    // alike for a known and an unknown approver (no existence oracle).
    let hint = parse_hint(c, &form)?;

    // An empty value is an omitted parameter (RFC 6749 section 3.1), as for short_param.
    let binding_message = form
        .get("binding_message")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::invalid_request("binding_message is required"))?;
    if binding_message.len() > 4 * countersign_verifier::MAX_BINDING_MESSAGE_CHARS
        || validate_binding_message(binding_message, c.config.binding_message_max_chars).is_err()
    {
        return Err(ApiError::bad_request(
            "invalid_binding_message",
            format!(
                "binding_message must be 1 to {} characters of plain text, without control, \
                 bidirectional formatting, invisible or tag characters",
                c.config.binding_message_max_chars
            ),
        ));
    }
    let details_text = form
        .get("authorization_details")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::invalid_request("authorization_details is required"))?;
    if details_text.len() > MAX_AUTHORIZATION_DETAILS_BYTES {
        return Err(ApiError::invalid_request(format!(
            "authorization_details is longer than {MAX_AUTHORIZATION_DETAILS_BYTES} bytes"
        )));
    }
    let details = parse_json_strict(details_text.as_bytes()).map_err(|e| {
        ApiError::bad_request(
            "invalid_authorization_details",
            format!("authorization_details is not JSON: {e}"),
        )
    })?;
    // Name the member first: a prompt-injected agent's hidden character is easier to find.
    if let Some(u) = find_unsafe_text(&details, "authorization_details") {
        return Err(ApiError::bad_request(
            "invalid_authorization_details",
            format!(
                "{u}: what the approver reads must be what is signed, so such characters are \
                 refused"
            ),
        ));
    }
    validate_authorization_details(&details)
        .map_err(|e| ApiError::bad_request("invalid_authorization_details", e))?;
    // Two member names a person could take for one another (amount and аmount): one label on
    // the page, two values for the executor.
    if let Some((path, a, b)) =
        crate::action::find_confusable_names(&details, "authorization_details")
    {
        return Err(ApiError::bad_request(
            "invalid_authorization_details",
            format!(
                "{path} has member names that look alike ({a:?} and {b:?}): an approver could not \
                 tell their values apart"
            ),
        ));
    }
    if !c.config.authorization_details_types.is_empty() {
        let ok = details.as_array().is_some_and(|items| {
            items.iter().all(|i| {
                i["type"]
                    .as_str()
                    .is_some_and(|t| c.config.authorization_details_types.iter().any(|a| a == t))
            })
        });
        if !ok {
            return Err(ApiError::bad_request(
                "invalid_authorization_details",
                "an authorization_details type is not supported by this server",
            ));
        }
    }
    let expiry = match short_param(&form, "requested_expiry")? {
        None => c.config.default_expiry_secs,
        Some(v) => {
            let n: u64 = countersign_verifier::parse_decimal(v).ok_or_else(|| {
                ApiError::invalid_request("requested_expiry must be a positive integer")
            })?;
            if !(c.config.min_expiry_secs..=c.config.max_expiry_secs).contains(&n) {
                return Err(ApiError::invalid_request(format!(
                    "requested_expiry must be between {} and {} seconds",
                    c.config.min_expiry_secs, c.config.max_expiry_secs
                )));
            }
            n
        }
    };

    let audience = crate::ciba::auth0::audience(&form)?;

    // The hint names one approver, or (under a policy) a group; the policy in force then says
    // who decides: the matched rule's approvers and quorum, or the named ones, any one of them.
    let named = match &hint {
        Hint::Login(h) if h.starts_with(approvers::GROUP_HINT_PREFIX) => {
            let name = &h[approvers::GROUP_HINT_PREFIX.len()..];
            approvers::group_members(c, &client, name)
                .await?
                .ok_or_else(unreachable_approver)?
        }
        _ => vec![resolve_hint(c, &client, &hint).await?],
    };
    let deciders = approvers::deciders(c, &client, named, &details).await?;
    let mut expiry = expiry;
    let (approver_id, statement_policy, require_uv, require_attestation) = match deciders {
        approvers::Deciders::One(id) => (id, None, false, false),
        approvers::Deciders::Policy {
            policy,
            require_uv,
            require_attestation,
            max_expiry,
        } => {
            // The rule's longest expiry bounds the request's (the agent is told in expires_in).
            if let Some(max) = max_expiry {
                expiry = expiry.min(max);
            }
            (String::new(), Some(policy), require_uv, require_attestation)
        }
    };
    let logged_approvers = match &statement_policy {
        Some(p) => p.approvers.join(" "),
        None => approver_id.clone(),
    };

    let requested_at = now_secs();
    let request_id = format!("req_{}", B64URL.encode(crate::util::random_bytes::<16>()));
    let auth_req_id = Secret::generate();
    let statement = Statement {
        version: if statement_policy.is_some() {
            countersign_verifier::STATEMENT_VERSION_POLICY
        } else {
            countersign_verifier::STATEMENT_VERSION
        },
        log_origin: c.log.signer().verifier_key().name().to_owned(),
        request_id: request_id.clone(),
        client_id: client.client_id.clone(),
        approver_id: approver_id.clone(),
        policy: statement_policy,
        scope: scope.to_owned(),
        binding_message: binding_message.clone(),
        authorization_details: details,
        requested_at,
        expires_at: requested_at + expiry,
        decision: "approve".into(),
    };
    // The statement the approver will sign must be valid now, not fail at approval time.
    let canonical = statement
        .canonical_json()
        .map_err(|e| ApiError::invalid_request(format!("the request cannot be shown: {e}")))?;
    if canonical.len() > countersign_verifier::MAX_STATEMENT_BYTES {
        return Err(ApiError::invalid_request(
            "the request is too large to show",
        ));
    }
    if !is_valid_id(&client.client_id)
        || !statement
            .eligible_approvers()
            .iter()
            .all(|a| is_valid_id(a))
    {
        return Err(ApiError::internal(
            "bc-authorize",
            "stored id is not a valid id",
        ));
    }
    let record = RequestRecord {
        request_id: request_id.clone(),
        statement,
        nonce: hex::encode(crate::util::random_bytes::<32>()),
        mode: client.mode,
        client_notification_token: notification_token.map(Secret::new),
        status: RequestStatus::Pending,
        decision: None,
        token_issued: false,
        claim: None,
        audience,
        approvals: Vec::new(),
        require_uv,
        require_attestation,
    };
    let hash = auth_req_id.sha256();
    let key = CibaStore::request_key(&hash);
    // A new record under fresh random keys: no other change can race with it, so no lock.
    let mut batch = crate::request::create(&record, &key)?;
    for kind in crate::notify::channels(c) {
        // The approver's notifications, owed until delivered (even across a restart).
        batch.put(CibaStore::notify_key(&key, kind), Vec::new());
    }
    if record.mode != DeliveryMode::Poll {
        // What the ping or push will carry, stored with the request: a decision made at once
        // finds it, and so does a restart.
        batch.put_json(
            CibaStore::outbox_key(&key),
            &OutboxRecord {
                auth_req_id: auth_req_id.clone(),
                push_response: None,
            },
        )?;
    }
    c.store
        .commit_with_events(
            batch,
            &[crate::request::created_event(&record)],
            Durability::Sync,
        )
        .await?;
    tracing::info!(
        request_id = %request_id,
        client_id = %client.client_id,
        approvers = %logged_approvers,
        quorum = record.statement.quorum(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "approval requested"
    );
    c.metrics.requests.inc();
    for approver in record.statement.eligible_approvers() {
        c.inbox_changed(approver, &request_id);
    }
    crate::notify::new_request(c, &key, &record);
    if record.mode != DeliveryMode::Poll {
        crate::delivery::schedule_expiry(c.clone(), key.clone(), record.statement.expires_at);
    }
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "auth_req_id": auth_req_id.expose(),
            "expires_in": expiry,
            "interval": c.config.interval_secs,
        })),
    )
        .into_response())
}

async fn token(
    State(ref c): State<Arc<Approvals>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let form = body.form(&headers)?;
    let client = clients::authenticate(c, &headers, &form, peer).await?;
    let grant = form
        .get("grant_type")
        .ok_or_else(|| ApiError::invalid_request("grant_type is required"))?;
    if grant != CIBA_GRANT {
        return Err(ApiError::bad_request(
            "unsupported_grant_type",
            format!("only {CIBA_GRANT} is supported"),
        ));
    }
    if client.mode == DeliveryMode::Push {
        return Err(ApiError::bad_request(
            "unauthorized_client",
            "push clients receive their tokens at their notification endpoint",
        ));
    }
    let auth_req_id = short_param(&form, "auth_req_id")?
        .map(Secret::new)
        .ok_or_else(|| ApiError::invalid_request("auth_req_id is required"))?;
    let key = CibaStore::request_key(&auth_req_id.sha256());
    let invalid = || ApiError::bad_request("invalid_grant", "auth_req_id is unknown or not yours");
    // Read under the record's lock: an approved request's tokens are issued from this read.
    let _g = c.store.lock(&key).await?;
    let r: RequestRecord = c.store.get(&key).await?.ok_or_else(invalid)?;
    if r.statement.client_id != client.client_id {
        return Err(invalid());
    }
    if r.token_issued {
        return Err(ApiError::bad_request(
            "invalid_grant",
            "tokens for this auth_req_id were already issued",
        ));
    }
    let now = now_secs();
    match r.status {
        RequestStatus::Approved => {
            // CIBA Core section 11: once the auth_req_id expired, its answer is expired_token,
            // approved or not. An approval made before the expiry stays collectable for one
            // polling interval (the request's, slow_down included) after it was made, so a
            // client polling at its interval always gets it.
            let decided_at = r.decision.as_ref().map_or(0, |d| d.decided_at);
            let interval = polls(c)
                .get(&r.request_id)
                .map_or(c.config.interval_secs, |p| p.interval)
                .max(c.config.interval_secs);
            if now
                >= r.statement
                    .expires_at
                    .max(decided_at.saturating_add(interval))
            {
                forget_poll(c, &r.request_id);
                return Err(ApiError::bad_request(
                    "expired_token",
                    "the request expired before its approval was collected; ask again",
                ));
            }
            // Quorum mode: tokens only once a checkpoint the witnesses' quorum cosigned covers
            // the decision; until the quorum timeout the client is asked to keep polling.
            if let Some(index) = r
                .decision
                .as_ref()
                .map(|d| d.index)
                .filter(|i| !c.log.quorum_covers(*i))
            {
                let waited = c.log.quorum_timeout().unwrap_or_default().as_secs();
                if now < decided_at.saturating_add(waited.max(1)) {
                    return Err(ApiError::bad_request(
                        "authorization_pending",
                        "the decision is logged; its checkpoint awaits the witnesses' cosignatures",
                    ));
                }
                tracing::warn!(alert = "witness_quorum_timeout", index, "tokens held back: the decision's checkpoint has not reached the witness quorum");
                return Err(countersign_log::AppendError::NotWitnessed { index }.into());
            }
            let request_id = r.request_id.clone();
            let body =
                crate::ciba::issue::issue_tokens_locked(c, &key, r, &auth_req_id, &client, false)
                    .await?;
            forget_poll(c, &request_id);
            Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
        }
        RequestStatus::Denied => Err(ApiError::bad_request(
            "access_denied",
            "the approver denied the request",
        )),
        RequestStatus::Expired => Err(expired()),
        RequestStatus::Pending | RequestStatus::Deciding => {
            // A claim left by a crash mid-decision never turns into a token: once past expiry
            // (plus the longest a decision can take) it reads as expired. Fails closed.
            let deadline = match r.status {
                RequestStatus::Pending => r.statement.expires_at,
                _ => r.statement.expires_at + crate::config::DECIDING_GRACE_SECS,
            };
            if now >= deadline {
                return Err(expired());
            }
            if client.mode == DeliveryMode::Poll {
                check_poll_rate(c, &r.request_id)?;
            }
            Err(ApiError::bad_request(
                "authorization_pending",
                "the approver has not decided yet",
            ))
        }
    }
}

fn expired() -> ApiError {
    ApiError::bad_request(
        "expired_token",
        "the request expired before the approver decided",
    )
}

fn polls(c: &Approvals) -> std::sync::MutexGuard<'_, HashMap<String, PollState>> {
    match c.polls.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn forget_poll(c: &Approvals, request_id: &str) {
    polls(c).remove(request_id);
}

/// CIBA section 11: a client polling faster than `interval` gets `slow_down`, and its interval
/// grows by 5 seconds for the rest of the request.
fn check_poll_rate(c: &Approvals, request_id: &str) -> Result<(), ApiError> {
    let now = Instant::now();
    let mut map = polls(c);
    if map.len() > 1_000_000 {
        map.clear();
    }
    let entry = map.entry(request_id.to_owned()).or_insert(PollState {
        last: now - std::time::Duration::from_secs(3600),
        interval: c.config.interval_secs,
    });
    let elapsed = now.duration_since(entry.last);
    entry.last = now;
    // A little slack for network jitter: a client that sleeps exactly `interval` is compliant.
    if elapsed + std::time::Duration::from_millis(250)
        < std::time::Duration::from_secs(entry.interval)
    {
        entry.interval += 5;
        return Err(ApiError::bad_request(
            "slow_down",
            format!("poll at most every {} seconds", entry.interval),
        ));
    }
    Ok(())
}
