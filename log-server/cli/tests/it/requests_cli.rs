//! `countersign requests list|show` against a server holding a request in each state: the
//! binary's output (filters, paging, both ids, RFC 3339 times), the admin API behind it, and
//! each refusal.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

/// `countersign ARGS --url URL --data-dir DIR`: (success, stdout, stderr).
async fn cli(url: &str, data_dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"));
    cmd.args(args)
        .arg("--url")
        .arg(url)
        .arg("--data-dir")
        .arg(data_dir);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `countersign requests list ARGS`, which must succeed: its standard output.
async fn list(s: &Server, args: &[&str]) -> String {
    let mut full = vec!["requests", "list"];
    full.extend_from_slice(args);
    let (ok, out, err) = cli(&s.url, &s.data_dir, &full).await;
    assert!(ok, "{args:?}: {out}{err}");
    out
}

/// The request ids in a list's table, in order.
fn ids_in(table: &str) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.starts_with("req_"))
        .map(str::to_owned)
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// `GET path` with `token` as the bearer token (none if empty): (status, JSON body).
async fn admin_get(s: &Server, path: &str, token: &str) -> (u16, Value) {
    let mut req = s.http.get(format!("{}{path}", s.url));
    if !token.is_empty() {
        req = req.bearer_auth(token);
    }
    answer_of(req.send().await.unwrap()).await
}

