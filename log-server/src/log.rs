//! The in-process write API: checks an enrolment or a signed decision with the verifier crate,
//! builds the entry (the log sets `time_ms` and copies the enrolled public key), and hands it to
//! the sequencer. The HTTP layer and the approval front end both call [`LogHandle`].

use std::sync::Arc;

use countersign_verifier::{
    challenge, check_sign_count, leaf_hash, parse_cose_key, sha256, verify_assertion, Assertion,
    AssertionPolicy, Decision, Enrolment, Entry, Hash, PublicKey, Revocation, SignedDecision,
};

use crate::error::{AppendError, RefusalReason};
use crate::metrics::Metrics;
use crate::proofs::{
    consistency_proof, inclusion_proof, leaf_and_inclusion_proof, ProofRequestError,
};
use crate::sequencer::{now_ms, AppendKind, Appended, Published, SequencerHandle};
use crate::shared::reads::{ReadError, TileReader};
use crate::shared::{Prefetched, SharedLog, Wants};
use crate::signer::LogSigner;
use crate::storage::{StorageError, Store};
use crate::submitters::{self, SecretToken, SubmitterInfo};
use crate::tiles::{read_tile, TileRead, TileRef};
use crate::witness::{Changes, LogView, WitnessConfig, WitnessStartError, Witnessing};

/// The relying-party policy decisions are checked under.
#[derive(Clone, Debug)]
pub struct RpPolicy {
    /// WebAuthn RP ID.
    pub rp_id: String,
    /// Origins the approval page may run on.
    pub allowed_origins: Vec<String>,
    /// Whether the UV flag is required.
    pub require_user_verification: bool,
}

/// An enrolment to log (the log adds the time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrolmentRequest {
    /// Opaque approver id.
    pub approver_id: String,
    /// WebAuthn credential id.
    pub credential_id: Vec<u8>,
    /// COSE_Key public key.
    pub public_key: Vec<u8>,
    /// Authenticator AAGUID.
    pub aaguid: [u8; 16],
    /// Attestation statement format (`none`, `packed`, ...).
    pub attestation_format: String,
    /// How the attestation was checked (an enrolment entry of version 2 records it).
    pub attestation: countersign_verifier::AttestationRecord,
}

/// A revocation to log (the log adds the time): the credential enrolled at `enrolment_index`
/// may not decide anything after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationRequest {
    /// Opaque approver id (the enrolment's).
    pub approver_id: String,
    /// WebAuthn credential id (the enrolment's).
    pub credential_id: Vec<u8>,
    /// Leaf index of the enrolment revoked.
    pub enrolment_index: u64,
    /// Why, as a label (`spec/entry.md` rule E10): `disabled`, `lost`, `compromised`,
    /// `removed`, ...
    pub reason: String,
}

/// A signed decision to check and log (the log adds the key and the time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionRequest {
    /// Approve or deny.
    pub decision: Decision,
    /// SHA-256 of the canonical statement.
    pub statement_hash: [u8; 32],
    /// The 32-byte nonce.
    pub nonce: [u8; 32],
    /// Opaque approver id.
    pub approver_id: String,
    /// Credential id.
    pub credential_id: Vec<u8>,
    /// WebAuthn authenticatorData.
    pub authenticator_data: Vec<u8>,
    /// WebAuthn clientDataJSON.
    pub client_data_json: Vec<u8>,
    /// Assertion signature.
    pub signature: Vec<u8>,
    /// Leaf index of the credential's enrolment.
    pub enrolment_index: u64,
    /// The latest time (Unix milliseconds) the log may stamp on the entry; a later stamp is a
    /// [`RefusalReason::TooLate`] refusal. The time checked is the very value written in the
    /// entry, so an entry the log accepts is never dated after the deadline.
    pub not_after_ms: Option<u64>,
}

/// An entry with its inclusion proof.
#[derive(Clone, Debug)]
pub struct ProvedEntry {
    /// Leaf index.
    pub index: u64,
    /// The entry bytes.
    pub entry: Vec<u8>,
    /// The inclusion proof against [`ProvedEntries::checkpoint`].
    pub proof: Vec<Hash>,
}

/// Entries proved against one checkpoint ([`LogHandle::prove_entries`]).
#[derive(Clone, Debug)]
pub struct ProvedEntries {
    /// The checkpoint every proof is against.
    pub checkpoint: Published,
    /// The entries, in the order asked.
    pub entries: Vec<ProvedEntry>,
}

/// Handle on a running log: cheap to clone, usable from any task. The only way other crates
/// append to the log or read it: every read here stays within the published tree.
#[derive(Clone, Debug)]
pub struct LogHandle {
    pub(crate) backend: Backend,
    pub(crate) signer: Arc<LogSigner>,
    pub(crate) policy: Arc<RpPolicy>,
    pub(crate) metrics: Arc<Metrics>,
    /// The witness client, once started ([`LogHandle::start_witnessing`]); shared by every
    /// clone of the handle.
    pub(crate) witnessing: Arc<std::sync::OnceLock<Arc<Witnessing>>>,
}

/// Where the log lives: the embedded store with its in-process sequencer, or the shared driver
/// (PostgreSQL and a bucket) with a reader of the bucket's tiles.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    Embedded {
        store: Store,
        seq: SequencerHandle,
    },
    Shared {
        log: SharedLog,
        tiles: Arc<TileReader>,
    },
}

