//! A log with the approval front end on an ephemeral loopback port, software passkeys, and a
//! client-side view of the CIBA, ceremony and admin APIs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use countersign_approvals::{Approvals, CibaConfig};
use countersign_log::{Config, RpPolicy};
use countersign_testvectors::{Alg, AssertOptions, SoftPasskey};
use countersign_verifier::VerifierKey;
use serde_json::{json, Value};

pub const ORIGIN: &str = "https://approve.test";
pub const RP_ID: &str = "approve.test";
pub const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A server's public and admin HTTP API, wherever it runs (in this process or as a child).
pub struct Api {
    pub url: String,
    pub admin: String,
    pub http: reqwest::Client,
}

/// A server in this process; derefs to its [`Api`].
pub struct Server {
    pub api: Api,
    pub vkey: VerifierKey,
    /// The log's HTTP state (`log_api.log` is the log).
    pub log_api: countersign_log::LogApi,
    pub approvals: Arc<Approvals>,
    pub data_dir: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with(|c| c).await
    }

    pub async fn start_with(f: impl FnOnce(CibaConfig) -> CibaConfig) -> Server {
        Self::start_full(false, f).await
    }

    /// With `localhost`, the server is its own relying party at http://localhost:<port>, as a
    /// real browser needs; otherwise the pages' origin is [`ORIGIN`].
    pub async fn start_full(localhost: bool, f: impl FnOnce(CibaConfig) -> CibaConfig) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (rp_id, origin, url) = if localhost {
            let u = format!("http://localhost:{port}");
            ("localhost".to_owned(), u.clone(), u)
        } else {
            (
                RP_ID.to_owned(),
                ORIGIN.to_owned(),
                format!("http://127.0.0.1:{port}"),
            )
        };
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        // The log tests' configuration, with this server's origin and relying party.
        let cfg = Config {
            origin: Some("flow.example/log".into()),
            policy: RpPolicy {
                rp_id,
                allowed_origins: vec![origin],
                require_user_verification: true,
            },
            ..crate::log_common::config(data_dir.clone())
        };
        let admin_path = data_dir.join("admin.token");
        let mut cc = CibaConfig::new(url.clone());
        cc.interval_secs = 1;
        cc.min_expiry_secs = 1;
        cc.delivery_backoff = Duration::from_millis(50);
        cc.delivery_attempts = 3;
        let cc = f(cc);
        let started =
            tokio::task::spawn_blocking(move || countersign::Server::start(cfg, Some(cc)))
                .await
                .unwrap()
                .unwrap();
        let admin = std::fs::read_to_string(admin_path)
            .unwrap()
            .trim()
            .to_owned();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let log_api = started.api.clone();
        let approvals = started.approvals.clone().unwrap();
        let vkey = VerifierKey::parse(&started.vkey).unwrap();
        tokio::spawn(async move {
            started
                .serve(listener, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Server {
            api: Api {
                url,
                admin,
                http: reqwest::Client::new(),
            },
            vkey,
            log_api,
            approvals,
            data_dir,
            stop: Some(stop),
            _dir: dir,
        }
    }

    pub fn tree_size(&self) -> u64 {
        self.log_api.log.published().size
    }
}

impl std::ops::Deref for Server {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Api {
    /// The served checkpoint, its signature checked.
    pub async fn checkpoint(&self, vkey: &VerifierKey) -> countersign_verifier::Checkpoint {
        crate::web::fetch_checkpoint(&self.http, &self.url, vkey).await
    }

    /// `GET path`: the JSON body of a 2xx answer.
    pub async fn get_json(&self, path: &str) -> Value {
        crate::web::get_json(&self.http, &format!("{}{path}", self.url)).await
    }

    /// The server's `Api` (admin token from its data directory).
    pub fn of(server: &crate::process::Process) -> Api {
        Api {
            url: server.url.clone(),
            admin: server.read("admin.token"),
            http: reqwest::Client::new(),
        }
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Registers a client with a chosen secret.
    pub async fn add_client(&self, id: &str, mode: &str, endpoint: Option<&str>) -> Client {
        let (st, v) = self
            .admin_post(
                "/v1/admin/clients",
                json!({"client_id": id, "secret": format!("secret-of-{id}"), "mode": mode,
                       "notification_endpoint": endpoint}),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        Client {
            id: id.into(),
            secret: format!("secret-of-{id}"),
            url: self.url.clone(),
            http: self.http.clone(),
        }
    }

    /// Registers an approver and enrols a software passkey through the one-time link.
    pub async fn add_approver(&self, id: &str, seed: u64) -> Approver {
        let (st, v) = self
            .admin_post(
                "/v1/admin/approvers",
                json!({"approver_id": id, "email": format!("{id}@example.com"), "name": id}),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        let link = v["enrolment_url"].as_str().unwrap().to_owned();
        let token = link.rsplit('/').next().unwrap().to_owned();
        let passkey = SoftPasskey::new(Alg::Es256, seed, RP_ID);
        let (st, v) = self.enrol(&token, &passkey, ORIGIN).await;
        assert_eq!(st, 201, "{v}");
        let mut a = Approver {
            passkey: Arc::new(Mutex::new(passkey)),
            cookie: String::new(),
            csrf: String::new(),
            url: self.url.clone(),
            http: self.http.clone(),
            enrolment_index: v["log_index"].as_u64().unwrap(),
            secure_cookie: false,
        };
        a.sign_in().await;
        a
    }

    pub async fn enrol(&self, token: &str, passkey: &SoftPasskey, origin: &str) -> (u16, Value) {
        self.enrol_with_cookie(token, passkey, origin, "").await
    }

    /// [`Server::enrol`] in a browser holding `cookie` (a session, or "" for none).
    pub async fn enrol_with_cookie(
        &self,
        token: &str,
        passkey: &SoftPasskey,
        origin: &str,
        cookie: &str,
    ) -> (u16, Value) {
        let (st, start) = post_json(
            &self.http,
            &format!("{}/v1/enrol/start", self.url),
            cookie,
            "",
            &json!({"token": token}),
        )
        .await;
        if st != 200 {
            return (st, start);
        }
        let ch = B64URL
            .decode(start["publicKey"]["challenge"].as_str().unwrap())
            .unwrap();
        post_json(
            &self.http,
            &format!("{}/v1/enrol/finish", self.url),
            cookie,
            "",
            &json!({
                "ceremony_id": start["ceremony_id"],
                "token": token,
                "credential": passkey.registration_json(&ch, origin),
            }),
        )
        .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub async fn post_json(
    http: &reqwest::Client,
    url: &str,
    cookie: &str,
    csrf: &str,
    body: &Value,
) -> (u16, Value) {
    let mut req = http.post(url).json(body);
    if !cookie.is_empty() {
        req = req.header("cookie", cookie);
    }
    if !csrf.is_empty() {
        req = req.header("x-csrf-token", csrf);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The parameters of a well-formed `/bc-authorize` for `approver`.
pub fn ask_params(approver: &str) -> Vec<(&str, &str)> {
    vec![
        ("scope", "openid payments"),
        ("login_hint", approver),
        ("binding_message", "Pay 42.00 EUR to ACME"),
        (
            "authorization_details",
            r#"[{"type":"payment_initiation","instructedAmount":{"currency":"EUR","amount":"42.00"},"creditorName":"ACME"}]"#,
        ),
    ]
}

/// Asserts a refusal: its status, its `error` code, and an `error_description` that names the
/// problem (holds each of `words`, case-insensitively).
#[track_caller]
pub fn assert_refused(what: &str, got: &(u16, Value), status: u16, code: &str, words: &[&str]) {
    let (st, v) = got;
    assert_eq!(
        (*st, v["error"].as_str()),
        (status, Some(code)),
        "{what}: {v}"
    );
    let d = v["error_description"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no error_description in {v}"))
        .to_lowercase();
    for w in words {
        assert!(
            d.contains(&w.to_lowercase()),
            "{what}: the description {d:?} does not name {w:?}"
        );
    }
}

/// A `(status, text)` answer with its text read as JSON (`Null` if it is not JSON).
pub fn json_of((status, text): (u16, String)) -> (u16, Value) {
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A response's status and JSON body (`Null` if the body is not JSON).
pub async fn answer_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A CIBA client (agent).
#[derive(Clone)]
pub struct Client {
    pub id: String,
    pub secret: String,
    pub url: String,
    pub http: reqwest::Client,
}

impl Client {
    pub async fn form(&self, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .basic_auth(&self.id, Some(&self.secret))
            .form(params)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `/bc-authorize` for `approver` with [`ask_params`], each of `extra` replacing the default
    /// of its name or added (an empty value is sent as an empty value).
    pub async fn bc_authorize(&self, approver: &str, extra: &[(&str, &str)]) -> (u16, Value) {
        let mut p = ask_params(approver);
        for (k, v) in extra {
            p.retain(|(pk, _)| pk != k);
            p.push((k, v));
        }
        self.form("/bc-authorize", &p).await
    }

    /// Asks and returns the auth_req_id.
    pub async fn ask(&self, approver: &str, extra: &[(&str, &str)]) -> String {
        let (st, v) = self.bc_authorize(approver, extra).await;
        assert_eq!(st, 200, "{v}");
        v["auth_req_id"].as_str().unwrap().to_owned()
    }

    pub async fn token(&self, auth_req_id: &str) -> (u16, Value) {
        self.form(
            "/token",
            &[
                ("grant_type", "urn:openid:params:grant-type:ciba"),
                ("auth_req_id", auth_req_id),
            ],
        )
        .await
    }

    pub async fn evidence(&self, auth_req_id: &str, format: Option<&str>) -> (u16, String) {
        let mut url = format!("{}/v1/evidence/{auth_req_id}", self.url);
        if let Some(f) = format {
            url.push_str(&format!("?format={f}"));
        }
        let r = self
            .http
            .get(url)
            .basic_auth(&self.id, Some(&self.secret))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

/// An approver with a software passkey and a signed-in session.
#[derive(Clone)]
pub struct Approver {
    pub passkey: Arc<Mutex<SoftPasskey>>,
    pub cookie: String,
    pub csrf: String,
    pub url: String,
    pub http: reqwest::Client,
    pub enrolment_index: u64,
    /// Whether the session cookie carried `Secure`.
    pub secure_cookie: bool,
}

impl Approver {
    pub async fn sign_in(&mut self) {
        let (st, start) = post_json(
            &self.http,
            &format!("{}/v1/session/start", self.url),
            "",
            "",
            &json!({}),
        )
        .await;
        assert_eq!(st, 200, "{start}");
        let ch = B64URL
            .decode(start["publicKey"]["challenge"].as_str().unwrap())
            .unwrap();
        let cred = {
            let mut pk = self.passkey.lock().unwrap();
            let a = pk.assert(&ch, ORIGIN);
            pk.assertion_json(&a)
        };
        let r = self
            .http
            .post(format!("{}/v1/session/finish", self.url))
            .json(&json!({"ceremony_id": start["ceremony_id"], "credential": cred}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(
            set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
            "{set_cookie}"
        );
        self.cookie = set_cookie.split(';').next().unwrap().to_owned();
        self.secure_cookie = set_cookie.split(';').any(|a| a.trim() == "Secure");
        let v: Value = r.json().await.unwrap();
        self.csrf = v["csrf_token"].as_str().unwrap().to_owned();
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        post_json(
            &self.http,
            &format!("{}{path}", self.url),
            &self.cookie,
            &self.csrf,
            body,
        )
        .await
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub async fn inbox(&self) -> Vec<Value> {
        let (st, body) = self.get("/v1/inbox").await;
        assert_eq!(st, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["requests"].as_array().unwrap().clone()
    }

    /// The challenge the server asks to sign for `decision` on `request_id`.
    pub async fn challenge(&self, request_id: &str, decision: &str) -> Vec<u8> {
        let (st, v) = self
            .post(
                &format!("/v1/requests/{request_id}/decide/start"),
                &json!({"decision": decision}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        B64URL
            .decode(v["publicKey"]["challenge"].as_str().unwrap())
            .unwrap()
    }

    pub fn sign(&self, challenge: &[u8], origin: &str) -> Value {
        let mut pk = self.passkey.lock().unwrap();
        let a = pk.assert_with(&AssertOptions::new(challenge, origin));
        pk.assertion_json(&a)
    }

    pub async fn finish(
        &self,
        request_id: &str,
        decision: &str,
        credential: &Value,
    ) -> (u16, Value) {
        self.post(
            &format!("/v1/requests/{request_id}/decide/finish"),
            &json!({"decision": decision, "credential": credential}),
        )
        .await
    }

    /// Decides `request_id` properly; returns the receipt.
    pub async fn decide(&self, request_id: &str, decision: &str) -> Value {
        let ch = self.challenge(request_id, decision).await;
        let cred = self.sign(&ch, ORIGIN);
        let (st, v) = self.finish(request_id, decision, &cred).await;
        assert_eq!(st, 201, "{v}");
        v
    }

    /// The only open request in the inbox.
    pub async fn only_request(&self) -> String {
        let list = self.inbox().await;
        assert_eq!(list.len(), 1, "{list:?}");
        list[0]["request_id"].as_str().unwrap().to_owned()
    }
}

/// What a receiver got: the Authorization (or webhook signature) and the JSON body.
pub type Deliveries = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A local notification endpoint recording what it receives. While `refuse` is set it answers
/// 503 and records the attempt in `refused` instead.
pub struct Receiver {
    pub url: String,
    pub got: Deliveries,
    pub refused: Deliveries,
    pub refuse: Arc<std::sync::atomic::AtomicBool>,
    /// When each attempt (delivered or refused) arrived, with its `auth_req_id`.
    pub times: Arc<Mutex<Vec<(std::time::Instant, String)>>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let got: Deliveries = Arc::default();
        let refused: Deliveries = Arc::default();
        let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let times: Arc<Mutex<Vec<(std::time::Instant, String)>>> = Arc::default();
        let (g, no, r, t) = (got.clone(), refused.clone(), refuse.clone(), times.clone());
        let app = axum::Router::new().route(
            "/cb",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let (g, no, r, t) = (g.clone(), no.clone(), r.clone(), t.clone());
                    async move {
                        let at = std::time::Instant::now();
                        // Bearer token for ping/push; "<timestamp> <signature>" for the webhook.
                        let auth = headers
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_owned())
                            .or_else(|| {
                                let ts = headers.get("x-countersign-timestamp")?.to_str().ok()?;
                                let sig = headers.get("x-countersign-signature")?.to_str().ok()?;
                                Some(format!("{ts} {sig} {}", String::from_utf8_lossy(&body)))
                            });
                        let got: (Option<String>, Value) =
                            (auth, serde_json::from_slice(&body).unwrap());
                        let id = got.1["auth_req_id"].as_str().unwrap_or_default().to_owned();
                        t.lock().unwrap().push((at, id));
                        if r.load(std::sync::atomic::Ordering::SeqCst) {
                            no.lock().unwrap().push(got);
                            return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                        }
                        g.lock().unwrap().push(got);
                        axum::http::StatusCode::NO_CONTENT
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/cb", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            url,
            got,
            refused,
            refuse,
            times,
        }
    }

    /// Waits for the `n`-th delivery (1-based).
    pub async fn wait(&self, n: usize) -> (Option<String>, Value) {
        Self::wait_in(&self.got, n, "delivery").await
    }

    /// Waits for the `n`-th refused attempt (1-based).
    pub async fn wait_refused(&self, n: usize) -> (Option<String>, Value) {
        Self::wait_in(&self.refused, n, "refused attempt").await
    }

    async fn wait_in(list: &Deliveries, n: usize, what: &str) -> (Option<String>, Value) {
        for _ in 0..400 {
            if let Some(x) = list.lock().unwrap().get(n - 1).cloned() {
                return x;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no {what} {n} arrived");
    }
}

/// Decodes a JWT's claims after checking its EdDSA signature against the server's JWKS.
pub async fn verify_jwt(server: &Api, jwt: &str) -> (Value, Value) {
    let jwks = server.get_json("/jwks.json").await;
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&B64URL.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&B64URL.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("kid in JWKS");
    let x: [u8; 32] = B64URL
        .decode(key["x"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&x).unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&B64URL.decode(parts[2]).unwrap()).unwrap();
    use ed25519_dalek::Verifier;
    vk.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .expect("JWT signature verifies with the JWKS");
    (header, claims)
}

/// A minimal SMTP server (RFC 5321 happy path, no TLS) that records each message's DATA.
pub async fn fake_smtp() -> (String, Arc<Mutex<Vec<String>>>) {
    let (url, got, _) = fake_smtp_refusing(0).await;
    (url, got)
}

/// [`fake_smtp`] that answers the first `refuse` MAIL commands with a transient failure (451);
/// the time each MAIL command arrived (refused or not) is in the third list.
pub async fn fake_smtp_refusing(
    refuse: usize,
) -> (
    String,
    Arc<Mutex<Vec<String>>>,
    Arc<Mutex<Vec<std::time::Instant>>>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let mails: Arc<Mutex<Vec<std::time::Instant>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (g, m) = (got.clone(), mails.clone());
    tokio::spawn(async move {
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            let (g, m) = (g.clone(), m.clone());
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                w.write_all(b"220 fake ESMTP\r\n").await.unwrap();
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(d) = data.as_mut() {
                        if line == "." {
                            g.lock().unwrap().push(data.take().unwrap());
                            w.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            d.push_str(&line);
                            d.push('\n');
                        }
                        continue;
                    }
                    let cmd = line.to_ascii_uppercase();
                    let reply: &[u8] = if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                        b"250 fake\r\n"
                    } else if cmd.starts_with("MAIL") {
                        let mut m = m.lock().unwrap();
                        m.push(std::time::Instant::now());
                        if m.len() <= refuse {
                            b"451 4.3.0 try again later\r\n"
                        } else {
                            b"250 ok\r\n"
                        }
                    } else if cmd.starts_with("DATA") {
                        data = Some(String::new());
                        b"354 go on\r\n"
                    } else if cmd.starts_with("QUIT") {
                        w.write_all(b"221 bye\r\n").await.unwrap();
                        break;
                    } else {
                        b"250 ok\r\n"
                    };
                    w.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (format!("smtp://{addr}"), got, mails)
}

/// Puts decided request `r` (record key `key`) back in the state a crash between the log append
/// and the record update leaves: claimed by `instance` (empty on the embedded store) with the
/// claim of `assertion_key`. The batch that stores it.
pub fn rewound_to_claimed(
    r: &mut countersign_approvals::store::RequestRecord,
    key: &str,
    assertion_key: [u8; 32],
    instance: &str,
) -> countersign_approvals::store::Batch {
    use countersign_approvals::store::{ClaimRecord, RequestStatus};
    use countersign_approvals::CibaStore;
    let d = r.decision.take().unwrap();
    r.claim = Some(ClaimRecord {
        assertion_key: hex::encode(assertion_key),
        decision: countersign_verifier::Decision::parse(&r.statement.decision).unwrap(),
        enrolment_index: d.enrolment_index,
        statement_hash: d.statement_hash,
        approver_id: d.approver_id,
        instance: instance.to_owned(),
    });
    r.status = RequestStatus::Deciding;
    let mut b = countersign_approvals::store::Batch::new();
    b.put_json(key.to_owned(), &*r)
        .unwrap()
        .put(CibaStore::claim_key(key), Vec::new())
        .put(
            CibaStore::pending_key(&r.statement.approver_id, &r.request_id),
            Vec::new(),
        );
    b
}

/// The log's replay key of the assertion `credential` (its JSON as the pages send it).
pub fn assertion_key_of(credential: &Value) -> [u8; 32] {
    let b64 = |f: &Value| B64URL.decode(f.as_str().unwrap()).unwrap();
    countersign_log::log::assertion_key(
        &b64(&credential["rawId"]),
        &b64(&credential["response"]["clientDataJSON"]),
    )
}
