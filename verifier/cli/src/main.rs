//! `countersign-verify`: the auditor's offline verifier. Checks Merkle proofs, signed notes and
//! checkpoints, WebAuthn assertions and whole evidence bundles with no network access; only
//! `tiles`, given an http(s) URL, reads that URL (a log's tiles wherever they are served).
//!
//! Exit status: 0 valid (for `bundle`: a verified decision of the expected kind, by default an
//! approval), 1 invalid (the message names the failed check), 2 usage or I/O error, 3 (`bundle`
//! only) the evidence verified but records another decision than the expected one.

use std::io::Read;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use countersign_verifier::{
    bundle_report, challenge, check_execution, check_not_revoked, leaf_hash, parse_cose_key,
    sha256, verify_assertion, verify_checkpoint_with_policy, verify_consistency, verify_inclusion,
    Assertion, AssertionPolicy, BundlePolicy, Checkpoint, Decision, Entry, EvidenceBundle,
    Expectation, Hash, Note, Policy, RevocationCheck, RevocationError, Statement, VerifierKey,
    UNSIGNED_BUNDLE_MEMBERS,
};
use serde_json::{json, Value};

mod export;
mod tiles;

/// mimalloc: `export` checks a million small rows and statements on every core, where glibc
/// malloc took about an eighth of the CPU (`benches/README.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "countersign-verify",
    version,
    about = "Verify Countersign proofs, checkpoints, passkey assertions and evidence bundles offline",
    long_about = "Verify Countersign proofs, checkpoints, passkey assertions and evidence bundles offline.\n\n\
        Hashes and byte strings are lowercase hex.\n\n\
        Exit status:\n  \
          0  valid; for `bundle`, the evidence verified and records the expected decision (by default an approval)\n  \
          1  invalid: the message names the check that failed\n  \
          2  usage or I/O error\n  \
          3  `bundle` only: the evidence verified, but records another decision than --expect \
        (by default: a verified DENIAL; the approver refused, so do not act)"
)]
struct Cli {
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check an RFC 6962 inclusion proof.
    Inclusion(InclusionArgs),
    /// Check an RFC 6962 consistency proof between two tree heads.
    Consistency(ConsistencyArgs),
    /// Check a C2SP signed note (checkpoints included) against one or more verifier keys.
    Note(NoteArgs),
    /// Check a WebAuthn assertion (W3C WebAuthn Level 3, section 7.2).
    Assertion(AssertionArgs),
    /// Check an evidence bundle down to the log's checkpoint signature. Exits 0 only for a
    /// verified approval (or the decision --expect names), 3 for a verified denial.
    Bundle(BundleArgs),
    /// Decode a log entry and check that it is canonical.
    Entry(EntryArgs),
    /// Check an approval statement and print its canonical form, hash and challenge.
    Statement(StatementArgs),
    /// Check an export archive (spec/export.md): a directory or a tar file. Exits 0 if every
    /// check passes, 1 if one failed (naming the file, index and check), 2 for unusable input.
    Export(export::ExportArgs),
    /// Read a log from its C2SP tiles (the server, a bucket it mirrors to, a directory): verify
    /// its checkpoint, prove entries' inclusion and a trusted checkpoint's consistency from the
    /// hash tiles.
    Tiles(tiles::TilesArgs),
}

#[derive(Args)]
struct EntryArgs {
    /// The entry bytes.
    #[arg(long = "hex", value_name = "HEX")]
    entry: String,
}

#[derive(Args)]
struct StatementArgs {
    /// The statement JSON file, or `-` for standard input.
    file: String,
    /// A 32-byte nonce: also print the WebAuthn challenge `nonce || SHA-256(statement)`.
    #[arg(long, value_name = "HEX")]
    nonce: Option<String>,
}

#[derive(Args)]
struct InclusionArgs {
    /// The raw entry bytes (hashed as SHA-256(0x00 || entry)).
    #[arg(
        long,
        value_name = "HEX",
        required_unless_present = "leaf_hash",
        conflicts_with = "leaf_hash"
    )]
    leaf: Option<String>,
    /// The RFC 6962 leaf hash.
    #[arg(long, value_name = "HEX")]
    leaf_hash: Option<String>,
    /// Zero-based leaf index.
    #[arg(long)]
    index: u64,
    /// Number of leaves in the tree.
    #[arg(long)]
    tree_size: u64,
    /// Expected root hash.
    #[arg(long, value_name = "HEX")]
    root: String,
    /// Proof hashes in RFC 6962 order (leaf sibling first), one per --proof.
    #[arg(long = "proof", value_name = "HEX")]
    proof: Vec<String>,
}

#[derive(Args)]
struct ConsistencyArgs {
    /// Size of the older tree.
    #[arg(long)]
    old_size: u64,
    /// Root of the older tree.
    #[arg(long, value_name = "HEX")]
    old_root: String,
    /// Size of the newer tree.
    #[arg(long)]
    new_size: u64,
    /// Root of the newer tree.
    #[arg(long, value_name = "HEX")]
    new_root: String,
    /// Proof hashes in RFC 6962 order, one per --proof.
    #[arg(long = "proof", value_name = "HEX")]
    proof: Vec<String>,
}

