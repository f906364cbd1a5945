//! Restoring an online backup: the real binary serves the backup directory as its data
//! directory, with everything the front end knew (clients, approvers and their passkeys and
//! sessions, requests, token keys) and the log's tree, and goes on from there.

use serde_json::{json, Value};

use crate::common::{verify_jwt, Api};
use crate::flow_load::{flow_args, flow_server};
use crate::log_common::hashes;
use crate::process::{free_port, Process};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_as_a_working_server() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut server, api, vkey, client, mut approvers) = flow_server(
        &tmp.path().join("data"),
        None,
        "agent-restore",
        [("apv_restore".to_owned(), 91)],
    )
    .await;
    let (alice, _) = approvers.remove(0);
    // An approval whose token was not fetched yet, and a request still open.
    let approved = client.ask("apv_restore", &[]).await;
    let receipt = alice.decide(&alice.only_request().await, "approve").await;
    let open = client
        .ask("apv_restore", &[("binding_message", "Still open")])
        .await;
    let open_rid = alice.only_request().await;
    let jwks = api.get_json("/jwks.json").await;

    let backup = tmp.path().join("backup");
    let (st, v) = api
        .admin_post("/v1/admin/backup", json!({"to": backup}))
        .await;
    assert_eq!(st, 200, "{v}");
    let backup_size = v["tree_size"].as_u64().unwrap();
    let backup_cp = api.checkpoint(&vkey).await;
    assert_eq!(backup_cp.size, backup_size);
    // The backup holds the decision's evidence record and the audit events (the `ciba` family),
    // readable offline as the exporter reads them.
    {
        use countersign_approvals::audit;
        let d = audit::open_data_dir(&backup).unwrap();
        let index = receipt["log_index"].as_u64().unwrap();
        let e = audit::evidence(&d.ciba, index).unwrap().unwrap();
        assert_eq!(e.statement.decision, "approve");
        let (events, _) = audit::events_after(&d.ciba, None, 100).unwrap();
        assert!(
            events.iter().any(|r| r.log_index == Some(index)),
            "{events:?}"
        );
        let st = audit::statements(&d.ciba, 0, u64::MAX, 10).unwrap();
        assert_eq!(st.iter().map(|s| s.index).collect::<Vec<_>>(), [index]);
    }
    // The original goes on (its later state is not in the backup), then is lost.
    let later = client
        .ask("apv_restore", &[("binding_message", "After")])
        .await;
    server.kill();

    let restored = Process::spawn(&backup, free_port(), &flow_args(None));
    restored.wait_ready(&api.http).await;
    // The admin token's plain text is not in the backup; the token still works (its hash is).
    assert!(!backup.join("admin.token").exists());
    let api2 = Api {
        url: restored.url.clone(),
        admin: api.admin.clone(),
        http: api.http.clone(),
    };
    let (st, v) = api2
        .admin_post(
            "/v1/admin/approvers",
            json!({"approver_id": "apv_new", "email": "n@example.com"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        api2.admin, api.admin,
        "the admin token came with the backup"
    );
    assert_eq!(restored.read("log.vkey"), server.read("log.vkey"));
    let client = crate::common::Client {
        url: api2.url.clone(),
        ..client
    };
    let alice = crate::common::Approver {
        url: api2.url.clone(),
        ..alice
    };
    // The same log, signed with the same key, and the same token keys.
    let cp = api2.checkpoint(&vkey).await;
    assert_eq!((cp.size, cp.root), (backup_cp.size, backup_cp.root));
    assert_eq!(api2.get_json("/jwks.json").await, jwks);
    // The approval's token, from the restored server, for the decision in the restored log.
    let (st, t) = client.token(&approved).await;
    assert_eq!(st, 200, "{t}");
    let (_, claims) = verify_jwt(&api2, t["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["log_index"], receipt["log_index"]);
    let (st, text) = client.evidence(&approved, None).await;
    assert_eq!(st, 200, "{text}");
    countersign_verifier::EvidenceBundle::from_json(text.as_bytes())
        .unwrap()
        .verify(&vkey, &countersign_verifier::BundlePolicy::default())
        .unwrap();
    // What happened after the backup is not there.
    let (st, t) = client.token(&later).await;
    assert_eq!(
        (st, t["error"].as_str()),
        (400, Some("invalid_grant")),
        "{t}"
    );
    // The open request: still signed in, the approver decides it with the same passkey.
    assert_eq!(alice.only_request().await, open_rid);
    let r2 = alice.decide(&open_rid, "approve").await;
    assert_eq!(r2["log_index"].as_u64(), Some(backup_size), "{r2}");
    let (st, t) = client.token(&open).await;
    assert_eq!(st, 200, "{t}");
    // The restored log extends the backed-up tree.
    let now = api2.checkpoint(&vkey).await;
    assert!(now.size > backup_size);
    let v: Value = api2
        .get_json(&format!(
            "/v1/log/proof/consistency?first={backup_size}&second={}",
            now.size
        ))
        .await;
    countersign_verifier::verify_consistency(
        backup_size,
        now.size,
        &backup_cp.root,
        &now.root,
        &hashes(&v["consistency_proof"]),
    )
    .unwrap();
    drop(restored);
}
