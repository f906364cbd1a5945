//! Property tests of the HTTP surface: random paths, queries, forms, headers and bodies sent
//! straight into the router (no socket, so thousands of cases run in seconds). Whatever arrives,
//! the server answers with a 4xx and a JSON error (or a success where the input happens to be
//! valid), never a 5xx or a panic, and a refused request appends nothing to the log and leaves
//! the approval request it named decidable.

use axum::body::Body;
use axum::http::{header, Request};
use base64::Engine;
use proptest::prelude::*;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::common::{Approver, Server, B64URL, ORIGIN};

/// The server under test, its runtime, and what the properties need.
struct Fixture {
    rt: tokio::runtime::Runtime,
    server: Server,
    app: axum::Router,
    approver: Approver,
    client_basic: String,
    submitter: String,
    request_id: String,
}

impl Fixture {
    fn new() -> Fixture {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (server, approver, client_basic, submitter, request_id) = rt.block_on(async {
            // The per-client request limits would answer most cases 429 before the parser saw
            // them (the flood tests cover the limits); here every case must reach the parser.
            let s = Server::start_with(|mut c| {
                c.client_requests_per_minute = 0;
                c.client_max_pending = 0;
                c
            })
            .await;
            let client = s.add_client("agent-fuzz", "poll", None).await;
            let approver = s.add_approver("apv_fuzz", 41).await;
            let (st, v) = s
                .admin_post("/v1/admin/submitters", json!({"name": "fuzzer"}))
                .await;
            assert_eq!(st, 201, "{v}");
            let submitter = v["token"].as_str().unwrap().to_owned();
            client.ask("apv_fuzz", &[]).await;
            let request_id = approver.only_request().await;
            let basic = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", client.id, client.secret))
            );
            (s, approver, basic, submitter, request_id)
        });
        let app = countersign::app(server.log_api.clone(), Some(server.approvals.clone()));
        Fixture {
            rt,
            server,
            app,
            approver,
            client_basic,
            submitter,
            request_id,
        }
    }

    /// Sends one request; its status and body.
    fn send(&self, req: Request<Body>) -> (u16, Vec<u8>) {
        self.rt.block_on(async {
            let resp = self.app.clone().oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
                .await
                .unwrap()
                .to_vec();
            (status, body)
        })
    }

    fn tree_size(&self) -> u64 {
        self.server.tree_size()
    }
}

/// A refusal: a 4xx whose body is a JSON object naming the error.
fn assert_refusal(status: u16, body: &[u8], what: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        (400..500).contains(&status),
        "{what}: status {status}: {}",
        String::from_utf8_lossy(body)
    );
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        TestCaseError::fail(format!(
            "{what}: error body is not JSON ({e}): {}",
            String::from_utf8_lossy(body)
        ))
    })?;
    prop_assert!(v["error"].is_string(), "{what}: no error code in {v}");
    Ok(())
}

/// Text that stresses parsers: ASCII, controls, percent signs, non-ASCII, long runs.
fn nasty_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,40}",
        "[\\x00-\\x1f%&=+;]{0,12}",
        "\\PC{0,24}",
        Just("x".repeat(5000)),
        Just("%zz%%".into()),
        Just("[{\"type\":\"payment_initiation\"}]".into()),
        Just("apv_fuzz".into()),
        Just("openid".into()),
    ]
}

const BC_PARAMS: [&str; 11] = [
    "scope",
    "login_hint",
    "login_hint_token",
    "id_token_hint",
    "binding_message",
    "authorization_details",
    "requested_expiry",
    "client_notification_token",
    "acr_values",
    "user_code",
    "client_id",
];

