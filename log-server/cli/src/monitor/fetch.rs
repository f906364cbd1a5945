//! What the monitor reads over HTTP: the log's checkpoint, hash tiles and entry bundles (C2SP
//! tlog-tiles), and a witness's latest checkpoint of the log.
//!
//! Consistency is computed from the tiles alone, as any tlog-tiles client can: the proof's
//! hashes are subtree hashes read from the hash tiles of the newer tree, so the monitor needs
//! nothing of the log beyond the read API every C2SP log serves.

use std::collections::HashMap;
use std::time::Duration;

use countersign_verifier::export::{split_entry_bundle, subtree_in_tiles, tile_path};
use countersign_verifier::{
    consistency_proof_ranges, fold_subtrees, root_from_leaf_hashes, Hash, Subtree,
};

/// Why a read failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum FetchError {
    /// No answer, a timeout, or a server error: try again later.
    Unreachable(String),
    /// The server answered 404: it does not have it (yet).
    NotFound(String),
    /// An answer that is not what the protocol says (a tile of the wrong length, a bundle that
    /// does not split).
    Malformed(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Unreachable(w) => write!(f, "unreachable: {w}"),
            FetchError::NotFound(w) => write!(f, "not found: {w}"),
            FetchError::Malformed(w) => write!(f, "malformed answer: {w}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// Largest body read: a full entry bundle is at most 256 entries of 64 KiB.
const MAX_BODY: usize = 256 * (65_535 + 2);

/// Tiles kept between reads: the upper tiles of a proof are shared by every bundle's proof, so
/// a few suffice; the cache is cleared when full, so memory stays bounded.
const TILE_CACHE: usize = 64;

/// An HTTP reader of one C2SP log (and of witnesses).
pub struct Reader {
    http: reqwest::Client,
    base: String,
    tiles: HashMap<String, Vec<u8>>,
}

impl Reader {
    /// A reader of the log at `base` (its URL prefix, without the trailing slash).
    pub fn new(base: &str, timeout: Duration) -> Result<Reader, FetchError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| FetchError::Unreachable(format!("HTTP client: {e}")))?;
        Ok(Reader {
            http,
            base: base.trim_end_matches('/').to_owned(),
            tiles: HashMap::new(),
        })
    }

    /// GETs `url`: the body of a 200.
    pub async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let r = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| FetchError::Unreachable(format!("{url}: {e}")))?;
        let status = r.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(FetchError::NotFound(url.to_owned()));
        }
        if !status.is_success() {
            return Err(FetchError::Unreachable(format!("{url}: HTTP {status}")));
        }
        // Read chunk by chunk: a server sending an endless body must not grow memory.
        let mut r = r;
        let mut body = Vec::new();
        while let Some(chunk) = r
            .chunk()
            .await
            .map_err(|e| FetchError::Unreachable(format!("{url}: {e}")))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(FetchError::Malformed(format!(
                    "{url}: larger than {MAX_BODY} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The log's current signed checkpoint (`GET <log>/checkpoint`), unverified.
    pub async fn checkpoint(&self) -> Result<Vec<u8>, FetchError> {
        self.get(&format!("{}/checkpoint", self.base)).await
    }

    /// A witness's latest checkpoint of the log with `origin` (`GET <witness>/checkpoint/<origin>`,
    /// spec/monitor.md M6, as `countersign witness serve` answers it); `None` when the witness
    /// has none (404).
    pub async fn witness_checkpoint(
        &self,
        witness: &str,
        origin: &str,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        let url = format!(
            "{}/checkpoint/{}",
            witness.trim_end_matches('/'),
            path_escape(origin)
        );
        match self.get(&url).await {
            Ok(b) => Ok(Some(b)),
            Err(FetchError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The entries of bundle `index` of a tree of `tree_size` leaves.
    pub async fn entry_bundle(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<Vec<Vec<u8>>, FetchError> {
        let width = width(tree_size, index);
        let url = format!("{}/{}", self.base, tile_path(None, index, width));
        let body = self.get(&url).await?;
        let entries =
            split_entry_bundle(&body).map_err(|e| FetchError::Malformed(format!("{url}: {e}")))?;
        if entries.len() as u64 != width {
            return Err(FetchError::Malformed(format!(
                "{url}: {} entries, not {width}",
                entries.len()
            )));
        }
        Ok(entries.into_iter().map(<[u8]>::to_vec).collect())
    }

    /// The hash tile `level/index` of a tree of `tree_size` leaves, as hashes.
    async fn hash_tile(
        &mut self,
        level: u8,
        index: u64,
        tree_size: u64,
    ) -> Result<Vec<Hash>, FetchError> {
        let available = tree_size.checked_shr(8 * u32::from(level)).unwrap_or(0);
        let width = width(available, index);
        let path = tile_path(Some(level), index, width);
        let body = match self.tiles.get(&path) {
            Some(b) => b.clone(),
            None => {
                let b = self.get(&format!("{}/{path}", self.base)).await?;
                if b.len() as u64 != width * 32 {
                    return Err(FetchError::Malformed(format!(
                        "{path}: {} bytes, not {}",
                        b.len(),
                        width * 32
                    )));
                }
                if self.tiles.len() >= TILE_CACHE {
                    self.tiles.clear();
                }
                self.tiles.insert(path, b.clone());
                b
            }
        };
        Ok(body.chunks_exact(32).filter_map(Hash::from_slice).collect())
    }

    /// The hash of complete subtree `s` of the tree of `tree_size` leaves, from the one hash
    /// tile holding its hashes at the tile level below it.
    async fn subtree(&mut self, s: Subtree, tree_size: u64) -> Result<Hash, FetchError> {
        let at = subtree_in_tiles(s, tree_size).ok_or_else(|| {
            FetchError::Malformed(format!(
                "subtree {}/{} is not in a tree of {tree_size}",
                s.level, s.index
            ))
        })?;
        let hashes = self.hash_tile(at.level, at.index, tree_size).await?;
        let run = hashes.get(at.lo..at.hi).ok_or_else(|| {
            FetchError::Malformed(format!(
                "subtree {}/{} is outside tile {}/{}",
                s.level, s.index, at.level, at.index
            ))
        })?;
        Ok(root_from_leaf_hashes(run))
    }

    /// The RFC 6962 consistency proof from `old_size` to `new_size`, computed from the hash
    /// tiles of the tree of `new_size` leaves.
    pub async fn consistency_proof(
        &mut self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Hash>, FetchError> {
        let ranges = consistency_proof_ranges(old_size, new_size)
            .map_err(|e| FetchError::Malformed(e.to_string()))?;
        let mut proof = Vec::with_capacity(ranges.len());
        for range in ranges {
            let mut hashes = Vec::new();
            for s in range.subtrees() {
                hashes.push(self.subtree(s, new_size).await?);
            }
            proof.push(
                fold_subtrees(&hashes)
                    .ok_or_else(|| FetchError::Malformed("an empty proof range".into()))?,
            );
        }
        Ok(proof)
    }
}

/// The width of tile `index` at a level holding `available` hashes (or entries): 256, or what
/// the tree has of it.
fn width(available: u64, index: u64) -> u64 {
    available.saturating_sub(index.saturating_mul(256)).min(256)
}

/// An origin as a URL path: its slashes kept (a witness reads the rest of the path as the
/// origin), every byte but the unreserved ones percent-encoded.
fn path_escape(origin: &str) -> String {
    let mut out = String::with_capacity(origin.len());
    for b in origin.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_keep_their_slashes_and_escape_the_rest() {
        assert_eq!(path_escape("log.example/a-b_c~1"), "log.example/a-b_c~1");
        assert_eq!(path_escape("a b?c#d%é"), "a%20b%3Fc%23d%25%C3%A9");
    }
}
