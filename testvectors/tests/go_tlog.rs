//! `known-answer/go-tlog.json`, computed by Go's `golang.org/x/mod/sumdb/tlog` (an
//! implementation this project did not write; see `testvectors/go/` and
//! `scripts/go-check.sh`), reproduced exactly by our code: the verifier's roots, proof shapes and
//! proof checks, and the log's way of building proofs and tiles from the node hashes its
//! sequencer stores (`RootStack::push_with`, `LeafRange::subtrees` + `fold_subtrees`, node runs
//! at level `8L`) and its tile path code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use countersign_log::tiles::{format_index, parse_tile_path};
use countersign_verifier::{
    consistency_proof_ranges, fold_subtrees, inclusion_proof_ranges, leaf_hash,
    root_from_leaf_hashes, verify_consistency, verify_inclusion, Hash, LeafRange, ProofError,
    RootStack,
};
use serde_json::Value;

fn load() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/known-answer/go-tlog.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn hash(v: &Value) -> Hash {
    Hash::from_hex(v.as_str().unwrap()).unwrap()
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array().unwrap().iter().map(hash).collect()
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

/// The tree as the log stores it: every complete subtree's hash, written by the same
/// `RootStack::push_with` the sequencer uses, addressed by (level, index).
struct Stored {
    leaves: Vec<Hash>,
    nodes: HashMap<(u8, u64), Hash>,
    roots: Vec<Hash>,
}

impl Stored {
    fn build(v: &Value) -> Stored {
        let count = n(&v["leaf_count"]);
        let mut stack = RootStack::default();
        let mut s = Stored {
            leaves: Vec::new(),
            nodes: HashMap::new(),
            roots: Vec::new(),
        };
        for i in 0..count {
            let leaf = leaf_hash(format!("countersign test leaf {i}").as_bytes());
            s.leaves.push(leaf);
            stack.push_with(leaf, |level, index, h| {
                s.nodes.insert((level, index), *h);
            });
            s.roots.push(stack.root());
        }
        s
    }

    fn root(&self, size: u64) -> Hash {
        self.roots[size as usize - 1]
    }

    /// A proof as `countersign_log::proofs` assembles it: each range's subtrees read from the
    /// stored nodes and folded.
    fn proof(&self, ranges: &[LeafRange]) -> Vec<Hash> {
        ranges
            .iter()
            .map(|r| {
                let sub: Vec<Hash> = r
                    .subtrees()
                    .iter()
                    .map(|t| self.nodes[&(t.level, t.index)])
                    .collect();
                fold_subtrees(&sub).unwrap()
            })
            .collect()
    }
}

#[test]
fn file_names_its_go_source() {
    let v = load();
    let source = v["source"].as_str().unwrap();
    assert!(source.contains("golang.org/x/mod/sumdb/tlog"), "{source}");
    assert!(source.contains("golang-golang-x-mod-dev"), "{source}");
    assert!(n(&v["leaf_count"]) >= 1000);
}

#[test]
fn roots_match_go() {
    let v = load();
    let s = Stored::build(&v);
    let roots = v["roots"].as_array().unwrap();
    assert!(roots.len() >= 80);
    for r in roots {
        let size = n(&r["tree_size"]);
        let want = hash(&r["root"]);
        assert_eq!(s.root(size), want, "RootStack root of {size}");
        assert_eq!(
            root_from_leaf_hashes(&s.leaves[..size as usize]),
            want,
            "root_from_leaf_hashes of {size}"
        );
    }
}

#[test]
fn inclusion_proofs_match_go_and_flips_are_refused() {
    let v = load();
    let s = Stored::build(&v);
    let cases = v["inclusion"].as_array().unwrap();
    assert!(cases.iter().any(|c| n(&c["tree_size"]) > 256));
    for c in cases {
        let (index, size) = (n(&c["index"]), n(&c["tree_size"]));
        let (leaf, root, proof) = (hash(&c["leaf_hash"]), hash(&c["root"]), hashes(&c["proof"]));
        assert_eq!(s.leaves[index as usize], leaf, "leaf hash {index}");
        assert_eq!(s.root(size), root, "root {size}");
        let ranges = inclusion_proof_ranges(index, size).unwrap();
        assert_eq!(s.proof(&ranges), proof, "log's proof of {index} in {size}");
        verify_inclusion(&leaf, index, size, &proof, &root)
            .unwrap_or_else(|e| panic!("Go's proof of {index} in {size} refused: {e}"));
        for k in 0..proof.len() {
            let mut bad = proof.clone();
            bad[k].0[(k * 7) % 32] ^= 1 << (k % 8);
            let e = verify_inclusion(&leaf, index, size, &bad, &root).unwrap_err();
            assert_eq!(e, ProofError::RootMismatch, "{index} in {size}, hash {k}");
            assert_eq!(
                e.to_string(),
                "proof does not lead to the expected root hash"
            );
        }
        if let Some((_, short)) = proof.split_last() {
            assert_eq!(
                verify_inclusion(&leaf, index, size, short, &root),
                Err(ProofError::ProofTooShort)
            );
        }
    }
}

#[test]
fn consistency_proofs_match_go_and_flips_are_refused() {
    let v = load();
    let s = Stored::build(&v);
    let cases = v["consistency"].as_array().unwrap();
    assert!(cases.iter().any(|c| n(&c["old_size"]) > 8));
    for c in cases {
        let (old, new) = (n(&c["old_size"]), n(&c["new_size"]));
        let (old_root, new_root) = (hash(&c["old_root"]), hash(&c["new_root"]));
        let proof = hashes(&c["proof"]);
        assert_eq!((s.root(old), s.root(new)), (old_root, new_root));
        let ranges = consistency_proof_ranges(old, new).unwrap();
        assert_eq!(s.proof(&ranges), proof, "log's proof from {old} to {new}");
        verify_consistency(old, new, &old_root, &new_root, &proof)
            .unwrap_or_else(|e| panic!("Go's proof from {old} to {new} refused: {e}"));
        for k in 0..proof.len() {
            let mut bad = proof.clone();
            bad[k].0[31 - k % 32] ^= 0x80;
            let e = verify_consistency(old, new, &old_root, &new_root, &bad).unwrap_err();
            assert!(
                matches!(e, ProofError::OldRootMismatch | ProofError::NewRootMismatch),
                "{old} to {new}, hash {k}: {e:?}"
            );
            assert!(e.to_string().contains("does not reproduce the"), "{e}");
        }
        if old < new {
            let mut extended = proof.clone();
            extended.push(new_root);
            assert_eq!(
                verify_consistency(old, new, &old_root, &new_root, &extended),
                Err(ProofError::ProofTooLong)
            );
        }
    }
}

#[test]
fn tiles_match_go() {
    let v = load();
    let s = Stored::build(&v);
    let sets = v["tiles"].as_array().unwrap();
    assert_eq!(sets.len(), 3);
    for set in sets {
        let size = n(&set["tree_size"]);
        assert_eq!(s.root(size), hash(&set["root"]));
        let tiles = set["tiles"].as_array().unwrap();
        // Every tile a reader of this tree needs: at each tile level, the full tiles and one
        // partial tile (the log's read_tile serves exactly these widths).
        let mut want_count = 0;
        let mut level = 0u32;
        while size >> (8 * level) > 0 {
            let hashes_at = size >> (8 * level);
            want_count += hashes_at.div_ceil(256);
            level += 1;
        }
        assert_eq!(tiles.len() as u64, want_count, "tiles of {size}");
        for t in tiles {
            let (l, index, width) = (n(&t["level"]), n(&t["index"]), n(&t["width"]));
            let c2sp = t["c2sp_path"].as_str().unwrap();
            let ours = format!(
                "tile/{l}/{}{}",
                format_index(index),
                if width == 256 {
                    String::new()
                } else {
                    format!(".p/{width}")
                }
            );
            assert_eq!(ours, c2sp, "path of tile {l}/{index} in {size}");
            let parsed = parse_tile_path(c2sp.strip_prefix("tile/").unwrap()).unwrap();
            assert_eq!(parsed.level, Some(l as u8));
            assert_eq!(parsed.index, index);
            assert_eq!(parsed.partial.map_or(256, u64::from), width);
            // The log's tile: the stored hashes at tree level 8L, indices [256N, 256N + W).
            let data: Vec<u8> = (index * 256..index * 256 + width)
                .flat_map(|i| s.nodes[&((8 * l) as u8, i)].0)
                .collect();
            assert_eq!(
                hex::encode(data),
                t["data"].as_str().unwrap(),
                "{c2sp} of {size}"
            );
        }
    }
}

#[test]
fn go_roots_agree_with_the_generated_vectors() {
    // The generator's trees use the same leaves, so Go's roots also vouch for the committed
    // inclusion and consistency vectors (up to 70 leaves), whoever computed them.
    let v = load();
    let roots: HashMap<u64, String> = v["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (n(&r["tree_size"]), r["root"].as_str().unwrap().to_owned()))
        .collect();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/inclusion");
    let mut checked = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("valid-")
        {
            continue;
        }
        let vec: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            roots[&n(&vec["tree_size"])],
            vec["root"].as_str().unwrap(),
            "{}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 8);
}
