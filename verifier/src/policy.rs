//! C2SP `tlog-policy`: which logs and witnesses a verifier trusts, and the quorum of witness
//! cosignatures a checkpoint needs (`log`, `witness`, `group <name> all|any|<k> …`, `quorum`).
//!
//! [`Policy::parse`] follows the text of c2sp.org/tlog-policy: lines of tokens separated by
//! spaces and tabs, `#` comments, names defined before they are used (so no cycles), every
//! member of a group listed once, `1 <= k <= n`, exactly one `quorum` line, the predefined name
//! `none` usable only as the quorum, no two logs and no two witnesses wrapping the same public
//! key. Log keys must be Ed25519 note keys (type 0x01) and witness keys `cosignature/v1` keys
//! (type 0x04). Names are compared as octet strings; this implementation takes the file as UTF-8
//! (the specification allows other high-bit octets too, which are refused here with a clear
//! error). Limits: [`MAX_POLICY_BYTES`], and at most [`MAX_POLICY_ITEMS`] logs, witnesses and
//! groups each (the specification recommends supporting at least 32).
//!
//! [`verify_checkpoint_with_policy`] checks a signed checkpoint under a policy: signed by one of
//! its logs (the key named by the origin line), every cosignature by a policy witness valid, and
//! the quorum met by the witnesses whose cosignatures verified.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::checkpoint::{verify_checkpoint, CheckpointError, VerifiedCheckpoint};
use crate::note::{Note, VerifierKey};

/// Largest policy file accepted, in bytes.
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// Most logs, witnesses and groups (each) a policy may define.
pub const MAX_POLICY_ITEMS: usize = 256;

/// A log the policy trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyLog {
    /// Its checkpoint key; the key name is the log's origin.
    pub key: VerifierKey,
    /// Its URL, if the policy gives one (meaning is up to the application).
    pub url: Option<String>,
}

/// A witness the policy knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyWitness {
    /// Its name in the policy (not necessarily its key name).
    pub name: String,
    /// Its `cosignature/v1` key.
    pub key: VerifierKey,
    /// Its URL, if given: by recommendation its `tlog-witness` submission prefix.
    pub url: Option<String>,
}

/// A member of a group: a witness or an earlier group, by position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyMember {
    /// `witnesses()[i]`.
    Witness(usize),
    /// `groups()[i]`.
    Group(usize),
}

/// A witness group: witnessed when at least `threshold` of its members are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyGroup {
    /// Its name.
    pub name: String,
    /// `k` (`any` is 1, `all` is the number of members).
    pub threshold: usize,
    /// Its members, each a witness or a group defined before it.
    pub members: Vec<PolicyMember>,
}

/// A parsed `tlog-policy` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    logs: Vec<PolicyLog>,
    witnesses: Vec<PolicyWitness>,
    groups: Vec<PolicyGroup>,
    /// `None` for `quorum none`.
    quorum: Option<PolicyMember>,
}

