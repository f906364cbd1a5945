//! The rows, manifest and totals of an export archive (`spec/export.md`): one definition shared
//! by the exporter, the server's audit feed (`GET /v1/audit/events`) and the archive verifier,
//! so that what the verifier recomputes is what the others wrote.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::entry::{Entry, EntryError};
use crate::hash::{leaf_hash, sha256, Hash};
use crate::statement::{Statement, StatementError};

/// The `format` of a version 1 archive's manifest.
pub const EXPORT_FORMAT: &str = "countersign-export/v1";

/// The columns of `events.jsonl` and `events.csv`, in order (X6).
pub const EVENT_COLUMNS: [&str; 12] = [
    "log_index",
    "leaf_hash",
    "event_type",
    "time_utc",
    "request_id",
    "client_id",
    "approver_id",
    "credential_id",
    "aaguid",
    "authorization_details_types",
    "binding_message",
    "statement_sha256",
];

/// What an event row records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// A decision entry approving its statement.
    #[serde(rename = "decision.approved")]
    DecisionApproved,
    /// A decision entry denying its statement.
    #[serde(rename = "decision.denied")]
    DecisionDenied,
    /// An enrolment entry.
    #[serde(rename = "credential.enrolled")]
    CredentialEnrolled,
    /// A revocation entry.
    #[serde(rename = "credential.revoked")]
    CredentialRevoked,
    /// A request was made (outside the log).
    #[serde(rename = "request.created")]
    RequestCreated,
    /// A request expired undecided (outside the log).
    #[serde(rename = "request.expired")]
    RequestExpired,
    /// The tokens of an approved request were handed out (outside the log).
    #[serde(rename = "token.issued")]
    TokenIssued,
    /// A policy entry: a version of the approval policy took effect.
    #[serde(rename = "policy.changed")]
    PolicyChanged,
}

impl EventType {
    /// Every event type, in the order of [`Totals`].
    pub const ALL: [EventType; 8] = [
        EventType::DecisionApproved,
        EventType::DecisionDenied,
        EventType::CredentialEnrolled,
        EventType::CredentialRevoked,
        EventType::RequestCreated,
        EventType::RequestExpired,
        EventType::TokenIssued,
        EventType::PolicyChanged,
    ];

    /// The name used in the `event_type` column.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::DecisionApproved => "decision.approved",
            EventType::DecisionDenied => "decision.denied",
            EventType::CredentialEnrolled => "credential.enrolled",
            EventType::CredentialRevoked => "credential.revoked",
            EventType::RequestCreated => "request.created",
            EventType::RequestExpired => "request.expired",
            EventType::TokenIssued => "token.issued",
            EventType::PolicyChanged => "policy.changed",
        }
    }

    /// Whether the event is an entry of the log.
    pub fn in_log(self) -> bool {
        matches!(
            self,
            EventType::DecisionApproved
                | EventType::DecisionDenied
                | EventType::CredentialEnrolled
                | EventType::CredentialRevoked
                | EventType::PolicyChanged
        )
    }
}

/// One row of `events.jsonl` (and of the audit feed): the columns of X6, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRow {
    /// The entry's index, for a log event.
    pub log_index: Option<u64>,
    /// The entry's leaf hash (hex), for a log event.
    pub leaf_hash: Option<String>,
    /// What happened.
    pub event_type: EventType,
    /// When, RFC 3339 UTC with milliseconds.
    pub time_utc: String,
    /// The statement's request id.
    pub request_id: Option<String>,
    /// The statement's client id.
    pub client_id: Option<String>,
    /// The approver.
    pub approver_id: Option<String>,
    /// The credential id, base64url without padding.
    pub credential_id: Option<String>,
    /// An enrolment's AAGUID, `8-4-4-4-12` lowercase hex.
    pub aaguid: Option<String>,
    /// The `type` of each `authorization_details` entry, in order.
    pub authorization_details_types: Vec<String>,
    /// The statement's binding message.
    pub binding_message: Option<String>,
    /// A decision's statement hash (hex).
    pub statement_sha256: Option<String>,
}

