//! Approval policies (`ValidatedPolicy::from_json`, `validate`, `canonical_json`, `evaluate`).
//!
//! Input: the policy's JSON, then a 0xFF byte (never in UTF-8 JSON), then a request: the client
//! id on the first line and `authorization_details` (JSON) after it.
//!
//! Asserts: a policy that reads and validates has canonical bytes that read back to an equal
//! policy with identical bytes, and re-validating its value gives the same policy; `evaluate` is
//! deterministic, gives the same outcome on the re-read policy, and a matched rule is the one at
//! its index (name, quorum, flags), limited to this client if it names clients, of a type present
//! in the request, with sorted distinct approvers equal to `eligible(index)` and at least its
//! quorum of them. First match: the policy cut before the matched (or failing) rule matches no
//! rule, and cut after it gives the same outcome.
#![no_main]

use countersign_verifier::{ApprovalPolicy, EvalError, Outcome, ValidatedPolicy};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (policy, request) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(p) = ValidatedPolicy::from_json(policy) else {
        return;
    };

    // Canonical form: a fixed point that reads back to the same policy.
    let canonical = p.canonical_json();
    assert!(!canonical.is_empty(), "empty canonical form");
    let q = match ValidatedPolicy::from_json(&canonical) {
        Ok(q) => q,
        Err(e) => panic!(
            "the canonical form {:?} is refused: {e}",
            String::from_utf8_lossy(&canonical)
        ),
    };
    assert_eq!(q, p, "the canonical form reads back to another policy");
    assert_eq!(
        q.canonical_json(),
        canonical,
        "the canonical form is not a fixed point"
    );
    assert_eq!(q.hash(), p.hash());
    assert_eq!(p.policy().clone().validate().as_ref(), Ok(&p));

    let Some(request) = request else {
        return;
    };
    let (client, details) = match request.iter().position(|&b| b == b'\n') {
        Some(i) => (&request[..i], &request[i + 1..]),
        None => (request, &b""[..]),
    };
    let Ok(client) = std::str::from_utf8(client) else {
        return;
    };
    let Ok(details) = serde_json::from_slice::<Value>(details) else {
        return;
    };

    let outcome = p.evaluate(client, &details);
    assert_eq!(
        p.evaluate(client, &details),
        outcome,
        "evaluate is not deterministic"
    );
    assert_eq!(
        q.evaluate(client, &details),
        outcome,
        "the re-read policy decides otherwise"
    );

    let rules = &p.policy().rules;
    // The rule that decided (matched, or could not be evaluated), by index.
    let decided = match &outcome {
        Ok(Outcome::Matched(m)) => {
            let rule = &rules[m.index];
            assert_eq!(m.rule, rule.name);
            assert_eq!(m.quorum, rule.quorum);
            assert_eq!(m.require_uv, rule.require_uv);
            assert_eq!(m.require_attestation, rule.require_attestation);
            assert_eq!(m.max_expiry, rule.max_expiry);
            if let Some(clients) = &rule.when.clients {
                assert!(
                    clients.iter().any(|c| c == client),
                    "a rule for other clients"
                );
            }
            let types: Vec<&str> = details
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e.get("type")?.as_str())
                .collect();
            assert!(
                types.contains(&rule.when.kind.as_str()),
                "matched without its type"
            );
            assert!(
                m.approvers.windows(2).all(|w| w[0] < w[1]),
                "approvers not sorted and distinct"
            );
            assert!(m.quorum >= 1 && m.quorum as usize <= m.approvers.len());
            assert_eq!(p.eligible(m.index).as_ref(), Some(&m.approvers));
            Some(m.index)
        }
        Err(EvalError::Unevaluable { rule, .. }) => Some(
            rules
                .iter()
                .position(|r| &r.name == rule)
                .expect("an unknown rule failed"),
        ),
        _ => None,
    };
    assert_eq!(p.eligible(rules.len()), None);

    // First match: a prefix of the rules decides as the whole policy up to the deciding rule.
    let malformed = matches!(outcome, Err(EvalError::MalformedDetails(_)));
    for k in [
        0,
        1,
        2,
        rules.len() / 2,
        rules.len().saturating_sub(1),
        rules.len(),
    ] {
        let k = k.min(rules.len());
        let cut = ApprovalPolicy::new(p.policy().groups.clone(), rules[..k].to_vec());
        let Ok(cut) = cut.validate() else {
            continue;
        };
        let got = cut.evaluate(client, &details);
        match decided {
            _ if malformed => assert_eq!(got, outcome, "malformed details depend on the rules"),
            Some(i) if k > i => assert_eq!(got, outcome, "the first {k} rules decide otherwise"),
            _ => assert_eq!(got, Ok(Outcome::NoRuleMatched), "the first {k} rules match"),
        }
    }
});
