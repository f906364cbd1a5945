//! What a token-endpoint answer means for the agent, failing closed: only a well-formed token
//! response whose access token verifies against the server's keys and approves exactly the
//! requested `authorization_details` becomes `approved`. Everything else is pending, denied,
//! expired, or an error that the tool reports as not approved.

use std::fmt;

use serde_json::{json, Map, Value};

use crate::jwt::{self, JwtError};

/// The outcome reported to the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The approver approved, and the access token was checked.
    Approved,
    /// The approver denied.
    Denied,
    /// The request expired undecided (or before its approval was collected).
    Expired,
    /// Not decided yet: ask again with `get_decision`.
    Pending,
}

impl Status {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
            Status::Pending => "pending",
        }
    }
}

/// One answer of the token endpoint (CIBA Core section 11), classified.
#[derive(Debug, PartialEq)]
pub enum TokenAnswer {
    /// `200` with a token response (not checked yet: see [`check_approval`]).
    Tokens(Map<String, Value>),
    /// `authorization_pending`.
    Pending,
    /// `slow_down`: poll 5 seconds less often from now on.
    SlowDown,
    /// `access_denied`.
    Denied,
    /// `expired_token`.
    Expired,
    /// Anything else: another error code, another status, a body that is not what the
    /// protocol says. Never an approval.
    Failed(String),
}

/// Classifies the token endpoint's answer `status`/`body`.
pub fn classify(status: u16, body: &[u8]) -> TokenAnswer {
    let parsed: Option<Map<String, Value>> = match serde_json::from_slice(body) {
        Ok(Value::Object(o)) => Some(o),
        _ => None,
    };
    if status == 200 {
        return match parsed {
            Some(o)
                if o.get("access_token").and_then(Value::as_str).is_some()
                    && o.get("token_type")
                        .and_then(Value::as_str)
                        .is_some_and(|t| t.eq_ignore_ascii_case("bearer")) =>
            {
                TokenAnswer::Tokens(o)
            }
            _ => TokenAnswer::Failed(
                "the token endpoint answered 200 without a bearer access token".into(),
            ),
        };
    }
    let code = parsed
        .as_ref()
        .and_then(|o| o.get("error"))
        .and_then(Value::as_str);
    // RFC 6749 section 5.2: errors are 400 (401 for invalid_client). Only those codes count;
    // the same word with a 5xx is a broken server, not a decision.
    match (status, code) {
        (400, Some("authorization_pending")) => TokenAnswer::Pending,
        (400, Some("slow_down")) => TokenAnswer::SlowDown,
        (400 | 403, Some("access_denied")) => TokenAnswer::Denied,
        (400, Some("expired_token")) => TokenAnswer::Expired,
        (_, Some(code)) => TokenAnswer::Failed(format!(
            "the token endpoint answered {status} {}",
            printable(code)
        )),
        (_, None) => TokenAnswer::Failed(format!(
            "the token endpoint answered {status} without an OAuth error"
        )),
    }
}

/// `s` cut to a short run of printable ASCII, for messages built from a server's text.
pub fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(120)
        .collect()
}

/// What an approval proved, once checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Approval {
    /// The access token (JWT).
    pub access_token: String,
    /// SHA-256 of the approved statement, lowercase hex.
    pub statement_sha256: String,
    /// Log index of the decision.
    pub log_index: u64,
}

/// Why a token response was not accepted as an approval.
#[derive(Debug, PartialEq)]
pub enum CheckError {
    /// The access token's signature.
    Token(JwtError),
    /// The token approves other `authorization_details` than the ones requested.
    DetailsMismatch(&'static str),
    /// The token is for another client.
    WrongClient,
    /// The token has expired.
    TokenExpired,
    /// A claim the approval rests on is missing or malformed.
    Claim(&'static str),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Token(e) => write!(f, "access token: {e}"),
            CheckError::DetailsMismatch(r#where) => write!(
                f,
                "the {where} authorization_details differ from the requested ones (RFC 8785 \
                 canonical JSON): this token does not approve this action"
            ),
            CheckError::WrongClient => f.write_str("the access token was issued to another client"),
            CheckError::TokenExpired => f.write_str("the access token has expired"),
            CheckError::Claim(c) => {
                write!(f, "the access token's {c} claim is missing or malformed")
            }
        }
    }
}

/// Canonical JSON (RFC 8785), or `None` for a value that has none.
fn canonical(v: &Value) -> Option<Vec<u8>> {
    countersign_verifier::canonical_json(v).ok()
}

