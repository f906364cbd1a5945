//! The OpenID CIBA Core 1.0 surface: discovery, JWKS, the backchannel authentication and token
//! endpoints ([`endpoints`]), client authentication ([`clients`]) and the tokens ([`tokens`]).

pub mod clients;
pub mod endpoints;
pub mod tokens;
