//! Evidence bundles (`spec/evidence-bundle.md`): everything needed to prove offline who approved
//! what, checked link by link down to the log's checkpoint signature; and the execution check.

use core::fmt;
use std::string::{String, ToString};
use std::vec::Vec;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::approval_policy::{EvalError, Outcome, PolicyJsonError, ValidatedPolicy};
use crate::checkpoint::{verify_checkpoint, CheckpointError};
use crate::entry::{AttestationRecord, Decision, Enrolment, Entry, EntryError, SignedDecision};
use crate::hash::{leaf_hash, Hash};
use crate::note::{VerifiedSignature, VerifierKey};
use crate::proof::{verify_inclusion, ProofError, MAX_PROOF_HASHES};
use crate::statement::{canonical_json, Statement, StatementError};
use crate::tlog_proof::TlogProof;
use crate::webauthn::{
    verify_assertion, Assertion, AssertionError, AssertionPolicy, VerifiedAssertion,
};

/// The version of a bundle of one approver's decision (a version 1 statement).
pub const BUNDLE_VERSION: u64 = 1;
/// The version of a bundle of a decision under an approval policy (a version 2 statement): it
/// carries the policy entry and every approval that made the quorum.
pub const BUNDLE_VERSION_POLICY: u64 = 2;
/// The largest bundle accepted, in bytes (two maximal entries in hex, a statement, proofs).
pub const MAX_BUNDLE_BYTES: usize = 512 * 1024;

/// A log entry, where it is, and the proof of it against the bundle's checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggedEntry {
    /// Zero-based log index.
    pub index: u64,
    /// The entry bytes, lowercase hex.
    pub entry: String,
    /// RFC 6962 inclusion proof against the checkpoint's tree, lowercase hex, sibling first.
    pub inclusion_proof: Vec<String>,
}

/// The WebAuthn relying party the approval was made for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelyingParty {
    /// RP ID (a domain).
    pub rp_id: String,
    /// Origins the approval pages are served from.
    pub origins: Vec<String>,
}

/// One more approval of a version 2 bundle: a decision entry and the enrolment of the passkey
/// that signed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionLink {
    /// The decision entry.
    pub decision: LoggedEntry,
    /// The enrolment entry of the credential that signed.
    pub enrolment: LoggedEntry,
}

/// An evidence bundle, as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceBundle {
    /// 1 ([`BUNDLE_VERSION`]: a version 1 statement, one decision) or 2
    /// ([`BUNDLE_VERSION_POLICY`]: a version 2 statement, its policy entry and the quorum).
    pub version: u64,
    /// The statement the approver was shown and signed.
    pub statement: Statement,
    /// The decision entry.
    pub decision: LoggedEntry,
    /// The enrolment entry of the credential that signed.
    pub enrolment: LoggedEntry,
    /// Version 2: the other approvals of the same statement that make up the quorum (by other
    /// eligible approvers), in log order. Empty for a denial or a quorum of 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<DecisionLink>,
    /// Version 2: the policy entry the statement names (`statement.policy.index`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<LoggedEntry>,
    /// The signed checkpoint note every proof leads to.
    pub checkpoint: String,
    /// The relying party the assertion was made for.
    pub relying_party: RelyingParty,
    /// Who the opaque ids stand for, as the operator records them. Not covered by any
    /// signature: informational only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parties: Option<Value>,
}

