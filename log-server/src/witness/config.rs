//! The witness client's configuration: the policy, and how often and in which mode the log is
//! witnessed (`countersign serve --witness-policy ...`).

use std::time::Duration;

use countersign_verifier::{Policy, PolicyError};

/// When a checkpoint is served and answers appends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WitnessMode {
    /// At once, signed by the log; cosignatures are added as they arrive (the default).
    Publish,
    /// Only once the policy's quorum has cosigned it; appends (and the approval front end's
    /// tokens) wait for it.
    Quorum,
}

/// How the log is witnessed (`countersign serve --witness-policy ...`).
#[derive(Clone, Debug)]
pub struct WitnessConfig {
    /// The policy: its witnesses (each with its submission prefix) and its quorum.
    pub policy: Policy,
    /// Shortest time between two checkpoints sent to the witnesses.
    pub interval: Duration,
    /// Publish at once, or only once the quorum has cosigned.
    pub mode: WitnessMode,
    /// In quorum mode, how long an append or a token waits for the quorum before it fails.
    pub quorum_timeout: Duration,
    /// Largest accepted distance between a cosignature's timestamp and the log's clock.
    pub max_skew: Duration,
    /// How long one request to a witness may take.
    pub request_timeout: Duration,
}

/// Why a witness policy cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WitnessConfigError {
    /// The file is not a valid `tlog-policy`.
    Policy(PolicyError),
    /// The policy names no witness.
    NoWitnesses,
    /// A witness has no URL (its submission prefix).
    NoUrl {
        /// The witness's name in the policy.
        witness: String,
    },
    /// A witness's URL is not one this client can post to.
    BadUrl {
        /// The witness's name in the policy.
        witness: String,
        /// Its URL.
        url: String,
    },
}

impl std::fmt::Display for WitnessConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WitnessConfigError::Policy(e) => write!(f, "witness policy: {e}"),
            WitnessConfigError::NoWitnesses => f.write_str(
                "witness policy: it names no witness (add `witness <name> <vkey> <url>` lines)",
            ),
            WitnessConfigError::NoUrl { witness } => write!(
                f,
                "witness policy: witness {witness} has no URL; give its tlog-witness submission \
                 prefix after its key (`witness {witness} <vkey> http://host:port`)"
            ),
            WitnessConfigError::BadUrl { witness, url } => write!(
                f,
                "witness policy: witness {witness} has URL {url:?}; give its tlog-witness \
                 submission prefix as an https:// (or http://) URL"
            ),
        }
    }
}

impl std::error::Error for WitnessConfigError {}

impl WitnessConfig {
    /// A configuration from a `tlog-policy` file's bytes, with the default interval (1 s),
    /// mode (publish), quorum timeout (30 s), skew (10 min) and request timeout (10 s). Every
    /// witness needs an `https://` or `http://` URL (TLS with the Mozilla roots of
    /// `webpki-roots`).
    pub fn from_policy(bytes: &[u8]) -> Result<Self, WitnessConfigError> {
        let policy = Policy::parse(bytes).map_err(WitnessConfigError::Policy)?;
        if policy.witnesses().is_empty() {
            return Err(WitnessConfigError::NoWitnesses);
        }
        for w in policy.witnesses() {
            let Some(url) = &w.url else {
                return Err(WitnessConfigError::NoUrl {
                    witness: w.name.clone(),
                });
            };
            let ok = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"))
                .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
            if !ok {
                return Err(WitnessConfigError::BadUrl {
                    witness: w.name.clone(),
                    url: url.clone(),
                });
            }
        }
        Ok(WitnessConfig {
            policy,
            interval: Duration::from_secs(1),
            mode: WitnessMode::Publish,
            quorum_timeout: Duration::from_secs(30),
            max_skew: Duration::from_secs(600),
            request_timeout: Duration::from_secs(10),
        })
    }
}
