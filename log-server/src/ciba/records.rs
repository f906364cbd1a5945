//! The front end's records in the `ciba` column family, as JSON values under prefixed keys:
//!
//! | key | value |
//! |---|---|
//! | `c/<client_id>` | [`ClientRecord`] |
//! | `a/<approver_id>` | [`ApproverRecord`] |
//! | `m/<email, lowercased>` | approver id |
//! | `l/<hex SHA-256 of link token>` | [`EnrolmentLink`] |
//! | `r/<hex SHA-256 of auth_req_id>` | [`RequestRecord`] |
//! | `q/<request_id>` | hex SHA-256 of its auth_req_id |
//! | `p/<approver_id>/<request_id>` | empty: the approver's open requests |
//! | `k/<kid>` | token signing key seed (hex) |
//!
//! Only hashes of `auth_req_id`s and link tokens are keys, so the store alone does not let
//! anyone redeem a request or a link. Read-modify-write goes through one mutex: records are
//! small and writes are synced, so the lock is held for one fsync at most.

use std::sync::{Mutex, MutexGuard};

use countersign_verifier::Statement;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::Secret;
use crate::storage::{StorageError, Store};

/// Column family of the approval front end.
pub const CF_CIBA: &str = "ciba";

/// Token delivery mode (CIBA section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    /// The client polls the token endpoint.
    Poll,
    /// The client is pinged, then fetches the token.
    Ping,
    /// The token is pushed to the client.
    Push,
}

/// Client authentication method at the CIBA endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[clap(rename_all = "snake_case")]
pub enum AuthMethod {
    /// HTTP Basic with the form-urlencoded id and secret.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// A JWT signed with one of the client's registered keys (RFC 7523, OIDC Core section 9).
    PrivateKeyJwt,
}

impl AuthMethod {
    /// The registered name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// A registered client (agent).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientRecord {
    /// Opaque client id.
    pub client_id: String,
    /// How it authenticates.
    pub auth_method: AuthMethod,
    /// `sha256:<hex>` for server-generated secrets, an argon2id PHC string otherwise; empty
    /// for `private_key_jwt` clients.
    pub secret_hash: String,
    /// Public keys (a JWKS) of a `private_key_jwt` client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// Delivery mode.
    pub mode: DeliveryMode,
    /// Notification endpoint (ping, push).
    pub notification_endpoint: Option<String>,
    /// When registered (seconds).
    pub created_at: u64,
}

/// An approver (a person, known to the log only by the opaque id).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApproverRecord {
    /// Opaque approver id.
    pub approver_id: String,
    /// E-mail address (never in the log).
    pub email: String,
    /// Display name.
    pub name: Option<String>,
    /// Disabled approvers cannot sign in, be asked, or decide.
    pub disabled: bool,
    /// Enrolled credentials.
    pub credentials: Vec<CredentialRef>,
    /// When registered (seconds).
    pub created_at: u64,
}

/// An enrolled credential of an approver.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CredentialRef {
    /// Credential id (base64url).
    pub credential_id: String,
    /// Leaf index of its enrolment entry.
    pub enrolment_index: u64,
    /// COSE algorithm.
    pub alg: i64,
}

/// A one-time enrolment link.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnrolmentLink {
    /// The approver it enrols.
    pub approver_id: String,
    /// Expiry (seconds).
    pub expires_at: u64,
    /// Set once a passkey was enrolled through it.
    pub used: bool,
}

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Waiting for the approver.
    Pending,
    /// A decision is being logged (claimed, so two decisions cannot race).
    Deciding,
    /// Approved and logged.
    Approved,
    /// Denied and logged.
    Denied,
    /// Expired undecided.
    Expired,
}

/// The logged decision of a request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Leaf index of the decision entry.
    pub index: u64,
    /// Its leaf hash (hex).
    pub leaf_hash: String,
    /// Leaf index of the enrolment of the credential that signed.
    pub enrolment_index: u64,
    /// SHA-256 of the statement with the decision (hex).
    pub statement_hash: String,
    /// When decided (seconds).
    pub decided_at: u64,
}

