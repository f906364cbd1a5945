//! `countersign-verify tiles URL`: a log read straight from its C2SP tlog-tiles, wherever they
//! are served: the server, a bucket the server mirrors to (`serve --tiles`, spec/tiles-mirror.md),
//! a static web server, or a local directory. The checkpoint is verified with the log key; an
//! entry's inclusion and a trusted checkpoint's consistency are proven from the hash tiles, the
//! entry itself read from its entry bundle. Nothing read is trusted before it is checked.
//!
//! The only command that may use the network, and only to read the URL it is given.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use countersign_verifier::export::{split_entry_bundle, subtree_in_tiles, tile_path};
use countersign_verifier::{
    consistency_proof_ranges, fold_subtrees, inclusion_proof_ranges, leaf_hash,
    root_from_leaf_hashes, verify_checkpoint, verify_consistency, verify_inclusion, Entry, Hash,
    LeafRange, VerifierKey,
};
use serde_json::{json, Value};

use crate::{vkey_arg, Outcome, UsageError};

/// Largest object read: a full entry bundle of 256 entries of at most 64 KiB each.
const MAX_OBJECT: u64 = 256 * (65_535 + 2);

#[derive(Args)]
pub struct TilesArgs {
    /// Where the tiles are: an http(s):// base URL (the server, or a bucket's public URL with
    /// its prefix), file:///DIR or a directory path. `checkpoint` and `tile/...` are read below it.
    url: String,
    /// The log's verifier key `<name>+<hex id>+<base64>` (its data directory's log.vkey).
    #[arg(long, value_name = "VKEY")]
    log_key: String,
    /// Prove that the entry at this index is in the tree (repeatable): its bytes from the entry
    /// bundle, its leaf hash against the level-0 tile, its inclusion proof from the hash tiles.
    #[arg(long = "index", value_name = "N")]
    indexes: Vec<u64>,
    /// A checkpoint of this log you trust (a file, signed by the log key): prove from the hash
    /// tiles that the served tree extends it.
    #[arg(long, value_name = "FILE")]
    trusted_checkpoint: Option<String>,
}

/// Where objects are read from.
enum Source {
    Http {
        base: String,
        client: reqwest::blocking::Client,
    },
    Dir(PathBuf),
}

/// Why an object could not be had.
enum Fetch {
    /// The source answered that it has no such object: the endpoint is incomplete (exit 1).
    Missing(String),
    /// The source could not be read at all (exit 2).
    Unusable(String),
}

impl Source {
    fn open(url: &str) -> Result<Source, UsageError> {
        if url.starts_with("http://") || url.starts_with("https://") {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| UsageError(format!("HTTP client: {e}")))?;
            return Ok(Source::Http {
                base: url.trim_end_matches('/').to_owned(),
                client,
            });
        }
        let path = match url.strip_prefix("file://") {
            Some(p) if p.starts_with('/') => PathBuf::from(p),
            Some(_) => return Err(UsageError(format!("{url}: a file URL is file:///DIR"))),
            None if url.contains("://") => {
                return Err(UsageError(format!(
                    "{url}: use an http(s):// URL, file:///DIR or a directory"
                )))
            }
            None => PathBuf::from(url),
        };
        if !path.is_dir() {
            return Err(UsageError(format!("{}: not a directory", path.display())));
        }
        Ok(Source::Dir(path))
    }

    fn get(&self, rel: &str) -> Result<Vec<u8>, Fetch> {
        match self {
            Source::Http { base, client } => {
                let url = format!("{base}/{rel}");
                let r = client
                    .get(&url)
                    .send()
                    .map_err(|e| Fetch::Unusable(format!("{url}: {e}")))?;
                match r.status().as_u16() {
                    200 => {}
                    404 => return Err(Fetch::Missing(format!("{url}: 404 Not Found"))),
                    s => return Err(Fetch::Unusable(format!("{url}: HTTP {s}"))),
                }
                if r.content_length().is_some_and(|n| n > MAX_OBJECT) {
                    return Err(Fetch::Missing(format!("{url}: larger than any tile")));
                }
                let b = r
                    .bytes()
                    .map_err(|e| Fetch::Unusable(format!("{url}: {e}")))?;
                if b.len() as u64 > MAX_OBJECT {
                    return Err(Fetch::Missing(format!("{url}: larger than any tile")));
                }
                Ok(b.to_vec())
            }
            Source::Dir(dir) => {
                let p = dir.join(rel);
                match std::fs::metadata(&p) {
                    Ok(m) if m.len() > MAX_OBJECT => Err(Fetch::Missing(format!(
                        "{}: larger than any tile",
                        p.display()
                    ))),
                    Ok(_) => std::fs::read(&p)
                        .map_err(|e| Fetch::Unusable(format!("{}: {e}", p.display()))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Err(Fetch::Missing(format!("{}: no such file", p.display())))
                    }
                    Err(e) => Err(Fetch::Unusable(format!("{}: {e}", p.display()))),
                }
            }
        }
    }
}

