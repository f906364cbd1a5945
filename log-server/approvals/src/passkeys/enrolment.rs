//! Passkey enrolment behind a one-time link: the registration ceremony, checked by the
//! verifier crate, and the enrolment entry in the log.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use countersign_log::http::Body;
use countersign_log::log::EnrolmentRequest;
use countersign_verifier::{
    cose_alg, parse_cose_key, verify_registration, AttestationRecord, RegisteredCredential,
    RegistrationPolicy,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::ceremony::{Ceremony, Kind, StoredCeremony, SHARED_CEREMONY_PREFIX};
use super::{append_error, b64, busy, CEREMONY_TTL};
use crate::state::Approvals;
use crate::store::{ApproverRecord, Batch, CibaStore, CredentialRef, Durability, EnrolmentLink};
use crate::util::{now_secs, Secret, B64URL};
use countersign_log::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolStart {
    token: String,
}

async fn valid_link(c: &Approvals, token: &str) -> Result<([u8; 32], EnrolmentLink), ApiError> {
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
        .get(&format!("l/{}", hex::encode(h)))
        .await?
        .ok_or_else(gone)?;
    if link.used || link.expires_at <= now_secs() {
        return Err(gone());
    }
    // Only the approver's latest link is good: a new one voids those sent before.
    let latest: Option<String> = c
        .store
        .get(&CibaStore::latest_link_key(&link.approver_id))
        .await?;
    if latest.is_some_and(|l| l != hex::encode(h)) {
        return Err(ApiError::new(
            StatusCode::GONE,
            "invalid_link",
            "a newer enrolment link was sent for this approver; use that one",
        ));
    }
    Ok((h, link))
}

/// The approver a link enrols, checked for this enrolment: enabled, and, when they already
/// have a passkey, either signed in with it in this browser or enrolling through a recovery
/// link (whoever holds a plain link must not add a passkey to someone else's account).
async fn enrolling_approver(
    c: &Approvals,
    headers: &HeaderMap,
    link: &EnrolmentLink,
) -> Result<ApproverRecord, ApiError> {
    let approver = c
        .store
        .approver(&link.approver_id)
        .await?
        .filter(|a| !a.disabled)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::GONE,
                "invalid_link",
                "the approver is disabled; ask your operator",
            )
        })?;
    let signed_in = super::session_of(c, headers)
        .await
        .is_some_and(|s| crate::util::same_id(&s.approver_id, &approver.approver_id));
    if !approver.credentials.is_empty() && !signed_in && !link.recovery {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "session_required",
            "this approver already has a passkey: sign in with it in this browser, then open \
             the link again to add another; if it is lost, ask your operator for a recovery \
             link (countersign approver link <id> --recovery)",
        ));
    }
    Ok(approver)
}

/// The enrolment link's approver, for the enrolment page (None if the link is not usable).
pub(crate) async fn link_approver(c: &Approvals, token: &str) -> Option<ApproverRecord> {
    let (_, link) = valid_link(c, token).await.ok()?;
    c.store
        .approver(&link.approver_id)
        .await
        .ok()
        .flatten()
        .filter(|a| !a.disabled)
}

/// Starts an enrolment ceremony: in memory, or on the shared driver in the store (so that its
/// finish may reach any instance).
async fn start_ceremony(
    c: &Approvals,
    link_hash: [u8; 32],
) -> Result<(String, [u8; 32]), ApiError> {
    if !c.store.is_shared() {
        return c.ceremonies.start(Kind::Enrol { link_hash }).map_err(busy);
    }
    let id = B64URL.encode(crate::util::random_bytes::<16>());
    let challenge = crate::util::random_bytes::<32>();
    let stored = StoredCeremony {
        id: id.clone(),
        challenge: hex::encode(challenge),
        started_ms: countersign_log::now_ms(),
    };
    let mut b = Batch::new();
    b.put_json(
        format!("{SHARED_CEREMONY_PREFIX}{}", hex::encode(link_hash)),
        &stored,
    )?;
    c.store.commit(b, Durability::Deferred).await?;
    Ok((id, challenge))
}

/// Takes the started ceremony `id` of the link `token` for its finish, once
/// ([`start_ceremony`]). (In memory the id alone finds it, and the finish then checks that it
/// belongs to the link; in the store the link finds it, so another link's id finds nothing.)
async fn take_ceremony(c: &Approvals, id: &str, token: &str) -> Result<Option<Ceremony>, ApiError> {
    if !c.store.is_shared() {
        return Ok(c.ceremonies.take(id));
    }
    let link_hash = Secret::new(token).sha256();
    let key = format!("{SHARED_CEREMONY_PREFIX}{}", hex::encode(link_hash));
    let _g = c.store.lock(&key).await?;
    let Some(stored) = c
        .store
        .get::<StoredCeremony>(&key)
        .await?
        .filter(|s| s.id == id)
    else {
        return Ok(None);
    };
    let mut b = Batch::new();
    b.delete(key.clone());
    c.store.commit(b, Durability::Sync).await?;
    let age = countersign_log::now_ms().saturating_sub(stored.started_ms);
    let challenge = hex::decode(&stored.challenge)
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok());
    match challenge {
        Some(challenge) if u128::from(age) < CEREMONY_TTL.as_millis() => Ok(Some(
            Ceremony::resumed(Kind::Enrol { link_hash }, challenge),
        )),
        _ => Ok(None),
    }
}

