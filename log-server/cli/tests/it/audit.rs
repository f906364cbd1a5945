//! The audit trail: evidence records that outlive the request's records (until the evidence
//! retention), the audit feed (`GET /v1/audit/events`: order, fields, paging, cursors, restarts),
//! the decided statements (`GET /v1/audit/statements`), and auditor tokens (what they may and may
//! not call).

use std::time::Duration;

use countersign_approvals::cleanup::sweep;
use countersign_verifier::export::{log_event_row, rfc3339_ms, EventRow};
use countersign_verifier::{BundlePolicy, EvidenceBundle};
use serde_json::{json, Value};

use crate::common::*;
use crate::flow_load::flow_server;

/// `GET url` with `token` as bearer token (none: no Authorization): status and JSON body.
async fn get_with(http: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = http.get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

/// Makes an auditor token through the admin API.
async fn add_auditor(api: &Api, name: &str) -> (String, String) {
    let (st, v) = api
        .admin_post("/v1/admin/auditors", json!({ "name": name }))
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["name"], name);
    let token = v["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64, "{v}");
    (token, v["fingerprint"].as_str().unwrap().to_owned())
}

/// Every event of the feed, paged `limit` at a time from the start with `next`; and the last
/// cursor.
async fn whole_feed(api: &Api, token: &str, limit: usize) -> (Vec<EventRow>, String) {
    let mut rows = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{}/v1/audit/events?limit={limit}", api.url);
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let (st, v) = get_with(&api.http, &url, Some(token)).await;
        assert_eq!(st, 200, "{v}");
        let page: Vec<EventRow> = serde_json::from_value(v["events"].clone()).unwrap();
        let next = v["next"].as_str().unwrap().to_owned();
        assert!(page.len() <= limit);
        if page.is_empty() {
            // Nothing new: the cursor stays where it was.
            if let Some(a) = &after {
                assert_eq!(&next, a);
            }
            return (rows, next);
        }
        assert_ne!(after.as_ref(), Some(&next), "a page moves the cursor");
        rows.extend(page);
        after = Some(next);
    }
}

fn types(rows: &[EventRow]) -> Vec<&'static str> {
    rows.iter().map(|r| r.event_type.as_str()).collect()
}