/// The first link of a bundle that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BundleError {
    /// Larger than [`MAX_BUNDLE_BYTES`].
    TooLarge,
    /// Not a bundle as JSON; the text says what.
    Malformed(String),
    /// A version other than 1 or 2.
    UnsupportedVersion,
    /// The bundle's version does not fit its contents (B17): version 1 holds a version 1
    /// statement and no approvals or policy entry; version 2 a version 2 statement and a policy
    /// entry. The text says which part does not fit.
    VersionMismatch(&'static str),
    /// The checkpoint is not validly signed by the log key.
    Checkpoint(CheckpointError),
    /// The statement names another log than the checkpoint's.
    WrongLog,
    /// An entry, or an inclusion proof hash, is not valid hex or not a valid entry.
    Entry {
        /// `decision` or `enrolment`.
        which: &'static str,
        /// What is wrong with it.
        error: EntryError,
    },
    /// The decision entry is not a decision, or the enrolment entry not an enrolment.
    WrongKind(&'static str),
    /// An entry is not in the checkpointed tree.
    Inclusion {
        /// `decision` or `enrolment`.
        which: &'static str,
        /// Which proof check failed.
        error: ProofError,
    },
    /// The decision does not point at the bundle's enrolment entry.
    EnrolmentIndexMismatch,
    /// The enrolment is not earlier in the log than the decision.
    EnrolmentNotBeforeDecision,
    /// Decision and enrolment differ in approver, credential ID or public key.
    CredentialMismatch(&'static str),
    /// The statement breaks its rules.
    Statement(StatementError),
    /// SHA-256 of the canonical statement is not the hash in the decision entry.
    StatementHashMismatch,
    /// The statement's approver is not the approver in the decision entry.
    StatementApproverMismatch,
    /// The statement's decision is not the decision in the entry.
    DecisionMismatch,
    /// The log recorded the decision after the statement expired.
    DecidedAfterExpiry,
    /// The log recorded the decision before the request was made.
    DecidedBeforeRequest,
    /// The relying party in the bundle is not the one the auditor pinned.
    RelyingPartyMismatch,
    /// The approver's passkey signature does not hold.
    Assertion(AssertionError),
    /// Version 2: the decision's approver is not one of the statement's eligible approvers.
    NotEligible(String),
    /// Version 2: the policy entry is not at the log index the statement names.
    PolicyIndexMismatch {
        /// `statement.policy.index`.
        statement: u64,
        /// The bundle's `policy.index`.
        bundle: u64,
    },
    /// Version 2: the policy entry's bytes are not the canonical form of a valid policy.
    InvalidPolicy(PolicyJsonError),
    /// Version 2: the policy entry is not logged before this decision (a request is evaluated
    /// under a policy already in force).
    PolicyNotBeforeDecision {
        /// Log index of the decision.
        decision_index: u64,
    },
    /// Version 2: the logged policy cannot evaluate the statement's request.
    PolicyEvaluation(EvalError),
    /// Version 2: the logged policy, evaluated on the statement's client and action, says
    /// otherwise than the statement about `what` (`rule`, `quorum` or `approvers`).
    PolicyMismatch {
        /// `rule`, `quorum` or `approvers`.
        what: &'static str,
        /// What the logged policy gives.
        logged: String,
        /// What the statement says.
        statement: String,
    },
    /// Version 2: the rule requires user verification and this approver's decision lacks it.
    RuleRequiresUserVerification(String),
    /// Version 2: the rule requires a verified attestation and this approver's enrolment does
    /// not record one.
    RuleRequiresAttestation(String),
    /// Version 2: the request's lifetime (expires_at - requested_at) exceeds the rule's
    /// max_expiry.
    RuleMaxExpiryExceeded {
        /// The rule's max_expiry, seconds.
        max: u64,
        /// The statement's lifetime, seconds.
        lifetime: u64,
    },
    /// Version 2: an approval is not before the next one in log order, or not before the
    /// bundle's decision (which completes the quorum).
    ApprovalsOutOfOrder,
    /// Version 2: a denial carries approvals.
    ApprovalsWithDenial,
    /// Version 2: one approver decided twice (two passkeys of one approver count once).
    DuplicateApprover(String),
    /// Version 2: fewer distinct approvals than the quorum.
    QuorumNotMet {
        /// The statement's quorum.
        needed: u64,
        /// Distinct approvals in the bundle.
        present: u64,
    },
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::TooLarge => write!(f, "bundle is larger than {MAX_BUNDLE_BYTES} bytes"),
            BundleError::Malformed(why) => write!(f, "malformed bundle: {why}"),
            BundleError::UnsupportedVersion => f.write_str("bundle version is not 1 or 2"),
            BundleError::VersionMismatch(why) => write!(f, "bundle version: {why}"),
            BundleError::Checkpoint(e) => write!(f, "checkpoint: {e}"),
            BundleError::WrongLog => {
                f.write_str("statement names a different log than the checkpoint")
            }
            BundleError::Entry { which, error } => write!(f, "{which} entry: {error}"),
            BundleError::WrongKind(which) => write!(f, "{which} entry is of the wrong kind"),
            BundleError::Inclusion { which, error } => {
                write!(f, "{which} entry is not in the checkpointed tree: {error}")
            }
            BundleError::EnrolmentIndexMismatch => {
                f.write_str("decision entry relies on a different enrolment than the bundle's")
            }
            BundleError::EnrolmentNotBeforeDecision => {
                f.write_str("enrolment is not logged before the decision")
            }
            BundleError::CredentialMismatch(what) => {
                write!(f, "decision and enrolment differ in {what}")
            }
            BundleError::Statement(e) => write!(f, "statement: {e}"),
            BundleError::StatementHashMismatch => {
                f.write_str("statement does not hash to the statement hash in the decision entry")
            }
            BundleError::StatementApproverMismatch => {
                f.write_str("statement approver is not the approver in the decision entry")
            }
            BundleError::DecisionMismatch => {
                f.write_str("statement decision is not the decision in the entry")
            }
            BundleError::DecidedAfterExpiry => {
                f.write_str("decision was logged after the request expired")
            }
            BundleError::DecidedBeforeRequest => {
                f.write_str("decision was logged before the request was made")
            }
            BundleError::RelyingPartyMismatch => {
                f.write_str("relying party ID or origin is not the expected one")
            }
            BundleError::Assertion(e) => write!(f, "passkey assertion: {e}"),
            BundleError::NotEligible(who) => write!(
                f,
                "approver {who:?} is not one of the statement's eligible approvers"
            ),
            BundleError::PolicyIndexMismatch { statement, bundle } => write!(
                f,
                "the statement names the policy entry at log index {statement}, the bundle's policy entry is at {bundle}"
            ),
            BundleError::InvalidPolicy(e) => write!(f, "policy entry: {e}"),
            BundleError::PolicyNotBeforeDecision { decision_index } => write!(
                f,
                "the policy entry is not logged before the decision at log index {decision_index}"
            ),
            BundleError::PolicyEvaluation(e) => {
                write!(f, "the logged policy cannot evaluate the request: {e}")
            }
            BundleError::PolicyMismatch {
                what,
                logged,
                statement,
            } => write!(
                f,
                "the logged policy gives {what} {logged}, the statement says {statement}"
            ),
            BundleError::RuleRequiresUserVerification(who) => write!(
                f,
                "the rule requires user verification and the decision of {who:?} lacks it"
            ),
            BundleError::RuleRequiresAttestation(who) => write!(
                f,
                "the rule requires a verified attestation and the enrolment of {who:?} does not record one"
            ),
            BundleError::RuleMaxExpiryExceeded { max, lifetime } => write!(
                f,
                "the request lives {lifetime} seconds, longer than the rule's max_expiry of {max}"
            ),
            BundleError::ApprovalsOutOfOrder => f.write_str(
                "approvals are not in log order before the bundle's decision",
            ),
            BundleError::ApprovalsWithDenial => f.write_str("a denial carries approvals"),
            BundleError::DuplicateApprover(who) => write!(
                f,
                "approver {who:?} approved more than once (two passkeys of one approver count once)"
            ),
            BundleError::QuorumNotMet { needed, present } => write!(
                f,
                "quorum not met: {needed} approvals needed, {present} present"
            ),
        }
    }
}