#[derive(Args)]
struct NoteArgs {
    /// A verifier key `<name>+<hex id>+<base64>`; repeat for several.
    #[arg(long = "key", value_name = "VKEY", required_unless_present = "policy")]
    keys: Vec<String>,
    /// A C2SP tlog-policy file: the note must be a checkpoint of one of its logs, cosigned by
    /// its witnesses as its quorum requires.
    #[arg(long, value_name = "FILE")]
    policy: Option<String>,
    /// The note file, or `-` for standard input.
    file: String,
}

#[derive(Args)]
struct AssertionArgs {
    /// The credential public key as a COSE_Key.
    #[arg(long, value_name = "HEX")]
    public_key: String,
    /// authenticatorData.
    #[arg(long, value_name = "HEX")]
    authenticator_data: String,
    /// clientDataJSON bytes.
    #[arg(long, value_name = "HEX")]
    client_data_json: String,
    /// The assertion signature (DER for ES256).
    #[arg(long, value_name = "HEX")]
    signature: String,
    /// The relying party ID.
    #[arg(long)]
    rp_id: String,
    /// The allowed origin (repeat for several).
    #[arg(long = "origin", required = true)]
    origins: Vec<String>,
    /// The expected challenge bytes.
    #[arg(long, value_name = "HEX")]
    challenge: String,
    #[command(flatten)]
    uv: UvArgs,
}

/// User verification: required unless `--allow-no-uv` (decisions require it; a check that
/// quietly accepted a mere touch would pass evidence the log would have refused).
#[derive(Args)]
struct UvArgs {
    /// Accept an assertion without the user-verified (UV) flag (by default UV is required).
    #[arg(long, conflicts_with = "require_uv")]
    allow_no_uv: bool,
    /// Require the user-verified (UV) flag: the default, accepted so that older scripts run.
    #[arg(long, hide_short_help = true)]
    require_uv: bool,
}

impl UvArgs {
    fn required(&self) -> bool {
        !self.allow_no_uv
    }
}

