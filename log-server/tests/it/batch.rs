//! `POST /v1/log/decisions/batch`: each decision checked and logged on its own, one checkpoint
//! for the answer, per-decision errors that write nothing, and limits on the whole request.

use countersign_verifier::{leaf_hash, verify_checkpoint, verify_inclusion, Hash};
use serde_json::{json, Value};

use crate::common::{hashes, passkey, signed_decision, TestLog};

/// Checks every logged result's proof against the answer's checkpoint and that its leaf hash
/// is the hash of the entry the log serves at its index; returns the indexes (`None` for a
/// refused decision).
async fn check_answer(log: &TestLog, v: &Value) -> Vec<Option<u64>> {
    let cp = verify_checkpoint(v["checkpoint"].as_str().unwrap().as_bytes(), &log.vkey, &[])
        .unwrap()
        .checkpoint;
    assert_eq!(v["tree_size"].as_u64(), Some(cp.size), "{v}");
    let mut out = Vec::new();
    for r in v["results"].as_array().unwrap() {
        let Some(index) = r["index"].as_u64() else {
            assert!(r["error"].is_string(), "{r}");
            assert!(r["status"].as_u64().unwrap() >= 400, "{r}");
            out.push(None);
            continue;
        };
        let leaf = Hash::from_hex(r["leaf_hash"].as_str().unwrap()).unwrap();
        verify_inclusion(
            &leaf,
            index,
            cp.size,
            &hashes(&r["inclusion_proof"]),
            &cp.root,
        )
        .unwrap();
        let (s, e) = log.get(&format!("/v1/log/entries/{index}")).await;
        assert_eq!(s, 200, "{e}");
        let raw = hex::decode(e["entry"].as_str().unwrap()).unwrap();
        assert_eq!(leaf_hash(&raw), leaf);
        out.push(Some(index));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_checks_and_logs_each_decision_on_its_own() {
    let log = TestLog::start().await;
    let mut pk = passkey(40);
    let enrol = log.enrol(&pk, "approver-a").await;
    let mut counting = passkey(41);
    counting.set_counting(10);
    let ce = log.enrol(&counting, "approver-c").await;
    let token = log.submitter().await;
    let earlier = signed_decision(&mut pk, "approver-a", enrol, 1, |_| {});
    let (s, first) = log.post("/v1/log/decisions", &token, &earlier).await;
    assert_eq!(s, 201, "{first}");
    let before = log.checkpoint().await.size;
    assert_eq!(before, 3);

    let good = signed_decision(&mut pk, "approver-a", enrol, 2, |_| {});
    let mut unknown_field = signed_decision(&mut pk, "approver-a", enrol, 3, |_| {});
    unknown_field["extra"] = json!(1);
    let mut clone = passkey(41);
    clone.set_counting(5);
    let batch = json!({"decisions": [
        good.clone(),
        signed_decision(&mut pk, "approver-a", enrol, 4, |o| o.flip_signature_bit = Some(9)),
        signed_decision(&mut pk, "approver-a", enrol, 5, |o| o.origin = "https://evil.test"),
        unknown_field,
        good.clone(),
        earlier,
        signed_decision(&mut passkey(99), "approver-a", enrol, 6, |_| {}),
        signed_decision(&mut counting, "approver-c", ce, 7, |_| {}),
        signed_decision(&mut counting, "approver-c", ce, 8, |_| {}),
        signed_decision(&mut clone, "approver-c", ce, 9, |_| {}),
        json!("not a decision"),
    ]});
    let (s, v) = log.post("/v1/log/decisions/batch", &token, &batch).await;
    assert_eq!(s, 200, "{v}");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 11);
    let codes: Vec<&str> = results
        .iter()
        .map(|r| r["error"].as_str().unwrap_or("logged"))
        .collect();
    assert_eq!(
        codes,
        [
            "logged",
            "invalid_assertion",
            "invalid_assertion",
            "invalid_request",
            "logged",
            "logged",
            "enrolment_mismatch",
            "logged",
            "logged",
            "sign_count",
            "invalid_request",
        ],
        "{v}"
    );
    assert_eq!(
        (v["logged"].as_u64(), v["refused"].as_u64()),
        (Some(5), Some(6))
    );
    let indexes = check_answer(&log, &v).await;
    // The same decision twice in one batch is one leaf; the decision logged before is its
    // original leaf; only three decisions are new.
    assert_eq!(indexes[0], indexes[4]);
    assert_eq!(indexes[5], first["index"].as_u64());
    assert_eq!(results[5]["existing"], true);
    assert_eq!(results[7]["existing"], false);
    let mut new: Vec<u64> = [0, 7, 8].iter().map(|&i| indexes[i].unwrap()).collect();
    new.sort_unstable();
    assert_eq!(new, [before, before + 1, before + 2]);
    assert_eq!(log.checkpoint().await.size, before + 3);

    // Submitting the same batch again appends nothing and answers the same leaves.
    let (s, again) = log.post("/v1/log/decisions/batch", &token, &batch).await;
    assert_eq!(s, 200, "{again}");
    let again_indexes = check_answer(&log, &again).await;
    assert_eq!(again_indexes[..6], indexes[..6]);
    assert_eq!(log.checkpoint().await.size, before + 3);
    log.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_are_refused_whole_and_append_nothing() {
    let log = TestLog::start().await;
    let mut pk = passkey(42);
    let enrol = log.enrol(&pk, "approver-a").await;
    let token = log.submitter().await;
    let good = signed_decision(&mut pk, "approver-a", enrol, 1, |_| {});
    let one = json!({ "decisions": [good.clone()] });
    let refused = [
        ("", one.clone(), 401, "invalid_token"),
        (log.admin.as_str(), one.clone(), 401, "invalid_token"),
        (
            token.as_str(),
            json!({"decisions": []}),
            400,
            "invalid_request",
        ),
        (
            token.as_str(),
            json!({"decisions": vec![good.clone(); 257]}),
            400,
            "invalid_request",
        ),
        (
            token.as_str(),
            json!([good.clone()]),
            400,
            "invalid_request",
        ),
        (
            token.as_str(),
            json!({"decisions": [good.clone()], "extra": 1}),
            400,
            "invalid_request",
        ),
        (
            token.as_str(),
            json!({"decisions": [good.clone()], "pad": "a".repeat(3 << 20)}),
            413,
            "payload_too_large",
        ),
    ];
    for (t, body, status, code) in refused {
        let (s, v) = log.post("/v1/log/decisions/batch", t, &body).await;
        assert_eq!((s, v["error"].as_str()), (status, Some(code)), "{v}");
        assert!(v["error_description"].is_string(), "{v}");
    }
    assert_eq!(log.checkpoint().await.size, 1);

    // A batch larger than one request's body limit (160 KiB) but within the batch limit.
    let many: Vec<Value> = (10..210)
        .map(|n| signed_decision(&mut pk, "approver-a", enrol, n, |_| {}))
        .collect();
    let body = json!({ "decisions": many });
    let len = serde_json::to_vec(&body).unwrap().len();
    assert!(len > countersign_log::DEFAULT_MAX_BODY_BYTES, "{len}");
    let (s, v) = log.post("/v1/log/decisions/batch", &token, &body).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["logged"], 200);
    let indexes = check_answer(&log, &v).await;
    assert!(indexes.iter().all(Option::is_some));
    assert_eq!(log.checkpoint().await.size, 201);
    log.stop().await;
}
