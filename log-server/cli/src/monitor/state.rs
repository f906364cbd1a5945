//! The monitor's durable state (spec/monitor.md, "State"): `state.json`, replaced atomically
//! after each step, and `enrolments.jsonl`, an append-only journal of the enrolment table whose
//! committed length `state.json` records. A crash between the two leaves a journal tail that
//! the next start cuts off, so the table always matches the entries read.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use countersign_verifier::{Hash, RootStack};
use serde::{Deserialize, Serialize};

use super::alert::Alert;

/// The format of `state.json`.
const STATE_VERSION: u32 = 1;

/// `state.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    /// The format version, 1.
    pub version: u32,
    /// The last checkpoint verified (signed note, as served).
    pub checkpoint: Option<String>,
    /// Entries `[0, entries_read)` have been read and checked.
    pub entries_read: u64,
    /// The RFC 6962 compact range of those entries (hex, largest subtree first): with it, each
    /// new bundle is proved against the next checkpoint without reading old entries again.
    pub peaks: Vec<String>,
    /// The committed length of `enrolments.jsonl`, in bytes.
    pub journal_bytes: u64,
    /// The committed length of `alerts.jsonl`, in bytes.
    pub alerts_bytes: u64,
    /// Alerts committed but not yet written to standard error and `alerts.jsonl`.
    pub pending: Vec<Alert>,
    /// Alerts not yet accepted by the webhook.
    pub webhook_pending: Vec<Alert>,
}

/// An enrolment the table holds, by its log index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolled {
    /// Its approver.
    pub approver_id: String,
    /// Its credential id (base64url).
    pub credential_id: String,
    /// Its COSE public key (base64url).
    pub public_key: String,
    /// The index of the first revocation of it, if any.
    pub revoked_at: Option<u64>,
}

/// A line of `enrolments.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum JournalLine {
    /// The enrolment at `index`.
    Enrolled {
        /// Its log index.
        index: u64,
        /// What the table keeps of it.
        #[serde(flatten)]
        enrolment: Enrolled,
    },
    /// The enrolment at `enrolment_index` revoked by the entry at `index`.
    Revoked {
        /// The enrolment's log index.
        enrolment_index: u64,
        /// The revocation's log index.
        index: u64,
    },
}

/// The state directory, loaded.
pub struct State {
    dir: PathBuf,
    /// `.lock`, held exclusively while the state is open: two monitors on one directory would
    /// overwrite each other's cursor and journals.
    _lock: fs::File,
    /// What `state.json` holds.
    pub cursor: Cursor,
    /// The enrolment table, by enrolment index: the only state that grows with the log.
    pub enrolments: HashMap<u64, Enrolled>,
}