#[derive(Args)]
#[command(after_long_help = "Exit status:\n  \
    0  the evidence verified and records the expected decision (by default: an approval)\n  \
    1  invalid: the message names the check that failed\n  \
    2  usage or I/O error\n  \
    3  the evidence verified, but records another decision: with the default --expect approve, \
    a verified DENIAL (the output starts with DENIED); with --expect deny, an approval\n\n\
    The relying party must be pinned: --rp-id (the domain your approval pages' passkeys belong \
    to) and/or --origin. Only --trust-bundle-rp accepts the relying party the bundle names, and \
    the output then says so: a bundle can name any site, including one whose passkeys the \
    approver never used for approvals.\n\n\
    User verification (UV) is required unless --allow-no-uv is given.\n\n\
    The output also names the bundle members that no signature covers (parties, \
    relying_party.origins): they are shown for convenience and are not evidence.")]
struct BundleArgs {
    /// The evidence bundle JSON file, or `-` for standard input.
    file: String,
    /// The log's verifier key (from a trusted source, not from the bundle; with --policy, the
    /// policy's log for the checkpoint's origin if not given).
    #[arg(long, value_name = "VKEY", required_unless_present = "policy")]
    log_key: Option<String>,
    /// Witness cosignature keys whose signatures are checked if present.
    #[arg(long = "witness", value_name = "VKEY")]
    witnesses: Vec<String>,
    /// A C2SP tlog-policy file: the bundle's checkpoint must be signed by one of its logs and
    /// cosigned by its witnesses as its quorum requires (`quorum none` needs no cosignature).
    #[arg(long, value_name = "FILE")]
    policy: Option<String>,
    /// The action about to be run (JSON: an authorization_details array, or an object holding
    /// one); checks that it is exactly what was approved.
    #[arg(long, value_name = "FILE")]
    action: Option<String>,
    /// With --action: the current time (Unix seconds); an expired approval is refused.
    #[arg(long, requires = "action")]
    now: Option<u64>,
    /// The relying party ID the approval must have been made for (pins the RP; this or
    /// --origin or --trust-bundle-rp is required).
    #[arg(long)]
    rp_id: Option<String>,
    /// The origin the approval must have been made on (pins the RP).
    #[arg(long)]
    origin: Option<String>,
    /// Accept the relying party the bundle names instead of pinning one (the output says so).
    #[arg(long, conflicts_with_all = ["rp_id", "origin"])]
    trust_bundle_rp: bool,
    #[command(flatten)]
    uv: UvArgs,
    /// Also print the decision's C2SP tlog-proof text.
    #[arg(long)]
    tlog_proof: bool,
    /// The decision to exit 0 for: `approve` (the default), `deny`, or `any` (either; the output
    /// still names it). A verified bundle recording another decision exits 3.
    #[arg(long, value_name = "DECISION", default_value = "approve", value_parser = parse_expectation)]
    expect: Expectation,
    /// The log's entries from index 0 up to the bundle's checkpoint, to check that the passkey
    /// was not revoked before the decision (spec/evidence-bundle.md, rules R1-R4): a directory
    /// holding the log's entry bundles as a mirror keeps them (`tile/entries/...`, C2SP
    /// tlog-tiles), or a file with one entry per line in lowercase hex. Without it, revocation
    /// is not checked (a bundle alone cannot show it).
    #[arg(long, value_name = "PATH")]
    entries: Option<String>,
}

fn parse_expectation(s: &str) -> Result<Expectation, String> {
    Expectation::parse(s).map_err(|e| e.to_string())
}

/// A usage or I/O problem (exit 2).
struct UsageError(String);

/// The outcome of a check.
enum Outcome {
    Valid {
        summary: String,
        details: Value,
    },
    /// Verified, but not the decision the caller expects (exit 3).
    Unexpected {
        summary: String,
        details: Value,
    },
    Invalid {
        check: &'static str,
        message: String,
    },
}

/// Prints one line of the answer. The exit code is the verdict: a reader that stops early
/// (`countersign-verify ... | head -1`) or a full disk must not turn a verdict into a panic (exit
/// 101, outside the documented 0/1/2), so a failed write is reported on stderr and ignored.
fn say(line: impl std::fmt::Display) {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{line}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("countersign-verify: cannot write the answer: {e}");
        }
        _ => {}
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Export(a) => return export::run(a, cli.json),
        Command::Inclusion(a) => inclusion(a),
        Command::Consistency(a) => consistency(a),
        Command::Note(a) => note(a),
        Command::Assertion(a) => assertion(a),
        Command::Bundle(a) => bundle(a),
        Command::Entry(a) => entry(a),
        Command::Statement(a) => statement(a),
        Command::Tiles(a) => tiles::run(a),
    };
    match result {
        Err(UsageError(msg)) => {
            if cli.json {
                say(json!({"valid": null, "error": msg}));
            }
            eprintln!("countersign-verify: {msg}");
            ExitCode::from(2)
        }
        Ok(Outcome::Valid { summary, details }) => {
            answer(cli.json, summary, details);
            ExitCode::SUCCESS
        }
        Ok(Outcome::Unexpected { summary, details }) => {
            answer(cli.json, summary, details);
            ExitCode::from(3)
        }
        Ok(Outcome::Invalid { check, message }) => {
            if cli.json {
                say(json!({"valid": false, "check": check, "error": message}));
            } else {
                say(format_args!("INVALID ({check}): {message}"));
            }
            ExitCode::from(1)
        }
    }
}

/// Prints a verified answer: the summary, or `{"valid": true, ...details}`.
fn answer(json: bool, summary: String, details: Value) {
    if json {
        let mut v = json!({"valid": true});
        if let (Some(o), Value::Object(d)) = (v.as_object_mut(), details) {
            o.extend(d);
        }
        say(v);
    } else {
        say(summary);
    }
}

/// A Unix time in seconds as RFC 3339 UTC.
fn rfc3339(secs: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A Unix time in milliseconds as RFC 3339 UTC.
fn rfc3339_ms(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

fn hex_arg(name: &str, s: &str) -> Result<Vec<u8>, UsageError> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(UsageError(format!("{name}: hex must be lowercase")));
    }
    hex::decode(s).map_err(|e| UsageError(format!("{name}: not hex ({e})")))
}

fn hash_arg(name: &str, s: &str) -> Result<Hash, UsageError> {
    let b = hex_arg(name, s)?;
    Hash::from_slice(&b)
        .ok_or_else(|| UsageError(format!("{name}: a hash is 32 bytes (64 hex digits)")))
}

fn proof_args(v: &[String]) -> Result<Vec<Hash>, UsageError> {
    v.iter().map(|p| hash_arg("--proof", p)).collect()
}

fn read_input(path: &str) -> Result<Vec<u8>, UsageError> {
    // Inputs are small documents; refuse anything that could not be a valid one.
    const LIMIT: u64 = 4 * 1024 * 1024;
    let mut buf = Vec::new();
    let r = if path == "-" {
        std::io::stdin().take(LIMIT + 1).read_to_end(&mut buf)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(LIMIT + 1).read_to_end(&mut buf))
    };
    r.map_err(|e| UsageError(format!("{path}: {e}")))?;
    if buf.len() as u64 > LIMIT {
        return Err(UsageError(format!("{path}: larger than 4 MiB")));
    }
    Ok(buf)
}

fn vkey_arg(flag: &str, s: &str) -> Result<VerifierKey, UsageError> {
    VerifierKey::parse(s).map_err(|e| UsageError(format!("{flag}: {e}")))
}

