//! Each link of a bundle broken on its own. The published vectors (testvectors/bundles) cover
//! tampering a signature or a proof catches; these rebuild the tree and re-sign the checkpoint
//! around a changed entry, so that the later links (enrolment order, credential, statement
//! times) are reached and must refuse on their own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::borrow::ToOwned;
use std::format;
use std::string::ToString;
use std::vec;
use std::vec::Vec;

use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};

use super::*;
use crate::checkpoint::Checkpoint;
use crate::entry::{Enrolment, SignedDecision};
use crate::hash::{node_hash, root_from_leaf_hashes};
use crate::note::{Note, NoteSignature};

const VECTOR: &str = include_str!("../../../testvectors/bundles/valid-es256.json");
const ORIGIN: &str = "countersign.test/log";

/// The published valid ES256 bundle, its action and the log key.
fn vector() -> (EvidenceBundle, Value, VerifierKey) {
    let v: Value = serde_json::from_str(VECTOR).unwrap();
    let bundle = EvidenceBundle::from_json(v["bundle"].to_string().as_bytes()).unwrap();
    let key = VerifierKey::parse(v["log_key"].as_str().unwrap()).unwrap();
    (bundle, v["action"].clone(), key)
}

/// The vector's entries, decoded.
fn entries(b: &EvidenceBundle) -> (Enrolment, SignedDecision) {
    let Entry::Enrolment(e) = Entry::decode(&hex::decode(&b.enrolment.entry).unwrap()).unwrap()
    else {
        panic!("not an enrolment")
    };
    let Entry::Decision(d) = Entry::decode(&hex::decode(&b.decision.entry).unwrap()).unwrap()
    else {
        panic!("not a decision")
    };
    (e, d)
}

/// RFC 6962 section 2.1.1 PATH(m, D[n]), computed the slow way.
fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    if leaves.len() <= 1 {
        return Vec::new();
    }
    let k = leaves.len().next_power_of_two() / 2;
    let k = if k == leaves.len() { k / 2 } else { k };
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(root_from_leaf_hashes(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(root_from_leaf_hashes(&leaves[..k]));
        p
    }
}

/// A new log (own key) holding `entries` at indexes 0.., signed at their size; the bundle's
/// entries are the ones at `enrolment` and `decision`.
fn relog(
    b: &EvidenceBundle,
    entries: &[Vec<u8>],
    enrolment: usize,
    decision: usize,
) -> (EvidenceBundle, VerifierKey) {
    let sk = SigningKey::from_bytes(&[7; 32]);
    let key = VerifierKey::ed25519(ORIGIN, sk.verifying_key().to_bytes()).unwrap();
    let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
    let text = Checkpoint {
        origin: ORIGIN.to_owned(),
        size: leaves.len() as u64,
        root: root_from_leaf_hashes(&leaves),
        extensions: Vec::new(),
    }
    .to_text();
    let mut note = Note::new(&text).unwrap();
    note.push_signature(NoteSignature {
        name: ORIGIN.to_owned(),
        key_id: key.id(),
        signature: sk.sign(text.as_bytes()).to_bytes().to_vec(),
    })
    .unwrap();
    let logged = |i: usize| LoggedEntry {
        index: i as u64,
        entry: hex::encode(&entries[i]),
        inclusion_proof: path(i, &leaves).iter().map(Hash::to_hex).collect(),
    };
    let mut out = b.clone();
    out.checkpoint = note.to_text();
    out.enrolment = logged(enrolment);
    out.decision = logged(decision);
    (out, key)
}

fn enc(e: Entry) -> Vec<u8> {
    e.encode().unwrap()
}

/// The vector's enrolment at 1 and its decision at 2, after an unrelated entry at 0, with the
/// entries (and the statement) changed by `f` first.
fn relogged(
    f: impl FnOnce(&mut Statement, &mut Enrolment, &mut SignedDecision),
) -> (EvidenceBundle, VerifierKey) {
    let (mut b, _, _) = vector();
    let (mut e, mut d) = entries(&b);
    f(&mut b.statement, &mut e, &mut d);
    relog(
        &b,
        &[
            b"unrelated".to_vec(),
            enc(Entry::Enrolment(e)),
            enc(Entry::Decision(d)),
        ],
        1,
        2,
    )
}