impl std::error::Error for BundleError {}

/// What a verified bundle proves.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedBundle {
    /// The statement (now known to be the one signed and logged).
    pub statement: Statement,
    /// Approve or deny.
    pub decision: Decision,
    /// SHA-256 of the canonical statement.
    pub statement_hash: [u8; 32],
    /// Log index of the decision.
    pub decision_index: u64,
    /// Leaf hash of the decision entry.
    pub decision_leaf_hash: Hash,
    /// Log index of the enrolment.
    pub enrolment_index: u64,
    /// When the log recorded the decision, milliseconds since the Unix epoch.
    pub decided_at_ms: u64,
    /// When the passkey was enrolled, milliseconds since the Unix epoch.
    pub enrolled_at_ms: u64,
    /// The passkey algorithm (`ES256`, `EdDSA`, `RS256`).
    pub algorithm: &'static str,
    /// Whether the authenticator verified the user.
    pub user_verified: bool,
    /// The origin the approval ran on.
    pub origin: String,
    /// Tree size of the checkpoint.
    pub tree_size: u64,
    /// Root hash of the checkpoint.
    pub root: Hash,
    /// Witness cosignatures that verified.
    pub cosignatures: Vec<VerifiedSignature>,
    /// The approver who made the bundle's decision (the decision entry's; a version 2 statement
    /// names only the eligible approvers).
    pub approver_id: String,
    /// Every approving decision of the bundle, in log order: the quorum, the bundle's own
    /// decision last. Empty for a denial.
    pub approvals: Vec<VerifiedApproval>,
    /// Version 2: the logged policy and what it requires of this request.
    pub policy: Option<VerifiedApprovalPolicy>,
}

/// One verified decision of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedApproval {
    /// The approver.
    pub approver_id: String,
    /// Log index of the decision entry.
    pub decision_index: u64,
    /// Log index of the enrolment of the passkey that signed it.
    pub enrolment_index: u64,
    /// When the log recorded it, milliseconds since the Unix epoch.
    pub decided_at_ms: u64,
    /// Whether the authenticator verified the user.
    pub user_verified: bool,
}

/// The policy entry of a version 2 bundle, checked against the statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedApprovalPolicy {
    /// Log index of the policy entry.
    pub index: u64,
    /// SHA-256 of the policy's canonical JSON (`spec/policy.md` P9).
    pub sha256: [u8; 32],
    /// The rule that applies (`None`: no rule matched).
    pub rule: Option<String>,
    /// Distinct approvals needed.
    pub quorum: u64,
    /// The eligible approvers, sorted.
    pub eligible: Vec<String>,
    /// When the policy entry was logged, milliseconds since the Unix epoch.
    pub logged_at_ms: u64,
    /// The rule requires every decision to be user-verified.
    pub require_uv: bool,
    /// The rule requires every deciding passkey's attestation to have been verified.
    pub require_attestation: bool,
}

