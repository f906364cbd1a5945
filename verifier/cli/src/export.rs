//! `countersign-verify export DIR`: checks an export archive as `spec/export.md` ("Verifying an
//! archive", checks 1-9) says.
//!
//! Everything is streamed in one pass over the entries, merged with `statements.jsonl`, the
//! manifest's `withheld` list and the first run of `events.jsonl` (all three ascend by index);
//! `events.csv` is compared with the rows as they are read. What is kept: the level-0 hashes
//! (32 bytes per leaf), the enrolment table, the first revocation of each revoked enrolment, and
//! one 112-byte record per decision in the range (112 MB for a million decisions). Passkey
//! signatures are checked on every core (rayon) in batches while the main thread reads on; the
//! rows outside the log are parsed on every core too. Every file's SHA-256 is computed as it is
//! read, so each byte of the archive is read once.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{mpsc, Arc};

use clap::Args;
use countersign_verifier::export::{
    csv_header, csv_record, detail_type_names, entry_bundles, event_row_of, hash_tiles,
    parse_rfc3339_ms, tile_path, EventRow, EventType, Manifest, StatementLine, Totals,
    EXPORT_FORMAT, TOTALS_ELEMENT_ID,
};
use countersign_verifier::{
    check_decision_enrolment, check_decision_statement, check_statement_policy, leaf_hash,
    parse_json_strict, root_from_leaf_hashes, verify_checkpoint, verify_decision_assertion,
    verify_decision_assertion_with_key, BundlePolicy, Enrolment, Entry, EvidenceBundle, Hash,
    PublicKey, RelyingParty, ValidatedPolicy, VerifierKey, MAX_NOTE_BYTES,
};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{parse_entry_bundle, say, witness_args, UsageError, UvArgs};

#[derive(Args)]
#[command(after_long_help = "Exit status:\n  \
    0  every check of spec/export.md passed\n  \
    1  a check failed: each failure names the file, the log index where there is one, and the check\n  \
    2  unusable input: no such directory or tar file, no MANIFEST.json or one that is not a \
    manifest, a key that does not parse, a bad flag\n\n\
    A --log-key that parses but is not the archive's log key is a failed check (exit 1): the \
    manifest's log_key and the checkpoint's signature do not match it.\n\n\
    The relying party must be pinned: --rp-id and/or --origin, or --trust-archive-rp to accept \
    the one the manifest names (the output then says so).\n\n\
    With --json, one object: {\"verified\", \"start\", \"end\", \"tree_size\", \"decisions\", \
    \"approved\", \"denied\", \"withheld\", \"events\", \"failures\": [{\"file\", \"index\", \
    \"check\", \"detail\"}], ...} (spec/export.md).")]
pub(crate) struct ExportArgs {
    /// The archive: a directory, or a POSIX tar file of the same files.
    dir: String,
    /// The log's verifier key (from a trusted source, not from the archive; with --policy, the
    /// policy's log for the manifest's origin if not given).
    #[arg(long, value_name = "VKEY", required_unless_present = "policy")]
    log_key: Option<String>,
    /// Witness cosignature keys whose signatures are checked if present.
    #[arg(long = "witness", value_name = "VKEY")]
    witnesses: Vec<String>,
    /// A C2SP tlog-policy file: the archive's checkpoint must be signed by one of its logs and
    /// cosigned by its witnesses as its quorum requires.
    #[arg(long, value_name = "FILE")]
    policy: Option<String>,
    /// A checkpoint of this log the auditor already trusts: the archive's tree must extend it.
    #[arg(long, value_name = "FILE")]
    trusted_checkpoint: Option<String>,
    /// The relying party ID the approvals must have been made for (pins the RP; this or
    /// --origin or --trust-archive-rp is required).
    #[arg(long)]
    rp_id: Option<String>,
    /// The origin the approvals must have been made on (pins the RP).
    #[arg(long)]
    origin: Option<String>,
    /// Accept the relying party the manifest names instead of pinning one (the output says so).
    #[arg(long, conflicts_with_all = ["rp_id", "origin"])]
    trust_archive_rp: bool,
    #[command(flatten)]
    uv: UvArgs,
}

/// The largest `MANIFEST.json` read (its `withheld` and `files` grow with the archive).
const MAX_MANIFEST_BYTES: u64 = 256 * 1024 * 1024;
/// The largest `report.html` read.
const MAX_REPORT_BYTES: u64 = 64 * 1024 * 1024;
/// The longest line of `statements.jsonl` or `events.jsonl` (a statement is at most 32 KiB).
const MAX_LINE_BYTES: u64 = 1024 * 1024;
/// Failures kept while checking (they are then ordered and the first [`MAX_LISTED`] listed);
/// the rest are counted.
const MAX_FAILURES: usize = 10_000;
/// Failures listed in the answer.
const MAX_LISTED: usize = 100;
/// Failures printed as text.
const MAX_PRINTED: usize = 20;
/// Decisions per batch of parallel passkey checks.
const BATCH: usize = 512;

/// One failed check.
#[derive(Clone, Debug)]
struct Failure {
    file: String,
    index: Option<u64>,
    check: &'static str,
    detail: String,
}

/// Where the archive's files are.
enum Source {
    Dir(PathBuf),
    /// A tar file: member name -> (offset of its data, size), found by one pass over the headers.
    Tar(PathBuf, HashMap<String, (u64, u64)>),
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

type FileReader = BufReader<Hashing<Box<dyn Read>>>;

impl Source {
    /// Opens the archive and lists its files (relative path -> size). Members that are not
    /// regular files are failures.
    fn open(
        path: &Path,
        failures: &mut Vec<Failure>,
    ) -> Result<(Source, BTreeMap<String, u64>), UsageError> {
        let meta =
            std::fs::metadata(path).map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
        let mut files = BTreeMap::new();
        if meta.is_dir() {
            list_dir(path, "", &mut files, failures)
                .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
            return Ok((Source::Dir(path.to_owned()), files));
        }
        let f = std::fs::File::open(path)
            .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
        let mut ar = tar::Archive::new(f);
        let mut members = HashMap::new();
        let entries = ar
            .entries_with_seek()
            .map_err(|e| UsageError(format!("{}: not a tar file: {e}", path.display())))?;
        for entry in entries {
            let entry = entry
                .map_err(|e| UsageError(format!("{}: not a tar file: {e}", path.display())))?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            if entry.header().entry_type() != tar::EntryType::Regular {
                failures.push(Failure {
                    file: name,
                    index: None,
                    check: "manifest",
                    detail: "a tar member that is not a regular file (X1: regular files only)"
                        .into(),
                });
                continue;
            }
            let size = entry.size();
            if members
                .insert(name.clone(), (entry.raw_file_position(), size))
                .is_some()
            {
                failures.push(Failure {
                    file: name.clone(),
                    index: None,
                    check: "manifest",
                    detail: "the tar file holds this member twice".into(),
                });
            }
            files.insert(name, size);
        }
        Ok((Source::Tar(path.to_owned(), members), files))
    }

    fn raw(&self, rel: &str) -> std::io::Result<Box<dyn Read>> {
        match self {
            Source::Dir(d) => Ok(Box::new(std::fs::File::open(d.join(rel))?)),
            Source::Tar(p, members) => {
                let (offset, size) = members
                    .get(rel)
                    .copied()
                    .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
                let mut f = std::fs::File::open(p)?;
                f.seek(SeekFrom::Start(offset))?;
                Ok(Box::new(f.take(size)))
            }
        }
    }
}

fn list_dir(
    root: &Path,
    prefix: &str,
    out: &mut BTreeMap<String, u64>,
    failures: &mut Vec<Failure>,
) -> std::io::Result<()> {
    let dir = if prefix.is_empty() {
        root.to_owned()
    } else {
        root.join(prefix)
    };
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            failures.push(Failure {
                file: format!("{prefix}{}", name.to_string_lossy()),
                index: None,
                check: "manifest",
                detail: "a file name that is not UTF-8".into(),
            });
            continue;
        };
        let rel = format!("{prefix}{name}");
        let meta = std::fs::symlink_metadata(entry.path())?;
        if meta.is_dir() {
            list_dir(root, &format!("{rel}/"), out, failures)?;
        } else if meta.is_file() {
            out.insert(rel, meta.len());
        } else {
            failures.push(Failure {
                file: rel,
                index: None,
                check: "manifest",
                detail: "not a regular file (a symbolic link or special file)".into(),
            });
        }
    }
    Ok(())
}

/// What the parallel passkey checks need.
struct AssertCtx {
    rp: RelyingParty,
    rp_id: Option<String>,
    origin: Option<String>,
    require_uv: bool,
}

/// A decision in the range with a statement (for the events outside the log): digests and times,
/// no strings, 112 bytes ([`DECIDED_BYTES`]), so that a million decisions take 112 MB. The
/// digests are SHA-256 cut to 128 bits: a collision of two request ids can only make a check fail
/// (a second decision of one request, or a row compared with another request's), never pass.
#[derive(Clone, Copy)]
struct Decided {
    /// The request id's digest.
    key: [u8; 16],
    index: u64,
    decided_ms: u64,
    requested_ms: u64,
    /// The digest of its `request.created` row's members ([`RowRef::digest`]).
    created: [u8; 16],
    approve: bool,
    /// The approver's digest.
    approver: [u8; 16],
    /// The statement hash, cut to 128 bits: the approvals of one quorum share it.
    statement: [u8; 16],
    /// A version 2 statement's quorum; 0 for version 1.
    quorum: u64,
    /// The statement's `expires_at`, in milliseconds.
    expires_ms: u64,
    /// Under a version 2 statement: approved by fewer than the quorum and not denied, so it may
    /// have expired (X10).
    short: bool,
}

/// The size of a [`Decided`], held here: it is the bulk of the verifier's memory (spec/export.md
/// states it, `benches/README.md` measures it), so it must not grow unnoticed.
const DECIDED_BYTES: usize = 112;
const _: () = assert!(std::mem::size_of::<Decided>() == DECIDED_BYTES);

/// SHA-256 cut to 128 bits, for [`Decided`].
fn sha16(b: &[u8]) -> [u8; 16] {
    cut16(&sha(b))
}

/// The first 128 bits of a SHA-256 hash (already a digest: hashing it again adds nothing).
fn cut16(h: &[u8; 32]) -> [u8; 16] {
    let mut out = [0; 16];
    out.copy_from_slice(&h[..16]);
    out
}

/// The requests decided under a version 2 statement, as the archive shows them (X10).
#[derive(Default)]
struct QuorumTally {
    /// Requests with a version 2 statement.
    requests: u64,
    /// Approved by at least their quorum of distinct approvers (and not denied).
    met: u64,
    /// Denied by an eligible approver.
    denied: u64,
    /// Approved by fewer than their quorum in the archive: the first approval's index of each.
    pending: Vec<u64>,
    /// Approvals that do not complete a quorum (fewer distinct approvers so far, or an approver
    /// deciding again): no evidence bundle is written for them (X9).
    no_bundle: HashSet<u64>,
}

struct Run {
    src: Source,
    listing: BTreeMap<String, u64>,
    manifest: Manifest,
    failures: Vec<Failure>,
    unlisted: u64,
    hashed: BTreeSet<String>,
    log_key: VerifierKey,
    witnesses: Vec<VerifierKey>,
    /// `--policy`: the checkpoint must meet it.
    policy: Option<countersign_verifier::Policy>,
    ctx: Arc<AssertCtx>,
    progress: ProgressBar,
    // Counts for the summary.
    decisions: u64,
    approved: u64,
    denied: u64,
    events: u64,
    quorum: QuorumTally,
}

impl Run {
    fn fail(&mut self, file: &str, index: Option<u64>, check: &'static str, detail: String) {
        if self.failures.len() < MAX_FAILURES {
            self.failures.push(Failure {
                file: file.to_owned(),
                index,
                check,
                detail,
            });
        } else {
            self.unlisted += 1;
        }
    }

    /// Opens a file of the archive for reading, hashing as it goes; `None` (with the failure
    /// noted once) if it cannot be read.
    fn open(&mut self, rel: &str) -> Option<FileReader> {
        if !self.listing.contains_key(rel) {
            // Already reported as missing by the file-set check.
            return None;
        }
        match self.src.raw(rel) {
            Ok(r) => Some(BufReader::with_capacity(
                256 * 1024,
                Hashing {
                    inner: r,
                    hasher: Sha256::new(),
                },
            )),
            Err(e) => {
                self.fail(rel, None, "manifest", format!("cannot be read: {e}"));
                None
            }
        }
    }

