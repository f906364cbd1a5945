//! The witness state machine, with no HTTP types: check a submitted checkpoint against the
//! log's keys and the stored state of its log, persist it, cosign it
//! (c2sp.org/tlog-witness, "add-checkpoint").

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use countersign_verifier::{
    empty_root, verify_consistency, Checkpoint, Hash, Note, NoteError, Policy, ProofError,
    VerifierKey,
};

use crate::key::WitnessKey;
use crate::request;
use crate::store::Store;

/// Why an `add-checkpoint` request was refused. The HTTP layer maps each to its status.
#[derive(Debug)]
#[non_exhaustive]
pub enum AddError {
    /// The body, the note or the checkpoint is malformed; the text says how.
    Malformed(&'static str),
    /// The checkpoint's origin is not a log this witness witnesses.
    UnknownLog {
        /// The origin line.
        origin: String,
    },
    /// No signature verifies against the log's keys, or one by a log key is invalid.
    BadSignature(NoteError),
    /// The old size is larger than the checkpoint's size.
    OldSizeAfterSize,
    /// The old size is not the size of the witness's latest cosigned checkpoint.
    StaleOldSize {
        /// The size the witness last cosigned (0 if never).
        size: u64,
    },
    /// The checkpoint has the witness's latest size but another root hash: a fork.
    RootMismatch {
        /// The size the witness last cosigned.
        size: u64,
    },
    /// The consistency proof does not prove the checkpoint extends the latest cosigned one.
    Inconsistent(ProofError),
    /// The state could not be stored; nothing was cosigned. The log's state is held back until
    /// the witness restarts, since the disk may hold either the old or the new note.
    Storage(String),
}

impl fmt::Display for AddError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddError::Malformed(why) => write!(f, "malformed request: {why}"),
            AddError::UnknownLog { origin } => {
                write!(f, "this witness does not witness the log {origin:?}")
            }
            AddError::BadSignature(e) => write!(f, "checkpoint not signed by the log: {e}"),
            AddError::OldSizeAfterSize => {
                f.write_str("the old size is larger than the checkpoint's size")
            }
            AddError::StaleOldSize { size } => write!(
                f,
                "the old size does not match the latest cosigned size {size}"
            ),
            AddError::RootMismatch { size } => write!(
                f,
                "the checkpoint has the latest cosigned size {size} but a different root hash"
            ),
            AddError::Inconsistent(e) => write!(
                f,
                "the consistency proof from the latest cosigned checkpoint does not verify: {e}"
            ),
            AddError::Storage(_) => f.write_str("the witness could not store its state"),
        }
    }
}

impl std::error::Error for AddError {}

/// Why the witness could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// The data directory or a state file cannot be read or created.
    Io(std::io::Error),
    /// A state file does not hold a checkpoint note of its log: refusing to start rather than
    /// forget the log's state (which would let it cosign a fork).
    CorruptState {
        /// The log's origin.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// The policy names no log.
    NoLogs,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Io(e) => write!(f, "witness state directory: {e}"),
            OpenError::CorruptState { origin, reason } => {
                write!(
                    f,
                    "the stored state of log {origin:?} is unreadable: {reason}"
                )
            }
            OpenError::NoLogs => f.write_str("the logs file has no `log <vkey>` line"),
        }
    }
}

impl std::error::Error for OpenError {}

/// What the witness last cosigned for one log.
#[derive(Clone, Debug)]
struct LogState {
    size: u64,
    root: Hash,
    /// The stored note: checkpoint, the log's verified signatures, the cosignature.
    note: Option<String>,
    /// The timestamp of the latest cosignature: later ones never go below it, so no later
    /// statement "as of time t the largest tree is ..." predates an earlier one.
    timestamp: u64,
    /// Set when a write failed: refuse until a restart re-reads the disk.
    broken: bool,
}

struct LogSlot {
    keys: Vec<VerifierKey>,
    /// One request per log at a time: checking the old size and storing the new state happen
    /// under this lock, so two requests from one old size never both succeed.
    state: Mutex<LogState>,
}

/// A witness: its key, the logs it witnesses and their durable state.
pub struct Witness {
    key: WitnessKey,
    logs: HashMap<String, LogSlot>,
    store: Store,
}

