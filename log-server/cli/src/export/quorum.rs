//! Which entries the evidence bundle of a decision holds (`spec/evidence-bundle.md` B17,
//! `spec/export.md` X9, X10), as the export passes the log's entries in order: a version 1
//! statement's bundle holds its decision alone; a version 2 statement's holds the policy entry it
//! names and, for an approval, the earlier approvals of the same statement by other approvers.
//! An approval that completes no quorum (too few distinct approvers so far, or an approver
//! deciding again) gets no bundle: none could verify.

use std::collections::HashMap;

use countersign_verifier::{Decision, SignedDecision, Statement};

/// The other entries of a decision's bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Links {
    /// A version 1 bundle: the decision and its enrolment.
    Single,
    /// A version 2 bundle.
    Quorum {
        /// The policy entry's index and bytes.
        policy: (u64, Vec<u8>),
        /// The earlier approvals of the quorum, in log order: decision index, decision bytes,
        /// enrolment index.
        approvals: Vec<(u64, Vec<u8>, u64)>,
    },
    /// No bundle: an approval that does not complete its quorum.
    None,
}

struct Approval {
    approver: String,
    index: u64,
    entry: Vec<u8>,
    enrolment: u64,
}

/// What the export remembers for the bundles of version 2 statements.
#[derive(Default)]
pub struct QuorumBundles {
    policies: HashMap<u64, Vec<u8>>,
    /// Statement hash -> its approvals so far, by distinct approvers, in log order.
    quorums: HashMap<[u8; 32], Vec<Approval>>,
}

impl QuorumBundles {
    /// Remembers the policy entry at `index`.
    pub fn policy_entry(&mut self, index: u64, entry: &[u8]) {
        self.policies.insert(index, entry.to_vec());
    }

    /// The links of the bundle of decision `d` (`entry`, at `index`) on `st`, which the caller
    /// checked against it. Decisions must be given in log order.
    pub fn decision(
        &mut self,
        index: u64,
        entry: &[u8],
        d: &SignedDecision,
        st: &Statement,
    ) -> Result<Links, String> {
        let Some(p) = &st.policy else {
            return Ok(Links::Single);
        };
        let policy = self
            .policies
            .get(&p.index)
            .filter(|_| p.index < index)
            .ok_or_else(|| {
                format!(
                    "decision {index}'s statement names policy entry {}, which is not a policy \
                     entry before it",
                    p.index
                )
            })?
            .clone();
        let mut approvals = Vec::new();
        if d.decision == Decision::Approve {
            let q = self.quorums.entry(d.statement_hash).or_default();
            if q.iter().any(|a| a.approver == d.approver_id) {
                return Ok(Links::None);
            }
            approvals = q
                .iter()
                .map(|a| (a.index, a.entry.clone(), a.enrolment))
                .collect();
            q.push(Approval {
                approver: d.approver_id.clone(),
                index,
                entry: entry.to_vec(),
                enrolment: d.enrolment_index,
            });
            if (q.len() as u64) < p.quorum {
                return Ok(Links::None);
            }
        }
        Ok(Links::Quorum {
            policy: (p.index, policy),
            approvals,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use countersign_verifier::{
        BundlePolicy, DecisionLink, Entry, EvidenceBundle, LoggedEntry, BUNDLE_VERSION_POLICY,
    };

    fn case(name: &str) -> EvidenceBundle {
        let (_, v, _, _) = countersign_testvectors::quorum::quorum_bundles()
            .into_iter()
            .find(|c| c.0 == name)
            .unwrap();
        EvidenceBundle::from_json(v.to_string().as_bytes()).unwrap()
    }

    fn decision(l: &LoggedEntry) -> (Vec<u8>, SignedDecision) {
        let bytes = hex::decode(&l.entry).unwrap();
        let Entry::Decision(d) = Entry::decode(&bytes).unwrap() else {
            panic!("not a decision")
        };
        (bytes, d)
    }

    /// The writer's links, given the 2-of-3 vector's entries in log order, rebuild exactly the
    /// vector's bundle, which verifies; the first approval gets none.
    #[test]
    fn the_links_rebuild_the_quorum_vector() {
        let want = case("quorum-valid-2-of-3");
        let mut q = QuorumBundles::default();
        let p = want.policy.clone().unwrap();
        q.policy_entry(p.index, &hex::decode(&p.entry).unwrap());
        let first = &want.approvals[0];
        let (b1, d1) = decision(&first.decision);
        assert_eq!(
            q.decision(first.decision.index, &b1, &d1, &want.statement)
                .unwrap(),
            Links::None
        );
        let (b2, d2) = decision(&want.decision);
        let Links::Quorum { policy, approvals } = q
            .decision(want.decision.index, &b2, &d2, &want.statement)
            .unwrap()
        else {
            panic!("no bundle for the completing approval")
        };
        // The proofs are the vector's: the entries and indexes are the writer's.
        let proved = |index: u64, bytes: &[u8], like: &LoggedEntry| {
            assert_eq!(
                (index, hex::encode(bytes)),
                (like.index, like.entry.clone())
            );
            like.clone()
        };
        let built = EvidenceBundle {
            version: BUNDLE_VERSION_POLICY,
            approvals: approvals
                .iter()
                .map(|(di, de, ei)| {
                    assert_eq!(*ei, first.enrolment.index);
                    DecisionLink {
                        decision: proved(*di, de, &first.decision),
                        enrolment: first.enrolment.clone(),
                    }
                })
                .collect(),
            policy: Some(proved(policy.0, &policy.1, &p)),
            ..want.clone()
        };
        assert_eq!(built, want);
        let key = countersign_testvectors::generate::log_vkey();
        assert_eq!(
            built
                .verify(&key, &BundlePolicy::default())
                .unwrap()
                .approvals
                .len(),
            2
        );
        // The same approver again (a second passkey): no bundle.
        assert_eq!(
            q.decision(want.decision.index + 5, &b1, &d1, &want.statement)
                .unwrap(),
            Links::None
        );
    }

    #[test]
    fn a_denial_and_a_no_rule_approval_have_bundles_and_a_missing_policy_is_an_error() {
        for name in ["quorum-valid-denial", "quorum-valid-no-rule"] {
            let want = case(name);
            let mut q = QuorumBundles::default();
            let (b, d) = decision(&want.decision);
            // The policy entry was not seen: an error naming it.
            let e = q
                .decision(want.decision.index, &b, &d, &want.statement)
                .unwrap_err();
            assert!(e.contains("names policy entry 1"), "{e}");
            let p = want.policy.clone().unwrap();
            q.policy_entry(p.index, &hex::decode(&p.entry).unwrap());
            let links = q
                .decision(want.decision.index, &b, &d, &want.statement)
                .unwrap();
            assert_eq!(
                links,
                Links::Quorum {
                    policy: (p.index, hex::decode(&p.entry).unwrap()),
                    approvals: Vec::new()
                },
                "{name}"
            );
        }
        // A version 1 statement: the decision alone.
        let v: serde_json::Value = serde_json::from_str(include_str!(
            "../../../../testvectors/bundles/valid-es256.json"
        ))
        .unwrap();
        let b = EvidenceBundle::from_json(v["bundle"].to_string().as_bytes()).unwrap();
        let (bytes, d) = decision(&b.decision);
        assert_eq!(
            QuorumBundles::default()
                .decision(b.decision.index, &bytes, &d, &b.statement)
                .unwrap(),
            Links::Single
        );
    }
}