    /// Reads the rest of `r` and checks the file's SHA-256 against the manifest.
    fn finish(&mut self, rel: &str, mut r: FileReader) {
        if let Err(e) = std::io::copy(&mut r, &mut std::io::sink()) {
            self.fail(rel, None, "manifest", format!("cannot be read: {e}"));
            return;
        }
        let digest = hex::encode(r.into_inner().hasher.finalize());
        self.hashed.insert(rel.to_owned());
        match self.manifest.files.get(rel) {
            Some(want) if *want == digest => {}
            Some(_) => self.fail(
                rel,
                None,
                "manifest",
                "the file's SHA-256 is not the one MANIFEST.json files gives".into(),
            ),
            // Reported by the file-set check.
            None => {}
        }
    }

    /// Reads a whole (small) file, checking its hash; `None` if it cannot be read or is larger
    /// than `limit`.
    fn read_all(&mut self, rel: &str, limit: u64) -> Option<Vec<u8>> {
        let mut r = self.open(rel)?;
        // Sized from the listing (a hint only: the reads still stop at the limit), so the
        // buffer is not grown by doubling from nothing for each of the entry bundles.
        let size = self.listing.get(rel).copied().unwrap_or(0).min(limit + 1);
        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        if let Err(e) = (&mut r).take(limit + 1).read_to_end(&mut buf) {
            self.fail(rel, None, "manifest", format!("cannot be read: {e}"));
            return None;
        }
        if buf.len() as u64 > limit {
            self.fail(rel, None, "manifest", format!("larger than {limit} bytes"));
            self.finish(rel, r);
            return None;
        }
        self.finish(rel, r);
        Some(buf)
    }
}

/// Reads one line (without its `\n`) into `buf`. `Ok(None)` at the end of the file;
/// `Ok(Some(false))` for a last line without `\n` or one longer than [`MAX_LINE_BYTES`].
fn read_line(r: &mut FileReader, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    buf.clear();
    let n = r.by_ref().take(MAX_LINE_BYTES + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        Ok(Some(true))
    } else {
        Ok(Some(false))
    }
}

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Entry point: verifies the archive and prints the verdict.
pub(crate) fn run(a: &ExportArgs, json_out: bool) -> ExitCode {
    match verify(a, json_out) {
        Ok(code) => code,
        Err(UsageError(msg)) => {
            if json_out {
                say(json!({"verified": null, "error": msg}));
            }
            eprintln!("countersign-verify: {msg}");
            ExitCode::from(2)
        }
    }
}

fn verify(a: &ExportArgs, json_out: bool) -> Result<ExitCode, UsageError> {
    if a.rp_id.is_none() && a.origin.is_none() && !a.trust_archive_rp {
        return Err(UsageError(
            "pin the relying party the approvals must be for: --rp-id <RP ID> and/or \
             --origin <https://...>; or --trust-archive-rp to accept the one the manifest names"
                .into(),
        ));
    }
    let policy = crate::policy_arg(a.policy.as_deref())?;
    let mut witnesses = witness_args(&a.witnesses)?;
    if let Some(p) = &policy {
        witnesses.extend(p.witness_keys());
    }
    let trusted = match &a.trusted_checkpoint {
        None => None,
        Some(p) => {
            let mut buf = Vec::new();
            std::fs::File::open(p)
                .and_then(|f| f.take(MAX_NOTE_BYTES as u64 + 1).read_to_end(&mut buf))
                .map_err(|e| UsageError(format!("--trusted-checkpoint {p}: {e}")))?;
            Some(buf)
        }
    };
    let mut failures = Vec::new();
    let (src, listing) = Source::open(Path::new(&a.dir), &mut failures)?;
    // The manifest: unusable input if it is not there or not a manifest.
    let manifest_bytes = {
        let mut r = src
            .raw("MANIFEST.json")
            .ok()
            .filter(|_| listing.contains_key("MANIFEST.json"))
            .ok_or_else(|| UsageError(format!("{}: no MANIFEST.json", a.dir)))?;
        let mut buf = Vec::new();
        r.by_ref()
            .take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(|e| UsageError(format!("{}/MANIFEST.json: {e}", a.dir)))?;
        if buf.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(UsageError(format!(
                "{}/MANIFEST.json: larger than {MAX_MANIFEST_BYTES} bytes",
                a.dir
            )));
        }
        buf
    };
    let manifest: Manifest = parse_json_strict(&manifest_bytes)
        .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
        .map_err(|e| UsageError(format!("{}/MANIFEST.json: not a manifest: {e}", a.dir)))?;
    drop(manifest_bytes);
    let log_key = crate::log_key_arg(a.log_key.as_deref(), policy.as_ref(), &manifest.log_origin)?;
    let ctx = Arc::new(AssertCtx {
        rp: RelyingParty {
            rp_id: manifest.relying_party.rp_id.clone(),
            origins: manifest.relying_party.origins.clone(),
        },
        rp_id: a.rp_id.clone(),
        origin: a.origin.clone(),
        require_uv: a.uv.required(),
    });
    let progress = if json_out || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::hidden()
    } else {
        let p = ProgressBar::new(manifest.end);
        p.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} entries ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        p.set_message("verifying");
        p
    };
    let mut run = Run {
        src,
        listing,
        manifest,
        failures,
        unlisted: 0,
        hashed: BTreeSet::new(),
        log_key,
        witnesses,
        policy,
        ctx,
        progress,
        decisions: 0,
        approved: 0,
        denied: 0,
        events: 0,
        quorum: QuorumTally::default(),
    };
    let trusted_size = check_all(&mut run, trusted.as_deref());
    run.progress.finish_and_clear();
    // The workers answer in batches: order the failures by check, then index, so that the
    // answer does not depend on timing.
    run.failures
        .sort_by_key(|f| (check_rank(f.check), f.index.unwrap_or(0)));
    if run.failures.len() > MAX_LISTED {
        run.unlisted += (run.failures.len() - MAX_LISTED) as u64;
        run.failures.truncate(MAX_LISTED);
    }
    report(&run, a, json_out, trusted_size);
    Ok(if run.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The number of the check of spec/export.md a failure belongs to.
fn check_rank(check: &str) -> u8 {
    match check {
        "manifest" => 1,
        "checkpoint" => 2,
        "tiles" => 3,
        "trusted checkpoint" => 4,
        "entries" => 5,
        "decisions" | "revocation" | "policy" => 6,
        "events" => 7,
        "report" => 8,
        _ => 9,
    }
}

fn report(run: &Run, a: &ExportArgs, json_out: bool, trusted_size: Option<u64>) {
    let m = &run.manifest;
    let verified = run.failures.is_empty();
    if json_out {
        let failures: Vec<_> = run
            .failures
            .iter()
            .map(
                |f| json!({"file": f.file, "index": f.index, "check": f.check, "detail": f.detail}),
            )
            .collect();
        say(json!({
            "verified": verified,
            "log_origin": m.log_origin,
            "start": m.start,
            "end": m.end,
            "tree_size": m.tree_size,
            "decisions": run.decisions,
            "approved": run.approved,
            "denied": run.denied,
            "withheld": m.withheld.len(),
            "events": run.events,
            "quorum": {
                "requests": run.quorum.requests,
                "met": run.quorum.met,
                "denied": run.quorum.denied,
                "pending": run.quorum.pending,
            },
            "rp_pinned": !a.trust_archive_rp,
            "trusted_checkpoint_size": trusted_size,
            "failures": failures,
            "failures_not_listed": run.unlisted,
        }));
        return;
    }
    if verified {
        say(format_args!(
            "OK: archive verified: log {} indexes [{}, {}) of a tree of {} entries: {} decisions \
             ({} approved, {} denied; {} withheld), {} event rows{}{}{}",
            m.log_origin,
            m.start,
            m.end,
            m.tree_size,
            run.decisions,
            run.approved,
            run.denied,
            m.withheld.len(),
            run.events,
            if run.quorum.requests > 0 {
                format!(
                    "\nquorum: {} requests under an approval policy: {} met their quorum in the \
                     archive, {} denied, {} not (yet) met{}",
                    run.quorum.requests,
                    run.quorum.met,
                    run.quorum.denied,
                    run.quorum.pending.len(),
                    if run.quorum.pending.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (first approvals at {}{})",
                            run.quorum
                                .pending
                                .iter()
                                .take(10)
                                .map(u64::to_string)
                                .collect::<Vec<_>>()
                                .join(", "),
                            if run.quorum.pending.len() > 10 {
                                ", ..."
                            } else {
                                ""
                            }
                        )
                    }
                )
            } else {
                String::new()
            },
            match trusted_size {
                Some(s) => format!("; extends the trusted checkpoint of size {s}"),
                None => String::new(),
            },
            if a.trust_archive_rp {
                format!(
                    "\nWARNING: RELYING PARTY NOT PINNED (--trust-archive-rp): accepted the \
                     manifest's rp_id {:?}; check that it is yours",
                    m.relying_party.rp_id
                )
            } else {
                String::new()
            }
        ));
        return;
    }
    let total = run.failures.len() as u64 + run.unlisted;
    for f in run.failures.iter().take(MAX_PRINTED) {
        let at = f.index.map(|i| format!(" index {i}")).unwrap_or_default();
        say(format_args!(
            "INVALID ({}): {}{at}: {}",
            f.check, f.file, f.detail
        ));
    }
    if total > MAX_PRINTED as u64 {
        say(format_args!(
            "... and {} more failures",
            total - MAX_PRINTED as u64
        ));
    }
}

/// The fixed files of X2 and X5-X8.
const FIXED: [&str; 5] = [
    "checkpoint",
    "statements.jsonl",
    "events.jsonl",
    "events.csv",
    "report.html",
];

