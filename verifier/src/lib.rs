#![doc = include_str!("../README.md")]
#![no_std]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod checkpoint;
mod cose;
mod crypto;
mod entry;
mod hash;
mod note;
mod proof;
mod registration;
mod tlog_proof;
#[cfg(feature = "std")]
mod statement;
#[cfg(feature = "std")]
mod bundle;
mod webauthn;

pub use checkpoint::{parse_decimal, verify_checkpoint, Checkpoint, CheckpointError, VerifiedCheckpoint};
pub use cose::{cose_alg, parse_cose_key, parse_cose_key_prefix, CoseKeyError, ALG_EDDSA, ALG_ES256, ALG_RS256, MAX_COSE_KEY_BYTES};
pub use crypto::{verify as verify_signature, verify_ed25519, verify_with as verify_signature_with, Backend, PublicKey};
pub use entry::{challenge, is_valid_id, Decision, Enrolment, Entry, EntryError, Revocation, SignedDecision, MAX_ENTRY_BYTES};
pub use hash::{empty_root, leaf_hash, node_hash, root_from_leaf_hashes, sha256, Hash, RootStack};
pub use note::{cosignature_message, key_id, Note, NoteError, NoteSignature, VerifiedSignature, VerifierKey, MAX_NOTE_BYTES, MAX_SIGNATURES};
pub use proof::{
    consistency_proof_ranges, fold_subtrees, inclusion_proof_ranges, root_from_inclusion_proof,
    verify_consistency, verify_inclusion, LeafRange, ProofError, Subtree, MAX_PROOF_HASHES,
};
pub use webauthn::{
    flags, verify_assertion, verify_assertion_with, Assertion, AssertionError, AssertionPolicy,
    AttestedCredential, AuthenticatorData, ClientData, VerifiedAssertion,
};
#[cfg(feature = "std")]
pub use statement::{
    canonical_json, is_unsafe_display_char, parse_json_strict, validate_authorization_details, validate_binding_message, Statement,
    StatementError, MAX_BINDING_MESSAGE_CHARS, MAX_STATEMENT_BYTES,
};
#[cfg(feature = "std")]
pub use bundle::{
    check_execution, BundleError, BundlePolicy, EvidenceBundle, ExecutionError, LoggedEntry,
    RelyingParty, VerifiedBundle, MAX_BUNDLE_BYTES,
};
pub use tlog_proof::{TlogProof, TlogProofError};
pub use registration::{
    verify_registration, AttestationTrust, RegisteredCredential, RegistrationError,
    RegistrationPolicy, MAX_ATTESTATION_OBJECT_BYTES,
};
