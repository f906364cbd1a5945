//! A C2SP log for witness tests: an Ed25519 note key, leaves in memory, checkpoints signed as
//! signed notes, RFC 6962 consistency proofs built from the verifier crate's range math, and
//! `add-checkpoint` request bodies.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use countersign_verifier::{
    consistency_proof_ranges, key_id, leaf_hash, root_from_leaf_hashes, Checkpoint, Hash,
    NoteSignature, VerifierKey, ALG_ED25519,
};
use ed25519_dalek::{Signer, SigningKey};

pub struct TestLog {
    pub origin: String,
    key: SigningKey,
    pub leaves: Vec<Hash>,
}

impl TestLog {
    /// A log named `origin` with the key from `seed` and `n` leaves from `branch`.
    pub fn new(origin: &str, seed: u8, n: u64, branch: &str) -> TestLog {
        let mut l = TestLog {
            origin: origin.to_owned(),
            key: SigningKey::from_bytes(&[seed; 32]),
            leaves: Vec::new(),
        };
        l.grow(n, branch);
        l
    }

    /// Appends leaves until the log has `n`, their contents marked with `branch`.
    pub fn grow(&mut self, n: u64, branch: &str) {
        while (self.leaves.len() as u64) < n {
            let i = self.leaves.len();
            self.leaves
                .push(leaf_hash(format!("{branch} entry {i}").as_bytes()));
        }
    }

    /// A copy whose leaves from `at` on differ: the same key, another history.
    pub fn fork(&self, at: u64, n: u64, branch: &str) -> TestLog {
        let mut f = TestLog {
            origin: self.origin.clone(),
            key: self.key.clone(),
            leaves: self.leaves[..at as usize].to_vec(),
        };
        f.grow(n, branch);
        f
    }

    pub fn vkey(&self) -> VerifierKey {
        VerifierKey::ed25519(&self.origin, self.key.verifying_key().to_bytes()).unwrap()
    }

    pub fn root(&self, n: u64) -> Hash {
        root_from_leaf_hashes(&self.leaves[..n as usize])
    }

    pub fn proof(&self, old: u64, new: u64) -> Vec<Hash> {
        consistency_proof_ranges(old, new)
            .unwrap()
            .iter()
            .map(|r| root_from_leaf_hashes(&self.leaves[r.start as usize..r.end as usize]))
            .collect()
    }

    /// The checkpoint text (the note's body) at size `n`.
    pub fn text(&self, n: u64) -> String {
        Checkpoint {
            origin: self.origin.clone(),
            size: n,
            root: self.root(n),
            extensions: Vec::new(),
        }
        .to_text()
    }

    /// A signed note of `text` by `key` under this log's name.
    pub fn sign_text_with(&self, key: &SigningKey, text: &str) -> String {
        let line = NoteSignature {
            name: self.origin.clone(),
            key_id: key_id(
                &self.origin,
                ALG_ED25519,
                &self.key.verifying_key().to_bytes(),
            ),
            signature: key.sign(text.as_bytes()).to_bytes().to_vec(),
        }
        .to_line();
        format!("{text}\n{line}")
    }

    /// A signed note of `text` by the log's key.
    pub fn sign_text(&self, text: &str) -> String {
        self.sign_text_with(&self.key, text)
    }

    /// The signed checkpoint note at size `n`.
    pub fn note(&self, n: u64) -> String {
        self.sign_text_with(&self.key, &self.text(n))
    }

    /// An `add-checkpoint` body from `old` to `n` with a correct proof.
    pub fn body(&self, old: u64, n: u64) -> String {
        body_with(old, &self.proof(old, n), &self.note(n))
    }

    /// The policy line naming this log.
    pub fn policy_line(&self) -> String {
        format!("log {}\n", self.vkey().to_vkey())
    }
}

/// An `add-checkpoint` body: `old <old>`, the proof lines, an empty line, the note.
pub fn body_with(old: u64, proof: &[Hash], note: &str) -> String {
    let mut b = format!("old {old}\n");
    for h in proof {
        b.push_str(&B64.encode(h.0));
        b.push('\n');
    }
    b.push('\n');
    b.push_str(note);
    b
}
