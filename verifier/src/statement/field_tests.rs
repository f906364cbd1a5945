#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::tests::sample;
use super::*;

#[test]
fn each_field_rule_names_its_field() {
    type Change = fn(&mut Statement);
    let cases: [(Change, &str); 14] = [
        (|s| s.version = 3, "version"),
        (|s| s.requested_at = MAX_SAFE_INTEGER + 1, "requested_at"),
        (|s| s.expires_at = MAX_SAFE_INTEGER + 1, "expires_at"),
        (|s| s.log_origin = String::new(), "log_origin"),
        (|s| s.log_origin = "log\u{202E}".into(), "log_origin"),
        (|s| s.request_id = "req 1".into(), "request_id"),
        (|s| s.client_id = String::new(), "client_id"),
        (|s| s.approver_id = "a\nb".into(), "approver_id"),
        (|s| s.scope = "x".repeat(1025), "scope"),
        (|s| s.scope = "openid\u{7}".into(), "scope"),
        (|s| s.binding_message = String::new(), "binding_message"),
        (
            |s| s.authorization_details = serde_json::json!([]),
            "authorization_details",
        ),
        (|s| s.expires_at = s.requested_at, "expires_at"),
        (|s| s.decision = "maybe".into(), "decision"),
    ];
    for (change, field) in cases {
        let mut s = sample();
        change(&mut s);
        let e = s.validate().unwrap_err();
        assert_eq!(e, StatementError::InvalidField(field));
        assert_eq!(
            e.to_string(),
            std::format!("statement field {field} is invalid")
        );
        assert_eq!(s.canonical_json(), Err(e.clone()));
        assert_eq!(s.hash(), Err(e));
    }
    let mut s = sample();
    s.decision = "maybe".into();
    assert_eq!(s.decision(), Err(StatementError::InvalidField("decision")));
    let big = std::vec![b' '; MAX_STATEMENT_BYTES + 1];
    let e = Statement::from_json(&big).unwrap_err();
    assert_eq!(e, StatementError::TooLarge);
    assert_eq!(
        e.to_string(),
        std::format!("statement is larger than {MAX_STATEMENT_BYTES} bytes")
    );
    let e = Statement::from_json(b"[1]").unwrap_err();
    assert!(e.to_string().starts_with("malformed statement: "), "{e}");
}

#[test]
fn binding_messages_and_authorization_details_say_what_is_wrong() {
    assert_eq!(
        validate_binding_message("", 5),
        Err("binding_message is empty")
    );
    assert_eq!(
        validate_binding_message("123456", 5),
        Err("binding_message is too long")
    );
    assert_eq!(
        validate_binding_message("a\u{200F}b", 5),
        Err("binding_message contains a control or bidirectional formatting character")
    );
    // Characters, not bytes, are counted.
    assert_eq!(validate_binding_message("ééééé", 5), Ok(()));

    let v = |j: &str| validate_authorization_details(&serde_json::from_str(j).unwrap());
    assert_eq!(v("{}"), Err("authorization_details is not an array"));
    assert_eq!(v("[]"), Err("authorization_details is empty"));
    assert_eq!(
        v("[1]"),
        Err("an authorization_details element is not an object")
    );
    assert_eq!(
        v(r#"[{"type":""}]"#),
        Err("an authorization_details element has no string type")
    );
    assert_eq!(
        v(r#"[{"type":7}]"#),
        Err("an authorization_details element has no string type")
    );
    assert_eq!(
        v(r#"[{"type":"t","n":9007199254740992}]"#),
        Err("integer beyond 2^53 - 1")
    );
    assert_eq!(
        v(r#"[{"type":"t","n":[-9007199254740992]}]"#),
        Err("integer beyond 2^53 - 1")
    );
    assert_eq!(
        v(r#"[{"type":"t","n":9007199254740991,"m":-9007199254740991,"f":1.5,"o":{"x":null}}]"#),
        Ok(())
    );
}

#[test]
fn strict_json_keeps_every_value_and_refuses_duplicates_at_any_depth() {
    let text = br#"{"a":[true,false,null,-3,4,2.5,"s\u00e9",{"b":{}}],"c":""}"#;
    let strict = parse_json_strict(text).unwrap();
    let plain: Value = serde_json::from_slice(text).unwrap();
    assert_eq!(strict, plain);
    let e = parse_json_strict(br#"{"a":[{"b":1,"b":2}]}"#).unwrap_err();
    assert!(e.contains("duplicate member \"b\""), "{e}");
    let e = parse_json_strict(b"{} {}").unwrap_err();
    assert!(e.contains("trailing characters"), "{e}");
    assert!(parse_json_strict(b"[1,").is_err());
}
