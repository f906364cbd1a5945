//! `countersign export`: a period of the log's decisions as one archive an auditor verifies
//! offline (`spec/export.md`), from a running server (public log API + audit API, with an
//! auditor's or the admin's token) or from a stopped server's data directory or a backup.
//!
//! The pipeline streams: hash tiles, then entry bundles from index 0 (each entry of the range
//! turned into its event row as it passes, its statement fetched page by page beside it), then
//! the events outside the log, then the report and the manifest. What it keeps in memory is the
//! tree's hashes (32 bytes a leaf), the enrolment entries (for bundles), the ids of the requests
//! decided in the range and the rows outside the log (sorted by time before they are written).

pub mod archive;
pub mod quorum;
pub mod report;
pub mod source;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use countersign_verifier::export::{
    csv_header, entry_bundles, event_row_of, hash_tiles, parse_rfc3339_ms, rfc3339_ms,
    split_entry_bundle, tile_path, EventRow, EventType, Manifest, ManifestRelyingParty,
    StatementLine, Withheld, EXPORT_FORMAT,
};
use countersign_verifier::{
    check_decision_statement, fold_subtrees, inclusion_proof_ranges, leaf_hash,
    root_from_leaf_hashes, verify_checkpoint, DecisionLink, Entry, EvidenceBundle, Hash,
    LoggedEntry, RelyingParty, VerifierKey, BUNDLE_VERSION, BUNDLE_VERSION_POLICY,
};
use indicatif::{ProgressBar, ProgressStyle};

use archive::{ArchiveWriter, FileWriter};
use report::{ReportData, ReportHeader};
use source::{Source, StatementItem};

/// `countersign export`.
#[derive(clap::Args, Clone, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["url", "data_dir"])))]
pub struct ExportArgs {
    /// Where to write the archive (a new directory; with --tar, a new file).
    #[arg(long)]
    pub out: PathBuf,
    /// Export from the first entry at or after this time (RFC 3339, e.g. 2026-11-01T00:00:00Z).
    #[arg(long, conflicts_with = "from_index")]
    pub from: Option<String>,
    /// Export from this log index.
    #[arg(long)]
    pub from_index: Option<u64>,
    /// Export up to (not including) the first entry at or after this time (RFC 3339).
    #[arg(long, conflicts_with = "to_index")]
    pub to: Option<String>,
    /// Export up to (not including) this log index (default: the checkpoint's tree size).
    #[arg(long)]
    pub to_index: Option<u64>,
    /// Also write each decision's evidence bundle (`bundles/<index>.json`).
    #[arg(long)]
    pub bundles: bool,
    /// Write one tar file instead of a directory.
    #[arg(long)]
    pub tar: bool,
    /// A running server to export from (with --token-file).
    #[arg(long, requires = "token_file")]
    pub url: Option<String>,
    /// A file holding an auditor's token (`countersign auditor add`) or the admin token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// A stopped server's data directory, or a backup of one, to export from.
    #[arg(long, conflicts_with = "url")]
    pub data_dir: Option<PathBuf>,
    /// The relying party ID approvals are made for, written to the manifest and bundles (a
    /// running server's is read from its evidence; a data directory does not hold it).
    #[arg(long)]
    pub rp_id: Option<String>,
    /// An origin approvals are made on (repeatable; with --rp-id).
    #[arg(long = "origin", requires = "rp_id")]
    pub origins: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// What an export wrote.
#[derive(Debug)]
pub struct ExportSummary {
    /// The archive's path.
    pub path: PathBuf,
    /// The index range.
    pub start: u64,
    /// End of the range (exclusive).
    pub end: u64,
    /// The checkpoint's tree size.
    pub tree_size: u64,
    /// Decisions with a statement.
    pub decisions: u64,
    /// Decisions without one.
    pub withheld: u64,
    /// Rows of events.jsonl.
    pub events: u64,
    /// Bytes written (without the manifest).
    pub bytes: u64,
    /// Seconds taken.
    pub seconds: f64,
}

/// The hashes of the whole tree, by tile level (level `t` holds the hashes of the complete
/// subtrees of height `8 t`).
struct TreeHashes {
    levels: Vec<Vec<Hash>>,
    size: u64,
}

impl TreeHashes {
    /// The hash of the complete subtree of height `level` at `index`.
    fn subtree(&self, level: u8, index: u64) -> anyhow::Result<Hash> {
        let (t, r) = (usize::from(level / 8), u32::from(level % 8));
        let hashes = self
            .levels
            .get(t)
            .ok_or_else(|| anyhow!("no tile level {t}"))?;
        let lo = usize::try_from(index << r)?;
        let hi = usize::try_from((index + 1) << r)?;
        let run = hashes
            .get(lo..hi)
            .ok_or_else(|| anyhow!("subtree {level}/{index} is outside the tiles"))?;
        Ok(root_from_leaf_hashes(run))
    }

