//! The clean-up sweep at its edges: a clock before the retention window, a claim left by a
//! crash (kept through its grace), and a record that does not parse (left alone, the index
//! still completed).

use std::time::Duration;

use countersign_approvals::cleanup::sweep;
use countersign_approvals::store::EXPIRY_INDEX_MARKER;
use countersign_approvals::{CibaStore, Secret};
use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn a_crashed_claim_is_kept_through_its_grace_and_junk_is_left_alone() {
    let s = Server::start_with(|mut c| {
        c.request_retention_secs = 100;
        // The sweeps below are called directly, with a chosen clock.
        c.cleanup_interval = Duration::from_secs(3600);
        c
    })
    .await;
    let c = s.approvals.clone();
    let client = s.add_client("agent-cl", "poll", None).await;
    let _alice = s.add_approver("apv_cl", 71).await;
    let id = client.ask("apv_cl", &[]).await;
    let key = CibaStore::request_key(&Secret::new(&id).sha256());

    // The request as a crash in the middle of a decision leaves it: claimed.
    let mut v: Value =
        serde_json::from_slice(&c.store.get_raw(&key).await.unwrap().unwrap()).unwrap();
    v["status"] = json!("deciding");
    let expires_at = v["statement"]["expires_at"].as_u64().unwrap();
    // A record that does not parse, and no index marker, so the sweep re-indexes everything.
    let junk = CibaStore::record_key_of(&"ab".repeat(32));
    c.store
        .write(
            &[
                (key.clone(), serde_json::to_vec(&v).unwrap()),
                (junk.clone(), b"not a record".to_vec()),
            ],
            &[EXPIRY_INDEX_MARKER.to_owned()],
        )
        .await
        .unwrap();

    // A clock before the retention window deletes nothing (and still completes the index).
    assert_eq!(sweep(&c, 50).await.unwrap(), 0);
    assert!(c
        .store
        .get_raw(EXPIRY_INDEX_MARKER)
        .await
        .unwrap()
        .is_some());
    // Past the retention window but within the claim's 60 s grace: kept.
    assert_eq!(sweep(&c, expires_at + 100 + 30).await.unwrap(), 0);
    assert!(c.store.get_raw(&key).await.unwrap().is_some());
    // Once the grace is over too, it goes; the unreadable record stays for an operator.
    assert_eq!(sweep(&c, expires_at + 100 + 61).await.unwrap(), 1);
    assert!(c.store.get_raw(&key).await.unwrap().is_none());
    assert_eq!(
        c.store.get_raw(&junk).await.unwrap().as_deref(),
        Some(&b"not a record"[..])
    );
    let (st, v) = client.token(&id).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
}
