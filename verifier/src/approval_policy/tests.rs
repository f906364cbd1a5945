#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use core::cmp::Ordering;
use serde_json::{json, Value};

use super::*;

fn s(v: &str) -> String {
    v.to_string()
}

fn when(kind: &str, field: Option<&str>, op: Option<Op>, value: Option<&str>) -> Condition {
    Condition {
        kind: s(kind),
        field: field.map(s),
        op,
        value: value.map(s),
        values: None,
        clients: None,
    }
}

fn rule(name: &str, when: Condition, approvers: Approvers, quorum: u32) -> ApprovalRule {
    ApprovalRule {
        name: s(name),
        when,
        approvers,
        quorum,
        require_uv: false,
        require_attestation: false,
        max_expiry: None,
    }
}

fn treasury() -> BTreeMap<String, Vec<String>> {
    let mut g = BTreeMap::new();
    g.insert(s("treasury"), vec![s("apv_t3"), s("apv_t1"), s("apv_t2")]);
    g
}

/// The issue's example: payments over 1000 by agent-pay need 2 of the treasury group.
fn example() -> ApprovalPolicy {
    let mut w = when(
        "payment_initiation",
        Some("instructedAmount.amount"),
        Some(Op::Gt),
        Some("1000"),
    );
    w.clients = Some(vec![s("agent-pay")]);
    let mut r = rule("payments over 1000", w, Approvers::Group(s("treasury")), 2);
    r.require_uv = true;
    ApprovalPolicy::new(treasury(), vec![r])
}

fn pay(amount: Value) -> Value {
    json!([{"type": "payment_initiation", "instructedAmount": {"amount": amount, "currency": "EUR"}}])
}

fn one_rule(op: Op, value: Option<&str>, values: Option<Vec<&str>>) -> ValidatedPolicy {
    let mut w = when("t", Some("a"), Some(op), value);
    w.values = values.map(|v| v.into_iter().map(s).collect());
    ApprovalPolicy::new(
        treasury(),
        vec![rule("r", w, Approvers::Group(s("treasury")), 1)],
    )
    .validate()
    .unwrap()
}

fn matches(p: &ValidatedPolicy, amount: Value) -> bool {
    match p
        .evaluate("c", &json!([{"type": "t", "a": amount}]))
        .unwrap()
    {
        Outcome::Matched(_) => true,
        Outcome::NoRuleMatched => false,
    }
}

#[test]
fn decimals_compare_exactly() {
    let d = |t| Decimal::parse(t).unwrap();
    assert_eq!(d("1000"), d("1000.00"));
    assert_eq!(d("0.1"), d("0.10"));
    assert_eq!(d("-0"), d("0.000"));
    assert_eq!(d("007"), d("7"));
    assert!(d("999.999") < d("1000"));
    assert!(d("1000.0001") > d("1000"));
    assert!(d("-1") < d("0"));
    assert!(d("-2") < d("-1.5"));
    assert!(d("0.45") < d("0.5"));
    assert!(d("10") > d("9.99999"));
    assert_eq!(d("1.50"), d("1.5000"));
    let max = "9".repeat(40);
    assert!(d(&max) > d("1"));
    assert!(
        d("12345678901234567890.12345678901234567891")
            > d("12345678901234567890.1234567890123456789")
    );
}

#[test]
fn decimal_refusals() {
    use DecimalError as E;
    for (t, e) in [
        ("", E::EmptyPart),
        ("-", E::EmptyPart),
        (".5", E::EmptyPart),
        ("5.", E::EmptyPart),
        ("+5", E::BadCharacter),
        ("1e3", E::BadCharacter),
        ("1E3", E::BadCharacter),
        ("1 000", E::BadCharacter),
        ("1,000", E::BadCharacter),
        ("1.2.3", E::BadCharacter),
        ("--1", E::BadCharacter),
        ("0x10", E::BadCharacter),
        ("NaN", E::BadCharacter),
        ("١٢", E::BadCharacter),
    ] {
        assert_eq!(Decimal::parse(t).unwrap_err(), e, "{t:?}");
    }
    assert_eq!(
        Decimal::parse(&"1".repeat(41)).unwrap_err(),
        DecimalError::TooManyDigits
    );
    assert_eq!(
        Decimal::parse(&format!("{}.{}", "1".repeat(20), "1".repeat(21))).unwrap_err(),
        DecimalError::TooManyDigits
    );
    assert!(Decimal::parse(&"1".repeat(40)).is_ok());
}