    /// The inclusion proof of leaf `index` in the whole tree, sibling first.
    fn inclusion_proof(&self, index: u64) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        for range in inclusion_proof_ranges(index, self.size).map_err(|e| anyhow!("{e}"))? {
            let hashes = range
                .subtrees()
                .iter()
                .map(|s| self.subtree(s.level, s.index))
                .collect::<anyhow::Result<Vec<Hash>>>()?;
            let h = fold_subtrees(&hashes).ok_or_else(|| anyhow!("an empty proof range"))?;
            out.push(h.to_hex());
        }
        Ok(out)
    }
}

/// A progress bar on a terminal (hidden otherwise); `len` 0: a count without an end.
pub(crate) fn progress(quiet: bool, len: u64, what: &str) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    if len == 0 {
        let pb = ProgressBar::new_spinner();
        pb.set_style(
            ProgressStyle::with_template("{msg:>16} {spinner} {pos} ({per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        pb.set_message(what.to_owned());
        return pb;
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>16} [{bar:30}] {pos}/{len} ({per_sec}, {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_owned());
    pb
}

fn parse_time(s: &str, flag: &str) -> anyhow::Result<u64> {
    let t = humantime::parse_rfc3339_weak(s)
        .with_context(|| format!("{flag} {s:?} is not an RFC 3339 time (2026-11-01T00:00:00Z)"))?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| anyhow!("{flag} is before 1970"))?
        .as_millis();
    Ok(u64::try_from(ms)?)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Reads entry times for resolving `--from`/`--to`, one bundle at a time.
struct EntryTimes<'a> {
    src: &'a Source,
    size: u64,
    cached: Option<(u64, Vec<u64>)>,
}

impl EntryTimes<'_> {
    async fn time(&mut self, i: u64) -> anyhow::Result<u64> {
        let tile = i / 256;
        if self.cached.as_ref().map(|c| c.0) != Some(tile) {
            let width = (self.size - tile * 256).min(256);
            let b = self.src.tile(None, tile, width, self.size).await?;
            let times = split_entry_bundle(&b)
                .map_err(|e| anyhow!(e))?
                .into_iter()
                .map(entry_time)
                .collect::<anyhow::Result<Vec<u64>>>()?;
            self.cached = Some((tile, times));
        }
        let c = self.cached.as_ref().ok_or_else(|| anyhow!("no bundle"))?;
        c.1.get(usize::try_from(i % 256)?)
            .copied()
            .ok_or_else(|| anyhow!("entry {i} is missing from its bundle"))
    }

    /// The first index whose entry is at or after `t` (times are written in order).
    async fn first_at_or_after(&mut self, t: u64) -> anyhow::Result<u64> {
        let (mut lo, mut hi) = (0u64, self.size);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.time(mid).await? < t {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }
}

fn entry_time(e: &[u8]) -> anyhow::Result<u64> {
    Ok(Entry::decode(e)
        .map_err(|e| anyhow!("an entry does not decode: {e}"))?
        .time_ms())
}

/// Statements of the range, fetched a page at a time as the entries reach them.
struct Statements<'a> {
    src: &'a Source,
    next: Option<u64>,
    end: u64,
    queue: VecDeque<StatementItem>,
}

