//! The front end's records in the `ciba` column family, as JSON values under prefixed keys:
//!
//! | key | value |
//! |---|---|
//! | `c/<client_id>` | [`ClientRecord`] |
//! | `a/<approver_id>` | [`ApproverRecord`] |
//! | `m/<email, lowercased>` | approver id |
//! | `l/<hex SHA-256 of link token>` | [`EnrolmentLink`] |
//! | `n/<approver_id>` | hex SHA-256 of the approver's latest link token: older links are void |
//! | `r/<hex SHA-256 of auth_req_id>` | [`RequestRecord`] |
//! | `q/<request_id>` | hex SHA-256 of its auth_req_id |
//! | `p/<approver_id>/<request_id>` | [`pending_value`]: the approver's open requests |
//! | `k/<kid>` | token signing key seed (hex) |
//! | `x/<expires_at, 16 hex digits>/<request_id>` | hex SHA-256 of its auth_req_id (clean-up index) |
//! | `v/x-index` | marker: every request has its `x/` key |
//! | `d/<hex SHA-256 of auth_req_id>` | [`OutboxRecord`]: a ping/push delivery still owed |
//! | `w/<hex SHA-256 of auth_req_id>/<webhook or email>` | empty: an approver notification still owed |
//! | `i/<hex SHA-256 of auth_req_id>` | empty: the request is claimed, its decision being logged |
//! | `s/<hex SHA-256 of session cookie>` | an approver session |
//! | `h/<approver_id>/<u64::MAX - log index, 16 hex>/<request_id>` | hex SHA-256 of its auth_req_id: the approver's decisions, newest first |
//! | `E/<decision log index, 16 hex>` | [`EvidenceRecord`]: a decision's evidence, kept [`CibaConfig::evidence_retention_days`](crate::config::CibaConfig::evidence_retention_days) after the request's records are gone |
//! | `Ea/<hex SHA-256 of auth_req_id>` | the decision's log index (16 hex): evidence by `auth_req_id` |
//! | `Er/<request_id>` | the decision's log index (16 hex): evidence by public request id |
//! | `A/<seq, 16 hex>` | an audit event ([`EventRow`] JSON), in the order recorded; seqs start at 1 |
//! | `v/audit-seq` | the seq the next audit event gets (16 hex) |
//! | `v/expired-cursor` | the last `x/` key whose request was checked for its `request.expired` event |
//! | `U/<hex SHA-256 of auditor token>` | [`AuditorRecord`] |
//!
//! Only hashes of `auth_req_id`s, link tokens and session cookies are keys, so the keys alone
//! do not let anyone redeem a request or a link. (The `d/` records of open ping/push requests
//! hold their `auth_req_id` until it is delivered; the store also holds the token signing keys.)
//!
//! Concurrency: a read-modify-write of a record holds that record's lock ([`CibaStore::lock`])
//! from its read until its write is applied; writes are group-committed. Both are the log's
//! key-value area's ([`countersign_log::storage::kv`]); this module adds the records, the key
//! layout, and the in-memory index of each approver's open requests.

use std::collections::{BTreeSet, HashMap};

use std::sync::Arc;

use countersign_log::shared::kv::{Change, SharedGuard, SharedKv};
use countersign_log::shared::pg::Db;
use countersign_log::storage::kv::{
    decode, encode, prefix_end, KvArea, Op, RecordGuard, WriteCounters, WriterStats,
};
pub use countersign_log::storage::kv::{Batch, Durability};
use countersign_log::storage::{StorageError, Store};
use countersign_verifier::export::EventRow;
use countersign_verifier::{Decision, Statement};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::util::Secret;

/// Column family of the approval front end.
pub const CF_CIBA: &str = "ciba";
/// Prefix of the request records (`r/<hex SHA-256 of auth_req_id>`).
pub const REQUEST_PREFIX: &str = "r/";
/// Prefix of the approver records (`a/<approver_id>`).
pub const APPROVER_PREFIX: &str = "a/";
/// Prefix of the approvers' pending indexes (`p/<approver_id>/<request_id>`).
pub const PENDING_PREFIX: &str = "p/";
/// Prefix of the clean-up index (`x/<expires_at, 16 hex digits>/<request_id>`).
pub const EXPIRY_PREFIX: &str = "x/";
/// Marker written once every request has its clean-up index key.
pub const EXPIRY_INDEX_MARKER: &str = "v/x-index";
/// Prefix of the delivery outbox (`d/<SHA-256 of the auth_req_id, hex>`): what a ping or push
/// request still has to deliver to its client.
pub const OUTBOX_PREFIX: &str = "d/";

/// Prefix of the claimed requests (`i/<SHA-256 of the auth_req_id, hex>`): those whose decision
/// is being logged, for the recovery at start.
pub const CLAIM_PREFIX: &str = "i/";

/// Prefix of the approver notifications still owed (`w/<SHA-256 of the auth_req_id, hex>/<kind>`,
/// kind `webhook` or `email`): written with the request, deleted once delivered, taken up at
/// start while the request is still open.
pub const NOTIFY_PREFIX: &str = "w/";
/// The approvers' decision histories (`h/<approver_id>/...`), newest first within each.
pub const HISTORY_PREFIX: &str = "h/";
/// Evidence records (`E/<decision log index, 16 hex>`), ascending by index.
pub const EVIDENCE_PREFIX: &str = "E/";
/// Audit events (`A/<seq, 16 hex>`), in the order recorded.
pub const AUDIT_PREFIX: &str = "A/";
/// The seq the next audit event gets.
pub const AUDIT_SEQ_KEY: &str = "v/audit-seq";
/// The last `x/` key the `request.expired` walk of the clean-up has passed.
pub const EXPIRED_CURSOR_KEY: &str = "v/expired-cursor";
/// Set once the decided requests of a database written before evidence records existed have
/// been given theirs ([`crate::decision::migrate_evidence`]).
pub const EVIDENCE_MIGRATED_KEY: &str = "v/evidence-migrated";
/// Auditor tokens (`U/<hex SHA-256 of the token>`).
pub const AUDITOR_PREFIX: &str = "U/";