#[test]
fn each_operator_at_its_boundary() {
    let gt = one_rule(Op::Gt, Some("1000"), None);
    assert!(!matches(&gt, json!("1000")));
    assert!(!matches(&gt, json!("1000.00")));
    assert!(!matches(&gt, json!("999.999")));
    assert!(matches(&gt, json!("1000.01")));
    assert!(matches(&gt, json!(1001)));
    assert!(!matches(&gt, json!(-1)));

    let ge = one_rule(Op::Ge, Some("1000"), None);
    assert!(matches(&ge, json!("1000.00")));
    assert!(matches(&ge, json!(1000)));
    assert!(!matches(&ge, json!("999.999")));

    let lt = one_rule(Op::Lt, Some("0"), None);
    assert!(matches(&lt, json!("-1")));
    assert!(matches(&lt, json!(-0.5)));
    assert!(!matches(&lt, json!("-0")));
    assert!(!matches(&lt, json!("0.0")));

    let le = one_rule(Op::Le, Some("0.1"), None);
    assert!(matches(&le, json!("0.10")));
    assert!(matches(&le, json!(0.1)));
    assert!(!matches(&le, json!("0.100001")));

    let eq = one_rule(Op::Eq, Some("1000"), None);
    assert!(matches(&eq, json!("1000.00")));
    assert!(matches(&eq, json!(1000.0)));
    assert!(!matches(&eq, json!("1000.001")));

    let within = one_rule(Op::In, None, Some(vec!["1", "2.5", "-3"]));
    assert!(matches(&within, json!("2.50")));
    assert!(matches(&within, json!(-3)));
    assert!(matches(&within, json!("1.0")));
    assert!(!matches(&within, json!("3")));
}

#[test]
fn the_example_applies_to_agent_pay_over_1000_only() {
    let p = example().validate().unwrap();
    let Outcome::Matched(m) = p.evaluate("agent-pay", &pay(json!("1500.00"))).unwrap() else {
        panic!("no match")
    };
    assert_eq!(
        m,
        MatchedRule {
            rule: s("payments over 1000"),
            index: 0,
            quorum: 2,
            approvers: vec![s("apv_t1"), s("apv_t2"), s("apv_t3")],
            require_uv: true,
            require_attestation: false,
            max_expiry: None,
        }
    );
    assert_eq!(
        p.evaluate("agent-pay", &pay(json!("500"))).unwrap(),
        Outcome::NoRuleMatched
    );
    // The clients filter: another client's payment is not this rule's, even over 1000.
    assert_eq!(
        p.evaluate("agent-other", &pay(json!("5000"))).unwrap(),
        Outcome::NoRuleMatched
    );
    // Another type is not this rule's.
    assert_eq!(
        p.evaluate(
            "agent-pay",
            &json!([{"type": "deploy", "instructedAmount": {"amount": "9999"}}])
        )
        .unwrap(),
        Outcome::NoRuleMatched
    );
}