/// Runs checks 1 to 9; returns the trusted checkpoint's size if one was given and held.
fn check_all(run: &mut Run, trusted: Option<&[u8]>) -> Option<u64> {
    // 1. Manifest.
    let m = run.manifest.clone();
    if m.format != EXPORT_FORMAT {
        run.fail(
            "MANIFEST.json",
            None,
            "manifest",
            format!("format is {:?}, not {EXPORT_FORMAT:?}", m.format),
        );
    }
    if m.log_key != run.log_key.to_vkey() {
        run.fail(
            "MANIFEST.json",
            None,
            "manifest",
            "log_key is not the --log-key given".into(),
        );
    }
    if let Some(p) = run.ctx.rp_id.clone() {
        if p != m.relying_party.rp_id {
            run.fail(
                "MANIFEST.json",
                None,
                "manifest",
                format!(
                    "relying_party.rp_id {:?} is not --rp-id {p:?}",
                    m.relying_party.rp_id
                ),
            );
        }
    }
    for (what, t) in [
        ("events_from", &m.events_from),
        ("events_to", &m.events_to),
        ("generated_at", &m.generated_at),
    ] {
        if parse_rfc3339_ms(t).is_none() {
            run.fail(
                "MANIFEST.json",
                None,
                "manifest",
                format!("{what} is not RFC 3339 UTC with milliseconds"),
            );
        }
    }
    if !(m.start <= m.end && m.end <= m.tree_size) {
        run.fail(
            "MANIFEST.json",
            None,
            "manifest",
            format!(
                "not start <= end <= tree_size ({} {} {})",
                m.start, m.end, m.tree_size
            ),
        );
        return None;
    }
    // The tile sets have one member per 256 leaves: refuse sizes the archive cannot hold before
    // listing them.
    if m.tree_size / 256 > run.listing.len() as u64 {
        run.fail(
            "MANIFEST.json",
            None,
            "tiles",
            format!(
                "a tree of {} leaves needs more tiles than the archive's {} files",
                m.tree_size,
                run.listing.len()
            ),
        );
        return None;
    }
    let tiles = hash_tiles(m.tree_size);
    let bundles = entry_bundles(m.end);
    let mut expected: BTreeSet<String> = FIXED.iter().map(|s| (*s).to_owned()).collect();
    expected.extend(tiles.iter().map(|&(l, i, w)| tile_path(Some(l), i, w)));
    expected.extend(bundles.iter().map(|&(i, w)| tile_path(None, i, w)));
    let mut bundle_files: BTreeMap<u64, String> = BTreeMap::new();
    let listing: Vec<String> = run.listing.keys().cloned().collect();
    for f in &listing {
        if f == "MANIFEST.json" {
            continue;
        }
        if !m.files.contains_key(f) {
            run.fail(
                f,
                None,
                "manifest",
                "not listed in MANIFEST.json files".into(),
            );
        }
        if expected.contains(f) {
            continue;
        }
        let bundle_index = f
            .strip_prefix("bundles/")
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(countersign_verifier::parse_decimal);
        match bundle_index {
            Some(i) => {
                bundle_files.insert(i, f.clone());
            }
            None => run.fail(
                f,
                None,
                "manifest",
                "a file that is not part of the archive format (X1-X9)".into(),
            ),
        }
    }
    for (f, h) in &m.files {
        if !run.listing.contains_key(f) {
            run.fail(
                f,
                None,
                "manifest",
                "listed in MANIFEST.json files but missing".into(),
            );
        }
        if h.len() != 64
            || !h
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            run.fail(
                f,
                None,
                "manifest",
                "its hash in MANIFEST.json files is not 64 lowercase hex digits".into(),
            );
        }
    }
    for f in &expected {
        if !run.listing.contains_key(f) && !m.files.contains_key(f) {
            let check = if f.starts_with("tile/entries/") {
                "entries"
            } else if f.starts_with("tile/") {
                "tiles"
            } else {
                "manifest"
            };
            run.fail(f, None, check, "missing (X1-X8)".into());
        }
    }

    // 2. Checkpoint.
    let mut root = None;
    if let Some(cp) = run.read_all("checkpoint", MAX_NOTE_BYTES as u64) {
        if let Some(p) = &run.policy {
            if let Err(e) = countersign_verifier::verify_checkpoint_with_policy(&cp, p) {
                run.fail("checkpoint", None, "checkpoint", format!("--policy: {e}"));
            }
        }
        match verify_checkpoint(&cp, &run.log_key, &run.witnesses) {
            Err(e) => run.fail("checkpoint", None, "checkpoint", e.to_string()),
            Ok(v) => {
                if v.checkpoint.origin != m.log_origin {
                    run.fail(
                        "checkpoint",
                        None,
                        "checkpoint",
                        format!(
                            "origin {:?} is not the manifest's log_origin",
                            v.checkpoint.origin
                        ),
                    );
                }
                if v.checkpoint.size != m.tree_size {
                    run.fail(
                        "checkpoint",
                        None,
                        "checkpoint",
                        format!(
                            "tree size {} is not the manifest's tree_size {}",
                            v.checkpoint.size, m.tree_size
                        ),
                    );
                } else {
                    root = Some(v.checkpoint.root);
                }
            }
        }
    }

    // 3. Tiles.
    let level0 = check_tiles(run, &tiles, root);

    // 4. Trusted checkpoint.
    let trusted_size = trusted.and_then(|t| check_trusted(run, t, &level0));

    // 5-7. Entries, decisions, events.
    let bundle_hashes = check_entries(run, &bundles, &level0, &bundle_files);

    // 9. Bundles.
    check_bundles(run, &bundle_files, &bundle_hashes, &level0);

    // Every file's hash, including any no check read.
    for f in listing {
        if f != "MANIFEST.json" && !run.hashed.contains(&f) {
            if let Some(r) = run.open(&f) {
                run.finish(&f, r);
            }
        }
    }
    trusted_size
}

/// Check 3: reads the level-0 hashes, checks every higher tile against the level below and the
/// root against the checkpoint's. Returns the level-0 hashes (zeros where unreadable).
fn check_tiles(run: &mut Run, tiles: &[(u8, u64, u64)], root: Option<Hash>) -> Vec<Hash> {
    let tree_size = run.manifest.tree_size;
    let mut below: Vec<Hash> = Vec::new();
    let mut level0: Vec<Hash> = Vec::new();
    let mut current: Vec<Hash> = Vec::new();
    let mut current_level = 0u8;
    // The level-0 hashes are kept (and are the level below level 1) without a copy; each higher
    // level becomes `below` for the next.
    let finish_level =
        |lvl: u8, cur: &mut Vec<Hash>, below: &mut Vec<Hash>, level0: &mut Vec<Hash>| {
            if lvl == 0 {
                *level0 = std::mem::take(cur);
            } else {
                std::mem::swap(below, cur);
                cur.clear();
            }
        };
    for &(l, i, w) in tiles {
        if l != current_level {
            finish_level(current_level, &mut current, &mut below, &mut level0);
            current_level = l;
        }
        let path = tile_path(Some(l), i, w);
        let want = (w * 32) as usize;
        let bytes = run.read_all(&path, w * 32).unwrap_or_default();
        let ok = bytes.len() == want;
        if !ok && run.listing.contains_key(&path) {
            run.fail(
                &path,
                None,
                "tiles",
                format!("{} bytes, not {want} ({w} hashes)", bytes.len()),
            );
        }
        // The tree hash of each hash's 256 children, on all cores.
        let roots: Vec<Option<Hash>> = if l >= 1 && ok {
            let below = if l == 1 { &level0 } else { &below };
            (0..w)
                .into_par_iter()
                .map(|k| {
                    let from = ((i * 256 + k) * 256) as usize;
                    below.get(from..from + 256).map(root_from_leaf_hashes)
                })
                .collect()
        } else {
            Vec::new()
        };
        for k in 0..w {
            let h = if ok {
                Hash::from_slice(&bytes[(k * 32) as usize..(k * 32 + 32) as usize])
                    .unwrap_or(Hash([0; 32]))
            } else {
                Hash([0; 32])
            };
            if l >= 1 && ok {
                let n = i * 256 + k;
                if let Some(Some(root)) = roots.get(k as usize) {
                    if *root != h {
                        run.fail(
                            &path,
                            Some(n << (8 * u32::from(l))),
                            "tiles",
                            format!(
                                "hash {k} is not the Merkle tree hash of the 256 level-{} \
                                 hashes below it",
                                l - 1
                            ),
                        );
                    }
                }
            }
            current.push(h);
        }
    }
    finish_level(current_level, &mut current, &mut below, &mut level0);
    if tree_size == 0 {
        level0.clear();
    }
    if let Some(root) = root {
        if tree_hash(&level0) != root {
            run.fail(
                "tile/0",
                None,
                "tiles",
                "the tree hash of the level-0 hashes is not the checkpoint's root".into(),
            );
        }
    }
    level0
}

/// The RFC 6962 tree hash of `leaves`, its two subtrees (split at the largest power of two
/// below the size, as the definition does) on two cores while they are large.
fn tree_hash(leaves: &[Hash]) -> Hash {
    if leaves.len() <= 1 << 16 {
        return root_from_leaf_hashes(leaves);
    }
    let k = 1usize << (usize::BITS - 1 - (leaves.len() - 1).leading_zeros());
    let (left, right) = rayon::join(|| tree_hash(&leaves[..k]), || tree_hash(&leaves[k..]));
    countersign_verifier::node_hash(&left, &right)
}

/// Check 4.
fn check_trusted(run: &mut Run, note: &[u8], level0: &[Hash]) -> Option<u64> {
    let name = "--trusted-checkpoint";
    let v = match verify_checkpoint(note, &run.log_key, &run.witnesses) {
        Ok(v) => v,
        Err(e) => {
            run.fail(name, None, "trusted checkpoint", e.to_string());
            return None;
        }
    };
    let size = v.checkpoint.size;
    if v.checkpoint.origin != run.manifest.log_origin {
        run.fail(
            name,
            None,
            "trusted checkpoint",
            "its origin is not the archive's log_origin".into(),
        );
        return None;
    }
    if size > run.manifest.tree_size {
        run.fail(
            name,
            None,
            "trusted checkpoint",
            format!(
                "its size {size} is larger than the archive's tree_size {}",
                run.manifest.tree_size
            ),
        );
        return None;
    }
    let got = tree_hash(&level0[..(size as usize).min(level0.len())]);
    if got != v.checkpoint.root {
        run.fail(
            name,
            None,
            "trusted checkpoint",
            format!(
                "the tree hash of the archive's first {size} leaves is not its root: the \
                 archive's tree does not extend the trusted one"
            ),
        );
        return None;
    }
    Some(size)
}

/// Reads `statements.jsonl` line by line. Only the index is read here (the merge needs it);
/// the statement is parsed and checked by the workers.
struct Statements {
    reader: Option<FileReader>,
    buf: Vec<u8>,
    line: u64,
    /// The next line: its index and its bytes (without `\n`), or `None` at the end.
    peeked: Option<(u64, Vec<u8>)>,
    last_index: Option<u64>,
}

/// The index of a line of `statements.jsonl`, read without building the statement.
#[derive(serde::Deserialize)]
struct LineIndex {
    index: u64,
}

/// The index of a line of `statements.jsonl`: read from its first bytes when it begins
/// `{"index":N,` as the exporter writes it (the workers read the whole line into its type, which
/// names the index once), else by the JSON reader.
fn line_index(line: &[u8]) -> Result<u64, serde_json::Error> {
    if let Some(rest) = line.strip_prefix(b"{\"index\":") {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if rest.get(digits) == Some(&b',') {
            let n = std::str::from_utf8(&rest[..digits])
                .ok()
                .and_then(countersign_verifier::parse_decimal);
            if let Some(n) = n {
                return Ok(n);
            }
        }
    }
    serde_json::from_slice::<LineIndex>(line).map(|l| l.index)
}

impl Statements {
    const FILE: &'static str = "statements.jsonl";

    /// Reads the next line with an index into `peeked`, reporting lines without one.
    fn advance(&mut self, run: &mut Run) {
        self.peeked = None;
        let Some(r) = self.reader.as_mut() else {
            return;
        };
        loop {
            self.line += 1;
            match read_line(r, &mut self.buf) {
                Err(e) => {
                    run.fail(Self::FILE, None, "manifest", format!("cannot be read: {e}"));
                    return;
                }
                Ok(None) => return,
                Ok(Some(complete)) => {
                    if !complete {
                        run.fail(
                            Self::FILE,
                            None,
                            "decisions",
                            format!("line {} does not end with a newline", self.line),
                        );
                    }
                    match line_index(&self.buf) {
                        Ok(index) => {
                            if self.last_index.is_some_and(|l| index <= l) {
                                run.fail(
                                    Self::FILE,
                                    Some(index),
                                    "decisions",
                                    format!("line {}: the lines do not ascend by index", self.line),
                                );
                            }
                            self.last_index = Some(index);
                            // A copy of the exact size: the buffer keeps its capacity for the
                            // next line instead of growing again from nothing.
                            self.peeked = Some((index, self.buf.clone()));
                            return;
                        }
                        Err(e) => run.fail(
                            Self::FILE,
                            None,
                            "decisions",
                            format!(
                                "line {} is not {{\"index\", \"statement\"}}: {e}",
                                self.line
                            ),
                        ),
                    }
                }
            }
        }
    }
}

/// Reads `events.jsonl` and checks `events.csv` against each row.
struct Events {
    jsonl: Option<FileReader>,
    csv: Option<FileReader>,
    buf: Vec<u8>,
    csv_buf: Vec<u8>,
    /// Rows read from events.jsonl.
    row: u64,
    /// Rows counted (and compared with events.csv).
    counted: u64,
    totals: Totals,
}

impl Events {
    const FILE: &'static str = "events.jsonl";
    const CSV: &'static str = "events.csv";

    /// The next line of `events.jsonl` (without `\n`), or `None` at the end.
    fn next_line(&mut self, run: &mut Run) -> Option<Vec<u8>> {
        // As in `Statements::advance`: the buffer keeps its capacity.
        self.read_line(run).map(<[u8]>::to_vec)
    }

    /// The next line of `events.jsonl` (without `\n`) in the reader's buffer, or `None` at the
    /// end.
    fn read_line(&mut self, run: &mut Run) -> Option<&[u8]> {
        let r = self.jsonl.as_mut()?;
        self.row += 1;
        match read_line(r, &mut self.buf) {
            Err(e) => {
                run.fail(Self::FILE, None, "manifest", format!("cannot be read: {e}"));
                None
            }
            Ok(None) => None,
            Ok(Some(complete)) => {
                if !complete {
                    run.fail(
                        Self::FILE,
                        None,
                        "events",
                        format!("row {} does not end with a newline", self.row),
                    );
                }
                Some(&self.buf)
            }
        }
    }