impl fmt::Debug for Witness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Witness")
            .field("key", &self.key)
            .field("logs", &self.logs.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The current time in seconds since the Unix epoch (0 if the clock is before it).
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Witness {
    /// Opens the witness for the `log` lines of `policy` (other lines are ignored), reading each
    /// log's state from `data_dir`. Several `log` lines may share an origin (key rotation): a
    /// checkpoint is then accepted if any of their keys signed it.
    pub fn open(key: WitnessKey, policy: &Policy, data_dir: &Path) -> Result<Witness, OpenError> {
        let store = Store::open(data_dir).map_err(OpenError::Io)?;
        let mut keys: HashMap<String, Vec<VerifierKey>> = HashMap::new();
        for l in policy.logs() {
            keys.entry(l.key.name().to_owned())
                .or_default()
                .push(l.key.clone());
        }
        if keys.is_empty() {
            return Err(OpenError::NoLogs);
        }
        let mut logs = HashMap::with_capacity(keys.len());
        for (origin, keys) in keys {
            let state = Self::load(&store, &key, &origin)?;
            logs.insert(
                origin,
                LogSlot {
                    keys,
                    state: Mutex::new(state),
                },
            );
        }
        Ok(Witness { key, logs, store })
    }

    fn load(store: &Store, key: &WitnessKey, origin: &str) -> Result<LogState, OpenError> {
        let corrupt = |reason: String| OpenError::CorruptState {
            origin: origin.to_owned(),
            reason,
        };
        let Some(bytes) = store.load(origin).map_err(OpenError::Io)? else {
            return Ok(LogState {
                size: 0,
                root: empty_root(),
                note: None,
                timestamp: 0,
                broken: false,
            });
        };
        let note = Note::parse(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let c = Checkpoint::parse(note.text()).map_err(|e| corrupt(e.to_string()))?;
        if c.origin != origin {
            return Err(corrupt(format!("it holds a checkpoint of {:?}", c.origin)));
        }
        let ours = key.verifier();
        let timestamp = note
            .signatures()
            .iter()
            .filter(|s| s.name == ours.name() && s.key_id == ours.id())
            .filter_map(|s| s.signature.get(..8))
            .filter_map(|t| t.try_into().ok().map(u64::from_be_bytes))
            .max()
            .unwrap_or(0);
        Ok(LogState {
            size: c.size,
            root: c.root,
            note: Some(note.to_text()),
            timestamp,
            broken: false,
        })
    }

    /// The witness's verifier key.
    pub fn verifier(&self) -> &VerifierKey {
        self.key.verifier()
    }

    /// The origins of the logs witnessed.
    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.logs.keys().map(String::as_str)
    }

    /// The latest checkpoint cosigned for `origin`, as a signed note carrying the log's
    /// signatures and the witness's cosignature; `None` if the log is unknown or was never
    /// cosigned.
    pub fn latest(&self, origin: &str) -> Option<String> {
        let slot = self.logs.get(origin)?;
        let state = slot.state.lock().ok()?;
        state.note.clone()
    }

    /// Handles one `add-checkpoint` body (c2sp.org/tlog-witness): on success returns the
    /// cosignature line(s) to send back, after the new state is durably stored. Blocks on disk
    /// I/O; call it off the async executor.
    pub fn add_checkpoint(&self, body: &[u8]) -> Result<String, AddError> {
        let req = request::parse(body).map_err(AddError::Malformed)?;
        let note = Note::parse(req.note).map_err(|e| match e {
            NoteError::Malformed(why) => AddError::Malformed(why),
            NoteError::TooLarge => AddError::Malformed("the checkpoint note is too large"),
            NoteError::TooManySignatures => {
                AddError::Malformed("the checkpoint note has too many signatures")
            }
            _ => AddError::Malformed("the checkpoint note is malformed"),
        })?;
        let origin = note.text().split('\n').next().unwrap_or_default();
        let slot = self.logs.get(origin).ok_or_else(|| AddError::UnknownLog {
            origin: origin.to_owned(),
        })?;
        let verified = note.verify(&slot.keys).map_err(AddError::BadSignature)?;
        let c = Checkpoint::parse(note.text()).map_err(|e| match e {
            countersign_verifier::CheckpointError::Malformed(why) => AddError::Malformed(why),
            _ => AddError::Malformed("the checkpoint body is malformed"),
        })?;
        if req.old_size > c.size {
            return Err(AddError::OldSizeAfterSize);
        }
        // Only what verified is kept and republished: other signatures are the client's word.
        let mut stored = Note::new(note.text()).map_err(|_| AddError::Malformed("bad text"))?;
        for s in note.signatures() {
            if verified
                .iter()
                .any(|v| v.key.name() == s.name && v.key.id() == s.key_id)
            {
                stored
                    .push_signature(s.clone())
                    .map_err(|_| AddError::Malformed("bad signature line"))?;
            }
        }

        let mut state = slot
            .state
            .lock()
            .map_err(|_| AddError::Storage("state lock poisoned".into()))?;
        if state.broken {
            return Err(AddError::Storage("an earlier write failed".into()));
        }
        if req.old_size != state.size {
            return Err(AddError::StaleOldSize { size: state.size });
        }
        if c.size == state.size {
            if c.root != state.root {
                tracing::warn!(origin, size = c.size, note = %note.to_text(),
                    "fork: a validly signed checkpoint with another root at the cosigned size");
                return Err(AddError::RootMismatch { size: state.size });
            }
        } else if let Err(e) =
            verify_consistency(state.size, c.size, &state.root, &c.root, &req.proof)
        {
            // Evidence of misbehaviour if the proof is honest; kept in the log (tlog-witness).
            tracing::warn!(origin, old = state.size, size = c.size, error = %e,
                note = %note.to_text(), "inconsistent checkpoint refused");
            return Err(AddError::Inconsistent(e));
        }
        let timestamp = now().max(state.timestamp).min(i64::MAX as u64);
        let line = self.key.cosign(timestamp, note.text());
        stored
            .push_signature(line.clone())
            .map_err(|_| AddError::Malformed("the checkpoint note has too many signatures"))?;
        let text = stored.to_text();
        if let Err(e) = self.store.save(origin, text.as_bytes()) {
            state.broken = true;
            tracing::error!(origin, error = %e, "storing the witness state failed");
            return Err(AddError::Storage(e.to_string()));
        }
        *state = LogState {
            size: c.size,
            root: c.root,
            note: Some(text),
            timestamp,
            broken: false,
        };
        Ok(line.to_line())
    }
}