fn verify(b: &EvidenceBundle, key: &VerifierKey) -> Result<VerifiedBundle, BundleError> {
    b.verify(key, &BundlePolicy::default())
}

#[test]
fn the_vector_verifies_and_relogging_it_keeps_it_valid() {
    let (b, action, key) = vector();
    let v = verify(&b, &key).unwrap();
    assert_eq!((v.decision_index, v.enrolment_index), (2, 1));
    assert_eq!(v.algorithm, "ES256");
    assert_eq!(v.origin, "https://approve.countersign.test");
    check_execution(&v.statement, &action, Some(v.statement.expires_at)).unwrap();

    let (r, rkey) = relogged(|_, _, _| {});
    let rv = verify(&r, &rkey).unwrap();
    assert_eq!(rv.statement_hash, v.statement_hash);
    assert_eq!(rv.tree_size, 3);
    // The original log key does not sign the new checkpoint.
    assert!(matches!(verify(&r, &key), Err(BundleError::Checkpoint(_))));
}

#[test]
fn json_round_trip_and_tlog_proof() {
    let (b, _, key) = vector();
    let again = EvidenceBundle::from_json(b.to_json().as_bytes()).unwrap();
    assert_eq!(again, b);
    let text = b.decision_tlog_proof().unwrap();
    let proof = TlogProof::parse(&text).unwrap();
    assert_eq!(proof.index, b.decision.index);
    assert_eq!(proof.checkpoint, b.checkpoint);
    assert_eq!(proof.proof.len(), b.decision.inclusion_proof.len());
    proof
        .verify(
            &leaf_hash(&hex::decode(&b.decision.entry).unwrap()),
            &key,
            &[],
        )
        .unwrap();

    let mut bad = b.clone();
    bad.decision.inclusion_proof[0] = "zz".repeat(32);
    let e = bad.decision_tlog_proof().unwrap_err();
    assert_eq!(
        e.to_string(),
        "malformed bundle: decision inclusion proof has a hash that is not 64 hex digits"
    );
}

#[test]
fn from_json_refuses_oversized_unknown_version_and_malformed() {
    let big = vec![b' '; MAX_BUNDLE_BYTES + 1];
    assert_eq!(EvidenceBundle::from_json(&big), Err(BundleError::TooLarge));
    assert_eq!(
        BundleError::TooLarge.to_string(),
        format!("bundle is larger than {MAX_BUNDLE_BYTES} bytes")
    );

    let (b, _, key) = vector();
    let mut v: Value = serde_json::from_str(&b.to_json()).unwrap();
    v["version"] = json!(3);
    assert_eq!(
        EvidenceBundle::from_json(v.to_string().as_bytes()),
        Err(BundleError::UnsupportedVersion)
    );
    // Version 2 parses; its contents are checked by verify.
    v["version"] = json!(2);
    assert_eq!(
        EvidenceBundle::from_json(v.to_string().as_bytes())
            .unwrap()
            .version,
        2
    );
    v["version"] = json!(1);
    v["extra"] = json!(true);
    let e = EvidenceBundle::from_json(v.to_string().as_bytes()).unwrap_err();
    assert!(
        matches!(&e, BundleError::Malformed(why) if why.contains("unknown field `extra`")),
        "{e}"
    );
    let e = EvidenceBundle::from_json(b"{\"version\":1,\"version\":1}").unwrap_err();
    assert!(matches!(e, BundleError::Malformed(_)), "{e}");

    // A bundle built in code with another version is refused by verify too.
    let mut three = b.clone();
    three.version = 3;
    assert_eq!(verify(&three, &key), Err(BundleError::UnsupportedVersion));
    assert_eq!(
        BundleError::UnsupportedVersion.to_string(),
        "bundle version is not 1 or 2"
    );
    // Version 2 needs a version 2 statement and a policy entry.
    let mut two = b.clone();
    two.version = 2;
    let e = verify(&two, &key).unwrap_err();
    assert_eq!(
        e.to_string(),
        "bundle version: a version 2 bundle needs a version 2 statement"
    );
    // Version 1 carries neither approvals nor a policy entry.
    let mut one = b.clone();
    one.policy = Some(b.enrolment.clone());
    let e = verify(&one, &key).unwrap_err();
    assert_eq!(
        e,
        BundleError::VersionMismatch("a version 1 bundle carries no approvals and no policy entry")
    );
    let mut one = b.clone();
    one.approvals = vec![DecisionLink {
        decision: b.decision.clone(),
        enrolment: b.enrolment.clone(),
    }];
    assert!(matches!(
        verify(&one, &key),
        Err(BundleError::VersionMismatch(_))
    ));
}

