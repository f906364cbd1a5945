//! A complete, valid export archive (`spec/export.md`, X1-X9) of a small deterministic log, for
//! the archive verifier's tests and benchmarks. It follows the spec to the letter, so it is also
//! a reference for the exporter: every file is made with the shared definitions of
//! `countersign_verifier::export`.
//!
//! The log ([`build`]): three enrolments before the range (`apv_alice` and `apv_bob` with the
//! chosen algorithms, by default ES256 and EdDSA, `apv_carol` with ES256); in the range a decision by carol,
//! the revocation of carol's passkey, an enrolment of `apv_dave`, then `decisions` decisions by
//! alice and bob (every third one a denial), optionally a decision by carol after her
//! revocation (which makes the archive invalid); after the range two more decisions by alice,
//! so the checkpoint's tree is larger than the range.

use std::collections::BTreeMap;
use std::path::Path;

use countersign_verifier::export::{
    csv_header, entry_bundles, hash_tiles, log_event_row, rfc3339_ms, tile_path, EventRow,
    EventType, Manifest, ManifestRelyingParty, StatementLine, Totals, Withheld, EXPORT_FORMAT,
    TOTALS_ELEMENT_ID,
};
use countersign_verifier::flags;
use countersign_verifier::{
    inclusion_proof_ranges, leaf_hash, root_from_leaf_hashes, sha256, AttestationRecord, Decision,
    Enrolment, Entry, EvidenceBundle, Hash, LoggedEntry, RelyingParty, Revocation, SignedDecision,
    Statement,
};
use serde_json::json;

use crate::generate::{
    checkpoint_body, log_signing_key, log_vkey, range_hashes, sign_note, LOG_ORIGIN, ORIGIN, RP_ID,
};
use crate::passkey::{Alg, AssertOptions, SoftPasskey};

/// The time of entry 0, in milliseconds (2026-01-01T00:00:00.000Z); entry `i` is logged
/// `2 i` seconds later.
pub const BASE_TIME_MS: u64 = 1_767_225_600_000;

/// What to put in the archive.
#[derive(Clone, Debug)]
pub struct ArchiveSpec {
    /// Decisions by alice and bob in the range (besides carol's).
    pub decisions: usize,
    /// Alice's passkey algorithm (half of the decisions are hers).
    pub alg: Alg,
    /// Bob's passkey algorithm (the other half).
    pub second_alg: Alg,
    /// How many decisions have their statement withheld (`not_held`): the 2nd, 9th, 16th, ...
    pub withhold: usize,
    /// Write `bundles/<index>.json` for each decision with a statement (X9).
    pub bundles: bool,
    /// Log a decision by carol after her passkey's revocation (the archive is then invalid:
    /// check 6).
    pub decision_after_revocation: bool,
    /// A flaw in the assertion of the range's fourth decision by alice and bob
    /// ([`Archive::flawed_index`]).
    pub flaw: Flaw,
    /// Log an approval policy and four requests decided under it at the end of the range
    /// ([`Archive::quorum`]).
    pub quorum: bool,
    /// A flaw of the quorum requests (with `quorum`).
    pub quorum_flaw: QuorumFlaw,
}

/// A flaw of the quorum requests, for negative tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QuorumFlaw {
    /// None: every decision holds under the logged policy.
    #[default]
    None,
    /// The statements of the payments over 1000 say quorum 1 where the logged policy says 2
    /// (signed as such: the server misstated the policy).
    MisstatedQuorum,
    /// The second approval of the first request is by `apv_dave`, who is not eligible.
    NotEligible,
}

/// Where [`build`] put the quorum requests (`ArchiveSpec::quorum`).
#[derive(Clone, Debug, Default)]
pub struct QuorumIndexes {
    /// The policy entry: group `treasury` = alice and bob; payments over 1000 need both.
    pub policy: u64,
    /// `req_q1`: approved by alice, then bob (quorum met; token issued).
    pub met: (u64, u64),
    /// `req_q2`: approved by alice only (quorum not met; no token).
    pub pending: u64,
    /// `req_q3`: approved by alice, then denied by bob.
    pub denied: (u64, u64),
    /// `req_q4`: a payment of 500.00, no rule: dave alone (token issued).
    pub no_rule: u64,
}