/// A decision's evidence, written in the same batch that records the decision on its request,
/// and kept apart from the request's records: those go
/// [`CibaConfig::request_retention_secs`](crate::config::CibaConfig::request_retention_secs) after
/// the request expired, this stays for
/// [`CibaConfig::evidence_retention_days`](crate::config::CibaConfig::evidence_retention_days), so
/// evidence bundles, the audit statements and exports outlive the token's life.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvidenceRecord {
    /// The public request id.
    pub request_id: String,
    /// SHA-256 of the request's `auth_req_id` (hex).
    pub auth_req_hash: String,
    /// The statement, with its decision.
    pub statement: Statement,
    /// Leaf index of the decision entry.
    pub decision_index: u64,
    /// Leaf index of the enrolment of the credential that signed.
    pub enrolment_index: u64,
    /// When the decision was recorded (milliseconds).
    pub decided_at_ms: u64,
    /// When the tokens were handed out (milliseconds), if they were.
    pub token_issued_at_ms: Option<u64>,
    /// The request's audit events: `request.created`, the decision, `token.issued`.
    pub events: Vec<EventRow>,
    /// The approver who made the decision at `decision_index` (empty in records written before
    /// quorum approvals: the statement's approver).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub decided_by: String,
    /// Under a policy rule with a quorum: the approvals logged before the one that completed
    /// it (or before a denial), in log order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<DecisionRecord>,
    /// An approval that did not end its request (a quorum not reached yet): kept so that the
    /// statement of every decision in the log stays exportable, whatever the request's end
    /// (completed, denied, expired). No lookup key points to it: the request's evidence is
    /// the record of the decision that ended it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

impl EvidenceRecord {
    /// The record of decision `rec` over `statement` of the request `request_id` (its record
    /// key's hash `auth_req_hash`), with `events`; no separate decider, no approvals, not
    /// partial: set those with struct update syntax.
    pub fn of_decision(
        request_id: &str,
        auth_req_hash: &str,
        rec: &DecisionRecord,
        statement: Statement,
        events: Vec<EventRow>,
    ) -> Self {
        EvidenceRecord {
            request_id: request_id.to_owned(),
            auth_req_hash: auth_req_hash.to_owned(),
            statement,
            decision_index: rec.index,
            enrolment_index: rec.enrolment_index,
            decided_at_ms: rec.decided_at.saturating_mul(1000),
            token_issued_at_ms: None,
            events,
            decided_by: String::new(),
            approvals: Vec::new(),
            partial: false,
        }
    }

    /// The approver who made the decision at `decision_index`.
    pub fn decider(&self) -> &str {
        if self.decided_by.is_empty() {
            &self.statement.approver_id
        } else {
            &self.decided_by
        }
    }
}

/// An auditor token, stored under the SHA-256 of the token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditorRecord {
    /// The auditor's name.
    pub name: String,
    /// When created (seconds).
    pub created_at: u64,
}

/// A ping or push request's delivery that has not reached the client yet. Written with the
/// request (so the `auth_req_id` a ping or push must carry survives a restart, while the
/// request record itself keeps only its hash), completed with the token response when push
/// tokens are issued (in the same write that marks them issued, so a delivery repeated after a
/// crash carries the same tokens), and deleted once the client acknowledged the delivery, or
/// with the request at clean-up. Keeping the `auth_req_id` here weakens nothing: this store
/// already holds the token signing keys and the clients' notification tokens.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// The request's `auth_req_id`.
    pub auth_req_id: Secret,
    /// For push: the token response (JSON text) once issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_response: Option<Secret>,
}

/// Token delivery mode (CIBA section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    /// If set, the only approvers this client may ask; any other is answered as an unknown
    /// one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Vec<String>>,
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
    /// Sessions made at or before this time (milliseconds) are over: set when a passkey is
    /// revoked or the approver disabled, so no cached or stored copy of a session outlives it.
    #[serde(default)]
    pub sessions_not_before_ms: u64,
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
    /// A recovery link: it may add a passkey to an approver who has one without a session of
    /// theirs (the operator's choice, for a lost passkey).
    #[serde(default)]
    pub recovery: bool,
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// Who decided (empty in records written before quorum approvals: the statement's
    /// approver, [`RequestRecord::decider`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub approver_id: String,
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
    /// While [`RequestStatus::Deciding`]: what the decision is being logged with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<ClaimRecord>,
    /// The `audience` the client asked for (Auth0's parameter naming the API the token is
    /// for): the access token's `aud`. Not part of the statement: it says where the token may
    /// be used, not what was approved. Absent in records written before it was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Under a policy rule with a quorum above 1: the approvals logged so far, in log order,
    /// while the request waits for more. The approval that completes the quorum (or a denial)
    /// is [`RequestRecord::decision`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<DecisionRecord>,
    /// The matched rule requires the user-verified flag on every approval.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_uv: bool,
    /// The matched rule requires every approving passkey to have a verified attestation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_attestation: bool,
}