/// The execution check on a token response: the access token verifies against `jwks` as an
/// `at+jwt`, is for `client_id`, has not expired at `now` (seconds), names a statement hash and
/// a log index, and its `authorization_details` (and the response's, if given) equal
/// `requested` in canonical form.
pub fn check_approval(
    response: &Map<String, Value>,
    requested: &Value,
    client_id: &str,
    jwks: &Value,
    now: u64,
) -> Result<Approval, CheckError> {
    let token = response
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or(CheckError::Claim("access_token"))?;
    let claims = jwt::verify(token, jwks, "at+jwt").map_err(CheckError::Token)?;
    let want = canonical(requested).ok_or(CheckError::DetailsMismatch("requested"))?;
    let approved = claims
        .get("authorization_details")
        .and_then(canonical)
        .ok_or(CheckError::Claim("authorization_details"))?;
    if approved != want {
        return Err(CheckError::DetailsMismatch("token's"));
    }
    if let Some(d) = response.get("authorization_details") {
        if canonical(d).as_deref() != Some(want.as_slice()) {
            return Err(CheckError::DetailsMismatch("token response's"));
        }
    }
    // RFC 7519 section 4.1.3: `aud` is a string or an array of strings; this client must be
    // in it (an `audience` the client asked for may stand beside it).
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == client_id,
        Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(client_id)),
        _ => false,
    };
    if claims.get("client_id").and_then(Value::as_str) != Some(client_id) || !aud_ok {
        return Err(CheckError::WrongClient);
    }
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(CheckError::Claim("exp"))?;
    if exp <= now {
        return Err(CheckError::TokenExpired);
    }
    let statement_sha256 = claims
        .get("statement_hash")
        .and_then(Value::as_str)
        .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or(CheckError::Claim("statement_hash"))?
        .to_owned();
    let log_index = claims
        .get("log_index")
        .and_then(Value::as_u64)
        .ok_or(CheckError::Claim("log_index"))?;
    Ok(Approval {
        access_token: token.to_owned(),
        statement_sha256,
        log_index,
    })
}

/// The structured result of `request_approval` and `get_decision`.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The outcome.
    pub status: Status,
    /// The CIBA request id.
    pub auth_req_id: String,
    /// SHA-256 of the decided statement (known once decided).
    pub statement_sha256: Option<String>,
    /// Log index of the decision (known once decided).
    pub log_index: Option<u64>,
    /// The access token (approved only).
    pub access_token: Option<String>,
    /// Where the client fetches the evidence bundle (once decided).
    pub evidence_url: Option<String>,
    /// Words for the agent.
    pub message: String,
}

impl Decision {
    /// A decision with only a status.
    pub fn bare(status: Status, auth_req_id: &str, message: impl Into<String>) -> Self {
        Decision {
            status,
            auth_req_id: auth_req_id.to_owned(),
            statement_sha256: None,
            log_index: None,
            access_token: None,
            evidence_url: None,
            message: message.into(),
        }
    }

    /// The structured content (`null` for what is not known).
    pub fn to_json(&self) -> Value {
        json!({
            "status": self.status.as_str(),
            "approved": self.status == Status::Approved,
            "auth_req_id": self.auth_req_id,
            "statement_sha256": self.statement_sha256,
            "log_index": self.log_index,
            "access_token": self.access_token,
            "evidence_url": self.evidence_url,
            "message": self.message,
        })
    }

