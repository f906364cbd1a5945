//! Verifier benchmarks, with the reference crates measured in the same run: rs_merkle and
//! ct-merkle for proofs, raw `ring` and raw `p256` for signatures. Every timed closure checks its
//! result, so nothing is optimised away and a broken build cannot bench green.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;

use countersign_testvectors::{generate, Alg, SoftPasskey};
use countersign_verifier::{
    consistency_proof_ranges, inclusion_proof_ranges, leaf_hash, node_hash, parse_cose_key,
    root_from_inclusion_proof, root_from_leaf_hashes, sha256, verify_assertion_with,
    verify_checkpoint, verify_consistency, verify_inclusion, Assertion, AssertionPolicy, Backend,
    BundlePolicy, EvidenceBundle, Hash, PublicKey,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rs_merkle::{Hasher, MerkleProof};
use sha2_digest011::Sha256;

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

/// A valid inclusion proof in a tree of `size` leaves without building the tree: random sibling
/// hashes determine the root.
fn synthetic_inclusion(size: u64, index: u64) -> (Vec<u8>, Hash, Vec<Hash>, Hash) {
    let value = b"countersign bench leaf".to_vec();
    let leaf = leaf_hash(&value);
    let n = inclusion_proof_ranges(index, size).unwrap().len();
    let proof: Vec<Hash> = (0..n as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let root = root_from_inclusion_proof(&leaf, index, size, &proof).unwrap();
    (value, leaf, proof, root)
}

fn inclusion(c: &mut Criterion) {
    let mut g = c.benchmark_group("inclusion_verify");
    for (label, size) in [("2^20", 1u64 << 20), ("2^40", 1u64 << 40)] {
        let index = size / 3 + 7;
        let (value, leaf, proof, root) = synthetic_inclusion(size, index);
        g.bench_function(BenchmarkId::new("countersign", label), |b| {
            b.iter(|| {
                let l = leaf_hash(black_box(&value));
                assert!(verify_inclusion(&l, index, size, black_box(&proof), &root).is_ok())
            })
        });
        let raw: Vec<[u8; 32]> = proof.iter().map(|h| h.0).collect();
        g.bench_function(BenchmarkId::new("rs_merkle", label), |b| {
            b.iter(|| {
                let l = leaf_hash(black_box(&value)).0;
                let p = MerkleProof::<Rfc6962>::new(black_box(raw.clone()));
                assert!(p.verify(root.0, &[index as usize], &[l], size as usize))
            })
        });
        let ct_root = ct_merkle::RootHash::<Sha256>::new(root.0.into(), size);
        let digests: Vec<sha2_digest011::digest::Output<Sha256>> =
            proof.iter().map(|h| h.0.into()).collect();
        let ct_proof = ct_merkle::InclusionProof::<Sha256>::from_digests(digests.iter());
        g.bench_function(BenchmarkId::new("ct-merkle", label), |b| {
            b.iter(|| {
                assert!(ct_root
                    .verify_inclusion(black_box(&value), index, black_box(&ct_proof))
                    .is_ok())
            })
        });
        let _ = leaf;
    }
    g.finish();
}

fn consistency(c: &mut Criterion) {
    let (old, new) = (70_001u64, 1u64 << 17);
    let leaves: Vec<Hash> = (0..new).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let old_root = root_from_leaf_hashes(&leaves[..old as usize]);
    let new_root = root_from_leaf_hashes(&leaves);
    let proof: Vec<Hash> = consistency_proof_ranges(old, new)
        .unwrap()
        .iter()
        .map(|r| root_from_leaf_hashes(&leaves[r.start as usize..r.end as usize]))
        .collect();
    let mut g = c.benchmark_group("consistency_verify");
    g.bench_function("countersign/70001_to_131072", |b| {
        b.iter(|| {
            assert!(verify_consistency(old, new, &old_root, &new_root, black_box(&proof)).is_ok())
        })
    });
    let ct_old = ct_merkle::RootHash::<Sha256>::new(old_root.0.into(), old);
    let ct_new = ct_merkle::RootHash::<Sha256>::new(new_root.0.into(), new);
    let digests: Vec<sha2_digest011::digest::Output<Sha256>> =
        proof.iter().map(|h| h.0.into()).collect();
    let ct_proof = ct_merkle::ConsistencyProof::<Sha256>::from_digests(digests.iter());
    g.bench_function("ct-merkle/70001_to_131072", |b| {
        b.iter(|| {
            assert!(ct_new
                .verify_consistency(&ct_old, black_box(&ct_proof))
                .is_ok())
        })
    });
    g.finish();
}

fn checkpoint(c: &mut Criterion) {
    let (bundle, _) = generate::sample_bundle(Alg::EdDsa, 1);
    let key = generate::log_vkey();
    let note = bundle.checkpoint.clone();
    c.bench_function("checkpoint_verify/countersign", |b| {
        b.iter(|| assert!(verify_checkpoint(black_box(note.as_bytes()), &key, &[]).is_ok()))
    });
    // The primitive: one Ed25519 verification from the 32-byte public key, as a verifier that
    // is handed a key must do it (ring's raw call also decodes its key every time).
    let pk = *key.public_key();
    let parsed = countersign_verifier::Note::parse(note.as_bytes()).unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&parsed.signatures()[0].signature).unwrap();
    c.bench_function("checkpoint_verify/raw_ed25519_dalek", |b| {
        b.iter(|| {
            use ed25519_dalek::Verifier;
            let vk = ed25519_dalek::VerifyingKey::from_bytes(black_box(&pk)).unwrap();
            assert!(vk.verify(black_box(parsed.text().as_bytes()), &sig).is_ok())
        })
    });
}

struct Signed {
    key: PublicKey,
    authenticator_data: Vec<u8>,
    client_data_json: Vec<u8>,
    signature: Vec<u8>,
    challenge: [u8; 64],
    cose: Vec<u8>,
}

fn signed(alg: Alg) -> Signed {
    let mut pk = SoftPasskey::new(alg, 42, "bench.test");
    let challenge = [7u8; 64];
    let a = pk.assert(&challenge, "https://bench.test");
    Signed {
        key: parse_cose_key(&pk.cose_public_key()).unwrap(),
        authenticator_data: a.authenticator_data,
        client_data_json: a.client_data_json,
        signature: a.signature,
        challenge,
        cose: pk.cose_public_key(),
    }
}

fn assertions(c: &mut Criterion) {
    let mut g = c.benchmark_group("assertion_verify");
    for alg in [Alg::Es256, Alg::EdDsa] {
        let s = signed(alg);
        let policy = AssertionPolicy {
            rp_id: "bench.test",
            allowed_origins: &["https://bench.test"],
            require_user_verification: true,
            stored_sign_count: None,
        };
        let a = Assertion {
            authenticator_data: &s.authenticator_data,
            client_data_json: &s.client_data_json,
            signature: &s.signature,
        };
        for (name, backend) in [("pure", Backend::Pure), ("ring", Backend::Ring)] {
            g.bench_function(format!("{}/countersign_{name}", alg.name()), |b| {
                b.iter(|| {
                    assert!(verify_assertion_with(
                        backend,
                        &s.key,
                        black_box(&a),
                        &s.challenge,
                        &policy
                    )
                    .is_ok())
                })
            });
        }
        let mut signed_bytes = s.authenticator_data.clone();
        signed_bytes.extend_from_slice(&sha256(&s.client_data_json));
        let PublicKey::Es256(point) = s.key else {
            let PublicKey::Ed25519(pk) = s.key else {
                unreachable!()
            };
            g.bench_function("EdDSA/raw_ring", |b| {
                b.iter(|| {
                    let k = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &pk);
                    assert!(k.verify(black_box(&signed_bytes), &s.signature).is_ok())
                })
            });
            continue;
        };
        g.bench_function("ES256/raw_ring", |b| {
            b.iter(|| {
                let k = ring::signature::UnparsedPublicKey::new(
                    &ring::signature::ECDSA_P256_SHA256_ASN1,
                    &point,
                );
                assert!(k.verify(black_box(&signed_bytes), &s.signature).is_ok())
            })
        });
        g.bench_function("ES256/raw_p256", |b| {
            b.iter(|| {
                use p256::ecdsa::signature::Verifier;
                let k = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
                let sig = p256::ecdsa::Signature::from_der(&s.signature).unwrap();
                assert!(k.verify(black_box(&signed_bytes), &sig).is_ok())
            })
        });
        g.bench_function("ES256/cose_key_parse", |b| {
            b.iter(|| assert!(parse_cose_key(black_box(&s.cose)).is_ok()))
        });
    }
    g.finish();
}