/// What the auditor insists on beyond the bundle's own claims.
#[derive(Clone, Debug, Default)]
pub struct BundlePolicy<'a> {
    /// Witness keys whose cosignatures are checked if present.
    pub witnesses: &'a [VerifierKey],
    /// If set, the bundle's RP ID must be this.
    pub rp_id: Option<&'a str>,
    /// If set, the assertion's origin must be this.
    pub origin: Option<&'a str>,
    /// Require the UV flag.
    pub require_user_verification: bool,
}

impl VerifiedBundle {
    /// What the revocation check ([`crate::check_not_revoked`]) needs of the bundle's own
    /// decision. A quorum has more decisions: [`revocation_subjects`](Self::revocation_subjects).
    pub fn revocation_subject(&self) -> crate::RevocationSubject {
        crate::RevocationSubject {
            decision_index: self.decision_index,
            enrolment_index: self.enrolment_index,
            tree_size: self.tree_size,
            root: self.root,
        }
    }

    /// What the revocation check needs of every decision of the bundle (each approval of a
    /// quorum, then the bundle's decision): a quorum holds only if no approving credential was
    /// revoked before its decision.
    pub fn revocation_subjects(&self) -> Vec<crate::RevocationSubject> {
        let mut out: Vec<crate::RevocationSubject> = self
            .approvals
            .iter()
            .filter(|a| a.decision_index != self.decision_index)
            .map(|a| crate::RevocationSubject {
                decision_index: a.decision_index,
                enrolment_index: a.enrolment_index,
                tree_size: self.tree_size,
                root: self.root,
            })
            .collect();
        out.push(self.revocation_subject());
        out
    }
}

/// One decision of a bundle, decoded and checked (links 2 to 5).
struct Checked {
    index: u64,
    leaf: Hash,
    dec: SignedDecision,
    enr: Enrolment,
    enrolment_index: u64,
    key: crate::crypto::PublicKey,
    assertion: VerifiedAssertion,
}

/// What the logged policy requires of a version 2 statement (links 18 to 21, B19).
struct RuleChecks {
    require_uv: bool,
    require_attestation: bool,
}