/// The root of the shared log's tree at `size`: as the database signed it, or, for a size no
/// checkpoint was published at, computed from the bucket's tiles and accepted only if a
/// consistency proof from the same tiles proves it a prefix of the published (trusted) root.
async fn shared_root_at(
    log: &SharedLog,
    tiles: &TileReader,
    size: u64,
) -> Result<Hash, ProofRequestError> {
    let published = log.published();
    tiles.published(published.size);
    if let Some(root) = log.signed_root(size).await? {
        return Ok(root);
    }
    let addrs: Vec<(u8, u64)> = countersign_verifier::LeafRange {
        start: 0,
        end: size,
    }
    .subtrees()
    .iter()
    .map(|s| (s.level, s.index))
    .collect();
    let nodes = tiles
        .nodes(&addrs, published.size)
        .await
        .map_err(read_failed)?;
    let root = countersign_verifier::fold_subtrees(&nodes)
        .ok_or(ProofRequestError::OutOfRange("an empty tree has no proofs"))?;
    tiles
        .consistency_proof(size, published.size, &root, &published.root)
        .await
        .map_err(read_failed)?;
    Ok(root)
}

fn read_failed(e: ReadError) -> ProofRequestError {
    match e {
        ReadError::OutOfRange(what) => ProofRequestError::OutOfRange(what),
        // A tile that does not prove what the database signed: named for the operator.
        other => {
            tracing::error!(error = %other, "proof from the bucket's tiles failed");
            ProofRequestError::Storage(StorageError::Corrupt(other.to_string()))
        }
    }
}

fn storage_failed(e: impl std::fmt::Display) -> AppendError {
    tracing::error!(error = %e, "storage read failed");
    AppendError::Storage
}

/// The replay key of an assertion: the credential and the exact client data it signed (which
/// holds the challenge). Signature bytes are left out on purpose: ECDSA signatures are
/// malleable, and a re-encoded signature must not make a replay look new.
pub fn assertion_key(credential_id: &[u8], client_data_json: &[u8]) -> [u8; 32] {
    let mut m = Vec::with_capacity(40 + credential_id.len() + client_data_json.len());
    m.extend_from_slice(b"countersign/assertion/v1\0");
    m.extend_from_slice(&(credential_id.len() as u32).to_be_bytes());
    m.extend_from_slice(credential_id);
    m.extend_from_slice(client_data_json);
    sha256(&m)
}

impl LogHandle {
    /// A handle on a log of the shared driver (`spec/shared-driver.md`): appends are sequenced
    /// in its database and answered once published in its bucket; proofs and tiles are read
    /// from the bucket through `tiles`.
    pub fn shared(
        log: SharedLog,
        tiles: Arc<TileReader>,
        policy: RpPolicy,
        metrics: Arc<Metrics>,
    ) -> LogHandle {
        // The tree size on /metrics follows the published checkpoint.
        let (mut published, gauge) = (log.subscribe(), metrics.clone());
        tokio::spawn(async move {
            loop {
                let size = published.borrow_and_update().size;
                gauge.tree_size.set(i64::try_from(size).unwrap_or(i64::MAX));
                if published.changed().await.is_err() {
                    return;
                }
            }
        });
        LogHandle {
            signer: log.signer().clone(),
            backend: Backend::Shared { log, tiles },
            policy: Arc::new(policy),
            metrics,
            witnessing: Arc::default(),
        }
    }

    /// The embedded store (read-only use); `None` on the shared driver.
    pub fn store(&self) -> Option<&Store> {
        match &self.backend {
            Backend::Embedded { store, .. } => Some(store),
            Backend::Shared { .. } => None,
        }
    }

    /// The embedded sequencer; `None` on the shared driver.
    pub fn sequencer(&self) -> Option<&SequencerHandle> {
        match &self.backend {
            Backend::Embedded { seq, .. } => Some(seq),
            Backend::Shared { .. } => None,
        }
    }

    /// The shared driver's instance; `None` on the embedded store.
    pub fn shared_log(&self) -> Option<&SharedLog> {
        match &self.backend {
            Backend::Embedded { .. } => None,
            Backend::Shared { log, .. } => Some(log),
        }
    }

    /// Whether the log takes appends: its sequencer runs (embedded), or it is not shut down
    /// and its integration has not stopped (shared).
    pub fn alive(&self) -> bool {
        match &self.backend {
            Backend::Embedded { seq, .. } => seq.shared().alive(),
            Backend::Shared { log, .. } => log.alive(),
        }
    }

    /// Milliseconds since the epoch of the latest signed checkpoint.
    pub fn last_signed_ms(&self) -> u64 {
        match &self.backend {
            Backend::Embedded { seq, .. } => seq.shared().last_signed_ms(),
            Backend::Shared { log, .. } => log.last_signed_ms(),
        }
    }

    /// Stops taking appends and lets what is queued finish.
    pub async fn shutdown(&self) {
        match &self.backend {
            Backend::Embedded { seq, .. } => seq.shutdown().await,
            Backend::Shared { log, .. } => log.shutdown(),
        }
    }

    async fn append(
        &self,
        entry: Vec<u8>,
        leaf: Hash,
        kind: AppendKind,
    ) -> Result<Appended, AppendError> {
        match &self.backend {
            Backend::Embedded { seq, .. } => seq.append(entry, leaf, kind).await,
            Backend::Shared { log, .. } => log.append(entry, leaf, kind).await,
        }
    }

    async fn append_many(
        &self,
        items: Vec<(Vec<u8>, Hash, AppendKind)>,
    ) -> Vec<Result<Appended, AppendError>> {
        match &self.backend {
            Backend::Embedded { seq, .. } => seq.append_many(items).await,
            Backend::Shared { log, .. } => log.append_many(items).await,
        }
    }