fn bundle(c: &mut Criterion) {
    let key = generate::log_vkey();
    let (b, _) = generate::sample_bundle(Alg::Es256, 3);
    let json = serde_json::to_vec(&b).unwrap();
    let mut g = c.benchmark_group("bundle_verify");
    g.bench_function("ES256/verify", |bn| {
        bn.iter(|| assert!(black_box(&b).verify(&key, &BundlePolicy::default()).is_ok()))
    });
    g.bench_function("ES256/parse_and_verify", |bn| {
        bn.iter(|| {
            let parsed = EvidenceBundle::from_json(black_box(&json)).unwrap();
            assert!(parsed.verify(&key, &BundlePolicy::default()).is_ok())
        })
    });
    g.bench_function("ES256/statement_hash", |bn| {
        bn.iter(|| assert_ne!(black_box(&b.statement).hash().unwrap(), [0u8; 32]))
    });
    // The primitives a bundle costs at least: 80 SHA-256 compressions of node-sized input, one
    // Ed25519 and one ES256 verification (raw ring).
    let block = [5u8; 65];
    g.bench_function("primitives/80x_sha256_65B", |bn| {
        bn.iter(|| {
            let mut acc = [0u8; 32];
            for _ in 0..80 {
                acc = sha256(black_box(&block));
            }
            assert_ne!(acc, [0u8; 32]);
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    inclusion,
    consistency,
    checkpoint,
    assertions,
    bundle
);
criterion_main!(benches);