impl RequestRecord {
    /// Who made decision `d` of this request.
    pub fn decider<'a>(&'a self, d: &'a DecisionRecord) -> &'a str {
        if d.approver_id.is_empty() {
            &self.statement.approver_id
        } else {
            &d.approver_id
        }
    }

    /// Whether `approver_id` already approved this request (an approval toward its quorum).
    pub fn has_approved(&self, approver_id: &str) -> bool {
        self.approvals
            .iter()
            .any(|d| crate::util::same_id(self.decider(d), approver_id))
    }

    /// Every logged decision on the request, in log order: the approvals toward its quorum,
    /// then the decision that ended it.
    pub fn decisions(&self) -> impl Iterator<Item = &DecisionRecord> {
        self.approvals.iter().chain(self.decision.as_ref())
    }

    /// The statement with `decision` in it: what the approver signs for that decision.
    pub fn statement_for(&self, decision: Decision) -> Statement {
        let mut st = self.statement.clone();
        st.decision = decision.as_str().to_owned();
        st
    }

    /// The request's 32-byte nonce; `None` if the stored hex is damaged.
    pub fn nonce_bytes(&self) -> Option<[u8; 32]> {
        hex::decode(&self.nonce).ok()?.try_into().ok()
    }
}

/// What a claimed request is being decided with, written with the claim (before the decision is
/// appended to the log), so that a start after a crash can finish the decision from the log, or
/// release the claim if the decision never reached it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClaimRecord {
    /// The assertion's replay key in the log ([`countersign_log::log::assertion_key`], hex).
    pub assertion_key: String,
    /// The decision being logged (stored as `approve` or `deny`).
    #[serde(with = "decision_text")]
    pub decision: Decision,
    /// Leaf index of the enrolment of the credential that signed.
    pub enrolment_index: u64,
    /// SHA-256 of the decided statement (hex).
    pub statement_hash: String,
    /// Who is deciding (empty in claims written before quorum approvals: the statement's
    /// approver).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub approver_id: String,
    /// On the shared driver: the instance that claimed (its id while it runs), so that another
    /// instance recovers the claim only once that one is gone. Empty on the embedded store.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance: String,
}

/// The value of a `p/` key: when the request was made (milliseconds) and expires (seconds),
/// and its client, so that the in-memory index orders an inbox by time and counts each
/// client's open requests.
/// (A value stored before these were recorded is empty: such a request sorts last and is not
/// counted.)
pub fn pending_value(requested_at_ms: u64, expires_at: u64, client_id: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + client_id.len());
    v.extend_from_slice(&requested_at_ms.to_be_bytes());
    v.extend_from_slice(&expires_at.to_be_bytes());
    v.extend_from_slice(client_id.as_bytes());
    v
}

/// What the index knows of one open request.
#[derive(Debug)]
struct PendingMeta {
    approver: String,
    requested_at_ms: u64,
    expires_at: u64,
    client: String,
}

impl PendingMeta {
    fn parse(approver: &str, v: &[u8]) -> Self {
        let u = |r: std::ops::Range<usize>| {
            v.get(r)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes)
        };
        PendingMeta {
            approver: approver.to_owned(),
            requested_at_ms: u(0..8),
            expires_at: u(8..16),
            client: v
                .get(16..)
                .and_then(|c| std::str::from_utf8(c).ok())
                .unwrap_or_default()
                .to_owned(),
        }
    }
}

#[derive(Debug, Default)]
struct PendingMaps {
    /// Each approver's open requests, newest first.
    by_approver: HashMap<String, BTreeSet<(std::cmp::Reverse<u64>, String)>>,
    /// Each client's open requests by expiry.
    by_client: HashMap<String, BTreeSet<(u64, String)>>,
    /// By (approver, request id): a request under a policy is open for each of its approvers.
    meta: HashMap<(String, String), PendingMeta>,
    /// How many approvers each open request is open for (a client's request counts once).
    open_for: HashMap<String, usize>,
}

impl PendingMaps {
    fn remove(&mut self, approver: &str, request: &str) {
        let Some(m) = self.meta.remove(&(approver.to_owned(), request.to_owned())) else {
            return;
        };
        let key = (std::cmp::Reverse(m.requested_at_ms), request.to_owned());
        if let Some(set) = self.by_approver.get_mut(&m.approver) {
            set.remove(&key);
            if set.is_empty() {
                self.by_approver.remove(&m.approver);
            }
        }
        let left = self.open_for.get_mut(request).map(|n| {
            *n -= 1;
            *n
        });
        if left == Some(0) {
            self.open_for.remove(request);
            if let Some(set) = self.by_client.get_mut(&m.client) {
                set.remove(&(m.expires_at, request.to_owned()));
                if set.is_empty() {
                    self.by_client.remove(&m.client);
                }
            }
        }
    }

    fn insert(&mut self, request: &str, m: PendingMeta) {
        self.remove(&m.approver.clone(), request);
        self.by_approver
            .entry(m.approver.clone())
            .or_default()
            .insert((std::cmp::Reverse(m.requested_at_ms), request.to_owned()));
        if !m.client.is_empty() {
            self.by_client
                .entry(m.client.clone())
                .or_default()
                .insert((m.expires_at, request.to_owned()));
        }
        *self.open_for.entry(request.to_owned()).or_default() += 1;
        self.meta
            .insert((m.approver.clone(), request.to_owned()), m);
    }
}