impl Statements<'_> {
    /// The statement of the decision at `index`, if the source holds one. Refuses a statement
    /// for an index the entries passed without asking (not a decision).
    async fn take(&mut self, index: u64) -> anyhow::Result<Option<StatementItem>> {
        loop {
            if let Some(front) = self.queue.front() {
                if front.index < index {
                    bail!(
                        "the source holds a statement for index {}, which is not a decision",
                        front.index
                    );
                }
                if front.index == index {
                    return Ok(self.queue.pop_front());
                }
                return Ok(None);
            }
            let Some(from) = self.next else {
                return Ok(None);
            };
            let (items, next) = self.src.statements(from, self.end).await?;
            if items.iter().any(|i| i.index < from || i.index >= self.end) {
                bail!(
                    "the source answered statements outside [{from}, {})",
                    self.end
                );
            }
            self.next = if items.is_empty() { None } else { next };
            self.queue.extend(items);
        }
    }

    async fn finish(mut self) -> anyhow::Result<()> {
        if let Some(extra) = self.take(self.end).await? {
            bail!(
                "the source holds a statement for index {}, which is not a decision",
                extra.index
            );
        }
        Ok(())
    }
}

/// Runs an export.
pub async fn run(a: ExportArgs) -> anyhow::Result<ExportSummary> {
    let started = Instant::now();
    let src = match (&a.url, &a.data_dir) {
        (Some(url), None) => {
            let tf = a
                .token_file
                .as_ref()
                .ok_or_else(|| anyhow!("--url needs --token-file"))?;
            Source::remote(url, tf)?
        }
        (None, Some(dir)) => Source::local(dir)?,
        _ => bail!("give either --url (with --token-file) or --data-dir"),
    };
    src.check_access().await?;
    let vkey = src.log_key().await?;
    let key = VerifierKey::parse(&vkey).map_err(|e| anyhow!("the log key {vkey:?}: {e}"))?;
    let note = src.checkpoint().await?;
    let cp = verify_checkpoint(note.as_bytes(), &key, &[])
        .map_err(|e| anyhow!("the checkpoint of {} does not verify: {e}", src.describe()))?;
    let size = cp.checkpoint.size;
    let origin = cp.checkpoint.origin.clone();

    // The range.
    let mut times = EntryTimes {
        src: &src,
        size,
        cached: None,
    };
    let from_ms = a
        .from
        .as_deref()
        .map(|s| parse_time(s, "--from"))
        .transpose()?;
    let to_ms = a.to.as_deref().map(|s| parse_time(s, "--to")).transpose()?;
    let start = match (a.from_index, from_ms) {
        (Some(i), _) => i,
        (None, Some(t)) => times.first_at_or_after(t).await?,
        (None, None) => 0,
    };
    let end = match (a.to_index, to_ms) {
        (Some(i), _) => i,
        (None, Some(t)) => times.first_at_or_after(t).await?,
        (None, None) => size,
    };
    if end > size {
        bail!("--to-index {end} is beyond the log's tree size {size}");
    }
    if start > end {
        bail!("the range [{start}, {end}) is empty the wrong way round: --from is after --to");
    }
    let generated = now_ms();
    let events_from = match from_ms {
        Some(t) => t,
        // From the log's first entry: every event before it too.
        None if start == 0 => 0,
        None if start < size => times.time(start).await?,
        None => generated,
    };
    let events_to = match to_ms {
        Some(t) => t,
        None if end < size => times.time(end).await?,
        None => generated,
    };
    drop(times);

    let mut w = ArchiveWriter::create(&a.out, a.tar)?;
    w.file("checkpoint", note.as_bytes())?;

    // Hash tiles.
    let tiles = hash_tiles(size);
    let pb = progress(a.quiet, tiles.len() as u64, "hash tiles");
    let mut levels: Vec<Vec<Hash>> = Vec::new();
    for (level, index, width) in tiles {
        let bytes = src.tile(Some(level), index, width, size).await?;
        if bytes.len() as u64 != 32 * width {
            bail!(
                "{} has {} bytes, not {}",
                tile_path(Some(level), index, width),
                bytes.len(),
                32 * width
            );
        }
        let l = usize::from(level);
        if levels.len() <= l {
            levels.push(Vec::new());
        }
        levels[l].extend(bytes.chunks_exact(32).filter_map(Hash::from_slice));
        w.file(&tile_path(Some(level), index, width), &bytes)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    if root_from_leaf_hashes(levels.first().map(Vec::as_slice).unwrap_or(&[])) != cp.checkpoint.root
    {
        bail!("the source's tiles do not give its checkpoint's root: refusing to write an archive that cannot verify");
    }
    let tree = TreeHashes { levels, size };
    let leaves = tree.levels.first().map(Vec::as_slice).unwrap_or(&[]);

    // Relying party: flags, else a running server's evidence.
    let mut rp: Option<RelyingParty> = a.rp_id.clone().map(|rp_id| RelyingParty {
        rp_id,
        origins: a.origins.clone(),
    });

    // Entries, statements and the log's rows.
    let mut statements = Statements {
        src: &src,
        next: Some(start),
        end,
        queue: VecDeque::new(),
    };
    let mut st_file = w.open("statements.jsonl")?;
    let mut jsonl = w.open("events.jsonl")?;
    let mut csv = w.open("events.csv")?;
    csv.write(csv_header().as_bytes())?;
    let mut report = ReportData::default();
    let mut withheld = Vec::new();
    let mut outside: Vec<(EventRow, u64)> = Vec::new();
    let mut decided: HashSet<String> = HashSet::new();
    // Requests under a version 2 statement: their quorum, distinct approvers so far, and
    // whether one denied. One that ends short of its quorum, denied by no one, may have expired
    // (X10).
    let mut quorum_progress: HashMap<String, (u64, HashSet<String>, bool)> = HashMap::new();
    let mut enrolments: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut quorums = quorum::QuorumBundles::default();
    // One request.created and one token.issued row per request, however many approvers
    // decided it (spec/export.md X10).
    let mut tokens: HashSet<String> = HashSet::new();
    let mut decisions = 0u64;
    let mut rows = 0u64;
    let bundles = entry_bundles(end);
    let pb = progress(a.quiet, end, "entries");
    for (tile, width) in bundles {
        let b = src.tile(None, tile, width, size).await?;
        let path = tile_path(None, tile, width);
        let entries = split_entry_bundle(&b).map_err(|e| anyhow!("{path}: {e}"))?;
        if entries.len() as u64 != width {
            bail!("{path} holds {} entries, not {width}", entries.len());
        }
        for (k, e) in entries.iter().enumerate() {
            let i = tile * 256 + k as u64;
            let leaf = leaf_hash(e);
            if Some(&leaf) != leaves.get(usize::try_from(i)?) {
                bail!("entry {i} does not hash to its leaf in the tiles");
            }
            let decoded = Entry::decode(e).map_err(|x| anyhow!("entry {i}: {x}"))?;
            if a.bundles && matches!(decoded, Entry::Enrolment(_) | Entry::Policy(_)) {
                match decoded {
                    Entry::Policy(_) => quorums.policy_entry(i, e),
                    _ => {
                        enrolments.insert(i, e.to_vec());
                    }
                }
            }
            if i < start {
                continue;
            }
            let item = match &decoded {
                Entry::Decision(d) => {
                    let item = statements.take(i).await?;
                    // What the archive verifier checks of it: a statement that would fail there
                    // is refused here, not written.
                    if let Some(s) = &item {
                        check_decision_statement(d, &s.statement)
                            .map_err(|x| anyhow!("the source's statement for decision {i}: {x}"))?;
                    }
                    item
                }
                _ => None,
            };
            let row = event_row_of(i, &leaf, &decoded, item.as_ref().map(|s| &s.statement))
                .map_err(|x| anyhow!("entry {i}: {x}"))?;
            let requested_ms = item.as_ref().map(|s| s.statement.requested_at * 1000);
            report.add(&row, requested_ms);
            write_row(&mut jsonl, &mut csv, &row)?;
            rows += 1;
            if let Entry::Decision(d) = &decoded {
                match &item {
                    None => withheld.push(Withheld {
                        index: i,
                        reason: "not_held".into(),
                    }),
                    Some(s) => {
                        decisions += 1;
                        let line = serde_json::to_string(&StatementLine {
                            index: i,
                            statement: s.statement.clone(),
                        })?;
                        st_file.write(line.as_bytes())?;
                        st_file.write(b"\n")?;
                        if let Some(p) = &s.statement.policy {
                            let (_, approvers, denied) = quorum_progress
                                .entry(s.statement.request_id.clone())
                                .or_insert_with(|| (p.quorum, HashSet::new(), false));
                            match d.decision {
                                countersign_verifier::Decision::Approve => {
                                    approvers.insert(d.approver_id.clone());
                                }
                                countersign_verifier::Decision::Deny => *denied = true,
                            }
                        }
                        if decided.insert(s.statement.request_id.clone()) {
                            let created = EventRow::for_request(
                                EventType::RequestCreated,
                                &s.statement,
                                s.statement.requested_at * 1000,
                            );
                            outside.push((created, s.statement.requested_at * 1000));
                        }
                        let token = s.token_issued_at.as_ref().filter(|_| {
                            d.decision == countersign_verifier::Decision::Approve
                                && tokens.insert(s.statement.request_id.clone())
                        });
                        if let Some(t) = token {
                            let ms = parse_rfc3339_ms(t)
                                .ok_or_else(|| anyhow!("token_issued_at {t:?} of index {i}"))?;
                            outside.push((
                                EventRow::for_request(EventType::TokenIssued, &s.statement, ms),
                                ms,
                            ));
                        }
                        if a.bundles {
                            if rp.is_none() {
                                rp = src.relying_party_of(&s.statement.request_id).await?;
                            }
                            let rp = rp.clone().ok_or_else(|| {
                                anyhow!("--bundles from a data directory needs --rp-id and --origin (as given to serve)")
                            })?;
                            let enr = enrolments.get(&d.enrolment_index).ok_or_else(|| {
                                anyhow!(
                                    "decision {i} names enrolment {} which is not an enrolment",
                                    d.enrolment_index
                                )
                            })?;
                            let (version, policy, approvals) = match quorums
                                .decision(i, e, d, &s.statement)
                                .map_err(|x| anyhow!(x))?
                            {
                                quorum::Links::Single => (BUNDLE_VERSION, None, Vec::new()),
                                // An approval that completes no quorum has no bundle: none
                                // could verify (spec/export.md X9, X10).
                                quorum::Links::None => {
                                    pb.set_position(i + 1 - start);
                                    continue;
                                }
                                quorum::Links::Quorum { policy, approvals } => {
                                    let mut links = Vec::with_capacity(approvals.len());
                                    for (di, de, ei) in approvals {
                                        let ee = enrolments.get(&ei).ok_or_else(|| {
                                                anyhow!("decision {di} names enrolment {ei} which is not an enrolment")
                                            })?;
                                        links.push(DecisionLink {
                                            decision: LoggedEntry {
                                                index: di,
                                                entry: hex::encode(de),
                                                inclusion_proof: tree.inclusion_proof(di)?,
                                            },
                                            enrolment: LoggedEntry {
                                                index: ei,
                                                entry: hex::encode(ee),
                                                inclusion_proof: tree.inclusion_proof(ei)?,
                                            },
                                        });
                                    }
                                    let policy = LoggedEntry {
                                        index: policy.0,
                                        entry: hex::encode(&policy.1),
                                        inclusion_proof: tree.inclusion_proof(policy.0)?,
                                    };
                                    (BUNDLE_VERSION_POLICY, Some(policy), links)
                                }
                            };
                            let bundle = EvidenceBundle {
                                version,
                                statement: s.statement.clone(),
                                decision: LoggedEntry {
                                    index: i,
                                    entry: hex::encode(e),
                                    inclusion_proof: tree.inclusion_proof(i)?,
                                },
                                enrolment: LoggedEntry {
                                    index: d.enrolment_index,
                                    entry: hex::encode(enr),
                                    inclusion_proof: tree.inclusion_proof(d.enrolment_index)?,
                                },
                                approvals,
                                policy,
                                checkpoint: note.clone(),
                                relying_party: rp,
                                parties: None,
                            };
                            w.file(&format!("bundles/{i}.json"), bundle.to_json().as_bytes())?;
                        }
                    }
                }
            }
            pb.set_position(i + 1 - start);
        }
        w.file(&path, &b)?;
    }
    pb.finish_and_clear();
    statements.finish().await?;
    w.close(st_file)?;

    // Events outside the log: the feed's rows of requests not decided in the range.
    let pb = progress(a.quiet, 0, "audit events");
    let mut cursor = src.first_cursor();
    let mut seen: HashSet<(String, EventType)> = HashSet::new();
    loop {
        let (page, next) = src.events(&cursor).await?;
        if page.is_empty() {
            break;
        }
        pb.inc(page.len() as u64);
        for r in page {
            if !matches!(
                r.event_type,
                EventType::RequestCreated | EventType::RequestExpired
            ) {
                continue;
            }
            let Some(id) = r.request_id.clone() else {
                continue;
            };
            // A decided request's request.created row is made from its statement above; its
            // request.expired row is kept only for an expiry short of a quorum (X10).
            if decided.contains(&id) {
                let short = r.event_type == EventType::RequestExpired
                    && quorum_progress
                        .get(&id)
                        .is_some_and(|(quorum, approvers, denied)| {
                            !denied && (approvers.len() as u64) < *quorum
                        });
                if !short {
                    continue;
                }
            }
            let Some(t) = parse_rfc3339_ms(&r.time_utc) else {
                bail!("the audit feed has a row with the time {:?}", r.time_utc);
            };
            if t < events_from || t >= events_to || !seen.insert((id, r.event_type)) {
                continue;
            }
            outside.push((r, t));
        }
        cursor = next;
    }
    pb.finish_and_clear();
    outside.sort_by(|x, y| {
        (x.1, &x.0.request_id, x.0.event_type).cmp(&(y.1, &y.0.request_id, y.0.event_type))
    });
    for (r, _) in &outside {
        report.add(r, None);
        write_row(&mut jsonl, &mut csv, r)?;
        rows += 1;
    }
    w.close(jsonl)?;
    w.close(csv)?;

    let rp_manifest = rp.clone().map_or(
        ManifestRelyingParty {
            rp_id: String::new(),
            origins: Vec::new(),
        },
        |r| ManifestRelyingParty {
            rp_id: r.rp_id,
            origins: r.origins,
        },
    );
    let (events_from_s, events_to_s, generated_s) = (
        rfc3339_ms(events_from),
        rfc3339_ms(events_to.max(events_from)),
        rfc3339_ms(generated),
    );
    let html = report.render(&ReportHeader {
        origin: &origin,
        log_key: &vkey,
        start,
        end,
        tree_size: size,
        events_from: &events_from_s,
        events_to: &events_to_s,
        generated_at: &generated_s,
        rp_id: rp.as_ref().map(|r| r.rp_id.as_str()),
        withheld: withheld.len(),
    });
    w.file("report.html", html.as_bytes())?;
    let bytes = w.bytes();
    let withheld_n = withheld.len() as u64;
    let path = w.finish(Manifest {
        format: EXPORT_FORMAT.into(),
        log_origin: origin,
        log_key: vkey,
        start,
        end,
        tree_size: size,
        events_from: events_from_s,
        events_to: events_to_s,
        generated_at: generated_s,
        tool: format!("countersign {}", env!("CARGO_PKG_VERSION")),
        relying_party: rp_manifest,
        withheld,
        files: Default::default(),
    })?;
    Ok(ExportSummary {
        path,
        start,
        end,
        tree_size: size,
        decisions,
        withheld: withheld_n,
        events: rows,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn write_row(jsonl: &mut FileWriter, csv: &mut FileWriter, row: &EventRow) -> anyhow::Result<()> {
    jsonl.write(row.to_json_line().as_bytes())?;
    jsonl.write(b"\n")?;
    csv.write(row.to_csv_record().as_bytes())
}
