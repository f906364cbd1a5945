//! The composition: with the front end off, its routes are not routed at all (the log's own
//! JSON 404), and the log alone still serves every route of its own.

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use countersign_log::{Config, RpPolicy, SequencerConfig};
use serde_json::Value;
use tower::ServiceExt;

/// Paths of the front end, one per router it merges (CIBA, admin API, ceremonies, pages,
/// evidence), with the method each is served under.
const FRONT_END: [(&str, &str); 8] = [
    ("GET", "/.well-known/openid-configuration"),
    ("GET", "/jwks.json"),
    ("POST", "/bc-authorize"),
    ("POST", "/token"),
    ("GET", "/v1/admin/clients"),
    ("POST", "/v1/session/start"),
    ("GET", "/approve"),
    ("GET", "/v1/evidence/abc"),
];

fn config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_owned(),
        origin: Some("layering.example/log".into()),
        policy: RpPolicy {
            rp_id: "approve.test".into(),
            allowed_origins: vec!["https://approve.test".into()],
            require_user_verification: true,
        },
        sequencer: SequencerConfig {
            checkpoint_interval: Duration::from_millis(500),
            ..SequencerConfig::default()
        },
        max_body_bytes: countersign_log::DEFAULT_MAX_BODY_BYTES,
        column_families: Vec::new(),
    }
}

async fn answer(app: &axum::Router, method: &str, path: &str) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn without_the_front_end_its_routes_do_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let p = path.clone();
    let off = tokio::task::spawn_blocking(move || countersign::Server::start(config(&p), None))
        .await
        .unwrap()
        .unwrap();
    assert!(off.approvals.is_none());
    let app = off.app();
    for (method, p) in FRONT_END {
        let (status, v) = answer(&app, method, p).await;
        assert_eq!(status, 404, "{method} {p}: {v}");
        assert_eq!(v["error"], "not_found", "{method} {p}: {v}");
        assert_eq!(v["error_description"], "no such endpoint", "{p}");
    }
    // The log's own routes are all there.
    let (status, _) = answer(&app, "GET", "/healthz").await;
    assert_eq!(status, 200);
    let (status, v) = answer(&app, "GET", "/v1/log/vkey").await;
    assert_eq!(
        (status, v["origin"].as_str()),
        (200, Some("layering.example/log"))
    );
    off.api.log.shutdown().await;
    // Everything holding the store goes, so the next start can open it.
    drop((app, off));

    // The same data directory with the front end on: every one of those paths is routed.
    let p = path.clone();
    let on = tokio::task::spawn_blocking(move || {
        countersign::Server::start(
            config(&p),
            Some(countersign_approvals::CibaConfig::new(
                "https://approve.test",
            )),
        )
    })
    .await
    .unwrap()
    .unwrap();
    let app = on.app();
    for (method, p) in FRONT_END {
        let (status, v) = answer(&app, method, p).await;
        assert!(
            v["error_description"] != "no such endpoint",
            "{method} {p} is not routed with the front end on: {status} {v}"
        );
    }
    let (status, metrics) = {
        let req = Request::get("/metrics").body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    };
    assert_eq!(status, 200);
    // The front end's metrics come after the log's, in one exposition.
    let log_at = metrics.find("countersign_tree_size").unwrap();
    let fe_at = metrics.find("countersign_ciba_requests_total").unwrap();
    assert!(log_at < fe_at && metrics.trim_end().ends_with("# EOF"));
    on.api.log.shutdown().await;
}

#[tokio::test]
async fn the_binary_serves_the_log_alone_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::process::free_port();
    let mut p = crate::process::Process::spawn(dir.path(), port, &["--log-only"]);
    let client = reqwest::Client::new();
    p.wait_ready(&client).await;
    for (method, path) in FRONT_END {
        let r = client
            .request(method.parse().unwrap(), format!("{}{path}", p.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method} {path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error_description"], "no such endpoint", "{path}");
    }
    let r = client
        .get(format!("{}/checkpoint", p.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(p.terminate().success());
}