impl EvidenceBundle {
    /// Parses a bundle from JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BundleError> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge);
        }
        let v = crate::statement::parse_json_strict(bytes).map_err(BundleError::Malformed)?;
        let b: EvidenceBundle =
            serde_json::from_value(v).map_err(|e| BundleError::Malformed(e.to_string()))?;
        if b.version != BUNDLE_VERSION && b.version != BUNDLE_VERSION_POLICY {
            return Err(BundleError::UnsupportedVersion);
        }
        Ok(b)
    }

    /// The bundle as pretty JSON.
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and JSON values always serialises.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The C2SP tlog-proof text form of the decision's inclusion.
    pub fn decision_tlog_proof(&self) -> Result<String, BundleError> {
        let proof = parse_proof(&self.decision.inclusion_proof, "decision")?;
        Ok(TlogProof {
            extra: None,
            index: self.decision.index,
            proof,
            checkpoint: self.checkpoint.clone(),
        }
        .to_text())
    }

    /// Checks every link, in the order of `spec/evidence-bundle.md`, and returns what the bundle
    /// proves, or the first broken link. A version 2 bundle is also checked against the logged
    /// policy it names, and its approvals against the statement's quorum (B17 to B21).
    pub fn verify(
        &self,
        log_key: &VerifierKey,
        policy: &BundlePolicy<'_>,
    ) -> Result<VerifiedBundle, BundleError> {
        self.check_version()?;
        // Links 1 to 3: the version fits, the checkpoint is the log's.
        let cp = verify_checkpoint(self.checkpoint.as_bytes(), log_key, policy.witnesses)
            .map_err(BundleError::Checkpoint)?;
        let (size, root) = (cp.checkpoint.size, cp.checkpoint.root);
        if self.statement.log_origin != cp.checkpoint.origin {
            return Err(BundleError::WrongLog);
        }
        // Links 4 to 17 (B18) for each decision, the quorum's approvals first: in the tree,
        // relying on an earlier enrolment, over this statement, signed by the approver's passkey.
        let mut checked: Vec<Checked> = Vec::with_capacity(self.approvals.len() + 1);
        for link in &self.approvals {
            checked.push(self.check_link(
                link,
                ("approval decision", "approval enrolment"),
                size,
                &root,
                policy,
            )?);
        }
        let own = DecisionLink {
            decision: self.decision.clone(),
            enrolment: self.enrolment.clone(),
        };
        checked.push(self.check_link(&own, ("decision", "enrolment"), size, &root, policy)?);
        // Links 18 to 21 (B18): the logged policy says what the statement says (version 2).
        let (verified_policy, rule) = match &self.policy {
            Some(p) => {
                let (v, r) = self.check_policy(p, size, &root)?;
                (Some(v), Some(r))
            }
            None => (None, None),
        };
        // B19: every decision after the policy entry, and as the matched rule requires.
        if let (Some(vp), Some(rule)) = (&verified_policy, &rule) {
            for c in &checked {
                if vp.index >= c.index {
                    return Err(BundleError::PolicyNotBeforeDecision {
                        decision_index: c.index,
                    });
                }
                if rule.require_uv && !c.assertion.user_verified() {
                    return Err(BundleError::RuleRequiresUserVerification(
                        c.dec.approver_id.clone(),
                    ));
                }
                if rule.require_attestation
                    && !matches!(c.enr.attestation, AttestationRecord::Verified { .. })
                {
                    return Err(BundleError::RuleRequiresAttestation(
                        c.dec.approver_id.clone(),
                    ));
                }
            }
        }
        // B20. The quorum: distinct approvers, in log order, enough of them.
        if checked.windows(2).any(|w| w[0].index >= w[1].index) {
            return Err(BundleError::ApprovalsOutOfOrder);
        }
        let Some(last) = checked.pop() else {
            return Err(BundleError::Malformed("no decision".into()));
        };
        if last.dec.decision == Decision::Deny && !checked.is_empty() {
            return Err(BundleError::ApprovalsWithDenial);
        }
        checked.push(last);
        let mut approvers: Vec<&str> = Vec::with_capacity(checked.len());
        for c in &checked {
            if approvers.contains(&c.dec.approver_id.as_str()) {
                return Err(BundleError::DuplicateApprover(c.dec.approver_id.clone()));
            }
            approvers.push(&c.dec.approver_id);
        }
        let approvals: Vec<VerifiedApproval> = checked
            .iter()
            .filter(|c| c.dec.decision == Decision::Approve)
            .map(|c| VerifiedApproval {
                approver_id: c.dec.approver_id.clone(),
                decision_index: c.index,
                enrolment_index: c.enrolment_index,
                decided_at_ms: c.dec.time_ms,
                user_verified: c.assertion.user_verified(),
            })
            .collect();
        let Some(own) = checked.pop() else {
            return Err(BundleError::Malformed("no decision".into()));
        };
        if own.dec.decision == Decision::Approve {
            let (needed, present) = (self.statement.quorum(), approvals.len() as u64);
            if present < needed {
                return Err(BundleError::QuorumNotMet { needed, present });
            }
        }
        Ok(VerifiedBundle {
            statement: self.statement.clone(),
            decision: own.dec.decision,
            statement_hash: own.dec.statement_hash,
            decision_index: own.index,
            decision_leaf_hash: own.leaf,
            enrolment_index: own.enrolment_index,
            decided_at_ms: own.dec.time_ms,
            enrolled_at_ms: own.enr.time_ms,
            algorithm: own.key.algorithm(),
            user_verified: own.assertion.user_verified(),
            origin: own.assertion.origin,
            tree_size: size,
            root,
            cosignatures: cp.cosignatures,
            approver_id: own.dec.approver_id,
            approvals,
            policy: verified_policy,
        })
    }

    /// B17: the version fits the statement and the members present.
    fn check_version(&self) -> Result<(), BundleError> {
        use crate::statement::{STATEMENT_VERSION, STATEMENT_VERSION_POLICY};
        match self.version {
            BUNDLE_VERSION => {
                if self.statement.version != STATEMENT_VERSION {
                    return Err(BundleError::VersionMismatch(
                        "a version 1 bundle needs a version 1 statement",
                    ));
                }
                if !self.approvals.is_empty() || self.policy.is_some() {
                    return Err(BundleError::VersionMismatch(
                        "a version 1 bundle carries no approvals and no policy entry",
                    ));
                }
            }
            BUNDLE_VERSION_POLICY => {
                if self.statement.version != STATEMENT_VERSION_POLICY {
                    return Err(BundleError::VersionMismatch(
                        "a version 2 bundle needs a version 2 statement",
                    ));
                }
                if self.policy.is_none() {
                    return Err(BundleError::VersionMismatch(
                        "a version 2 bundle needs the policy entry its statement names",
                    ));
                }
            }
            _ => return Err(BundleError::UnsupportedVersion),
        }
        Ok(())
    }

    /// Links 18 to 21 (B18): the policy entry is in the tree at the index the statement names,
    /// holds a valid policy in canonical form, and that policy, evaluated on the statement's
    /// client and `authorization_details`, gives the statement's rule, quorum and approvers.
    fn check_policy(
        &self,
        p: &LoggedEntry,
        size: u64,
        root: &Hash,
    ) -> Result<(VerifiedApprovalPolicy, RuleChecks), BundleError> {
        let Some(sp) = &self.statement.policy else {
            return Err(BundleError::VersionMismatch(
                "a policy entry belongs to a version 2 statement",
            ));
        };
        if sp.index != p.index {
            return Err(BundleError::PolicyIndexMismatch {
                statement: sp.index,
                bundle: p.index,
            });
        }
        let (bytes, _) = check_logged(p, "policy", size, root)?;
        let Entry::Policy(entry) = Entry::decode(&bytes).map_err(|error| BundleError::Entry {
            which: "policy",
            error,
        })?
        else {
            return Err(BundleError::WrongKind("policy"));
        };
        let validated = entry.validated().map_err(BundleError::InvalidPolicy)?;
        let (vp, rule) = evaluate_statement_policy(&validated, &self.statement)?;
        Ok((
            VerifiedApprovalPolicy {
                index: p.index,
                sha256: entry.policy_hash(),
                logged_at_ms: entry.time_ms,
                ..vp
            },
            rule,
        ))
    }

    /// Links 2 to 5 for one decision and its enrolment.
    fn check_link(
        &self,
        link: &DecisionLink,
        which: (&'static str, &'static str),
        size: u64,
        root: &Hash,
        policy: &BundlePolicy<'_>,
    ) -> Result<Checked, BundleError> {
        let (dec_bytes, leaf) = check_logged(&link.decision, which.0, size, root)?;
        let (enr_bytes, _) = check_logged(&link.enrolment, which.1, size, root)?;
        let Entry::Decision(dec) =
            Entry::decode(&dec_bytes).map_err(|error| BundleError::Entry {
                which: which.0,
                error,
            })?
        else {
            return Err(BundleError::WrongKind(which.0));
        };
        let Entry::Enrolment(enr) =
            Entry::decode(&enr_bytes).map_err(|error| BundleError::Entry {
                which: which.1,
                error,
            })?
        else {
            return Err(BundleError::WrongKind(which.1));
        };
        let c = verify_decision(
            &dec,
            link.decision.index,
            &enr,
            link.enrolment.index,
            &self.statement,
            &self.relying_party,
            policy,
        )?;
        Ok(Checked {
            index: link.decision.index,
            leaf,
            enrolment_index: link.enrolment.index,
            key: c.key,
            assertion: c.assertion,
            dec,
            enr,
        })
    }
}