/// Why a policy file was refused: the line (from 1; 0 for the file as a whole) and the rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// The line number, from 1 (0: the whole file).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "policy: {}", self.reason)
        } else {
            write!(f, "policy line {}: {}", self.line, self.reason)
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PolicyError {}

fn err(line: usize, reason: impl Into<String>) -> PolicyError {
    PolicyError {
        line,
        reason: reason.into(),
    }
}

impl Policy {
    /// Parses a policy file (see the module documentation for the rules enforced).
    pub fn parse(bytes: &[u8]) -> Result<Policy, PolicyError> {
        if bytes.len() > MAX_POLICY_BYTES {
            return Err(err(
                0,
                alloc::format!("larger than {MAX_POLICY_BYTES} bytes"),
            ));
        }
        let text = core::str::from_utf8(bytes)
            .map_err(|_| err(0, "not UTF-8 (names, URLs and comments must be UTF-8 here)"))?;
        let mut p = Policy {
            logs: Vec::new(),
            witnesses: Vec::new(),
            groups: Vec::new(),
            quorum: None,
        };
        let mut quorum_seen = false;
        for (i, raw) in text.split('\n').enumerate() {
            let n = i + 1;
            if let Some(c) = raw.chars().find(|&c| c != '\t' && c.is_ascii_control()) {
                return Err(err(
                    n,
                    alloc::format!(
                        "control character U+{:04X} (only tab and newline are allowed)",
                        c as u32
                    ),
                ));
            }
            let tokens: Vec<&str> = raw.split([' ', '\t']).filter(|t| !t.is_empty()).collect();
            let Some((&keyword, args)) = tokens.split_first() else {
                continue;
            };
            if keyword.starts_with('#') {
                continue;
            }
            match keyword {
                "log" => p.log_line(n, args)?,
                "witness" => p.witness_line(n, args)?,
                "group" => p.group_line(n, args)?,
                "quorum" => {
                    if quorum_seen {
                        return Err(err(n, "a second quorum line (exactly one is allowed)"));
                    }
                    let [name] = args else {
                        return Err(err(n, "expected: quorum <name>"));
                    };
                    p.quorum = if *name == "none" {
                        None
                    } else {
                        Some(p.lookup(name).ok_or_else(|| {
                            err(
                                n,
                                alloc::format!(
                                    "quorum names {name:?}, which no earlier line defines"
                                ),
                            )
                        })?)
                    };
                    quorum_seen = true;
                }
                other => {
                    return Err(err(
                        n,
                        alloc::format!(
                            "unknown keyword {other:?} (expected log, witness, group or quorum)"
                        ),
                    ))
                }
            }
        }
        if !quorum_seen {
            return Err(err(
                0,
                "no quorum line (write `quorum none` for no witnesses)",
            ));
        }
        Ok(p)
    }

    fn log_line(&mut self, n: usize, args: &[&str]) -> Result<(), PolicyError> {
        let (vkey, url) = match args {
            [v] => (*v, None),
            [v, u] => (*v, Some((*u).to_owned())),
            _ => return Err(err(n, "expected: log <vkey> [<url>]")),
        };
        let key = VerifierKey::parse(vkey).map_err(|e| err(n, alloc::format!("log key: {e}")))?;
        if key.is_cosignature() {
            return Err(err(
                n,
                "a log key must be an Ed25519 note key (type 0x01), not a cosignature key",
            ));
        }
        if self
            .logs
            .iter()
            .any(|l| l.key.public_key() == key.public_key())
        {
            return Err(err(n, "the same public key as an earlier log"));
        }
        if self.logs.len() >= MAX_POLICY_ITEMS {
            return Err(err(n, alloc::format!("more than {MAX_POLICY_ITEMS} logs")));
        }
        self.logs.push(PolicyLog { key, url });
        Ok(())
    }

    fn witness_line(&mut self, n: usize, args: &[&str]) -> Result<(), PolicyError> {
        let (name, vkey, url) = match args {
            [name, v] => (*name, *v, None),
            [name, v, u] => (*name, *v, Some((*u).to_owned())),
            _ => return Err(err(n, "expected: witness <name> <vkey> [<url>]")),
        };
        self.new_name(n, name)?;
        let key =
            VerifierKey::parse(vkey).map_err(|e| err(n, alloc::format!("witness key: {e}")))?;
        if !key.is_cosignature() {
            return Err(err(
                n,
                "a witness key must be a cosignature/v1 key (type 0x04)",
            ));
        }
        if self
            .witnesses
            .iter()
            .any(|w| w.key.public_key() == key.public_key())
        {
            return Err(err(n, "the same public key as an earlier witness"));
        }
        if self.witnesses.len() >= MAX_POLICY_ITEMS {
            return Err(err(
                n,
                alloc::format!("more than {MAX_POLICY_ITEMS} witnesses"),
            ));
        }
        self.witnesses.push(PolicyWitness {
            name: name.to_owned(),
            key,
            url,
        });
        Ok(())
    }

    fn group_line(&mut self, n: usize, args: &[&str]) -> Result<(), PolicyError> {
        let [name, k, names @ ..] = args else {
            return Err(err(n, "expected: group <name> all|any|<k> <name>..."));
        };
        if names.is_empty() {
            return Err(err(n, "a group needs at least one member"));
        }
        self.new_name(n, name)?;
        let mut members = Vec::with_capacity(names.len());
        for m in names {
            if *m == "none" {
                return Err(err(n, "`none` cannot be a group member"));
            }
            let member = self.lookup(m).ok_or_else(|| {
                err(
                    n,
                    alloc::format!("member {m:?} is not defined on an earlier line"),
                )
            })?;
            if members.contains(&member) {
                return Err(err(n, alloc::format!("member {m:?} is listed twice")));
            }
            members.push(member);
        }
        let threshold = match *k {
            "all" => members.len(),
            "any" => 1,
            k => match crate::checkpoint::parse_decimal(k) {
                Some(k) if k >= 1 && k <= members.len() as u64 => k as usize,
                Some(_) => {
                    return Err(err(
                        n,
                        alloc::format!(
                            "threshold {k} is not between 1 and the {} members",
                            members.len()
                        ),
                    ))
                }
                None => {
                    return Err(err(
                        n,
                        alloc::format!("threshold {k:?} is not all, any or a decimal number"),
                    ))
                }
            },
        };
        if self.groups.len() >= MAX_POLICY_ITEMS {
            return Err(err(
                n,
                alloc::format!("more than {MAX_POLICY_ITEMS} groups"),
            ));
        }
        self.groups.push(PolicyGroup {
            name: (*name).to_owned(),
            threshold,
            members,
        });
        Ok(())
    }

    /// A name a `witness` or `group` line defines: not `none`, not defined before.
    fn new_name(&self, n: usize, name: &str) -> Result<(), PolicyError> {
        if name == "none" {
            return Err(err(n, "`none` is predefined and cannot be redefined"));
        }
        if self.lookup(name).is_some() {
            return Err(err(
                n,
                alloc::format!("{name:?} is already defined (witnesses and groups share names)"),
            ));
        }
        Ok(())
    }

    fn lookup(&self, name: &str) -> Option<PolicyMember> {
        if let Some(i) = self.witnesses.iter().position(|w| w.name == name) {
            return Some(PolicyMember::Witness(i));
        }
        self.groups
            .iter()
            .position(|g| g.name == name)
            .map(PolicyMember::Group)
    }

    /// The logs it trusts.
    pub fn logs(&self) -> &[PolicyLog] {
        &self.logs
    }

    /// The witnesses it names.
    pub fn witnesses(&self) -> &[PolicyWitness] {
        &self.witnesses
    }

    /// Its groups, in definition order.
    pub fn groups(&self) -> &[PolicyGroup] {
        &self.groups
    }

    /// The quorum: `None` for `quorum none`.
    pub fn quorum(&self) -> Option<PolicyMember> {
        self.quorum
    }

    /// The witnesses' keys, for [`verify_checkpoint`].
    pub fn witness_keys(&self) -> Vec<VerifierKey> {
        self.witnesses.iter().map(|w| w.key.clone()).collect()
    }

    /// Whether the witnesses for which `cosigned(i)` holds (by position in
    /// [`Policy::witnesses`]) meet the quorum. Groups are evaluated in definition order, each
    /// from members defined before it.
    pub fn quorum_met_by(&self, cosigned: impl Fn(usize) -> bool) -> bool {
        let Some(q) = self.quorum else {
            return true;
        };
        let witnessed: Vec<bool> = (0..self.witnesses.len()).map(&cosigned).collect();
        let mut groups: Vec<bool> = Vec::with_capacity(self.groups.len());
        for g in &self.groups {
            let count = g
                .members
                .iter()
                .filter(|m| match m {
                    PolicyMember::Witness(i) => witnessed[*i],
                    PolicyMember::Group(i) => groups[*i],
                })
                .count();
            groups.push(count >= g.threshold);
        }
        match q {
            PolicyMember::Witness(i) => witnessed[i],
            PolicyMember::Group(i) => groups[i],
        }
    }

    /// Whether cosignatures by exactly these keys meet the quorum.
    pub fn quorum_met(&self, cosigners: &[VerifierKey]) -> bool {
        self.quorum_met_by(|i| cosigners.contains(&self.witnesses[i].key))
    }

    /// The policy's log whose key name is `origin`, if exactly one has it.
    pub fn log_for_origin(&self, origin: &str) -> Option<&VerifierKey> {
        let mut it = self.logs.iter().filter(|l| l.key.name() == origin);
        match (it.next(), it.next()) {
            (Some(l), None) => Some(&l.key),
            _ => None,
        }
    }
}

/// Why a checkpoint does not satisfy a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyCheckError {
    /// The note could not be read far enough to find its origin.
    Unreadable(CheckpointError),
    /// No log of the policy has the checkpoint's origin as its key name (or several do).
    UnknownLog {
        /// The checkpoint's origin line.
        origin: String,
    },
    /// The log signature, a cosignature by a policy witness, or the body is invalid.
    Checkpoint(CheckpointError),
    /// The cosignatures that verified do not meet the quorum.
    QuorumNotMet {
        /// The policy names of the witnesses whose cosignatures verified.
        cosigned_by: Vec<String>,
    },
}