/// Why a row could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowError {
    /// The entry does not decode.
    Entry(EntryError),
    /// The statement is not valid.
    Statement(StatementError),
    /// A statement was given for an entry that is not a decision.
    StatementForNonDecision,
    /// The statement does not hash to the decision's statement hash, or names another
    /// approver or decision.
    StatementMismatch(&'static str),
}

impl core::fmt::Display for RowError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RowError::Entry(e) => write!(f, "entry: {e}"),
            RowError::Statement(e) => write!(f, "statement: {e}"),
            RowError::StatementForNonDecision => {
                f.write_str("a statement for an entry that is not a decision")
            }
            RowError::StatementMismatch(what) => {
                write!(f, "the statement's {what} is not the decision's")
            }
        }
    }
}

impl EventRow {
    /// A row outside the log about a request, made from its statement (`decision` is not read).
    pub fn for_request(event_type: EventType, statement: &Statement, time_ms: u64) -> EventRow {
        EventRow {
            log_index: None,
            leaf_hash: None,
            event_type,
            time_utc: rfc3339_ms(time_ms),
            request_id: Some(statement.request_id.clone()),
            client_id: Some(statement.client_id.clone()),
            // A request under a policy is for its eligible approvers, space-separated.
            approver_id: Some(statement.eligible_approvers().join(" ")),
            credential_id: None,
            aaguid: None,
            authorization_details_types: detail_types(statement),
            binding_message: Some(statement.binding_message.clone()),
            statement_sha256: None,
        }
    }

