//! The web pages as served (issue 17): the action as the headline, the agent's note checked
//! against it, request states, the approver's history, the landing, verify and log pages.
//! The browser tests (interop/test/pages.test.mjs) drive the same pages in Chromium.

use std::time::Duration;

use base64::Engine;
use countersign_verifier::{leaf_hash, verify_inclusion, Hash};
use serde_json::Value;

use crate::common::Server;

const EVIL: &str = r#"[{"type":"payment_initiation","instructedAmount":{"currency":"EUR","amount":"4200.00"},"creditorName":"Evil Corp"}]"#;

/// The text of the first element that starts with `open` (up to its closing tag `close`).
fn element<'a>(page: &'a str, open: &str, close: &str) -> &'a str {
    let start = page
        .find(open)
        .unwrap_or_else(|| panic!("{open} not in {page}"));
    let rest = &page[start..];
    &rest[..rest.find(close).unwrap_or(rest.len())]
}

#[tokio::test]
async fn the_action_is_the_headline_and_a_misleading_note_is_flagged() {
    let s = Server::start().await;
    let client = s.add_client("agent-pay", "poll", None).await;
    let alice = s.add_approver("apv_alice", 1).await;
    client
        .ask(
            "apv_alice",
            &[
                ("binding_message", "Pay 1.00 EUR to ACME"),
                ("authorization_details", EVIL),
            ],
        )
        .await;

    let (st, inbox) = alice.get("/approve").await;
    assert_eq!(st, 200);
    let item = element(&inbox, "<ul id=\"inbox\"", "</ul>");
    let headline = item.find("Pay 4200.00 EUR to Evil Corp").expect(item);
    let note = item.find("Pay 1.00 EUR to ACME").expect(item);
    assert!(
        headline < note,
        "the action comes before the agent's note: {item}"
    );
    assert!(item.contains("note disagrees with the action"), "{item}");

    let v = &alice.inbox().await[0];
    assert_eq!(v["summary"], "Pay 4200.00 EUR to Evil Corp");
    assert_eq!(v["note_mismatches"], serde_json::json!(["1.00", "ACME"]));

    let rid = v["request_id"].as_str().unwrap();
    let (_, page) = alice.get(&format!("/approve/requests/{rid}")).await;
    assert!(
        page.contains("<title>Pay 4200.00 EUR to Evil Corp · Countersign</title>"),
        "{page}"
    );
    assert_eq!(
        element(&page, "<h1", "</h1>"),
        "<h1 id=\"headline\">Pay 4200.00 EUR to Evil Corp"
    );
    let warning = element(&page, "<p class=\"warning\"", "</p>");
    assert!(
        warning.contains("“1.00”") && warning.contains("“ACME”"),
        "{warning}"
    );
    assert!(page.contains("Agent's note"));
    assert!(page.contains("id=\"approve\"") && page.contains("data-expires="));
    assert!(page.contains("← Back to your inbox"));
}

#[tokio::test]
async fn look_alike_text_in_the_action_is_marked_as_an_error() {
    let s = Server::start().await;
    let client = s.add_client("agent-pay", "poll", None).await;
    let alice = s.add_approver("apv_alice", 1).await;
    // "АCME Ltd" with a Cyrillic А: accepted (names may mix scripts), shown as an error.
    client
        .ask(
            "apv_alice",
            &[(
                "authorization_details",
                "[{\"type\":\"payment_initiation\",\"instructedAmount\":{\"currency\":\"EUR\",\"amount\":\"42.00\"},\"creditorName\":\"\u{410}CME Ltd\"}]",
            )],
        )
        .await;
    let rid = alice.only_request().await;
    let (_, page) = alice.get(&format!("/approve/requests/{rid}")).await;
    assert!(page.contains("<strong>Look closely:</strong>"), "{page}");
    let payee = element(&page, "<dt>To</dt>", "</dd>");
    assert!(
        payee.contains("class=\"error\">mixes writing systems"),
        "{payee}"
    );
    // The same action in plain Latin letters has no such mark.
    client.ask("apv_alice", &[]).await;
    let plain = alice
        .inbox()
        .await
        .into_iter()
        .find(|r| r["request_id"] != rid.as_str())
        .unwrap();
    let (_, page) = alice
        .get(&format!(
            "/approve/requests/{}",
            plain["request_id"].as_str().unwrap()
        ))
        .await;
    assert!(!page.contains("Look closely") && !page.contains("mixes writing systems"));
}