#[test]
fn first_matching_rule_wins() {
    let big = rule(
        "big",
        when(
            "payment_initiation",
            Some("instructedAmount.amount"),
            Some(Op::Gt),
            Some("10000"),
        ),
        Approvers::Ids(vec![s("apv_cfo"), s("apv_t1")]),
        2,
    );
    let any = rule(
        "any payment",
        when("payment_initiation", None, None, None),
        Approvers::Ids(vec![s("apv_t2"), s("apv_t1")]),
        1,
    );
    let p = ApprovalPolicy::new(treasury(), vec![big.clone(), any.clone()])
        .validate()
        .unwrap();
    let name = |o: Outcome| match o {
        Outcome::Matched(m) => (m.rule, m.index),
        Outcome::NoRuleMatched => (s("-"), usize::MAX),
    };
    assert_eq!(
        name(p.evaluate("c", &pay(json!("20000"))).unwrap()),
        (s("big"), 0)
    );
    assert_eq!(
        name(p.evaluate("c", &pay(json!("20"))).unwrap()),
        (s("any payment"), 1)
    );
    // In the other order the catch-all shadows the big rule.
    let q = ApprovalPolicy::new(treasury(), vec![any, big])
        .validate()
        .unwrap();
    let Outcome::Matched(m) = q.evaluate("c", &pay(json!("20000"))).unwrap() else {
        panic!()
    };
    assert_eq!((m.rule.as_str(), m.index), ("any payment", 0));
    assert_eq!(m.approvers, vec![s("apv_t1"), s("apv_t2")], "sorted");
}

#[test]
fn any_entry_of_the_type_can_match() {
    let p = example().validate().unwrap();
    let details = json!([
        {"type": "payment_initiation", "instructedAmount": {"amount": "10"}},
        {"type": "other"},
        {"type": "payment_initiation", "instructedAmount": {"amount": "1000.5"}}
    ]);
    assert!(matches!(
        p.evaluate("agent-pay", &details).unwrap(),
        Outcome::Matched(_)
    ));
}

#[test]
fn an_entry_that_cannot_be_evaluated_is_an_error() {
    let p = example().validate().unwrap();
    let cases = [
        (
            json!([{"type": "payment_initiation"}]),
            0,
            Unevaluable::Missing,
        ),
        (
            json!([{"type": "payment_initiation", "instructedAmount": {"currency": "EUR"}}]),
            0,
            Unevaluable::Missing,
        ),
        (
            json!([{"type": "payment_initiation", "instructedAmount": "1000"}]),
            0,
            Unevaluable::NotAnObject,
        ),
        (
            pay(json!(true)),
            0,
            Unevaluable::NotStringOrNumber("a boolean"),
        ),
        (pay(json!(null)), 0, Unevaluable::NotStringOrNumber("null")),
        (
            pay(json!({"v": 1})),
            0,
            Unevaluable::NotStringOrNumber("an object"),
        ),
        (
            pay(json!("1,000")),
            0,
            Unevaluable::NotDecimal(DecimalError::BadCharacter),
        ),
        (
            pay(json!("1e5")),
            0,
            Unevaluable::NotDecimal(DecimalError::BadCharacter),
        ),
        (
            pay(json!("")),
            0,
            Unevaluable::NotDecimal(DecimalError::EmptyPart),
        ),
        (
            pay(json!(1e300)),
            0,
            Unevaluable::NotDecimal(DecimalError::TooManyDigits),
        ),
        // A matching entry does not hide an unevaluable one (in either order).
        (
            json!([
                {"type": "payment_initiation", "instructedAmount": {"amount": "5000"}},
                {"type": "payment_initiation", "instructedAmount": {"amount": "lots"}}
            ]),
            1,
            Unevaluable::NotDecimal(DecimalError::BadCharacter),
        ),
    ];
    for (details, entry, reason) in cases {
        let e = p.evaluate("agent-pay", &details).unwrap_err();
        assert_eq!(
            e,
            EvalError::Unevaluable {
                rule: s("payments over 1000"),
                entry,
                field: s("instructedAmount.amount"),
                reason,
            },
            "{details}"
        );
        let text = e.to_string();
        assert!(text.contains("payments over 1000"), "{text}");
        assert!(text.contains("instructedAmount.amount"), "{text}");
    }
    // Another client's request is not this rule's concern, so its missing amount is no error.
    assert_eq!(
        p.evaluate("agent-other", &json!([{"type": "payment_initiation"}]))
            .unwrap(),
        Outcome::NoRuleMatched
    );
}