#[test]
fn entry_hex_and_proof_shape_are_checked_before_hashing() {
    let (b, _, key) = vector();

    let mut upper = b.clone();
    upper.decision.entry = upper.decision.entry.to_uppercase();
    assert_eq!(
        verify(&upper, &key),
        Err(BundleError::Malformed(
            "decision entry is not lowercase hex".into()
        ))
    );

    let mut odd = b.clone();
    odd.enrolment.entry.push('0');
    assert_eq!(
        verify(&odd, &key),
        Err(BundleError::Malformed("enrolment entry is not hex".into()))
    );

    let mut huge = b.clone();
    huge.decision.entry = "00".repeat(crate::entry::MAX_ENTRY_BYTES + 1);
    let e = verify(&huge, &key).unwrap_err();
    assert_eq!(
        e,
        BundleError::Entry {
            which: "decision",
            error: EntryError::TooLarge
        }
    );
    assert_eq!(
        e.to_string(),
        format!(
            "decision entry: entry is larger than {} bytes",
            crate::entry::MAX_ENTRY_BYTES
        )
    );

    let mut long = b.clone();
    long.enrolment.inclusion_proof = vec!["00".repeat(32); MAX_PROOF_HASHES + 1];
    let e = verify(&long, &key).unwrap_err();
    assert_eq!(
        e,
        BundleError::Inclusion {
            which: "enrolment",
            error: ProofError::ProofTooLong
        }
    );
    assert!(e
        .to_string()
        .starts_with("enrolment entry is not in the checkpointed tree: "));

    let mut upper_proof = b;
    upper_proof.decision.inclusion_proof[0] =
        upper_proof.decision.inclusion_proof[0].to_uppercase();
    assert!(matches!(
        verify(&upper_proof, &key),
        Err(BundleError::Malformed(why)) if why.contains("not 64 hex digits")
    ));
}

#[test]
fn entries_that_do_not_decode_or_are_of_the_wrong_kind() {
    let (b, _, _) = vector();
    let (e, d) = entries(&b);
    let e = enc(Entry::Enrolment(e));
    let d = enc(Entry::Decision(d));

    let (r, key) = relog(&b, &[e.clone(), vec![1, 9]], 0, 1);
    let err = verify(&r, &key).unwrap_err();
    assert_eq!(
        err,
        BundleError::Entry {
            which: "decision",
            error: EntryError::UnknownKind
        }
    );
    assert_eq!(err.to_string(), "decision entry: unknown entry kind");

    let (r, key) = relog(&b, &[vec![7], d.clone()], 0, 1);
    assert_eq!(
        verify(&r, &key),
        Err(BundleError::Entry {
            which: "enrolment",
            error: EntryError::UnsupportedVersion
        })
    );

    // The enrolment where the decision belongs, and the other way round.
    let (r, key) = relog(&b, &[e.clone(), e.clone()], 0, 1);
    let err = verify(&r, &key).unwrap_err();
    assert_eq!(err, BundleError::WrongKind("decision"));
    assert_eq!(err.to_string(), "decision entry is of the wrong kind");
    let (r, key) = relog(&b, &[d.clone(), d], 0, 1);
    assert_eq!(verify(&r, &key), Err(BundleError::WrongKind("enrolment")));
}