    /// Entry `index` of the published tree (`None` beyond it).
    pub async fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let size = self.published().size;
        if index >= size {
            return Ok(None);
        }
        match &self.backend {
            Backend::Embedded { store, .. } => store.entry(index),
            Backend::Shared { log, .. } => log.entry(index).await,
        }
    }

    /// The inclusion proof of leaf `index` in the published tree of `tree_size` leaves, with the
    /// leaf's hash.
    pub async fn leaf_and_inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<(Hash, Vec<Hash>), ProofRequestError> {
        match &self.backend {
            Backend::Embedded { store, .. } => leaf_and_inclusion_proof(store, index, tree_size),
            Backend::Shared { log, tiles } => {
                let root = shared_root_at(log, tiles, tree_size).await?;
                tiles
                    .inclusion_proof(index, tree_size, &root)
                    .await
                    .map_err(read_failed)
            }
        }
    }

    /// The inclusion proof of leaf `index` in the published tree of `tree_size` leaves.
    pub async fn inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<Vec<Hash>, ProofRequestError> {
        Ok(self.leaf_and_inclusion_proof(index, tree_size).await?.1)
    }

    /// The consistency proof between published tree sizes `first` and `second`.
    pub async fn consistency_proof(
        &self,
        first: u64,
        second: u64,
    ) -> Result<Vec<Hash>, ProofRequestError> {
        match &self.backend {
            Backend::Embedded { store, .. } => consistency_proof(store, first, second),
            Backend::Shared { log, tiles } => {
                if first > second {
                    return Err(ProofRequestError::OutOfRange(
                        "first must not exceed second",
                    ));
                }
                let a = shared_root_at(log, tiles, first).await?;
                let b = shared_root_at(log, tiles, second).await?;
                tiles
                    .consistency_proof(first, second, &a, &b)
                    .await
                    .map_err(read_failed)
            }
        }
    }

    /// The index of the published leaf with hash `leaf`.
    pub async fn leaf_index(&self, leaf: &Hash) -> Result<Option<u64>, StorageError> {
        let size = self.published().size;
        match &self.backend {
            Backend::Embedded { store, .. } => Ok(store.leaf_index(leaf)?.filter(|i| *i < size)),
            Backend::Shared { log, .. } => log.leaf_index(leaf).await,
        }
    }

    /// The checkpoint note signed for a tree of `size` leaves, if there is one.
    pub async fn checkpoint_at(&self, size: u64) -> Result<Option<String>, StorageError> {
        match &self.backend {
            Backend::Embedded { store, .. } => store.checkpoint(size),
            Backend::Shared { log, .. } => log.checkpoint(size).await,
        }
    }

    /// Creates a submitter and returns its token (shown once).
    pub async fn create_submitter(&self, name: &str) -> Result<SecretToken, StorageError> {
        match &self.backend {
            Backend::Embedded { store, .. } => submitters::create_submitter(store, name),
            Backend::Shared { log, .. } => log.create_submitter(name).await,
        }
    }

    /// Every submitter token, by name then fingerprint.
    pub async fn list_submitters(&self) -> Result<Vec<SubmitterInfo>, StorageError> {
        match &self.backend {
            Backend::Embedded { store, .. } => submitters::list_submitters(store),
            Backend::Shared { log, .. } => log.list_submitters().await,
        }
    }

    /// Revokes every token of the submitter `name`; the fingerprints revoked.
    pub async fn revoke_submitter(&self, name: &str) -> Result<Vec<String>, StorageError> {
        match &self.backend {
            Backend::Embedded { store, .. } => submitters::revoke_submitter(store, name),
            Backend::Shared { log, .. } => log.revoke_submitter(name).await,
        }
    }

    /// The submitter a token belongs to.
    pub async fn submitter_for(&self, token: &SecretToken) -> Result<Option<String>, StorageError> {
        match &self.backend {
            Backend::Embedded { store, .. } => submitters::submitter_for(store, token),
            Backend::Shared { log, .. } => log.submitter_for(token).await,
        }
    }

    /// Tile `t` of the published tree of `tree_size` leaves (`/tile/…`).
    pub async fn tile(&self, t: &TileRef, tree_size: u64) -> Result<TileRead, StorageError> {
        match &self.backend {
            Backend::Embedded { store, .. } => {
                let (store, t) = (store.clone(), *t);
                tokio::task::spawn_blocking(move || read_tile(&store, &t, tree_size))
                    .await
                    .map_err(|e| StorageError::Db(e.to_string()))?
            }
            Backend::Shared { tiles, .. } => {
                let Some(path) = t.path_at(tree_size) else {
                    return Ok(TileRead::NotFound);
                };
                match tiles.tile(&path).await {
                    Ok(Some(b)) => Ok(TileRead::Found(b.to_vec())),
                    Ok(None) => Ok(TileRead::NotFound),
                    Err(e) => Err(StorageError::Db(e.to_string())),
                }
            }
        }
    }

    /// The signer's public identity.
    pub fn signer(&self) -> &LogSigner {
        &self.signer
    }

    /// Metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The RP policy.
    pub fn policy(&self) -> &RpPolicy {
        &self.policy
    }

    /// The latest published checkpoint: its size, root and signed note, one snapshot.
    pub fn published(&self) -> Published {
        match &self.backend {
            Backend::Embedded { seq, .. } => seq.shared().published(),
            Backend::Shared { log, .. } => log.published(),
        }
    }

    /// Starts the witness client on the current tokio runtime (`spec/witnessing.md`). Once per
    /// log. On the shared driver every instance runs it; only the integrator sends checkpoints
    /// to the witnesses, and every instance serves what they cosigned
    /// (`spec/shared-driver.md`).
    pub async fn start_witnessing(
        &self,
        config: WitnessConfig,
    ) -> Result<Arc<Witnessing>, WitnessStartError> {
        if self.witnessing.get().is_some() {
            return Err(WitnessStartError::AlreadyStarted);
        }
        let ours = self.signer.verifier_key().to_vkey();
        let logs = config.policy.logs();
        if !logs.is_empty() && !logs.iter().any(|l| l.key.to_vkey() == ours) {
            tracing::warn!(
                vkey = %ours,
                "the witness policy names other logs but not this one: verifiers using it will \
                 refuse this log's checkpoints"
            );
        }
        // The client's own handle has no client, so that the client does not hold itself.
        let view = LogHandle {
            witnessing: Arc::default(),
            ..self.clone()
        };
        let w = Witnessing::start(config, Box::new(view)).await?;
        if self.witnessing.set(w.clone()).is_err() {
            w.stop().await;
            return Err(WitnessStartError::AlreadyStarted);
        }
        Ok(w)
    }

    /// The witness client, when started.
    pub fn witnessing(&self) -> Option<&Arc<Witnessing>> {
        self.witnessing.get()
    }

    /// The checkpoint readers get (`/checkpoint`, evidence): the published one, with the
    /// cosignatures gathered for it when witnessed; in quorum mode the latest checkpoint that
    /// met the quorum, `None` before the first.
    pub fn served_checkpoint(&self) -> Option<Published> {
        let published = self.published();
        match self.witnessing() {
            None => Some(published),
            Some(w) => w.served(published),
        }
    }

    /// [`LogHandle::served_checkpoint`], or the published checkpoint when none is served yet
    /// (quorum mode before the first quorum): what proofs for readers are made against.
    pub fn readers_checkpoint(&self) -> Published {
        self.served_checkpoint().unwrap_or_else(|| self.published())
    }

    /// In quorum mode, waits until a checkpoint that met the quorum covers `a` and returns `a`
    /// against it ([`AppendError::NotWitnessed`] after the quorum timeout; the entry is
    /// logged all the same). Otherwise returns `a` as it is.
    pub async fn await_witnessed(&self, a: Appended) -> Result<Appended, AppendError> {
        let Some(w) = self.quorum_gate() else {
            return Ok(a);
        };
        let c = w
            .wait_covered(a.index)
            .await
            .map_err(|e| AppendError::NotWitnessed { index: e.index })?;
        Ok(Appended {
            tree_size: c.checkpoint.size,
            checkpoint: c.checkpoint.note,
            ..a
        })
    }

    /// The witness client when it gates publication ([`Witnessing::gates`]).
    fn quorum_gate(&self) -> Option<&Arc<Witnessing>> {
        self.witnessing().filter(|w| w.gates())
    }

    /// Whether leaf `index` may be acted on: always, unless in quorum mode no checkpoint that
    /// met the quorum covers it yet. (The approval front end releases tokens only then.)
    pub fn quorum_covers(&self, index: u64) -> bool {
        self.quorum_gate().is_none_or(|w| {
            w.quorum_checkpoint()
                .is_some_and(|c| c.checkpoint.size > index)
        })
    }

    /// In quorum mode, how long appends and tokens wait for the quorum.
    pub fn quorum_timeout(&self) -> Option<std::time::Duration> {
        self.quorum_gate().map(|w| w.config().quorum_timeout)
    }

    /// Waits until [`LogHandle::quorum_covers`] holds for `index`, at most the quorum timeout
    /// ([`AppendError::NotWitnessed`] after it, with an alert).
    pub async fn await_quorum(&self, index: u64) -> Result<(), AppendError> {
        match self.quorum_gate() {
            None => Ok(()),
            Some(w) => w
                .wait_covered(index)
                .await
                .map(|_| ())
                .map_err(|e| AppendError::NotWitnessed { index: e.index }),
        }
    }

    /// Where the decision made with assertion `key` ([`assertion_key`]) is in the published
    /// tree: its leaf index and leaf hash. `None` when no published leaf holds it.
    pub async fn find_assertion(
        &self,
        key: &[u8; 32],
    ) -> Result<Option<(u64, Hash)>, StorageError> {
        let size = self.published().size;
        match &self.backend {
            Backend::Embedded { store, .. } => match store.assertion_index(key)? {
                Some(index) if index < size => {
                    let leaf = store.nodes(&[(0, index)])?;
                    Ok(leaf.first().map(|h| (index, *h)))
                }
                _ => Ok(None),
            },
            Backend::Shared { log, .. } => {
                let found = log
                    .prefetch(Wants {
                        assertions: vec![*key],
                        ..Wants::default()
                    })
                    .await?;
                let Some(index) = found.assertion_index(key)?.filter(|i| *i < size) else {
                    return Ok(None);
                };
                // The entry that logged it was read with it.
                let entry = found.entry(index)?.ok_or_else(|| {
                    StorageError::Missing("decision entry missing below the tree size".into())
                })?;
                Ok(Some((index, countersign_verifier::leaf_hash(&entry))))
            }
        }
    }

    /// The index of the decision made with assertion `key` if it is sequenced, published or
    /// not yet (on the shared driver, an entry sequenced while the bucket is unreachable is
    /// published once it returns; on the embedded store, sequenced entries are published).
    pub async fn assertion_sequenced(&self, key: &[u8; 32]) -> Result<Option<u64>, StorageError> {
        match &self.backend {
            Backend::Embedded { store, .. } => store.assertion_index(key),
            Backend::Shared { log, .. } => log
                .prefetch(Wants {
                    assertions: vec![*key],
                    ..Wants::default()
                })
                .await?
                .assertion_index(key),
        }
    }

    /// The enrolment of a credential in the published tree: its leaf index and the decoded
    /// entry. `None` when the credential is not enrolled (or not yet published).
    pub async fn enrolment_of(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<(u64, Enrolment)>, StorageError> {
        let size = self.published().size;
        let index = match &self.backend {
            Backend::Embedded { store, .. } => store.credential(credential_id)?.map(|(i, _)| i),
            Backend::Shared { log, .. } => log
                .prefetch(Wants {
                    credentials: vec![credential_id.to_vec()],
                    ..Wants::default()
                })
                .await?
                .credential(credential_id)?
                .map(|(i, _)| i),
        };
        let Some(index) = index.filter(|i| *i < size) else {
            return Ok(None);
        };
        let entry = self.entry(index).await?.ok_or_else(|| {
            StorageError::Missing("enrolment entry missing below the tree size".into())
        })?;
        match Entry::decode(&entry) {
            Ok(Entry::Enrolment(e)) => Ok(Some((index, e))),
            _ => Err(StorageError::Corrupt(format!(
                "the credential's entry {index} is not an enrolment"
            ))),
        }
    }

    /// The leaf index of the revocation of the enrolment at `enrolment_index`, if the published
    /// tree holds one (the first, when an import logged several). One key lookup.
    pub async fn revocation_of(&self, enrolment_index: u64) -> Result<Option<u64>, StorageError> {
        let size = self.published().size;
        let found = match &self.backend {
            Backend::Embedded { store, .. } => store.revocation(enrolment_index)?,
            Backend::Shared { log, .. } => log
                .prefetch(Wants {
                    revocations: vec![enrolment_index],
                    ..Wants::default()
                })
                .await?
                .revocation(enrolment_index)?,
        };
        Ok(found.filter(|index| *index < size))
    }

    /// The entries at `indexes` with inclusion proofs against one published checkpoint (the
    /// latest), so that every proof checks against the same signed root.
    /// The checkpoint is, when the log is witnessed, the latest one whose cosignatures meet the
    /// witness quorum if it covers every index (evidence then verifies under the policy, even
    /// while the newest checkpoint still awaits its cosignatures); otherwise the one readers are
    /// served ([`LogHandle::readers_checkpoint`]).
    pub async fn prove_entries(&self, indexes: &[u64]) -> Result<ProvedEntries, ProofRequestError> {
        let last = indexes.iter().copied().max().unwrap_or(0);
        let checkpoint = self
            .witnessing()
            .and_then(|w| w.quorum_checkpoint())
            .map(|c| c.checkpoint)
            .filter(|c| c.size > last)
            .unwrap_or_else(|| self.readers_checkpoint());
        if indexes.iter().any(|i| *i >= checkpoint.size) {
            return Err(ProofRequestError::OutOfRange(
                "the entry is beyond the published tree",
            ));
        }
        let mut entries = Vec::with_capacity(indexes.len());
        match &self.backend {
            // Read and hashed where called (ready at the first poll): a caller proving many
            // entries runs this on a thread that may block.
            Backend::Embedded { store, .. } => {
                for &index in indexes {
                    let entry = store.entry(index)?.ok_or_else(|| {
                        StorageError::Missing("entry missing below the tree size".into())
                    })?;
                    let proof = inclusion_proof(store, index, checkpoint.size)?;
                    entries.push(ProvedEntry {
                        index,
                        entry,
                        proof,
                    });
                }
            }
            Backend::Shared { log, tiles } => {
                let root = shared_root_at(log, tiles, checkpoint.size).await?;
                for &index in indexes {
                    let entry = log.entry(index).await?.ok_or_else(|| {
                        StorageError::Missing("entry missing below the tree size".into())
                    })?;
                    let (leaf, proof) = tiles
                        .inclusion_proof(index, checkpoint.size, &root)
                        .await
                        .map_err(read_failed)?;
                    if leaf != countersign_verifier::leaf_hash(&entry) {
                        return Err(ProofRequestError::Storage(StorageError::Corrupt(format!(
                            "entry {index} in the database does not match the bucket's leaf"
                        ))));
                    }
                    entries.push(ProvedEntry {
                        index,
                        entry,
                        proof,
                    });
                }
            }
        }
        Ok(ProvedEntries {
            checkpoint,
            entries,
        })
    }

    /// Logs an enrolment. The same credential enrolled identically again returns the original
    /// leaf; the same credential id with another approver, key, AAGUID or format is a 409.
    pub async fn append_enrolment(&self, req: EnrolmentRequest) -> Result<Appended, AppendError> {
        parse_cose_key(&req.public_key).map_err(|e| {
            AppendError::refused(RefusalReason::InvalidPublicKey, format!("public_key: {e}"))
        })?;
        let entry = Entry::Enrolment(Enrolment {
            approver_id: req.approver_id,
            credential_id: req.credential_id.clone(),
            public_key: req.public_key,
            aaguid: req.aaguid,
            attestation_format: req.attestation_format,
            attestation: req.attestation,
            time_ms: now_ms(),
        })
        .encode()
        .map_err(|e| AppendError::refused(RefusalReason::InvalidEntry, e.to_string()))?;
        let leaf = leaf_hash(&entry);
        self.append(
            entry,
            leaf,
            AppendKind::Enrolment {
                credential_id: req.credential_id,
            },
        )
        .await
    }

    /// Logs a revocation of the enrolment at `req.enrolment_index`, after which the log refuses
    /// every decision made with that enrolment ([`RefusalReason::Revoked`]). The index must be a
    /// published enrolment ([`RefusalReason::UnknownEnrolment`], [`RefusalReason::NotAnEnrolment`])
    /// of this approver and credential ([`RefusalReason::EnrolmentMismatch`]), not revoked yet
    /// ([`RefusalReason::AlreadyRevoked`], decided by the sequencer, so two concurrent
    /// revocations log one entry), and the reason a label ([`RefusalReason::InvalidEntry`]).
    pub async fn append_revocation(&self, req: RevocationRequest) -> Result<Appended, AppendError> {
        if req.enrolment_index >= self.published().size {
            return Err(AppendError::refused(
                RefusalReason::UnknownEnrolment,
                "enrolment_index is not in the log",
            ));
        }
        let reads = self
            .reads_for(|| Wants {
                entries: vec![req.enrolment_index],
                revocations: vec![req.enrolment_index],
                ..Wants::default()
            })
            .await?;
        let mut read = Enrolments::default();
        let (enrolment, _) = read.get(&reads, req.enrolment_index)?;
        if enrolment.approver_id != req.approver_id || enrolment.credential_id != req.credential_id
        {
            return Err(AppendError::refused(
                RefusalReason::EnrolmentMismatch,
                "the enrolment at enrolment_index is for another approver or credential",
            ));
        }
        // Checked here too, not only by the sequencer: a second request in the same millisecond
        // would otherwise make the very same bytes and get the first entry back as a duplicate.
        if let Some(first) = reads
            .revocation(req.enrolment_index)
            .map_err(storage_failed)?
        {
            return Err(AppendError::refused(
                RefusalReason::AlreadyRevoked,
                format!("the enrolment was already revoked by entry {first}"),
            ));
        }
        let entry = Entry::Revocation(Revocation {
            approver_id: req.approver_id,
            credential_id: req.credential_id,
            enrolment_index: req.enrolment_index,
            reason: req.reason,
            time_ms: now_ms(),
        })
        .encode()
        .map_err(|e| AppendError::refused(RefusalReason::InvalidEntry, e.to_string()))?;
        let leaf = leaf_hash(&entry);
        self.append(
            entry,
            leaf,
            AppendKind::Revocation {
                enrolment_index: req.enrolment_index,
                refuse_repeat: true,
            },
        )
        .await
    }

    /// Logs a policy entry: `policy` took effect (`spec/entry.md`, kind 4). The entry holds the
    /// policy's canonical form, so the same policy logged again in the same millisecond is the
    /// same entry; at any other time it is a new one (a policy can take effect more than once).
    pub async fn append_policy(
        &self,
        policy: &countersign_verifier::ValidatedPolicy,
    ) -> Result<Appended, AppendError> {
        let entry = Entry::Policy(countersign_verifier::PolicyEntry::of(policy, now_ms()))
            .encode()
            .map_err(|e| AppendError::refused(RefusalReason::InvalidEntry, e.to_string()))?;
        let leaf = leaf_hash(&entry);
        self.append(entry, leaf, AppendKind::Other).await
    }

    /// Checks and logs a signed decision: the enrolment must be in this log for the same approver
    /// and credential, and the assertion must verify over `nonce || statement_hash` under the
    /// log's RP policy and the sign-count rule. A replay of a logged assertion returns the
    /// original leaf.
    pub async fn append_decision(&self, req: DecisionRequest) -> Result<Appended, AppendError> {
        let reads = self.reads_for(|| Wants::of_decisions([&req])).await?;
        match self.check_decision(req, &mut Enrolments::default(), &reads)? {
            Checked::Logged(a) => Ok(a),
            Checked::New(entry, leaf, kind) => self.append(entry, leaf, kind).await,
        }
    }

    /// [`LogHandle::append_decision`] for many decisions at once (`POST
    /// /v1/log/decisions/batch`): each is checked and decided on its own, one result per
    /// decision, in order; the checked ones go to the sequencer together and the caller waits
    /// once. A decision that fails a check gets its error and nothing is written for it; the
    /// others are not affected. One the caller already refused (`Err`, say it did not parse)
    /// keeps its place and its error.
    pub async fn append_decisions(
        &self,
        reqs: Vec<Result<DecisionRequest, AppendError>>,
    ) -> Vec<Result<Appended, AppendError>> {
        // The checks are CPU work (a signature each): they run on the blocking pool, so a large
        // batch does not hold up the other requests of its runtime worker, split into one part
        // per core. Decisions of one part often share an enrolment: it is read and its key
        // parsed once per part.
        let reads = match self
            .reads_for(|| Wants::of_decisions(reqs.iter().filter_map(|r| r.as_ref().ok())))
            .await
        {
            Ok(r) => r,
            Err(e) => return reqs.iter().map(|_| Err(e.clone())).collect(),
        };
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let part = reqs.len().div_ceil(cores).max(MIN_CHECK_PART);
        let mut parts = Vec::new();
        let mut reqs = reqs.into_iter().peekable();
        while reqs.peek().is_some() {
            let chunk: Vec<_> = reqs.by_ref().take(part).collect();
            let log = self.clone();
            let reads = reads.clone();
            let n = chunk.len();
            let task = tokio::task::spawn_blocking(move || {
                let mut enrolments = Enrolments::default();
                chunk
                    .into_iter()
                    .map(|r| r.and_then(|r| log.check_decision(r, &mut enrolments, &reads)))
                    .collect::<Vec<_>>()
            });
            parts.push((n, task));
        }
        let mut checked = Vec::new();
        for (n, task) in parts {
            match task.await {
                Ok(c) => checked.extend(c),
                Err(e) => {
                    tracing::error!(error = %e, "a decision check task failed");
                    checked.extend((0..n).map(|_| Err(AppendError::Storage)));
                }
            }
        }
        self.append_checked(checked).await
    }

    /// Hands the new entries among `checked` to the sequencer together and answers one result
    /// per item, in order.
    async fn append_checked(
        &self,
        checked: Vec<Result<Checked, AppendError>>,
    ) -> Vec<Result<Appended, AppendError>> {
        let mut out = Vec::with_capacity(checked.len());
        let mut items = Vec::new();
        for c in checked {
            out.push(match c {
                Ok(Checked::New(entry, leaf, kind)) => {
                    items.push((entry, leaf, kind));
                    None
                }
                Ok(Checked::Logged(a)) => Some(Ok(a)),
                Err(e) => Some(Err(e)),
            });
        }
        let mut appended = self.append_many(items).await.into_iter();
        out.into_iter()
            .map(|r| {
                r.or_else(|| appended.next())
                    .unwrap_or(Err(AppendError::ShuttingDown))
            })
            .collect()
    }

    /// Everything [`LogHandle::append_decision`] checks before the sequencer: the enrolment,
    /// the assertion, the replay index and the sign count. Reads only.
    fn check_decision(
        &self,
        req: DecisionRequest,
        enrolments: &mut Enrolments,
        reads: &Reads,
    ) -> Result<Checked, AppendError> {
        let published = self.published();
        if req.enrolment_index >= published.size {
            return Err(AppendError::refused(
                RefusalReason::UnknownEnrolment,
                "enrolment_index is not in the log",
            ));
        }
        let (enrolment, key) = enrolments.get(reads, req.enrolment_index)?;
        if enrolment.approver_id != req.approver_id || enrolment.credential_id != req.credential_id
        {
            return Err(AppendError::refused(
                RefusalReason::EnrolmentMismatch,
                "the enrolment at enrolment_index is for another approver or credential",
            ));
        }
        let Some((_, stored_count)) = reads
            .credential(&req.credential_id)
            .map_err(storage_failed)?
        else {
            return Err(AppendError::refused(
                RefusalReason::UnknownCredential,
                "the credential is not enrolled in this log",
            ));
        };
        let origins: Vec<&str> = self
            .policy
            .allowed_origins
            .iter()
            .map(String::as_str)
            .collect();
        let ch = challenge(&req.nonce, &req.statement_hash);
        let assertion = Assertion {
            authenticator_data: &req.authenticator_data,
            client_data_json: &req.client_data_json,
            signature: &req.signature,
        };
        // The sign count is checked below, after the replay lookup: a replay legitimately
        // carries an old counter and must get the original entry back, not an error.
        let verified = verify_assertion(
            key,
            &assertion,
            &ch,
            &AssertionPolicy {
                rp_id: &self.policy.rp_id,
                allowed_origins: &origins,
                require_user_verification: self.policy.require_user_verification,
                stored_sign_count: None,
            },
        )
        .map_err(|e| AppendError::refused(RefusalReason::InvalidAssertion, e.to_string()))?;
        let akey = assertion_key(&req.credential_id, &req.client_data_json);
        let logged = reads.assertion_index(&akey).map_err(storage_failed)?;
        // Covered by the published checkpoint (embedded: assertion index entries are only
        // visible after their batch committed; shared: one sequenced but not yet published is
        // left to the sequencer, which answers once it is).
        if let Some(index) = logged.filter(|i| *i < published.size) {
            let original = reads
                .entry(index)
                .map_err(storage_failed)?
                .ok_or(AppendError::Storage)?;
            self.metrics.deduplicated.inc();
            return Ok(Checked::Logged(Appended {
                index,
                leaf_hash: leaf_hash(&original),
                tree_size: published.size,
                checkpoint: published.note,
                existing: true,
            }));
        }
        // After the replay lookup: a decision logged before the revocation is still answered
        // with its original entry.
        if let Some(r) = reads
            .revocation(req.enrolment_index)
            .map_err(storage_failed)?
        {
            return Err(AppendError::refused(
                RefusalReason::Revoked,
                format!("the credential's enrolment was revoked by entry {r}"),
            ));
        }
        let count = verified.sign_count;
        check_sign_count(stored_count, count)
            .map_err(|e| AppendError::refused(RefusalReason::SignCount, e.to_string()))?;
        let time_ms = now_ms();
        if let Some(deadline) = req.not_after_ms.filter(|d| time_ms > *d) {
            return Err(AppendError::refused(
                RefusalReason::TooLate,
                format!("the entry would be dated {time_ms} ms, after its deadline {deadline} ms"),
            ));
        }
        let entry = Entry::Decision(SignedDecision {
            decision: req.decision,
            statement_hash: req.statement_hash,
            nonce: req.nonce,
            approver_id: req.approver_id,
            credential_id: req.credential_id.clone(),
            public_key: enrolment.public_key.clone(),
            authenticator_data: req.authenticator_data,
            client_data_json: req.client_data_json,
            signature: req.signature,
            time_ms,
            enrolment_index: req.enrolment_index,
        })
        .encode()
        .map_err(|e| AppendError::refused(RefusalReason::InvalidEntry, e.to_string()))?;
        let leaf = leaf_hash(&entry);
        Ok(Checked::New(
            entry,
            leaf,
            AppendKind::Decision {
                assertion_key: akey,
                credential_id: req.credential_id,
                enrolment_index: req.enrolment_index,
                sign_count: count,
            },
        ))
    }

    /// Appends an entry the caller has already checked (benchmarks, imports). Enrolments and
    /// decisions still get the sequencer's conflict, replay and sign-count checks.
    pub async fn append_verified_entry(&self, entry: Vec<u8>) -> Result<Appended, AppendError> {
        let (entry, leaf, kind) = verified_item(entry)?;
        self.append(entry, leaf, kind).await
    }

    /// [`LogHandle::append_verified_entry`] for many entries at once (imports, and the
    /// in-process benchmark, which hands the log the same 256-entry groups the raw RocksDB
    /// ceiling writes): one result per entry, in order, each decided on its own.
    pub async fn append_verified_entries(
        &self,
        entries: Vec<Vec<u8>>,
    ) -> Vec<Result<Appended, AppendError>> {
        let checked = entries
            .into_iter()
            .map(|e| verified_item(e).map(|(entry, leaf, kind)| Checked::New(entry, leaf, kind)))
            .collect();
        self.append_checked(checked).await
    }
}