    /// Counts a row and checks its CSV record `want` (made by a worker: `to_csv_record`).
    fn counted(
        &mut self,
        run: &mut Run,
        event_type: EventType,
        log_index: Option<u64>,
        want: &str,
    ) {
        run.events += 1;
        self.counted += 1;
        self.totals.add(event_type);
        let Some(c) = self.csv.as_mut() else {
            return;
        };
        self.csv_buf.clear();
        self.csv_buf.resize(want.len(), 0);
        let mut got = 0;
        while got < want.len() {
            match c.read(&mut self.csv_buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(_) => break,
            }
        }
        if &self.csv_buf[..got] != want.as_bytes() {
            run.fail(
                Self::CSV,
                log_index,
                "events",
                format!(
                    "record {} is not the X7 form of row {} of events.jsonl",
                    self.counted, self.counted
                ),
            );
            // The rest cannot be aligned with the rows.
            if let Some(c) = self.csv.take() {
                run.finish(Self::CSV, c);
            }
        }
    }
}

/// One entry of the range, for the workers: everything its checks need.
struct Item {
    index: u64,
    /// The entry bundle it was read from.
    path: Arc<str>,
    /// Its leaf hash.
    leaf: Hash,
    /// `None` if it does not decode (already reported).
    decoded: Option<Entry>,
    /// For a decision whose enrolment and revocation checks passed: the enrolment whose key
    /// must have signed it.
    enrolment: Option<Arc<Keyed>>,
    /// Its line of `statements.jsonl`.
    line: Option<Vec<u8>>,
    /// Its row of `events.jsonl` (`None` if the file ended: already reported).
    event: Option<Vec<u8>>,
    /// That row's number.
    event_row: u64,
    /// The valid policy entries logged before it, by index (shared until a new one is logged).
    policies: Arc<BTreeMap<u64, Arc<ValidatedPolicy>>>,
    /// Whether its enrolment records a verified attestation (spec/entry.md, version 2).
    attested: bool,
}

/// An enrolment of the log with its key, parsed once for every decision that names it.
struct Keyed {
    enrolment: Enrolment,
    /// `None` if it does not parse: the decision's check then says why.
    key: Option<PublicKey>,
}

/// A line of `statements.jsonl`, read into its type at once: the statement's derived reader
/// refuses a member named twice among its own, and its `authorization_details` are read
/// strictly (`parse_json_strict`), so no member can be named twice anywhere.
fn parse_statement_line(l: &[u8]) -> Result<StatementLine, String> {
    serde_json::from_slice::<StatementLine>(l).map_err(|e| e.to_string())
}

/// What the workers found about one [`Item`].
#[derive(Default)]
struct Done {
    failures: Vec<Failure>,
    /// The request a decision with a valid statement decided.
    decided: Option<Decided>,
    /// The statement hash, for an index with a bundle.
    bundle_hash: Option<(u64, [u8; 32])>,
    /// The row to count, with its events.csv record.
    row: Option<(EventType, Option<u64>, String)>,
}

/// What the workers share.
struct Shared {
    ctx: Arc<AssertCtx>,
    log_origin: String,
    bundle_indexes: HashSet<u64>,
}

/// Checks 6 and 7 of one entry of the range, on a worker: the statement line, the passkey
/// assertion and the entry's row of `events.jsonl`.
fn check_item(item: &Item, sh: &Shared) -> Done {
    let i = item.index;
    let mut done = Done::default();
    let mut fail = |file: &str, check: &'static str, detail: String| {
        done.failures.push(Failure {
            file: file.to_owned(),
            index: Some(i),
            check,
            detail,
        });
    };
    let line: Option<StatementLine> =
        item.line
            .as_ref()
            .and_then(|l| match parse_statement_line(l) {
                Ok(sl) => Some(sl),
                Err(e) => {
                    fail(
                        Statements::FILE,
                        "decisions",
                        format!("the line is not {{\"index\", \"statement\"}}: {e}"),
                    );
                    None
                }
            });
    let mut statement_ok = false;
    let mut uv: Option<bool> = None;
    if let Some(Entry::Decision(d)) = &item.decoded {
        if let Some(k) = &item.enrolment {
            let policy = BundlePolicy {
                witnesses: &[],
                rp_id: sh.ctx.rp_id.as_deref(),
                origin: sh.ctx.origin.as_deref(),
                require_user_verification: sh.ctx.require_uv,
            };
            let verified = match &k.key {
                Some(key) => verify_decision_assertion_with_key(d, key, &sh.ctx.rp, &policy),
                // Says why, as for any enrolment.
                None => {
                    verify_decision_assertion(d, &k.enrolment, &sh.ctx.rp, &policy).map(|(_, a)| a)
                }
            };
            match verified {
                Err(e) => fail(&item.path, "decisions", e.to_string()),
                Ok(a) => uv = Some(a.user_verified()),
            }
        }
        if let Some(sl) = &line {
            let st = &sl.statement;
            if st.log_origin != sh.log_origin {
                fail(
                    Statements::FILE,
                    "decisions",
                    "the statement's log_origin is not the manifest's".into(),
                );
            }
            match check_decision_statement(d, st) {
                Err(e) => fail(Statements::FILE, "decisions", e.to_string()),
                Ok(h) => {
                    statement_ok = st.log_origin == sh.log_origin;
                    if let Some(why) = policy_problem(item, st, uv) {
                        fail(Statements::FILE, "policy", why);
                    }
                    if sh.bundle_indexes.contains(&i) {
                        done.bundle_hash = Some((i, h));
                    }
                    let requested_ms = st.requested_at * 1000;
                    let created = created_row(st, requested_ms);
                    done.decided = Some(Decided {
                        key: sha16(st.request_id.as_bytes()),
                        index: i,
                        decided_ms: d.time_ms,
                        requested_ms,
                        created: created.row().digest(),
                        approve: d.decision == countersign_verifier::Decision::Approve,
                        approver: sha16(d.approver_id.as_bytes()),
                        statement: cut16(&h),
                        quorum: st.policy.as_ref().map_or(0, |p| p.quorum),
                        expires_ms: st.expires_at.saturating_mul(1000),
                        short: false,
                    });
                }
            }
        }
    }
    // 7. The entry's row in the first run of events.jsonl.
    let Some(got) = &item.event else {
        return done;
    };
    let st = line.as_ref().filter(|_| statement_ok).map(|l| &l.statement);
    // The statement, if any, was checked against the entry above (check_decision_statement).
    let want = match &item.decoded {
        Some(e) if item.line.is_none() || statement_ok => event_row_of(i, &item.leaf, e, st).ok(),
        _ => None,
    };
    match want {
        Some(want) => {
            if !written_as(&want, got) {
                fail(
                    Events::FILE,
                    "events",
                    format!(
                        "row {} is not the row made from the entry{}",
                        item.event_row,
                        if st.is_some() {
                            " and its statement"
                        } else {
                            ""
                        }
                    ),
                );
            }
            done.row = Some(counted_row(&want));
        }
        // The entry or its statement failed (reported); count the row as written.
        None => {
            done.row = serde_json::from_slice::<EventRow>(got)
                .ok()
                .map(|r| counted_row(&r))
        }
    }
    done
}

/// Why a version 2 statement's decision does not hold under the logged policy (spec/export.md
/// X10): the policy entry the statement names is a valid policy entry logged before the
/// decision, it gives the statement's rule, quorum and approvers (and the request's lifetime
/// fits the rule), and the decision is as the rule requires (UV, a verified attestation).
/// `None` for a version 1 statement or a decision that holds.
fn policy_problem(
    item: &Item,
    st: &countersign_verifier::Statement,
    uv: Option<bool>,
) -> Option<String> {
    let sp = st.policy.as_ref()?;
    let Some(p) = item.policies.get(&sp.index) else {
        return Some(format!(
            "the statement names the policy entry at index {}, which is not a valid policy entry \
             before the decision",
            sp.index
        ));
    };
    let v = match check_statement_policy(p, st) {
        Ok(v) => v,
        Err(e) => return Some(e.to_string()),
    };
    if v.require_uv && uv == Some(false) {
        return Some("the rule requires user verification and the decision lacks it".into());
    }
    if v.require_attestation && !item.attested {
        return Some(
            "the rule requires a verified attestation and the decision's enrolment records none"
                .into(),
        );
    }
    None
}

/// What [`Events::counted`] needs of a row.
fn counted_row(row: &EventRow) -> (EventType, Option<u64>, String) {
    (row.event_type, row.log_index, row.to_csv_record())
}

/// Where the first pass keeps what it learns from the workers' results.
#[derive(Default)]
struct Learned {
    /// In index order; sorted by request digest before the second run.
    decided: Vec<Decided>,
    bundle_hashes: HashMap<u64, [u8; 32]>,
}

/// Takes in one batch of results, in index order.
fn absorb(run: &mut Run, events: &mut Events, learned: &mut Learned, batch: Vec<Done>) {
    for done in batch {
        for f in done.failures {
            run.fail(&f.file, f.index, f.check, f.detail);
        }
        if let Some(d) = done.decided {
            learned.decided.push(d);
        }
        if let Some((i, h)) = done.bundle_hash {
            learned.bundle_hashes.insert(i, h);
        }
        if let Some((event_type, log_index, csv)) = done.row {
            events.counted(run, event_type, log_index, &csv);
        }
    }
}

/// Maps `f` over `batch` on one worker of the rayon pool, in the background: the results come
/// back, in the batch's order, through the receiver (for [`answer`]). Several batches in flight
/// keep every worker busy; a batch is not split further, as a split batch's worker, waiting for
/// the other half, would take up another batch inside the wait and hold back the batch the main
/// thread waits for, while the other worker runs out of work (2 to 3% of the cores sat idle).
fn on_pool<T, R, F>(batch: Vec<T>, f: F) -> mpsc::Receiver<Vec<R>>
where
    T: Sync + Send + 'static,
    R: Send + 'static,
    F: Fn(&T) -> R + Sync + Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    rayon::spawn(move || {
        let done: Vec<R> = batch.iter().map(f).collect();
        let _ = tx.send(done);
    });
    rx
}

/// Waits for the results of an [`on_pool`] batch; `None`, with the failure noted under `check`,
/// if the batch's worker stopped without them.
fn answer<R>(run: &mut Run, rx: mpsc::Receiver<Vec<R>>, check: &'static str) -> Option<Vec<R>> {
    let got = rx.recv().ok();
    if got.is_none() {
        run.fail(
            "(verifier)",
            None,
            check,
            "a worker stopped without an answer".into(),
        );
    }
    got
}

/// Batches of items checked on the rayon pool, results taken back in order.
struct Pool {
    shared: Arc<Shared>,
    pending: std::collections::VecDeque<mpsc::Receiver<Vec<Done>>>,
    batch: Vec<Item>,
    limit: usize,
}

impl Pool {
    fn push(&mut self, item: Item, run: &mut Run, events: &mut Events, learned: &mut Learned) {
        self.batch.push(item);
        if self.batch.len() >= BATCH {
            self.dispatch(run, events, learned);
        }
    }

