//! The JSON shapes and hex fields the log's handlers share.

use std::collections::HashMap;

use countersign_verifier::{parse_decimal, Hash};
use serde::Serialize;

use super::error::ApiError;

/// A handler's result.
pub(super) type ApiResult<T> = Result<T, ApiError>;

pub(super) fn hex_field(name: &'static str, s: &str) -> ApiResult<Vec<u8>> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("{name} must be lowercase hex"),
        ));
    }
    hex::decode(s)
        .map_err(|_| ApiError::bad_request("invalid_request", format!("{name} is not hex")))
}

pub(super) fn hex_array<const N: usize>(name: &'static str, s: &str) -> ApiResult<[u8; N]> {
    hex_field(name, s)?
        .try_into()
        .map_err(|_| ApiError::bad_request("invalid_request", format!("{name} must be {N} bytes")))
}

/// A hash serialised as lowercase hex without an intermediate `String`.
pub(super) struct HexHash<'a>(pub(super) &'a Hash);

impl Serialize for HexHash<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 64];
        hex::encode_to_slice(self.0.as_bytes(), &mut buf).map_err(serde::ser::Error::custom)?;
        s.serialize_str(std::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?)
    }
}

/// A list of hashes serialised as a JSON array of lowercase hex strings.
pub(super) struct HexList<'a>(pub(super) &'a [Hash]);

impl Serialize for HexList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(HexHash))
    }
}

/// `GET /v1/log/proof/inclusion` and the answer to an append.
#[derive(Serialize)]
pub(super) struct InclusionBody<'a> {
    pub(super) index: u64,
    pub(super) tree_size: u64,
    pub(super) leaf_hash: HexHash<'a>,
    pub(super) inclusion_proof: HexList<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) checkpoint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) existing: Option<bool>,
}

pub(super) fn query_u64(q: &HashMap<String, String>, name: &'static str) -> ApiResult<Option<u64>> {
    q.get(name)
        .map(|v| {
            parse_decimal(v).ok_or_else(|| {
                ApiError::bad_request("invalid_request", format!("{name} is not a decimal number"))
            })
        })
        .transpose()
}
