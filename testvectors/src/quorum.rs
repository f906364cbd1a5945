//! Vectors of approval policies in the log (issue 18): policy entries (`entries/policy-*`),
//! version 2 statements (`statements/v2-*`) and version 2 evidence bundles (`bundles/quorum-*`),
//! the bundles built from a small log holding a policy entry, the passkey enrolments of three
//! treasury approvers (one with a second passkey) and of an approver outside the group, and
//! decisions signed by deterministic software passkeys. Every expected outcome is checked
//! against the verifier before a file is written.

use countersign_verifier::{
    flags, inclusion_proof_ranges, leaf_hash, AttestationRecord, BundlePolicy, Decision, Enrolment,
    Entry, EvidenceBundle, Hash, LoggedEntry, PolicyEntry, RelyingParty, SignedDecision, Statement,
    StatementPolicy, ValidatedPolicy,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::generate::{
    checkpoint_body, log_signing_key, log_vkey, put, range_hashes, sample_statement, sign_note,
    Files, ORIGIN, RP_ID,
};
use crate::passkey::{Alg, AssertOptions, SoftPasskey};

/// The approvers of the treasury group.
pub const TREASURY: [&str; 3] = ["apv_t1", "apv_t2", "apv_t3"];
/// An approver outside every group (the v1 sample's approver).
pub const OUTSIDER: &str = "apv_7f3a9c";
/// The rule of the sample policy.
pub const RULE: &str = "payments over 1000";

/// The sample policy: payments over 1000 need two of the three treasury approvers, with user
/// verification; `quorum` and `rule` vary it for the vector of a policy the statement misstates.
pub fn sample_policy_with(rule: &str, quorum: u32) -> ValidatedPolicy {
    let p = json!({
        "version": 1,
        "groups": {"treasury": TREASURY},
        "rules": [{
            "name": rule,
            "when": {"type": "payment_initiation", "field": "instructedAmount.amount", "op": "gt", "value": "1000"},
            "approvers": "treasury",
            "quorum": quorum,
            "require_uv": true,
            "max_expiry": 600,
        }],
    });
    let bytes = serde_json::to_vec(&p).unwrap_or_default();
    let v = ValidatedPolicy::from_json(&bytes);
    assert!(v.is_ok(), "the sample policy is refused: {v:?}");
    v.unwrap_or_else(|_| unreachable!())
}

/// [`sample_policy_with`] the sample rule, quorum 2.
pub fn sample_policy() -> ValidatedPolicy {
    sample_policy_with(RULE, 2)
}

/// A version 2 statement for request `request` (amount `amount` EUR) under the policy entry at
/// `index`, naming `rule`, `quorum` and `approvers`.
pub fn v2_statement(
    request: &str,
    amount: &str,
    decision: Decision,
    index: u64,
    rule: Option<&str>,
    quorum: u64,
    approvers: &[&str],
) -> Statement {
    let mut s = sample_statement(request, decision);
    s.version = 2;
    s.approver_id = String::new();
    s.authorization_details[0]["instructedAmount"]["amount"] = json!(amount);
    s.binding_message = format!("Pay EUR {amount} to ACME GmbH");
    s.policy = Some(StatementPolicy {
        index,
        rule: rule.map(str::to_owned),
        quorum,
        approvers: approvers.iter().map(|a| (*a).to_owned()).collect(),
    });
    s
}

/// A log under construction, with the passkeys that enrolled in it.
struct Log {
    entries: Vec<Vec<u8>>,
    time_ms: u64,
}

impl Log {
    fn new() -> Self {
        Log {
            entries: vec![b"unrelated entry 0".to_vec()],
            time_ms: 1_767_225_000_000,
        }
    }

    fn push(&mut self, e: &Entry) -> u64 {
        self.entries.push(e.encode().unwrap_or_default());
        self.entries.len() as u64 - 1
    }

    fn tick(&mut self) -> u64 {
        self.time_ms += 1_000;
        self.time_ms
    }

    fn policy(&mut self, p: &ValidatedPolicy) -> u64 {
        let t = self.tick();
        self.push(&Entry::Policy(PolicyEntry::of(p, t)))
    }

    fn enrol(&mut self, approver: &str, pk: &SoftPasskey) -> u64 {
        let time_ms = self.tick();
        self.push(&Entry::Enrolment(Enrolment {
            approver_id: approver.into(),
            credential_id: pk.credential_id().to_vec(),
            public_key: pk.cose_public_key(),
            aaguid: [0; 16],
            attestation_format: "none".into(),
            attestation: AttestationRecord::NotRecorded,
            time_ms,
        }))
    }

    /// `approver`'s decision on `s` with passkey `pk` enrolled at `enrolment`, logged during
    /// the request (a minute after it was made, one second apart).
    fn decide(
        &mut self,
        approver: &str,
        pk: &mut SoftPasskey,
        enrolment: u64,
        s: &Statement,
        flags_byte: u8,
    ) -> u64 {
        let sh = s.hash().unwrap_or_default();
        let n = self.entries.len() as u64;
        let nonce: [u8; 32] = Sha256::digest(format!("quorum nonce {n}")).into();
        let challenge = countersign_verifier::challenge(&nonce, &sh);
        let a = pk.assert_with(&AssertOptions {
            flags: flags_byte,
            ..AssertOptions::new(&challenge, ORIGIN)
        });
        let decision = s.decision().unwrap_or(Decision::Deny);
        self.push(&Entry::Decision(SignedDecision {
            decision,
            statement_hash: sh,
            nonce,
            approver_id: approver.into(),
            credential_id: pk.credential_id().to_vec(),
            public_key: pk.cose_public_key(),
            authenticator_data: a.authenticator_data,
            client_data_json: a.client_data_json,
            signature: a.signature,
            time_ms: s.requested_at * 1000 + 60_000 + n * 1_000,
            enrolment_index: enrolment,
        }))
    }

    /// The bundle of `s`: its decision and enrolment `own`, the other approvals `approvals`, and
    /// the policy entry at `policy`, all proved against a checkpoint of the whole log.
    fn bundle(
        &self,
        s: &Statement,
        own: (u64, u64),
        approvals: &[(u64, u64)],
        policy: Option<u64>,
    ) -> EvidenceBundle {
        let leaves: Vec<Hash> = self.entries.iter().map(|e| leaf_hash(e)).collect();
        let size = leaves.len() as u64;
        let logged = |i: u64| LoggedEntry {
            index: i,
            entry: hex::encode(&self.entries[i as usize]),
            inclusion_proof: range_hashes(
                &leaves,
                &inclusion_proof_ranges(i, size).unwrap_or_default(),
            ),
        };
        let body = checkpoint_body(&leaves);
        EvidenceBundle {
            version: if policy.is_some() { 2 } else { 1 },
            statement: s.clone(),
            decision: logged(own.0),
            enrolment: logged(own.1),
            approvals: approvals
                .iter()
                .map(|&(d, e)| countersign_verifier::DecisionLink {
                    decision: logged(d),
                    enrolment: logged(e),
                })
                .collect(),
            policy: policy.map(logged),
            checkpoint: sign_note(&body, &log_signing_key(), &log_vkey()),
            relying_party: RelyingParty {
                rp_id: RP_ID.into(),
                origins: vec![ORIGIN.into()],
            },
            parties: None,
        }
    }
}

fn passkey(seed: u64) -> SoftPasskey {
    SoftPasskey::new(Alg::Es256, seed, RP_ID)
}

/// One bundle of the quorum vectors: name, bundle (JSON), the phrase its error names (`None`:
/// valid), description.
pub type Case = (&'static str, Value, Option<&'static str>, &'static str);

/// The version 2 bundles of `bundles/quorum-*`, built from the sample quorum log (and, for a
/// policy that says otherwise, two small logs of their own).
pub fn quorum_bundles() -> Vec<Case> {
    const UPUV: u8 = flags::UP | flags::UV;
    let mut log = Log::new();
    let policy = log.policy(&sample_policy()); // 1
    let mut t1 = passkey(300);
    let mut t2 = passkey(301);
    let mut t3 = passkey(302);
    let mut t1b = passkey(303);
    let mut out = passkey(304);
    let e1 = log.enrol("apv_t1", &t1);
    let e2 = log.enrol("apv_t2", &t2);
    let e3 = log.enrol("apv_t3", &t3);
    let e1b = log.enrol("apv_t1", &t1b);
    let eo = log.enrol(OUTSIDER, &out);
    let approve = v2_statement(
        "0101",
        "1250.00",
        Decision::Approve,
        policy,
        Some(RULE),
        2,
        &TREASURY,
    );
    let deny = v2_statement(
        "0102",
        "1250.00",
        Decision::Deny,
        policy,
        Some(RULE),
        2,
        &TREASURY,
    );
    let small = v2_statement(
        "0103",
        "500.00",
        Decision::Approve,
        policy,
        None,
        1,
        &[OUTSIDER],
    );
    let d1 = log.decide("apv_t1", &mut t1, e1, &approve, UPUV);
    let d2 = log.decide("apv_t2", &mut t2, e2, &approve, UPUV);
    let d3 = log.decide("apv_t3", &mut t3, e3, &deny, UPUV);
    let d1b = log.decide("apv_t1", &mut t1b, e1b, &approve, UPUV);
    let dout = log.decide(OUTSIDER, &mut out, eo, &approve, UPUV);
    let dsmall = log.decide(OUTSIDER, &mut out, eo, &small, UPUV);
    let d3nouv = log.decide("apv_t3", &mut t3, e3, &approve, flags::UP);
    let d1deny = log.decide("apv_t1", &mut t1, e1, &deny, UPUV);

    let v = |b: &EvidenceBundle| serde_json::to_value(b).unwrap_or_default();
    let valid = log.bundle(&approve, (d2, e2), &[(d1, e1)], Some(policy));
    let mut cases: Vec<Case> = vec![
        (
            "quorum-valid-2-of-3",
            v(&valid),
            None,
            "a 2-of-3 approval: apv_t1 then apv_t2 approve a payment of EUR 1250.00 under the \
             logged rule \"payments over 1000\"",
        ),
        (
            "quorum-valid-denial",
            v(&log.bundle(&deny, (d3, e3), &[], Some(policy))),
            None,
            "a denial by one eligible approver under the 2-of-3 rule",
        ),
        (
            "quorum-valid-no-rule",
            v(&log.bundle(&small, (dsmall, eo), &[], Some(policy))),
            None,
            "a payment of EUR 500.00, which no rule matches: the named approver alone, quorum 1",
        ),
        (
            "quorum-approval-removed",
            v(&log.bundle(&approve, (d2, e2), &[], Some(policy))),
            Some("2 approvals needed, 1 present"),
            "the 2-of-3 bundle with apv_t1's approval removed",
        ),
        (
            "quorum-non-eligible-approver",
            v(&log.bundle(&approve, (d2, e2), &[(dout, eo)], Some(policy))),
            Some("not one of the statement's eligible approvers"),
            "the 2-of-3 bundle with apv_t1's approval swapped for a validly signed approval by \
             an approver outside the treasury group",
        ),
        (
            "quorum-duplicate-approver",
            v(&log.bundle(&approve, (d1b, e1b), &[(d1, e1)], Some(policy))),
            Some("approved more than once"),
            "two approvals by apv_t1 with two passkeys: one approver counts once",
        ),
        (
            "quorum-out-of-order",
            v(&log.bundle(&approve, (d1, e1), &[(d2, e2)], Some(policy))),
            Some("not in log order"),
            "the bundle's decision is not the approval that completed the quorum (the last)",
        ),
        (
            "quorum-rule-requires-uv",
            v(&log.bundle(&approve, (d3nouv, e3), &[(d1, e1)], Some(policy))),
            Some("requires user verification"),
            "the rule requires user verification and apv_t3's approval has UP without UV",
        ),
        (
            "quorum-denial-with-approvals",
            v(&log.bundle(&deny, (d1deny, e1), &[(d3, e3)], Some(policy))),
            Some("a denial carries approvals"),
            "a denial bundle carrying another decision (apv_t3's denial) as an approval",
        ),
        (
            "quorum-policy-wrong-index",
            v(&log.bundle(&approve, (d2, e2), &[(d1, e1)], Some(0))),
            Some("the statement names the policy entry at log index 1"),
            "the bundle's policy entry is another entry than the one the statement names",
        ),
        (
            "quorum-without-policy-entry",
            {
                let mut b = valid.clone();
                b.policy = None;
                v(&b)
            },
            Some("needs the policy entry"),
            "a version 2 bundle without its policy entry",
        ),
        (
            "quorum-bundle-version-1",
            {
                let mut b = valid.clone();
                b.version = 1;
                v(&b)
            },
            Some("a version 1 bundle needs a version 1 statement"),
            "the 2-of-3 bundle labelled version 1",
        ),
    ];
    let mut lowered = v(&valid);
    lowered["statement"]["policy"]["quorum"] = json!(1);
    cases.push((
        "quorum-lowered",
        lowered,
        Some("does not hash to the statement hash"),
        "the 2-of-3 bundle with the statement's quorum lowered to 1",
    ));
    let mut fewer = v(&valid);
    fewer["statement"]["policy"]["approvers"] = json!(["apv_t1", "apv_t2"]);
    cases.push((
        "quorum-approvers-changed",
        fewer,
        Some("does not hash to the statement hash"),
        "the 2-of-3 bundle with apv_t3 removed from the statement's approvers",
    ));
    // A statement naming a policy entry logged only after the decisions on it.
    {
        let mut later = Log::new();
        let mut a = passkey(312);
        let mut b = passkey(313);
        let ea = later.enrol("apv_t1", &a);
        let eb = later.enrol("apv_t2", &b);
        let p = later.entries.len() as u64 + 2;
        let s = v2_statement(
            "0105",
            "1250.00",
            Decision::Approve,
            p,
            Some(RULE),
            2,
            &TREASURY,
        );
        let da = later.decide("apv_t1", &mut a, ea, &s, UPUV);
        let db = later.decide("apv_t2", &mut b, eb, &s, UPUV);
        assert_eq!(later.policy(&sample_policy()), p);
        cases.push((
            "quorum-policy-after-decision",
            v(&later.bundle(&s, (db, eb), &[(da, ea)], Some(p))),
            Some("the policy entry is not logged before the decision"),
            "the statement names a policy entry logged after the approvals",
        ));
    }
    // A log whose policy entry says otherwise than the statements the server had signed: the
    // signatures hold, and the statement is refused against the logged policy.
    for (name, policy_text, quorum, want, description) in [
        (
            "quorum-other-policy-quorum",
            sample_policy_with(RULE, 3),
            2,
            "the logged policy gives quorum 3, the statement says 2",
            "the statement says quorum 2, the logged policy entry it names requires 3",
        ),
        (
            "quorum-other-policy-rule",
            sample_policy_with("large payments", 2),
            2,
            "the logged policy gives rule \"large payments\"",
            "the statement names rule \"payments over 1000\", the logged policy's rule is \
             \"large payments\"",
        ),
    ] {
        let mut other = Log::new();
        let p = other.policy(&policy_text);
        let mut a = passkey(310);
        let mut b = passkey(311);
        let ea = other.enrol("apv_t1", &a);
        let eb = other.enrol("apv_t2", &b);
        let s = v2_statement(
            "0104",
            "1250.00",
            Decision::Approve,
            p,
            Some(RULE),
            quorum,
            &TREASURY,
        );
        let da = other.decide("apv_t1", &mut a, ea, &s, UPUV);
        let db = other.decide("apv_t2", &mut b, eb, &s, UPUV);
        cases.push((
            name,
            v(&other.bundle(&s, (db, eb), &[(da, ea)], Some(p))),
            Some(want),
            description,
        ));
    }
    cases
}

/// Version 2 evidence bundles (`bundles/quorum-*`).
pub fn bundles(f: &mut Files) {
    let vkey = log_vkey();
    for (name, bundle, error, description) in quorum_bundles() {
        let parsed = EvidenceBundle::from_json(&serde_json::to_vec(&bundle).unwrap_or_default());
        let got = parsed.and_then(|b| b.verify(&vkey, &BundlePolicy::default()));
        let decision = bundle["statement"]["decision"].clone();
        match error {
            None => {
                assert!(got.is_ok(), "{name}: {got:?}");
                let Ok(ok) = got else { continue };
                let approvals: Vec<&str> = ok
                    .approvals
                    .iter()
                    .map(|a| a.approver_id.as_str())
                    .collect();
                put(
                    f,
                    format!("bundles/{name}.json"),
                    json!({
                        "description": description, "log_key": vkey.to_vkey(), "bundle": bundle,
                        "decision": decision, "approvals": approvals,
                        "rule": bundle["statement"]["policy"]["rule"],
                        "quorum": bundle["statement"]["policy"]["quorum"],
                        "expected": "valid", "flags": [],
                    }),
                );
            }
            Some(want) => {
                let err = got.err().map(|e| e.to_string()).unwrap_or_default();
                assert!(err.contains(want), "{name}: {err:?} does not name {want:?}");
                let flag = name.trim_start_matches("quorum-");
                put(
                    f,
                    format!("bundles/{name}.json"),
                    json!({
                        "description": description, "log_key": vkey.to_vkey(), "bundle": bundle,
                        "expected": "invalid", "flags": [flag], "error": want,
                    }),
                );
            }
        }
    }
}

/// Policy entries (`entries/policy-*`).
pub fn entries(f: &mut Files) {
    let entry = Entry::Policy(PolicyEntry::of(&sample_policy(), 1_767_225_001_000));
    let Ok(base) = entry.encode() else { return };
    put(
        f,
        "entries/valid-policy.json".into(),
        json!({
            "description": "a canonical policy entry: the sample 2-of-3 policy's RFC 8785 JSON and the time it was logged",
            "entry": hex::encode(&base), "leaf_hash": leaf_hash(&base).to_hex(),
            "kind": "policy", "expected": "valid", "flags": [],
        }),
    );
    let policy_len = base.len() - 2 - 2 - 8;
    let with_len = |len: u16, body: &[u8]| {
        let mut b = base[..2].to_vec();
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(body);
        b.extend_from_slice(&base[base.len() - 8..]);
        b
    };
    let body = &base[4..4 + policy_len];
    // The same policy, spelled with a space: valid JSON of a valid policy, but not its
    // canonical form, so one policy has one entry.
    let mut spaced = b"{ ".to_vec();
    spaced.extend_from_slice(&body[1..]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "policy-entry-truncated",
            base[..base.len() - 1].to_vec(),
            "truncated",
        ),
        (
            "policy-entry-empty-policy",
            with_len(0, &[]),
            "entry field policy is invalid",
        ),
        (
            "policy-entry-length-past-end",
            with_len(policy_len as u16 + 9, body),
            "truncated",
        ),
        (
            "policy-entry-trailing-bytes",
            [&base[..], &[0]].concat(),
            "after its last field",
        ),
        (
            "policy-entry-not-canonical",
            with_len(spaced.len() as u16, &spaced),
            "canonical form",
        ),
        (
            "policy-entry-invalid-policy",
            {
                let text = String::from_utf8_lossy(body).replace("\"quorum\":2", "\"quorum\":4");
                with_len(text.len() as u16, text.as_bytes())
            },
            "quorum 4 must be between 1 and the 3 eligible approvers",
        ),
    ];
    for (flag, bytes, err) in cases {
        let got = Entry::decode(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|e| match e {
                Entry::Policy(p) => p.validated().map(|_| ()).map_err(|e| e.to_string()),
                _ => Ok(()),
            });
        let msg = got.err().unwrap_or_default();
        assert!(msg.contains(err), "{flag}: {msg:?} does not name {err:?}");
        put(
            f,
            format!("entries/{flag}.json"),
            json!({
                "description": format!("a policy entry, {flag}"),
                "entry": hex::encode(&bytes), "expected": "invalid", "flags": [flag], "error": err,
            }),
        );
    }
}

/// Version 2 statements (`statements/v2-*`).
pub fn statements(f: &mut Files) {
    let s = v2_statement(
        "0101",
        "1250.00",
        Decision::Approve,
        1,
        Some(RULE),
        2,
        &TREASURY,
    );
    let (Ok(c), Ok(h)) = (s.canonical_json(), s.hash()) else {
        return;
    };
    let nonce = [0x5au8; 32];
    put(
        f,
        "statements/v2-valid-quorum.json".into(),
        json!({
            "description": "a version 2 statement under the policy entry at log index 1: rule \"payments over 1000\", 2 of 3 treasury approvers; its RFC 8785 form, hash and challenge",
            "statement": serde_json::to_value(&s).unwrap_or_default(),
            "canonical_json": String::from_utf8_lossy(&c),
            "sha256": hex::encode(h),
            "nonce": hex::encode(nonce),
            "challenge": hex::encode(countersign_verifier::challenge(&nonce, &h)),
            "expected": "valid", "flags": [],
        }),
    );
    let no_rule = v2_statement("0103", "500.00", Decision::Approve, 1, None, 1, &[OUTSIDER]);
    if let (Ok(c), Ok(h)) = (no_rule.canonical_json(), no_rule.hash()) {
        put(
            f,
            "statements/v2-valid-no-rule.json".into(),
            json!({
                "description": "a version 2 statement no rule matched: rule null, quorum 1, the named approver",
                "statement": serde_json::to_value(&no_rule).unwrap_or_default(),
                "canonical_json": String::from_utf8_lossy(&c),
                "sha256": hex::encode(h),
                "nonce": hex::encode(nonce),
                "challenge": hex::encode(countersign_verifier::challenge(&nonce, &h)),
                "expected": "valid", "flags": [],
            }),
        );
    }
    let base = serde_json::to_value(&s).unwrap_or_default();
    let v1 = serde_json::to_value(sample_statement("0001", Decision::Approve)).unwrap_or_default();
    let mut cases: Vec<(&str, Value, &str)> = Vec::new();
    let mut v = base.clone();
    v["policy"]["approvers"] = json!(["apv_t2", "apv_t1", "apv_t3"]);
    cases.push(("unsorted-approvers", v, "policy"));
    let mut v = base.clone();
    v["policy"]["approvers"] = json!(["apv_t1", "apv_t1", "apv_t3"]);
    cases.push(("duplicate-approver", v, "policy"));
    let mut v = base.clone();
    v["policy"]["quorum"] = json!(0);
    cases.push(("quorum-zero", v, "policy"));
    let mut v = base.clone();
    v["policy"]["quorum"] = json!(4);
    cases.push(("quorum-above-approvers", v, "policy"));
    let mut v = base.clone();
    v["policy"]["rule"] = Value::Null;
    cases.push(("no-rule-quorum-2", v, "policy"));
    let mut v = base.clone();
    v["approver_id"] = json!("apv_t1");
    cases.push(("with-approver-id", v, "approver_id"));
    let mut v = v1.clone();
    v["policy"] = base["policy"].clone();
    cases.push(("v1-with-policy", v, "policy"));
    let mut v = base.clone();
    v["policy"] = Value::Null;
    cases.push(("policy-null", v, "invalid type: null"));
    let mut v = base.clone();
    v["policy"]["hash"] = json!("00");
    cases.push(("unknown-member-in-policy", v, "unknown field"));
    let mut v = base.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("policy");
    }
    cases.push(("without-policy", v, "policy"));
    let mut v = base.clone();
    v["policy"]["approvers"] = json!([]);
    cases.push(("no-approvers", v, "policy"));
    for (flag, v, err) in cases {
        let got = Statement::from_json(&serde_json::to_vec(&v).unwrap_or_default());
        let msg = got.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains(err),
            "v2-{flag}: {msg:?} does not name {err:?}"
        );
        put(
            f,
            format!("statements/v2-{flag}.json"),
            json!({
                "description": format!("a version 2 statement, {flag}"), "statement": v,
                "expected": "invalid", "flags": [flag], "error": err,
            }),
        );
    }
}