impl LogHandle {
    /// What the checks of a group of requests read: the store itself, or (shared driver) all
    /// of it read from the database in a few queries (`wants` is only called then: the
    /// embedded log's checks read as they go, and need no list).
    async fn reads_for(&self, wants: impl FnOnce() -> Wants) -> Result<Reads, AppendError> {
        match &self.backend {
            Backend::Embedded { store, .. } => Ok(Reads::Store(store.clone())),
            Backend::Shared { log, .. } => log
                .prefetch(wants())
                .await
                .map(|p| Reads::Prefetched(Arc::new(p)))
                .map_err(storage_failed),
        }
    }
}

/// The log's reads that the checks make before the sequencer.
#[derive(Clone)]
pub(crate) enum Reads {
    Store(Store),
    Prefetched(Arc<Prefetched>),
}

impl Reads {
    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        match self {
            Reads::Store(s) => s.entry(index),
            Reads::Prefetched(p) => p.entry(index),
        }
    }
    fn credential(&self, id: &[u8]) -> Result<Option<(u64, u32)>, StorageError> {
        match self {
            Reads::Store(s) => s.credential(id),
            Reads::Prefetched(p) => p.credential(id),
        }
    }
    fn assertion_index(&self, key: &[u8; 32]) -> Result<Option<u64>, StorageError> {
        match self {
            Reads::Store(s) => s.assertion_index(key),
            Reads::Prefetched(p) => p.assertion_index(key),
        }
    }
    fn revocation(&self, enrolment_index: u64) -> Result<Option<u64>, StorageError> {
        match self {
            Reads::Store(s) => s.revocation(enrolment_index),
            Reads::Prefetched(p) => p.revocation(enrolment_index),
        }
    }
}

