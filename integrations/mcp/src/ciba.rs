//! The Countersign server as this agent's client sees it: OpenID CIBA Core 1.0 in poll mode
//! (`/bc-authorize`, `/token`), the token keys (`/jwks.json`), the log's verifier key
//! (`/v1/log/vkey`) and the client's evidence bundles (`/v1/evidence/<auth_req_id>`).

use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use countersign_verifier::VerifierKey;
use serde_json::Value;

use crate::config::{AuthMethod, Config};
use crate::outcome::{classify, TokenAnswer};

/// The CIBA grant type (CIBA Core section 10.1).
const CIBA_GRANT: &str = "urn:openid:params:grant-type:ciba";
/// Longest answer read from the server (an evidence bundle is at most 1 MiB).
const MAX_ANSWER_BYTES: usize = 2 * 1024 * 1024;

/// What `/bc-authorize` answered (CIBA Core section 7.3).
#[derive(Clone, Debug)]
pub struct Authorized {
    /// The request's id (a bearer secret of this client).
    pub auth_req_id: String,
    /// Seconds until the request expires.
    pub expires_in: u64,
    /// Seconds between polls.
    pub interval: u64,
}

/// An approval request, as sent.
#[derive(Clone, Debug)]
pub struct ApprovalRequest {
    /// `login_hint`: the approver id or e-mail address.
    pub approver: String,
    /// `binding_message`.
    pub binding_message: String,
    /// `authorization_details` (RFC 9396), a JSON array.
    pub authorization_details: Value,
    /// `requested_expiry`, seconds.
    pub requested_expiry: Option<u64>,
}

/// The server's client.
pub struct Countersign {
    http: reqwest::Client,
    cfg: Config,
    jwks: Mutex<Option<Value>>,
    log_key: Mutex<Option<VerifierKey>>,
}

/// Percent-encoding of `application/x-www-form-urlencoded` for the id and secret inside HTTP
/// Basic (RFC 6749 section 2.3.1): everything but the unreserved characters is escaped.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An error's words from an OAuth error body (`error: error_description`), cut to safe text.
fn oauth_error(status: u16, body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let safe = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_control() && !countersign_verifier::is_unsafe_display_char(*c))
            .take(300)
            .collect()
    };
    match (
        v.get("error").and_then(Value::as_str),
        v.get("error_description").and_then(Value::as_str),
    ) {
        (Some(e), Some(d)) => format!("{status} {}: {}", safe(e), safe(d)),
        (Some(e), None) => format!("{status} {}", safe(e)),
        _ => format!("HTTP {status}"),
    }
}

impl Countersign {
    /// A client of the server `cfg` names.
    pub fn new(cfg: Config) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .connect_timeout(Duration::from_secs(5))
            // Below the keep-alive timeout of common servers (Node's 5 s): polls come every 5 s
            // or more, and a connection the server is closing fails the request that reuses it.
            .pool_idle_timeout(Duration::from_secs(4))
            // Credentials are never sent on to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("countersign-mcp/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Countersign {
            http,
            cfg,
            jwks: Mutex::new(None),
            log_key: Mutex::new(None),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Where the client fetches the evidence of `auth_req_id` (with its credentials).
    pub fn evidence_url(&self, auth_req_id: &str) -> String {
        format!("{}/v1/evidence/{}", self.cfg.url, form_encode(auth_req_id))
    }

    fn basic(&self) -> String {
        let pair = format!(
            "{}:{}",
            form_encode(&self.cfg.client_id),
            form_encode(self.cfg.secret.expose())
        );
        format!("Basic {}", STANDARD.encode(pair))
    }