/// The `--witness` keys.
fn witness_args(keys: &[String]) -> Result<Vec<VerifierKey>, UsageError> {
    keys.iter().map(|k| vkey_arg("--witness", k)).collect()
}

/// The `--policy` file, parsed (a bad file is unusable input, exit 2, naming its line).
fn policy_arg(path: Option<&str>) -> Result<Option<Policy>, UsageError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let bytes = read_input(path)?;
    Policy::parse(&bytes)
        .map(Some)
        .map_err(|e| UsageError(format!("--policy {path}: {e}")))
}

/// The log key: `--log-key`, or the policy's log for `origin`.
fn log_key_arg(
    log_key: Option<&str>,
    policy: Option<&Policy>,
    origin: &str,
) -> Result<VerifierKey, UsageError> {
    match (log_key, policy) {
        (Some(k), _) => vkey_arg("--log-key", k),
        (None, Some(p)) => p.log_for_origin(origin).cloned().ok_or_else(|| {
            UsageError(format!(
                "--policy names no (single) log for origin {origin:?}; give --log-key"
            ))
        }),
        (None, None) => Err(UsageError("give --log-key or --policy".into())),
    }
}

/// The origin line of a signed checkpoint note (empty if it has none).
fn origin_of(note: &str) -> &str {
    note.split('\n').next().unwrap_or_default()
}

/// What a policy check found, for the summary and `--json`.
fn policy_details(policy: &Policy, cosigners: &[VerifierKey]) -> (String, Value) {
    let names: Vec<&str> = policy
        .witnesses()
        .iter()
        .filter(|w| cosigners.contains(&w.key))
        .map(|w| w.name.as_str())
        .collect();
    let line = match policy.quorum() {
        None => "\npolicy:        met (quorum none)".to_owned(),
        Some(_) => format!(
            "\npolicy:        quorum met, cosigned by {}",
            names.join(", ")
        ),
    };
    (line, json!({"quorum_met": true, "cosigned_by": names}))
}

fn inclusion(a: &InclusionArgs) -> Result<Outcome, UsageError> {
    let leaf = match (&a.leaf, &a.leaf_hash) {
        (Some(l), _) => leaf_hash(&hex_arg("--leaf", l)?),
        (None, Some(h)) => hash_arg("--leaf-hash", h)?,
        (None, None) => return Err(UsageError("give --leaf or --leaf-hash".into())),
    };
    let root = hash_arg("--root", &a.root)?;
    let proof = proof_args(&a.proof)?;
    Ok(
        match verify_inclusion(&leaf, a.index, a.tree_size, &proof, &root) {
            Ok(()) => Outcome::Valid {
                summary: format!(
                    "OK: leaf {leaf} is at index {} of the tree of size {} with root {root}",
                    a.index, a.tree_size
                ),
                details: json!({"leaf_hash": leaf.to_hex(), "index": a.index, "tree_size": a.tree_size, "root": root.to_hex()}),
            },
            Err(e) => Outcome::Invalid {
                check: "inclusion",
                message: e.to_string(),
            },
        },
    )
}

fn consistency(a: &ConsistencyArgs) -> Result<Outcome, UsageError> {
    let old_root = hash_arg("--old-root", &a.old_root)?;
    let new_root = hash_arg("--new-root", &a.new_root)?;
    let proof = proof_args(&a.proof)?;
    Ok(
        match verify_consistency(a.old_size, a.new_size, &old_root, &new_root, &proof) {
            Ok(()) => Outcome::Valid {
                summary: format!(
                    "OK: the tree of size {} is a prefix of the tree of size {}",
                    a.old_size, a.new_size
                ),
                details: json!({"old_size": a.old_size, "new_size": a.new_size}),
            },
            Err(e) => Outcome::Invalid {
                check: "consistency",
                message: e.to_string(),
            },
        },
    )
}

