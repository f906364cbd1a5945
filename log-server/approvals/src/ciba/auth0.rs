//! What an agent built on Auth0's SDKs sends beside standard CIBA, so that it works against this
//! server unchanged (issue 16): `login_hint` as an `iss_sub` JSON object (the `auth0` npm
//! package's `backchannel.authorize` sends nothing else) and the `audience` parameter. The
//! token endpoint's `/oauth/token` alias is routed in [`super::endpoints`].

use std::collections::HashMap;

use serde_json::Value;

use countersign_log::ApiError;

/// Longest `audience`, in bytes: an API identifier (usually a URL), not a document.
pub const MAX_AUDIENCE_BYTES: usize = 512;

/// A `login_hint` in the JSON form, once its shape is checked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum IssSub {
    /// `iss` is this server's issuer: `sub` names an approver by id.
    Here(String),
    /// `iss` is another issuer: the hint names no one here. Answered as an unknown approver, so
    /// a client learns nothing from it that it could not learn from an unknown id.
    Elsewhere,
}

fn malformed() -> ApiError {
    ApiError::invalid_request(
        "login_hint in JSON form must be {\"format\":\"iss_sub\",\"iss\":<this server's issuer>,\
         \"sub\":<approver id>}",
    )
}

/// Whether `hint` is in the JSON form (an object) rather than an approver id or e-mail address,
/// neither of which can start with `{`.
pub(crate) fn is_json_hint(hint: &str) -> bool {
    hint.starts_with('{')
}

/// Reads a JSON `login_hint`: exactly the members `format` (`"iss_sub"`), `iss` and `sub`, all
/// strings, `sub` not empty (OpenID Connect "Subject Identifiers" iss_sub format, as Auth0 sends
/// it). `iss` matches `issuer` with or without one trailing `/` (Auth0 writes `https://<domain>/`,
/// our issuer has no trailing slash). A malformed hint is `invalid_request`, a check of form
/// alone, made before any approver is looked up.
pub(crate) fn parse_iss_sub(hint: &str, issuer: &str) -> Result<IssSub, ApiError> {
    let v = countersign_verifier::parse_json_strict(hint.as_bytes()).map_err(|_| malformed())?;
    let obj = v.as_object().ok_or_else(malformed)?;
    if obj.len() != 3 || obj.get("format").and_then(Value::as_str) != Some("iss_sub") {
        return Err(malformed());
    }
    let (iss, sub) = match (
        obj.get("iss").and_then(Value::as_str),
        obj.get("sub").and_then(Value::as_str),
    ) {
        (Some(i), Some(s)) if !s.is_empty() => (i, s),
        _ => return Err(malformed()),
    };
    fn trim(s: &str) -> &str {
        s.strip_suffix('/').unwrap_or(s)
    }
    if trim(iss) == trim(issuer) {
        Ok(IssSub::Here(sub.to_owned()))
    } else {
        Ok(IssSub::Elsewhere)
    }
}

/// The `audience` parameter: `None` when absent or empty (Auth0's SDK sends an empty one when
/// none is configured); at most [`MAX_AUDIENCE_BYTES`] of text without control or invisible
/// characters, since it is copied into the access token and shown in logs.
pub(crate) fn audience(form: &HashMap<String, String>) -> Result<Option<String>, ApiError> {
    let Some(a) = form.get("audience").filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    if a.len() > MAX_AUDIENCE_BYTES {
        return Err(ApiError::invalid_request(format!(
            "audience is longer than {MAX_AUDIENCE_BYTES} bytes"
        )));
    }
    // Control characters are among the unsafe ones.
    if a.chars().any(countersign_verifier::is_unsafe_display_char) {
        return Err(ApiError::invalid_request(
            "audience holds control or invisible characters",
        ));
    }
    Ok(Some(a.clone()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const ISS: &str = "https://approve.example";

    #[test]
    fn iss_sub_forms() {
        let here = |h: &str| parse_iss_sub(h, ISS).unwrap();
        assert_eq!(
            here(r#"{"format":"iss_sub","iss":"https://approve.example/","sub":"apv_a"}"#),
            IssSub::Here("apv_a".into())
        );
        assert_eq!(
            here(r#"{"sub":"apv_a","iss":"https://approve.example","format":"iss_sub"}"#),
            IssSub::Here("apv_a".into())
        );
        assert_eq!(
            here(r#"{"format":"iss_sub","iss":"https://other.example/","sub":"apv_a"}"#),
            IssSub::Elsewhere
        );
        assert_eq!(
            here(r#"{"format":"iss_sub","iss":"https://approve.example//","sub":"apv_a"}"#),
            IssSub::Elsewhere,
            "one trailing slash is tolerated, not any number"
        );
        for bad in [
            "{",
            "{}",
            r#"{"format":"iss_sub","iss":"https://approve.example"}"#,
            r#"{"format":"email","iss":"https://approve.example","sub":"apv_a"}"#,
            r#"{"format":"iss_sub","iss":"https://approve.example","sub":""}"#,
            r#"{"format":"iss_sub","iss":"https://approve.example","sub":7}"#,
            r#"{"format":"iss_sub","iss":"https://approve.example","sub":"a","x":1}"#,
            r#"{"format":"iss_sub","iss":"x","sub":"a","sub":"b"}"#,
            r#"["format","iss_sub"]"#,
        ] {
            let e = parse_iss_sub(bad, ISS).unwrap_err();
            assert_eq!(e.code, "invalid_request", "{bad}");
        }
    }

    #[test]
    fn audience_limits() {
        let f = |v: &str| HashMap::from([("audience".to_owned(), v.to_owned())]);
        assert_eq!(audience(&HashMap::new()).unwrap(), None);
        assert_eq!(audience(&f("")).unwrap(), None);
        assert_eq!(
            audience(&f("https://api.example/")).unwrap().as_deref(),
            Some("https://api.example/")
        );
        assert!(audience(&f(&"a".repeat(MAX_AUDIENCE_BYTES))).is_ok());
        assert!(audience(&f(&"a".repeat(MAX_AUDIENCE_BYTES + 1))).is_err());
        assert!(audience(&f("api\n")).is_err());
        assert!(audience(&f("api\u{202e}")).is_err());
    }
}
