//! C2SP tlog-tiles: path parsing and tile contents.
//!
//! Hash tiles are read straight from the node hashes the sequencer stores for every complete
//! subtree: tile `L/N` of width `W` holds the hashes at tree level `8L`, indices
//! `[256N, 256N + W)`. Entry bundles are the entries `[256N, 256N + W)`, each with a 2-byte
//! big-endian length prefix.

use crate::storage::{StorageError, Store};

/// Hashes (or entries) per full tile.
pub const TILE_WIDTH: u64 = 256;
/// Tree levels per tile level.
pub const TILE_HEIGHT: u32 = 8;

/// A parsed tile request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileRef {
    /// `None` for entry bundles, else the tile level `L`.
    pub level: Option<u8>,
    /// Tile index `N`.
    pub index: u64,
    /// `Some(W)` for a partial tile.
    pub partial: Option<u16>,
}

/// Why a tile path is not one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadTilePath(pub &'static str);

fn three_digits(s: &str) -> Option<u64> {
    (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Parses the C2SP index form: `x001/x234/067` (every element but the last prefixed with `x`,
/// each exactly three digits, no redundant leading `x000` element).
pub fn parse_index(segments: &[&str]) -> Result<u64, BadTilePath> {
    let (last, prefix) = segments
        .split_last()
        .ok_or(BadTilePath("missing tile index"))?;
    if prefix.len() > 6 {
        return Err(BadTilePath("tile index too large"));
    }
    let mut n: u64 = 0;
    for (i, s) in prefix.iter().enumerate() {
        let d = s
            .strip_prefix('x')
            .and_then(three_digits)
            .ok_or(BadTilePath("tile index element is not xNNN"))?;
        if i == 0 && d == 0 {
            return Err(BadTilePath("tile index has a leading x000 element"));
        }
        n = n
            .checked_mul(1000)
            .and_then(|n| n.checked_add(d))
            .ok_or(BadTilePath("tile index too large"))?;
    }
    let d = three_digits(last).ok_or(BadTilePath("tile index element is not NNN"))?;
    n.checked_mul(1000)
        .and_then(|n| n.checked_add(d))
        .ok_or(BadTilePath("tile index too large"))
}

/// Formats a tile index in the C2SP path form.
pub fn format_index(n: u64) -> String {
    countersign_verifier::export::tile_index_path(n)
}

/// Parses what follows `/tile/`: `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`.
pub fn parse_tile_path(path: &str) -> Result<TileRef, BadTilePath> {
    let mut segs: Vec<&str> = path.split('/').collect();
    let level = match segs.first().copied() {
        Some("entries") => None,
        Some(l) => {
            let ok = !l.is_empty()
                && l.len() <= 2
                && l.bytes().all(|b| b.is_ascii_digit())
                && (l == "0" || !l.starts_with('0'));
            let v: u8 = if ok {
                l.parse().unwrap_or(u8::MAX)
            } else {
                u8::MAX
            };
            // Level 8 would start at tree level 64, beyond any u64-sized tree.
            if v > 7 {
                return Err(BadTilePath("tile level is not a decimal in 0..=7"));
            }
            Some(v)
        }
        None => return Err(BadTilePath("empty tile path")),
    };
    segs.remove(0);
    let mut partial = None;
    if segs.len() >= 2 {
        let n = segs.len();
        if let Some(stripped) = segs[n - 2].strip_suffix(".p") {
            let w = segs[n - 1];
            let ok = !w.is_empty()
                && w.len() <= 3
                && w.bytes().all(|b| b.is_ascii_digit())
                && !w.starts_with('0');
            let w: u16 = if ok { w.parse().unwrap_or(0) } else { 0 };
            if w == 0 || u64::from(w) >= TILE_WIDTH {
                return Err(BadTilePath("partial tile width is not in 1..=255"));
            }
            partial = Some(w);
            segs.truncate(n - 1);
            segs[n - 2] = stripped;
        }
    }
    let index = parse_index(&segs)?;
    Ok(TileRef {
        level,
        index,
        partial,
    })
}

/// The result of a tile read.
#[derive(Debug)]
pub enum TileRead {
    /// The tile's bytes.
    Found(Vec<u8>),
    /// The tree is not large enough for this tile (yet).
    NotFound,
}

impl TileRef {
    /// Its first entry or hash and the end of its range at its tree level, if the tree of
    /// `tree_size` leaves has the whole tile.
    fn range_in(&self, tree_size: u64) -> Option<(u64, u64)> {
        let width = self.partial.map_or(TILE_WIDTH, u64::from);
        let start = self.index.checked_mul(TILE_WIDTH)?;
        let end = start.checked_add(width)?;
        let tree_level = self.level.map_or(0, |l| u32::from(l) * TILE_HEIGHT);
        // Complete subtrees at this tree level.
        let available = tree_size.checked_shr(tree_level).unwrap_or(0);
        (end <= available).then_some((start, end))
    }

    /// Its object path (`tile/…`), if the tree of `tree_size` leaves has the whole tile.
    pub fn path_at(&self, tree_size: u64) -> Option<String> {
        self.range_in(tree_size)?;
        Some(countersign_verifier::export::tile_path(
            self.level,
            self.index,
            self.partial.map_or(TILE_WIDTH, u64::from),
        ))
    }
}

/// Reads the tile `t` as of a tree of `tree_size` leaves.
pub fn read_tile(store: &Store, t: &TileRef, tree_size: u64) -> Result<TileRead, StorageError> {
    let Some((start, end)) = t.range_in(tree_size) else {
        return Ok(TileRead::NotFound);
    };
    let width = end - start;
    match t.level {
        Some(level) => Ok(TileRead::Found(store.hash_tile(level, t.index, width)?)),
        None => Ok(TileRead::Found(store.entry_bundle(t.index, width)?)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn shared_vectors() {
        // The public C2SP/RFC 6962 vectors, kept in the repository with their sources.
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testvectors/known-answer/rfc6962-c2sp-vectors.json"
        ))
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(!v["tiles"]["index_path_examples"]
            .as_object()
            .unwrap()
            .is_empty());
        for (n, p) in v["tiles"]["index_path_examples"].as_object().unwrap() {
            let n: u64 = n.parse().unwrap();
            assert_eq!(format_index(n), p.as_str().unwrap());
            let segs: Vec<&str> = p.as_str().unwrap().split('/').collect();
            assert_eq!(parse_index(&segs).unwrap(), n);
        }
    }

    #[test]
    fn parses_go_example_and_rejects_junk() {
        assert_eq!(
            parse_tile_path("4/x001/x234/067.p/1").unwrap(),
            TileRef {
                level: Some(4),
                index: 1_234_067,
                partial: Some(1)
            }
        );
        assert_eq!(
            parse_tile_path("entries/000").unwrap(),
            TileRef {
                level: None,
                index: 0,
                partial: None
            }
        );
        assert_eq!(format_index(1_234_067), "x001/x234/067");
        for bad in [
            "",
            "0",
            "0/",
            "0/1",
            "0/0000",
            "0/x000/001",
            "00/000",
            "8/000",
            "0/000.p/0",
            "0/000.p/256",
            "0/000.p/01",
            "0/000.p/",
            "0/000.p",
            "entries/abc",
            "0/x1/000",
            "0/001/002",
            "-1/000",
            "0/000/",
            "0/x001",
            "0/x001/x002",
        ] {
            assert!(parse_tile_path(bad).is_err(), "{bad:?}");
        }
    }
}