impl State {
    /// Opens (creating) the state directory `dir` and loads it, cutting any uncommitted journal
    /// tail.
    pub fn open(dir: &Path) -> anyhow::Result<State> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"))
            .with_context(|| format!("opening {}/.lock", dir.display()))?;
        if !fs4::fs_std::FileExt::try_lock_exclusive(&lock)
            .with_context(|| format!("locking {}/.lock", dir.display()))?
        {
            bail!(
                "{} is in use by another monitor (one monitor per state directory)",
                dir.display()
            );
        }
        let path = dir.join("state.json");
        let cursor = match fs::read(&path) {
            Ok(b) => {
                let c: Cursor = serde_json::from_slice(&b)
                    .with_context(|| format!("{} is not a monitor state", path.display()))?;
                if c.version != STATE_VERSION {
                    bail!(
                        "{} has version {}, not {STATE_VERSION}",
                        path.display(),
                        c.version
                    );
                }
                c
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Cursor {
                version: STATE_VERSION,
                ..Cursor::default()
            },
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let journal = dir.join("enrolments.jsonl");
        let mut enrolments = HashMap::new();
        match fs::OpenOptions::new().read(true).write(true).open(&journal) {
            Ok(f) => {
                let len = f.metadata()?.len();
                if len < cursor.journal_bytes {
                    bail!(
                        "{} is shorter than state.json says ({len} < {} bytes)",
                        journal.display(),
                        cursor.journal_bytes
                    );
                }
                if len > cursor.journal_bytes {
                    f.set_len(cursor.journal_bytes)?;
                    f.sync_all()?;
                }
                let reader = std::io::BufReader::new(&f);
                for (n, line) in reader.lines().enumerate() {
                    let line = line?;
                    let parsed: JournalLine = serde_json::from_str(&line)
                        .with_context(|| format!("{} line {}", journal.display(), n + 1))?;
                    apply(&mut enrolments, &parsed);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && cursor.journal_bytes == 0 => {}
            Err(e) => return Err(e).with_context(|| format!("opening {}", journal.display())),
        }
        Ok(State {
            dir: dir.to_owned(),
            _lock: lock,
            cursor,
            enrolments,
        })
    }

    /// The compact range of the entries read.
    pub fn stack(&self) -> anyhow::Result<RootStack> {
        let peaks = self
            .cursor
            .peaks
            .iter()
            .map(|h| Hash::from_hex(h).ok_or_else(|| anyhow!("state.json: bad peak {h:?}")))
            .collect::<anyhow::Result<Vec<Hash>>>()?;
        RootStack::from_parts(self.cursor.entries_read, peaks)
            .ok_or_else(|| anyhow!("state.json: peaks do not match entries_read"))
    }

    /// Appends `alerts` to `alerts.jsonl` after its committed length (cutting what a crash left
    /// after it, which the pending alerts being written again will replace), synced; the new
    /// length is committed with the next [`State::save`].
    pub fn append_alerts(&mut self, alerts: &[Alert]) -> anyhow::Result<()> {
        let path = self.dir.join("alerts.jsonl");
        let mut f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let len = f.metadata()?.len();
        if len < self.cursor.alerts_bytes {
            bail!(
                "{} is shorter than state.json says ({len} < {} bytes)",
                path.display(),
                self.cursor.alerts_bytes
            );
        }
        f.set_len(self.cursor.alerts_bytes)?;
        f.seek(std::io::SeekFrom::Start(self.cursor.alerts_bytes))?;
        let mut buf = Vec::new();
        for a in alerts {
            serde_json::to_writer(&mut buf, a)?;
            buf.push(b'\n');
        }
        f.write_all(&buf)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", path.display()))?;
        self.cursor.alerts_bytes += buf.len() as u64;
        Ok(())
    }

    /// Commits one step: appends `lines` (already applied to the table) to the journal,
    /// synced, then replaces `state.json` with the cursor.
    pub fn commit(&mut self, lines: &[JournalLine]) -> anyhow::Result<()> {
        if !lines.is_empty() {
            let path = self.dir.join("enrolments.jsonl");
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            let mut buf = Vec::new();
            for l in lines {
                serde_json::to_writer(&mut buf, l)?;
                buf.push(b'\n');
            }
            f.write_all(&buf)?;
            f.sync_all()?;
            self.cursor.journal_bytes += buf.len() as u64;
        }
        self.save()
    }

    /// Replaces `state.json`: a temporary file written and synced, renamed over it, and the
    /// directory synced, so a crash leaves the old state or the new one, never half of one.
    pub fn save(&self) -> anyhow::Result<()> {
        let path = self.dir.join("state.json");
        let tmp = self.dir.join("state.json.tmp");
        let bytes = serde_json::to_vec_pretty(&self.cursor)?;
        let mut f =
            fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", self.dir.display()))
    }
}

/// Applies one journal line to the table.
pub fn apply(table: &mut HashMap<u64, Enrolled>, line: &JournalLine) {
    match line {
        JournalLine::Enrolled { index, enrolment } => {
            table.insert(*index, enrolment.clone());
        }
        JournalLine::Revoked {
            enrolment_index,
            index,
        } => {
            if let Some(e) = table.get_mut(enrolment_index) {
                e.revoked_at.get_or_insert(*index);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn enrolled(index: u64, who: &str) -> JournalLine {
        JournalLine::Enrolled {
            index,
            enrolment: Enrolled {
                approver_id: who.into(),
                credential_id: "Y3JlZA".into(),
                public_key: "a2V5".into(),
                revoked_at: None,
            },
        }
    }

    #[test]
    fn a_journal_tail_no_state_names_is_cut_off_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(dir.path()).unwrap();
        let lines = [
            enrolled(0, "a"),
            JournalLine::Revoked {
                enrolment_index: 0,
                index: 3,
            },
        ];
        for l in &lines {
            apply(&mut s.enrolments, l);
        }
        s.cursor.entries_read = 4;
        s.commit(&lines).unwrap();
        let committed = s.cursor.journal_bytes;

        // A crash after the journal append, before state.json: the tail is not the state's.
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("enrolments.jsonl"))
            .unwrap();
        f.write_all(
            b"{\"op\":\"enrolled\",\"index\":5,\"approver_id\":\"b\",\"credential_id\":\"\",",
        )
        .unwrap();
        drop(f);
        drop(s);

        let s = State::open(dir.path()).unwrap();
        assert_eq!(s.cursor.entries_read, 4);
        assert_eq!(s.enrolments.len(), 1);
        assert_eq!(s.enrolments[&0].revoked_at, Some(3));
        let len = fs::metadata(dir.path().join("enrolments.jsonl"))
            .unwrap()
            .len();
        assert_eq!(len, committed);
        assert!(!dir.path().join("state.json.tmp").exists());
    }

    #[test]
    fn a_journal_shorter_than_the_state_says_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::open(dir.path()).unwrap();
        s.commit(&[enrolled(0, "a")]).unwrap();
        fs::write(dir.path().join("enrolments.jsonl"), b"").unwrap();
        drop(s);
        let e = State::open(dir.path()).err().unwrap();
        assert!(e.to_string().contains("shorter"), "{e}");
    }

    #[test]
    fn a_second_monitor_on_the_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = State::open(dir.path()).unwrap();
        let e = State::open(dir.path()).err().unwrap();
        assert!(e.to_string().contains("another monitor"), "{e}");
        drop(first);
        State::open(dir.path()).unwrap();
    }
}