/// A failed check (exit 1), or unusable input (exit 2).
enum Problem {
    Invalid(&'static str, String),
    Usage(String),
}

impl From<Fetch> for Problem {
    fn from(f: Fetch) -> Self {
        match f {
            Fetch::Missing(m) => Problem::Invalid("tiles", m),
            Fetch::Unusable(m) => Problem::Usage(m),
        }
    }
}

/// The hash tiles of one tree, read once each.
struct Tree<'a> {
    src: &'a Source,
    size: u64,
    tiles: HashMap<(u8, u64), Vec<Hash>>,
    read: usize,
}

impl Tree<'_> {
    /// The hash of complete subtree `s`, from the one tile holding its hashes.
    fn subtree(&mut self, s: countersign_verifier::Subtree) -> Result<Hash, Problem> {
        let run = subtree_in_tiles(s, self.size).ok_or_else(|| {
            Problem::Invalid(
                "tiles",
                format!(
                    "subtree {}/{} is not in a tree of {}",
                    s.level, s.index, self.size
                ),
            )
        })?;
        if !self.tiles.contains_key(&(run.level, run.index)) {
            let path = tile_path(Some(run.level), run.index, run.width);
            let b = self.src.get(&path)?;
            if b.len() as u64 != run.width * 32 {
                return Err(Problem::Invalid(
                    "tiles",
                    format!("{path}: {} bytes, not {}", b.len(), run.width * 32),
                ));
            }
            let hashes = b.chunks_exact(32).filter_map(Hash::from_slice).collect();
            self.tiles.insert((run.level, run.index), hashes);
            self.read += 1;
        }
        let hashes = &self.tiles[&(run.level, run.index)];
        Ok(root_from_leaf_hashes(&hashes[run.lo..run.hi]))
    }

    /// The hash of each range, from its complete subtrees.
    fn ranges(&mut self, ranges: &[LeafRange]) -> Result<Vec<Hash>, Problem> {
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            let mut hs = Vec::new();
            for s in r.subtrees() {
                hs.push(self.subtree(s)?);
            }
            out.push(
                fold_subtrees(&hs)
                    .ok_or_else(|| Problem::Invalid("tiles", "an empty proof range".into()))?,
            );
        }
        Ok(out)
    }
}

pub fn run(a: &TilesArgs) -> Result<Outcome, UsageError> {
    let key = vkey_arg("--log-key", &a.log_key)?;
    let trusted = match &a.trusted_checkpoint {
        Some(f) => Some(crate::read_input(f)?),
        None => None,
    };
    let src = Source::open(&a.url)?;
    match check(a, &key, trusted.as_deref(), &src) {
        Ok((summary, details)) => Ok(Outcome::Valid { summary, details }),
        Err(Problem::Invalid(check, message)) => Ok(Outcome::Invalid { check, message }),
        Err(Problem::Usage(m)) => Err(UsageError(m)),
    }
}

