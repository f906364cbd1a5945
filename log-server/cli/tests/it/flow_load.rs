//! Approval flows as load on the real binary, for the tests that kill it, stop it, cut its
//! power or restore its backup: the server they run on, each step's request, and one
//! approver's loop of flows.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use countersign_verifier::VerifierKey;
use reqwest::Response;
use serde_json::{json, Value};

use crate::common::{Api, Approver, Client, B64URL, ORIGIN, RP_ID};
use crate::process::{free_port, Process};

/// The flags of a [`flow_server`], with `--origin` when given.
pub(crate) fn flow_args(origin: Option<&str>) -> Vec<&str> {
    let mut args = Vec::new();
    if let Some(origin) = origin {
        args.extend(["--origin", origin]);
    }
    args.extend([
        "--rp-id",
        RP_ID,
        "--allowed-origin",
        ORIGIN,
        "--poll-interval",
        "1",
        // Load, not abuse: one client asks as fast as its approvers decide.
        "--client-requests-per-minute",
        "0",
    ]);
    args
}

/// A real server for approval flows (CIBA poll, 1 s interval): starts the binary on `dir` with
/// [`flow_args`], waits until it is ready, and adds the poll client `client_id` and each
/// `(approver_id, passkey seed)`. Returns the server, its API and log key, the client, and each
/// approver with its id.
pub(crate) async fn flow_server(
    dir: &Path,
    origin: Option<&str>,
    client_id: &str,
    approvers: impl IntoIterator<Item = (String, u64)>,
) -> (Process, Api, VerifierKey, Client, Vec<(Approver, String)>) {
    let server = Process::spawn(dir, free_port(), &flow_args(origin));
    server.wait_ready(&reqwest::Client::new()).await;
    let api = Api::of(&server);
    let vkey = VerifierKey::parse(&server.read("log.vkey")).unwrap();
    let client = api.add_client(client_id, "poll", None).await;
    let mut added = Vec::new();
    for (id, seed) in approvers {
        added.push((api.add_approver(&id, seed).await, id));
    }
    (server, api, vkey, client, added)
}

/// [`approve_until_stopped`] for each approver, in `round`.
pub(crate) fn approve_all_until_stopped(
    client: &Client,
    approvers: &[(Approver, String)],
    round: usize,
    stop: &Arc<AtomicBool>,
    asked: &Arc<Mutex<Vec<String>>>,
    acked: &Arc<Mutex<Vec<Acked>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    approvers
        .iter()
        .map(|(a, id)| {
            tokio::spawn(approve_until_stopped(
                client.clone(),
                a.clone(),
                (id.clone(), round),
                stop.clone(),
                asked.clone(),
                acked.clone(),
            ))
        })
        .collect()
}

/// `POST /bc-authorize` of `client` for `approver_id`, with this binding message and a
/// payment's authorization details.
pub(crate) async fn bc_authorize(
    client: &Client,
    approver_id: &str,
    msg: &str,
) -> reqwest::Result<Response> {
    client
        .http
        .post(format!("{}/bc-authorize", client.url))
        .basic_auth(&client.id, Some(&client.secret))
        .form(&[
            ("scope", "openid"),
            ("login_hint", approver_id),
            ("binding_message", msg),
            (
                "authorization_details",
                r#"[{"type":"payment_initiation"}]"#,
            ),
        ])
        .send()
        .await
}

/// `GET /v1/inbox` in the approver's session.
pub(crate) async fn inbox(approver: &Approver) -> reqwest::Result<Response> {
    approver
        .http
        .get(format!("{}/v1/inbox", approver.url))
        .header("cookie", &approver.cookie)
        .send()
        .await
}

