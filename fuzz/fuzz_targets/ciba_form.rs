//! CIBA form bodies (/bc-authorize and /token, `application/x-www-form-urlencoded`) and client
//! credentials. The input is a first line, the HTTP Basic `id:secret` before base64 (empty: no
//! Authorization header), then the body. Checks: a parsed form has at most 32 distinct
//! parameters and survives re-encoding; Basic credentials are decoded exactly as strict
//! form-urlencoding decodes them (anything else is refused).
#![no_main]

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use countersign_approvals::ciba::clients::presented;
use countersign_approvals::store::AuthMethod;
use countersign_fuzz::strict_form_decode;
use countersign_log::http::Body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (basic, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let Ok(form) = Body(Bytes::copy_from_slice(body)).form(&headers) else {
        return;
    };
    assert!(form.len() <= 32);
    let pairs: Vec<(&String, &String)> = form.iter().collect();
    let encoded = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    match Body(Bytes::from(encoded)).form(&headers) {
        Ok(again) => assert_eq!(again, form, "re-encoded form parses differently"),
        Err(_) => panic!("re-encoded form refused"),
    }
    if !basic.is_empty() {
        let value = format!("Basic {}", STANDARD.encode(basic));
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(header::AUTHORIZATION, v);
        }
    }
    let Ok(p) = presented(&headers, &form) else {
        return;
    };
    if p.method == AuthMethod::ClientSecretBasic {
        let raw = std::str::from_utf8(basic).ok();
        let (id, secret) = raw.and_then(|r| r.split_once(':')).unwrap_or_default();
        assert_eq!(
            Some(p.client_id.clone()),
            strict_form_decode(id),
            "Basic id"
        );
        assert_eq!(
            Some(p.secret.expose()),
            strict_form_decode(secret).as_deref()
        );
    }
});