    /// The row's `events.jsonl` line, without the newline.
    pub fn to_json_line(&self) -> String {
        // Every member is a string, number, array of strings or null: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The row's `events.csv` record, with its CRLF (X7).
    pub fn to_csv_record(&self) -> String {
        fn text(o: &Option<String>) -> &str {
            o.as_deref().unwrap_or("")
        }
        csv_record(
            self.log_index,
            [
                text(&self.leaf_hash),
                self.event_type.as_str(),
                &self.time_utc,
                text(&self.request_id),
                text(&self.client_id),
                text(&self.approver_id),
                text(&self.credential_id),
                text(&self.aaguid),
                &self.authorization_details_types.join(";"),
                text(&self.binding_message),
                text(&self.statement_sha256),
            ],
        )
    }
}

/// The `events.csv` record (X7), with its CRLF, of a row given by its columns: the log index,
/// then the texts of the other eleven in order (`""` for null, the detail types joined by `;`).
pub fn csv_record(log_index: Option<u64>, texts: [&str; 11]) -> String {
    let index = log_index.map(|i| i.to_string()).unwrap_or_default();
    // One allocation for the record (the fields are written into it, not copied first).
    let mut out =
        String::with_capacity(index.len() + texts.iter().map(|f| f.len() + 1).sum::<usize>() + 8);
    push_csv_field(&mut out, &index);
    for f in texts {
        out.push(',');
        push_csv_field(&mut out, f);
    }
    out.push_str("\r\n");
    out
}

/// The header line of `events.csv`, with its CRLF.
pub fn csv_header() -> String {
    let mut s = EVENT_COLUMNS.join(",");
    s.push_str("\r\n");
    s
}

/// One CSV field: formula-injection escaped, then quoted if it must be (X7).
pub fn csv_field(value: &str) -> String {
    let mut v = String::with_capacity(value.len() + 3);
    push_csv_field(&mut v, value);
    v
}

/// Appends [`csv_field`]`(value)` to `out`.
fn push_csv_field(out: &mut String, value: &str) {
    // Byte scans: the characters looked for are ASCII, so no UTF-8 decoding is needed (a
    // character pattern decodes every character; this runs for every field of an archive).
    let quote = value
        .bytes()
        .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
    if quote {
        out.push('"');
    }
    if matches!(
        value.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    ) {
        out.push('\'');
    }
    if quote {
        for (i, part) in value.split('"').enumerate() {
            if i > 0 {
                out.push_str("\"\"");
            }
            out.push_str(part);
        }
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// The `type` of each `authorization_details` entry of a statement, in order.
pub fn detail_types(statement: &Statement) -> Vec<String> {
    detail_type_names(statement).map(String::from).collect()
}

/// [`detail_types`], borrowed from the statement.
pub fn detail_type_names(statement: &Statement) -> impl Iterator<Item = &str> {
    statement
        .authorization_details
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("type").and_then(|t| t.as_str()))
}

/// The log event row of the entry at `index` (X6, first run). For a decision, `statement` is
/// its statement (checked to hash to the entry's statement hash, and to name its approver and
/// decision), or `None` when withheld.
pub fn log_event_row(
    index: u64,
    entry: &[u8],
    statement: Option<&Statement>,
) -> Result<EventRow, RowError> {
    let decoded = Entry::decode(entry).map_err(RowError::Entry)?;
    if let (Entry::Decision(d), Some(st)) = (&decoded, statement) {
        let canonical = st.canonical_json().map_err(RowError::Statement)?;
        if sha256(&canonical) != d.statement_hash {
            return Err(RowError::StatementMismatch("hash"));
        }
        if !st.is_eligible(&d.approver_id) {
            return Err(RowError::StatementMismatch("approver"));
        }
        if st.decision != d.decision.as_str() {
            return Err(RowError::StatementMismatch("decision"));
        }
    }
    event_row_of(index, &leaf_hash(entry), &decoded, statement)
}

/// [`log_event_row`] of an entry already decoded and hashed (`leaf`), for a caller that has
/// checked the decision's `statement` against it itself (the archive verifier with
/// `check_decision_statement`, the server with the statement it just appended): the statement
/// is not canonicalised and hashed again. A statement for an entry that is not a decision is
/// still refused.
pub fn event_row_of(
    index: u64,
    leaf: &Hash,
    entry: &Entry,
    statement: Option<&Statement>,
) -> Result<EventRow, RowError> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let mut row = EventRow {
        log_index: Some(index),
        leaf_hash: Some(leaf.to_hex()),
        event_type: EventType::CredentialEnrolled,
        time_utc: String::new(),
        request_id: None,
        client_id: None,
        approver_id: None,
        credential_id: None,
        aaguid: None,
        authorization_details_types: Vec::new(),
        binding_message: None,
        statement_sha256: None,
    };
    match entry {
        Entry::Enrolment(_) | Entry::Revocation(_) | Entry::Policy(_) if statement.is_some() => {
            return Err(RowError::StatementForNonDecision);
        }
        Entry::Enrolment(e) => {
            row.time_utc = rfc3339_ms(e.time_ms);
            row.approver_id = Some(e.approver_id.clone());
            row.credential_id = Some(b64(&e.credential_id));
            row.aaguid = Some(uuid_text(&e.aaguid));
        }
        Entry::Revocation(r) => {
            row.event_type = EventType::CredentialRevoked;
            row.time_utc = rfc3339_ms(r.time_ms);
            row.approver_id = Some(r.approver_id.clone());
            row.credential_id = Some(b64(&r.credential_id));
        }
        Entry::Policy(p) => {
            row.event_type = EventType::PolicyChanged;
            row.time_utc = rfc3339_ms(p.time_ms);
            // The policy hash, in the column that holds a decision's statement hash.
            row.statement_sha256 = Some(hex::encode(p.policy_hash()));
        }
        Entry::Decision(d) => {
            row.event_type = match d.decision {
                crate::entry::Decision::Approve => EventType::DecisionApproved,
                crate::entry::Decision::Deny => EventType::DecisionDenied,
            };
            row.time_utc = rfc3339_ms(d.time_ms);
            row.statement_sha256 = Some(Hash(d.statement_hash).to_hex());
            row.credential_id = Some(b64(&d.credential_id));
            if let Some(st) = statement {
                row.request_id = Some(st.request_id.clone());
                row.client_id = Some(st.client_id.clone());
                row.authorization_details_types = detail_types(st);
                row.binding_message = Some(st.binding_message.clone());
            }
            row.approver_id = Some(d.approver_id.clone());
        }
    }
    Ok(row)
}

/// A 16-byte AAGUID as `8-4-4-4-12` lowercase hex.
pub fn uuid_text(b: &[u8; 16]) -> String {
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds
/// (`2026-01-01T00:01:40.000Z`).
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    if y > 9999 {
        // Five digits or more: no longer the 24-character form, written the general way.
        return format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60,
            ms % 1000
        );
    }
    // The usual case, digit by digit: this runs for every row of an archive.
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, m);
    put(8, 2, d);
    put(11, 2, rem / 3600);
    put(14, 2, rem / 60 % 60);
    put(17, 2, rem % 60);
    put(20, 3, ms % 1000);
    // ASCII digits and separators: one copy, not a character at a time.
    String::from(core::str::from_utf8(&out).unwrap_or_default())
}