fn form(pairs: &[(usize, String)], names: &[&str]) -> String {
    pairs
        .iter()
        .map(|(i, v)| {
            let k = names[i % names.len()];
            format!("{k}={}", escape(v))
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn post(uri: &str, content_type: &str) -> axum::http::request::Builder {
    Request::post(uri).header(header::CONTENT_TYPE, content_type)
}

/// `application/x-www-form-urlencoded` escaping of every byte but the unreserved ones.
fn escape(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn the_http_surface_refuses_garbage_cleanly() {
    let f = Fixture::new();
    let size = f.tree_size();
    let config = ProptestConfig {
        cases: 192,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config.clone());

    // Tile paths and proof queries: any path under the read API.
    runner
        .run(
            &(
                prop_oneof![
                    "[0-9a-z./p]{0,40}",
                    "(entries/)?[0-9]{1,4}(\\.p/[0-9]{1,4})?",
                    "[0-9]/x[0-9]{3}/[0-9]{3}",
                    "%[0-9a-fA-F]{2}[ -~]{0,10}",
                ],
                prop_oneof![
                    "(index|tree_size|leaf_hash|first|second)=[0-9a-f-]{0,70}",
                    "[ -~]{0,60}",
                ],
            ),
            |(path, query)| {
                for uri in [
                    format!("/tile/{path}"),
                    format!("/v1/log/proof/inclusion?{query}"),
                    format!("/v1/log/proof/consistency?{query}"),
                    format!("/v1/log/entries/{path}"),
                ] {
                    // Not every string is a valid URI; those never reach the server.
                    let Ok(req) = Request::get(uri.as_str()).body(Body::empty()) else {
                        continue;
                    };
                    let (st, body) = f.send(req);
                    if st != 200 {
                        assert_refusal(st, &body, &uri)?;
                    }
                }
                Ok(())
            },
        )
        .unwrap();

    // /bc-authorize, as the authenticated client: a valid request with some parameters
    // replaced, repeated or added with hostile values, or random forms from its parameters.
    let mut runner = proptest::test_runner::TestRunner::new(config.clone());
    let accepted = std::cell::Cell::new(0u32);
    runner
        .run(
            &(
                any::<bool>(),
                prop::collection::vec((0usize..64, nasty_text()), 0..5),
            ),
            |(from_valid, changes)| {
                let mut pairs: Vec<(usize, String)> = Vec::new();
                if from_valid {
                    pairs.push((0, "openid payments".into()));
                    pairs.push((1, "apv_fuzz".into()));
                    pairs.push((4, "Pay 1.00 EUR to ACME".into()));
                    pairs.push((
                        5,
                        r#"[{"type":"payment_initiation","instructedAmount":{"currency":"EUR","amount":"1.00"}}]"#.into(),
                    ));
                    for (i, v) in &changes {
                        match pairs
                            .iter_mut()
                            .find(|(k, _)| k % BC_PARAMS.len() == i % BC_PARAMS.len())
                        {
                            Some(p) if i % 2 == 0 => p.1 = v.clone(),
                            _ => pairs.push((*i, v.clone())),
                        }
                    }
                } else {
                    pairs = changes;
                }
                let req = post("/bc-authorize", "application/x-www-form-urlencoded")
                    .header(header::AUTHORIZATION, &f.client_basic)
                    .body(Body::from(form(&pairs, &BC_PARAMS)))
                    .unwrap();
                let (st, body) = f.send(req);
                if st == 200 {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    prop_assert!(v["auth_req_id"].as_str().is_some_and(|s| s.len() >= 22));
                    accepted.set(accepted.get() + 1);
                } else {
                    assert_refusal(st, &body, "bc-authorize")?;
                    prop_assert!([400, 401, 403].contains(&st), "status {st}");
                }
                Ok(())
            },
        )
        .unwrap();
    assert!(
        accepted.get() > 0,
        "no generated request was valid: the cases are too shallow"
    );

    // /token: random forms and random Authorization headers.
    let mut runner = proptest::test_runner::TestRunner::new(config.clone());
    runner
        .run(
            &(
                prop::collection::vec((0usize..64, nasty_text()), 0..5),
                prop_oneof![
                    Just(f.client_basic.clone()),
                    "Basic [A-Za-z0-9+/=]{0,40}",
                    "Bearer [ -~]{0,30}",
                    "[ -~]{0,30}",
                ],
            ),
            |(pairs, auth)| {
                let names = ["grant_type", "auth_req_id", "client_id", "client_secret"];
                let Ok(req) = post("/token", "application/x-www-form-urlencoded")
                    .header(header::AUTHORIZATION, auth.as_str())
                    .body(Body::from(form(&pairs, &names)))
                else {
                    return Ok(());
                };
                let (st, body) = f.send(req);
                assert_refusal(st, &body, "token")?;
                Ok(())
            },
        )
        .unwrap();

    // The write API: random bodies as an authenticated submitter and as the admin.
    let mut runner = proptest::test_runner::TestRunner::new(config.clone());
    runner
        .run(
            &prop_oneof![
                prop::collection::vec(any::<u8>(), 0..400),
                "\\{(\"[a-z_]{1,12}\":(\"[0-9a-f]{0,80}\"|[0-9]{1,5}|null|\\{\\}),?){0,8}\\}"
                    .prop_map(String::into_bytes),
            ],
            |body| {
                for (uri, token) in [
                    ("/v1/log/decisions", f.submitter.as_str()),
                    ("/v1/log/decisions/batch", f.submitter.as_str()),
                    ("/v1/log/enrolments", f.server.admin.as_str()),
                ] {
                    let req = post(uri, "application/json")
                        .header(header::AUTHORIZATION, format!("Bearer {token}"))
                        .body(Body::from(body.clone()))
                        .unwrap();
                    let (st, resp) = f.send(req);
                    assert_refusal(st, &resp, uri)?;
                }
                // The same body as every decision of a batch: refused whole, or each refused
                // on its own with the single endpoint's error.
                if let Ok(item) = serde_json::from_slice::<serde_json::Value>(&body) {
                    let batch = serde_json::json!({ "decisions": [item.clone(), item] });
                    let req = post("/v1/log/decisions/batch", "application/json")
                        .header(header::AUTHORIZATION, format!("Bearer {}", f.submitter))
                        .body(Body::from(batch.to_string()))
                        .unwrap();
                    let (st, resp) = f.send(req);
                    if st == 200 {
                        let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
                        prop_assert_eq!(&v["logged"], &serde_json::json!(0), "{}", v);
                        for r in v["results"].as_array().unwrap() {
                            let status = r["status"].as_u64().unwrap_or(0);
                            prop_assert!((400..500).contains(&status), "{}", r);
                            prop_assert!(r["error"].is_string(), "{}", r);
                        }
                    } else {
                        assert_refusal(st, &resp, "/v1/log/decisions/batch")?;
                    }
                }
                prop_assert_eq!(f.tree_size(), size, "a refused write appended");
                Ok(())
            },
        )
        .unwrap();

    // The write API past parsing: a valid signed decision of the enrolled approver with one
    // field changed but still well-formed (a bit of a hex field flipped, a number moved, another
    // approver), so the checks after deserialisation run and must refuse it with their own
    // error, not a parse error. The unchanged decision is accepted (the control). (The
    // `decision` label is not among them: the log sees only the statement's hash, and the
    // verifier checks the label against the statement.)
    let enrolment = f.approver.enrolment_index;
    let fields = [
        "statement_hash",
        "nonce",
        "credential_id",
        "authenticator_data",
        "client_data_json",
        "signature",
    ];
    let n = std::cell::Cell::new(0u64);
    let decision = || {
        n.set(n.get() + 1);
        let mut pk = f.approver.passkey.lock().unwrap();
        crate::log_common::signed_decision(&mut pk, "apv_fuzz", enrolment, n.get(), |_| {})
    };
    let post_decision = |body: &Value| {
        let req = post("/v1/log/decisions", "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {}", f.submitter))
            .body(Body::from(body.to_string()))
            .unwrap();
        f.send(req)
    };
    let codes = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let mut runner = proptest::test_runner::TestRunner::new(config.clone());
    runner
        .run(
            &(0usize..fields.len() + 2, any::<usize>(), 0u8..8, 1u64..5),
            |(field, at, bit, delta)| {
                let mut body = decision();
                let what = if field < fields.len() {
                    let name = fields[field];
                    let mut b = hex::decode(body[name].as_str().unwrap()).unwrap();
                    let at = at % b.len();
                    b[at] ^= 1 << bit;
                    body[name] = json!(hex::encode(&b));
                    format!("{name} byte {at} bit {bit}")
                } else if field == fields.len() {
                    body["enrolment_index"] = json!(enrolment + delta);
                    format!("enrolment_index + {delta}")
                } else {
                    body["approver_id"] = json!(format!("apv_other{delta}"));
                    "approver_id".to_owned()
                };
                let (st, resp) = post_decision(&body);
                assert_refusal(st, &resp, &what)?;
                let v: Value = serde_json::from_slice(&resp).unwrap();
                let d = v["error_description"].as_str().unwrap_or("");
                prop_assert!(
                    !d.starts_with("invalid JSON body"),
                    "{}: refused while parsing, before the checks: {}",
                    what,
                    v
                );
                codes
                    .borrow_mut()
                    .insert(v["error"].as_str().unwrap().to_owned());
                prop_assert_eq!(
                    f.tree_size(),
                    size,
                    "a changed decision was logged: {}",
                    what
                );
                Ok(())
            },
        )
        .unwrap();
    // The mutations reached several different checks.
    let codes = codes.into_inner();
    assert!(codes.len() >= 3, "{codes:?}");
    let (st, resp) = post_decision(&decision());
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&resp));
    let size = size + 1;
    assert_eq!(f.tree_size(), size);

    // decide/finish on a real open request, from the signed-in approver: the passkey's real
    // assertion over the challenge with one signed byte changed or cut off, or random JSON.
    let finish = format!("/v1/requests/{}/decide/finish", f.request_id);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 96,
        ..config
    });
    runner
        .run(
            &prop_oneof![
                (0usize..3, any::<usize>(), 0u8..8, any::<bool>()).prop_map(Some),
                Just(None),
            ],
            |tamper| {
                let ch =
                    f.rt.block_on(f.approver.challenge(&f.request_id, "approve"));
                prop_assert_eq!(ch.len(), 64);
                let mut cred = f.approver.sign(&ch, ORIGIN);
                match tamper {
                    Some((field, at, bit, cut)) => {
                        let name = ["clientDataJSON", "authenticatorData", "signature"][field];
                        let mut b = B64URL
                            .decode(cred["response"][name].as_str().unwrap())
                            .unwrap();
                        let at = at % b.len();
                        if cut {
                            b.truncate(at);
                        } else {
                            b[at] ^= 1 << bit;
                        }
                        cred["response"][name] = json!(B64URL.encode(&b));
                    }
                    None => cred = json!({"id": cred["id"], "response": {"signature": "AA"}}),
                }
                let req = post(&finish, "application/json")
                    .header(header::COOKIE, &f.approver.cookie)
                    .header("x-csrf-token", &f.approver.csrf)
                    .header(header::ORIGIN, ORIGIN)
                    .body(Body::from(
                        json!({"decision": "approve", "credential": cred}).to_string(),
                    ))
                    .unwrap();
                let (st, body) = f.send(req);
                assert_refusal(st, &body, "decide/finish")?;
                prop_assert_eq!(f.tree_size(), size, "a refused decision was logged");
                Ok(())
            },
        )
        .unwrap();

    // After all that, the request is still open and a real decision goes through.
    let receipt = f.rt.block_on(f.approver.decide(&f.request_id, "deny"));
    assert_eq!(receipt["decision"], "deny");
    assert_eq!(f.tree_size(), size + 1);
}