/// A backchannel authentication request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Public request id (also in the statement).
    pub request_id: String,
    /// The statement shown; its `decision` member is set when decided.
    pub statement: Statement,
    /// The 32-byte nonce (hex).
    pub nonce: String,
    /// The client's delivery mode when it asked.
    pub mode: DeliveryMode,
    /// Bearer token for ping/push deliveries.
    pub client_notification_token: Option<Secret>,
    /// Status.
    pub status: RequestStatus,
    /// The logged decision.
    pub decision: Option<DecisionRecord>,
    /// Set when tokens were handed out (they are issued once).
    pub token_issued: bool,
}

/// Typed access to the `ciba` column family.
#[derive(Debug)]
pub struct CibaStore {
    store: Store,
    lock: Mutex<()>,
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(v).map_err(|e| StorageError(format!("encoding a record: {e}")))
}

impl CibaStore {
    /// Wraps the log's store.
    pub fn new(store: Store) -> Self {
        CibaStore {
            store,
            lock: Mutex::new(()),
        }
    }

    /// Holds the read-modify-write lock.
    pub fn lock(&self) -> MutexGuard<'_, ()> {
        match self.lock.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Reads a JSON record.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        self.store
            .get(CF_CIBA, key.as_bytes())?
            .map(|v| {
                serde_json::from_slice(&v)
                    .map_err(|e| StorageError(format!("record {key:?} is corrupt: {e}")))
            })
            .transpose()
    }

    /// Reads a raw value.
    pub fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.store.get(CF_CIBA, key.as_bytes())
    }

    /// Writes records and deletions in one synced batch.
    pub fn write(
        &self,
        puts: &[(String, Vec<u8>)],
        deletes: &[String],
    ) -> Result<(), StorageError> {
        let cf = self.store.cf(CF_CIBA)?;
        let mut wb = rocksdb::WriteBatch::default();
        for (k, v) in puts {
            wb.put_cf(cf, k.as_bytes(), v);
        }
        for k in deletes {
            wb.delete_cf(cf, k.as_bytes());
        }
        self.store.write_sync(wb)
    }

    /// Writes one JSON record.
    pub fn put<T: Serialize>(&self, key: &str, v: &T) -> Result<(), StorageError> {
        self.write(&[(key.to_owned(), enc(v)?)], &[])
    }

    /// Encodes a record for [`CibaStore::write`].
    pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StorageError> {
        enc(v)
    }

    /// Keys and values under `prefix`, at most `limit`.
    pub fn scan(&self, prefix: &str, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let cf = self.store.cf(CF_CIBA)?;
        let mut out = Vec::new();
        let iter = self.store.db().iterator_cf(
            cf,
            rocksdb::IteratorMode::From(prefix.as_bytes(), rocksdb::Direction::Forward),
        );
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(prefix.as_bytes()) || out.len() >= limit {
                break;
            }
            out.push((String::from_utf8_lossy(&k).into_owned(), v.into_vec()));
        }
        Ok(out)
    }

    /// Key of a request record.
    pub fn request_key(auth_req_hash: &[u8; 32]) -> String {
        format!("r/{}", hex::encode(auth_req_hash))
    }

    /// The request with this public id, and its record key.
    pub fn request_by_public_id(
        &self,
        request_id: &str,
    ) -> Result<Option<(String, RequestRecord)>, StorageError> {
        let Some(h) = self.get_raw(&format!("q/{request_id}"))? else {
            return Ok(None);
        };
        let key = format!("r/{}", String::from_utf8_lossy(&h));
        Ok(self.get::<RequestRecord>(&key)?.map(|r| (key, r)))
    }

    /// An approver by id.
    pub fn approver(&self, approver_id: &str) -> Result<Option<ApproverRecord>, StorageError> {
        self.get(&format!("a/{approver_id}"))
    }

    /// A client by id.
    pub fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StorageError> {
        self.get(&format!("c/{client_id}"))
    }
}