/// Parses what [`rfc3339_ms`] writes (exactly that form) back to milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 24
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[23] != b'Z'
    {
        return None;
    }
    let num = |r: core::ops::Range<usize>| -> Option<u64> {
        b[r].iter().try_fold(0u64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0'))
        })
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = match mo {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    // Refuses dates such as 02-30 as well as hours past 23.
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || d == 0
        || d > month_days
        || h > 23
        || mi > 59
        || se > 59
    {
        return None;
    }
    let days = days_from_civil(y, mo, d)?;
    Some(((days * 86_400 + h * 3600 + mi * 60 + se) * 1000) + ms)
}

/// Days since 1970-01-01 to the proleptic Gregorian (year, month, day) (H. Hinnant's
/// `civil_from_days`, restricted to dates from 1970).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y % 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

/// A line of `statements.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementLine {
    /// The decision entry's index.
    pub index: u64,
    /// Its statement.
    pub statement: Statement,
}

/// A decision in the range whose statement is not in the archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Withheld {
    /// The decision entry's index.
    pub index: u64,
    /// Why: `not_held`.
    pub reason: String,
}

/// The relying party named in a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestRelyingParty {
    /// The WebAuthn RP ID.
    pub rp_id: String,
    /// The origins approvals are made on.
    pub origins: Vec<String>,
}

/// `MANIFEST.json` (X1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`EXPORT_FORMAT`].
    pub format: String,
    /// The log's origin.
    pub log_origin: String,
    /// The log's verifier key as the exporter knew it.
    pub log_key: String,
    /// First exported index.
    pub start: u64,
    /// One past the last exported index.
    pub end: u64,
    /// The checkpoint's tree size.
    pub tree_size: u64,
    /// Start of the window of events outside the log (RFC 3339 UTC).
    pub events_from: String,
    /// End (exclusive) of that window.
    pub events_to: String,
    /// When the archive was written.
    pub generated_at: String,
    /// The exporter's name and version.
    pub tool: String,
    /// The relying party as the exporter knew it.
    pub relying_party: ManifestRelyingParty,
    /// Decisions in the range without a statement.
    pub withheld: Vec<Withheld>,
    /// Every other file, by relative path, to the SHA-256 of its bytes (hex).
    pub files: BTreeMap<String, String>,
}