#[tokio::test]
async fn decided_and_expired_requests_cannot_be_acted_on() {
    let s = Server::start().await;
    let client = s.add_client("agent-pay", "poll", None).await;
    let alice = s.add_approver("apv_alice", 1).await;

    client.ask("apv_alice", &[]).await;
    let approved = alice.only_request().await;
    let receipt = alice.decide(&approved, "approve").await;
    client
        .ask(
            "apv_alice",
            &[("binding_message", "Pay 42.00 EUR to ACME, again")],
        )
        .await;
    let denied = alice.only_request().await;
    alice.decide(&denied, "deny").await;
    client.ask("apv_alice", &[("requested_expiry", "2")]).await;
    let expired = alice.only_request().await;

    let (_, page) = alice.get(&format!("/approve/requests/{approved}")).await;
    assert!(page.contains("receipt approved") && !page.contains("receipt denied"));
    assert!(page.contains(&format!("index <strong>{}</strong>", receipt["log_index"])));
    assert!(page.contains(&format!(
        "download=\"countersign-evidence-{approved}.json\""
    )));
    let (_, page) = alice.get(&format!("/approve/requests/{denied}")).await;
    assert!(page.contains("receipt denied") && !page.contains("receipt approved"));
    for p in [&approved, &denied] {
        let (_, page) = alice.get(&format!("/approve/requests/{p}")).await;
        assert!(!page.contains("id=\"approve\"") && !page.contains("id=\"deny\""));
        assert!(!page.contains("data-expires"), "no countdown once decided");
    }

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, page) = alice.get(&format!("/approve/requests/{expired}")).await;
    assert!(page.contains("receipt expired"), "{page}");
    assert!(!page.contains("id=\"approve\"") && !page.contains("data-expires"));
    // Nor can it be decided through the API.
    let (st, v) = alice
        .post(
            &format!("/v1/requests/{expired}/decide/start"),
            &serde_json::json!({"decision": "approve"}),
        )
        .await;
    assert_eq!((st, v["error"].as_str()), (410, Some("expired")), "{v}");
    assert!(v["error_description"]
        .as_str()
        .unwrap()
        .contains("ask again"));

    // The history: newest first, each with its evidence download.
    let (st, history) = alice.get("/approve/history").await;
    assert_eq!(st, 200);
    let (d, a) = (
        history
            .find(&format!("/approve/requests/{denied}\""))
            .expect(&history),
        history
            .find(&format!("/approve/requests/{approved}\""))
            .expect(&history),
    );
    assert!(d < a, "newest first");
    assert!(!history.contains(&format!("/approve/requests/{expired}\"")));
    assert!(history.contains("badge approved") && history.contains("badge denied"));
    assert!(history.contains(&format!(
        "href=\"/approve/requests/{approved}/evidence\" download="
    )));
    // Another approver's history is their own.
    let bob = s.add_approver("apv_bob", 2).await;
    let (_, other) = bob.get("/approve/history").await;
    assert!(
        other.contains("You have not decided any request yet."),
        "{other}"
    );
    // Without a session: the sign-in page.
    let r = s
        .http
        .get(format!("{}/approve/history", s.url))
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("Sign in with a passkey"));
}