impl Default for ArchiveSpec {
    fn default() -> Self {
        ArchiveSpec {
            decisions: 12,
            alg: Alg::Es256,
            second_alg: Alg::EdDsa,
            withhold: 1,
            bundles: false,
            decision_after_revocation: false,
            flaw: Flaw::None,
            quorum: false,
            quorum_flaw: QuorumFlaw::None,
        }
    }
}

/// What [`build`] wrote, for tests to aim mutations at.
#[derive(Clone, Debug)]
pub struct Archive {
    /// The log's verifier key (C2SP vkey), to pass as `--log-key`.
    pub log_key: String,
    /// The range `[start, end)`.
    pub start: u64,
    /// One past the range.
    pub end: u64,
    /// The checkpoint's tree size.
    pub tree_size: u64,
    /// Every entry of the tree, from index 0.
    pub entries: Vec<Vec<u8>>,
    /// Indexes of the decisions in the range with a line in `statements.jsonl`.
    pub statement_indexes: Vec<u64>,
    /// Indexes of the withheld decisions.
    pub withheld: Vec<u64>,
    /// Index of the revocation entry (of carol's enrolment, index 2).
    pub revocation_index: u64,
    /// Index of an enrolment in the range (dave's).
    pub enrolment_in_range: u64,
    /// Index of the decision [`ArchiveSpec::flaw`] applies to.
    pub flawed_index: u64,
    /// The quorum requests, if `ArchiveSpec::quorum`.
    pub quorum: Option<QuorumIndexes>,
}

impl Archive {
    /// The log's signed checkpoint of its first `size` entries.
    pub fn checkpoint(&self, size: u64) -> String {
        checkpoint_of(&self.entries[..size as usize])
    }
}

/// A signed checkpoint (by the generated log key) of a tree of `entries`.
pub fn checkpoint_of(entries: &[Vec<u8>]) -> String {
    let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
    let body = checkpoint_body(&leaves);
    sign_note(&body, &log_signing_key(), &log_vkey())
}

struct Approver {
    id: &'static str,
    passkey: SoftPasskey,
    enrolment_index: u64,
}

fn time(index: u64) -> u64 {
    BASE_TIME_MS + index * 2000
}

fn enrolment(a: &Approver, index: u64) -> Vec<u8> {
    Entry::Enrolment(Enrolment {
        approver_id: a.id.into(),
        credential_id: a.passkey.credential_id().to_vec(),
        public_key: a.passkey.cose_public_key(),
        aaguid: [0xad; 16],
        attestation_format: "none".into(),
        attestation: AttestationRecord::NotRecorded,
        time_ms: time(index),
    })
    .encode()
    .unwrap_or_default()
}

fn statement(index: u64, j: usize, approver: &str, decision: Decision) -> Statement {
    let requested_at = time(index) / 1000 - 20;
    let binding_message = match j % 4 {
        0 => format!("Pay 42.00 EUR to ACME (ref {index})"),
        1 => format!("Refund, partial: 5.00 EUR (ref {index})"),
        2 => format!("-5 EUR correction \"Q1\" (ref {index})"),
        _ => format!("=SUM(A1) looks like a formula (ref {index})"),
    };
    let details = if j % 2 == 0 {
        json!([{"type": "payment_initiation", "instructedAmount": {"currency": "EUR", "amount": "42.00"}}])
    } else {
        json!([{"type": "payment_initiation"}, {"type": "account_information", "accounts": ["DE02"]}])
    };
    Statement {
        version: 1,
        log_origin: LOG_ORIGIN.into(),
        request_id: format!("req_{index:06}"),
        client_id: if j % 2 == 0 {
            "agent-payments"
        } else {
            "agent-hr"
        }
        .into(),
        approver_id: approver.into(),
        policy: None,
        scope: "openid payments".into(),
        binding_message,
        authorization_details: details,
        requested_at,
        expires_at: requested_at + 300,
        decision: decision.as_str().into(),
    }
}

fn decision_entry(a: &mut Approver, index: u64, st: &Statement) -> Vec<u8> {
    decision_entry_with(a, index, st, Flaw::None)
}

/// A flaw of one decision's passkey assertion, for negative tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flaw {
    /// None: a valid, user-verified assertion.
    #[default]
    None,
    /// One bit of the signature flipped.
    Signature,
    /// User presence only: the UV flag is not set (valid with `--allow-no-uv`).
    NoUserVerification,
}

