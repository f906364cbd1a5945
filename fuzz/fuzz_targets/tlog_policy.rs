//! C2SP tlog-policy files (`Policy::parse`) and the quorum evaluator: a parsed policy, written
//! back in one canonical form (logs, witnesses, groups with numeric thresholds, quorum), parses to
//! an equal policy; its structure is what the parser promises (members defined earlier, listed
//! once, `1 <= k <= n`); the quorum is never met with no cosignature unless it is `none`, always
//! met when every witness cosigned, and monotone (one more cosigner never breaks it); the test
//! vectors' example note verifies under the policy only if its cosigners meet the quorum.
#![no_main]

use countersign_verifier::{
    verify_checkpoint_with_policy, Policy, PolicyCheckError, PolicyMember, VerifierKey,
};
use libfuzzer_sys::fuzz_target;

/// `testvectors/policies/valid-example-quorum-met.json`: the log's signature and cosignatures by
/// the example's witnesses X1, X3 and Y2.
const NOTE: &str = "countersign.test/log\n70\nquvOcz+AtSCm+YfudzqCFC6MU6S9bIsqYZYu01R1u04=\n\n\u{2014} countersign.test/log m11kantu3mDMWXpeOD4aYVeaVXDeZLM0IFnLK0Mn/nNGJS1slrFPg2axVoUXoqBiZZiCf3WoUIVTMVENaDKNi7yLVw4=\n\u{2014} x1.witness.test SiMPlQAAAABlU/EAHtLAaWtoPgdLI2XUnqVXIudO2PuGtthcXb82tMw7LNqWuBsmsvHkKeIxl2BvOrnFZqG0YiHiyKfw9CF81hY6Bw==\n\u{2014} x3.witness.test w88oAAAAAABlU/EADX+m3duuubuRU+vQm29kvZegPNo8ovHvzEi5hOJYphIzibZrhy7DItrjtmrutMH7FyBrJT6OXixzCfDvAAbMBA==\n\u{2014} y2.witness.test LBu4fAAAAABlU/EA8DwZjf/240nZuTlJsWuGi3MZYkpxFalma0MeMEfx7zj2qqMmbbQ4Gb90hMVBrKUMJmhII/7uIGPXsb34igewAw==\n";

/// The policy in one canonical text: what `Policy::parse` must read back to the same value.
fn render(p: &Policy) -> String {
    let mut s = String::new();
    let name = |m: &PolicyMember| match *m {
        PolicyMember::Witness(i) => p.witnesses()[i].name.clone(),
        PolicyMember::Group(i) => p.groups()[i].name.clone(),
    };
    for l in p.logs() {
        s += &format!("log {}", l.key.to_vkey());
        if let Some(u) = &l.url {
            s += &format!(" {u}");
        }
        s.push('\n');
    }
    for w in p.witnesses() {
        s += &format!("witness\t{} {}", w.name, w.key.to_vkey());
        if let Some(u) = &w.url {
            s += &format!(" {u}");
        }
        s.push('\n');
    }
    for g in p.groups() {
        s += &format!("group {} {}", g.name, g.threshold);
        for m in &g.members {
            s += &format!(" {}", name(m));
        }
        s.push('\n');
    }
    s += &format!(
        "# a comment\nquorum {}\n",
        p.quorum().map_or("none".into(), |q| name(&q))
    );
    s
}

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Policy::parse(data) else {
        return;
    };

    // Structure.
    let (nw, ng) = (p.witnesses().len(), p.groups().len());
    for (gi, g) in p.groups().iter().enumerate() {
        assert!(
            g.threshold >= 1 && g.threshold <= g.members.len(),
            "group {gi}: threshold {} of {} members",
            g.threshold,
            g.members.len()
        );
        for (j, m) in g.members.iter().enumerate() {
            match *m {
                PolicyMember::Witness(i) => assert!(i < nw, "group {gi}: witness {i} of {nw}"),
                PolicyMember::Group(i) => {
                    assert!(i < gi, "group {gi}: member group {i} not earlier")
                }
            }
            assert!(
                !g.members[..j].contains(m),
                "group {gi}: member listed twice"
            );
        }
    }
    match p.quorum() {
        Some(PolicyMember::Witness(i)) => assert!(i < nw),
        Some(PolicyMember::Group(i)) => assert!(i < ng),
        None => {}
    }
    for l in p.logs() {
        assert!(!l.key.is_cosignature(), "a log with a cosignature key");
        if let Some(k) = p.log_for_origin(l.key.name()) {
            assert_eq!(k.name(), l.key.name());
        }
    }
    for w in p.witnesses() {
        assert!(
            w.key.is_cosignature(),
            "a witness without a cosignature key"
        );
    }

    // One canonical rendering reads back to the same policy.
    let text = render(&p);
    match Policy::parse(text.as_bytes()) {
        Ok(q) => assert_eq!(q, p, "the rendering {text:?} parses to another policy"),
        Err(e) => panic!("the rendering {text:?} of a parsed policy is refused: {e}"),
    }

    // The quorum: never with no cosignature (unless `none`), always with all, and monotone.
    assert_eq!(
        p.quorum_met_by(|_| false),
        p.quorum().is_none(),
        "quorum with no cosignature"
    );
    assert!(
        p.quorum_met_by(|_| true),
        "quorum not met with every witness"
    );
    assert_eq!(p.quorum_met(&[]), p.quorum().is_none());
    let bit = |i: usize| data[i % data.len()] & (1 << (i % 8)) != 0;
    let base = p.quorum_met_by(bit);
    for extra in 0..nw.min(8) {
        let with = p.quorum_met_by(|i| bit(i) || i == extra);
        assert!(!base || with, "adding witness {extra} broke the quorum");
    }
    let keys: Vec<VerifierKey> = (0..nw)
        .filter(|&i| bit(i))
        .map(|i| p.witnesses()[i].key.clone())
        .collect();
    assert_eq!(
        p.quorum_met(&keys),
        base,
        "quorum_met and quorum_met_by disagree"
    );

    // A real note: verified only if its verified cosigners meet the quorum.
    match verify_checkpoint_with_policy(NOTE.as_bytes(), &p) {
        Ok(v) => {
            let cosigners: Vec<VerifierKey> =
                v.cosignatures.iter().map(|s| s.key.clone()).collect();
            assert!(p.quorum_met(&cosigners), "verified without the quorum");
            assert!(p.log_for_origin("countersign.test/log").is_some());
        }
        Err(PolicyCheckError::QuorumNotMet { cosigned_by }) => {
            assert!(p.quorum().is_some(), "quorum none not met");
            for n in &cosigned_by {
                assert!(
                    p.witnesses().iter().any(|w| &w.name == n),
                    "unknown cosigner {n}"
                );
            }
        }
        Err(_) => {}
    }
});