#[test]
fn the_decision_must_rely_on_an_earlier_enrolment_of_the_same_credential() {
    let (r, key) = relogged(|_, _, d| d.enrolment_index = 0);
    let e = verify(&r, &key).unwrap_err();
    assert_eq!(e, BundleError::EnrolmentIndexMismatch);
    assert_eq!(
        e.to_string(),
        "decision entry relies on a different enrolment than the bundle's"
    );

    // Decision at 1, enrolment at 2, the decision naming index 2.
    let (b, _, _) = vector();
    let (en, mut de) = entries(&b);
    de.enrolment_index = 2;
    let (r, key) = relog(
        &b,
        &[
            b"x".to_vec(),
            enc(Entry::Decision(de)),
            enc(Entry::Enrolment(en)),
        ],
        2,
        1,
    );
    let e = verify(&r, &key).unwrap_err();
    assert_eq!(e, BundleError::EnrolmentNotBeforeDecision);
    assert_eq!(e.to_string(), "enrolment is not logged before the decision");

    let (r, key) = relogged(|_, e, _| e.approver_id = "apv_other".into());
    let e = verify(&r, &key).unwrap_err();
    assert_eq!(e, BundleError::CredentialMismatch("approver"));
    assert_eq!(e.to_string(), "decision and enrolment differ in approver");

    let (r, key) = relogged(|_, e, _| e.credential_id[0] ^= 1);
    assert_eq!(
        verify(&r, &key),
        Err(BundleError::CredentialMismatch("credential ID"))
    );

    // Another valid key (the EdDSA vector's) in the enrolment.
    let v: Value = serde_json::from_str(include_str!(
        "../../../testvectors/bundles/valid-eddsa.json"
    ))
    .unwrap();
    let other = EvidenceBundle::from_json(v["bundle"].to_string().as_bytes()).unwrap();
    let other_key = entries(&other).0.public_key;
    let (r, key) = relogged(|_, e, _| e.public_key = other_key);
    assert_eq!(
        verify(&r, &key),
        Err(BundleError::CredentialMismatch("public key"))
    );
}

#[test]
fn the_statement_must_be_the_logged_one_in_every_field() {
    let (r, key) = relogged(|s, _, _| s.scope = "openid other".into());
    let e = verify(&r, &key).unwrap_err();
    assert_eq!(e, BundleError::StatementHashMismatch);
    assert_eq!(
        e.to_string(),
        "statement does not hash to the statement hash in the decision entry"
    );

    let (r, key) = relogged(|s, _, _| s.version = 2);
    let e = verify(&r, &key).unwrap_err();
    assert_eq!(
        e,
        BundleError::VersionMismatch("a version 1 bundle needs a version 1 statement")
    );
    let (r, key) = relogged(|s, _, _| s.binding_message = "a\nb".into());
    let e = verify(&r, &key).unwrap_err();
    assert!(matches!(e, BundleError::Statement(_)), "{e}");
    assert!(e.to_string().starts_with("statement: "));

    // The logged hash is of a statement naming another approver.
    let (r, key) = relogged(|s, _, d| {
        s.approver_id = "apv_other".into();
        d.statement_hash = s.hash().unwrap();
    });
    let e = verify(&r, &key).unwrap_err();
    assert_eq!(e, BundleError::StatementApproverMismatch);
    assert_eq!(
        e.to_string(),
        "statement approver is not the approver in the decision entry"
    );

    // The logged hash is of a statement saying deny, the entry says approve.
    let (r, key) = relogged(|s, _, d| {
        s.decision = "deny".into();
        d.statement_hash = s.hash().unwrap();
    });
    let e = verify(&r, &key).unwrap_err();
    assert_eq!(e, BundleError::DecisionMismatch);
    assert_eq!(
        e.to_string(),
        "statement decision is not the decision in the entry"
    );
}

#[test]
fn the_log_time_must_fall_within_the_request() {
    let (r, key) = relogged(|s, _, d| d.time_ms = s.expires_at * 1000 + 1);
    let e = verify(&r, &key).unwrap_err();
    assert_eq!(e, BundleError::DecidedAfterExpiry);
    assert_eq!(
        e.to_string(),
        "decision was logged after the request expired"
    );

    let (r, key) = relogged(|s, _, d| d.time_ms = s.requested_at * 1000 - 1);
    let e = verify(&r, &key).unwrap_err();
    assert_eq!(e, BundleError::DecidedBeforeRequest);
    assert_eq!(
        e.to_string(),
        "decision was logged before the request was made"
    );

    // Exactly at expiry is still in time.
    let (r, key) = relogged(|s, _, d| d.time_ms = s.expires_at * 1000);
    verify(&r, &key).unwrap();
}