#[test]
fn malformed_details_are_an_error() {
    let p = example().validate().unwrap();
    for d in [json!({}), json!([1]), json!([{"type": 3}]), json!([{}])] {
        assert!(
            matches!(
                p.evaluate("agent-pay", &d),
                Err(EvalError::MalformedDetails(_))
            ),
            "{d}"
        );
    }
}

fn refused(p: ApprovalPolicy) -> ApprovalPolicyError {
    p.validate().unwrap_err()
}

fn with_rule(change: impl FnOnce(&mut ApprovalRule)) -> ApprovalPolicy {
    let mut p = example();
    change(&mut p.rules[0]);
    p
}

#[test]
fn every_validation_refusal() {
    use ApprovalPolicyErrorKind as K;
    let r0 = PolicyPlace::Rule(0);
    type Change = fn(&mut ApprovalRule);
    let rule_cases: Vec<(Change, K)> = vec![
        (|r| r.name = s(""), K::BadRuleName),
        (|r| r.name = s(" lead"), K::BadRuleName),
        (|r| r.name = s("tab\there"), K::BadRuleName),
        (|r| r.name = s("é"), K::BadRuleName),
        (|r| r.name = "x".repeat(129), K::BadRuleName),
        (|r| r.when.kind = s(""), K::BadType),
        (|r| r.when.kind = s("a\nb"), K::BadType),
        (|r| r.when.field = Some(s("a..b")), K::BadField),
        (|r| r.when.field = Some(s(".a")), K::BadField),
        (|r| r.when.field = Some(["a"; 17].join(".")), K::BadField),
        (|r| r.when.op = None, K::FieldWithoutComparison),
        (|r| r.when.field = None, K::ComparisonWithoutField),
        (
            |r| {
                r.when.field = None;
                r.when.op = None;
            },
            K::ComparisonWithoutField,
        ),
        (|r| r.when.value = None, K::BadOperand(Op::Gt)),
        (
            |r| r.when.values = Some(vec![s("1")]),
            K::BadOperand(Op::Gt),
        ),
        (|r| r.when.op = Some(Op::In), K::BadOperand(Op::In)),
        (
            |r| {
                r.when.op = Some(Op::In);
                r.when.value = None;
                r.when.values = Some(vec![]);
            },
            K::BadOperand(Op::In),
        ),
        (
            |r| r.when.value = Some(s("1e3")),
            K::BadDecimal(s("1e3"), DecimalError::BadCharacter),
        ),
        (
            |r| {
                r.when.op = Some(Op::In);
                r.when.value = None;
                r.when.values = Some(vec![s("1"), s("+2")]);
            },
            K::BadDecimal(s("+2"), DecimalError::BadCharacter),
        ),
        (|r| r.when.clients = Some(vec![]), K::BadClients),
        (|r| r.when.clients = Some(vec![s("a b")]), K::BadClients),
        (
            |r| r.when.clients = Some(vec![s("a"), s("a")]),
            K::BadClients,
        ),
        (
            |r| r.approvers = Approvers::Group(s("nope")),
            K::UnknownGroup(s("nope")),
        ),
        (|r| r.approvers = Approvers::Ids(vec![]), K::NoApprovers),
        (
            |r| r.approvers = Approvers::Ids(vec![s("bob@example.com")]),
            K::BadApproverId(s("bob@example.com")),
        ),
        (
            |r| r.approvers = Approvers::Ids(vec![s("a"), s("b"), s("a")]),
            K::DuplicateApprover(s("a")),
        ),
        (
            |r| r.quorum = 0,
            K::BadQuorum {
                quorum: 0,
                eligible: 3,
            },
        ),
        (
            |r| r.quorum = 4,
            K::BadQuorum {
                quorum: 4,
                eligible: 3,
            },
        ),
        (|r| r.max_expiry = Some(0), K::BadMaxExpiry(0)),
        (
            |r| r.max_expiry = Some(MAX_RULE_EXPIRY_SECONDS + 1),
            K::BadMaxExpiry(MAX_RULE_EXPIRY_SECONDS + 1),
        ),
    ];
    for (change, kind) in rule_cases {
        let e = refused(with_rule(change));
        assert_eq!(
            e,
            ApprovalPolicyError {
                place: r0.clone(),
                kind: kind.clone()
            }
        );
        assert!(e.to_string().starts_with("rule 1: "), "{e}");
    }
    // The boundaries that pass.
    with_rule(|r| r.quorum = 3).validate().unwrap();
    with_rule(|r| r.max_expiry = Some(MAX_RULE_EXPIRY_SECONDS))
        .validate()
        .unwrap();
    with_rule(|r| r.name = "x".repeat(128)).validate().unwrap();

    let mut p = example();
    p.rules.push(p.rules[0].clone());
    assert_eq!(
        refused(p),
        ApprovalPolicyError {
            place: PolicyPlace::Rule(1),
            kind: K::DuplicateRuleName(s("payments over 1000"))
        }
    );

    let mut p = example();
    p.version = 2;
    assert_eq!(refused(p).kind, K::UnsupportedVersion(2));

    let group = |name: &str, members: Vec<String>| {
        let mut p = example();
        p.groups.insert(s(name), members);
        refused(p)
    };
    let e = group("bad name", vec![s("a")]);
    assert_eq!(
        (e.place, e.kind),
        (PolicyPlace::Group(s("bad name")), K::BadGroupName)
    );
    assert_eq!(group("group:x", vec![s("a")]).kind, K::BadGroupName);
    assert_eq!(group("empty", vec![]).kind, K::NoApprovers);
    assert_eq!(group("g", vec![s("a b")]).kind, K::BadApproverId(s("a b")));
    assert_eq!(
        group("g", vec![s("a"), s("a")]).kind,
        K::DuplicateApprover(s("a"))
    );
    assert_eq!(
        group("g", (0..257).map(|i| format!("a{i}")).collect()).kind,
        K::TooMany("approvers", MAX_POLICY_LIST)
    );

    let mut p = example();
    for i in 0..MAX_POLICY_GROUPS {
        p.groups.insert(format!("g{i}"), vec![s("a")]);
    }
    assert_eq!(refused(p).kind, K::TooMany("groups", MAX_POLICY_GROUPS));

    let mut p = example();
    for i in 0..MAX_POLICY_RULES {
        let mut r = p.rules[0].clone();
        r.name = format!("r{i}");
        p.rules.push(r);
    }
    assert_eq!(refused(p).kind, K::TooMany("rules", MAX_POLICY_RULES));
}