/// The `p/` keys (each approver's open requests) in memory, so that reading an inbox is a map
/// lookup rather than a scan over the deletion markers every decided request leaves behind,
/// newest first (a new request is never hidden behind old ones), and so that each client's
/// open requests can be counted ([`CibaStore::open_requests_of_client`]). Loaded at start;
/// kept in step by [`CibaStore::commit`], which applies the `p/` puts and deletions of every
/// batch once the batch is written.
#[derive(Debug, Default)]
struct PendingIndex(std::sync::Mutex<PendingMaps>);

impl PendingIndex {
    fn map(&self) -> std::sync::MutexGuard<'_, PendingMaps> {
        match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Replaces the whole index with `all` (the `p/` keys as puts).
    fn replace(&self, all: &[Op]) {
        *self.map() = PendingMaps::default();
        self.apply(all);
    }

    /// Applies the `p/` changes among `ops`.
    fn apply(&self, ops: &[Op]) {
        let mut changes = ops.iter().filter_map(|(k, v)| {
            let (approver, request) = k.strip_prefix(PENDING_PREFIX)?.rsplit_once('/')?;
            Some((approver, request, v.as_deref()))
        });
        let Some(first) = changes.next() else {
            return;
        };
        let mut map = self.map();
        for (approver, request, put) in std::iter::once(first).chain(changes) {
            match put {
                Some(v) => map.insert(request, PendingMeta::parse(approver, v)),
                None => map.remove(approver, request),
            }
        }
    }
}

/// Where the records are: the embedded log's column family, or (shared driver) the database's
/// key-value area, shared by every instance.
enum Area {
    Local(KvArea),
    Shared(Arc<SharedKv>),
}

/// Held record locks ([`CibaStore::lock`]): released when dropped.
#[derive(Debug)]
pub enum Guard<'a> {
    /// One record's, in this process (embedded store).
    Local(RecordGuard<'a>),
    /// Several records', in this process (embedded store).
    LocalMany(Vec<RecordGuard<'a>>),
    /// At every instance (shared driver).
    Shared(SharedGuard<'a>),
}

/// Typed access to the `ciba` column family: the log's group-commit key-value area
/// ([`KvArea`]), or on the shared driver the database's ([`SharedKv`]), plus the in-memory
/// index of open requests.
pub struct CibaStore {
    kv: Area,
    pending: Arc<PendingIndex>,
    /// The seq the next audit event gets. Held while a batch with events is numbered and
    /// submitted, so events are applied (and seen by readers) in seq order.
    audit_seq: std::sync::Mutex<u64>,
}

impl std::fmt::Debug for CibaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CibaStore")
            .field("writer", &self.writer_stats())
            .finish_non_exhaustive()
    }
}

impl Area {
    /// A record: on the embedded store parsed from RocksDB's pinned value (no copy); on the
    /// shared driver a round trip awaited, not blocked on.
    async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        match self {
            Area::Local(kv) => kv.get(key),
            Area::Shared(kv) => decode(key, kv.get_raw_async(key).await?.as_deref()),
        }
    }

    fn get_blocking<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        match self {
            Area::Local(kv) => kv.get(key),
            Area::Shared(kv) => kv.get(key),
        }
    }

    fn get_raw_blocking(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match self {
            Area::Local(kv) => kv.get_raw(key),
            Area::Shared(kv) => kv.get_raw(key),
        }
    }

    /// A point read: on the embedded store a RocksDB read on this thread (as short as the
    /// rest of a handler's work); on the shared driver a round trip awaited, not blocked on.
    async fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match self {
            Area::Local(kv) => kv.get_raw(key),
            Area::Shared(kv) => kv.get_raw_async(key).await,
        }
    }

    async fn get_via(
        &self,
        key: &str,
        prefix: &str,
        field: Option<&str>,
    ) -> Result<Option<(Vec<u8>, Option<Vec<u8>>)>, StorageError> {
        match self {
            Area::Local(kv) => {
                let Some(v) = kv.get_raw(key)? else {
                    return Ok(None);
                };
                let target = match field {
                    None => Some(String::from_utf8_lossy(&v).into_owned()),
                    Some(f) => serde_json::from_slice::<serde_json::Value>(&v)
                        .ok()
                        .and_then(|j| j.get(f)?.as_str().map(str::to_owned)),
                };
                let pointed = match target {
                    Some(t) => kv.get_raw(&format!("{prefix}{t}"))?,
                    None => None,
                };
                Ok(Some((v, pointed)))
            }
            Area::Shared(kv) => kv.get_via(key, prefix, field).await,
        }
    }

    fn scan_range_blocking(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        match self {
            Area::Local(kv) => kv.scan_range(start, end, limit),
            Area::Shared(kv) => kv.scan_range(start, end, limit),
        }
    }

    async fn scan_range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        match self {
            Area::Local(kv) => kv.scan_range(start, end, limit),
            Area::Shared(kv) => kv.scan_range_async(start, end, limit).await,
        }
    }
}

/// Most audit events numbered in one transaction.
const NUMBER_AT_ONCE: usize = 1000;

/// On the shared driver, audit events are queued by the transactions that record them and
/// numbered here, many per transaction ([`SharedKv::number_queued`]): as soon as this instance
/// queued some, and every 250 ms (events another instance queued and could not number before
/// it stopped). The feed (`A/<seq>`) shows an event once numbered, in recording order.
fn number_events_shared(kv: &Arc<SharedKv>) {
    let (weak, signal) = (Arc::downgrade(kv), kv.queued_signal());
    tokio::spawn(async move {
        loop {
            let _ = tokio::time::timeout(std::time::Duration::from_millis(250), signal.notified())
                .await;
            let Some(kv) = weak.upgrade() else { return };
            loop {
                match kv
                    .number_queued(AUDIT_SEQ_KEY, AUDIT_PREFIX, NUMBER_AT_ONCE)
                    .await
                {
                    Ok(n) if n == NUMBER_AT_ONCE => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "numbering audit events failed; retrying");
                        break;
                    }
                }
            }
        }
    });
}