#[tokio::test]
async fn requests_list_and_show() {
    let s = Server::start().await;
    let a = s.add_client("agent-a", "poll", None).await;
    let b = s.add_client("agent-b", "poll", None).await;
    let alice = s.add_approver("apv_alice", 1).await;
    let bob = s.add_approver("apv_bob", 2).await;

    // Made first, with a 1 s expiry: expired by the time the others are made, and made at least
    // a second before them, so that --since can fall between.
    let expired_arid = b.ask("apv_bob", &[("requested_expiry", "1")]).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let approved_arid = a.ask("apv_alice", &[]).await;
    let denied_arid = a.ask("apv_bob", &[]).await;
    let pending_arid = b
        .ask("apv_alice", &[("binding_message", "Deploy v2")])
        .await;

    // Each request's id, from the show endpoint by its auth_req_id.
    let mut ids = Vec::new();
    for arid in [&expired_arid, &approved_arid, &denied_arid, &pending_arid] {
        let (st, v) = admin_get(&s, &format!("/v1/admin/requests/{arid}"), &s.admin).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["found_by"], "auth_req_id");
        assert!(!v.to_string().contains(arid.as_str()), "{v}");
        ids.push(v["request_id"].as_str().unwrap().to_owned());
    }
    let [expired, approved, denied, pending] = <[String; 4]>::try_from(ids).unwrap();
    let receipt = alice.decide(&approved, "approve").await;
    bob.decide(&denied, "deny").await;

    let dir = s.data_dir.clone();
    let all = list(&s, &[]).await;
    assert!(all.starts_with("REQUEST ID "), "{all}");
    // By expiry: the 1 s request first.
    assert_eq!(ids_in(&all)[0], expired, "{all}");
    assert_eq!(
        sorted(ids_in(&all)),
        sorted(vec![
            expired.clone(),
            approved.clone(),
            denied.clone(),
            pending.clone()
        ])
    );
    for arid in [&expired_arid, &approved_arid, &denied_arid, &pending_arid] {
        assert!(!all.contains(arid.as_str()), "no auth_req_id is listed");
    }
    let row = all.lines().find(|l| l.starts_with(&approved)).unwrap();
    let decided = receipt["log_index"].as_u64().unwrap();
    for want in [
        " approved ",
        " agent-a ",
        " apv_alice ",
        " decided 20",
        &format!(" {decided} "),
        "Pay 42.00 EUR to ACME",
    ] {
        assert!(row.contains(want), "{want:?} in {row}");
    }
    let row = all.lines().find(|l| l.starts_with(&pending)).unwrap();
    assert!(
        row.contains(" pending ") && row.contains(" expires 20") && row.contains("Z "),
        "{row}"
    );

    for (args, want) in [
        (&["--status", "approved"][..], vec![approved.clone()]),
        (&["--status", "denied"][..], vec![denied.clone()]),
        (&["--status", "pending"][..], vec![pending.clone()]),
        (&["--status", "expired"][..], vec![expired.clone()]),
        (
            &["--client", "agent-b"][..],
            vec![expired.clone(), pending.clone()],
        ),
        (
            &["--approver", "apv_bob"][..],
            vec![expired.clone(), denied.clone()],
        ),
        (
            &["--client", "agent-a", "--approver", "apv_bob"][..],
            vec![denied.clone()],
        ),
        (&["--client", "nobody"][..], vec![]),
    ] {
        let out = list(&s, args).await;
        assert_eq!(sorted(ids_in(&out)), sorted(want), "{args:?}: {out}");
        if ids_in(&out).is_empty() {
            assert_eq!(out, "no request matches\n");
        }
    }

    // --since: a time, or a duration ago.
    let (_, shown) = admin_get(&s, &format!("/v1/admin/requests/{expired}"), &s.admin).await;
    let expired_at = shown["statement"]["requested_at"].as_u64().unwrap();
    let out = list(&s, &["--since", &rfc3339(expired_at + 1)]).await;
    assert_eq!(
        sorted(ids_in(&out)),
        sorted(vec![approved.clone(), denied.clone(), pending.clone()]),
        "{out}"
    );
    assert_eq!(ids_in(&list(&s, &["--since", "1h"]).await).len(), 4);
    assert_eq!(
        list(&s, &["--since", &rfc3339(expired_at + 3600)]).await,
        "no request matches\n"
    );

    // Paging: two, then the rest after the cursor printed.
    let (ok, first, hint) = cli(&s.url, &dir, &["requests", "list", "--limit", "2"]).await;
    assert!(ok, "{hint}");
    assert_eq!(ids_in(&first).len(), 2, "{first}");
    assert!(hint.starts_with("more requests match; "), "{hint}");
    let cursor = hint
        .split_whitespace()
        .skip_while(|w| *w != "--cursor")
        .nth(1)
        .unwrap()
        .to_owned();
    let (ok, rest, hint) = cli(
        &s.url,
        &dir,
        &["requests", "list", "--limit", "2", "--cursor", &cursor],
    )
    .await;
    assert!(ok && hint.is_empty(), "{hint}");
    let mut both = ids_in(&first);
    both.extend(ids_in(&rest));
    assert_eq!(
        both,
        ids_in(&all),
        "the two pages are the whole list, in order"
    );

    // --json: the API's answer.
    let v: Value =
        serde_json::from_str(&list(&s, &["--json", "--status", "approved"]).await).unwrap();
    assert_eq!(v["truncated"], Value::Null);
    assert_eq!(v["requests"].as_array().unwrap().len(), 1, "{v}");
    let r = &v["requests"][0];
    assert_eq!(r["request_id"], approved.as_str());
    assert_eq!(r["status"], "approved");
    assert_eq!(r["log_index"], decided);
    assert!(r["decided_at"].as_u64().unwrap() >= r["requested_at"].as_u64().unwrap());
    assert_eq!(r["authorization_details"][0]["creditorName"], "ACME");

    // show, by the request id.
    let (ok, out, err) = cli(&s.url, &dir, &["requests", "show", &approved]).await;
    assert!(ok, "{err}");
    for want in [
        format!("request id      {approved}\n"),
        "status          approved\n".to_owned(),
        "client          agent-a\n".to_owned(),
        "approver        apv_alice\n".to_owned(),
        "scope           openid payments\n".to_owned(),
        "agent's note    Pay 42.00 EUR to ACME\n".to_owned(),
        "written by the agent".to_owned(),
        format!(
            "requested at    {}\n",
            rfc3339(r["requested_at"].as_u64().unwrap())
        ),
        format!(
            "decision        approve at {}\n",
            rfc3339(r["decided_at"].as_u64().unwrap())
        ),
        format!("log index       {decided}\n"),
        format!(
            "leaf hash       {}\n",
            receipt["leaf_hash"].as_str().unwrap()
        ),
        format!(
            "statement hash  {}\n",
            receipt["statement_hash"].as_str().unwrap()
        ),
        "delivery        poll (tokens not issued)\n".to_owned(),
        format!(
            "evidence        {}/v1/admin/evidence/{approved} (with the admin token)\n",
            s.url
        ),
        "  [\n    {\n      \"creditorName\": \"ACME\",".to_owned(),
    ] {
        assert!(out.contains(&want), "{want:?} in\n{out}");
    }
    assert!(!out.contains("found by"), "{out}");
    // The evidence URL it prints answers the bundle to the admin token.
    let (st, bundle) = admin_get(&s, &format!("/v1/admin/evidence/{approved}"), &s.admin).await;
    assert_eq!(
        (st, &bundle["statement"]["request_id"]),
        (200, &json!(approved))
    );

    // show, by the auth_req_id: the same request, and the secret is not printed back.
    let (ok, out, err) = cli(&s.url, &dir, &["requests", "show", &denied_arid]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!(
            "request id      {denied} (found by the auth_req_id given)\n"
        )),
        "{out}"
    );
    assert!(out.contains("status          denied\n") && out.contains("decision        deny at "));
    assert!(!out.contains(&denied_arid), "{out}");
    let (ok, out, _) = cli(&s.url, &dir, &["requests", "show", &pending, "--json"]).await;
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            &v["status"],
            &v["found_by"],
            &v["decision"],
            &v["evidence_url"]
        ),
        (
            &json!("pending"),
            &json!("request_id"),
            &Value::Null,
            &Value::Null
        )
    );
    assert_eq!(v["statement"]["binding_message"], "Deploy v2");
    let (ok, out, _) = cli(&s.url, &dir, &["requests", "show", &expired]).await;
    assert!(
        ok && out.contains("status          expired\n") && out.contains("decision        none\n")
    );

    // Refusals, each in words.
    let (ok, out, err) = cli(&s.url, &dir, &["requests", "show", "req_nonexistent"]).await;
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.contains(
            "no request has the id \"req_nonexistent\": neither a request id nor an auth_req_id"
        ),
        "{err}"
    );
    let (ok, _, err) = cli(&s.url, &dir, &["requests", "list", "--since", "yesterday"]).await;
    assert!(!ok);
    assert!(
        err.contains("--since \"yesterday\" is neither an RFC 3339 UTC time"),
        "{err}"
    );
    let (ok, _, err) = cli(&s.url, &dir, &["requests", "list", "--limit", "1001"]).await;
    assert!(!ok && err.contains("--limit"), "{err}");
    let wrong = tempfile::tempdir().unwrap();
    std::fs::write(wrong.path().join("admin.token"), "not-the-token\n").unwrap();
    let (ok, _, err) = cli(&s.url, wrong.path(), &["requests", "list"]).await;
    assert!(
        !ok && err.contains("the server refused (401 Unauthorized)"),
        "{err}"
    );
    let (ok, _, err) = cli(&s.url, &wrong.path().join("none"), &["requests", "list"]).await;
    assert!(!ok && err.contains("cannot read the admin token"), "{err}");

    // The API: the admin token is required, and every parameter is checked.
    for path in [
        "/v1/admin/requests".to_owned(),
        format!("/v1/admin/requests/{approved}"),
    ] {
        let (st, v) = admin_get(&s, &path, "").await;
        assert_eq!((st, &v["error"]), (401, &json!("invalid_token")), "{path}");
        let (st, _) = admin_get(&s, &path, "not-the-token").await;
        assert_eq!(st, 401, "{path}");
    }
    for (query, words) in [
        ("status=done", "status must be"),
        ("limit=0", "limit must be 1 to 1000"),
        ("limit=1001", "limit must be 1 to 1000"),
        ("since=2h", "since must be a time in Unix seconds"),
        ("cursor=abc", "cursor must be"),
        ("client=agent-a", "unknown parameter \"client\""),
    ] {
        let got = admin_get(&s, &format!("/v1/admin/requests?{query}"), &s.admin).await;
        assert_refused(query, &got, 400, "invalid_request", &[words]);
    }
    let (st, v) = admin_get(&s, "/v1/admin/requests/req_nonexistent", &s.admin).await;
    assert_eq!((st, &v["error"]), (404, &json!("not_found")), "{v}");
}
