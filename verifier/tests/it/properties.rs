//! Property tests: our tree math against rs_merkle (configured with RFC 6962 hashing), proof
//! mutation, and every parser fed arbitrary or mutated bytes.

use countersign_verifier::*;
use proptest::prelude::*;
use rs_merkle::{Hasher, MerkleTree};

/// RFC 6962 interior hashing for rs_merkle; a missing right child promotes the left one, which
/// gives RFC 6962's left-balanced tree.
#[derive(Clone)]
struct Rfc6962;

impl Hasher for Rfc6962 {
    type Hash = [u8; 32];
    fn hash(data: &[u8]) -> [u8; 32] {
        sha256(data)
    }
    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(r) => node_hash(&Hash(*left), &Hash(*r)).0,
            None => *left,
        }
    }
}

fn leaves(n: u64, salt: u64) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(&[i.to_le_bytes(), salt.to_le_bytes()].concat()))
        .collect()
}

fn range_hash(all: &[Hash], r: LeafRange) -> Hash {
    root_from_leaf_hashes(&all[r.start as usize..r.end as usize])
}

fn build_inclusion(all: &[Hash], index: u64, size: u64) -> Vec<Hash> {
    inclusion_proof_ranges(index, size)
        .unwrap()
        .into_iter()
        .map(|r| range_hash(all, r))
        .collect()
}

fn build_consistency(all: &[Hash], old: u64, new: u64) -> Vec<Hash> {
    consistency_proof_ranges(old, new)
        .unwrap()
        .into_iter()
        .map(|r| range_hash(all, r))
        .collect()
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut b = h.0;
    b[bit / 8] ^= 1 << (bit % 8);
    Hash(b)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn roots_and_inclusion_match_rs_merkle(size in 1u64..=10_000, picks in prop::collection::vec(any::<u64>(), 4), salt in any::<u64>()) {
        let all = leaves(size, salt);
        let raw: Vec<[u8; 32]> = all.iter().map(|h| h.0).collect();
        let tree = MerkleTree::<Rfc6962>::from_leaves(&raw);
        prop_assert_eq!(tree.root(), Some(root_from_leaf_hashes(&all).0));
        let mut stack = RootStack::default();
        for l in &all { stack.push(*l); }
        prop_assert_eq!(stack.root(), root_from_leaf_hashes(&all));
        let root = stack.root();
        for p in picks {
            let index = p % size;
            let ours = build_inclusion(&all, index, size);
            let theirs: Vec<Hash> = tree.proof(&[index as usize]).proof_hashes().iter().map(|h| Hash(*h)).collect();
            prop_assert_eq!(&ours, &theirs, "index {} size {}", index, size);
            prop_assert!(verify_inclusion(&all[index as usize], index, size, &ours, &root).is_ok());
        }
    }

    #[test]
    fn every_bit_flip_breaks_inclusion(size in 1u64..=3000, pick in any::<u64>(), salt in any::<u64>()) {
        let all = leaves(size, salt);
        let root = root_from_leaf_hashes(&all);
        let index = pick % size;
        let proof = build_inclusion(&all, index, size);
        let leaf = all[index as usize];
        for i in 0..proof.len() {
            for bit in 0..256 {
                let mut bad = proof.clone();
                bad[i] = flip(&bad[i], bit);
                prop_assert!(verify_inclusion(&leaf, index, size, &bad, &root).is_err());
            }
        }
        for bit in 0..256 {
            prop_assert!(verify_inclusion(&leaf, index, size, &proof, &flip(&root, bit)).is_err());
            prop_assert!(verify_inclusion(&flip(&leaf, bit), index, size, &proof, &root).is_err());
        }
        // Wrong index or size with the same proof fails too (unless it names the same path).
        if size > 1 {
            let other = (index + 1) % size;
            if build_inclusion(&all, other, size) != proof || all[other as usize] != leaf {
                prop_assert!(verify_inclusion(&leaf, other, size, &proof, &root).is_err());
            }
        }
    }

    #[test]
    fn consistency_between_random_sizes(a in 0u64..=10_000, b in 0u64..=10_000, salt in any::<u64>()) {
        let (old, new) = if a <= b { (a, b) } else { (b, a) };
        let all = leaves(new, salt);
        let old_root = root_from_leaf_hashes(&all[..old as usize]);
        let new_root = root_from_leaf_hashes(&all);
        let proof = build_consistency(&all, old, new);
        prop_assert!(verify_consistency(old, new, &old_root, &new_root, &proof).is_ok());
        for i in 0..proof.len() {
            for bit in (0..256).step_by(7) {
                let mut bad = proof.clone();
                bad[i] = flip(&bad[i], bit);
                prop_assert!(verify_consistency(old, new, &old_root, &new_root, &bad).is_err());
            }
        }
        if old > 0 && old < new {
            for bit in 0..256 {
                prop_assert!(verify_consistency(old, new, &flip(&old_root, bit), &new_root, &proof).is_err());
                prop_assert!(verify_consistency(old, new, &old_root, &flip(&new_root, bit), &proof).is_err());
            }
            let mut short = proof.clone();
            short.pop();
            prop_assert!(verify_consistency(old, new, &old_root, &new_root, &short).is_err());
            let mut long = proof.clone();
            long.push(new_root);
            prop_assert!(verify_consistency(old, new, &old_root, &new_root, &long).is_err());
        }
    }

    #[test]
    fn consistency_every_bit_of_small_trees(a in 1u64..=300, b in 1u64..=300) {
        let (old, new) = if a <= b { (a, b) } else { (b, a) };
        let all = leaves(new, 1);
        let old_root = root_from_leaf_hashes(&all[..old as usize]);
        let new_root = root_from_leaf_hashes(&all);
        let proof = build_consistency(&all, old, new);
        for i in 0..proof.len() {
            for bit in 0..256 {
                let mut bad = proof.clone();
                bad[i] = flip(&bad[i], bit);
                prop_assert!(verify_consistency(old, new, &old_root, &new_root, &bad).is_err());
            }
        }
    }
}