/// Every `p/` key, as puts for the pending index.
fn load_pending(kv: &Area) -> Result<Vec<Op>, StorageError> {
    let mut loaded = Vec::new();
    let mut from = PENDING_PREFIX.as_bytes().to_vec();
    let end = prefix_end(PENDING_PREFIX.as_bytes());
    loop {
        let page = kv.scan_range_blocking(&from, end.as_deref(), 4096)?;
        let Some((last, _)) = page.last() else { break };
        from = last.as_bytes().to_vec();
        from.push(0);
        let full = page.len() == 4096;
        loaded.extend(page.into_iter().map(|(k, v)| (k, Some(v))));
        if !full {
            break;
        }
    }
    Ok(loaded)
}

/// The `p/` changes of `batch`, to apply to the pending index once it is written.
fn pending_ops(batch: &Batch) -> Vec<Op> {
    batch
        .ops()
        .iter()
        .filter(|(k, _)| k.starts_with(PENDING_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl CibaStore {
    /// Opens the `ciba` area of the log's store (opened with [`CF_CIBA`]) and loads the
    /// pending index.
    pub fn new(store: Store) -> Result<Self, StorageError> {
        let kv = Area::Local(KvArea::open(store, CF_CIBA)?);
        let pending = Arc::new(PendingIndex::default());
        pending.apply(&load_pending(&kv)?);
        let next_seq = match kv.get_raw_blocking(AUDIT_SEQ_KEY)? {
            None => 1,
            Some(v) => std::str::from_utf8(&v)
                .ok()
                .and_then(|t| u64::from_str_radix(t, 16).ok())
                .ok_or_else(|| StorageError::Corrupt(format!("{AUDIT_SEQ_KEY} is not hex")))?,
        };
        Ok(CibaStore {
            kv,
            pending,
            audit_seq: std::sync::Mutex::new(next_seq),
        })
    }

    /// Opens the records in the shared driver's database (every instance sees the same), loads
    /// the pending index, and keeps it in step with the other instances' changes. Must be
    /// called on the multi-threaded runtime.
    pub async fn shared(db: Db) -> Result<Self, StorageError> {
        let kv = Arc::new(SharedKv::open(db, PENDING_PREFIX).await?);
        let mut changes = kv.changes();
        let area = Area::Shared(kv.clone());
        let pending = Arc::new(PendingIndex::default());
        let loaded = tokio::task::block_in_place(|| load_pending(&area))?;
        pending.apply(&loaded);
        let weak = Arc::downgrade(&pending);
        let kv_weak = Arc::downgrade(&kv);
        tokio::spawn(async move {
            loop {
                let change = match changes.recv().await {
                    Ok(c) => c,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Change::Resync,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let (Some(pending), Some(kv)) = (weak.upgrade(), kv_weak.upgrade()) else {
                    return;
                };
                match change {
                    Change::Keys(keys) => match kv.get_many(&keys).await {
                        Ok(ops) => pending.apply(&ops),
                        Err(e) => {
                            tracing::warn!(error = %e, "reading changed open requests failed")
                        }
                    },
                    Change::Resync => {
                        let area = Area::Shared(kv);
                        match tokio::task::block_in_place(|| load_pending(&area)) {
                            Ok(all) => pending.replace(&all),
                            Err(e) => tracing::warn!(error = %e, "re-reading open requests failed"),
                        }
                    }
                }
            }
        });
        number_events_shared(&kv);
        Ok(CibaStore {
            kv: area,
            pending,
            audit_seq: std::sync::Mutex::new(0),
        })
    }

    /// Whether the records are in the shared driver's database (several instances).
    pub fn is_shared(&self) -> bool {
        matches!(self.kv, Area::Shared(_))
    }

    /// Other instances' changes of open requests (`p/` keys), on the shared driver.
    pub fn remote_changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        match &self.kv {
            Area::Local(_) => None,
            Area::Shared(kv) => Some(kv.changes()),
        }
    }

    /// This instance's id on the shared driver (recorded in its claims).
    pub fn instance_id(&self) -> Option<&str> {
        match &self.kv {
            Area::Local(_) => None,
            Area::Shared(kv) => Some(kv.instance_id()),
        }
    }

    /// Whether the instance that made a claim (`id`, empty on the embedded store) still runs:
    /// always false on the embedded store, where only a crash leaves claims behind.
    pub async fn claimant_alive(&self, id: &str) -> Result<bool, StorageError> {
        match &self.kv {
            Area::Shared(kv) if !id.is_empty() => kv.instance_alive(id).await,
            _ => Ok(false),
        }
    }

    /// The shared driver's database, if the records are there.
    pub fn db(&self) -> Option<&Db> {
        match &self.kv {
            Area::Local(_) => None,
            Area::Shared(kv) => Some(kv.db()),
        }
    }

    /// Numbers `events` (the next seqs) into `batch` with the new counter. The caller holds
    /// the counter's lock until the batch is submitted.
    fn number_events(
        next: &mut u64,
        batch: &mut Batch,
        events: &[EventRow],
    ) -> Result<(), StorageError> {
        if events.is_empty() {
            return Ok(());
        }
        for e in events {
            batch.put_json(Self::audit_key(*next), e)?;
            *next += 1;
        }
        batch.put(AUDIT_SEQ_KEY, format!("{:016x}", *next).into_bytes());
        Ok(())
    }

    fn seq_lock(&self) -> std::sync::MutexGuard<'_, u64> {
        match self.audit_seq.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// [`CibaStore::commit`] with audit `events` appended to the feed (`A/`) in the same
    /// batch. Seqs are given and the batch submitted under one lock, and the writer applies
    /// batches in the order submitted, so a reader never sees an event before one with a lower
    /// seq that will still appear: a feed cursor never skips an event.
    pub async fn commit_with_events(
        &self,
        mut batch: Batch,
        events: &[EventRow],
        durability: Durability,
    ) -> Result<(), StorageError> {
        let pending = pending_ops(&batch);
        match &self.kv {
            Area::Local(kv) => {
                let written = {
                    let mut next = self.seq_lock();
                    let before = *next;
                    if let Err(e) = Self::number_events(&mut next, &mut batch, events) {
                        *next = before;
                        return Err(e);
                    }
                    // A failed write leaves a gap in the seqs, never a reuse.
                    kv.commit(batch, durability)
                };
                written.await?;
            }
            Area::Shared(kv) => {
                // Queued with the batch, numbered right after (see `number_events_shared`).
                let encoded = events.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
                kv.commit_queued(batch, Some((AUDIT_PREFIX, &encoded)), durability)
                    .await?;
            }
        }
        self.pending.apply(&pending);
        Ok(())
    }

    /// [`CibaStore::commit_blocking`] with audit events (start-up: nothing else writes yet).
    pub fn commit_blocking_with_events(
        &self,
        mut batch: Batch,
        events: &[EventRow],
    ) -> Result<(), StorageError> {
        if let Area::Shared(kv) = &self.kv {
            let encoded = events.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
            let ops = pending_ops(&batch);
            kv.commit_queued_blocking(batch, Some((AUDIT_PREFIX, &encoded)))?;
            self.pending.apply(&ops);
            return Ok(());
        }
        let mut next = self.seq_lock();
        let before = *next;
        if let Err(e) = Self::number_events(&mut next, &mut batch, events) {
            *next = before;
            return Err(e);
        }
        self.commit_blocking(batch)
    }

    /// Key of the audit event `seq`.
    pub fn audit_key(seq: u64) -> String {
        format!("{AUDIT_PREFIX}{seq:016x}")
    }

    /// Key of the evidence record of the decision at `index`.
    pub fn evidence_key(index: u64) -> String {
        format!("{EVIDENCE_PREFIX}{index:016x}")
    }

    /// Key of the evidence lookup by the hash (hex) of an `auth_req_id`.
    pub fn evidence_by_hash_key(hash_hex: &str) -> String {
        format!("Ea/{hash_hex}")
    }

    /// Key of the evidence lookup by public request id.
    pub fn evidence_by_request_key(request_id: &str) -> String {
        format!("Er/{request_id}")
    }

    /// The evidence record a lookup key (`Ea/` or `Er/`) points to.
    pub async fn evidence_via(
        &self,
        lookup_key: &str,
    ) -> Result<Option<EvidenceRecord>, StorageError> {
        let Some((v, record)) = self.get_via(lookup_key, EVIDENCE_PREFIX, None).await? else {
            return Ok(None);
        };
        let index = std::str::from_utf8(&v)
            .ok()
            .filter(|t| t.len() == 16)
            .and_then(|t| u64::from_str_radix(t, 16).ok())
            .ok_or_else(|| StorageError::Corrupt(format!("{lookup_key} is not an index")))?;
        decode(&Self::evidence_key(index), record.as_deref())
    }

    /// Puts an evidence record into `batch`, with its lookup keys unless it is
    /// [`EvidenceRecord::partial`] (the request's lookups name the record that ended it).
    pub fn put_evidence(batch: &mut Batch, e: &EvidenceRecord) -> Result<(), StorageError> {
        batch.put_json(Self::evidence_key(e.decision_index), e)?;
        if !e.partial {
            let index = format!("{:016x}", e.decision_index).into_bytes();
            batch.put(Self::evidence_by_hash_key(&e.auth_req_hash), index.clone());
            batch.put(Self::evidence_by_request_key(&e.request_id), index);
        }
        Ok(())
    }

    /// Holds the lock of record `key` for a read-modify-write ([`KvArea::lock`]; on the
    /// shared driver, at every instance: [`SharedKv::lock`]).
    ///
    /// Errors (shared driver): [`StorageError::Unavailable`] when the database cannot be
    /// reached or the lock is not free in time.
    pub async fn lock(&self, key: &str) -> Result<Guard<'_>, StorageError> {
        match &self.kv {
            Area::Local(kv) => Ok(Guard::Local(kv.lock(key).await)),
            Area::Shared(kv) => Ok(Guard::Shared(kv.lock(key).await?)),
        }
    }

    /// Holds the locks of several records ([`KvArea::lock_all`], [`SharedKv::lock_all`]).
    pub async fn lock_all(&self, keys: &[&str]) -> Result<Guard<'_>, StorageError> {
        match &self.kv {
            Area::Local(kv) => Ok(Guard::LocalMany(kv.lock_all(keys).await)),
            Area::Shared(kv) => Ok(Guard::Shared(kv.lock_all(keys).await?)),
        }
    }

    /// Applies `batch` atomically ([`KvArea::commit`]) and then its `p/` changes to the pending
    /// index.
    pub async fn commit(&self, batch: Batch, durability: Durability) -> Result<(), StorageError> {
        let pending = pending_ops(&batch);
        match &self.kv {
            Area::Local(kv) => kv.commit(batch, durability).await?,
            Area::Shared(kv) => kv.commit(batch, durability).await?,
        }
        self.pending.apply(&pending);
        Ok(())
    }

    /// Submits `batch` ([`Durability::Deferred`]) without waiting for it: for changes nobody
    /// waits on, such as dropping stale index keys.
    pub fn commit_in_background(&self, batch: Batch) {
        self.pending.apply(batch.ops());
        match &self.kv {
            Area::Local(kv) => kv.commit_in_background(batch),
            Area::Shared(kv) => kv.commit_in_background(batch),
        }
    }

    /// Writes records and deletions in one synced batch.
    pub async fn write(
        &self,
        puts: &[(String, Vec<u8>)],
        deletes: &[String],
    ) -> Result<(), StorageError> {
        let mut b = Batch::new();
        for (k, v) in puts {
            b.put(k.clone(), v.clone());
        }
        for k in deletes {
            b.delete(k.clone());
        }
        self.commit(b, Durability::Sync).await
    }

    /// Writes one JSON record, synced.
    pub async fn put<T: Serialize>(&self, key: &str, v: &T) -> Result<(), StorageError> {
        let mut b = Batch::new();
        b.put_json(key, v)?;
        self.commit(b, Durability::Sync).await
    }

    /// Applies `batch`, synced, on the calling thread (start-up, or a thread that may block).
    pub fn commit_blocking(&self, batch: Batch) -> Result<(), StorageError> {
        let ops = pending_ops(&batch);
        match &self.kv {
            Area::Local(kv) => kv.commit_blocking(&batch)?,
            Area::Shared(kv) => kv.commit_blocking(batch)?,
        }
        self.pending.apply(&ops);
        Ok(())
    }

    /// Writes one JSON record, synced, on the calling thread (start-up, or a thread that may
    /// block).
    pub fn put_blocking<T: Serialize>(&self, key: &str, v: &T) -> Result<(), StorageError> {
        let mut b = Batch::new();
        b.put_json(key, v)?;
        self.commit_blocking(b)
    }

    /// Deletes what a delivery or notification still owed (its outbox record or `w/` key). Not
    /// synced: if a crash loses the deletion, it is delivered again (at least once).
    pub fn forget(&self, owed_key: String) {
        let mut b = Batch::new();
        b.delete(owed_key);
        self.commit_in_background(b);
    }

    /// The writer's counters, for the metrics.
    pub(crate) fn write_stats(&self) -> &WriteCounters {
        match &self.kv {
            Area::Local(kv) => kv.counters(),
            Area::Shared(kv) => kv.counters(),
        }
    }

    /// What the writer did so far; `submitted / synced_batches` is how many writes one fsync
    /// carried.
    pub fn writer_stats(&self) -> WriterStats {
        match &self.kv {
            Area::Local(kv) => kv.writer_stats(),
            Area::Shared(kv) => kv.writer_stats(),
        }
    }

    /// Reads a JSON record.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        self.kv.get(key).await
    }

    /// Reads a raw value.
    pub async fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.kv.get_raw(key).await
    }

    /// The value at `key`, and the record at `prefix` followed by that value's text (with
    /// `field`, by the string member `field` of its JSON object): a record and the one it
    /// points to, read together (one round trip on the shared driver). `None` when `key` is
    /// absent; the second value is `None` when the record pointed to is.
    pub async fn get_via(
        &self,
        key: &str,
        prefix: &str,
        field: Option<&str>,
    ) -> Result<Option<(Vec<u8>, Option<Vec<u8>>)>, StorageError> {
        self.kv.get_via(key, prefix, field).await
    }

    /// [`CibaStore::get`] on the calling thread, for code that cannot await (start-up,
    /// synchronous callbacks); on the shared driver it blocks the worker for the round trip.
    pub fn get_blocking<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        self.kv.get_blocking(key)
    }

    /// [`CibaStore::get_raw`] on the calling thread ([`CibaStore::get_blocking`]).
    pub fn get_raw_blocking(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.kv.get_raw_blocking(key)
    }

    /// Encodes a record for [`CibaStore::write`].
    pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StorageError> {
        encode(v)
    }

    /// Keys and values under `prefix`, at most `limit`.
    pub async fn scan(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let end = prefix_end(prefix.as_bytes());
        self.kv
            .scan_range(prefix.as_bytes(), end.as_deref(), limit)
            .await
    }

    /// [`CibaStore::scan`] on the calling thread ([`CibaStore::get_blocking`]).
    pub fn scan_blocking(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let end = prefix_end(prefix.as_bytes());
        self.kv
            .scan_range_blocking(prefix.as_bytes(), end.as_deref(), limit)
    }

    /// Keys and values in `[start, end)` (to the end of the family without `end`), at most
    /// `limit`, in key order.
    pub async fn scan_range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.kv.scan_range(start, end, limit).await
    }

    /// [`CibaStore::scan_range`] on the calling thread ([`CibaStore::get_blocking`]).
    pub fn scan_range_blocking(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.kv.scan_range_blocking(start, end, limit)
    }

    /// Key of a request record.
    pub fn request_key(auth_req_hash: &[u8; 32]) -> String {
        Self::record_key_of(&hex::encode(auth_req_hash))
    }

    /// Key of the request record whose `auth_req_id` hash (hex) is `hash_hex`: the inverse of
    /// the per-request keys below, whose suffix is that hash.
    pub fn record_key_of(hash_hex: &str) -> String {
        format!("{REQUEST_PREFIX}{hash_hex}")
    }

    /// The `auth_req_id` hash (hex) in a request's record key.
    pub fn hash_of_key(record_key: &str) -> &str {
        Self::hash_in(record_key)
    }

    fn hash_in(record_key: &str) -> &str {
        record_key
            .strip_prefix(REQUEST_PREFIX)
            .unwrap_or(record_key)
    }

    /// Key of a request's pending delivery ([`OutboxRecord`]), from its record key.
    pub fn outbox_key(record_key: &str) -> String {
        format!("{OUTBOX_PREFIX}{}", Self::hash_in(record_key))
    }

    /// Key of a claimed request's marker, from its record key.
    pub fn claim_key(record_key: &str) -> String {
        format!("{CLAIM_PREFIX}{}", Self::hash_in(record_key))
    }

    /// Key of an approver notification (`kind`: `webhook` or `email`) still owed for a request,
    /// from its record key.
    pub fn notify_key(record_key: &str, kind: &str) -> String {
        format!("{NOTIFY_PREFIX}{}/{kind}", Self::hash_in(record_key))
    }

    /// Key of a request's public id.
    pub fn public_id_key(request_id: &str) -> String {
        format!("q/{request_id}")
    }

    /// Key of an open request in its approver's pending index.
    pub fn pending_key(approver_id: &str, request_id: &str) -> String {
        format!("{PENDING_PREFIX}{approver_id}/{request_id}")
    }

    /// The ids of an approver's open requests (at most `limit`, newest first) with their `p/`
    /// keys, from memory.
    pub fn pending_of(&self, approver_id: &str, limit: usize) -> Vec<(String, String)> {
        self.pending
            .map()
            .by_approver
            .get(approver_id)
            .map(|set| {
                set.iter()
                    .take(limit)
                    .map(|(_, rid)| (Self::pending_key(approver_id, rid), rid.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many of `client_id`'s requests are open (undecided and unexpired at `now`), and
    /// when the first of them expires.
    pub fn open_requests_of_client(&self, client_id: &str, now: u64) -> (usize, Option<u64>) {
        let map = self.pending.map();
        let Some(set) = map.by_client.get(client_id) else {
            return (0, None);
        };
        let mut open = set.range((now.saturating_add(1), String::new())..);
        let first = open.next().map(|(e, _)| *e);
        (first.map_or(0, |_| 1 + open.count()), first)
    }

    /// Key of a decided request in its approver's history, ordered by its decision's log
    /// index (the order decisions were made in), newest first under `h/<approver_id>/`, so a
    /// forward scan reads the latest decisions.
    pub fn history_key(approver_id: &str, log_index: u64, request_id: &str) -> String {
        format!(
            "{HISTORY_PREFIX}{approver_id}/{:016x}/{request_id}",
            u64::MAX - log_index
        )
    }

    /// The history keys of a request: one per logged decision, under its approver.
    pub fn history_keys_of(r: &RequestRecord) -> Vec<String> {
        r.decisions()
            .map(|d| Self::history_key(r.decider(d), d.index, &r.request_id))
            .collect()
    }

    /// An approver's decided requests, newest first, at most `limit`.
    pub async fn history_of(
        &self,
        approver_id: &str,
        limit: usize,
    ) -> Result<Vec<RequestRecord>, StorageError> {
        let mut out = Vec::new();
        for (_, hash) in self
            .scan(&format!("{HISTORY_PREFIX}{approver_id}/"), limit)
            .await?
        {
            let key = Self::record_key_of(&String::from_utf8_lossy(&hash));
            // A record cleaned up under a history key a crash left behind is skipped.
            if let Some(r) = self.get::<RequestRecord>(&key).await? {
                if r.decisions().any(|d| r.decider(d) == approver_id) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Key of an approver's latest enrolment link (its token's hash).
    pub fn latest_link_key(approver_id: &str) -> String {
        format!("n/{approver_id}")
    }

    /// Key of a request in the clean-up index: ordered by expiry.
    pub fn expiry_key(expires_at: u64, request_id: &str) -> String {
        format!("{EXPIRY_PREFIX}{expires_at:016x}/{request_id}")
    }

    /// The request with this public id, and its record key.
    pub async fn request_by_public_id(
        &self,
        request_id: &str,
    ) -> Result<Option<(String, RequestRecord)>, StorageError> {
        let Some((h, record)) = self
            .get_via(&Self::public_id_key(request_id), REQUEST_PREFIX, None)
            .await?
        else {
            return Ok(None);
        };
        let key = Self::record_key_of(&String::from_utf8_lossy(&h));
        Ok(decode::<RequestRecord>(&key, record.as_deref())?.map(|r| (key, r)))
    }

    /// An approver by id.
    pub async fn approver(
        &self,
        approver_id: &str,
    ) -> Result<Option<ApproverRecord>, StorageError> {
        self.get(&format!("{APPROVER_PREFIX}{approver_id}")).await
    }

    /// A client by id.
    pub async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StorageError> {
        self.get(&format!("c/{client_id}")).await
    }
}

/// A [`Decision`] stored as its statement text, `approve` or `deny`.
mod decision_text {
    use countersign_verifier::Decision;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Decision, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(d.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decision, D::Error> {
        let s = String::deserialize(d)?;
        Decision::parse(&s).ok_or_else(|| serde::de::Error::custom("not approve or deny"))
    }
}