/// The revocation check over every decision of a quorum (`revocation/quorum-*`): apv_t1's
/// passkey is revoked before its approval, apv_t2's (which completed the quorum) is not.
pub fn revocations(f: &mut Files) {
    const UPUV: u8 = flags::UP | flags::UV;
    let vkey = log_vkey();
    let mut log = Log::new();
    let policy = log.policy(&sample_policy());
    let mut a = passkey(320);
    let mut b = passkey(321);
    let ea = log.enrol("apv_t1", &a);
    let eb = log.enrol("apv_t2", &b);
    let s = v2_statement(
        "0106",
        "1250.00",
        Decision::Approve,
        policy,
        Some(RULE),
        2,
        &TREASURY,
    );
    let t = log.tick();
    let revoked = log.push(&Entry::Revocation(countersign_verifier::Revocation {
        approver_id: "apv_t1".into(),
        credential_id: a.credential_id().to_vec(),
        enrolment_index: ea,
        reason: "lost".into(),
        time_ms: t,
    }));
    let da = log.decide("apv_t1", &mut a, ea, &s, UPUV);
    let db = log.decide("apv_t2", &mut b, eb, &s, UPUV);
    let bundle = log.bundle(&s, (db, eb), &[(da, ea)], Some(policy));
    let ok = bundle.verify(&vkey, &BundlePolicy::default());
    assert!(ok.is_ok(), "quorum revocation bundle: {ok:?}");
    let want = format!("revoked at log index {revoked}, before the decision");
    put(
        f,
        "revocation/quorum-approval-revoked-before.json".into(),
        json!({
            "description": "a 2-of-3 bundle that verifies on its own, whose first approval was \
                            signed with a passkey revoked before it: the quorum does not hold",
            "log_key": vkey.to_vkey(),
            "bundle": serde_json::to_value(&bundle).unwrap_or_default(),
            "entries": log.entries.iter().map(hex::encode).collect::<Vec<_>>(),
            "expected": "invalid", "flags": ["quorum-approval-revoked-before"], "error": want,
        }),
    );
    let mut clean = log.entries.clone();
    clean[revoked as usize] = b"unrelated revocation slot".to_vec();
    let clean_log = Log {
        entries: clean,
        time_ms: log.time_ms,
    };
    let bundle = clean_log.bundle(&s, (db, eb), &[(da, ea)], Some(policy));
    put(
        f,
        "revocation/quorum-valid-not-revoked.json".into(),
        json!({
            "description": "a 2-of-3 bundle and its log without revocations: every approval stands",
            "log_key": vkey.to_vkey(),
            "bundle": serde_json::to_value(&bundle).unwrap_or_default(),
            "entries": clean_log.entries.iter().map(hex::encode).collect::<Vec<_>>(),
            "revoked_after": null,
            "expected": "valid", "flags": [],
        }),
    );
}
