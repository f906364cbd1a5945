//! Evidence bundles (`spec/evidence-bundle.md`): strict JSON, then every link verified against
//! the test vectors' log key (entries, proofs, checkpoint, statement, assertion). A parsed
//! bundle's JSON parses back to the same bundle, and its tlog-proof text parses.
#![no_main]

use countersign_fuzz::{log_key, witness_key};
use countersign_verifier::{bundle_report, BundlePolicy, EvidenceBundle, Expectation, TlogProof};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(b) = EvidenceBundle::from_json(data) else {
        return;
    };
    let json = b.to_json();
    match EvidenceBundle::from_json(json.as_bytes()) {
        Ok(again) => assert_eq!(again, b, "a bundle's own JSON parses to another bundle"),
        Err(e) => panic!("a bundle's own JSON is refused: {e}"),
    }
    if let Ok(text) = b.decision_tlog_proof() {
        assert!(
            TlogProof::parse(&text).is_ok(),
            "own tlog-proof text refused"
        );
    }
    let witnesses = [witness_key()];
    let policy = BundlePolicy {
        witnesses: &witnesses,
        ..BundlePolicy::default()
    };
    if let Ok(v) = b.verify(&log_key(), &policy) {
        assert_eq!(v.statement, b.statement);
        assert_eq!(v.decision_index, b.decision.index);
        // A verified approval carries its quorum of distinct approvers; a denial none.
        match v.decision {
            countersign_verifier::Decision::Approve => {
                assert!(v.approvals.len() as u64 >= v.statement.quorum())
            }
            countersign_verifier::Decision::Deny => assert!(v.approvals.is_empty()),
        }
        let _ = bundle_report(&b, &v, Expectation::Any);
    }
});