fn note(a: &NoteArgs) -> Result<Outcome, UsageError> {
    let keys = a
        .keys
        .iter()
        .map(|k| vkey_arg("--key", k))
        .collect::<Result<Vec<_>, _>>()?;
    let policy = policy_arg(a.policy.as_deref())?;
    let bytes = read_input(&a.file)?;
    let parsed = match Note::parse(&bytes) {
        Ok(n) => n,
        Err(e) => {
            return Ok(Outcome::Invalid {
                check: "note",
                message: e.to_string(),
            })
        }
    };
    let mut policy_found = None;
    if let Some(p) = &policy {
        match verify_checkpoint_with_policy(&bytes, p) {
            Ok(v) => {
                let keys: Vec<VerifierKey> = v.cosignatures.iter().map(|c| c.key.clone()).collect();
                policy_found = Some(policy_details(p, &keys));
            }
            Err(e) => {
                return Ok(Outcome::Invalid {
                    check: "policy",
                    message: e.to_string(),
                })
            }
        }
    }
    let mut keys = keys;
    if let Some(p) = &policy {
        keys.extend(p.logs().iter().map(|l| l.key.clone()));
        keys.extend(p.witness_keys());
    }
    let verified = match parsed.verify(&keys) {
        Ok(v) => v,
        Err(e) => {
            return Ok(Outcome::Invalid {
                check: "note-signature",
                message: e.to_string(),
            })
        }
    };
    let signers: Vec<String> = verified.iter().map(|v| v.key.to_vkey()).collect();
    let mut summary = format!("OK: note signed by {}", signers.join(", "));
    let mut details = json!({"signers": signers, "text": parsed.text()});
    if let Ok(cp) = Checkpoint::parse(parsed.text()) {
        summary.push_str(&format!(
            "\ncheckpoint: origin {:?}, tree size {}, root {}",
            cp.origin, cp.size, cp.root
        ));
        details["checkpoint"] =
            json!({"origin": cp.origin, "tree_size": cp.size, "root": cp.root.to_hex()});
    }
    if let Some((line, d)) = policy_found {
        summary.push_str(&line);
        details["policy"] = d;
    }
    Ok(Outcome::Valid { summary, details })
}

fn assertion(a: &AssertionArgs) -> Result<Outcome, UsageError> {
    let key_bytes = hex_arg("--public-key", &a.public_key)?;
    let authn = hex_arg("--authenticator-data", &a.authenticator_data)?;
    let cdj = hex_arg("--client-data-json", &a.client_data_json)?;
    let sig = hex_arg("--signature", &a.signature)?;
    let challenge = hex_arg("--challenge", &a.challenge)?;
    let key = match parse_cose_key(&key_bytes) {
        Ok(k) => k,
        Err(e) => {
            return Ok(Outcome::Invalid {
                check: "public-key",
                message: e.to_string(),
            })
        }
    };
    let origins: Vec<&str> = a.origins.iter().map(String::as_str).collect();
    let policy = AssertionPolicy {
        rp_id: &a.rp_id,
        allowed_origins: &origins,
        require_user_verification: a.uv.required(),
        stored_sign_count: None,
    };
    let parts = Assertion {
        authenticator_data: &authn,
        client_data_json: &cdj,
        signature: &sig,
    };
    Ok(match verify_assertion(&key, &parts, &challenge, &policy) {
        Ok(v) => Outcome::Valid {
            summary: format!(
                "OK: {} assertion from origin {} (user verified: {}, sign count {})",
                key.algorithm(),
                v.origin,
                v.user_verified(),
                v.sign_count
            ),
            details: json!({"algorithm": key.algorithm(), "origin": v.origin, "user_verified": v.user_verified(), "sign_count": v.sign_count}),
        },
        Err(e) => Outcome::Invalid {
            check: "assertion",
            message: e.to_string(),
        },
    })
}

/// Why a bundle check needs a pinned relying party (exit 2 without one).
const RP_NOT_PINNED: &str = "say which relying party the approval must be for: --rp-id <RP ID> \
    (the domain of your approval pages, e.g. approve.example.com) and/or --origin <https://...>; \
    or --trust-bundle-rp to accept the relying party the bundle itself names (a bundle can name \
    any site, so this proves less)";