#[tokio::test]
async fn evidence_outlives_the_request_until_the_evidence_retention() {
    let s = Server::start_with(|mut c| {
        c.request_retention_secs = 100;
        c.evidence_retention_days = 2;
        // The sweeps below are called directly, with a chosen clock.
        c.cleanup_interval = Duration::from_secs(3600);
        c
    })
    .await;
    let c = s.approvals.clone();
    let (auditor, _) = add_auditor(&s, "ext-audit").await;
    let client = s.add_client("agent-keep", "poll", None).await;
    let alice = s.add_approver("apv_keep", 81).await;
    let id = client.ask("apv_keep", &[("requested_expiry", "30")]).await;
    let rid = alice.only_request().await;
    let receipt = alice.decide(&rid, "approve").await;
    let (st, _) = client.token(&id).await;
    assert_eq!(st, 200);
    let (st, body) = client.evidence(&id, None).await;
    assert_eq!(st, 200, "{body}");
    let before = EvidenceBundle::from_json(body.as_bytes()).unwrap();
    let expires_at = before.statement.expires_at;

    // Past the request retention: the request's records are gone (its token with them)...
    assert_eq!(sweep(&c, expires_at + 101).await.unwrap(), 1);
    assert!(c.store.request_by_public_id(&rid).await.unwrap().is_none());
    let (st, v) = client.token(&id).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    // ...and the evidence is still served through every door, from the evidence record.
    let (st, body) = client.evidence(&id, None).await;
    assert_eq!(st, 200, "{body}");
    let by_client = EvidenceBundle::from_json(body.as_bytes()).unwrap();
    assert_eq!(by_client.statement, before.statement);
    assert!(by_client.parties.is_none(), "{body}");
    by_client.verify(&s.vkey, &BundlePolicy::default()).unwrap();
    let admin_url = format!("{}/v1/admin/evidence/{rid}", s.url);
    for token in [s.admin.as_str(), auditor.as_str()] {
        let (st, v) = get_with(&s.http, &admin_url, Some(token)).await;
        assert_eq!(st, 200, "{v}");
        let b = EvidenceBundle::from_json(v.to_string().as_bytes()).unwrap();
        assert_eq!(b.decision.index, receipt["log_index"].as_u64().unwrap());
        assert_eq!(
            b.parties.as_ref().unwrap()["approver"]["email"],
            "apv_keep@example.com"
        );
        b.verify(&s.vkey, &BundlePolicy::default()).unwrap();
    }
    let (st, body) = alice
        .get(&format!("/approve/requests/{rid}/evidence"))
        .await;
    assert_eq!(st, 200, "{body}");
    let bob = s.add_approver("apv_keep_bob", 82).await;
    let (st, _) = bob.get(&format!("/approve/requests/{rid}/evidence")).await;
    assert_eq!(st, 404, "another approver's evidence is not found");
    // Another client does not get it either.
    let other = s.add_client("agent-other", "poll", None).await;
    assert_eq!(other.evidence(&id, None).await.0, 404);
    let (st, v) = get_with(
        &s.http,
        &format!("{}/v1/audit/statements", s.url),
        Some(&auditor),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["statements"].as_array().unwrap().len(), 1, "{v}");

    // Past the evidence retention (2 days after the decision): gone, events too.
    let now = countersign_approvals::util::now_secs();
    sweep(&c, now + 2 * 86_400 - 60).await.unwrap();
    assert_eq!(client.evidence(&id, None).await.0, 200, "kept until then");
    sweep(&c, now + 2 * 86_400 + 60).await.unwrap();
    let (st, body) = client.evidence(&id, None).await;
    assert_eq!(st, 404, "{body}");
    for token in [s.admin.as_str(), auditor.as_str()] {
        assert_eq!(get_with(&s.http, &admin_url, Some(token)).await.0, 404);
    }
    assert_eq!(
        alice
            .get(&format!("/approve/requests/{rid}/evidence"))
            .await
            .0,
        404
    );
    let (st, v) = get_with(
        &s.http,
        &format!("{}/v1/audit/statements", s.url),
        Some(&auditor),
    )
    .await;
    assert_eq!(
        (st, v["statements"].as_array().unwrap().len()),
        (200, 0),
        "{v}"
    );
    let (rows, _) = whole_feed(&s, &auditor, 100).await;
    assert!(rows.is_empty(), "{rows:?}");
}

#[tokio::test]
async fn an_evidence_retention_of_zero_keeps_evidence_for_good() {
    let s = Server::start_with(|mut c| {
        c.request_retention_secs = 100;
        c.evidence_retention_days = 0;
        c.cleanup_interval = Duration::from_secs(3600);
        c
    })
    .await;
    let client = s.add_client("agent-ever", "poll", None).await;
    let alice = s.add_approver("apv_ever", 83).await;
    let id = client.ask("apv_ever", &[]).await;
    alice.decide(&alice.only_request().await, "deny").await;
    let ten_years = countersign_approvals::util::now_secs() + 10 * 366 * 86_400;
    assert_eq!(sweep(&s.approvals, ten_years).await.unwrap(), 1);
    let (st, body) = client.evidence(&id, None).await;
    assert_eq!(st, 200, "{body}");
    let b = EvidenceBundle::from_json(body.as_bytes()).unwrap();
    assert_eq!(b.statement.decision, "deny");
    let (rows, _) = whole_feed(&s, &s.admin, 100).await;
    assert_eq!(
        types(&rows),
        ["credential.enrolled", "request.created", "decision.denied"]
    );
}

