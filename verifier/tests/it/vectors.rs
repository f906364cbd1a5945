//! The project's generated vectors (`testvectors/`, made by `countersign-testvectors`): every
//! valid one passes, every invalid one fails with the error its `error` field names.

use std::fs;

use countersign_verifier::*;
use serde_json::Value;

use crate::{hexs, vectors_dir};

fn h(v: &Value) -> Hash {
    Hash::from_hex(v.as_str().unwrap()).unwrap()
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array().unwrap().iter().map(h).collect()
}

/// Runs one vector through the library; `Err` carries the error's message.
fn run(kind: &str, v: &Value) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    match kind {
        "inclusion" => verify_inclusion(
            &leaf_hash(&hexs(&v["leaf"])),
            v["index"].as_u64().unwrap(),
            v["tree_size"].as_u64().unwrap(),
            &hashes(&v["proof"]),
            &h(&v["root"]),
        )
        .map_err(|x| e(&x)),
        "consistency" => verify_consistency(
            v["old_size"].as_u64().unwrap(),
            v["new_size"].as_u64().unwrap(),
            &h(&v["old_root"]),
            &h(&v["new_root"]),
            &hashes(&v["proof"]),
        )
        .map_err(|x| e(&x)),
        "checkpoints" => {
            let keys: Vec<VerifierKey> = v["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| VerifierKey::parse(k.as_str().unwrap()).unwrap())
                .collect();
            verify_checkpoint(v["note"].as_str().unwrap().as_bytes(), &keys[0], &keys[1..])
                .map(|_| ())
                .map_err(|x| e(&x))
        }
        "policies" => {
            let p = Policy::parse(v["policy"].as_str().unwrap().as_bytes()).map_err(|x| e(&x))?;
            verify_checkpoint_with_policy(v["note"].as_str().unwrap().as_bytes(), &p)
                .map(|_| ())
                .map_err(|x| e(&x))
        }
        "entries" => {
            let bytes = hexs(&v["entry"]);
            let entry = Entry::decode(&bytes).map_err(|x| e(&x))?;
            assert_eq!(entry.encode().unwrap(), bytes, "canonical");
            if let Entry::Policy(p) = &entry {
                // A policy entry is relied on only if it holds a valid policy's canonical form.
                p.validated().map_err(|x| e(&x))?;
            }
            assert_eq!(entry.kind_name(), v["kind"].as_str().unwrap());
            assert_eq!(leaf_hash(&bytes), h(&v["leaf_hash"]));
            Ok(())
        }
        "assertions" => {
            let key = parse_cose_key(&hexs(&v["public_key"])).map_err(|x| e(&x))?;
            let origin = v["origin"].as_str().unwrap();
            let policy = AssertionPolicy {
                rp_id: v["rp_id"].as_str().unwrap(),
                allowed_origins: &[origin],
                require_user_verification: v["require_uv"].as_bool().unwrap(),
                stored_sign_count: None,
            };
            let (ad, cd, sig) = (
                hexs(&v["authenticator_data"]),
                hexs(&v["client_data_json"]),
                hexs(&v["signature"]),
            );
            let a = Assertion {
                authenticator_data: &ad,
                client_data_json: &cd,
                signature: &sig,
            };
            let challenge = hexs(&v["challenge"]);
            let mut results = crate::known_answer::backends()
                .into_iter()
                .map(|b| verify_assertion_with(b, &key, &a, &challenge, &policy).map(|_| ()));
            let first = results.next().unwrap();
            for other in results {
                assert_eq!(other, first, "backends disagree");
            }
            first.map_err(|x| e(&x))
        }
        "statements" => {
            let bytes = match v.get("statement_text") {
                Some(t) => t.as_str().unwrap().as_bytes().to_vec(),
                None => serde_json::to_vec(&v["statement"]).unwrap(),
            };
            let s = Statement::from_json(&bytes).map_err(|x| e(&x))?;
            assert_eq!(
                String::from_utf8(s.canonical_json().unwrap()).unwrap(),
                v["canonical_json"].as_str().unwrap()
            );
            assert_eq!(
                hex::encode(s.hash().unwrap()),
                v["sha256"].as_str().unwrap()
            );
            let nonce: [u8; 32] = hexs(&v["nonce"]).try_into().unwrap();
            assert_eq!(
                hex::encode(challenge(&nonce, &s.hash().unwrap())),
                v["challenge"].as_str().unwrap()
            );
            Ok(())
        }
        "bundles" => {
            let key = VerifierKey::parse(v["log_key"].as_str().unwrap()).unwrap();
            let b = EvidenceBundle::from_json(&serde_json::to_vec(&v["bundle"]).unwrap())
                .map_err(|x| e(&x))?;
            let require_uv = v.get("require_uv").and_then(Value::as_bool) == Some(true);
            if require_uv {
                // Such a vector is valid for a verifier that does not require UV.
                b.verify(&key, &BundlePolicy::default()).unwrap();
            }
            let policy = BundlePolicy {
                require_user_verification: require_uv,
                ..BundlePolicy::default()
            };
            let ok = b.verify(&key, &policy).map_err(|x| e(&x))?;
            let decision = v
                .get("decision")
                .and_then(Value::as_str)
                .unwrap_or("approve");
            assert_eq!(ok.decision.as_str(), decision);
            if let Some(want) = v.get("approvals") {
                let got: Vec<&str> = ok
                    .approvals
                    .iter()
                    .map(|a| a.approver_id.as_str())
                    .collect();
                assert_eq!(serde_json::json!(got), *want);
                let p = ok.policy.as_ref().unwrap();
                assert_eq!(serde_json::json!(p.rule), v["rule"]);
                assert_eq!(p.quorum, v["quorum"].as_u64().unwrap());
                assert_eq!(p.index, b.policy.as_ref().unwrap().index);
                assert_eq!(ok.revocation_subjects().len(), ok.approvals.len().max(1));
            }
            if let Some(action) = v.get("action") {
                check_execution(&ok.statement, action, None).map_err(|x| e(&x))?;
            }
            // The tlog-proof text form of the same decision verifies too.
            let t = TlogProof::parse(&b.decision_tlog_proof().unwrap()).unwrap();
            t.verify(&ok.decision_leaf_hash, &key, &[]).unwrap();
            Ok(())
        }
        "revocation" => {
            let key = VerifierKey::parse(v["log_key"].as_str().unwrap()).unwrap();
            let b = EvidenceBundle::from_json(&serde_json::to_vec(&v["bundle"]).unwrap())
                .map_err(|x| e(&x))?;
            let ok = b
                .verify(&key, &BundlePolicy::default())
                .map_err(|x| e(&x))?;
            let entries: Vec<Vec<u8>> = v["entries"].as_array().unwrap().iter().map(hexs).collect();
            // Every decision of the bundle (each approval of a quorum); the bundle's own last.
            let mut last = None;
            for subject in ok.revocation_subjects() {
                let c = check_not_revoked(&subject, &entries).map_err(|x| e(&x))?;
                assert_eq!(c.entries, ok.tree_size);
                last = Some(c);
            }
            assert_eq!(last.unwrap().revoked_after, v["revoked_after"].as_u64());
            Ok(())
        }
        "approval-policies" => {
            let bytes = serde_json::to_vec(&v["policy"]).unwrap();
            let p = ValidatedPolicy::from_json(&bytes).map_err(|x| e(&x))?;
            let canonical = p.canonical_json();
            assert_eq!(
                std::str::from_utf8(&canonical).unwrap(),
                v["canonical_json"].as_str().unwrap()
            );
            assert_eq!(hex::encode(p.hash()), v["sha256"].as_str().unwrap());
            assert_eq!(ValidatedPolicy::from_json(&canonical).unwrap(), p);
            for r in v["requests"].as_array().unwrap() {
                let (req, want) = (&r["request"], &r["expect"]);
                let got = p.evaluate(
                    req["client_id"].as_str().unwrap(),
                    &req["authorization_details"],
                );
                match (got, want.get("error")) {
                    (Err(err), Some(phrase)) => {
                        assert!(err.to_string().contains(phrase.as_str().unwrap()), "{err}")
                    }
                    (Ok(Outcome::NoRuleMatched), None) => assert!(want["rule"].is_null(), "{req}"),
                    (Ok(Outcome::Matched(m)), None) => {
                        assert_eq!(m.rule, want["rule"].as_str().unwrap());
                        assert_eq!(m.index as u64, want["index"].as_u64().unwrap());
                        assert_eq!(u64::from(m.quorum), want["quorum"].as_u64().unwrap());
                        assert_eq!(serde_json::json!(m.approvers), want["approvers"]);
                    }
                    (got, _) => panic!("{req}: {got:?}, expected {want}"),
                }
            }
            Ok(())
        }
        other => panic!("unknown vector kind {other}"),
    }
}