fn decision_entry_with(a: &mut Approver, index: u64, st: &Statement, flaw: Flaw) -> Vec<u8> {
    let sh = st.hash().unwrap_or_default();
    let nonce = sha256(&index.to_be_bytes());
    let challenge = countersign_verifier::challenge(&nonce, &sh);
    let mut opts = AssertOptions::new(&challenge, ORIGIN);
    match flaw {
        Flaw::None => {}
        Flaw::Signature => opts.flip_signature_bit = Some(77),
        Flaw::NoUserVerification => opts.flags = flags::UP,
    }
    let parts = a.passkey.assert_with(&opts);
    Entry::Decision(SignedDecision {
        decision: st.decision().unwrap_or(Decision::Deny),
        statement_hash: sh,
        nonce,
        approver_id: a.id.into(),
        credential_id: a.passkey.credential_id().to_vec(),
        public_key: a.passkey.cose_public_key(),
        authenticator_data: parts.authenticator_data,
        client_data_json: parts.client_data_json,
        signature: parts.signature,
        time_ms: time(index),
        enrolment_index: a.enrolment_index,
    })
    .encode()
    .unwrap_or_default()
}

fn write(
    dir: &Path,
    files: &mut BTreeMap<String, String>,
    rel: &str,
    bytes: &[u8],
) -> std::io::Result<()> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, bytes)?;
    files.insert(rel.to_owned(), hex::encode(sha256(bytes)));
    Ok(())
}