    fn dispatch(&mut self, run: &mut Run, events: &mut Events, learned: &mut Learned) {
        if self.batch.is_empty() {
            return;
        }
        while self.pending.len() >= self.limit {
            self.take_one(run, events, learned);
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        let shared = Arc::clone(&self.shared);
        self.pending
            .push_back(on_pool(batch, move |it| check_item(it, &shared)));
    }

    fn take_one(&mut self, run: &mut Run, events: &mut Events, learned: &mut Learned) {
        if let Some(rx) = self.pending.pop_front() {
            if let Some(done) = answer(run, rx, "decisions") {
                absorb(run, events, learned, done);
            }
        }
    }

    fn drain(&mut self, run: &mut Run, events: &mut Events, learned: &mut Learned) {
        self.dispatch(run, events, learned);
        while !self.pending.is_empty() {
            self.take_one(run, events, learned);
        }
    }
}

/// Checks 5, 6 and 7 in one pass over the entries: the main thread reads the entry bundles,
/// keeps the enrolment and revocation tables and merges the entries with the statement lines,
/// the withheld list and the rows; the workers check each entry of the range (statement,
/// passkey assertion, row). Returns the statement hash of each index that has a bundle (for
/// check 9).
fn check_entries(
    run: &mut Run,
    bundles: &[(u64, u64)],
    level0: &[Hash],
    bundle_files: &BTreeMap<u64, String>,
) -> HashMap<u64, [u8; 32]> {
    let m = run.manifest.clone();
    let mut enrolments: HashMap<u64, Arc<Keyed>> = HashMap::new();
    let mut revoked: HashMap<u64, u64> = HashMap::new();
    // Policy entries are few: the map is copied when one is added, and shared with the items.
    let mut policies: Arc<BTreeMap<u64, Arc<ValidatedPolicy>>> = Arc::new(BTreeMap::new());
    let mut attested: HashSet<u64> = HashSet::new();
    let mut learned = Learned {
        // One record per decision of the range at most (the range's leaves are in the tiles read
        // already, so this is bounded by the archive), reserved at once: no doubling on the way.
        decided: Vec::with_capacity(usize::try_from(m.end - m.start).unwrap_or(0)),
        ..Learned::default()
    };
    let mut statements = Statements {
        reader: run.open(Statements::FILE),
        buf: Vec::new(),
        line: 0,
        peeked: None,
        last_index: None,
    };
    statements.advance(run);
    let mut withheld = m.withheld.iter().peekable();
    let mut last_withheld: Option<u64> = None;
    for w in &m.withheld {
        if w.reason != "not_held" {
            run.fail(
                "MANIFEST.json",
                Some(w.index),
                "decisions",
                format!("withheld reason {:?} is not not_held", w.reason),
            );
        }
        if last_withheld.is_some_and(|l| w.index <= l) {
            run.fail(
                "MANIFEST.json",
                Some(w.index),
                "decisions",
                "withheld does not ascend by index".into(),
            );
        }
        last_withheld = Some(w.index);
    }
    let mut events = Events {
        jsonl: run.open(Events::FILE),
        csv: run.open(Events::CSV),
        buf: Vec::new(),
        csv_buf: Vec::new(),
        row: 0,
        counted: 0,
        totals: Totals::default(),
    };
    if let Some(c) = events.csv.as_mut() {
        let want = csv_header();
        let mut got = vec![0u8; want.len()];
        let ok = c.read_exact(&mut got).is_ok() && got == want.as_bytes();
        if !ok {
            run.fail(
                Events::CSV,
                None,
                "events",
                "the header line is not X7's".into(),
            );
            if let Some(c) = events.csv.take() {
                run.finish(Events::CSV, c);
            }
        }
    }
    let mut pool = Pool {
        shared: Arc::new(Shared {
            ctx: Arc::clone(&run.ctx),
            log_origin: m.log_origin.clone(),
            bundle_indexes: bundle_files.keys().copied().collect(),
        }),
        pending: std::collections::VecDeque::new(),
        batch: Vec::with_capacity(BATCH),
        limit: 2 * rayon::current_num_threads() + 2,
    };

    let mut index = 0u64;
    for &(b, w) in bundles {
        let path: Arc<str> = Arc::from(tile_path(None, b, w));
        let bytes = run.read_all(&path, w * (2 + 65_535)).unwrap_or_default();
        let (entries, bundle_ok) = match parse_entry_bundle(&bytes, w, w == 256) {
            Ok(e) => (e, true),
            Err(e) => {
                if run.listing.contains_key(&*path) {
                    run.fail(&path, Some(b * 256), "entries", e);
                }
                // Keep the indexes aligned; the entries are missing (reported once).
                (vec![Vec::new(); w as usize], false)
            }
        };
        drop(bytes);
        for entry in entries {
            let i = index;
            index += 1;
            run.progress.inc(1);
            let decoded = if bundle_ok {
                match Entry::decode(&entry) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        run.fail(
                            &path,
                            Some(i),
                            "entries",
                            format!("the entry does not decode canonically: {e}"),
                        );
                        None
                    }
                }
            } else {
                None
            };
            let leaf = leaf_hash(&entry);
            if bundle_ok && level0.get(i as usize) != Some(&leaf) {
                run.fail(
                    &path,
                    Some(i),
                    "entries",
                    "the entry's leaf hash is not the level-0 tile hash at its index".into(),
                );
            }
            match &decoded {
                Some(Entry::Enrolment(e)) => {
                    if matches!(
                        e.attestation,
                        countersign_verifier::AttestationRecord::Verified { .. }
                    ) {
                        attested.insert(i);
                    }
                    let mut slim = e.clone();
                    slim.attestation = countersign_verifier::AttestationRecord::NotRecorded;
                    enrolments.insert(
                        i,
                        Arc::new(Keyed {
                            key: slim.key().ok(),
                            enrolment: slim,
                        }),
                    );
                }
                Some(Entry::Revocation(r)) => {
                    revoked.entry(r.enrolment_index).or_insert(i);
                }
                Some(Entry::Policy(p)) => match p.validated() {
                    Ok(v) => {
                        let mut next = (*policies).clone();
                        next.insert(i, Arc::new(v));
                        policies = Arc::new(next);
                    }
                    Err(e) => run.fail(
                        &path,
                        Some(i),
                        "policy",
                        format!("the policy entry does not hold a valid policy: {e}"),
                    ),
                },
                _ => {}
            }
            if i < m.start {
                continue;
            }
            // The statement line and withheld item of this index, if any.
            let mut line: Option<Vec<u8>> = None;
            while let Some((li, _)) = &statements.peeked {
                let li = *li;
                if li > i {
                    break;
                }
                if let Some((_, bytes)) = statements.peeked.take() {
                    if li == i {
                        line = Some(bytes);
                    } else {
                        run.fail(
                            Statements::FILE,
                            Some(li),
                            "decisions",
                            "a line for an index that is not a decision in the range".into(),
                        );
                    }
                }
                statements.advance(run);
            }
            let mut is_withheld = false;
            while let Some(w) = withheld.peek() {
                if w.index > i {
                    break;
                }
                if w.index == i {
                    is_withheld = true;
                } else {
                    run.fail(
                        "MANIFEST.json",
                        Some(w.index),
                        "decisions",
                        "withheld names an index that is not a decision in the range".into(),
                    );
                }
                withheld.next();
            }
            let mut enrolment = None;
            let mut enrolment_attested = false;
            match &decoded {
                Some(Entry::Decision(d)) => {
                    run.decisions += 1;
                    match d.decision {
                        countersign_verifier::Decision::Approve => run.approved += 1,
                        countersign_verifier::Decision::Deny => run.denied += 1,
                    }
                    match (&line, is_withheld) {
                        (Some(_), true) => run.fail(
                            Statements::FILE,
                            Some(i),
                            "decisions",
                            "the decision has a line and is also withheld".into(),
                        ),
                        (None, false) => run.fail(
                            Statements::FILE,
                            Some(i),
                            "decisions",
                            "the decision has neither a line nor a withheld item".into(),
                        ),
                        _ => {}
                    }
                    // The enrolment it relies on, and its revocation.
                    match enrolments.get(&d.enrolment_index) {
                        None => run.fail(
                            &path,
                            Some(i),
                            "decisions",
                            format!(
                                "names enrolment index {}, which is not an enrolment before it",
                                d.enrolment_index
                            ),
                        ),
                        Some(enr) => {
                            if let Err(e) =
                                check_decision_enrolment(d, i, &enr.enrolment, d.enrolment_index)
                            {
                                run.fail(&path, Some(i), "decisions", e.to_string());
                            } else if let Some(r) = revoked.get(&d.enrolment_index) {
                                run.fail(
                                    &path,
                                    Some(i),
                                    "revocation",
                                    format!(
                                        "the credential was revoked at index {r}, before the \
                                         decision"
                                    ),
                                );
                            } else {
                                enrolment = Some(Arc::clone(enr));
                                enrolment_attested = attested.contains(&d.enrolment_index);
                            }
                        }
                    }
                }
                other => {
                    if line.is_some() {
                        run.fail(
                            Statements::FILE,
                            Some(i),
                            "decisions",
                            "a line for an index that is not a decision in the range".into(),
                        );
                        line = None;
                    }
                    if is_withheld && other.is_some() {
                        run.fail(
                            "MANIFEST.json",
                            Some(i),
                            "decisions",
                            "withheld names an index that is not a decision".into(),
                        );
                    }
                }
            }
            let event = events.next_line(run);
            if event.is_none() {
                run.fail(
                    Events::FILE,
                    Some(i),
                    "events",
                    "ends before the row of this entry".into(),
                );
            }
            let item = Item {
                index: i,
                path: Arc::clone(&path),
                leaf,
                decoded,
                enrolment,
                line,
                event,
                event_row: events.row,
                policies: Arc::clone(&policies),
                attested: enrolment_attested,
            };
            pool.push(item, run, &mut events, &mut learned);
        }
    }
    // Lines and withheld items past the last entry of the range.
    while let Some((li, _)) = &statements.peeked {
        let li = *li;
        run.fail(
            Statements::FILE,
            Some(li),
            "decisions",
            "a line for an index that is not a decision in the range".into(),
        );
        statements.advance(run);
    }
    for w in withheld {
        run.fail(
            "MANIFEST.json",
            Some(w.index),
            "decisions",
            "withheld names an index that is not a decision in the range".into(),
        );
    }
    if let Some(r) = statements.reader.take() {
        run.finish(Statements::FILE, r);
    }
    pool.drain(run, &mut events, &mut learned);
    // 7. The second run: events outside the log.
    index_decided(run, &mut learned.decided);
    check_outside_events(run, &mut events, std::mem::take(&mut learned.decided));
    if let Some(c) = events.csv.as_mut() {
        let mut rest = [0u8; 1];
        if matches!(c.read(&mut rest), Ok(n) if n > 0) {
            run.fail(
                Events::CSV,
                None,
                "events",
                "holds more records than events.jsonl has rows".into(),
            );
        }
    }
    if let Some(r) = events.jsonl.take() {
        run.finish(Events::FILE, r);
    }
    if let Some(c) = events.csv.take() {
        run.finish(Events::CSV, c);
    }

    // 8. Report.
    check_report(run, &events.totals);
    learned.bundle_hashes
}

/// Sorts the decisions by request digest and reports a request decided twice. The decisions of
/// one request under a version 2 statement (X10) are its approvers' own: they must be by distinct
/// approvers, the approvals over one statement; they are merged into one record of the request
/// (approved when its quorum of distinct approvals is logged and no one denied it, decided when
/// the last needed approval or the denial was logged), and tallied.
fn index_decided(run: &mut Run, decided: &mut Vec<Decided>) {
    decided.par_sort_unstable_by_key(|d| (d.key, d.index));
    // Merged in place (a group never yields more records than it has, so what is written stays
    // behind what is read): a second vector would double the largest allocation of the run.
    let mut written = 0;
    let mut i = 0;
    while i < decided.len() {
        let mut j = i + 1;
        while j < decided.len() && decided[j].key == decided[i].key {
            j += 1;
        }
        let group = &decided[i..j];
        if group.iter().any(|d| d.quorum == 0) {
            // Version 1: one decision per request.
            for w in group.windows(2) {
                run.fail(
                    Statements::FILE,
                    Some(w[1].index),
                    "decisions",
                    format!(
                        "decides the request that index {} decided already",
                        w[0].index
                    ),
                );
            }
            decided.copy_within(i..j, written);
            written += j - i;
        } else {
            decided[written] = merge_quorum(run, group);
            written += 1;
        }
        i = j;
    }
    decided.truncate(written);
}

