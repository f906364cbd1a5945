//! A C2SP [tlog-witness](https://c2sp.org/tlog-witness) for any C2SP log: it checks that each
//! checkpoint a log submits is signed by the log and consistent with the last one it cosigned
//! for that log, stores it durably, and answers a
//! [`cosignature/v1`](https://c2sp.org/tlog-cosignature) cosignature.
//!
//! Layering: built on `countersign-verifier` only (notes, checkpoints, consistency proofs,
//! tlog-policy); it knows nothing of the Countersign log or its front end. The `countersign`
//! binary wires it as `countersign witness keygen|serve`.
//!
//! # Usage
//!
//! ```text
//! countersign witness keygen --name witness.example/w1 --key-file w1.key
//! # prints the verifier key: witness.example/w1+<hex id>+<base64(0x04 || public key)>
//! countersign witness serve --key-file w1.key --logs logs.policy \
//!     --listen 127.0.0.1:7380 --data-dir ./witness-data
//! ```
//!
//! `logs.policy` is a [tlog-policy](https://c2sp.org/tlog-policy) file; its `log <vkey> [url]`
//! lines are the logs witnessed (the key name is the log's origin). Other lines are checked
//! but ignored by the witness, and the file needs its one `quorum` line: `quorum none` will do.
//!
//! # HTTP
//!
//! - `POST /add-checkpoint`: tlog-witness. 200 with the cosignature line; 400 malformed,
//!   oversized, or old size above the checkpoint's; 403 no valid log signature; 404 unknown
//!   origin; 409 (`text/x.tlog.size`, the latest cosigned size) for an old size other than the
//!   latest cosigned one, or the same size with another root; 422 a consistency proof that does
//!   not verify.
//! - `GET /checkpoint/<origin>`: the latest cosigned checkpoint of a log, as a signed note with
//!   the log's signatures and the witness's cosignature (tlog-witness leaves monitor retrieval
//!   "TBD"; this is ours). 404 if unknown or never cosigned.
//! - `GET /health`: `ok <verifier key>`.
//!
//! # Guarantees
//!
//! Per log, requests are serialized and the new state is on disk (file written, synced,
//! renamed, directory synced) before a cosignature is returned, so even across crashes the
//! witness never cosigns two roots at one size, nor a smaller tree after a larger one. The
//! key file format and the state layout are in `spec/witness.md`.

mod http;
mod key;
mod request;
mod store;
mod witness;

pub use http::{router, TLOG_SIZE};
pub use key::{KeyError, WitnessKey};
/// The `add-checkpoint` body parser, public for the fuzz target `witness_request` and `witness_add` only.
#[doc(hidden)]
pub use request::{parse as parse_add_checkpoint, AddCheckpoint};
pub use request::{MAX_PROOF_LINES, MAX_REQUEST_BYTES};
pub use witness::{AddError, OpenError, Witness};