/// Writes a complete, valid archive (`spec/export.md`) of the log described in the module
/// documentation into `dir` (created if need be), and returns what it holds.
pub fn build(dir: &Path, spec: &ArchiveSpec) -> std::io::Result<Archive> {
    let mut alice = Approver {
        id: "apv_alice",
        passkey: SoftPasskey::new(spec.alg, 101, RP_ID),
        enrolment_index: 0,
    };
    let mut bob = Approver {
        id: "apv_bob",
        passkey: SoftPasskey::new(spec.second_alg, 102, RP_ID),
        enrolment_index: 1,
    };
    let mut carol = Approver {
        id: "apv_carol",
        passkey: SoftPasskey::new(Alg::Es256, 103, RP_ID),
        enrolment_index: 2,
    };
    let dave = Approver {
        id: "apv_dave",
        passkey: SoftPasskey::new(Alg::Es256, 104, RP_ID),
        enrolment_index: 5,
    };
    let mut entries: Vec<Vec<u8>> = vec![
        enrolment(&alice, 0),
        enrolment(&bob, 1),
        enrolment(&carol, 2),
    ];
    let start = 3u64;
    // index -> statement, for the decisions in the range (withheld ones included).
    let mut statements: BTreeMap<u64, Statement> = BTreeMap::new();
    let mut withheld = Vec::new();
    let mut token_issued: Vec<u64> = Vec::new();

    let st = statement(3, 0, carol.id, Decision::Approve);
    entries.push(decision_entry(&mut carol, 3, &st));
    statements.insert(3, st);
    let revocation_index = 4;
    entries.push(
        Entry::Revocation(Revocation {
            approver_id: carol.id.into(),
            credential_id: carol.passkey.credential_id().to_vec(),
            enrolment_index: 2,
            reason: "lost".into(),
            time_ms: time(4),
        })
        .encode()
        .unwrap_or_default(),
    );
    entries.push(enrolment(&dave, 5));
    for j in 0..spec.decisions {
        let index = entries.len() as u64;
        let d = if j % 3 == 2 {
            Decision::Deny
        } else {
            Decision::Approve
        };
        let a = if j % 2 == 0 { &mut alice } else { &mut bob };
        let st = statement(index, j, a.id, d);
        let flaw = if j == 3 { spec.flaw } else { Flaw::None };
        entries.push(decision_entry_with(a, index, &st, flaw));
        if j % 7 == 1 && withheld.len() < spec.withhold {
            withheld.push(index);
        } else if d == Decision::Approve && j % 2 == 0 {
            token_issued.push(index);
        }
        statements.insert(index, st);
    }
    if spec.decision_after_revocation {
        let index = entries.len() as u64;
        let st = statement(index, 0, carol.id, Decision::Approve);
        entries.push(decision_entry(&mut carol, index, &st));
        statements.insert(index, st);
    }
    let mut dave = dave;
    let quorum = spec.quorum.then(|| {
        quorum_requests(
            &mut entries,
            &mut statements,
            &mut token_issued,
            [&mut alice, &mut bob, &mut dave],
            spec.quorum_flaw,
        )
    });
    let end = entries.len() as u64;
    for _ in 0..2 {
        let index = entries.len() as u64;
        let st = statement(index, 0, alice.id, Decision::Approve);
        entries.push(decision_entry(&mut alice, index, &st));
    }
    let tree_size = entries.len() as u64;
    let mut files = BTreeMap::new();
    std::fs::create_dir_all(dir)?;

    // X2: the checkpoint.
    let checkpoint = checkpoint_of(&entries);
    write(dir, &mut files, "checkpoint", checkpoint.as_bytes())?;

    // X3: hash tiles, level by level.
    let mut level: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
    let mut levels = vec![level.clone()];
    while level.len() >= 256 {
        level = level.chunks_exact(256).map(root_from_leaf_hashes).collect();
        levels.push(level.clone());
    }
    for (l, i, w) in hash_tiles(tree_size) {
        let from = (i * 256) as usize;
        let bytes: Vec<u8> = levels[l as usize][from..from + w as usize]
            .iter()
            .flat_map(|h| h.0)
            .collect();
        write(dir, &mut files, &tile_path(Some(l), i, w), &bytes)?;
    }

    // X4: entry bundles of [0, end).
    for (i, w) in entry_bundles(end) {
        let mut bytes = Vec::new();
        for e in &entries[(i * 256) as usize..(i * 256 + w) as usize] {
            bytes.extend_from_slice(&(e.len() as u16).to_be_bytes());
            bytes.extend_from_slice(e);
        }
        write(dir, &mut files, &tile_path(None, i, w), &bytes)?;
    }

    // X5: statements.jsonl.
    let mut lines = String::new();
    let mut statement_indexes = Vec::new();
    for (&index, st) in &statements {
        if withheld.contains(&index) {
            continue;
        }
        statement_indexes.push(index);
        let line = StatementLine {
            index,
            statement: st.clone(),
        };
        lines.push_str(&serde_json::to_string(&line).unwrap_or_default());
        lines.push('\n');
    }
    write(dir, &mut files, "statements.jsonl", lines.as_bytes())?;

    // X6: events.jsonl, first run: one row per entry of the range.
    let mut rows: Vec<EventRow> = Vec::new();
    for index in start..end {
        let st = statements
            .get(&index)
            .filter(|_| !withheld.contains(&index));
        match log_event_row(index, &entries[index as usize], st) {
            Ok(r) => rows.push(r),
            // The flawed archive's row is written as a careless exporter would write it.
            Err(_) if spec.quorum_flaw == QuorumFlaw::NotEligible => {
                let e = &entries[index as usize];
                let decoded = Entry::decode(e).map_err(|x| std::io::Error::other(x.to_string()))?;
                let row =
                    countersign_verifier::export::event_row_of(index, &leaf_hash(e), &decoded, st)
                        .map_err(|x| std::io::Error::other(x.to_string()))?;
                rows.push(row);
            }
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        }
    }
    // Second run: the events outside the log, by time (ties in the order recorded).
    let events_from = time(start) - 60_000;
    let events_to = time(end) + 60_000;
    let mut outside: Vec<(u64, EventRow)> = Vec::new();
    let mut created = std::collections::HashSet::new();
    for &index in &statement_indexes {
        let st = &statements[&index];
        let t = st.requested_at * 1000;
        // One request.created row per request, however many approvers decided it.
        if created.insert(st.request_id.clone()) {
            outside.push((t, EventRow::for_request(EventType::RequestCreated, st, t)));
        }
        if token_issued.contains(&index) {
            let t = time(index) + 700;
            outside.push((t, EventRow::for_request(EventType::TokenIssued, st, t)));
        }
    }
    // Requests not decided in the range: one expired, one still pending.
    for (n, expires) in [(1u64, true), (2, false)] {
        let mut st = statement(1_000_000 + n, n as usize, alice.id, Decision::Deny);
        st.request_id = format!("req_undecided_{n}");
        st.requested_at = (events_from / 1000) + 5 * n;
        st.expires_at = st.requested_at + 10;
        let t = st.requested_at * 1000;
        outside.push((t, EventRow::for_request(EventType::RequestCreated, &st, t)));
        if expires {
            let t = st.expires_at * 1000;
            outside.push((t, EventRow::for_request(EventType::RequestExpired, &st, t)));
        }
    }
    outside.sort_by_key(|(t, _)| *t);
    rows.extend(outside.into_iter().map(|(_, r)| r));
    let mut jsonl = String::new();
    let mut csv = csv_header();
    let mut totals = Totals::default();
    for r in &rows {
        jsonl.push_str(&r.to_json_line());
        jsonl.push('\n');
        csv.push_str(&r.to_csv_record());
        totals.add(r.event_type);
    }
    write(dir, &mut files, "events.jsonl", jsonl.as_bytes())?;
    // X7.
    write(dir, &mut files, "events.csv", csv.as_bytes())?;
    // X8.
    let report = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Countersign export {start}-{end}</title>\n\
         <script type=\"application/json\" id=\"{TOTALS_ELEMENT_ID}\">{}</script>\n\
         </head><body><h1>Approvals {} to {}</h1>\n<p>{} approved, {} denied.</p></body></html>\n",
        serde_json::to_string(&totals).unwrap_or_default(),
        rfc3339_ms(events_from),
        rfc3339_ms(events_to),
        totals.decisions_approved,
        totals.decisions_denied,
    );
    write(dir, &mut files, "report.html", report.as_bytes())?;

    // X9: bundles, against the archive's checkpoint.
    if spec.bundles {
        let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
        let proof = |i: u64| {
            range_hashes(
                &leaves,
                &inclusion_proof_ranges(i, tree_size).unwrap_or_default(),
            )
        };
        // The approvals of each quorum so far: statement hash -> (approver, decision,
        // enrolment), in log order.
        let mut quorums: BTreeMap<[u8; 32], Vec<(String, u64, u64)>> = BTreeMap::new();
        for &index in &statement_indexes {
            let Ok(Entry::Decision(d)) = Entry::decode(&entries[index as usize]) else {
                continue;
            };
            let st = &statements[&index];
            let (version, policy, approvals) = match &st.policy {
                None => (1, None, Vec::new()),
                Some(p) => {
                    let mut approvals = Vec::new();
                    if d.decision == Decision::Approve {
                        let q = quorums.entry(d.statement_hash).or_default();
                        if q.iter().any(|(a, _, _)| *a == d.approver_id) {
                            continue;
                        }
                        approvals = q
                            .iter()
                            .map(|&(_, di, ei)| countersign_verifier::DecisionLink {
                                decision: LoggedEntry {
                                    index: di,
                                    entry: hex::encode(&entries[di as usize]),
                                    inclusion_proof: proof(di),
                                },
                                enrolment: LoggedEntry {
                                    index: ei,
                                    entry: hex::encode(&entries[ei as usize]),
                                    inclusion_proof: proof(ei),
                                },
                            })
                            .collect();
                        q.push((d.approver_id.clone(), index, d.enrolment_index));
                        // An approval that does not complete its quorum has no bundle (X9).
                        if (q.len() as u64) < p.quorum {
                            continue;
                        }
                    }
                    let policy = LoggedEntry {
                        index: p.index,
                        entry: hex::encode(&entries[p.index as usize]),
                        inclusion_proof: proof(p.index),
                    };
                    (2, Some(policy), approvals)
                }
            };
            let b = EvidenceBundle {
                version,
                statement: st.clone(),
                decision: LoggedEntry {
                    index,
                    entry: hex::encode(&entries[index as usize]),
                    inclusion_proof: proof(index),
                },
                enrolment: LoggedEntry {
                    index: d.enrolment_index,
                    entry: hex::encode(&entries[d.enrolment_index as usize]),
                    inclusion_proof: proof(d.enrolment_index),
                },
                approvals,
                policy,
                checkpoint: checkpoint.clone(),
                relying_party: RelyingParty {
                    rp_id: RP_ID.into(),
                    origins: vec![ORIGIN.into()],
                },
                parties: None,
            };
            write(
                dir,
                &mut files,
                &format!("bundles/{index}.json"),
                b.to_json().as_bytes(),
            )?;
        }
    }

    // X1: the manifest, last.
    let manifest = Manifest {
        format: EXPORT_FORMAT.into(),
        log_origin: LOG_ORIGIN.into(),
        log_key: log_vkey().to_vkey(),
        start,
        end,
        tree_size,
        events_from: rfc3339_ms(events_from),
        events_to: rfc3339_ms(events_to),
        generated_at: rfc3339_ms(events_to + 60_000),
        tool: concat!("countersign-testvectors ", env!("CARGO_PKG_VERSION")).into(),
        relying_party: ManifestRelyingParty {
            rp_id: RP_ID.into(),
            origins: vec![ORIGIN.into()],
        },
        withheld: withheld
            .iter()
            .map(|&index| Withheld {
                index,
                reason: "not_held".into(),
            })
            .collect(),
        files,
    };
    let mut m = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    m.push('\n');
    std::fs::write(dir.join("MANIFEST.json"), m)?;
    Ok(Archive {
        log_key: log_vkey().to_vkey(),
        start,
        end,
        tree_size,
        entries,
        statement_indexes,
        withheld,
        revocation_index,
        enrolment_in_range: 5,
        flawed_index: 6 + 3,
        quorum,
    })
}