#[test]
fn the_auditors_relying_party_and_origin_and_uv_are_enforced() {
    let (b, _, key) = vector();
    let pinned = |rp_id, origin, uv| BundlePolicy {
        witnesses: &[],
        rp_id,
        origin,
        require_user_verification: uv,
    };
    let e = b
        .verify(&key, &pinned(Some("evil.test"), None, false))
        .unwrap_err();
    assert_eq!(e, BundleError::RelyingPartyMismatch);
    assert_eq!(
        e.to_string(),
        "relying party ID or origin is not the expected one"
    );
    assert_eq!(
        b.verify(&key, &pinned(None, Some("https://evil.test"), false)),
        Err(BundleError::RelyingPartyMismatch)
    );
    let ok = b
        .verify(
            &key,
            &pinned(
                Some("approve.countersign.test"),
                Some("https://approve.countersign.test"),
                false,
            ),
        )
        .unwrap();
    // The vector's authenticator verified the user, so requiring it changes nothing.
    assert!(ok.user_verified);
    b.verify(&key, &pinned(None, None, true)).unwrap();

    // The bundle's own origin list, changed, no longer admits the assertion's origin.
    let mut other = b;
    other.relying_party.origins = vec!["https://elsewhere.test".into()];
    let e = verify(&other, &key).unwrap_err();
    assert!(matches!(e, BundleError::Assertion(_)), "{e}");
    assert!(e.to_string().starts_with("passkey assertion: "));
}

#[test]
fn the_wrong_log_and_the_checkpoint_error_are_named() {
    let (mut b, _, key) = vector();
    b.statement.log_origin = "another.test/log".into();
    let e = verify(&b, &key).unwrap_err();
    assert_eq!(e, BundleError::WrongLog);
    assert_eq!(
        e.to_string(),
        "statement names a different log than the checkpoint"
    );
    b.checkpoint = "not a note".into();
    let e = verify(&b, &key).unwrap_err();
    assert!(e.to_string().starts_with("checkpoint: "), "{e}");
}

#[test]
fn check_execution_compares_the_canonical_action() {
    let (b, action, key) = vector();
    let s = verify(&b, &key).unwrap().statement;

    check_execution(
        &s,
        &json!({ "authorization_details": action.clone() }),
        None,
    )
    .unwrap();
    let e = check_execution(&s, &action, Some(s.expires_at + 1)).unwrap_err();
    assert_eq!(e, ExecutionError::Expired);
    assert_eq!(e.to_string(), "the approval has expired");

    let mut changed = action.clone();
    changed[0]["instructedAmount"]["amount"] = json!("1250.01");
    let e = check_execution(&s, &changed, None).unwrap_err();
    assert_eq!(e, ExecutionError::ActionMismatch);
    assert!(e
        .to_string()
        .starts_with("action differs from the approved"));

    let e = check_execution(&s, &json!({ "details": [] }), None).unwrap_err();
    assert_eq!(
        e,
        ExecutionError::MalformedAction("object without authorization_details".into())
    );
    assert_eq!(
        e.to_string(),
        "action is malformed: object without authorization_details"
    );
    let e = check_execution(&s, &json!("pay"), None).unwrap_err();
    assert!(matches!(e, ExecutionError::MalformedAction(_)), "{e}");

    let mut denied = s;
    denied.decision = "deny".into();
    let e = check_execution(&denied, &action, None).unwrap_err();
    assert_eq!(e, ExecutionError::Denied);
    assert_eq!(e.to_string(), "the approver denied this request");
}

#[test]
fn proof_paths_match_the_tree() {
    // The test's own PATH agrees with the root it is checked against.
    let leaves: Vec<Hash> = (0u8..7).map(|i| leaf_hash(&[i])).collect();
    for m in 0..leaves.len() {
        crate::proof::verify_inclusion(
            &leaves[m],
            m as u64,
            7,
            &path(m, &leaves),
            &root_from_leaf_hashes(&leaves),
        )
        .unwrap();
    }
    assert_eq!(
        node_hash(&leaves[0], &leaves[1]),
        root_from_leaf_hashes(&leaves[..2])
    );
}