/// One request's decisions under a version 2 statement, in log order, as one record.
fn merge_quorum(run: &mut Run, group: &[Decided]) -> Decided {
    let first = &group[0];
    let mut out = Decided {
        approve: false,
        ..*first
    };
    // The record stands for the request from here on: its outside rows are matched to it.
    run.quorum.requests += 1;
    let mut approvers: Vec<[u8; 16]> = Vec::new();
    let mut deciders: Vec<([u8; 16], u64)> = Vec::new();
    let mut statement: Option<[u8; 16]> = None;
    let mut denied = false;
    let mut met = false;
    for d in group {
        if let Some(&(_, earlier)) = deciders.iter().find(|(a, _)| *a == d.approver) {
            run.fail(
                Statements::FILE,
                Some(d.index),
                "decisions",
                format!(
                    "the approver of index {earlier} decides this request again (two passkeys of \
                     one approver count once)"
                ),
            );
            run.quorum.no_bundle.insert(d.index);
            continue;
        }
        deciders.push((d.approver, d.index));
        if !d.approve {
            if !denied && !met {
                out.decided_ms = d.decided_ms;
                out.index = d.index;
            }
            denied = true;
            continue;
        }
        if *statement.get_or_insert(d.statement) != d.statement {
            run.fail(
                Statements::FILE,
                Some(d.index),
                "decisions",
                "approves the request over another statement than its earlier approvals".into(),
            );
            continue;
        }
        approvers.push(d.approver);
        if approvers.len() as u64 >= d.quorum {
            if !met && !denied {
                out.decided_ms = d.decided_ms;
                out.index = d.index;
            }
            met = true;
        } else {
            run.quorum.no_bundle.insert(d.index);
        }
    }
    out.approve = met && !denied;
    out.short = !met && !denied;
    if denied {
        run.quorum.denied += 1;
    } else if met {
        run.quorum.met += 1;
    } else {
        run.quorum.pending.push(first.index);
    }
    out
}

/// Rows of the second run parsed at once on the workers.
const OUTSIDE_BATCH: usize = 1024;

/// What a worker finds about one row of the second run of `events.jsonl`.
struct OutsideRow {
    row: OutsideFields,
    /// The line is the X6 form of the row.
    canonical: bool,
    csv: String,
    time_ms: Option<u64>,
    /// Where its request is in the sorted decisions.
    at: Option<usize>,
    /// For a row of a decided request: the digest ([`RowRef::digest`]) to compare with its
    /// `created` (of the row for `request.created`, of the row turned into its `request.created`
    /// row for `token.issued` and `request.expired`).
    created: [u8; 16],
    /// For a row of an undecided request: the digest of its type and request id.
    undecided_key: [u8; 16],
}

/// The decisions sorted by request digest, found by digest with few cache misses (a lookup's
/// probes into a million records would each miss): the first 8 bytes of each digest in an array
/// of their own, and where each bucket of prefixes starts in it (the digests are SHA-256, so the
/// buckets are even: about two records each). Within a bucket the search is binary, so digests
/// ground to share a bucket cost a logarithm, not a scan.
struct ByRequest {
    decided: Vec<Decided>,
    prefixes: Vec<u64>,
    /// Bucket `b` is `prefixes[starts[b]..starts[b + 1]]`.
    starts: Vec<usize>,
    /// A prefix's bucket is its top `64 - shift` bits.
    shift: u32,
}

impl ByRequest {
    fn new(decided: Vec<Decided>) -> ByRequest {
        let prefixes: Vec<u64> = decided.iter().map(|d| key_prefix(&d.key)).collect();
        let buckets = (prefixes.len() / 2).max(1).next_power_of_two();
        let shift = 64 - buckets.trailing_zeros();
        let mut starts = Vec::with_capacity(buckets + 1);
        let mut at = 0;
        for b in 0..buckets {
            starts.push(at);
            while at < prefixes.len() && bucket_of(prefixes[at], shift) == b {
                at += 1;
            }
        }
        starts.push(prefixes.len());
        ByRequest {
            decided,
            prefixes,
            starts,
            shift,
        }
    }

    /// Where the request with digest `key` is, if it was decided.
    fn find(&self, key: &[u8; 16]) -> Option<usize> {
        let p = key_prefix(key);
        let b = bucket_of(p, self.shift);
        let (start, end) = (*self.starts.get(b)?, *self.starts.get(b + 1)?);
        let from = start + self.prefixes.get(start..end)?.partition_point(|&q| q < p);
        (from..end)
            .take_while(|&i| self.prefixes[i] == p)
            .find(|&i| self.decided[i].key == *key)
    }
}

/// The bucket of a digest prefix: its top `64 - shift` bits (none when `shift` is 64).
fn bucket_of(prefix: u64, shift: u32) -> usize {
    usize::try_from(prefix.checked_shr(shift).unwrap_or(0)).unwrap_or(0)
}

fn key_prefix(key: &[u8; 16]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    u64::from_be_bytes(b)
}

/// What the main thread needs of a row of the second run.
struct OutsideFields {
    event_type: EventType,
    log_index: Option<u64>,
    /// Whether it has a leaf hash.
    leaf_hash: bool,
    request_id: Option<String>,
}

/// A text of a row as read: borrowed from the line unless it holds an escape.
#[derive(Clone)]
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

impl serde::Serialize for Text<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A row of `events.jsonl` read in place: [`EventRow`]'s members, names and types (a test holds
/// the two to the same lines, forms and records), its texts borrowed from the line.
#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RowRef<'a> {
    log_index: Option<u64>,
    #[serde(borrow)]
    leaf_hash: Option<Text<'a>>,
    event_type: EventType,
    #[serde(borrow)]
    time_utc: Text<'a>,
    #[serde(borrow)]
    request_id: Option<Text<'a>>,
    #[serde(borrow)]
    client_id: Option<Text<'a>>,
    #[serde(borrow)]
    approver_id: Option<Text<'a>>,
    #[serde(borrow)]
    credential_id: Option<Text<'a>>,
    #[serde(borrow)]
    aaguid: Option<Text<'a>>,
    #[serde(borrow)]
    authorization_details_types: Vec<Text<'a>>,
    #[serde(borrow)]
    binding_message: Option<Text<'a>>,
    #[serde(borrow)]
    statement_sha256: Option<Text<'a>>,
}

impl RowRef<'_> {
    /// A digest of the row's members (the first 16 bytes of SHA-256 over each member in order,
    /// a text as its length and bytes, a missing one as a zero tag: one encoding per row), to
    /// compare two rows by without writing either out. Equal rows have equal digests; rows
    /// that differ cannot be made to share one short of a SHA-256 collision on 128 bits.
    fn digest(&self) -> [u8; 16] {
        fn text(h: &mut Sha256, t: Option<&str>) {
            match t {
                None => h.update([0]),
                Some(t) => {
                    h.update([1]);
                    h.update((t.len() as u64).to_le_bytes());
                    h.update(t.as_bytes());
                }
            }
        }
        fn opt<'s>(t: &'s Option<Text<'_>>) -> Option<&'s str> {
            t.as_ref().map(|t| &*t.0)
        }
        let mut h = Sha256::new();
        match self.log_index {
            None => h.update([0]),
            Some(i) => {
                h.update([1]);
                h.update(i.to_le_bytes());
            }
        }
        text(&mut h, opt(&self.leaf_hash));
        text(&mut h, Some(self.event_type.as_str()));
        text(&mut h, Some(&self.time_utc.0));
        for t in [
            &self.request_id,
            &self.client_id,
            &self.approver_id,
            &self.credential_id,
            &self.aaguid,
        ] {
            text(&mut h, opt(t));
        }
        h.update((self.authorization_details_types.len() as u64).to_le_bytes());
        for t in &self.authorization_details_types {
            text(&mut h, Some(&t.0));
        }
        text(&mut h, opt(&self.binding_message));
        text(&mut h, opt(&self.statement_sha256));
        let mut out = [0; 16];
        out.copy_from_slice(&h.finalize()[..16]);
        out
    }

    /// As [`EventRow::to_csv_record`].
    fn to_csv_record(&self) -> String {
        fn text<'s>(o: &'s Option<Text<'_>>) -> &'s str {
            o.as_ref().map_or("", |t| &t.0)
        }
        let types: Vec<&str> = self
            .authorization_details_types
            .iter()
            .map(|t| &*t.0)
            .collect();
        csv_record(
            self.log_index,
            [
                text(&self.leaf_hash),
                self.event_type.as_str(),
                &self.time_utc.0,
                text(&self.request_id),
                text(&self.client_id),
                text(&self.approver_id),
                text(&self.credential_id),
                text(&self.aaguid),
                &types.join(";"),
                text(&self.binding_message),
                text(&self.statement_sha256),
            ],
        )
    }
}

/// Reads a line that is an [`EventRow`] in the X6 form with no escape in its texts (every row
/// the exporter writes, but for texts holding a quote, backslash or control character): the
/// members in order, compact, each text between quotes as it is. Such a line is what the JSON
/// reader reads, and what serde_json writes back, byte for byte; `None` for any other line,
/// which is then read by the JSON reader (and says why it is not a row, or not in the form).
fn read_x6(line: &[u8]) -> Option<RowRef<'_>> {
    struct Cursor<'a> {
        s: &'a str,
        at: usize,
    }
    impl<'a> Cursor<'a> {
        fn lit(&mut self, l: &str) -> Option<()> {
            self.s[self.at..].starts_with(l).then(|| self.at += l.len())
        }
        /// A text: its bytes up to the next quote, none of them a backslash or control byte.
        fn text(&mut self) -> Option<Text<'a>> {
            self.lit("\"")?;
            let rest = &self.s.as_bytes()[self.at..];
            let len = rest.iter().position(|&b| b == b'"')?;
            if rest[..len].iter().any(|&b| b == b'\\' || b < 0x20) {
                return None;
            }
            let t = &self.s[self.at..self.at + len];
            self.at += len + 1;
            Some(Text(Cow::Borrowed(t)))
        }
        fn nullable(&mut self) -> Option<Option<Text<'a>>> {
            if self.lit("null").is_some() {
                return Some(None);
            }
            self.text().map(Some)
        }
        fn member(&mut self, name: &str) -> Option<Option<Text<'a>>> {
            self.lit(",\"")?;
            self.lit(name)?;
            self.lit("\":")?;
            self.nullable()
        }
    }
    let mut c = Cursor {
        s: std::str::from_utf8(line).ok()?,
        at: 0,
    };
    c.lit("{\"log_index\":")?;
    let log_index = if c.lit("null").is_some() {
        None
    } else {
        let digits = c.s.as_bytes()[c.at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let n = countersign_verifier::parse_decimal(&c.s[c.at..c.at + digits])?;
        c.at += digits;
        Some(n)
    };
    let leaf_hash = c.member("leaf_hash")?;
    let event_type = c.member("event_type")??;
    let event_type = *EventType::ALL.iter().find(|t| t.as_str() == event_type.0)?;
    let time_utc = c.member("time_utc")??;
    let request_id = c.member("request_id")?;
    let client_id = c.member("client_id")?;
    let approver_id = c.member("approver_id")?;
    let credential_id = c.member("credential_id")?;
    let aaguid = c.member("aaguid")?;
    c.lit(",\"authorization_details_types\":[")?;
    let mut authorization_details_types = Vec::new();
    if c.lit("]").is_none() {
        loop {
            authorization_details_types.push(c.text()?);
            if c.lit("]").is_some() {
                break;
            }
            c.lit(",")?;
        }
    }
    let binding_message = c.member("binding_message")?;
    let statement_sha256 = c.member("statement_sha256")?;
    c.lit("}")?;
    (c.at == c.s.len()).then_some(RowRef {
        log_index,
        leaf_hash,
        event_type,
        time_utc,
        request_id,
        client_id,
        approver_id,
        credential_id,
        aaguid,
        authorization_details_types,
        binding_message,
        statement_sha256,
    })
}

/// Whether `line` is `value`'s compact JSON, found without writing the JSON out.
fn written_as<T: serde::Serialize>(value: &T, line: &[u8]) -> bool {
    let mut rest = Same { rest: line };
    serde_json::to_writer(&mut rest, value).is_ok() && rest.rest.is_empty()
}

/// What the request.created row of a statement is made of ([`EventRow::for_request`]), the
/// texts it does not borrow from the statement.
struct CreatedRow<'a> {
    statement: &'a countersign_verifier::Statement,
    time_utc: String,
    approvers: String,
}

/// The texts of a statement's request.created row that are not the statement's own.
fn created_row(st: &countersign_verifier::Statement, requested_ms: u64) -> CreatedRow<'_> {
    CreatedRow {
        statement: st,
        time_utc: countersign_verifier::export::rfc3339_ms(requested_ms),
        approvers: st.eligible_approvers().join(" "),
    }
}

impl CreatedRow<'_> {
    /// The row, as [`EventRow::for_request`] makes it (a test holds the two to one line), its
    /// texts borrowed.
    fn row(&self) -> RowRef<'_> {
        fn text(s: &str) -> Text<'_> {
            Text(Cow::Borrowed(s))
        }
        let st = self.statement;
        RowRef {
            log_index: None,
            leaf_hash: None,
            event_type: EventType::RequestCreated,
            time_utc: text(&self.time_utc),
            request_id: Some(text(&st.request_id)),
            client_id: Some(text(&st.client_id)),
            approver_id: Some(text(&self.approvers)),
            credential_id: None,
            aaguid: None,
            authorization_details_types: detail_type_names(st).map(text).collect(),
            binding_message: Some(text(&st.binding_message)),
            statement_sha256: None,
        }
    }
}

