//! The extractors every Countersign router shares: the request body (read once, under the
//! route's size limit), path parameters, and the admin credential. Their refusals are
//! [`ApiError`]s like every other answer.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::submitters::SecretToken;

/// Most parameters one form body may carry.
const MAX_FORM_PARAMS: usize = 32;

/// The address of the connection a request came on ([`super::serve_with`] records it), for
/// limits per source; `None` where the router is driven without a listener (tests calling it
/// directly). Behind a reverse proxy this is the proxy's address.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// Whether reading a body failed because its sender was too slow (the body-read timeout of
/// [`super::serve_with`]).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source())
        .any(|e| e.is::<tower_http::timeout::TimeoutError>())
}

/// A request body. The only place a body is read: its size limit is the route's
/// `DefaultBodyLimit` (set where each router is built), and a body over it is a
/// `413 payload_too_large`.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(Body(b)),
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large",
            )),
            Err(r) if timed_out(&r) => Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body was not sent in time",
            )),
            Err(r) => Err(ApiError::new(
                r.status(),
                "invalid_request",
                "the request body could not be read",
            )),
        }
    }
}

/// Whether the request's media type (before any parameters) is `want`.
fn media_type_is(headers: &HeaderMap, want: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(want))
}

impl Body {
    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The body as JSON of type `T` (unknown members are refused where `T` says so).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.0)
            .map_err(|e| ApiError::invalid_request(format!("invalid JSON body: {e}")))
    }

    /// The body as JSON, which must also be declared `application/json`: a browser cannot send
    /// that cross-site without a CORS preflight, so the pages' endpoints take nothing else.
    pub fn declared_json<T: DeserializeOwned>(&self, headers: &HeaderMap) -> Result<T, ApiError> {
        if !media_type_is(headers, "application/json") {
            return Err(ApiError::invalid_request(
                "the body must be application/json",
            ));
        }
        self.json()
    }

    /// The body as an `application/x-www-form-urlencoded` form. A parameter given twice is an
    /// error (RFC 6749 section 3.1: parameters MUST NOT be included more than once).
    pub fn form(&self, headers: &HeaderMap) -> Result<HashMap<String, String>, ApiError> {
        if !media_type_is(headers, "application/x-www-form-urlencoded") {
            return Err(ApiError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&self.0)
            .map_err(|_| ApiError::invalid_request("the form body is malformed"))?;
        if pairs.len() > MAX_FORM_PARAMS {
            return Err(ApiError::invalid_request("too many parameters"));
        }
        let mut map = HashMap::new();
        for (k, v) in pairs {
            if map.contains_key(&k) {
                return Err(ApiError::invalid_request(format!(
                    "parameter {k} is given more than once"
                )));
            }
            map.insert(k, v);
        }
        Ok(map)
    }
}

/// A path parameter. Its rejection (a segment that does not percent-decode to UTF-8) is a JSON
/// error like every other answer of the API, not axum's plain-text one.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(p)) => Ok(PathParam(p)),
            Err(e) => Err(ApiError::invalid_request(format!(
                "the URL path is not usable: {}",
                e.body_text()
            ))),
        }
    }
}

/// The bearer token of a request (`Authorization: Bearer <token>`), if it carries one.
pub fn bearer(headers: &HeaderMap) -> Option<SecretToken> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let t = v.strip_prefix("Bearer ")?.trim();
    (!t.is_empty()).then(|| SecretToken::new(t))
}

/// What admin requests are checked against: the SHA-256 of the admin token. `Debug` shows
/// nothing of it.
#[derive(Clone)]
pub struct AdminAuth([u8; 32]);

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminAuth(<redacted>)")
    }
}

impl AdminAuth {
    /// Checks against the token whose SHA-256 is `hash`.
    pub fn new(hash: [u8; 32]) -> Self {
        AdminAuth(hash)
    }

    /// Whether `headers` carry the admin token as a bearer token (compared in constant time).
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let t = bearer(headers).ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
        if crate::submitters::matches(&t, &self.0) {
            Ok(())
        } else {
            Err(ApiError::unauthorized(
                "the bearer token is not the admin token",
            ))
        }
    }
}

/// Proof that a request carries the admin token: the one admin check of every router. Its
/// state must give an [`AdminAuth`].
#[derive(Debug)]
pub struct Admin;

impl<S> FromRequestParts<S> for Admin
where
    AdminAuth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        AdminAuth::from_ref(state).check(&parts.headers)?;
        Ok(Admin)
    }
}
