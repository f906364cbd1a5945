#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

#[test]
fn failures_of_ours_say_only_that_they_failed() {
    let e = ApiError::internal("reading a record", "disk on fire");
    assert_eq!((e.status.as_u16(), e.code), (500, "server_error"));
    assert_eq!(
        e.description,
        "the server could not complete the request; nothing was approved"
    );
    let e = ApiError::from(StorageError::Db("disk on fire".into()));
    assert_eq!(
        (e.status.as_u16(), e.code, e.description.as_str()),
        (500, "internal_error", "storage failed")
    );
    let e = ApiError::from(ProofRequestError::Storage(StorageError::Missing(
        "node".into(),
    )));
    assert_eq!((e.status.as_u16(), e.code), (500, "internal_error"));
    let r = ApiError::from(AppendError::ShuttingDown).into_response();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()[header::RETRY_AFTER], "5");
}

#[test]
fn oauth_client_failures_challenge_for_basic_auth() {
    let r = ApiError::invalid_client("unknown client").into_response();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.headers()[header::WWW_AUTHENTICATE],
        "Basic realm=\"countersign\""
    );
    let r = ApiError::bad_request("out_of_range", "too far").into_response();
    assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
    assert_eq!(r.headers()[header::PRAGMA], "no-cache");
}