/// The id of the request in `inbox` whose binding message is `msg`.
pub(crate) fn request_id(inbox: &Value, msg: &str) -> Option<String> {
    inbox["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["binding_message"] == msg)
        .map(|r| r["request_id"].as_str().unwrap().to_owned())
}

/// `POST path` in the approver's session (cookie and CSRF token).
async fn session_post(approver: &Approver, path: &str, body: Value) -> reqwest::Result<Response> {
    approver
        .http
        .post(format!("{}{path}", approver.url))
        .header("cookie", &approver.cookie)
        .header("x-csrf-token", &approver.csrf)
        .json(&body)
        .send()
        .await
}

/// `POST /v1/requests/{rid}/decide/start`.
pub(crate) async fn decide_start(
    approver: &Approver,
    rid: &str,
    decision: &str,
) -> reqwest::Result<Response> {
    let path = format!("/v1/requests/{rid}/decide/start");
    session_post(approver, &path, json!({"decision": decision})).await
}

/// `POST /v1/requests/{rid}/decide/finish` with the passkey's assertion of the challenge in
/// `start` (the answer of [`decide_start`]).
pub(crate) async fn decide_finish(
    approver: &Approver,
    rid: &str,
    decision: &str,
    start: &Value,
) -> reqwest::Result<Response> {
    let ch = B64URL
        .decode(start["publicKey"]["challenge"].as_str().unwrap())
        .unwrap();
    let cred = approver.sign(&ch, ORIGIN);
    let path = format!("/v1/requests/{rid}/decide/finish");
    let body = json!({"decision": decision, "credential": cred});
    session_post(approver, &path, body).await
}

/// `POST /token` of `client` for the CIBA grant of `auth_req_id`.
pub(crate) async fn token(client: &Client, auth_req_id: &str) -> reqwest::Result<Response> {
    client
        .http
        .post(format!("{}/token", client.url))
        .basic_auth(&client.id, Some(&client.secret))
        .form(&[
            ("grant_type", "urn:openid:params:grant-type:ciba"),
            ("auth_req_id", auth_req_id),
        ])
        .send()
        .await
}

/// One acknowledged decision: the approver got its receipt.
#[derive(Clone, Debug)]
pub(crate) struct Acked {
    pub(crate) auth_req_id: String,
    pub(crate) decision: &'static str,
    pub(crate) log_index: u64,
    pub(crate) leaf_hash: String,
}

/// A JSON answer, or `None` when the server could not be reached (it is being killed).
async fn answer(r: reqwest::Result<reqwest::Response>) -> Option<(u16, Value)> {
    let r = r.ok()?;
    let st = r.status().as_u16();
    Some((st, r.json().await.unwrap_or(Value::Null)))
}

/// One approver's loop until `stop`: ask, find the request in the inbox, decide it (every third
/// one denied); every request asked and every receipt received is recorded.
pub(crate) async fn approve_until_stopped(
    client: Client,
    approver: Approver,
    (approver_id, round): (String, usize),
    stop: Arc<AtomicBool>,
    asked: Arc<Mutex<Vec<String>>>,
    acked: Arc<Mutex<Vec<Acked>>>,
) {
    let mut n = 0u32;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        // Unique across rounds: a request a kill cut off stays open with its message.
        let msg = format!("{approver_id} round {round} #{n}");
        let decision = if n % 3 == 0 { "deny" } else { "approve" };
        let asked_now = answer(bc_authorize(&client, &approver_id, &msg).await).await;
        let Some((200, v)) = asked_now else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let auth_req_id = v["auth_req_id"].as_str().unwrap().to_owned();
        asked.lock().unwrap().push(auth_req_id.clone());
        let inbox = answer(inbox(&approver).await).await;
        let Some((200, inbox)) = inbox else { continue };
        let Some(rid) = request_id(&inbox, &msg) else {
            continue;
        };
        let started = answer(decide_start(&approver, &rid, decision).await).await;
        let Some((200, start)) = started else {
            continue;
        };
        let finished = answer(decide_finish(&approver, &rid, decision, &start).await).await;
        if let Some((201, receipt)) = finished {
            acked.lock().unwrap().push(Acked {
                auth_req_id,
                decision,
                log_index: receipt["log_index"].as_u64().unwrap(),
                leaf_hash: receipt["leaf_hash"].as_str().unwrap().to_owned(),
            });
        }
    }
}