fn bundle(a: &BundleArgs) -> Result<Outcome, UsageError> {
    if a.rp_id.is_none() && a.origin.is_none() && !a.trust_bundle_rp {
        return Err(UsageError(RP_NOT_PINNED.into()));
    }
    let policy = policy_arg(a.policy.as_deref())?;
    let mut witnesses = witness_args(&a.witnesses)?;
    if let Some(p) = &policy {
        witnesses.extend(p.witness_keys());
    }
    if a.action.is_some() && a.expect != Expectation::Approve {
        // The execution check only ever passes for an approval.
        return Err(UsageError(format!(
            "--action checks an approval; it cannot be combined with --expect {}",
            a.expect.as_str()
        )));
    }
    let action: Option<Value> = match &a.action {
        None => None,
        Some(p) => Some(
            // Strict: an action naming a member twice is ambiguous, so it is not the approved one.
            countersign_verifier::parse_json_strict(&read_input(p)?)
                .map_err(|e| UsageError(format!("{p}: not valid JSON ({e})")))?,
        ),
    };
    let bytes = read_input(&a.file)?;
    let b = match EvidenceBundle::from_json(&bytes) {
        Ok(b) => b,
        Err(e) => {
            return Ok(Outcome::Invalid {
                check: "bundle",
                message: e.to_string(),
            })
        }
    };
    let log_key = log_key_arg(
        a.log_key.as_deref(),
        policy.as_ref(),
        origin_of(&b.checkpoint),
    )?;
    let bundle_policy = BundlePolicy {
        witnesses: &witnesses,
        rp_id: a.rp_id.as_deref(),
        origin: a.origin.as_deref(),
        require_user_verification: a.uv.required(),
    };
    let v = match b.verify(&log_key, &bundle_policy) {
        Ok(v) => v,
        Err(e) => {
            return Ok(Outcome::Invalid {
                check: "bundle",
                message: e.to_string(),
            })
        }
    };
    let policy_found = match &policy {
        None => None,
        Some(p) => match verify_checkpoint_with_policy(b.checkpoint.as_bytes(), p) {
            Ok(c) => {
                let keys: Vec<VerifierKey> = c.cosignatures.iter().map(|s| s.key.clone()).collect();
                Some(policy_details(p, &keys))
            }
            Err(e) => {
                return Ok(Outcome::Invalid {
                    check: "policy",
                    message: e.to_string(),
                })
            }
        },
    };
    // Every decision of the bundle (each approval of a quorum) must be by an unrevoked passkey.
    let revocation = match &a.entries {
        None => None,
        Some(path) => {
            let subjects = v.revocation_subjects();
            let mut checks: Vec<(u64, RevocationCheck)> = Vec::with_capacity(subjects.len());
            for subject in &subjects {
                match revocation_check(path, subject, v.tree_size)? {
                    Ok(c) => checks.push((subject.decision_index, c)),
                    Err(e) => {
                        return Ok(Outcome::Invalid {
                            check: "revocation",
                            message: if subjects.len() > 1 {
                                format!("the decision at log index {}: {e}", subject.decision_index)
                            } else {
                                e.to_string()
                            },
                        })
                    }
                }
            }
            Some(checks)
        }
    };
    let as_expected = a.expect.admits(v.decision);
    let quorum_headline;
    let headline = match (v.decision, as_expected) {
        (Decision::Approve, true) if v.approvals.len() > 1 => {
            quorum_headline = format!(
                "OK: evidence verified; {} distinct approvers APPROVED this action (quorum {})",
                v.approvals.len(),
                v.statement.quorum()
            );
            quorum_headline.as_str()
        }
        (Decision::Approve, true) => "OK: evidence verified; the approver APPROVED this action",
        (Decision::Deny, true) => {
            "OK: evidence verified; the approver DENIED this action (--expect allows a denial)"
        }
        (Decision::Deny, false) => {
            "DENIED: evidence verified; the approver refused this action (exit status 3)"
        }
        (Decision::Approve, false) => {
            "APPROVED, NOT DENIED: evidence verified; the approver approved this action, \
             but --expect deny was given (exit status 3)"
        }
    };
    let s = &v.statement;
    let unpinned = if a.trust_bundle_rp {
        format!(
            "\nWARNING:       RELYING PARTY NOT PINNED (--trust-bundle-rp): accepted the bundle's own \
             rp_id {:?}; check that it is yours",
            b.relying_party.rp_id
        )
    } else {
        String::new()
    };
    let mut summary = format!(
        "{headline}{unpinned}\n\
         decision:      {} by approver {} ({} passkey, user verified: {}, origin {})\n\
         request:       {} from client {} (scope {:?})\n\
         agent's note:  {:?} (written by the agent; the action below is what was signed)\n\
         action:        {}\n\
         requested:     {}, expires {}, decided {}\n\
         statement:     sha256 {}\n\
         log:           {} index {} (leaf {}), enrolment at index {}\n\
         checkpoint:    tree size {}, root {}{}",
        v.decision.as_str().to_uppercase(),
        v.approver_id,
        v.algorithm,
        v.user_verified,
        v.origin,
        s.request_id,
        s.client_id,
        s.scope,
        s.binding_message,
        s.authorization_details,
        rfc3339(s.requested_at),
        rfc3339(s.expires_at),
        rfc3339_ms(v.decided_at_ms),
        hex::encode(v.statement_hash),
        s.log_origin,
        v.decision_index,
        v.decision_leaf_hash,
        v.enrolment_index,
        v.tree_size,
        v.root,
        if v.cosignatures.is_empty() {
            String::new()
        } else {
            format!(
                "\nwitnesses:     {}",
                v.cosignatures
                    .iter()
                    .map(|c| c.key.name().to_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    if let Some(p) = &v.policy {
        summary.push_str(&format!(
            "\napproval rule: {} (quorum {} of the {} eligible approvers {}; policy entry at \
             index {}, sha256 {})",
            match &p.rule {
                Some(r) => format!("{r:?}"),
                None => "none matched (the named approver alone)".into(),
            },
            p.quorum,
            p.eligible.len(),
            p.eligible.join(", "),
            p.index,
            hex::encode(p.sha256),
        ));
        if v.decision == Decision::Approve {
            summary.push_str(&format!(
                "\napprovals:     {} of {} needed, distinct approvers: {}",
                v.approvals.len(),
                p.quorum,
                v.approvals
                    .iter()
                    .map(|x| format!(
                        "{} (index {}, enrolment {}, user verified: {})",
                        x.approver_id, x.decision_index, x.enrolment_index, x.user_verified
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if let Some(p) = &b.parties {
        summary.push_str(&format!("\nparties:       {p} (unsigned)"));
    }
    summary.push_str(&format!(
        "\nunsigned:      {} (covered by no signature: shown for convenience, not evidence)",
        UNSIGNED_BUNDLE_MEMBERS.join(", ")
    ));
    summary.push_str(&match &revocation {
        None => format!(
            "\nrevocation:    NOT CHECKED (a bundle cannot show it; give --entries with the \
             log's {} entries)",
            v.tree_size
        ),
        Some(checks) => format!(
            "\nrevocation:    checked against the log's {} entries: not revoked before the \
             decision{}{}",
            v.tree_size,
            if checks.len() > 1 { "s" } else { "" },
            checks
                .iter()
                .filter_map(|(d, c)| c.revoked_after.map(|i| (d, i)))
                .map(|(d, i)| if checks.len() == 1 {
                    format!(" (revoked afterwards, at index {i})")
                } else {
                    format!(
                        " (the passkey of the decision at index {d} was revoked afterwards, at \
                         index {i})"
                    )
                })
                .collect::<String>()
        ),
    });
    let mut details = bundle_report(&b, &v, a.expect);
    details["rp_pinned"] = json!(!a.trust_bundle_rp);
    if let Some((line, d)) = policy_found {
        summary.push_str(&line);
        details["policy"] = d;
    }
    details["revocation"] = match &revocation {
        None => json!({"checked": false}),
        Some(checks) => {
            // The bundle's own decision is the last subject.
            let own = checks.last().and_then(|(_, c)| c.revoked_after);
            let each: Vec<Value> = checks
                .iter()
                .map(|(d, c)| json!({"decision_index": d, "revoked_after": c.revoked_after}))
                .collect();
            let mut r = json!({"checked": true, "entries": v.tree_size, "revoked_after": own});
            if each.len() > 1 {
                r["decisions"] = Value::Array(each);
            }
            r
        }
    };
    if let Some(action) = action.filter(|_| as_expected) {
        if let Err(e) = check_execution(&v.statement, &action, a.now) {
            return Ok(Outcome::Invalid {
                check: "action",
                message: e.to_string(),
            });
        }
        summary.push_str("\naction check:  the given action is exactly the approved one");
        details["action_matches"] = json!(true);
    }
    if a.tlog_proof {
        match b.decision_tlog_proof() {
            Ok(t) => {
                summary.push_str("\n\n");
                summary.push_str(&t);
                details["tlog_proof"] = json!(t);
            }
            Err(e) => {
                return Ok(Outcome::Invalid {
                    check: "bundle",
                    message: e.to_string(),
                })
            }
        }
    }
    Ok(if as_expected {
        Outcome::Valid { summary, details }
    } else {
        Outcome::Unexpected { summary, details }
    })
}

/// Runs the revocation check of `v` over the entries at `path` (`--entries`). A file that cannot
/// be read is a usage error; entries that fail the check are the inner `Err`.
fn revocation_check(
    path: &str,
    subject: &countersign_verifier::RevocationSubject,
    tree_size: u64,
) -> Result<Result<RevocationCheck, RevocationError>, UsageError> {
    let p = std::path::Path::new(path);
    let mut entries = if p.is_dir() {
        Entries::Tiles {
            dir: p.to_owned(),
            size: tree_size,
            next_tile: 0,
            buf: Vec::new().into_iter(),
            error: None,
        }
    } else {
        let f = std::fs::File::open(p).map_err(|e| UsageError(format!("{path}: {e}")))?;
        Entries::Lines {
            lines: std::io::BufRead::lines(std::io::BufReader::new(f)),
            line: 0,
            error: None,
        }
    };
    let result = check_not_revoked(subject, &mut entries);
    match entries.error() {
        Some(e) => Err(UsageError(format!("--entries {path}: {e}"))),
        None => Ok(result),
    }
}

/// Entries per full entry bundle (C2SP tlog-tiles).
const TILE_WIDTH: u64 = 256;

/// The log's entries, read lazily from `--entries`. A read or format error ends them and is
/// kept, to be reported instead of the check's verdict.
enum Entries {
    /// A directory of entry bundles: `tile/entries/<N>` (full) and `tile/entries/<N>.p/<W>`
    /// (partial; a full bundle serves as well, its first W entries).
    Tiles {
        dir: std::path::PathBuf,
        size: u64,
        next_tile: u64,
        buf: std::vec::IntoIter<Vec<u8>>,
        error: Option<String>,
    },
    /// One lowercase hex entry per line.
    Lines {
        lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
        line: u64,
        error: Option<String>,
    },
}

impl Entries {
    fn error(&self) -> Option<&str> {
        match self {
            Entries::Tiles { error, .. } | Entries::Lines { error, .. } => error.as_deref(),
        }
    }
}

/// The first `width` entries of an entry bundle (each a 2-byte big-endian length, then the
/// entry); a full bundle must hold exactly 256, a partial one exactly `width`.
fn parse_entry_bundle(bytes: &[u8], width: u64, full: bool) -> Result<Vec<Vec<u8>>, String> {
    let mut out: Vec<Vec<u8>> = countersign_verifier::export::split_entry_bundle(bytes)?
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    let want = if full { TILE_WIDTH } else { width };
    if out.len() as u64 != want {
        return Err(format!(
            "an entry bundle holds {} entries, not {want}",
            out.len()
        ));
    }
    out.truncate(width as usize);
    Ok(out)
}

impl Iterator for Entries {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        match self {
            Entries::Tiles {
                dir,
                size,
                next_tile,
                buf,
                error,
            } => loop {
                if error.is_some() {
                    return None;
                }
                if let Some(e) = buf.next() {
                    return Some(e);
                }
                let start = next_tile.checked_mul(TILE_WIDTH)?;
                if start >= *size {
                    return None;
                }
                let width = (*size - start).min(TILE_WIDTH);
                let base = dir
                    .join("tile/entries")
                    .join(countersign_verifier::export::tile_index_path(*next_tile));
                let partial = base.with_file_name(format!(
                    "{}.p/{width}",
                    base.file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default()
                ));
                let got = if width < TILE_WIDTH {
                    match std::fs::read(&partial) {
                        Ok(b) => Ok((b, false)),
                        Err(_) => std::fs::read(&base).map(|b| (b, true)),
                    }
                } else {
                    std::fs::read(&base).map(|b| (b, true))
                };
                match got
                    .map_err(|e| format!("{}: {e}", base.display()))
                    .and_then(|(b, full)| parse_entry_bundle(&b, width, full))
                {
                    Ok(entries) => {
                        *buf = entries.into_iter();
                        *next_tile += 1;
                    }
                    Err(e) => *error = Some(e),
                }
            },
            Entries::Lines { lines, line, error } => {
                if error.is_some() {
                    return None;
                }
                *line += 1;
                let text = match lines.next()? {
                    Ok(t) => t,
                    Err(e) => {
                        *error = Some(e.to_string());
                        return None;
                    }
                };
                match hex_arg(&format!("line {line}"), text.trim_end_matches('\r')) {
                    Ok(b) => Some(b),
                    Err(UsageError(e)) => {
                        *error = Some(e);
                        None
                    }
                }
            }
        }
    }
}

fn entry(a: &EntryArgs) -> Result<Outcome, UsageError> {
    let bytes = hex_arg("--hex", &a.entry)?;
    let e = match Entry::decode(&bytes) {
        Ok(e) => e,
        Err(e) => {
            return Ok(Outcome::Invalid {
                check: "entry",
                message: e.to_string(),
            })
        }
    };
    let leaf = leaf_hash(&bytes);
    let fields = e.to_json();
    let mut details = json!({"kind": e.kind_name(), "leaf_hash": leaf.to_hex(), "fields": fields});
    // A policy entry counts only if it holds a valid policy in its canonical form.
    if let Entry::Policy(p) = &e {
        if let Err(err) = p.validated() {
            return Ok(Outcome::Invalid {
                check: "entry",
                message: format!("policy entry: {err}"),
            });
        }
        details["policy_sha256"] = json!(hex::encode(p.policy_hash()));
    }
    let pretty = serde_json::to_string_pretty(&details["fields"]).unwrap_or_default();
    Ok(Outcome::Valid {
        summary: format!(
            "OK: canonical {} entry, leaf hash {leaf}\n{pretty}",
            e.kind_name()
        ),
        details,
    })
}

fn statement(a: &StatementArgs) -> Result<Outcome, UsageError> {
    let nonce: Option<[u8; 32]> = match &a.nonce {
        None => None,
        Some(n) => Some(
            hex_arg("--nonce", n)?
                .try_into()
                .map_err(|_| UsageError("--nonce: a nonce is 32 bytes (64 hex digits)".into()))?,
        ),
    };
    let bytes = read_input(&a.file)?;
    let s = match Statement::from_json(&bytes) {
        Ok(s) => s,
        Err(e) => {
            return Ok(Outcome::Invalid {
                check: "statement",
                message: e.to_string(),
            })
        }
    };
    let canonical = match s.canonical_json() {
        Ok(c) => c,
        Err(e) => {
            return Ok(Outcome::Invalid {
                check: "statement",
                message: e.to_string(),
            })
        }
    };
    let hash = sha256(&canonical);
    let text = String::from_utf8_lossy(&canonical).into_owned();
    let mut summary = format!(
        "OK: statement is valid\ncanonical: {text}\nsha256:    {}",
        hex::encode(hash)
    );
    let mut details = json!({"canonical_json": text, "sha256": hex::encode(hash)});
    if let Some(n) = nonce {
        let c = challenge(&n, &hash);
        summary.push_str(&format!("\nchallenge: {}", hex::encode(c)));
        details["challenge"] = json!(hex::encode(c));
    }
    Ok(Outcome::Valid { summary, details })
}