impl Wants {
    /// What checking `reqs` reads.
    fn of_decisions<'a>(reqs: impl IntoIterator<Item = &'a DecisionRequest>) -> Wants {
        let mut w = Wants::default();
        for r in reqs {
            w.entries.push(r.enrolment_index);
            w.revocations.push(r.enrolment_index);
            w.credentials.push(r.credential_id.clone());
            w.assertions
                .push(assertion_key(&r.credential_id, &r.client_data_json));
        }
        w
    }
}

/// Fewer decisions than this are checked in one task: below it, handing work to another thread
/// costs more than it saves.
const MIN_CHECK_PART: usize = 16;

/// Enrolments read while checking decisions, with their parsed keys. Logged entries never
/// change, so what is read once holds for the whole batch.
#[derive(Default)]
struct Enrolments(Vec<(u64, Enrolment, PublicKey)>);

impl Enrolments {
    fn get(&mut self, store: &Reads, index: u64) -> Result<(&Enrolment, &PublicKey), AppendError> {
        let at = match self.0.iter().position(|(i, _, _)| *i == index) {
            Some(at) => at,
            None => {
                let enrolment = match store.entry(index).map_err(storage_failed)? {
                    Some(bytes) => match Entry::decode(&bytes) {
                        Ok(Entry::Enrolment(e)) => e,
                        _ => {
                            return Err(AppendError::refused(
                                RefusalReason::NotAnEnrolment,
                                "the entry at enrolment_index is not an enrolment",
                            ))
                        }
                    },
                    None => return Err(AppendError::Storage),
                };
                let key = enrolment.key().map_err(|e| {
                    AppendError::refused(RefusalReason::InvalidPublicKey, e.to_string())
                })?;
                self.0.push((index, enrolment, key));
                self.0.len() - 1
            }
        };
        let (_, e, k) = &self.0[at];
        Ok((e, k))
    }
}