#[tokio::test]
async fn the_feed_reports_each_event_once_in_order() {
    let s = Server::start_with(|mut c| {
        c.cleanup_interval = Duration::from_secs(3600);
        c
    })
    .await;
    let (auditor, _) = add_auditor(&s, "siem").await;
    let client = s.add_client("agent-feed", "poll", None).await;
    let alice = s.add_approver("apv_feed", 84).await;
    let id = client
        .ask("apv_feed", &[("binding_message", "Pay 42")])
        .await;
    let rid = alice.only_request().await;
    let receipt = alice.decide(&rid, "approve").await;
    let (st, _) = client.token(&id).await;
    assert_eq!(st, 200);

    let (rows, next) = whole_feed(&s, &auditor, 1000).await;
    assert_eq!(
        types(&rows),
        [
            "credential.enrolled",
            "request.created",
            "decision.approved",
            "token.issued"
        ]
    );
    // Each row as the export defines it.
    let index = receipt["log_index"].as_u64().unwrap();
    let entry = s
        .log_api
        .log
        .store()
        .unwrap()
        .entry(index)
        .unwrap()
        .unwrap();
    let (_, rec) = s
        .approvals
        .store
        .request_by_public_id(&rid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rows[2],
        log_event_row(index, &entry, Some(&rec.statement)).unwrap()
    );
    let enrolment = s
        .log_api
        .log
        .store()
        .unwrap()
        .entry(alice.enrolment_index)
        .unwrap()
        .unwrap();
    assert_eq!(
        rows[0],
        log_event_row(alice.enrolment_index, &enrolment, None).unwrap()
    );
    let created = &rows[1];
    assert_eq!(created.log_index, None);
    assert_eq!(created.request_id.as_deref(), Some(rid.as_str()));
    assert_eq!(created.client_id.as_deref(), Some("agent-feed"));
    assert_eq!(created.approver_id.as_deref(), Some("apv_feed"));
    assert_eq!(created.binding_message.as_deref(), Some("Pay 42"));
    assert_eq!(
        created.time_utc,
        rfc3339_ms(rec.statement.requested_at * 1000)
    );
    assert_eq!(rows[3].request_id.as_deref(), Some(rid.as_str()));
    assert!(rows[3].time_utc >= rows[2].time_utc, "{rows:?}");

    // Paging one at a time loses and repeats nothing, and ends at the same cursor.
    let (one_by_one, next1) = whole_feed(&s, &auditor, 1).await;
    assert_eq!(one_by_one, rows);
    assert_eq!(next1, next);

    // A request that expires undecided: request.expired at its expiry, once, from the sweep.
    let _late = client.ask("apv_feed", &[("requested_expiry", "30")]).await;
    let late_rid = alice.only_request().await;
    let (_, late) = s
        .approvals
        .store
        .request_by_public_id(&late_rid)
        .await
        .unwrap()
        .unwrap();
    let expires_at = late.statement.expires_at;
    sweep(&s.approvals, expires_at - 1).await.unwrap();
    let url = |after: &str| format!("{}/v1/audit/events?after={after}", s.url);
    let (st, v) = get_with(&s.http, &url(&next), Some(&auditor)).await;
    assert_eq!(st, 200, "{v}");
    let new: Vec<EventRow> = serde_json::from_value(v["events"].clone()).unwrap();
    assert_eq!(types(&new), ["request.created"], "not expired yet");
    sweep(&s.approvals, expires_at).await.unwrap();
    sweep(&s.approvals, expires_at + 5).await.unwrap();
    let (st, v) = get_with(&s.http, &url(v["next"].as_str().unwrap()), Some(&auditor)).await;
    assert_eq!(st, 200, "{v}");
    let expired: Vec<EventRow> = serde_json::from_value(v["events"].clone()).unwrap();
    assert_eq!(types(&expired), ["request.expired"]);
    assert_eq!(expired[0].request_id.as_deref(), Some(late_rid.as_str()));
    assert_eq!(expired[0].time_utc, rfc3339_ms(expires_at * 1000));
    assert_eq!(expired[0].log_index, None);

    // Disabling the approver revokes the passkey: credential.revoked, the row of its entry.
    let (st, v) = s
        .admin_post("/v1/admin/approvers/apv_feed/disable", json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    let revocation = v["revoked"][0]["log_index"].as_u64().unwrap();
    let (rows_now, _) = whole_feed(&s, &auditor, 1000).await;
    let last = rows_now.last().unwrap();
    assert_eq!(last.event_type.as_str(), "credential.revoked");
    let entry = s
        .log_api
        .log
        .store()
        .unwrap()
        .entry(revocation)
        .unwrap()
        .unwrap();
    assert_eq!(*last, log_event_row(revocation, &entry, None).unwrap());

    // The statements: the one decision, with when its token was issued.
    let (st, v) = get_with(
        &s.http,
        &format!("{}/v1/audit/statements?from_index=0&to_index=100", s.url),
        Some(&auditor),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["next_index"], Value::Null);
    let items = v["statements"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{v}");
    assert_eq!(items[0]["index"], index);
    assert_eq!(items[0]["statement"]["request_id"], rid.as_str());
    assert_eq!(items[0]["token_issued_at"], rows[3].time_utc.as_str());
    let (_, v) = get_with(
        &s.http,
        &format!("{}/v1/audit/statements?from_index={}", s.url, index + 1),
        Some(&auditor),
    )
    .await;
    assert_eq!(v["statements"], json!([]), "{v}");

    // Refusals: a cursor not handed out, a limit out of range, an unknown parameter.
    for q in [
        "after=junk",
        "after=AAAA",
        "limit=0",
        "limit=10001",
        "limit=x",
        "since=1",
    ] {
        let (st, v) = get_with(
            &s.http,
            &format!("{}/v1/audit/events?{q}", s.url),
            Some(&auditor),
        )
        .await;
        assert_eq!(
            (st, v["error"].as_str()),
            (400, Some("invalid_request")),
            "{q}: {v}"
        );
    }
    for q in ["limit=0", "from_index=x", "to_index=-1"] {
        let (st, _) = get_with(
            &s.http,
            &format!("{}/v1/audit/statements?{q}", s.url),
            Some(&auditor),
        )
        .await;
        assert_eq!(st, 400, "{q}");
    }
}

#[tokio::test]
async fn statements_page_with_next_index() {
    let s = Server::start().await;
    let client = s.add_client("agent-pages", "poll", None).await;
    let alice = s.add_approver("apv_pages", 85).await;
    let mut indexes = Vec::new();
    for decision in ["approve", "deny", "approve"] {
        client.ask("apv_pages", &[]).await;
        let r = alice.decide(&alice.only_request().await, decision).await;
        indexes.push(r["log_index"].as_u64().unwrap());
    }
    let mut got = Vec::new();
    let mut from = 0;
    loop {
        let (st, v) = get_with(
            &s.http,
            &format!("{}/v1/audit/statements?from_index={from}&limit=2", s.url),
            Some(&s.admin),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        for i in v["statements"].as_array().unwrap() {
            got.push(i["index"].as_u64().unwrap());
            assert_eq!(i["token_issued_at"], Value::Null, "no token was fetched");
        }
        match v["next_index"].as_u64() {
            Some(n) => from = n,
            None => break,
        }
    }
    assert_eq!(got, indexes);
    // `to_index` is exclusive.
    let (_, v) = get_with(
        &s.http,
        &format!(
            "{}/v1/audit/statements?from_index={}&to_index={}",
            s.url, indexes[0], indexes[1]
        ),
        Some(&s.admin),
    )
    .await;
    assert_eq!(v["statements"].as_array().unwrap().len(), 1, "{v}");
}

#[tokio::test]
async fn auditor_tokens_read_the_audit_trail_and_nothing_else() {
    let s = Server::start().await;
    let (token, fingerprint) = add_auditor(&s, "ext").await;
    let (_, second) = add_auditor(&s, "ext").await;
    add_auditor(&s, "other").await;
    let (st, v) = get_with(
        &s.http,
        &format!("{}/v1/admin/auditors", s.url),
        Some(&s.admin),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let list = v["auditors"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{v}");
    assert!(list
        .iter()
        .any(|a| a["name"] == "ext" && a["fingerprint"] == fingerprint.as_str()));
    assert!(list
        .iter()
        .all(|a| a["created_at"].is_u64() && a.get("token").is_none()));
    assert!(!v.to_string().contains(&token));
    let (st, v) = s
        .admin_post("/v1/admin/auditors", json!({"name": ""}))
        .await;
    assert_eq!(st, 400, "{v}");

    // What an auditor may call.
    let events = format!("{}/v1/audit/events", s.url);
    let statements = format!("{}/v1/audit/statements", s.url);
    assert_eq!(get_with(&s.http, &events, Some(&token)).await.0, 200);
    assert_eq!(get_with(&s.http, &statements, Some(&token)).await.0, 200);
    let (st, v) = get_with(
        &s.http,
        &format!("{}/v1/admin/evidence/req_nope", s.url),
        Some(&token),
    )
    .await;
    assert_eq!((st, v["error"].as_str()), (404, Some("not_found")), "{v}");
    // And nothing else of the admin API.
    for (method, path, body) in [
        (
            "POST",
            "/v1/admin/clients",
            json!({"client_id": "x", "mode": "poll"}),
        ),
        ("POST", "/v1/admin/backup", json!({"to": "/tmp/nope"})),
        ("POST", "/v1/admin/auditors", json!({"name": "me-too"})),
        ("GET", "/v1/admin/auditors", Value::Null),
        ("GET", "/v1/admin/submitters", Value::Null),
        ("GET", "/v1/admin/requests", Value::Null),
        ("DELETE", "/v1/admin/auditors/other", Value::Null),
    ] {
        let url = format!("{}{path}", s.url);
        let req = match method {
            "POST" => s.http.post(url).json(&body),
            "DELETE" => s.http.delete(url),
            _ => s.http.get(url),
        };
        let r = req.bearer_auth(&token).send().await.unwrap();
        let st = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert!(st == 401 || st == 403, "{method} {path}: {st} {v}");
        assert!(v["error"].is_string(), "{method} {path}: {v}");
    }
    // No token, a wrong one, a submitter's: refused.
    let (st, v) = get_with(&s.http, &events, None).await;
    assert_eq!(st, 401, "{v}");
    assert!(v["error"].is_string(), "{v}");
    assert_eq!(
        get_with(&s.http, &events, Some(&"0".repeat(64))).await.0,
        401
    );
    assert_eq!(get_with(&s.http, &statements, Some("nope")).await.0, 401);
    let (st, sub) = s
        .admin_post("/v1/admin/submitters", json!({"name": "sub"}))
        .await;
    assert_eq!(st, 201);
    let sub = sub["token"].as_str().unwrap();
    assert_eq!(get_with(&s.http, &events, Some(sub)).await.0, 401);

    // Revoking: every token of that name, refused from the next request on.
    let r = s
        .http
        .delete(format!("{}/v1/admin/auditors/ext", s.url))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    let mut revoked: Vec<String> = serde_json::from_value(v["revoked"].clone()).unwrap();
    revoked.sort();
    let mut want = vec![fingerprint, second];
    want.sort();
    assert_eq!(revoked, want);
    assert_eq!(get_with(&s.http, &events, Some(&token)).await.0, 401);
    let r = s
        .http
        .delete(format!("{}/v1/admin/auditors/ext", s.url))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let (_, v) = get_with(
        &s.http,
        &format!("{}/v1/admin/auditors", s.url),
        Some(&s.admin),
    )
    .await;
    assert_eq!(v["auditors"].as_array().unwrap().len(), 1, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut server, api, _, client, mut approvers) = flow_server(
        &tmp.path().join("data"),
        None,
        "agent-restart-feed",
        [("apv_rf".to_owned(), 86)],
    )
    .await;
    let (alice, _) = approvers.remove(0);
    let id = client.ask("apv_rf", &[]).await;
    alice.decide(&alice.only_request().await, "approve").await;
    assert_eq!(client.token(&id).await.0, 200);
    let (before, next) = whole_feed(&api, &api.admin, 1000).await;
    assert_eq!(
        types(&before),
        [
            "credential.enrolled",
            "request.created",
            "decision.approved",
            "token.issued"
        ]
    );
    server.kill();
    server.restart();
    server.wait_ready(&api.http).await;
    let (after, next_after) = whole_feed(&api, &api.admin, 2).await;
    assert_eq!(after, before);
    assert_eq!(next_after, next);
    // New events continue after the old cursor: nothing repeated, nothing skipped.
    client.ask("apv_rf", &[]).await;
    let (st, v) = get_with(
        &api.http,
        &format!("{}/v1/audit/events?after={next}", api.url),
        Some(&api.admin),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let new: Vec<EventRow> = serde_json::from_value(v["events"].clone()).unwrap();
    assert_eq!(types(&new), ["request.created"]);
    assert_ne!(v["next"].as_str().unwrap(), next);
    drop(server);
}