// Parsers: arbitrary bytes never panic; everything that decodes re-encodes to the same bytes.
proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(e) = Entry::decode(&bytes) {
            prop_assert_eq!(e.encode().unwrap(), bytes.clone());
        }
        let _ = Note::parse(&bytes);
        let s = String::from_utf8_lossy(&bytes);
        let _ = Checkpoint::parse(&s);
        let _ = VerifierKey::parse(&s);
        let _ = TlogProof::parse(&s);
        let _ = AuthenticatorData::parse(&bytes);
        let _ = ClientData::parse(&bytes);
        let _ = parse_cose_key(&bytes);
        let _ = parse_cose_key_prefix(&bytes);
        let _ = EvidenceBundle::from_json(&bytes);
        let _ = Statement::from_json(&bytes);
        let policy = RegistrationPolicy { rp_id: "x", allowed_origins: &["https://x"], require_user_verification: false, aaguid_allowlist: None };
        let _ = verify_registration(&bytes, b"{}", &[0u8; 32], &policy);
        let _ = parse_json_strict(&bytes);
    }

    #[test]
    fn mutated_entries_are_canonical_or_rejected(
        kind in 0usize..3,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let base = sample_entry(kind).encode().unwrap();
        let mut b = base.clone();
        for (i, v) in edits {
            let i = i.index(b.len());
            b[i] = v;
        }
        if truncate {
            b.truncate(cut.index(b.len()));
        }
        if let Ok(e) = Entry::decode(&b) {
            prop_assert_eq!(e.encode().unwrap(), b);
        }
    }

    #[test]
    fn mutated_authenticator_data_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        extra in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut a = vec![0u8; 37];
        a[32] = flags::AT | flags::ED | flags::UP;
        a.extend_from_slice(&[0u8; 16]);
        a.extend_from_slice(&[0, 2, 9, 9]);
        a.extend_from_slice(&okp_key());
        a.push(0xa0);
        prop_assert!(AuthenticatorData::parse(&a).is_ok());
        a.extend_from_slice(&extra);
        for (i, v) in edits {
            let i = i.index(a.len());
            a[i] = v;
        }
        let _ = AuthenticatorData::parse(&a);
    }
}

/// A valid Ed25519 COSE key: the base point (a key must be a curve point of large order).
fn okp_key() -> Vec<u8> {
    let mut v = vec![
        0xa4, 0x01, 0x01, 0x03, 0x27, 0x20, 0x06, 0x21, 0x58, 0x20, 0x58,
    ];
    v.extend_from_slice(&[0x66u8; 31]);
    v
}