const QUORUM: &str = include_str!("../../../testvectors/bundles/quorum-valid-2-of-3.json");

/// The published 2-of-3 bundle and the log key.
fn quorum_vector() -> (EvidenceBundle, VerifierKey) {
    let v: Value = serde_json::from_str(QUORUM).unwrap();
    let bundle = EvidenceBundle::from_json(v["bundle"].to_string().as_bytes()).unwrap();
    let key = VerifierKey::parse(v["log_key"].as_str().unwrap()).unwrap();
    (bundle, key)
}

/// The 2-of-3 bundle's entries in a new log of the same size (other entries filler), with the
/// policy entry at its index replaced by `policy` (the statement and its signatures untouched).
fn quorum_relogged(policy: Vec<u8>) -> (EvidenceBundle, VerifierKey) {
    let (b, _) = quorum_vector();
    let size = verify(&b, &quorum_vector().1).unwrap().tree_size as usize;
    let mut entries: Vec<Vec<u8>> = (0..size)
        .map(|i| format!("filler {i}").into_bytes())
        .collect();
    let mut links: Vec<&LoggedEntry> = vec![&b.decision, &b.enrolment];
    for a in &b.approvals {
        links.push(&a.decision);
        links.push(&a.enrolment);
    }
    for l in &links {
        entries[l.index as usize] = hex::decode(&l.entry).unwrap();
    }
    let pi = b.policy.as_ref().unwrap().index as usize;
    entries[pi] = policy;
    let (mut out, key) = relog(
        &b,
        &entries,
        b.enrolment.index as usize,
        b.decision.index as usize,
    );
    let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
    let logged = |i: u64| LoggedEntry {
        index: i,
        entry: hex::encode(&entries[i as usize]),
        inclusion_proof: path(i as usize, &leaves).iter().map(Hash::to_hex).collect(),
    };
    out.policy = Some(logged(pi as u64));
    out.approvals = b
        .approvals
        .iter()
        .map(|a| DecisionLink {
            decision: logged(a.decision.index),
            enrolment: logged(a.enrolment.index),
        })
        .collect();
    (out, key)
}

/// The vector's policy (JSON) changed by `f`, as a policy entry.
fn policy_entry(f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let (b, _) = quorum_vector();
    let Entry::Policy(p) = Entry::decode(&hex::decode(&b.policy.unwrap().entry).unwrap()).unwrap()
    else {
        panic!("not a policy entry")
    };
    let mut v: Value = serde_json::from_slice(&p.policy).unwrap();
    f(&mut v);
    let policy = ValidatedPolicy::from_json(v.to_string().as_bytes()).unwrap();
    enc(Entry::Policy(crate::entry::PolicyEntry::of(
        &policy, p.time_ms,
    )))
}

#[test]
fn the_quorum_vector_reports_every_approval_and_the_policy() {
    let (b, key) = quorum_vector();
    let v = verify(&b, &key).unwrap();
    let who: Vec<(&str, u64, u64, bool)> = v
        .approvals
        .iter()
        .map(|a| {
            (
                a.approver_id.as_str(),
                a.decision_index,
                a.enrolment_index,
                a.user_verified,
            )
        })
        .collect();
    assert_eq!(who, [("apv_t1", 7, 2, true), ("apv_t2", 8, 3, true)]);
    assert_eq!(v.approver_id, "apv_t2");
    let p = v.policy.as_ref().unwrap();
    assert_eq!(p.index, 1);
    assert_eq!(p.rule.as_deref(), Some("payments over 1000"));
    assert_eq!((p.quorum, p.eligible.len()), (2, 3));
    let Entry::Policy(pe) =
        Entry::decode(&hex::decode(&b.policy.as_ref().unwrap().entry).unwrap()).unwrap()
    else {
        panic!()
    };
    assert_eq!(p.sha256, crate::hash::sha256(&pe.policy));
    let subjects = v.revocation_subjects();
    assert_eq!(
        subjects
            .iter()
            .map(|s| (s.decision_index, s.enrolment_index))
            .collect::<Vec<_>>(),
        [(7, 2), (8, 3)]
    );
    // Relogging with the same policy entry keeps it valid (the helper itself is sound).
    let (r, rkey) = quorum_relogged(policy_entry(|_| {}));
    assert_eq!(verify(&r, &rkey).unwrap().approvals.len(), 2);
}