/// Link 21 (B18): what `policy` says of the request a version 2 `statement` records (its client
/// and `authorization_details`) must be what the statement says: the same rule (or none), quorum
/// and eligible approvers; with no rule, quorum 1 and one approver. The request's lifetime must
/// fit the rule's `max_expiry`. Shared by [`EvidenceBundle::verify`] and the export verifier.
/// The returned [`VerifiedApprovalPolicy`] has the statement's policy index; its `sha256` and
/// `logged_at_ms` are left zero for the caller, who holds the entry, to fill.
pub fn check_statement_policy(
    policy: &ValidatedPolicy,
    statement: &Statement,
) -> Result<VerifiedApprovalPolicy, BundleError> {
    evaluate_statement_policy(policy, statement).map(|(v, _)| v)
}

fn evaluate_statement_policy(
    policy: &ValidatedPolicy,
    statement: &Statement,
) -> Result<(VerifiedApprovalPolicy, RuleChecks), BundleError> {
    let Some(sp) = &statement.policy else {
        return Err(BundleError::VersionMismatch(
            "a policy applies to a version 2 statement",
        ));
    };
    let outcome = policy
        .evaluate(&statement.client_id, &statement.authorization_details)
        .map_err(BundleError::PolicyEvaluation)?;
    let mismatch = |what, logged: String, statement: String| BundleError::PolicyMismatch {
        what,
        logged,
        statement,
    };
    let shown = |r: &Option<String>| match r {
        Some(n) => std::format!("{n:?}"),
        None => "none (no rule matched)".into(),
    };
    let checks = match outcome {
        Outcome::NoRuleMatched => {
            if sp.rule.is_some() {
                return Err(mismatch("rule", shown(&None), shown(&sp.rule)));
            }
            // The statement's own rules hold a null rule to quorum 1; its approvers are whom
            // the request named (one approver, or a group's members), which the policy does
            // not decide, so only the log's enrolments can check them.
            RuleChecks {
                require_uv: false,
                require_attestation: false,
            }
        }
        Outcome::Matched(m) => {
            if sp.rule.as_deref() != Some(m.rule.as_str()) {
                return Err(mismatch("rule", shown(&Some(m.rule)), shown(&sp.rule)));
            }
            if u64::from(m.quorum) != sp.quorum {
                return Err(mismatch(
                    "quorum",
                    m.quorum.to_string(),
                    sp.quorum.to_string(),
                ));
            }
            if m.approvers != sp.approvers {
                return Err(mismatch(
                    "approvers",
                    m.approvers.join(", "),
                    sp.approvers.join(", "),
                ));
            }
            if let Some(max) = m.max_expiry {
                let lifetime = statement.expires_at.saturating_sub(statement.requested_at);
                if lifetime > max {
                    return Err(BundleError::RuleMaxExpiryExceeded { max, lifetime });
                }
            }
            RuleChecks {
                require_uv: m.require_uv,
                require_attestation: m.require_attestation,
            }
        }
    };
    Ok((
        VerifiedApprovalPolicy {
            index: sp.index,
            sha256: [0; 32],
            rule: sp.rule.clone(),
            quorum: sp.quorum,
            eligible: sp.approvers.clone(),
            logged_at_ms: 0,
            require_uv: checks.require_uv,
            require_attestation: checks.require_attestation,
        },
        checks,
    ))
}