fn sample_entry(kind: usize) -> Entry {
    match kind {
        0 => Entry::Enrolment(Enrolment {
            approver_id: "apv_1".into(),
            credential_id: vec![1, 2, 3],
            public_key: okp_key(),
            aaguid: [3; 16],
            attestation_format: "none".into(),
            attestation: countersign_verifier::AttestationRecord::NotRecorded,
            time_ms: 1,
        }),
        1 => Entry::Decision(SignedDecision {
            decision: Decision::Deny,
            statement_hash: [1; 32],
            nonce: [2; 32],
            approver_id: "apv_1".into(),
            credential_id: vec![1, 2, 3],
            public_key: okp_key(),
            authenticator_data: vec![5; 37],
            client_data_json: b"{}".to_vec(),
            signature: vec![6; 64],
            time_ms: 2,
            enrolment_index: 0,
        }),
        _ => Entry::Revocation(Revocation {
            approver_id: "apv_1".into(),
            credential_id: vec![1, 2, 3],
            enrolment_index: 0,
            reason: "lost".into(),
            time_ms: 3,
        }),
    }
}

#[test]
fn oversized_inputs_are_rejected_with_clear_errors() {
    let big = vec![b'a'; 1 << 20];
    assert_eq!(Entry::decode(&big), Err(EntryError::TooLarge));
    assert_eq!(Note::parse(&big), Err(NoteError::TooLarge));
    assert!(matches!(
        AuthenticatorData::parse(&big),
        Err(AssertionError::AuthenticatorDataMalformed(_))
    ));
    assert_eq!(
        ClientData::parse(&big),
        Err(AssertionError::ClientDataTooLarge)
    );
    assert!(parse_cose_key(&big).is_err());
    assert_eq!(EvidenceBundle::from_json(&big), Err(BundleError::TooLarge));
    assert_eq!(Statement::from_json(&big), Err(StatementError::TooLarge));
    assert!(TlogProof::parse(&String::from_utf8(big).unwrap()).is_err());
    // A COSE map that claims a 4 GiB byte string must not allocate it.
    let lie = [0xa1, 0x21, 0x5a, 0xff, 0xff, 0xff, 0xff];
    assert!(parse_cose_key(&lie).is_err());
    for e in [
        EntryError::TooLarge.to_string(),
        NoteError::TooLarge.to_string(),
    ] {
        assert!(e.contains("larger than"), "{e}");
    }
}