#[test]
fn the_logged_policy_must_say_what_the_statement_says() {
    // The rule requires a verified attestation: the enrolments record none.
    let (r, key) = quorum_relogged(policy_entry(|v| {
        v["rules"][0]["require_attestation"] = json!(true)
    }));
    let e = verify(&r, &key).unwrap_err();
    assert_eq!(e, BundleError::RuleRequiresAttestation("apv_t1".into()));
    assert!(e.to_string().contains("verified attestation"), "{e}");

    // The rule allows requests of at most 60 seconds; this one lives 300.
    let (r, key) = quorum_relogged(policy_entry(|v| v["rules"][0]["max_expiry"] = json!(60)));
    let e = verify(&r, &key).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the request lives 300 seconds, longer than the rule's max_expiry of 60"
    );

    // Another group: the eligible approvers differ.
    let (r, key) = quorum_relogged(policy_entry(|v| {
        v["groups"]["treasury"] = json!(["apv_t1", "apv_t2", "apv_t4"])
    }));
    let e = verify(&r, &key).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the logged policy gives approvers apv_t1, apv_t2, apv_t4, the statement says apv_t1, apv_t2, apv_t3"
    );

    // No rule matches under the logged policy, the statement names one.
    let (r, key) = quorum_relogged(policy_entry(|v| {
        v["rules"][0]["when"]["value"] = json!("5000")
    }));
    let e = verify(&r, &key).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the logged policy gives rule none (no rule matched), the statement says \"payments over 1000\""
    );

    // The logged policy cannot evaluate the request (a field it does not have).
    let (r, key) = quorum_relogged(policy_entry(|v| {
        v["rules"][0]["when"]["field"] = json!("instructedAmount.value")
    }));
    let e = verify(&r, &key).unwrap_err();
    assert!(matches!(e, BundleError::PolicyEvaluation(_)), "{e}");
    assert!(e.to_string().contains("it is missing"), "{e}");
}

#[test]
fn the_policy_entry_must_be_a_valid_canonical_policy_entry() {
    // Not a policy entry at all.
    let (r, key) = quorum_relogged(b"not an entry".to_vec());
    let e = verify(&r, &key).unwrap_err();
    assert!(
        matches!(
            e,
            BundleError::Entry {
                which: "policy",
                ..
            }
        ),
        "{e}"
    );
    // An entry of another kind.
    let (b, _) = quorum_vector();
    let (r, key) = quorum_relogged(hex::decode(&b.enrolment.entry).unwrap());
    assert_eq!(verify(&r, &key), Err(BundleError::WrongKind("policy")));
    // A policy entry holding a policy's JSON in another spelling.
    let good = policy_entry(|_| {});
    let Entry::Policy(mut p) = Entry::decode(&good).unwrap() else {
        panic!()
    };
    p.policy.insert(1, b' ');
    let (r, key) = quorum_relogged(enc(Entry::Policy(p)));
    let e = verify(&r, &key).unwrap_err();
    assert!(matches!(e, BundleError::InvalidPolicy(_)), "{e}");
    assert!(e.to_string().starts_with("policy entry: "), "{e}");
    // A proof of the policy entry that does not lead to the root.
    let (b, key) = quorum_vector();
    let mut broken = b.clone();
    broken.policy.as_mut().unwrap().inclusion_proof[0] = "00".repeat(32);
    let e = verify(&broken, &key).unwrap_err();
    assert!(
        matches!(
            e,
            BundleError::Inclusion {
                which: "policy",
                ..
            }
        ),
        "{e}"
    );
    // An approval's proof broken is named as such.
    let mut broken = b;
    broken.approvals[0].enrolment.inclusion_proof[0] = "00".repeat(32);
    let e = verify(&broken, &key).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("approval enrolment entry is not in the checkpointed tree"),
        "{e}"
    );
}