impl fmt::Display for PolicyCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyCheckError::Unreadable(e) => write!(f, "{e}"),
            PolicyCheckError::UnknownLog { origin } => {
                write!(f, "the policy names no (single) log for origin {origin:?}")
            }
            PolicyCheckError::Checkpoint(e) => write!(f, "{e}"),
            PolicyCheckError::QuorumNotMet { cosigned_by } => {
                if cosigned_by.is_empty() {
                    f.write_str("the policy's quorum is not met: no policy witness cosigned")
                } else {
                    write!(
                        f,
                        "the policy's quorum is not met: cosigned only by {}",
                        cosigned_by.join(", ")
                    )
                }
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PolicyCheckError {}

/// Verifies a signed checkpoint under `policy`: signed by the policy's log named by its origin,
/// every signature by a policy witness valid (one bad cosignature rejects the note, as in
/// [`verify_checkpoint`]), and the valid cosignatures meeting the quorum.
pub fn verify_checkpoint_with_policy(
    note: &[u8],
    policy: &Policy,
) -> Result<VerifiedCheckpoint, PolicyCheckError> {
    let parsed =
        Note::parse(note).map_err(|e| PolicyCheckError::Unreadable(CheckpointError::Note(e)))?;
    let origin = parsed.text().split('\n').next().unwrap_or_default();
    let log_key = policy
        .log_for_origin(origin)
        .ok_or_else(|| PolicyCheckError::UnknownLog {
            origin: origin.to_owned(),
        })?;
    let v = verify_checkpoint(note, log_key, &policy.witness_keys())
        .map_err(PolicyCheckError::Checkpoint)?;
    let cosigners: Vec<VerifierKey> = v.cosignatures.iter().map(|s| s.key.clone()).collect();
    if !policy.quorum_met(&cosigners) {
        return Err(PolicyCheckError::QuorumNotMet {
            cosigned_by: policy
                .witnesses
                .iter()
                .filter(|w| cosigners.contains(&w.key))
                .map(|w| w.name.clone())
                .collect(),
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    fn wkey(name: &str, b: u8) -> String {
        VerifierKey::cosignature(name, [b; 32]).unwrap().to_vkey()
    }

    fn lkey(name: &str, b: u8) -> String {
        VerifierKey::ed25519(name, [b; 32]).unwrap().to_vkey()
    }

    /// The specification's example, with keys filled in.
    fn example() -> String {
        format!(
            "log {}\n\nwitness X1 {}\nwitness X2 {}\nwitness X3 {}\ngroup X-witnesses 2 X1 X2 X3\n\n\
             witness Y1 {}\nwitness Y2 {}\nwitness Y3 {}\ngroup Y-witnesses any Y1 Y2 Y3\n\n\
             group X-and-Y all X-witnesses Y-witnesses\nquorum X-and-Y\n",
            lkey("example.com/log", 1),
            wkey("x1", 11),
            wkey("x2", 12),
            wkey("x3", 13),
            wkey("y1", 21),
            wkey("y2", 22),
            wkey("y3", 23),
        )
    }

    #[test]
    fn the_specification_example_parses_and_evaluates() {
        let p = Policy::parse(example().as_bytes()).unwrap();
        assert_eq!(p.logs().len(), 1);
        assert_eq!(p.witnesses().len(), 6);
        assert_eq!(p.groups().len(), 3);
        assert_eq!(p.groups()[0].threshold, 2);
        assert_eq!(p.groups()[1].threshold, 1);
        assert_eq!(p.groups()[2].threshold, 2);
        let met =
            |names: &[&str]| p.quorum_met_by(|i| names.contains(&p.witnesses()[i].name.as_str()));
        // Two X and one Y: met.
        assert!(met(&["X1", "X3", "Y2"]));
        assert!(met(&["X1", "X2", "X3", "Y1", "Y2", "Y3"]));
        // One X short, or no Y.
        assert!(!met(&["X1", "Y1", "Y2", "Y3"]));
        assert!(!met(&["X1", "X2", "X3"]));
        assert!(!met(&[]));
    }

    #[test]
    fn quorum_none_and_single_witness() {
        let p = Policy::parse(format!("log {}\nquorum none\n", lkey("l", 1)).as_bytes()).unwrap();
        assert!(p.quorum_met(&[]));
        assert_eq!(p.quorum(), None);
        let p = Policy::parse(
            format!("  witness w {}  \t\n# c\n   # c2\nquorum w\n", wkey("w", 3)).as_bytes(),
        )
        .unwrap();
        assert!(p.logs().is_empty());
        assert!(!p.quorum_met(&[]));
        assert!(p.quorum_met(&[p.witnesses()[0].key.clone()]));
        // A key of another name but the same bytes is another key.
        assert!(!p.quorum_met(&[VerifierKey::cosignature("other", [3; 32]).unwrap()]));
    }

    #[test]
    fn urls_are_kept() {
        let p = Policy::parse(
            format!(
                "log {} https://log.example/\nwitness w {} https://w.example/prefix\nquorum w\n",
                lkey("l", 1),
                wkey("w", 2)
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(p.logs()[0].url.as_deref(), Some("https://log.example/"));
        assert_eq!(
            p.witnesses()[0].url.as_deref(),
            Some("https://w.example/prefix")
        );
    }

    #[test]
    #[allow(clippy::useless_format)]
    fn every_rule_is_enforced_with_its_line() {
        let w1 = wkey("w1", 1);
        let w2 = wkey("w2", 2);
        let l = lkey("l", 9);
        let cases: Vec<(String, usize, &str)> = alloc::vec![
            (String::new(), 0, "no quorum line"),
            (format!("witness a {w1}\n"), 0, "no quorum line"),
            (format!("quorum none\nquorum none\n"), 2, "a second quorum"),
            (format!("quorum a\nwitness a {w1}\n"), 1, "no earlier line"),
            (
                format!("witness a {w1}\nwitness a {w2}\nquorum a\n"),
                2,
                "already defined"
            ),
            (
                format!("witness a {w1}\nwitness b {w1}\nquorum a\n"),
                2,
                "same public key"
            ),
            (
                format!("log {l}\nlog {}\nquorum none\n", lkey("m", 9)),
                2,
                "same public key"
            ),
            (format!("witness none {w1}\nquorum none\n"), 1, "predefined"),
            (
                format!("witness a {l}\nquorum a\n"),
                1,
                "cosignature/v1 key"
            ),
            (format!("log {w1}\nquorum none\n"), 1, "Ed25519 note key"),
            (
                format!("witness a {w1}\ngroup g 2 a\nquorum g\n"),
                2,
                "between 1"
            ),
            (
                format!("witness a {w1}\ngroup g 0 a\nquorum g\n"),
                2,
                "between 1"
            ),
            (
                format!("witness a {w1}\ngroup g 01 a\nquorum g\n"),
                2,
                "not all, any"
            ),
            (
                format!("witness a {w1}\ngroup g some a\nquorum g\n"),
                2,
                "not all, any"
            ),
            (
                format!("witness a {w1}\ngroup g any a a\nquorum g\n"),
                2,
                "listed twice"
            ),
            (
                format!("witness a {w1}\ngroup g any\nquorum g\n"),
                2,
                "at least one member"
            ),
            (
                format!("witness a {w1}\ngroup g any a none\nquorum g\n"),
                2,
                "cannot be a group"
            ),
            (
                format!("witness a {w1}\ngroup g any b\nquorum g\n"),
                2,
                "not defined"
            ),
            (format!("group g any g\nquorum g\n"), 1, "not defined"),
            (
                format!("witness a {w1}\ngroup a any a\nquorum a\n"),
                2,
                "already defined"
            ),
            (format!("witness a\nquorum none\n"), 1, "expected: witness"),
            (
                format!("witness a {w1} u extra\nquorum none\n"),
                1,
                "expected: witness"
            ),
            (format!("log\nquorum none\n"), 1, "expected: log"),
            (format!("quorum\n"), 1, "expected: quorum"),
            (
                format!("witnesses a {w1}\nquorum none\n"),
                1,
                "unknown keyword"
            ),
            (
                format!("witness a x+00000000+AQ==\nquorum none\n"),
                1,
                "witness key"
            ),
            (format!("quorum none\r\n"), 1, "control character"),
        ];
        for (text, line, want) in cases {
            let e = Policy::parse(text.as_bytes()).expect_err(&text);
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.reason.contains(want), "{text:?}: {e}");
        }
        assert!(Policy::parse(b"quorum none\n\xff\n").is_err());
        let big = alloc::vec![b'#'; MAX_POLICY_BYTES + 1];
        assert!(Policy::parse(&big).is_err());
    }

    #[test]
    fn nested_groups_reference_only_earlier_names() {
        // Three levels; a group may include a group and a witness together.
        let text = format!(
            "witness a {}\nwitness b {}\nwitness c {}\ngroup ab all a b\ngroup top any ab c\nquorum top\n",
            wkey("a", 1),
            wkey("b", 2),
            wkey("c", 3)
        );
        let p = Policy::parse(text.as_bytes()).unwrap();
        let met =
            |names: &[&str]| p.quorum_met_by(|i| names.contains(&p.witnesses()[i].name.as_str()));
        assert!(met(&["c"]));
        assert!(met(&["a", "b"]));
        assert!(!met(&["a"]));
        assert!(!met(&["b"]));
    }

    mod signed {
        #![allow(clippy::unwrap_used)]
        use super::*;
        use crate::checkpoint::Checkpoint;
        use crate::hash::empty_root;
        use crate::note::{cosignature_message, NoteSignature};
        use ed25519_dalek::{Signer, SigningKey};

        const ORIGIN: &str = "example.com/log";

        fn checkpoint_note(witnesses: &[(&str, u8)]) -> Note {
            let text = Checkpoint {
                origin: ORIGIN.to_owned(),
                size: 5,
                root: empty_root(),
                extensions: Vec::new(),
            }
            .to_text();
            let log = SigningKey::from_bytes(&[1; 32]);
            let lk = VerifierKey::ed25519(ORIGIN, log.verifying_key().to_bytes()).unwrap();
            let mut note = Note::new(&text).unwrap();
            note.push_signature(NoteSignature {
                name: ORIGIN.to_owned(),
                key_id: lk.id(),
                signature: log.sign(text.as_bytes()).to_bytes().to_vec(),
            })
            .unwrap();
            for &(name, seed) in witnesses {
                let sk = SigningKey::from_bytes(&[seed; 32]);
                let wk = VerifierKey::cosignature(name, sk.verifying_key().to_bytes()).unwrap();
                let ts = 1_700_000_000u64;
                let mut sig = ts.to_be_bytes().to_vec();
                sig.extend_from_slice(
                    &sk.sign(cosignature_message(ts, &text).as_bytes())
                        .to_bytes(),
                );
                note.push_signature(NoteSignature {
                    name: name.to_owned(),
                    key_id: wk.id(),
                    signature: sig,
                })
                .unwrap();
            }
            note
        }

        fn policy(quorum: &str) -> Policy {
            let lk = VerifierKey::ed25519(
                ORIGIN,
                SigningKey::from_bytes(&[1; 32]).verifying_key().to_bytes(),
            )
            .unwrap();
            let w = |name: &str, seed: u8| {
                VerifierKey::cosignature(
                    name,
                    SigningKey::from_bytes(&[seed; 32])
                        .verifying_key()
                        .to_bytes(),
                )
                .unwrap()
                .to_vkey()
            };
            let text = format!(
                "log {}\nwitness A {}\nwitness B {}\ngroup both all A B\n{quorum}\n",
                lk.to_vkey(),
                w("wa.example", 2),
                w("wb.example", 3)
            );
            Policy::parse(text.as_bytes()).unwrap()
        }

        #[test]
        fn two_of_two_needs_both_valid_cosignatures() {
            let both = checkpoint_note(&[("wa.example", 2), ("wb.example", 3)]).to_text();
            let v = verify_checkpoint_with_policy(both.as_bytes(), &policy("quorum both")).unwrap();
            assert_eq!(v.cosignatures.len(), 2);
            assert_eq!(v.cosignatures[0].timestamp, Some(1_700_000_000));

            // One removed: the quorum names who did cosign.
            let one = checkpoint_note(&[("wa.example", 2)]).to_text();
            assert_eq!(
                verify_checkpoint_with_policy(one.as_bytes(), &policy("quorum both")),
                Err(PolicyCheckError::QuorumNotMet {
                    cosigned_by: alloc::vec!["A".to_owned()]
                })
            );
            // ... which `quorum A` and `quorum none` accept.
            assert!(verify_checkpoint_with_policy(one.as_bytes(), &policy("quorum A")).is_ok());
            let bare = checkpoint_note(&[]).to_text();
            assert!(verify_checkpoint_with_policy(bare.as_bytes(), &policy("quorum none")).is_ok());

            // One altered: a bad signature by a known key rejects the note.
            let mut altered = both.clone().into_bytes();
            let at = altered.len() - 3;
            altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
            assert!(matches!(
                verify_checkpoint_with_policy(&altered, &policy("quorum both")),
                Err(PolicyCheckError::Checkpoint(_))
            ));
            // A cosignature by a key the policy does not name counts for nothing.
            let stranger = checkpoint_note(&[("wa.example", 2), ("wc.example", 4)]).to_text();
            assert!(matches!(
                verify_checkpoint_with_policy(stranger.as_bytes(), &policy("quorum both")),
                Err(PolicyCheckError::QuorumNotMet { .. })
            ));
        }

        #[test]
        fn a_log_the_policy_does_not_name_is_refused() {
            let p = Policy::parse(
                format!("log {}\nquorum none\n", lkey("other.example/log", 1)).as_bytes(),
            )
            .unwrap();
            let note = checkpoint_note(&[]).to_text();
            assert_eq!(
                verify_checkpoint_with_policy(note.as_bytes(), &p),
                Err(PolicyCheckError::UnknownLog {
                    origin: ORIGIN.to_owned()
                })
            );
        }
    }
}