fn vector(path: &str) -> serde_json::Value {
    let p = crate::vectors_dir().join(path);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// One structure-aware change to a signed checkpoint: its lines swapped, dropped or repeated,
/// its size moved, a bit of its root or signature flipped, its origin changed, or a line added.
fn mutate_checkpoint(note: &str, kind: usize, a: usize, b: usize, bit: u8) -> String {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;
    let mut lines: Vec<String> = note.split('\n').map(str::to_owned).collect();
    // The last element is the empty string after the final newline.
    let n = lines.len() - 1;
    let (a, b) = (a % n, b % n);
    let flip_b64 = |text: &str, skip: usize| {
        let mut bytes = B64.decode(text).unwrap();
        let at = skip + (a % (bytes.len() - skip));
        bytes[at] ^= 1 << bit;
        B64.encode(bytes)
    };
    match kind {
        0 => lines.swap(a, b),
        1 => {
            lines.remove(a);
        }
        2 => {
            let l = lines[a].clone();
            lines.insert(a, l);
        }
        3 => {
            let size: u64 = lines[1].parse().unwrap();
            lines[1] = (size + 1 + b as u64).to_string();
        }
        4 => lines[2] = flip_b64(&lines[2], 0),
        5 => {
            // "— <name> <base64(key id || signature)>": flip a bit past the key id.
            let (head, sig) = lines[4].rsplit_once(' ').unwrap();
            lines[4] = format!("{head} {}", flip_b64(sig, 4));
        }
        6 => lines[0].push('x'),
        _ => lines.insert(3, format!("extension {a}")),
    }
    lines.join("\n")
}

/// A compact JSON text of `v` with one structure-aware change: a string member extended, a number
/// moved, a member dropped, renamed or repeated (a duplicate member), or the members reordered.
fn mutate_statement(v: &serde_json::Value, kind: usize, pick: usize) -> (String, bool) {
    let obj = v.as_object().unwrap();
    let keys: Vec<&String> = obj.keys().collect();
    let key = keys[pick % keys.len()].clone();
    let mut m = obj.clone();
    // Whether the change leaves the statement's value as it was.
    let mut same = false;
    let text = match kind {
        0 => {
            match &m[&key] {
                serde_json::Value::String(s) => m[&key] = serde_json::json!(format!("{s}x")),
                serde_json::Value::Number(n) => {
                    m[&key] = serde_json::json!(n.as_u64().unwrap_or(0) + 1)
                }
                other => m[&key] = serde_json::json!([other.clone(), 1]),
            }
            serde_json::to_string(&m).unwrap()
        }
        1 => {
            m.remove(&key);
            serde_json::to_string(&m).unwrap()
        }
        2 => {
            let val = m.remove(&key).unwrap();
            m.insert(format!("{key}_"), val);
            serde_json::to_string(&m).unwrap()
        }
        3 => {
            let text = serde_json::to_string(&m).unwrap();
            let member = format!("{}:{},", serde_json::json!(key), m[&key]);
            format!("{{{member}{}", &text[1..])
        }
        _ => {
            // Same members, another order: the canonical form must not change.
            same = true;
            let mut members: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{v}", serde_json::json!(k)))
                .collect();
            let by = 1 + pick % (members.len() - 1);
            members.rotate_left(by);
            format!("{{{}}}", members.join(","))
        }
    };
    (text, same)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// A valid checkpoint changed in its structure never verifies as another checkpoint (and
    /// never panics).
    #[test]
    fn mutated_checkpoints_never_verify(kind in 0usize..8, a in any::<usize>(), b in any::<usize>(), bit in 0u8..8) {
        let v = vector("checkpoints/valid.json");
        let note = v["note"].as_str().unwrap();
        let key = VerifierKey::parse(v["keys"][0].as_str().unwrap()).unwrap();
        let original = verify_checkpoint(note.as_bytes(), &key, &[]).unwrap().checkpoint;
        let changed = mutate_checkpoint(note, kind, a, b, bit);
        let _ = Note::parse(changed.as_bytes());
        let _ = Checkpoint::parse(&changed);
        // A repeated signature line is ignored (as Go's note package does); any change that
        // verifies must leave the signed origin, size and root exactly as they were.
        let verified = verify_checkpoint(changed.as_bytes(), &key, &[]);
        if let (Ok(v), true) = (verified, changed != note) {
            prop_assert_eq!(&v.checkpoint, &original, "change {}: {:?}", kind, changed);
            let signature_line = note.split('\n').count() - 2;
            prop_assert!(
                kind == 2 && a % (signature_line + 1) == signature_line,
                "only a repeated signature line verifies: {:?}", changed
            );
        }
    }

    /// A valid statement changed in its structure is refused, or is a different statement with
    /// a different hash; only reordering its members keeps the hash.
    #[test]
    fn mutated_statements_are_refused_or_hash_differently(kind in 0usize..5, pick in any::<usize>()) {
        let v = vector("statements/valid-approve.json");
        let original = Statement::from_json(v["statement"].to_string().as_bytes()).unwrap();
        let hash = original.hash().unwrap();
        let (text, same) = mutate_statement(&v["statement"], kind, pick);
        let _ = parse_json_strict(text.as_bytes());
        match Statement::from_json(text.as_bytes()) {
            Ok(s) if same => {
                prop_assert_eq!(&s, &original);
                prop_assert_eq!(s.hash().unwrap(), hash);
            }
            Ok(s) => {
                prop_assert_ne!(&s, &original);
                prop_assert_ne!(s.hash().ok(), Some(hash), "{}", text);
            }
            Err(e) => {
                prop_assert!(!same, "a reordered statement was refused: {} ({})", text, e);
                // A repeated member is always refused (it is what a JSON-smuggling attack uses).
            }
        }
        if kind == 3 {
            prop_assert!(Statement::from_json(text.as_bytes()).is_err(), "duplicate accepted: {}", text);
        }
    }
}
