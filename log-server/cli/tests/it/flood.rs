//! Abusive load (issue 13): floods of wrong client secrets at `/token`, of sign-in starts, and
//! of one client's `/bc-authorize`, all at once from this process, while a legitimate client
//! asks, its approver signs in and approves, and the client collects its token. Each of their
//! steps must be answered within [`TARGET`]; the refusals must be counted in `/metrics`.
//! Also: the per-client allow-list of approvers, the pending cap, slow bodies and headers, and
//! client assertion ids remembered across a restart.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{assert_refused, Client, Server};

/// The latency target of a legitimate step under flood (a debug build on two shared cores).
const TARGET: Duration = Duration::from_secs(2);

/// Counter `name{reason="reason"}` in the metrics text (0 when absent).
fn counted(metrics: &str, name: &str, reason: &str) -> u64 {
    let prefix = format!("{name}{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

async fn timed<T>(
    what: &str,
    slowest: &mut Duration,
    f: impl std::future::Future<Output = T>,
) -> T {
    let t = Instant::now();
    let out = f.await;
    let took = t.elapsed();
    eprintln!("under flood: {what} took {took:?}");
    assert!(
        took < TARGET,
        "{what} took {took:?} under flood (target {TARGET:?})"
    );
    *slowest = (*slowest).max(took);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn floods_are_refused_and_counted_while_a_legitimate_client_and_approver_are_served() {
    let s = Server::start_with(|mut c| {
        c.secret_guesses_per_minute = 20;
        c.client_requests_per_minute = 30;
        c.client_max_pending = 10;
        c
    })
    .await;
    let mut alice = s.add_approver("alice", 1).await;
    let agent = s.add_client("agent", "poll", None).await;
    let flooder = s.add_client("flooder", "poll", None).await;
    // The real client has been running: its secret passed argon2 once and is cached.
    let (st, v) = agent.token("no-such-request").await;
    assert_refused("warm-up", &(st, v), 400, "invalid_grant", &[]);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut floods = Vec::new();
    for i in 0..4 {
        // Wrong secrets for the real client's id.
        let (stop1, sent1) = (stop.clone(), sent.clone());
        let wrong = Client {
            secret: format!("guess-{i}"),
            ..agent.clone()
        };
        floods.push(tokio::spawn(async move {
            let (stop, sent) = (stop1, sent1);
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let w = Client {
                    secret: format!("{}-{n}", wrong.secret),
                    ..wrong.clone()
                };
                let (st, _) = w.token("x").await;
                assert!(matches!(st, 401 | 429 | 503), "wrong secret answered {st}");
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
        // Sign-in starts.
        let (stop2, sent2, url, http) = (stop.clone(), sent.clone(), s.url.clone(), s.http.clone());
        floods.push(tokio::spawn(async move {
            let (stop, sent) = (stop2, sent2);
            while !stop.load(Ordering::Relaxed) {
                let r = http
                    .post(format!("{url}/v1/session/start"))
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
        // One client's requests to the same approver.
        let (stop3, sent3, flooder) = (stop.clone(), sent.clone(), flooder.clone());
        floods.push(tokio::spawn(async move {
            let (stop, sent) = (stop3, sent3);
            while !stop.load(Ordering::Relaxed) {
                let (st, v) = flooder.bc_authorize("alice", &[]).await;
                assert!(matches!(st, 200 | 429), "{st} {v}");
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Let the floods get going.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut slowest = Duration::ZERO;
    let auth_req_id = timed("the real client's request", &mut slowest, async {
        let (st, v) = agent
            .bc_authorize("alice", &[("binding_message", "the real one")])
            .await;
        assert_eq!(st, 200, "{v}");
        v["auth_req_id"].as_str().unwrap().to_owned()
    })
    .await;
    timed("the approver's sign-in", &mut slowest, alice.sign_in()).await;
    let request_id = timed("the approver's inbox", &mut slowest, async {
        let list = alice.inbox().await;
        // Newest first: the real request is not hidden behind the flood's.
        assert_eq!(list[0]["binding_message"], "the real one", "{list:?}");
        list[0]["request_id"].as_str().unwrap().to_owned()
    })
    .await;
    timed(
        "the approval",
        &mut slowest,
        alice.decide(&request_id, "approve"),
    )
    .await;
    let token = timed("the token", &mut slowest, agent.token(&auth_req_id)).await;
    assert_eq!(token.0, 200, "{}", token.1);

    stop.store(true, Ordering::Relaxed);
    for f in floods {
        f.await.unwrap();
    }
    let metrics = crate::web::get_text(&s.http, &format!("{}/metrics", s.url)).await;
    let name = "countersign_ciba_limited_total";
    let guesses = counted(&metrics, name, "secret_guesses_source")
        + counted(&metrics, name, "secret_guesses_client");
    let rate = counted(&metrics, name, "client_request_rate");
    let pending = counted(&metrics, name, "client_pending");
    eprintln!(
        "flood: {} requests sent; refused: {guesses} secret guesses, {rate} by request rate, \
         {pending} by the pending cap; slowest legitimate step {slowest:?}",
        sent.load(Ordering::Relaxed)
    );
    assert!(guesses > 0, "{metrics}");
    assert!(rate + pending > 0, "{metrics}");
    // The flooding client got at most its cap of open requests in.
    let (open, _) = s
        .approvals
        .store
        .open_requests_of_client("flooder", countersign_approvals::util::now_secs());
    assert!(open <= 10 + 4, "{open} open requests of the flooder");
}

#[tokio::test]
async fn a_client_with_an_allow_list_asks_only_those_approvers() {
    let s = Server::start().await;
    let _alice = s.add_approver("alice", 1).await;
    let _bob = s.add_approver("bob", 2).await;
    let (st, v) = s
        .admin_post(
            "/v1/admin/clients",
            json!({"client_id": "scoped", "secret": "secret-of-scoped", "mode": "poll",
                   "approvers": ["alice"]}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["approvers"], json!(["alice"]));
    let scoped = Client {
        id: "scoped".into(),
        secret: "secret-of-scoped".into(),
        url: s.url.clone(),
        http: s.http.clone(),
    };
    scoped.ask("alice", &[]).await;
    // Bob exists, but is answered exactly as an approver who does not.
    let bob = scoped.bc_authorize("bob", &[]).await;
    let nobody = scoped.bc_authorize("nobody", &[]).await;
    assert_refused("not allowed", &bob, 400, "unknown_user_id", &[]);
    assert_eq!(bob, nobody);
    let by_mail = scoped
        .bc_authorize("x", &[("login_hint", "bob@example.com")])
        .await;
    assert_eq!(by_mail, nobody);
    // An empty or malformed list is refused.
    for bad in [json!([]), json!(["bad id with spaces"])] {
        let (st, v) = s
            .admin_post(
                "/v1/admin/clients",
                json!({"client_id": "scoped2", "secret": "s-s-s-s-s", "approvers": bad}),
            )
            .await;
        assert_eq!(st, 400, "{v}");
    }
}

#[tokio::test]
async fn a_clients_open_requests_are_capped_and_a_decision_frees_a_place() {
    let s = Server::start_with(|mut c| {
        c.client_max_pending = 2;
        c
    })
    .await;
    let mut alice = s.add_approver("alice", 1).await;
    let agent = s.add_client("agent", "poll", None).await;
    agent.ask("alice", &[("binding_message", "one")]).await;
    agent.ask("alice", &[("binding_message", "two")]).await;
    let third = agent.bc_authorize("alice", &[]).await;
    assert_refused(
        "over the cap",
        &third,
        429,
        "too_many_requests",
        &["open requests"],
    );
    // A decision frees a place.
    alice.sign_in().await;
    let list = alice.inbox().await;
    assert_eq!(list[0]["binding_message"], "two", "newest first: {list:?}");
    let id = list[1]["request_id"].as_str().unwrap().to_owned();
    alice.decide(&id, "deny").await;
    agent.ask("alice", &[]).await;
    // Another client is not affected by this one's cap.
    let other = s.add_client("other", "poll", None).await;
    other.ask("alice", &[]).await;
}

#[tokio::test]
async fn a_429_carries_retry_after() {
    let s = Server::start_with(|mut c| {
        c.client_requests_per_minute = 1;
        c
    })
    .await;
    let _alice = s.add_approver("alice", 1).await;
    let agent = s.add_client("agent", "poll", None).await;
    agent.ask("alice", &[]).await;
    let r = s
        .http
        .post(format!("{}/bc-authorize", s.url))
        .basic_auth(&agent.id, Some(&agent.secret))
        .form(&crate::common::ask_params("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "too_many_requests");
}

/// Writes `head` on a new connection, then nothing more; the server must close the connection
/// (or answer 408) within `within`.
async fn stalled(url: &str, head: &str, within: Duration) -> String {
    let addr = url.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(within, tcp.read_to_end(&mut got))
        .await
        .expect("the server kept a stalled connection open")
        .ok();
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn slow_headers_and_slow_bodies_are_cut_off() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let started = {
        let cfg = crate::log_common::config(dir.path().join("data"));
        tokio::task::spawn_blocking(move || countersign::Server::start(cfg, None))
            .await
            .unwrap()
            .unwrap()
    };
    let limits = countersign_log::ServeLimits {
        max_connections: 2,
        header_timeout: Duration::from_millis(500),
        body_timeout: Duration::from_millis(500),
        ..countersign_log::ServeLimits::default()
    };
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(started.serve_with(listener, limits, async {
        let _ = rx.await;
    }));
    // Half a request line: closed after the header timeout.
    let t = Instant::now();
    stalled(&url, "GET /checkpoint HT", Duration::from_secs(5)).await;
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    // Headers promising a body that never comes: 408.
    let admin = std::fs::read_to_string(dir.path().join("data").join("admin.token")).unwrap();
    let head = format!(
        "POST /v1/log/enrolments HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{",
        admin.trim()
    );
    let answer = stalled(&url, &head, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // Two stalled connections hold both places; a third waits until one is cut off, then is
    // served.
    let hold: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { stalled(&url, "GET /", Duration::from_secs(5)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    let r = reqwest::get(format!("{url}/checkpoint")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "served at once: {:?}",
        t.elapsed()
    );
    for h in hold {
        h.await.unwrap();
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_client_assertion_is_refused_again_after_the_server_is_killed() {
    use crate::process::{free_port, Process};
    let dir = tempfile::tempdir().unwrap();
    let mut server = Process::spawn(dir.path(), free_port(), &crate::flow_load::flow_args(None));
    server.wait_ready(&reqwest::Client::new()).await;
    let api = crate::common::Api::of(&server);
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1",
        "x": crate::common::B64URL.encode(key.verifying_key().as_bytes())}]});
    let (st, v) = api
        .admin_post(
            "/v1/admin/clients",
            json!({"client_id": "agent-jwt", "auth_method": "private_key_jwt", "jwks": jwks}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let token = |assertion: String| {
        let api = &api;
        async move {
            let r = api
                .http
                .post(format!("{}/token", api.url))
                .form(&[
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.as_str()),
                    ("grant_type", "urn:openid:params:grant-type:ciba"),
                    ("auth_req_id", "no-such-request"),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    // The audience is the server's issuer, as its discovery document names it.
    let issuer = api
        .http
        .get(format!("{}/.well-known/openid-configuration", api.url))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["issuer"]
        .as_str()
        .unwrap()
        .to_owned();
    let assertion = crate::flows::client_assertion(&key, "agent-jwt", &issuer, 120, "jti-1");
    // Authenticated (the request itself is unknown).
    let first = token(assertion.clone()).await;
    assert_refused("first use", &first, 400, "invalid_grant", &[]);
    let replay = token(assertion.clone()).await;
    assert_refused("replay", &replay, 401, "invalid_client", &[]);
    server.kill();
    server.restart();
    server.wait_ready(&reqwest::Client::new()).await;
    let replay = token(assertion).await;
    assert_refused("replay after a kill", &replay, 401, "invalid_client", &[]);
    let fresh = crate::flows::client_assertion(&key, "agent-jwt", &issuer, 120, "jti-2");
    let fresh = token(fresh).await;
    assert_refused("a new assertion", &fresh, 400, "invalid_grant", &[]);
}
