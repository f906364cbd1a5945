//! The OpenID CIBA Core 1.0 surface: discovery, JWKS, the backchannel authentication and token
//! endpoints ([`endpoints`]), client authentication ([`clients`]), the tokens ([`tokens`]) and their issuance ([`issue`]),
//! and what Auth0's SDKs send beside the standard ([`auth0`]).

pub mod approvers;
pub mod auth0;
pub mod clients;
pub mod endpoints;
pub mod issue;
pub mod secrets;
pub mod tokens;
