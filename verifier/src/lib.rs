#![doc = include_str!("../README.md")]
#![no_std]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod approval_policy;
#[cfg(feature = "std")]
mod bundle;
mod checkpoint;
mod cose;
mod crypto;
mod entry;
#[cfg(feature = "std")]
pub mod export;
mod hash;
mod note;
mod policy;
mod proof;
mod registration;
#[cfg(feature = "std")]
mod report;
mod revocation;
#[cfg(feature = "std")]
mod statement;
mod tlog_proof;
mod webauthn;

pub use approval_policy::{
    ApprovalPolicy, ApprovalPolicyError, ApprovalPolicyErrorKind, ApprovalRule, Approvers,
    Condition, Decimal, DecimalError, EvalError, MatchedRule, Op, Outcome, PolicyJsonError,
    PolicyPlace, Unevaluable, ValidatedPolicy, APPROVAL_POLICY_VERSION, MAX_DECIMAL_DIGITS,
    MAX_FIELD_SEGMENTS, MAX_GROUP_NAME_BYTES, MAX_POLICY_GROUPS, MAX_POLICY_LIST, MAX_POLICY_RULES,
    MAX_RULE_EXPIRY_SECONDS, MAX_RULE_NAME_BYTES, MAX_WHEN_TEXT_BYTES,
};
#[cfg(feature = "std")]
pub use bundle::{
    check_decision_enrolment, check_decision_statement, check_execution, check_statement_policy,
    verify_decision, verify_decision_assertion, verify_decision_assertion_with_key, BundleError,
    BundlePolicy, CheckedDecision, DecisionLink, EvidenceBundle, ExecutionError, LoggedEntry,
    RelyingParty, VerifiedApproval, VerifiedApprovalPolicy, VerifiedBundle, BUNDLE_VERSION,
    BUNDLE_VERSION_POLICY, MAX_BUNDLE_BYTES,
};
pub use checkpoint::{
    parse_decimal, verify_checkpoint, Checkpoint, CheckpointError, VerifiedCheckpoint,
};
pub use cose::{
    cose_alg, parse_cose_key, parse_cose_key_prefix, CoseKeyError, ALG_EDDSA, ALG_ES256, ALG_RS256,
    MAX_COSE_KEY_BYTES,
};
pub use crypto::{
    verify as verify_signature, verify_ed25519, verify_with as verify_signature_with, Backend,
    PublicKey, RSA_MAX_BITS, RSA_MIN_BITS,
};
pub use entry::{
    challenge, is_valid_id, AttestationRecord, Decision, Enrolment, Entry, EntryError, PolicyEntry,
    Revocation, SignedDecision, ENTRY_VERSION, ENTRY_VERSION_ATTESTED_ENROLMENT, MAX_ENTRY_BYTES,
    MAX_ID_BYTES, MAX_POLICY_ENTRY_BYTES,
};
pub use hash::{empty_root, leaf_hash, node_hash, root_from_leaf_hashes, sha256, Hash, RootStack};
pub use note::{
    cosignature_message, key_id, Note, NoteError, NoteSignature, VerifiedSignature, VerifierKey,
    ALG_COSIGNATURE_V1, ALG_ED25519, MAX_NOTE_BYTES, MAX_SIGNATURES,
};
pub use policy::{
    verify_checkpoint_with_policy, Policy, PolicyCheckError, PolicyError, PolicyGroup, PolicyLog,
    PolicyMember, PolicyWitness, MAX_POLICY_BYTES, MAX_POLICY_ITEMS,
};
pub use proof::{
    consistency_proof_ranges, fold_subtrees, inclusion_proof_ranges, root_from_inclusion_proof,
    verify_consistency, verify_inclusion, LeafRange, ProofError, Subtree, MAX_PROOF_HASHES,
};
pub use registration::{
    verify_registration, AttestationTrust, RegisteredCredential, RegistrationError,
    RegistrationPolicy, MAX_ATTESTATION_CERTIFICATES, MAX_ATTESTATION_OBJECT_BYTES,
};
#[cfg(feature = "std")]
pub use report::{bundle_report, Expectation, UnknownExpectation, UNSIGNED_BUNDLE_MEMBERS};
pub use revocation::{check_not_revoked, RevocationCheck, RevocationError, RevocationSubject};
#[cfg(feature = "std")]
pub use statement::{
    canonical_json, find_unsafe_text, is_unsafe_display_char, parse_json_strict,
    unsafe_display_class, validate_authorization_details, validate_binding_message, Statement,
    StatementError, StatementPolicy, UnsafeText, MAX_BINDING_MESSAGE_CHARS, MAX_SAFE_INTEGER,
    MAX_STATEMENT_APPROVERS, MAX_STATEMENT_BYTES, STATEMENT_VERSION, STATEMENT_VERSION_POLICY,
};
pub use tlog_proof::{TlogProof, TlogProofError};
pub use webauthn::{
    check_sign_count, flags, verify_assertion, verify_assertion_with, Assertion, AssertionError,
    AssertionPolicy, AttestedCredential, AuthenticatorData, ClientData, VerifiedAssertion,
    MAX_AUTHENTICATOR_DATA_BYTES, MAX_CLIENT_DATA_BYTES, MAX_CREDENTIAL_ID_BYTES,
    MAX_SIGNATURE_BYTES,
};