    /// A form POST with the client's authentication; answers (status, body).
    async fn client_post(
        &self,
        path: &str,
        mut form: Vec<(&str, String)>,
    ) -> Result<(u16, Vec<u8>), String> {
        let mut rb = self.http.post(format!("{}{path}", self.cfg.url));
        match self.cfg.auth_method {
            AuthMethod::ClientSecretBasic => {
                rb = rb.header(reqwest::header::AUTHORIZATION, self.basic());
            }
            AuthMethod::ClientSecretPost => {
                form.push(("client_id", self.cfg.client_id.clone()));
                form.push(("client_secret", self.cfg.secret.expose().to_owned()));
            }
        }
        let resp = rb.form(&form).send().await.map_err(unreachable)?;
        read(resp).await
    }

    async fn get(&self, path: &str, authed: bool) -> Result<(u16, Vec<u8>), String> {
        let mut rb = self.http.get(format!("{}{path}", self.cfg.url));
        if authed {
            // The evidence endpoint takes HTTP Basic from every secret client (it has no body).
            rb = rb.header(reqwest::header::AUTHORIZATION, self.basic());
        }
        let resp = rb.send().await.map_err(unreachable)?;
        read(resp).await
    }

    /// `POST /bc-authorize` (CIBA Core section 7.1) with `scope=openid` and the approver as
    /// `login_hint`.
    pub async fn bc_authorize(&self, req: &ApprovalRequest) -> Result<Authorized, String> {
        let mut form = vec![
            ("scope", "openid".to_owned()),
            ("login_hint", req.approver.clone()),
            ("binding_message", req.binding_message.clone()),
            (
                "authorization_details",
                req.authorization_details.to_string(),
            ),
        ];
        if let Some(e) = req.requested_expiry {
            form.push(("requested_expiry", e.to_string()));
        }
        let (status, body) = self.client_post("/bc-authorize", form).await?;
        if status != 200 {
            return Err(format!(
                "the server refused the request: {}",
                oauth_error(status, &body)
            ));
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|_| "the server's /bc-authorize answer is not JSON".to_owned())?;
        let auth_req_id = v
            .get("auth_req_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or("the server's /bc-authorize answer has no valid auth_req_id")?
            .to_owned();
        let expires_in = v
            .get("expires_in")
            .and_then(Value::as_u64)
            .ok_or("the server's /bc-authorize answer has no expires_in")?;
        // CIBA Core section 7.3: without an interval the client polls every 5 seconds.
        let interval = v
            .get("interval")
            .and_then(Value::as_u64)
            .unwrap_or(5)
            .clamp(1, 60);
        Ok(Authorized {
            auth_req_id,
            expires_in,
            interval,
        })
    }

    /// One poll of `POST /token` (CIBA Core section 10.1); a transport failure is
    /// [`TokenAnswer::Failed`].
    pub async fn token(&self, auth_req_id: &str) -> TokenAnswer {
        let form = vec![
            ("grant_type", CIBA_GRANT.to_owned()),
            ("auth_req_id", auth_req_id.to_owned()),
        ];
        match self.client_post("/token", form.clone()).await {
            Ok((status, body)) => classify(status, &body),
            // Once more on a transport failure (a connection closed under the request). If the
            // first one did reach the server, the second is answered slow_down or, for tokens
            // already issued, invalid_grant: never an approval that was not checked.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(250)).await;
                match self.client_post("/token", form).await {
                    Ok((status, body)) => classify(status, &body),
                    Err(why) => TokenAnswer::Failed(why),
                }
            }
        }
    }

    /// The server's token keys, cached; `refresh` fetches them again (a token signed with a
    /// key the cache does not hold: the keys were rotated).
    pub async fn jwks(&self, refresh: bool) -> Result<Value, String> {
        if !refresh {
            if let Some(k) = lock(&self.jwks).clone() {
                return Ok(k);
            }
        }
        let (status, body) = self.get("/jwks.json", false).await?;
        if status != 200 {
            return Err(format!("GET /jwks.json answered {status}"));
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|_| "the server's JWKS is not JSON".to_owned())?;
        if !v.get("keys").is_some_and(Value::is_array) {
            return Err("the server's JWKS has no keys".into());
        }
        *lock(&self.jwks) = Some(v.clone());
        Ok(v)
    }