/// A decision that passed its checks: already in the log (a replay), or a new entry for the
/// sequencer.
enum Checked {
    Logged(Appended),
    New(Vec<u8>, Hash, AppendKind),
}

/// What the sequencer needs of an already-checked entry: its kind (for dedup, replays and sign
/// counts) and its leaf hash.
fn verified_item(entry: Vec<u8>) -> Result<(Vec<u8>, Hash, AppendKind), AppendError> {
    let kind = append_kind_of(&entry)?;
    let leaf = leaf_hash(&entry);
    Ok((entry, leaf, kind))
}

/// The sequencer's checks for an entry that is already checked (an import, moving a log): an
/// enrolment's credential, a decision's assertion, credential and sign count, a revocation's
/// enrolment (a repeated revocation is logged, as in the log it comes from).
pub fn append_kind_of(entry: &[u8]) -> Result<AppendKind, AppendError> {
    Ok(match Entry::decode(entry) {
        Ok(Entry::Enrolment(e)) => AppendKind::Enrolment {
            credential_id: e.credential_id,
        },
        Ok(Entry::Decision(d)) => {
            let mut c = [0u8; 4];
            c.copy_from_slice(&d.authenticator_data[33..37]);
            AppendKind::Decision {
                assertion_key: assertion_key(&d.credential_id, &d.client_data_json),
                credential_id: d.credential_id,
                enrolment_index: d.enrolment_index,
                sign_count: u32::from_be_bytes(c),
            }
        }
        Ok(Entry::Revocation(r)) => AppendKind::Revocation {
            enrolment_index: r.enrolment_index,
            refuse_repeat: false,
        },
        Ok(Entry::Policy(_)) => AppendKind::Other,
        Err(e) => {
            return Err(AppendError::refused(
                RefusalReason::InvalidEntry,
                e.to_string(),
            ))
        }
    })
}

impl LogView for LogHandle {
    fn published(&self) -> Published {
        LogHandle::published(self)
    }

    fn changes(&self) -> Changes {
        match &self.backend {
            Backend::Embedded { seq, .. } => Changes::Embedded(seq.shared().subscribe()),
            Backend::Shared { log, .. } => Changes::Shared(log.subscribe()),
        }
    }

    fn consistency_proof(
        &self,
        old: u64,
        new: u64,
    ) -> futures_util::future::BoxFuture<'_, Result<Vec<Hash>, ProofRequestError>> {
        Box::pin(LogHandle::consistency_proof(self, old, new))
    }

    fn checkpoint_at(
        &self,
        size: u64,
    ) -> futures_util::future::BoxFuture<'_, Result<Option<String>, StorageError>> {
        Box::pin(LogHandle::checkpoint_at(self, size))
    }

    fn store(&self) -> Option<&Store> {
        LogHandle::store(self)
    }

    fn shared_log(&self) -> Option<&SharedLog> {
        LogHandle::shared_log(self)
    }
}
