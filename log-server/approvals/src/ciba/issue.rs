//! Token issuance (CIBA section 10.1.1): the access and ID tokens of an approved request, issued
//! once. Used by the token endpoint (poll, ping) and by the push delivery.

use base64::Engine;
use countersign_verifier::export::{EventRow, EventType};
use serde_json::{json, Map, Value};

use crate::state::Approvals;
use crate::store::{
    Batch, CibaStore, ClientRecord, DeliveryMode, Durability, OutboxRecord, RequestRecord,
    RequestStatus,
};
use crate::util::{now_secs, Secret, B64URL};
use countersign_log::ApiError;

/// The token response for an approved request (CIBA section 10.1.1): access token and ID token.
/// Marks the request's tokens as issued (durably, before they are returned); fails if they
/// already were.
pub(crate) async fn issue_tokens(
    c: &Approvals,
    key: &str,
    auth_req_id: &Secret,
    client: &ClientRecord,
    with_at_hash: bool,
) -> Result<Value, ApiError> {
    let _g = c.store.lock(key).await?;
    let r: RequestRecord = c
        .store
        .get(key)
        .await?
        .ok_or_else(|| ApiError::bad_request("invalid_grant", "unknown auth_req_id"))?;
    issue_tokens_locked(c, key, r, auth_req_id, client, with_at_hash).await
}

/// [`issue_tokens`] for a caller that holds the record's lock and read `r` under it.
pub(crate) async fn issue_tokens_locked(
    c: &Approvals,
    key: &str,
    mut r: RequestRecord,
    auth_req_id: &Secret,
    client: &ClientRecord,
    with_at_hash: bool,
) -> Result<Value, ApiError> {
    let d = match (&r.status, &r.decision) {
        (RequestStatus::Approved, Some(d)) => d.clone(),
        _ => {
            return Err(ApiError::internal(
                "issue_tokens",
                "request is not approved",
            ))
        }
    };
    if r.token_issued {
        return Err(ApiError::bad_request(
            "invalid_grant",
            "tokens for this auth_req_id were already issued",
        ));
    }
    let st = &r.statement;
    let now = now_secs();
    let exp = now + c.config.token_ttl_secs;
    let iss = &c.config.public_url;
    // The subject: the one approver, or under a policy the first who approved (every approver
    // is in `approvals`).
    let sub = r
        .decisions()
        .next()
        .map_or(st.approver_id.as_str(), |first| r.decider(first))
        .to_owned();
    let mut at = Map::new();
    at.insert("iss".into(), json!(iss));
    at.insert("sub".into(), json!(sub));
    // The API the client named with `audience` (Auth0's parameter), else the client itself;
    // `client_id` says who the token was issued to either way (RFC 9068 section 2.2).
    at.insert(
        "aud".into(),
        json!(r.audience.as_deref().unwrap_or(&client.client_id)),
    );
    at.insert("client_id".into(), json!(client.client_id));
    at.insert("exp".into(), json!(exp));
    at.insert("iat".into(), json!(now));
    at.insert(
        "jti".into(),
        json!(B64URL.encode(crate::util::random_bytes::<16>())),
    );
    at.insert("scope".into(), json!(st.scope));
    at.insert(
        "authorization_details".into(),
        st.authorization_details.clone(),
    );
    at.insert("request_id".into(), json!(st.request_id));
    at.insert("statement_hash".into(), json!(d.statement_hash));
    at.insert("log_origin".into(), json!(st.log_origin));
    at.insert("log_index".into(), json!(d.index));
    at.insert("leaf_hash".into(), json!(d.leaf_hash));
    if let Some(p) = &st.policy {
        // Every approval that made the quorum, in log order (the last is `log_index`), and the
        // policy and rule that asked for them.
        at.insert(
            "approvals".into(),
            json!(r
                .decisions()
                .map(|a| json!({
                    "approver_id": r.decider(a),
                    "log_index": a.index,
                    "leaf_hash": a.leaf_hash,
                }))
                .collect::<Vec<_>>()),
        );
        at.insert("policy_index".into(), json!(p.index));
        at.insert("rule".into(), json!(p.rule));
        at.insert("quorum".into(), json!(p.quorum));
    }
    let access_token = c
        .keys
        .sign("at+jwt", &at)
        .map_err(|e| ApiError::internal("token", e))?;
    let mut id = Map::new();
    id.insert("iss".into(), json!(iss));
    id.insert("sub".into(), json!(sub));
    id.insert("aud".into(), json!(client.client_id));
    id.insert("exp".into(), json!(exp));
    id.insert("iat".into(), json!(now));
    id.insert("auth_time".into(), json!(d.decided_at));
    id.insert(
        "urn:openid:params:jwt:claim:auth_req_id".into(),
        json!(auth_req_id.expose()),
    );
    if with_at_hash {
        id.insert(
            "at_hash".into(),
            json!(crate::ciba::tokens::at_hash(&access_token)),
        );
    }
    let id_token = c
        .keys
        .sign("JWT", &id)
        .map_err(|e| ApiError::internal("token", e))?;
    let response = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": c.config.token_ttl_secs,
        "id_token": id_token,
        "scope": st.scope,
        "authorization_details": st.authorization_details,
    });
    r.token_issued = true;
    let mut b = Batch::new();
    b.put_json(key, &r)?;
    let now_ms = countersign_log::now_ms();
    let event = EventRow::for_request(EventType::TokenIssued, &r.statement, now_ms);
    let evidence_key = CibaStore::evidence_by_hash_key(CibaStore::hash_of_key(key));
    if let Some(mut e) = c.store.evidence_via(&evidence_key).await? {
        e.token_issued_at_ms = Some(now_ms);
        e.events.push(event.clone());
        CibaStore::put_evidence(&mut b, &e)?;
    }
    if r.mode == DeliveryMode::Push {
        // Issued once, delivered at least once: a push repeated after a crash sends these.
        b.put_json(
            CibaStore::outbox_key(key),
            &OutboxRecord {
                auth_req_id: auth_req_id.clone(),
                push_response: Some(Secret::new(response.to_string())),
            },
        )?;
    }
    c.store
        .commit_with_events(b, &[event], Durability::Sync)
        .await?;
    tracing::info!(request_id = %r.request_id, client_id = %client.client_id, "tokens issued");
    c.metrics.tokens.inc();
    Ok(response)
}