/// What [`verify_decision`] established about a decision.
#[derive(Clone, Debug)]
pub struct CheckedDecision {
    /// SHA-256 of the canonical statement (the entry's statement hash).
    pub statement_hash: [u8; 32],
    /// The enrolled public key that signed.
    pub key: crate::crypto::PublicKey,
    /// The verified assertion.
    pub assertion: VerifiedAssertion,
}

/// Checks a decision entry against the enrolment it relies on, the statement it records and
/// the approver's passkey signature: links 3 to 5 of `spec/evidence-bundle.md`, shared by
/// [`EvidenceBundle::verify`] and the export archive verifier. Where the two entries come from
/// (and that they are in the tree) is the caller's to check.
pub fn verify_decision(
    dec: &SignedDecision,
    decision_index: u64,
    enr: &Enrolment,
    enrolment_index: u64,
    statement: &Statement,
    rp: &RelyingParty,
    policy: &BundlePolicy<'_>,
) -> Result<CheckedDecision, BundleError> {
    check_decision_enrolment(dec, decision_index, enr, enrolment_index)?;
    let statement_hash = check_decision_statement(dec, statement)?;
    let (key, assertion) = verify_decision_assertion(dec, enr, rp, policy)?;
    Ok(CheckedDecision {
        statement_hash,
        key,
        assertion,
    })
}

/// Link 3 of `spec/evidence-bundle.md`: the decision at `decision_index` relies on the enrolment
/// at `enrolment_index`, logged before it, of the same approver, credential ID and public key.
pub fn check_decision_enrolment(
    dec: &SignedDecision,
    decision_index: u64,
    enr: &Enrolment,
    enrolment_index: u64,
) -> Result<(), BundleError> {
    if dec.enrolment_index != enrolment_index {
        return Err(BundleError::EnrolmentIndexMismatch);
    }
    if enrolment_index >= decision_index {
        return Err(BundleError::EnrolmentNotBeforeDecision);
    }
    if dec.approver_id != enr.approver_id {
        return Err(BundleError::CredentialMismatch("approver"));
    }
    if dec.credential_id != enr.credential_id {
        return Err(BundleError::CredentialMismatch("credential ID"));
    }
    if dec.public_key != enr.public_key {
        return Err(BundleError::CredentialMismatch("public key"));
    }
    Ok(())
}

/// Link 4 of `spec/evidence-bundle.md`: `statement` is valid, hashes to the decision's statement
/// hash, names its approver and decision, and the decision was logged while the request was
/// open. Returns the statement hash.
pub fn check_decision_statement(
    dec: &SignedDecision,
    statement: &Statement,
) -> Result<[u8; 32], BundleError> {
    let canonical = statement.canonical_json().map_err(BundleError::Statement)?;
    if canonical.len() > crate::statement::MAX_STATEMENT_BYTES {
        return Err(BundleError::Statement(StatementError::TooLarge));
    }
    let statement_hash = crate::hash::sha256(&canonical);
    if statement_hash != dec.statement_hash {
        return Err(BundleError::StatementHashMismatch);
    }
    if !statement.is_eligible(&dec.approver_id) {
        return Err(match statement.policy {
            Some(_) => BundleError::NotEligible(dec.approver_id.clone()),
            None => BundleError::StatementApproverMismatch,
        });
    }
    if statement.decision().map_err(BundleError::Statement)? != dec.decision {
        return Err(BundleError::DecisionMismatch);
    }
    if dec.time_ms > statement.expires_at.saturating_mul(1000) {
        return Err(BundleError::DecidedAfterExpiry);
    }
    if dec.time_ms < statement.requested_at.saturating_mul(1000) {
        return Err(BundleError::DecidedBeforeRequest);
    }
    Ok(statement_hash)
}

/// Link 5 of `spec/evidence-bundle.md`: the approver's passkey (the enrolment's key) signed the
/// decision's challenge `nonce || statement hash` for the relying party `rp`, subject to the
/// auditor's pins in `policy`. Needs only the entries: the challenge is in the decision.
pub fn verify_decision_assertion(
    dec: &SignedDecision,
    enr: &Enrolment,
    rp: &RelyingParty,
    policy: &BundlePolicy<'_>,
) -> Result<(crate::crypto::PublicKey, VerifiedAssertion), BundleError> {
    if policy.rp_id.is_some_and(|p| p != rp.rp_id) {
        return Err(BundleError::RelyingPartyMismatch);
    }
    let key = enr.key().map_err(|error| BundleError::Entry {
        which: "enrolment",
        error,
    })?;
    let assertion = verify_decision_assertion_with_key(dec, &key, rp, policy)?;
    Ok((key, assertion))
}