pub(crate) async fn enrol_start(
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let b: EnrolStart = body.declared_json(&headers)?;
    let (link_hash, link) = valid_link(c, &b.token).await?;
    let approver = enrolling_approver(c, &headers, &link).await?;
    let (id, ch) = start_ceremony(c, link_hash).await?;
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
            // With a policy, ask for the authenticator's own statement ("direct"): "none"
            // would let the browser strip it, and the enrolment would then be refused.
            "attestation": if c.config.attestation.is_some() { "direct" } else { "none" },
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

pub(crate) async fn enrol_finish(
    State(ref c): State<Arc<Approvals>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let b: EnrolFinish = body.declared_json(&headers)?;
    let cer = take_ceremony(c, &b.ceremony_id, &b.token)
        .await?
        .ok_or_else(|| {
            ApiError::invalid_request("the enrolment ceremony is unknown or timed out; start again")
        })?;
    let (link_hash, link) = valid_link(c, &b.token).await?;
    // Checked again: the approver may have been disabled, or have enrolled a passkey, since.
    enrolling_approver(c, &headers, &link).await?;
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
    let anchor = match &c.config.attestation {
        Some(p) => Some(
            p.check(&reg, rustls_pki_types::UnixTime::now())
                .map_err(|e| {
                    tracing::info!(approver_id = %link.approver_id, error = %e, "enrolment refused by the attestation policy");
                    ApiError::bad_request(
                        "invalid_registration",
                        format!("the passkey could not be enrolled: {e}"),
                    )
                })?,
        ),
        None => None,
    };
    if B64URL.encode(&reg.credential_id) != b.credential.raw_id.trim_end_matches('=') {
        return Err(ApiError::invalid_request(
            "rawId is not the attested credential id",
        ));
    }
    let alg = parse_cose_key(&reg.public_key_cose)
        .map(|k| cose_alg(&k))
        .map_err(|e| ApiError::bad_request("invalid_registration", format!("public key: {e}")))?;
    // From the link's claim on, the enrolment runs in a task of its own: an approver whose
    // connection closes half-way (the handler's future dropped) must not leave the link used
    // and the passkey logged but missing from their record.
    let c = Arc::clone(c);
    let finish = commit_enrolment(c, link_hash, link, reg, anchor, alg);
    match tokio::spawn(finish).await {
        Ok(r) => r,
        Err(e) => Err(ApiError::internal("enrol_finish", e)),
    }
}

/// Claims the link, logs the enrolment and adds the passkey to the approver's record.
async fn commit_enrolment(
    c: Arc<Approvals>,
    link_hash: [u8; 32],
    link: EnrolmentLink,
    reg: RegisteredCredential,
    anchor: Option<[u8; 32]>,
    alg: i64,
) -> Result<Response, ApiError> {
    let c = &c;
    let link_key = format!("l/{}", hex::encode(link_hash));
    // Claim the link before logging, so one link enrols one passkey even under a race.
    {
        let _g = c.store.lock(&link_key).await?;
        let mut l: EnrolmentLink =
            c.store.get(&link_key).await?.ok_or_else(|| {
                ApiError::new(StatusCode::GONE, "invalid_link", "the link is gone")
            })?;
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
            attestation: match anchor {
                Some(trust_anchor) => AttestationRecord::Verified { trust_anchor },
                None => AttestationRecord::Unverified,
            },
        })
        .await;
    let a = match appended {
        Ok(a) if !a.existing => a,
        other => {
            // Give the link back: nothing new was enrolled.
            let _g = c.store.lock(&link_key).await?;
            if let Some(mut l) = c.store.get::<EnrolmentLink>(&link_key).await? {
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
        let _g = c.store.lock(&approver_key).await?;
        let mut ap = c
            .store
            .approver(&link.approver_id)
            .await?
            .ok_or_else(|| ApiError::internal("enrol_finish", "approver vanished"))?;
        ap.credentials.push(CredentialRef {
            credential_id: B64URL.encode(&reg.credential_id),
            enrolment_index: a.index,
            alg,
        });
        let mut b = Batch::new();
        b.put_json(&approver_key, &ap)?;
        let events: Vec<_> = crate::audit::appended_event(&c.log, &a, None)
            .await
            .into_iter()
            .collect();
        c.store
            .commit_with_events(b, &events, Durability::Sync)
            .await?;
    }
    tracing::info!(approver_id = %link.approver_id, index = a.index, attestation_root = ?anchor.map(hex::encode), "passkey enrolled");
    if let Some(ap) = c.store.approver(&link.approver_id).await? {
        crate::notify::passkey_changed(
            c,
            &ap,
            crate::notify::PasskeyChange::Enrolled {
                credential_id: B64URL.encode(&reg.credential_id),
                aaguid: reg.aaguid,
                log_index: a.index,
            },
        );
    }
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