#[test]
fn generated_vectors() {
    let mut counts = std::collections::BTreeMap::new();
    for kind in [
        "inclusion",
        "consistency",
        "checkpoints",
        "policies",
        "entries",
        "assertions",
        "statements",
        "bundles",
        "revocation",
        "approval-policies",
    ] {
        let mut paths: Vec<_> = fs::read_dir(vectors_dir().join(kind))
            .unwrap()
            .map(|d| d.unwrap().path())
            .collect();
        paths.sort();
        for p in paths {
            let v: Value = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
            let result = run(kind, &v);
            match v["expected"].as_str().unwrap() {
                "valid" => assert!(result.is_ok(), "{}: {result:?}", p.display()),
                "invalid" => {
                    let err = result.expect_err(&p.display().to_string());
                    let want = v["error"].as_str().unwrap();
                    assert!(
                        err.contains(want),
                        "{}: error {err:?} does not name {want:?}",
                        p.display()
                    );
                    assert!(
                        !v["flags"].as_array().unwrap().is_empty(),
                        "{}",
                        p.display()
                    );
                }
                x => panic!("{}: expected {x}", p.display()),
            }
            *counts
                .entry((kind, v["expected"].as_str().unwrap().to_owned()))
                .or_insert(0) += 1;
        }
    }
    // Every kind has both positive and negative vectors.
    for kind in [
        "inclusion",
        "consistency",
        "checkpoints",
        "policies",
        "entries",
        "assertions",
        "statements",
        "bundles",
        "revocation",
        "approval-policies",
    ] {
        assert!(
            counts.get(&(kind, "valid".into())).copied().unwrap_or(0) > 0,
            "{kind}"
        );
        assert!(
            counts.get(&(kind, "invalid".into())).copied().unwrap_or(0) > 0,
            "{kind}"
        );
    }
}