#[tokio::test]
async fn a_cloned_authenticator_is_refused_with_a_next_step_and_counted() {
    let s = Server::start().await;
    let client = s.add_client("agent-pay", "poll", None).await;
    let alice = s.add_approver("apv_alice", 1).await;
    alice.passkey.lock().unwrap().set_counting(10);
    client.ask("apv_alice", &[]).await;
    let first = alice.only_request().await;
    alice.decide(&first, "approve").await;

    // A copy of the passkey, behind the original's counter.
    alice.passkey.lock().unwrap().set_counting(3);
    client.ask("apv_alice", &[]).await;
    let second = alice.only_request().await;
    let ch = alice.challenge(&second, "approve").await;
    let cred = alice.sign(&ch, crate::common::ORIGIN);
    let (st, v) = alice.finish(&second, "approve", &cred).await;
    assert_eq!((st, v["error"].as_str()), (403, Some("sign_count")), "{v}");
    let text = v["error_description"].as_str().unwrap();
    assert!(text.contains("Contact your Countersign operator"), "{text}");
    assert_eq!(
        alice.only_request().await,
        second,
        "still open, nothing logged"
    );
    let m = crate::web::get_text(&s.http, &format!("{}/metrics", s.url)).await;
    assert!(
        m.lines()
            .any(|l| l
                .starts_with("countersign_ciba_decisions_refused_total{reason=\"sign_count\"} 1")),
        "{m}"
    );
}

#[tokio::test]
async fn landing_verify_and_log_pages() {
    let s = Server::start().await;
    let client = s.add_client("agent-pay", "poll", None).await;
    let alice = s.add_approver("apv_alice", 1).await;
    client.ask("apv_alice", &[]).await;
    let rid = alice.only_request().await;
    alice.decide(&rid, "approve").await;
    let vkey = s.vkey.to_vkey();
    let get = |path: &'static str| {
        let (http, url) = (s.http.clone(), s.url.clone());
        async move {
            let r = http.get(format!("{url}{path}")).send().await.unwrap();
            let csp = r
                .headers()
                .get("content-security-policy")
                .map(|h| h.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (r.status().as_u16(), csp, r.text().await.unwrap())
        }
    };

    let (st, csp, landing) = get("/").await;
    assert_eq!(st, 200);
    assert!(
        !csp.contains("wasm-unsafe-eval"),
        "only the verifier pages may compile wasm"
    );
    for link in [
        "href=\"/approve\"",
        "href=\"/verify\"",
        "href=\"/log\"",
        "openid-configuration",
    ] {
        assert!(landing.contains(link), "{link} missing");
    }
    assert!(landing.contains(&vkey));

    let (st, csp, verify) = get("/verify").await;
    assert_eq!(st, 200);
    assert!(
        csp.contains("script-src 'self' 'wasm-unsafe-eval'"),
        "{csp}"
    );
    assert!(
        verify.contains(&format!("value=\"{vkey}\"")),
        "the log key is pre-filled"
    );
    assert!(verify.contains("src=\"/assets/pages.mjs\""));

    let (st, _, log) = get("/log").await;
    assert_eq!(st, 200);
    assert!(
        log.contains("data-label=\"Kind\">Enrolment</td>")
            && log.contains("data-label=\"Kind\">Decision</td>")
    );
    assert!(log.contains("data-label=\"Decision\">approve</td>"));
    // The proofs the page hands to the browser verify against the page's checkpoint.
    let data = element(
        &log,
        "<script type=\"application/json\" id=\"log-data\">",
        "</script>",
    );
    let data: Value = serde_json::from_str(data.split_once('>').unwrap().1).unwrap();
    let size = data["size"].as_u64().unwrap();
    let root = Hash::from_hex(data["root"].as_str().unwrap()).unwrap();
    assert_eq!(data["log_key"], vkey);
    let entries = data["entries"].as_array().unwrap();
    assert_eq!(entries.len() as u64, size);
    for e in entries {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(e["entry"].as_str().unwrap())
            .unwrap();
        let leaf = leaf_hash(&bytes);
        assert_eq!(e["leaf_hash"], leaf.to_hex());
        let proof: Vec<Hash> = e["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| Hash::from_hex(h.as_str().unwrap()).unwrap())
            .collect();
        verify_inclusion(&leaf, e["index"].as_u64().unwrap(), size, &proof, &root).unwrap();
    }
    let (st, _, older) = get("/log?before=1").await;
    assert_eq!(st, 200);
    assert!(older.contains("<tr data-index=\"0\">") && !older.contains("<tr data-index=\"1\">"));

    for icon in ["/favicon.svg", "/favicon.ico"] {
        let r = s.http.get(format!("{}{icon}", s.url)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "image/svg+xml");
    }
    let r = s
        .http
        .get(format!("{}/assets/pages.mjs", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
