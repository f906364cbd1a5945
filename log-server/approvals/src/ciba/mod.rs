//! The OpenID CIBA Core 1.0 surface: discovery, JWKS, the backchannel authentication and token
//! endpoints ([`endpoints`]), client authentication ([`clients`]), the tokens ([`tokens`]) and their issuance ([`issue`]).

pub mod clients;
pub mod endpoints;
pub mod issue;
pub mod secrets;
pub mod tokens;