#[test]
fn canonical_form_is_deterministic_and_round_trips() {
    let p = example().validate().unwrap();
    let bytes = p.canonical_json();
    assert_eq!(
        core::str::from_utf8(&bytes).unwrap(),
        r#"{"groups":{"treasury":["apv_t3","apv_t1","apv_t2"]},"rules":[{"approvers":"treasury","name":"payments over 1000","quorum":2,"require_attestation":false,"require_uv":true,"when":{"clients":["agent-pay"],"field":"instructedAmount.amount","op":"gt","type":"payment_initiation","value":"1000"}}],"version":1}"#
    );
    let again = ValidatedPolicy::from_json(&bytes).unwrap();
    assert_eq!(again, p);
    assert_eq!(again.canonical_json(), bytes);
    assert_eq!(again.hash(), crate::hash::sha256(&bytes));
    // The same policy written differently (member order, defaults spelled out) gives the same
    // bytes; a different policy gives other bytes.
    let spelled = br#"{"version":1,"rules":[{"when":{"value":"1000","type":"payment_initiation","op":"gt","field":"instructedAmount.amount","clients":["agent-pay"]},"name":"payments over 1000","approvers":"treasury","quorum":2,"require_uv":true,"require_attestation":false}],"groups":{"treasury":["apv_t3","apv_t1","apv_t2"]}}"#;
    assert_eq!(
        ValidatedPolicy::from_json(spelled).unwrap().hash(),
        p.hash()
    );
    let other = with_rule(|r| r.quorum = 3).validate().unwrap();
    assert_ne!(other.hash(), p.hash());
    // A list of ids stays a list.
    let ids = with_rule(|r| r.approvers = Approvers::Ids(vec![s("b"), s("a")]))
        .validate()
        .unwrap();
    assert!(core::str::from_utf8(&ids.canonical_json())
        .unwrap()
        .contains(r#""approvers":["b","a"]"#));
}

#[test]
fn json_form_is_strict() {
    for bad in [
        &br#"{"version":1,"rules":[],"extra":1}"#[..],
        br#"{"version":1,"rules":[{"name":"r","when":{"type":"t","colour":"red"},"approvers":["a"],"quorum":1}]}"#,
        br#"{"version":1,"rules":[{"name":"r","when":{"type":"t","op":"gte","field":"a","value":"1"},"approvers":["a"],"quorum":1}]}"#,
        br#"{"rules":[]}"#,
    ] {
        assert!(
            matches!(ValidatedPolicy::from_json(bad), Err(PolicyJsonError::Json(_))),
            "{}",
            core::str::from_utf8(bad).unwrap()
        );
    }
    assert!(matches!(
        ValidatedPolicy::from_json(br#"{"version":1,"rules":[{"name":"r","when":{"type":"t"},"approvers":["a"],"quorum":2}]}"#),
        Err(PolicyJsonError::Invalid(_))
    ));
    // An empty policy is valid: every request goes to its login_hint approver.
    let empty = ValidatedPolicy::from_json(br#"{"version":1}"#).unwrap();
    assert_eq!(
        empty.evaluate("c", &pay(json!("1"))).unwrap(),
        Outcome::NoRuleMatched
    );
}

/// `units` / 10^`scale` written as a decimal with exactly `scale` fraction digits, plus `pad`
/// trailing zeros and `lead` leading zeros.
fn fixed(units: i64, scale: u32, pad: usize, lead: usize) -> String {
    let digits = units.unsigned_abs().to_string();
    let scale = scale as usize;
    let digits = format!(
        "{}{digits}",
        "0".repeat((scale + 1).saturating_sub(digits.len()))
    );
    let (int, frac) = digits.split_at(digits.len() - scale);
    let sign = if units < 0 { "-" } else { "" };
    let zeros = "0".repeat(lead);
    if scale + pad == 0 {
        format!("{sign}{zeros}{int}")
    } else {
        format!("{sign}{zeros}{int}.{frac}{}", "0".repeat(pad))
    }
}

proptest::proptest! {
    /// Decimal order is the order of the numbers written, whatever their scales and padding.
    #[test]
    fn decimal_order_is_numeric_order(
        a in proptest::num::i64::ANY,
        b in proptest::num::i64::ANY,
        sa in 0u32..12,
        sb in 0u32..12,
        pad in 0usize..4,
        lead in 0usize..3,
    ) {
        let (ta, tb) = (fixed(a, sa, pad, lead), fixed(b, sb, 0, 0));
        // Compare a / 10^sa with b / 10^sb exactly in i128: a * 10^sb vs b * 10^sa.
        let want = (i128::from(a) * 10i128.pow(sb)).cmp(&(i128::from(b) * 10i128.pow(sa)));
        let (da, db) = (Decimal::parse(&ta).unwrap(), Decimal::parse(&tb).unwrap());
        proptest::prop_assert_eq!(da.cmp(&db), want, "{} vs {}", ta, tb);
        proptest::prop_assert_eq!(da == db, want == Ordering::Equal);
    }
}