    /// The approval page for approvers (discovery's `service_documentation`, on the server's
    /// public URL, which may differ from the URL this agent uses).
    pub async fn approval_page(&self) -> Result<String, String> {
        let (status, body) = self.get("/.well-known/openid-configuration", false).await?;
        if status != 200 {
            return Err(format!(
                "GET /.well-known/openid-configuration answered {status}"
            ));
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|_| "the server's discovery document is not JSON".to_owned())?;
        v.get("service_documentation")
            .and_then(Value::as_str)
            .filter(|u| {
                (u.starts_with("https://") || u.starts_with("http://"))
                    && !u.chars().any(|c| c.is_control() || c.is_whitespace())
            })
            .map(str::to_owned)
            .ok_or_else(|| "the server's discovery document names no approval page".into())
    }

    /// The log key evidence must be signed with, and where it came from: the pinned
    /// `--log-key`, or the server's `/v1/log/vkey` (trusting the server this agent talks to).
    pub async fn log_key(&self) -> Result<(VerifierKey, &'static str), String> {
        if let Some(k) = &self.cfg.log_key {
            return Ok((k.clone(), "pinned (--log-key)"));
        }
        if let Some(k) = lock(&self.log_key).clone() {
            return Ok((k, "fetched from the server's /v1/log/vkey"));
        }
        let (status, body) = self.get("/v1/log/vkey", false).await?;
        if status != 200 {
            return Err(format!("GET /v1/log/vkey answered {status}"));
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|_| "the server's /v1/log/vkey answer is not JSON".to_owned())?;
        let key = v
            .get("vkey")
            .and_then(Value::as_str)
            .and_then(|k| VerifierKey::parse(k).ok())
            .ok_or("the server's /v1/log/vkey answer holds no verifier key")?;
        *lock(&self.log_key) = Some(key.clone());
        Ok((key, "fetched from the server's /v1/log/vkey"))
    }

    /// The evidence bundle of `auth_req_id` (`GET /v1/evidence/<auth_req_id>`, the client's
    /// own requests only), as bytes.
    pub async fn evidence(&self, auth_req_id: &str) -> Result<Vec<u8>, String> {
        let path = format!("/v1/evidence/{}", form_encode(auth_req_id));
        let (status, body) = self.get(&path, true).await?;
        match status {
            200 => Ok(body),
            409 => Err("the request has no logged decision yet".into()),
            404 => Err("no decided request of this client has this auth_req_id".into()),
            _ => Err(format!(
                "fetching the evidence failed: {}",
                oauth_error(status, &body)
            )),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// A transport failure in words: the URL's host and the kind of failure, never a credential
/// (reqwest's errors name the URL, which holds none).
fn unreachable(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    format!("the Countersign server is unreachable ({kind})")
}

async fn read(resp: reqwest::Response) -> Result<(u16, Vec<u8>), String> {
    let status = resp.status().as_u16();
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err("the server's answer is too large".into());
    }
    let body = resp
        .bytes()
        .await
        .map_err(|_| "the server's answer was cut off".to_owned())?;
    if body.len() > MAX_ANSWER_BYTES {
        return Err("the server's answer is too large".into());
    }
    Ok((status, body.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded() {
        assert_eq!(form_encode("a b:c%d+é"), "a%20b%3Ac%25d%2B%C3%A9");
        assert_eq!(form_encode("agent-1_x.y~"), "agent-1_x.y~");
    }

    #[test]
    fn oauth_errors_are_cut_to_safe_text() {
        let e = oauth_error(
            400,
            br#"{"error":"unknown_user_id","error_description":"no approver\u001b[2J who \u202e can"}"#,
        );
        assert_eq!(e, "400 unknown_user_id: no approver[2J who  can");
        assert_eq!(oauth_error(502, b"<html>"), "HTTP 502");
    }
}