/// The rows of `events.jsonl` counted by type: the totals `report.html` carries (X8).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// `decision.approved` rows.
    pub decisions_approved: u64,
    /// `decision.denied` rows.
    pub decisions_denied: u64,
    /// `credential.enrolled` rows.
    pub credentials_enrolled: u64,
    /// `credential.revoked` rows.
    pub credentials_revoked: u64,
    /// `request.created` rows.
    pub requests_created: u64,
    /// `request.expired` rows.
    pub requests_expired: u64,
    /// `token.issued` rows.
    pub tokens_issued: u64,
    /// `policy.changed` rows (absent in archives written before policy entries existed).
    #[serde(default)]
    pub policies_changed: u64,
}

impl Totals {
    /// Counts one row.
    pub fn add(&mut self, t: EventType) {
        let c = match t {
            EventType::DecisionApproved => &mut self.decisions_approved,
            EventType::DecisionDenied => &mut self.decisions_denied,
            EventType::CredentialEnrolled => &mut self.credentials_enrolled,
            EventType::CredentialRevoked => &mut self.credentials_revoked,
            EventType::RequestCreated => &mut self.requests_created,
            EventType::RequestExpired => &mut self.requests_expired,
            EventType::TokenIssued => &mut self.tokens_issued,
            EventType::PolicyChanged => &mut self.policies_changed,
        };
        *c += 1;
    }
}

/// The `id` of the `<script type="application/json">` element of `report.html` holding its
/// [`Totals`].
pub const TOTALS_ELEMENT_ID: &str = "countersign-totals";

/// The C2SP tlog-tiles path of a tile: `tile/<L>/<N>[.p/<W>]` for hash tiles (`level` is
/// `Some`), `tile/entries/<N>[.p/<W>]` for entry bundles; `width` below 256 makes it partial.
pub fn tile_path(level: Option<u8>, index: u64, width: u64) -> String {
    let mut p = match level {
        Some(l) => format!("tile/{l}/{}", tile_index_path(index)),
        None => format!("tile/entries/{}", tile_index_path(index)),
    };
    if width < 256 {
        p.push_str(&format!(".p/{width}"));
    }
    p
}

/// A tile index in the C2SP path form: groups of three digits, all but the last prefixed `x`
/// (`1234067` is `x001/x234/067`).
pub fn tile_index_path(mut n: u64) -> String {
    let mut parts = alloc::vec![format!("{:03}", n % 1000)];
    n /= 1000;
    while n > 0 {
        parts.push(format!("x{:03}", n % 1000));
        n /= 1000;
    }
    parts.reverse();
    parts.join("/")
}

/// Where a complete subtree's hash is read from C2SP hash tiles: the RFC 6962 root of the
/// hashes `lo..hi` of the hash tile `level/index` of `width` hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileRun {
    /// The tile level.
    pub level: u8,
    /// The tile index.
    pub index: u64,
    /// The tile's width in a tree of the given size (256 for a full tile).
    pub width: u64,
    /// The first hash of the run, within the tile.
    pub lo: usize,
    /// One past the last.
    pub hi: usize,
}

/// Where the hash of complete subtree `s` is found in the hash tiles of a tree of `tree_size`
/// leaves: the tile holding its hashes at the tile level at or below it (`s.level / 8`), and
/// the run of them whose root it is. `None` if the tree has no such complete subtree.
pub fn subtree_in_tiles(s: crate::proof::Subtree, tree_size: u64) -> Option<TileRun> {
    let level = s.level / 8;
    let r = u32::from(s.level % 8);
    let first = s.index.checked_shl(r)?;
    let count = 1u64 << r;
    let available = tree_size.checked_shr(8 * u32::from(level)).unwrap_or(0);
    if first.checked_add(count)? > available {
        return None;
    }
    let index = first / 256;
    let width = (available - index * 256).min(256);
    let lo = usize::try_from(first - index * 256).ok()?;
    Some(TileRun {
        level,
        index,
        width,
        lo,
        hi: lo + usize::try_from(count).ok()?,
    })
}