fn check(
    a: &TilesArgs,
    key: &VerifierKey,
    trusted: Option<&[u8]>,
    src: &Source,
) -> Result<(String, Value), Problem> {
    let note = src.get("checkpoint")?;
    let cp = verify_checkpoint(&note, key, &[])
        .map_err(|e| Problem::Invalid("checkpoint", format!("{}/checkpoint: {e}", a.url)))?
        .checkpoint;
    let mut tree = Tree {
        src,
        size: cp.size,
        tiles: HashMap::new(),
        read: 0,
    };
    let mut summary = format!(
        "OK: checkpoint of log {:?} verified: {} entries, root {}",
        cp.origin, cp.size, cp.root
    );
    let mut details = json!({
        "origin": cp.origin,
        "tree_size": cp.size,
        "root": cp.root.to_hex(),
    });

    let mut included = Vec::new();
    for &i in &a.indexes {
        if i >= cp.size {
            return Err(Problem::Invalid(
                "inclusion",
                format!("index {i} is not below the tree size {}", cp.size),
            ));
        }
        let bundle_index = i / 256;
        let width = (cp.size - bundle_index * 256).min(256);
        let path = tile_path(None, bundle_index, width);
        let bytes = src.get(&path)?;
        let entries = split_entry_bundle(&bytes)
            .map_err(|e| Problem::Invalid("entries", format!("{path}: {e}")))?;
        if entries.len() as u64 != width {
            return Err(Problem::Invalid(
                "entries",
                format!("{path}: {} entries, not {width}", entries.len()),
            ));
        }
        let entry = entries[usize::try_from(i % 256).unwrap_or(0)];
        let leaf = leaf_hash(entry);
        let tile_leaf = tree.subtree(countersign_verifier::Subtree { level: 0, index: i })?;
        if tile_leaf != leaf {
            return Err(Problem::Invalid(
                "entries",
                format!("entry {i} in {path} does not hash to the level-0 tile's hash {tile_leaf}"),
            ));
        }
        let ranges = inclusion_proof_ranges(i, cp.size)
            .map_err(|e| Problem::Invalid("inclusion", e.to_string()))?;
        let proof = tree.ranges(&ranges)?;
        verify_inclusion(&leaf, i, cp.size, &proof, &cp.root)
            .map_err(|e| Problem::Invalid("inclusion", format!("entry {i}: {e}")))?;
        let kind = match Entry::decode(entry) {
            Ok(Entry::Enrolment(_)) => "enrolment",
            Ok(Entry::Decision(_)) => "decision",
            Ok(Entry::Revocation(_)) => "revocation",
            Ok(Entry::Policy(_)) => "policy",
            Err(_) => "not a Countersign entry",
        };
        summary.push_str(&format!(
            "\ninclusion: entry {i} ({kind}, leaf hash {leaf}) is in the tree: proof of {} \
             hashes from the tiles verified",
            proof.len()
        ));
        included.push(json!({
            "index": i,
            "kind": kind,
            "leaf_hash": leaf.to_hex(),
            "entry": hex::encode(entry),
            "proof": proof.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
        }));
    }
    details["inclusion"] = Value::Array(included);

    if let Some(t) = trusted {
        let old = verify_checkpoint(t, key, &[])
            .map_err(|e| Problem::Invalid("consistency", format!("--trusted-checkpoint: {e}")))?
            .checkpoint;
        if old.size > cp.size {
            return Err(Problem::Invalid(
                "consistency",
                format!(
                    "the trusted checkpoint has {} entries, the served one {}: the served tree \
                     went back",
                    old.size, cp.size
                ),
            ));
        }
        let ranges = consistency_proof_ranges(old.size, cp.size)
            .map_err(|e| Problem::Invalid("consistency", e.to_string()))?;
        let proof = tree.ranges(&ranges)?;
        verify_consistency(old.size, cp.size, &old.root, &cp.root, &proof).map_err(|e| {
            Problem::Invalid(
                "consistency",
                format!(
                    "the served tree of {} does not extend the trusted one of {}: {e}",
                    cp.size, old.size
                ),
            )
        })?;
        summary.push_str(&format!(
            "\nconsistency: the trusted checkpoint of {} entries is a prefix of this tree: proof \
             of {} hashes from the tiles verified",
            old.size,
            proof.len()
        ));
        details["consistency"] = json!({
            "trusted_size": old.size,
            "trusted_root": old.root.to_hex(),
            "proof": proof.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
        });
    }
    summary.push_str(&format!("\ntiles read: {}", tree.read));
    details["tiles_read"] = json!(tree.read);
    Ok((summary, details))
}