/// [`verify_decision_assertion`] with the enrolment's key parsed already (`Enrolment::key`),
/// for a caller that checks many decisions of one enrolment.
pub fn verify_decision_assertion_with_key(
    dec: &SignedDecision,
    key: &crate::crypto::PublicKey,
    rp: &RelyingParty,
    policy: &BundlePolicy<'_>,
) -> Result<VerifiedAssertion, BundleError> {
    if policy.rp_id.is_some_and(|p| p != rp.rp_id) {
        return Err(BundleError::RelyingPartyMismatch);
    }
    let one;
    let origins: Vec<&str>;
    let allowed: &[&str] = match policy.origin {
        Some(o) => {
            one = [o];
            &one
        }
        None => {
            origins = rp.origins.iter().map(String::as_str).collect();
            &origins
        }
    };
    verify_assertion(
        key,
        &Assertion {
            authenticator_data: &dec.authenticator_data,
            client_data_json: &dec.client_data_json,
            signature: &dec.signature,
        },
        &dec.challenge(),
        &AssertionPolicy {
            rp_id: &rp.rp_id,
            allowed_origins: allowed,
            require_user_verification: policy.require_user_verification,
            stored_sign_count: None,
        },
    )
    .map_err(|e| match e {
        AssertionError::OriginNotAllowed { .. } if policy.origin.is_some() => {
            BundleError::RelyingPartyMismatch
        }
        e => BundleError::Assertion(e),
    })
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn parse_proof(hexes: &[String], which: &'static str) -> Result<Vec<Hash>, BundleError> {
    if hexes.len() > MAX_PROOF_HASHES {
        return Err(BundleError::Inclusion {
            which,
            error: ProofError::ProofTooLong,
        });
    }
    hexes
        .iter()
        .map(|h| {
            Hash::from_hex(h)
                .filter(|_| is_lower_hex(h))
                .ok_or(BundleError::Malformed(std::format!(
                    "{which} inclusion proof has a hash that is not 64 hex digits"
                )))
        })
        .collect()
}

fn check_logged(
    e: &LoggedEntry,
    which: &'static str,
    size: u64,
    root: &Hash,
) -> Result<(Vec<u8>, Hash), BundleError> {
    if e.entry.len() > 2 * crate::entry::MAX_ENTRY_BYTES {
        return Err(BundleError::Entry {
            which,
            error: EntryError::TooLarge,
        });
    }
    if !is_lower_hex(&e.entry) {
        return Err(BundleError::Malformed(std::format!(
            "{which} entry is not lowercase hex"
        )));
    }
    let bytes = hex::decode(&e.entry)
        .map_err(|_| BundleError::Malformed(std::format!("{which} entry is not hex")))?;
    let proof = parse_proof(&e.inclusion_proof, which)?;
    let leaf = leaf_hash(&bytes);
    verify_inclusion(&leaf, e.index, size, &proof, root)
        .map_err(|error| BundleError::Inclusion { which, error })?;
    Ok((bytes, leaf))
}

/// Why an action may not run under an approval.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExecutionError {
    /// The approver denied the request.
    Denied,
    /// The action is not valid authorization details.
    MalformedAction(String),
    /// The action differs from the approved `authorization_details`.
    ActionMismatch,
    /// The approval has expired (`now` is past the statement's expiry).
    Expired,
}

impl fmt::Display for ExecutionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecutionError::Denied => f.write_str("the approver denied this request"),
            ExecutionError::MalformedAction(why) => write!(f, "action is malformed: {why}"),
            ExecutionError::ActionMismatch => f.write_str(
                "action differs from the approved authorization_details (compared in RFC 8785 canonical form)",
            ),
            ExecutionError::Expired => f.write_str("the approval has expired"),
        }
    }
}

impl std::error::Error for ExecutionError {}

/// The executor's check: is `action` exactly what was approved?
///
/// `action` is either the RFC 9396 `authorization_details` array the executor is about to run,
/// or an object with that array under `authorization_details`. The two are compared in RFC 8785
/// canonical form, so key order and number spelling do not matter and everything else does.
/// `now` (seconds since the Unix epoch), if given, must not be past the statement's expiry.
pub fn check_execution(
    approved: &Statement,
    action: &Value,
    now: Option<u64>,
) -> Result<(), ExecutionError> {
    if approved.decision != Decision::Approve.as_str() {
        return Err(ExecutionError::Denied);
    }
    if now.is_some_and(|t| t > approved.expires_at) {
        return Err(ExecutionError::Expired);
    }
    let details = match action {
        Value::Object(o) => o.get("authorization_details").ok_or_else(|| {
            ExecutionError::MalformedAction("object without authorization_details".into())
        })?,
        v => v,
    };
    crate::statement::validate_authorization_details(details)
        .map_err(|e| ExecutionError::MalformedAction(e.into()))?;
    let want = canonical_json(&approved.authorization_details)
        .map_err(|e| ExecutionError::MalformedAction(e.to_string()))?;
    let got =
        canonical_json(details).map_err(|e| ExecutionError::MalformedAction(e.to_string()))?;
    if want != got {
        return Err(ExecutionError::ActionMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