/// Every hash tile of a tree of `tree_size` leaves (X3): `(level, index, width)`, by level then
/// index.
pub fn hash_tiles(tree_size: u64) -> Vec<(u8, u64, u64)> {
    let mut out = Vec::new();
    let mut level = 0u8;
    loop {
        let n = tree_size.checked_shr(8 * u32::from(level)).unwrap_or(0);
        if n == 0 {
            break;
        }
        for i in 0..n / 256 {
            out.push((level, i, 256));
        }
        if n % 256 > 0 {
            out.push((level, n / 256, n % 256));
        }
        level += 1;
    }
    out
}

/// The entries of a C2SP entry bundle (each preceded by its 16-bit big-endian length).
pub fn split_entry_bundle(bytes: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let [a, b, tail @ ..] = rest else {
            return Err("an entry bundle ends inside a length");
        };
        let len = usize::from(u16::from_be_bytes([*a, *b]));
        if tail.len() < len {
            return Err("an entry bundle ends inside an entry");
        }
        out.push(&tail[..len]);
        rest = &tail[len..];
    }
    Ok(out)
}

/// Every entry bundle of the entries `[0, end)` (X4): `(index, width)`.
pub fn entry_bundles(end: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = (0..end / 256).map(|i| (i, 256)).collect();
    if end % 256 > 0 {
        out.push((end / 256, end % 256));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn times_round_trip_and_refuse_other_forms() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_767_225_700_123), "2026-01-01T00:01:40.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        for ms in [
            0u64,
            1,
            951_782_400_000,
            1_767_225_700_123,
            4_102_444_799_999,
        ] {
            assert_eq!(parse_rfc3339_ms(&rfc3339_ms(ms)), Some(ms));
        }
        for bad in [
            "2026-02-30T00:00:00.000Z",
            "2026-01-01T00:00:00Z",
            "2026-01-01 00:00:00.000Z",
            "2026-01-01T24:00:00.000Z",
            "2026-01-01T00:00:00.000+00:00",
            "+026-01-01T00:00:00.000Z",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    /// The general form of [`rfc3339_ms`], as it was written before the digits were.
    fn rfc3339_ms_by_format(ms: u64) -> String {
        let secs = ms / 1000;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(secs / 86_400);
        std::format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60,
            ms % 1000
        )
    }

    proptest::proptest! {
        /// Times are written as the general form writes them, and read back.
        #[test]
        fn times_are_written_and_read_back(ms in 0u64..400_000_000_000_000) {
            let text = rfc3339_ms(ms);
            proptest::prop_assert_eq!(&text, &rfc3339_ms_by_format(ms));
            let back = parse_rfc3339_ms(&text);
            proptest::prop_assert_eq!(back, (text.len() == 24).then_some(ms));
        }

        /// A text of the form is read as the earlier reader read it: the fields in range, and
        /// then only if the time they give is written back the same (so 02-30 is refused).
        #[test]
        fn times_are_read_only_in_their_one_form(
            t in "(19[6-9][0-9]|2[01][0-9][0-9]|9999)-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9]\\.[0-9]{3}Z"
        ) {
            let earlier = (|| {
                let num = |r: core::ops::Range<usize>| t[r].parse::<u64>().ok();
                let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
                let (h, mi, se, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
                if !(1970..=9999).contains(&y)
                    || !(1..=12).contains(&mo)
                    || d == 0
                    || h > 23
                    || mi > 59
                    || se > 59
                {
                    return None;
                }
                let days = days_from_civil(y, mo, d)?;
                let out = ((days * 86_400 + h * 3600 + mi * 60 + se) * 1000) + ms;
                (rfc3339_ms_by_format(out) == t).then_some(out)
            })();
            proptest::prop_assert_eq!(parse_rfc3339_ms(&t), earlier);
        }

        /// The field is written as X7 defines it: the formula prefix, then the whole quoted
        /// with its quotes doubled if it holds a comma, quote, CR or LF (written here the plain
        /// way, as the record writer did before it wrote fields in place).
        #[test]
        fn csv_fields_are_x7s(value in "[=+@\\-\t\r]?[a-z,\"\r\n ;=+-]{0,12}") {
            let mut want = String::new();
            if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                want.push('\'');
            }
            want.push_str(&value);
            if want.contains([',', '"', '\r', '\n']) {
                want = std::format!("\"{}\"", want.replace('"', "\"\""));
            }
            proptest::prop_assert_eq!(csv_field(&value), want);
        }
    }

    #[test]
    fn csv_fields_cannot_run_as_formulas() {
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("-5 EUR"), "'-5 EUR");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("\tx"), "'\tx");
        assert_eq!(csv_field("Pay 5, now"), "\"Pay 5, now\"");
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field(""), "");
    }

    #[test]
    fn subtrees_are_found_in_their_tiles() {
        use crate::proof::Subtree;
        // Leaf 300 of a tree of 600: level-0 tile 1 (full), hash 44.
        let leaf = subtree_in_tiles(
            Subtree {
                level: 0,
                index: 300,
            },
            600,
        )
        .unwrap();
        assert_eq!(
            (leaf.level, leaf.index, leaf.width, leaf.lo, leaf.hi),
            (0, 1, 256, 44, 45)
        );
        // The 8-leaf subtree 36 (leaves 288..296) of the same tree: 8 hashes of that tile.
        let s = subtree_in_tiles(
            Subtree {
                level: 3,
                index: 36,
            },
            600,
        )
        .unwrap();
        assert_eq!((s.level, s.index, s.lo, s.hi), (0, 1, 32, 40));
        // Leaves 512..599 are in the partial tile 2 of width 88.
        let p = subtree_in_tiles(
            Subtree {
                level: 0,
                index: 599,
            },
            600,
        )
        .unwrap();
        assert_eq!((p.index, p.width, p.lo), (2, 88, 87));
        // Level 8 and up read the level-1 tile: subtree 1 at level 9 is hashes 2..4 of it.
        let up = subtree_in_tiles(Subtree { level: 9, index: 1 }, 70_000).unwrap();
        assert_eq!(
            (up.level, up.index, up.width, up.lo, up.hi),
            (1, 0, 256, 2, 4)
        );
        // Not complete in the tree: none.
        assert_eq!(
            subtree_in_tiles(
                Subtree {
                    level: 0,
                    index: 600
                },
                600
            ),
            None
        );
        assert_eq!(subtree_in_tiles(Subtree { level: 8, index: 2 }, 600), None);
    }

    #[test]
    fn tile_sets_follow_tlog_tiles() {
        assert_eq!(tile_index_path(1_234_067), "x001/x234/067");
        assert_eq!(tile_path(Some(0), 5, 256), "tile/0/005");
        assert_eq!(tile_path(None, 1000, 3), "tile/entries/x001/000.p/3");
        assert_eq!(hash_tiles(0), Vec::<(u8, u64, u64)>::new());
        assert_eq!(hash_tiles(4), alloc::vec![(0, 0, 4)]);
        let t = hash_tiles(70_000);
        assert_eq!(t.iter().filter(|x| x.0 == 0).count(), 274);
        assert_eq!(t[273], (0, 273, 112));
        assert_eq!(t[274..], [(1, 0, 256), (1, 1, 17), (2, 0, 1)]);
        assert_eq!(entry_bundles(513), alloc::vec![(0, 256), (1, 256), (2, 1)]);
        assert_eq!(entry_bundles(512), alloc::vec![(0, 256), (1, 256)]);
        assert_eq!(
            split_entry_bundle(&[0, 1, 7, 0, 0, 0, 2, 8, 9]),
            Ok(alloc::vec![&[7u8][..], &[][..], &[8, 9][..]])
        );
        assert!(split_entry_bundle(&[0]).is_err());
        assert!(split_entry_bundle(&[0, 3, 1, 2]).is_err());
    }
}