/// A writer that accepts exactly the bytes of `rest`, in order.
struct Same<'a> {
    rest: &'a [u8],
}

impl std::io::Write for Same<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.rest.strip_prefix(buf) {
            Some(r) => {
                self.rest = r;
                Ok(buf.len())
            }
            None => Err(std::io::ErrorKind::InvalidData.into()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn parse_outside(line: &[u8], by: &ByRequest) -> Result<OutsideRow, String> {
    let decided = &by.decided;
    // Any value the deserialiser accepts is held to its one X6 form below, which a duplicate or
    // unknown member, another order or other spacing cannot have.
    let (mut row, canonical) = match read_x6(line) {
        Some(row) => (row, true),
        None => {
            let row: RowRef<'_> = serde_json::from_slice(line).map_err(|e| e.to_string())?;
            let canonical = written_as(&row, line);
            (row, canonical)
        }
    };
    let csv = row.to_csv_record();
    let time_ms = parse_rfc3339_ms(&row.time_utc.0);
    let mut out = OutsideRow {
        canonical,
        csv,
        time_ms,
        at: None,
        created: [0; 16],
        undecided_key: [0; 16],
        row: OutsideFields {
            event_type: row.event_type,
            log_index: row.log_index,
            leaf_hash: row.leaf_hash.is_some(),
            request_id: row.request_id.as_ref().map(|t| t.0.clone().into_owned()),
        },
    };
    let Some(request_id) = out.row.request_id.as_deref() else {
        return Ok(out);
    };
    let key = sha16(request_id.as_bytes());
    out.at = by.find(&key);
    match out.at {
        Some(at) => match row.event_type {
            EventType::RequestCreated => out.created = row.digest(),
            EventType::TokenIssued | EventType::RequestExpired => {
                // The row turned into its request.created row.
                row.event_type = EventType::RequestCreated;
                row.time_utc = Text(Cow::Owned(countersign_verifier::export::rfc3339_ms(
                    decided[at].requested_ms,
                )));
                out.created = row.digest();
            }
            _ => {}
        },
        None => {
            out.undecided_key =
                sha16(format!("{}\n{request_id}", out.row.event_type.as_str()).as_bytes());
        }
    }
    Ok(out)
}

/// Which rows of the second run a decided request has had (by its place in the decisions).
#[derive(Clone, Copy, Default)]
struct Seen {
    created: bool,
    token: bool,
    expired: bool,
}

/// A batch of the second run being parsed on the pool: the row number of its first line (the
/// others follow it), and where the parsed rows will come from.
type Parsing = (u64, mpsc::Receiver<Vec<Result<OutsideRow, String>>>);

/// Check 7, the second run of `events.jsonl`: the events outside the log. The rows are parsed
/// and digested on the workers, several batches in flight, while the main thread reads the
/// next batches and applies the parsed ones, in order.
fn check_outside_events(run: &mut Run, events: &mut Events, decided: Vec<Decided>) {
    let from = parse_rfc3339_ms(&run.manifest.events_from).unwrap_or(0);
    let to = parse_rfc3339_ms(&run.manifest.events_to).unwrap_or(0);
    let mut last_time = 0u64;
    let mut undecided_seen: HashSet<[u8; 16]> = HashSet::new();
    let by = Arc::new(ByRequest::new(decided));
    let decided = &by.decided;
    let mut seen = vec![Seen::default(); decided.len()];
    // Batches in flight: the workers parse the next ones while the main thread reads and
    // applies, so neither waits on the other.
    let depth = rayon::current_num_threads() + 2;
    let mut parsing: std::collections::VecDeque<Parsing> = std::collections::VecDeque::new();
    let mut more = true;
    while more || !parsing.is_empty() {
        while more && parsing.len() < depth {
            // A batch's lines in one buffer, each a range of it: two allocations a batch, not
            // one a row.
            let mut text: Vec<u8> = Vec::with_capacity(OUTSIDE_BATCH * 512);
            let mut lines: Vec<std::ops::Range<usize>> = Vec::with_capacity(OUTSIDE_BATCH);
            let first = events.row + 1;
            while lines.len() < OUTSIDE_BATCH {
                match events.read_line(run) {
                    Some(line) => {
                        let start = text.len();
                        text.extend_from_slice(line);
                        lines.push(start..text.len());
                    }
                    None => break,
                }
            }
            more = lines.len() == OUTSIDE_BATCH;
            if !lines.is_empty() {
                let by = Arc::clone(&by);
                parsing.push_back((
                    first,
                    on_pool(lines, move |l| parse_outside(&text[l.clone()], &by)),
                ));
            }
        }
        let Some((first, rx)) = parsing.pop_front() else {
            break;
        };
        let Some(parsed) = answer(run, rx, "events") else {
            return;
        };
        for (n, p) in (first..).zip(parsed) {
            check_outside_row(
                run,
                events,
                (decided, &mut seen),
                n,
                p,
                (from, to),
                &mut last_time,
                &mut undecided_seen,
            );
        }
    }
    let mut missing: Vec<u64> = decided
        .iter()
        .zip(&seen)
        .filter(|(_, s)| !s.created)
        .map(|(d, _)| d.index)
        .collect();
    missing.sort_unstable();
    for i in missing {
        run.fail(
            Events::FILE,
            Some(i),
            "events",
            "no request.created row for the decision's request".into(),
        );
    }
}

/// Applies one parsed row of the second run, in order.
#[allow(clippy::too_many_arguments)]
fn check_outside_row(
    run: &mut Run,
    events: &mut Events,
    (decided, seen): (&[Decided], &mut [Seen]),
    n: u64,
    parsed: Result<OutsideRow, String>,
    (from, to): (u64, u64),
    last_time: &mut u64,
    undecided_seen: &mut HashSet<[u8; 16]>,
) {
    let fail = |run: &mut Run, detail: String| {
        run.fail(Events::FILE, None, "events", format!("row {n}: {detail}"));
    };
    let p = match parsed {
        Ok(p) => p,
        Err(e) => {
            run.fail(
                Events::FILE,
                None,
                "events",
                format!("row {n} is not an event row: {e}"),
            );
            return;
        }
    };
    let row = &p.row;
    if !p.canonical {
        fail(
            run,
            "not in the form of X6 (members in order, compact JSON)".into(),
        );
    }
    events.counted(run, row.event_type, row.log_index, &p.csv);
    if row.event_type.in_log() || row.log_index.is_some() || row.leaf_hash {
        fail(
            run,
            "a log event after the first run (one row per entry of the range)".into(),
        );
        return;
    }
    let Some(t) = p.time_ms else {
        fail(run, "time_utc is not RFC 3339 UTC with milliseconds".into());
        return;
    };
    if t < *last_time {
        fail(
            run,
            "the events outside the log are not ordered by time".into(),
        );
    }
    *last_time = t;
    let Some(request_id) = row.request_id.as_deref() else {
        fail(run, "no request_id".into());
        return;
    };
    match p.at {
        Some(at) => {
            let d = &decided[at];
            let seen = &mut seen[at];
            match row.event_type {
                EventType::RequestCreated => {
                    if seen.created {
                        fail(
                            run,
                            format!("a second request.created row for {request_id}"),
                        );
                    } else if p.created != d.created {
                        fail(
                            run,
                            format!(
                                "the request.created row of {request_id} (decided at index {}) \
                                 is not the one made from its statement",
                                d.index
                            ),
                        );
                    }
                    seen.created = true;
                }
                EventType::TokenIssued => {
                    if !d.approve {
                        fail(
                            run,
                            if d.quorum > 0 {
                                format!(
                                    "token.issued for {request_id}, which was denied or did not \
                                     reach its quorum of {} approvals in the archive",
                                    d.quorum
                                )
                            } else {
                                format!("token.issued for {request_id}, which was denied")
                            },
                        );
                    } else if seen.token {
                        fail(run, format!("a second token.issued row for {request_id}"));
                    } else if t < d.decided_ms {
                        fail(
                            run,
                            format!("token.issued for {request_id} before its approval"),
                        );
                    } else if p.created != d.created {
                        fail(
                            run,
                            format!(
                                "the token.issued row of {request_id} is not the one made from \
                                 its statement"
                            ),
                        );
                    }
                    seen.token = true;
                }
                // An approval short of its quorum, then the request expired (X10).
                EventType::RequestExpired if d.short => {
                    if seen.expired {
                        fail(
                            run,
                            format!("a second request.expired row for {request_id}"),
                        );
                    } else if t != d.expires_ms || p.created != d.created {
                        fail(
                            run,
                            format!(
                                "the request.expired row of {request_id} is not the one made \
                                 from its statement"
                            ),
                        );
                    }
                    seen.expired = true;
                }
                _ => fail(
                    run,
                    format!(
                        "a {} row for {request_id}, which was decided at index {}",
                        row.event_type.as_str(),
                        d.index
                    ),
                ),
            }
        }
        None => {
            if row.event_type == EventType::TokenIssued {
                fail(
                    run,
                    format!("token.issued for {request_id}, which is not approved in the archive"),
                );
                return;
            }
            if !(from <= t && t < to) {
                fail(
                    run,
                    format!(
                        "a row of the undecided request {request_id} outside [events_from, events_to)"
                    ),
                );
            }
            if !undecided_seen.insert(p.undecided_key) {
                fail(
                    run,
                    format!(
                        "repeats the {} row of {request_id}",
                        row.event_type.as_str()
                    ),
                );
            }
        }
    }
}

/// Check 8.
fn check_report(run: &mut Run, totals: &Totals) {
    const FILE: &str = "report.html";
    let Some(bytes) = run.read_all(FILE, MAX_REPORT_BYTES) else {
        return;
    };
    let html = String::from_utf8_lossy(&bytes);
    let lower = html.to_ascii_lowercase();
    // No script that runs: every script element is a JSON data block.
    let mut found: Option<Totals> = None;
    let mut count = 0;
    let mut pos = 0;
    while let Some(at) = lower[pos..].find("<script") {
        let start = pos + at;
        let Some(tag_end) = lower[start..].find('>').map(|e| start + e) else {
            break;
        };
        let tag = &lower[start..=tag_end];
        let Some(close) = lower[tag_end..].find("</script").map(|e| tag_end + e) else {
            run.fail(
                FILE,
                None,
                "report",
                "a script element is not closed".into(),
            );
            return;
        };
        if !tag.contains("type=\"application/json\"") {
            run.fail(
                FILE,
                None,
                "report",
                "holds a script element that is not application/json (X8: no script that runs)"
                    .into(),
            );
        }
        if tag.contains(&format!("id=\"{TOTALS_ELEMENT_ID}\"")) {
            count += 1;
            let body = &html[tag_end + 1..close];
            match parse_json_strict(body.as_bytes())
                .and_then(|v| serde_json::from_value::<Totals>(v).map_err(|e| e.to_string()))
            {
                Ok(t) => found = Some(t),
                Err(e) => run.fail(
                    FILE,
                    None,
                    "report",
                    format!("the totals are not Totals: {e}"),
                ),
            }
        }
        pos = close;
    }
    if count != 1 {
        run.fail(
            FILE,
            None,
            "report",
            format!("{count} elements with id {TOTALS_ELEMENT_ID}, not one"),
        );
        return;
    }
    if let Some(t) = found {
        if t != *totals {
            run.fail(
                FILE,
                None,
                "report",
                format!(
                    "the totals {} are not the counts of the rows of events.jsonl {}",
                    serde_json::to_string(&t).unwrap_or_default(),
                    serde_json::to_string(totals).unwrap_or_default()
                ),
            );
        }
    }
}

/// Check 9.
fn check_bundles(
    run: &mut Run,
    files: &BTreeMap<u64, String>,
    statement_hashes: &HashMap<u64, [u8; 32]>,
    level0: &[Hash],
) {
    if files.is_empty() {
        return;
    }
    let ctx = Arc::clone(&run.ctx);
    let witnesses = run.witnesses.clone();
    let policy = BundlePolicy {
        witnesses: &witnesses,
        rp_id: ctx.rp_id.as_deref(),
        origin: ctx.origin.as_deref(),
        require_user_verification: ctx.require_uv,
    };
    let log_key = run.log_key.clone();
    for (&index, file) in files {
        let Some(bytes) = run.read_all(file, countersign_verifier::MAX_BUNDLE_BYTES as u64) else {
            continue;
        };
        let b = match EvidenceBundle::from_json(&bytes) {
            Ok(b) => b,
            Err(e) => {
                run.fail(file, Some(index), "bundles", e.to_string());
                continue;
            }
        };
        if run.ctx.rp_id.is_none()
            && run.ctx.origin.is_none()
            && b.relying_party.rp_id != ctx.rp.rp_id
        {
            run.fail(
                file,
                Some(index),
                "bundles",
                "the bundle's relying party is not the manifest's".into(),
            );
        }
        match b.verify(&log_key, &policy) {
            Err(e) => run.fail(file, Some(index), "bundles", e.to_string()),
            Ok(v) => {
                if v.decision_index != index
                    || level0.get(index as usize) != Some(&v.decision_leaf_hash)
                {
                    run.fail(
                        file,
                        Some(index),
                        "bundles",
                        "the bundle's decision is not the archive's entry at this index".into(),
                    );
                }
                if statement_hashes.get(&index) != Some(&v.statement_hash) {
                    run.fail(
                        file,
                        Some(index),
                        "bundles",
                        "the bundle's statement is not this index's line of statements.jsonl"
                            .into(),
                    );
                }
            }
        }
    }
    // X9: one for each decision in statements.jsonl, but for approvals that do not complete a
    // quorum (X10), which no bundle can show as valid.
    let lines = run.decisions - run.manifest.withheld.len() as u64;
    let partial = run.quorum.no_bundle.len() as u64;
    let wanted = lines.saturating_sub(partial);
    if files.len() as u64 != wanted {
        run.fail(
            "bundles/",
            None,
            "bundles",
            format!(
                "{} bundles for {lines} decisions with a statement{} (X9: one for each)",
                files.len(),
                if partial > 0 {
                    format!(", {partial} of them approvals that do not complete a quorum")
                } else {
                    String::new()
                }
            ),
        );
    }
    for (&index, file) in files {
        if run.quorum.no_bundle.contains(&index) {
            run.fail(
                file,
                Some(index),
                "bundles",
                "a bundle for an approval that does not complete its quorum".into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Rows with texts that need escapes in JSON or quotes in CSV, and with none.
    fn rows() -> Vec<EventRow> {
        let plain = EventRow {
            log_index: None,
            leaf_hash: None,
            event_type: EventType::RequestCreated,
            time_utc: "2026-01-01T00:00:06.000Z".into(),
            request_id: Some("req_1".into()),
            client_id: Some("agent-payments".into()),
            approver_id: Some("apv_alice apv_bob".into()),
            credential_id: None,
            aaguid: None,
            authorization_details_types: vec!["payment_initiation".into()],
            binding_message: Some("Pay 42.00 EUR to ACME".into()),
            statement_sha256: None,
        };
        let mut odd = plain.clone();
        odd.event_type = EventType::DecisionApproved;
        odd.log_index = Some(12);
        odd.leaf_hash = Some("ab".repeat(32));
        odd.binding_message = Some("=SUM(A1) \"quoted\", \\ \u{e9}\u{1f600}\t/\n".into());
        odd.authorization_details_types = vec!["a;b".into(), "-x".into(), String::new()];
        odd.credential_id = Some("3es3jyzmBdZKBhGctbcnDA".into());
        odd.statement_sha256 = Some("cd".repeat(32));
        let mut empty = plain.clone();
        empty.event_type = EventType::TokenIssued;
        empty.authorization_details_types.clear();
        empty.request_id = Some("req_\u{7f}\"2".into());
        vec![plain, odd, empty]
    }

    fn any_row() -> impl proptest::strategy::Strategy<Value = EventRow> {
        use proptest::prelude::*;
        let text = "[a-z0-9 .;,=+-]{0,6}|[a\"\\\\\u{0}\u{1f}\u{7f}\u{e9}\u{2028}\u{1f600}/]{0,4}";
        let opt = proptest::option::of(text);
        (
            (
                proptest::option::of(prop_oneof![Just(0u64), any::<u64>()]),
                opt.clone(),
                proptest::sample::select(EventType::ALL.to_vec()),
                text,
                opt.clone(),
                opt.clone(),
            ),
            (
                opt.clone(),
                opt.clone(),
                opt.clone(),
                proptest::collection::vec(text, 0..3),
                opt.clone(),
                opt,
            ),
        )
            .prop_map(
                |((li, lh, et, t, rq, cl), (ap, cr, aa, ty, bm, ss))| EventRow {
                    log_index: li,
                    leaf_hash: lh,
                    event_type: et,
                    time_utc: t,
                    request_id: rq,
                    client_id: cl,
                    approver_id: ap,
                    credential_id: cr,
                    aaguid: aa,
                    authorization_details_types: ty,
                    binding_message: bm,
                    statement_sha256: ss,
                },
            )
    }

    proptest::proptest! {
        /// The quick reader reads a row's line exactly when its texts need no escape, and then
        /// as the JSON reader does; on any line, what it reads is the JSON reader's row, in the
        /// X6 form.
        #[test]
        fn the_quick_row_reader_is_the_json_readers(
            row in any_row(),
            cut in 0usize..400,
            byte in proptest::prelude::any::<u8>(),
        ) {
            let line = row.to_json_line();
            let texts = [
                row.leaf_hash.as_deref(), Some(row.time_utc.as_str()), row.request_id.as_deref(),
                row.client_id.as_deref(), row.approver_id.as_deref(),
                row.credential_id.as_deref(), row.aaguid.as_deref(),
                row.binding_message.as_deref(), row.statement_sha256.as_deref(),
            ];
            let plain = |t: &str| !t.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
            let all_plain = texts.iter().flatten().all(|t| plain(t))
                && row.authorization_details_types.iter().all(|t| plain(t));
            let quick = read_x6(line.as_bytes());
            proptest::prop_assert_eq!(quick.is_some(), all_plain, "{}", line);
            // The line, then the line with one byte changed, one removed, one added.
            let mut lines = vec![line.clone().into_bytes()];
            let at = cut % (line.len() + 1);
            let mut changed = line.clone().into_bytes();
            if at < changed.len() {
                changed[at] = byte;
                lines.push(changed.clone());
                changed.remove(at);
                lines.push(changed);
            }
            let mut added = line.into_bytes();
            added.insert(at, byte);
            lines.push(added);
            for l in lines {
                if let Some(q) = read_x6(&l) {
                    let json: RowRef<'_> = serde_json::from_slice(&l)
                        .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
                    proptest::prop_assert!(written_as(&json, &l));
                    proptest::prop_assert!(written_as(&q, &l));
                    proptest::prop_assert_eq!(q.to_csv_record(), json.to_csv_record());
                    proptest::prop_assert_eq!(q.digest(), json.digest());
                }
            }
        }
    }

    #[test]
    fn line_indexes_are_the_json_readers() {
        for line in [
            "{\"index\":42,\"statement\":{}}",
            "{\"index\":0,\"statement\":{}}",
            "{\"index\":042,\"statement\":{}}",
            "{\"index\":99999999999999999999,\"statement\":{}}",
            "{\"index\":4",
            "{\"index\":,\"statement\":{}}",
            "{\"statement\":{},\"index\":7}",
            "{ \"index\": 7, \"statement\": {} }",
            "{\"index\":\"7\",\"statement\":{}}",
        ] {
            let quick = line_index(line.as_bytes()).ok();
            let json = serde_json::from_str::<LineIndex>(line)
                .ok()
                .map(|l| l.index);
            // The quick reader may take a line whose rest the workers refuse; where it answers,
            // it is the JSON reader's answer when that has one.
            if json.is_some() {
                assert_eq!(quick, json, "{line}");
            } else if quick.is_some() {
                assert!(
                    serde_json::from_str::<StatementLine>(line).is_err(),
                    "{line}"
                );
            }
        }
    }

    #[test]
    fn created_rows_are_for_requests() {
        let v1: countersign_verifier::Statement = serde_json::from_value(serde_json::json!({
            "version": 1, "log_origin": "o/log", "request_id": "req_\"1", "client_id": "c",
            "approver_id": "apv_a", "scope": "openid", "binding_message": "=Pay \u{e9}\n",
            "authorization_details": [{"type": "x"}, {"type": "y;z"}, {"no": "type"}],
            "requested_at": 1_767_225_600, "expires_at": 1_767_225_900, "decision": "approve"
        }))
        .unwrap();
        let mut v2 = v1.clone();
        v2.version = 2;
        v2.approver_id = String::new();
        v2.policy = Some(
            serde_json::from_value(serde_json::json!({
                "index": 4, "rule": "pay", "quorum": 2, "approvers": ["apv_a", "apv_b", "apv_c"]
            }))
            .unwrap(),
        );
        v2.authorization_details = serde_json::json!([]);
        for st in [v1, v2] {
            let ms = st.requested_at * 1000 + 7;
            let want = EventRow::for_request(EventType::RequestCreated, &st, ms);
            let c = created_row(&st, ms);
            assert!(written_as(&c.row(), want.to_json_line().as_bytes()));
            let line = want.to_json_line();
            let read: RowRef<'_> = serde_json::from_str(&line).unwrap();
            assert_eq!(c.row().digest(), read.digest());
        }
    }

    #[test]
    fn tree_hash_is_the_rfc6962_tree_hash() {
        let leaves: Vec<Hash> = (0u32..300_000)
            .map(|i| countersign_verifier::leaf_hash(&i.to_be_bytes()))
            .collect();
        for n in [
            0, 1, 2, 65_536, 65_537, 131_072, 131_073, 200_000, 262_144, 300_000,
        ] {
            assert_eq!(
                tree_hash(&leaves[..n]),
                root_from_leaf_hashes(&leaves[..n]),
                "{n}"
            );
        }
    }

    #[test]
    fn rows_read_in_place_are_event_rows() {
        for row in rows() {
            let line = row.to_json_line();
            let r: RowRef<'_> = serde_json::from_str(&line).unwrap();
            assert!(written_as(&r, line.as_bytes()), "{line}");
            assert_eq!(r.to_csv_record(), row.to_csv_record(), "{line}");
            // The digest is of the members: equal for the row as read, apart for any change.
            let digest = r.digest();
            let mut other = row.clone();
            other.binding_message = Some(format!("{:?}", other.binding_message));
            let other_line = other.to_json_line();
            let o: RowRef<'_> = serde_json::from_str(&other_line).unwrap();
            assert_ne!(o.digest(), digest, "{line}");
            let mut moved = row.clone();
            moved.client_id = None;
            moved.approver_id = Some(format!(
                "{}{}",
                row.client_id.clone().unwrap_or_default(),
                row.approver_id.clone().unwrap_or_default()
            ));
            let moved_line = moved.to_json_line();
            let m: RowRef<'_> = serde_json::from_str(&moved_line).unwrap();
            assert_ne!(m.digest(), digest, "{line}");
            assert_eq!(r.request_id.map(|t| t.0.into_owned()), row.request_id);
            // Other forms of the same row: read alike by both, and not the X6 form.
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let others = [
                serde_json::to_string_pretty(&v).unwrap(),
                line.replacen("\"req_", "\"\\u0072eq_", 1),
                line.replacen('{', "{ ", 1),
                line.replacen('}', ",\"log_index\":null}", 1),
                line.replacen('}', ",\"extra\":1}", 1),
                line.replacen("\"event_type\"", "\"Event_type\"", 1),
                line[..line.len() - 1].to_owned(),
                String::new(),
            ];
            for other in others {
                let owned = serde_json::from_str::<EventRow>(&other);
                let borrowed = serde_json::from_str::<RowRef<'_>>(&other);
                assert_eq!(owned.is_ok(), borrowed.is_ok(), "{other}");
                if let (Ok(o), Ok(b)) = (owned, borrowed) {
                    assert_eq!(
                        o.to_json_line().as_bytes() == other.as_bytes(),
                        written_as(&b, other.as_bytes()),
                        "{other}"
                    );
                    assert_eq!(o.to_csv_record(), b.to_csv_record(), "{other}");
                }
            }
        }
    }
}