    /// The text rendering (the token is left out: it is in the structured content).
    pub fn to_text(&self) -> String {
        let mut t = format!("{}: {}", self.status.as_str().to_uppercase(), self.message);
        t.push_str(&format!("\nauth_req_id: {}", self.auth_req_id));
        if let Some(h) = &self.statement_sha256 {
            t.push_str(&format!("\nstatement_sha256: {h}"));
        }
        if let Some(i) = self.log_index {
            t.push_str(&format!("\nlog_index: {i}"));
        }
        if let Some(u) = &self.evidence_url {
            t.push_str(&format!("\nevidence_url: {u}"));
        }
        if self.access_token.is_some() {
            t.push_str("\naccess_token: (in the structured result)");
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::tests::{jwks, sign, KEY};

    #[test]
    fn only_a_bearer_token_response_is_tokens() {
        let ok = br#"{"access_token":"a.b.c","token_type":"Bearer","expires_in":60}"#;
        assert!(matches!(classify(200, ok), TokenAnswer::Tokens(_)));
        for body in [
            &br#"{"token_type":"Bearer"}"#[..],
            br#"{"access_token":"a.b.c","token_type":"mac"}"#,
            br#"{"access_token":7,"token_type":"Bearer"}"#,
            br#"["access_token"]"#,
            b"approved",
            b"",
        ] {
            assert!(
                matches!(classify(200, body), TokenAnswer::Failed(_)),
                "{body:?}"
            );
        }
    }

    #[test]
    fn error_codes_map_to_statuses_and_nothing_else_approves() {
        let e = |code: &str| format!(r#"{{"error":"{code}","error_description":"x"}}"#);
        assert_eq!(
            classify(400, e("authorization_pending").as_bytes()),
            TokenAnswer::Pending
        );
        assert_eq!(
            classify(400, e("slow_down").as_bytes()),
            TokenAnswer::SlowDown
        );
        assert_eq!(
            classify(400, e("access_denied").as_bytes()),
            TokenAnswer::Denied
        );
        assert_eq!(
            classify(403, e("access_denied").as_bytes()),
            TokenAnswer::Denied
        );
        assert_eq!(
            classify(400, e("expired_token").as_bytes()),
            TokenAnswer::Expired
        );
        for (status, body) in [
            (400, e("invalid_grant")),
            (401, e("invalid_client")),
            (400, e("transaction_failed")),
            (400, e("approved")),
            (500, e("authorization_pending")),
            (503, e("not_witnessed")),
            (502, "<html>bad gateway</html>".into()),
            (400, "{}".into()),
            (302, String::new()),
        ] {
            assert!(
                matches!(classify(status, body.as_bytes()), TokenAnswer::Failed(_)),
                "{status} {body}"
            );
        }
        let TokenAnswer::Failed(why) = classify(400, e("odd\ncode\u{1b}[31m").as_bytes()) else {
            panic!("not failed");
        };
        assert!(!why.contains('\n') && !why.contains('\u{1b}'), "{why}");
    }

    fn details() -> Value {
        json!([{"type": "payment", "amount": "12.50", "currency": "EUR", "to": "ACME"}])
    }

    fn claims() -> Value {
        json!({
            "iss": "http://localhost:1", "sub": "apv_1", "aud": "agent", "client_id": "agent",
            "exp": 2_000, "iat": 1_000, "authorization_details": details(),
            "statement_hash": "ab".repeat(32), "log_index": 7, "leaf_hash": "cd".repeat(32),
        })
    }

    fn response(token: &str) -> Map<String, Value> {
        let Value::Object(o) = json!({"access_token": token, "token_type": "Bearer",
            "authorization_details": details()})
        else {
            unreachable!()
        };
        o
    }

    fn at(claims: &Value) -> String {
        sign(
            &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1"}),
            claims,
            &KEY,
        )
    }

    #[test]
    fn a_checked_token_approves_the_requested_details() {
        // Key order and number spelling do not matter; the values do.
        let requested =
            json!([{"to": "ACME", "currency": "EUR", "amount": "12.50", "type": "payment"}]);
        let a = check_approval(
            &response(&at(&claims())),
            &requested,
            "agent",
            &jwks(),
            1_500,
        )
        .unwrap();
        assert_eq!(a.statement_sha256, "ab".repeat(32));
        assert_eq!(a.log_index, 7);
    }

    #[test]
    fn a_token_for_other_details_or_forged_is_not_an_approval() {
        let t = at(&claims());
        let other = json!([{"type": "payment", "amount": "1250", "currency": "EUR", "to": "ACME"}]);
        assert_eq!(
            check_approval(&response(&t), &other, "agent", &jwks(), 1_500),
            Err(CheckError::DetailsMismatch("token's"))
        );
        // A response whose own authorization_details were swapped.
        let mut r = response(&t);
        r.insert("authorization_details".into(), other.clone());
        assert_eq!(
            check_approval(&r, &details(), "agent", &jwks(), 1_500),
            Err(CheckError::DetailsMismatch("token response's"))
        );
        // Signed by another key.
        let forged = sign(
            &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1"}),
            &claims(),
            &[9; 32],
        );
        assert_eq!(
            check_approval(&response(&forged), &details(), "agent", &jwks(), 1_500),
            Err(CheckError::Token(JwtError::Signature))
        );
        assert_eq!(
            check_approval(&response(&t), &details(), "other-agent", &jwks(), 1_500),
            Err(CheckError::WrongClient)
        );
        for aud in [
            json!("other-agent"),
            json!(["api", "other-agent"]),
            json!(null),
        ] {
            let mut c = claims();
            c["aud"] = aud.clone();
            assert_eq!(
                check_approval(&response(&at(&c)), &details(), "agent", &jwks(), 1_500),
                Err(CheckError::WrongClient),
                "aud {aud}"
            );
        }
        let mut c = claims();
        c["aud"] = json!(["https://api.example", "agent"]);
        assert!(check_approval(&response(&at(&c)), &details(), "agent", &jwks(), 1_500).is_ok());
        assert_eq!(
            check_approval(&response(&t), &details(), "agent", &jwks(), 2_000),
            Err(CheckError::TokenExpired)
        );
        for (claim, bad) in [
            ("statement_hash", json!("AB".repeat(32))),
            ("statement_hash", json!("ab")),
            ("log_index", json!(-1)),
            ("log_index", json!("7")),
        ] {
            let mut c = claims();
            c[claim] = bad;
            assert_eq!(
                check_approval(&response(&at(&c)), &details(), "agent", &jwks(), 1_500),
                Err(CheckError::Claim(claim))
            );
        }
    }

    #[test]
    fn results_render_what_is_known() {
        let d = Decision::bare(Status::Pending, "id1", "waiting");
        let j = d.to_json();
        assert_eq!(j["status"], "pending");
        assert_eq!(j["approved"], false);
        assert!(j["statement_sha256"].is_null() && j["access_token"].is_null());
        assert!(d.to_text().starts_with("PENDING: waiting"));
    }
}
