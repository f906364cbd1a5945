//! Exact dedup, identical re-enrolment, credential conflicts and assertion replays.

use countersign_verifier::{leaf_hash, verify_checkpoint, verify_inclusion, Entry, Revocation};

use crate::common::{enrolment_body, hashes, passkey, signed_decision, TestLog};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_get_the_original_leaf() {
    duplicates_on(TestLog::start().await).await;
}

/// The same on the shared driver, where the log reads what the rules need from PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_get_the_original_leaf_on_the_shared_driver() {
    if let Some((_db, log)) = TestLog::on_shared_driver().await {
        duplicates_on(log).await;
    }
}

/// Enrolments, decisions (an assertion replayed) and entries sent twice get the original leaf;
/// the same credential for another approver is a conflict.
async fn duplicates_on(log: TestLog) {
    let mut pk = passkey(20);
    let (s, first) = log
        .post(
            "/v1/log/enrolments",
            &log.admin,
            &enrolment_body(&pk, "approver-a"),
        )
        .await;
    assert_eq!(s, 201);
    let (s, again) = log
        .post(
            "/v1/log/enrolments",
            &log.admin,
            &enrolment_body(&pk, "approver-a"),
        )
        .await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["index"], first["index"]);
    assert_eq!(again["leaf_hash"], first["leaf_hash"]);
    assert_eq!(again["existing"], true);
    // Same credential id, another approver: a conflict, not a second enrolment.
    let (s, v) = log
        .post(
            "/v1/log/enrolments",
            &log.admin,
            &enrolment_body(&pk, "approver-b"),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"], "credential_conflict");

    let token = log.submitter().await;
    let enrol = first["index"].as_u64().unwrap();
    let d = signed_decision(&mut pk, "approver-a", enrol, 1, |_| {});
    let (s, a) = log.post("/v1/log/decisions", &token, &d).await;
    assert_eq!(s, 201, "{a}");
    // The answer is self-contained: the proof verifies against the returned checkpoint.
    let cp = verify_checkpoint(a["checkpoint"].as_str().unwrap().as_bytes(), &log.vkey, &[])
        .unwrap()
        .checkpoint;
    let leaf = countersign_verifier::Hash::from_hex(a["leaf_hash"].as_str().unwrap()).unwrap();
    verify_inclusion(
        &leaf,
        a["index"].as_u64().unwrap(),
        cp.size,
        &hashes(&a["inclusion_proof"]),
        &cp.root,
    )
    .unwrap();
    // Replaying the same assertion returns the original entry, whatever the time now is.
    let (s, r) = log.post("/v1/log/decisions", &token, &d).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["index"], a["index"]);
    assert_eq!(r["leaf_hash"], a["leaf_hash"]);
    let size = log.checkpoint().await.size;
    assert_eq!(size, 2);

    // Exact dedup of entry bytes, also within one batch.
    let e = Entry::Revocation(Revocation {
        approver_id: "approver-a".into(),
        credential_id: pk.credential_id().to_vec(),
        enrolment_index: enrol,
        reason: "lost".into(),
        time_ms: 1,
    })
    .encode()
    .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let h = log.state.log.clone();
        let e = e.clone();
        tasks.push(tokio::spawn(async move {
            h.append_verified_entry(e).await.unwrap()
        }));
    }
    let mut indexes = Vec::new();
    for t in tasks {
        let a = t.await.unwrap();
        assert_eq!(a.leaf_hash, leaf_hash(&e));
        indexes.push(a.index);
    }
    indexes.dedup();
    assert_eq!(indexes, vec![2]);
    assert_eq!(log.checkpoint().await.size, 3);
    log.stop().await;
}

/// `append_verified_entries` (imports, the in-process benchmark): one result per entry, in
/// order; a bad entry fails alone; duplicates in the group, and of entries already logged, get
/// the original leaf; every new entry lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_appends_answer_each_entry() {
    let log = TestLog::start().await;
    let revocation = |n: u64| {
        Entry::Revocation(Revocation {
            approver_id: "approver-g".into(),
            credential_id: vec![7; 16],
            enrolment_index: 0,
            reason: format!("r{n}"),
            time_ms: n,
        })
        .encode()
        .unwrap()
    };
    let h = log.state.log.clone();
    let first = h.append_verified_entry(revocation(0)).await.unwrap();
    assert_eq!(first.index, 0);

    let group = vec![
        revocation(1),
        b"not an entry".to_vec(),
        revocation(2),
        revocation(1),
        revocation(0),
        revocation(3),
    ];
    let results = h.append_verified_entries(group).await;
    assert_eq!(results.len(), 6);
    let ok = |i: usize| results[i].as_ref().unwrap();
    assert!(matches!(
        &results[1],
        Err(countersign_log::AppendError::Refused {
            reason: countersign_log::RefusalReason::InvalidEntry,
            ..
        })
    ));
    // New entries in order, each once; the in-group duplicate and the logged one point back.
    assert_eq!((ok(0).index, ok(0).existing), (1, false));
    assert_eq!((ok(2).index, ok(2).existing), (2, false));
    assert_eq!((ok(3).index, ok(3).existing), (1, true));
    assert_eq!((ok(4).index, ok(4).existing), (0, true));
    assert_eq!((ok(5).index, ok(5).existing), (3, false));
    for (i, n) in [(0, 1), (2, 2), (3, 1), (4, 0), (5, 3)] {
        assert_eq!(ok(i).leaf_hash, leaf_hash(&revocation(n)));
        // Each answer carries a checkpoint that covers its entry.
        let cp = verify_checkpoint(ok(i).checkpoint.as_bytes(), &log.vkey, &[])
            .unwrap()
            .checkpoint;
        assert!(cp.size > ok(i).index);
    }
    assert_eq!(log.checkpoint().await.size, 4);
    // A graceful stop writes the memtables out, so the next start replays no write-ahead log.
    let store = log.state.log.store().unwrap().clone();
    assert!(store.memtable_entries().unwrap() > 0);
    log.stop().await;
    assert_eq!(store.memtable_entries().unwrap(), 0);
}