/// The quorum requests of [`QuorumIndexes`], appended to `entries`.
fn quorum_requests(
    entries: &mut Vec<Vec<u8>>,
    statements: &mut BTreeMap<u64, Statement>,
    token_issued: &mut Vec<u64>,
    [alice, bob, dave]: [&mut Approver; 3],
    flaw: QuorumFlaw,
) -> QuorumIndexes {
    let policy = countersign_verifier::ValidatedPolicy::from_json(
        json!({
            "version": 1,
            "groups": {"treasury": ["apv_alice", "apv_bob"]},
            "rules": [{
                "name": "payments over 1000",
                "when": {"type": "payment_initiation", "field": "instructedAmount.amount", "op": "gt", "value": "1000"},
                "approvers": "treasury",
                "quorum": 2,
            }],
        })
        .to_string()
        .as_bytes(),
    );
    assert!(policy.is_ok(), "the archive's policy: {policy:?}");
    let Ok(policy) = policy else {
        return QuorumIndexes::default();
    };
    let p = entries.len() as u64;
    entries.push(
        Entry::Policy(countersign_verifier::PolicyEntry::of(&policy, time(p)))
            .encode()
            .unwrap_or_default(),
    );
    let request = |n: u32, first: u64, amount: &str, decision: Decision| {
        let mut st = statement(first, 0, "", decision);
        st.version = 2;
        st.approver_id = String::new();
        st.request_id = format!("req_q{n}");
        st.binding_message = format!("Pay {amount} EUR to ACME (ref q{n})");
        st.authorization_details[0]["instructedAmount"]["amount"] = json!(amount);
        let (rule, quorum, approvers) = if amount == "500.00" {
            (None, 1, vec!["apv_dave".to_owned()])
        } else {
            let q = if flaw == QuorumFlaw::MisstatedQuorum {
                1
            } else {
                2
            };
            (
                Some("payments over 1000".to_owned()),
                q,
                vec!["apv_alice".to_owned(), "apv_bob".to_owned()],
            )
        };
        st.policy = Some(countersign_verifier::StatementPolicy {
            index: p,
            rule,
            quorum,
            approvers,
        });
        st
    };
    let mut decide = |a: &mut Approver, st: &Statement| {
        let index = entries.len() as u64;
        entries.push(decision_entry(a, index, st));
        statements.insert(index, st.clone());
        index
    };
    let q1 = request(1, p + 1, "1250.00", Decision::Approve);
    let m1 = decide(alice, &q1);
    let m2 = match flaw {
        QuorumFlaw::NotEligible => decide(dave, &q1),
        _ => decide(bob, &q1),
    };
    token_issued.push(m2);
    let q2 = request(2, p + 3, "1250.00", Decision::Approve);
    let pending = decide(alice, &q2);
    let q3 = request(3, p + 4, "1250.00", Decision::Approve);
    let d1 = decide(alice, &q3);
    let mut q3deny = q3.clone();
    q3deny.decision = Decision::Deny.as_str().into();
    let d2 = decide(bob, &q3deny);
    let q4 = request(4, p + 6, "500.00", Decision::Approve);
    let no_rule = decide(dave, &q4);
    token_issued.push(no_rule);
    QuorumIndexes {
        policy: p,
        met: (m1, m2),
        pending,
        denied: (d1, d2),
        no_rule,
    }
}
