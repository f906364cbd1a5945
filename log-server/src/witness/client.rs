//! One `add-checkpoint` exchange with a witness (C2SP tlog-witness), and the checks of what it
//! answers: the request body, the 409 size, and the cosignature lines (C2SP tlog-cosignature).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use countersign_verifier::{Hash, Note, VerifierKey};

/// Why a witness did not cosign. `kind()` is the metric label.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// No answer: connection refused, reset, timed out.
    Transport(String),
    /// 403: none of the checkpoint's signatures verified with the keys it trusts for the log.
    Forbidden,
    /// 404: it does not witness this log (origin unknown to it).
    UnknownLog,
    /// 422: the consistency proof did not verify against the checkpoint it holds: it saw
    /// another history of this log.
    Inconsistent,
    /// 409 that cannot be resolved: it cosigned a larger tree than ours, or another root at the
    /// same size (a fork), or kept answering 409.
    Conflict(String),
    /// 400: it refused the request as malformed.
    BadRequest,
    /// Any other status.
    Status(u16),
    /// A 200 whose cosignature is missing, malformed, invalid, or too far from our clock.
    BadCosignature(String),
}

impl Failure {
    /// The `kind` label of `countersign_witness_failures_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Transport(_) => "transport",
            Failure::Forbidden => "forbidden",
            Failure::UnknownLog => "unknown_log",
            Failure::Inconsistent => "inconsistent",
            Failure::Conflict(_) => "conflict",
            Failure::BadRequest => "bad_request",
            Failure::Status(_) => "status",
            Failure::BadCosignature(_) => "bad_cosignature",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transport(e) => write!(f, "the witness did not answer: {e}"),
            Failure::Forbidden => f.write_str(
                "403: the witness does not trust the log's key (check its configuration)",
            ),
            Failure::UnknownLog => f.write_str("404: the witness does not know this log's origin"),
            Failure::Inconsistent => f.write_str(
                "422: the witness holds a checkpoint our consistency proof does not extend (it \
                 saw another history of this log)",
            ),
            Failure::Conflict(why) => write!(f, "409: {why}"),
            Failure::BadRequest => f.write_str("400: the witness refused the request"),
            Failure::Status(s) => write!(f, "unexpected status {s}"),
            Failure::BadCosignature(why) => write!(f, "unusable cosignature: {why}"),
        }
    }
}

/// The `add-checkpoint` body: `old <size>`, one base64 proof hash a line, a blank line, then
/// the signed checkpoint note.
pub fn request_body(old: u64, proof: &[Hash], note: &str) -> String {
    let mut b = String::with_capacity(16 + proof.len() * 45 + note.len());
    b.push_str(&format!("old {old}\n"));
    for h in proof {
        b.push_str(&B64.encode(h.0));
        b.push('\n');
    }
    b.push('\n');
    b.push_str(note);
    b
}

/// The witness's size from a 409 body (`<decimal>\n`).
pub fn parse_size(body: &str) -> Option<u64> {
    countersign_verifier::parse_decimal(body.strip_suffix('\n')?)
}

/// The cosignature lines of a 200 body that are by `key`, over `text`, each verified, with a
/// timestamp within `max_skew_ms` of `now_ms`. Lines by other keys are ignored (as the spec
/// says); one bad line by `key` refuses the whole answer.
pub fn check_cosignatures(
    body: &str,
    text: &str,
    key: &VerifierKey,
    now_ms: u64,
    max_skew_ms: u64,
) -> Result<String, Failure> {
    let note = Note::parse(format!("{text}\n{body}").as_bytes())
        .map_err(|e| Failure::BadCosignature(format!("the answer does not parse: {e}")))?;
    if note.text() != text {
        return Err(Failure::BadCosignature(
            "the answer holds more than signature lines".into(),
        ));
    }
    let verified = note
        .verify(std::slice::from_ref(key))
        .map_err(|e| Failure::BadCosignature(e.to_string()))?;
    for v in &verified {
        let Some(ts) = v.timestamp else {
            return Err(Failure::BadCosignature(
                "not a cosignature/v1 signature".into(),
            ));
        };
        let skew = ts.saturating_mul(1000).abs_diff(now_ms);
        if skew > max_skew_ms {
            return Err(Failure::BadCosignature(format!(
                "its timestamp {ts} is {} s from the log's clock",
                skew / 1000
            )));
        }
    }
    Ok(note
        .signatures()
        .iter()
        .filter(|s| s.name == key.name() && s.key_id == key.id())
        .map(|s| s.to_line())
        .collect())
}

/// What one POST came back with.
pub(crate) enum Answer {
    /// 200: the body (cosignature lines, unchecked).
    Cosigned(String),
    /// 409 with the witness's size.
    Conflict(u64),
}

/// POSTs `body` to `url` (the witness's `.../add-checkpoint`).
pub(crate) async fn post(
    http: &reqwest::Client,
    url: &str,
    body: String,
) -> Result<Answer, Failure> {
    let resp = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body)
        .send()
        .await
        .map_err(|e| Failure::Transport(e.without_url().to_string()))?;
    let status = resp.status().as_u16();
    // A witness's answers are a few lines; a longer one is not read whole.
    let text = read_limited(resp, 64 * 1024)
        .await
        .map_err(Failure::Transport)?;
    match status {
        200 => Ok(Answer::Cosigned(text)),
        409 => parse_size(&text)
            .map(Answer::Conflict)
            .ok_or_else(|| Failure::Conflict("the 409 answer holds no tree size".into())),
        400 => Err(Failure::BadRequest),
        403 => Err(Failure::Forbidden),
        404 => Err(Failure::UnknownLog),
        422 => Err(Failure::Inconsistent),
        s => Err(Failure::Status(s)),
    }
}

async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<String, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if out.len() + chunk.len() > limit {
            return Err(format!("the answer is longer than {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    String::from_utf8(out).map_err(|_| "the answer is not UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use countersign_verifier::{cosignature_message, NoteSignature};
    use ed25519_dalek::{Signer, SigningKey};

    const TEXT: &str = "example.com/log\n3\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    fn cosign(sk: &SigningKey, name: &str, ts: u64, text: &str) -> String {
        let key = VerifierKey::cosignature(name, sk.verifying_key().to_bytes()).unwrap();
        let sig = sk.sign(cosignature_message(ts, text).as_bytes());
        let mut raw = ts.to_be_bytes().to_vec();
        raw.extend_from_slice(&sig.to_bytes());
        NoteSignature {
            name: name.into(),
            key_id: key.id(),
            signature: raw,
        }
        .to_line()
    }

    #[test]
    fn body_follows_the_spec_layout() {
        let b = request_body(2, &[Hash([0; 32])], "n\n\n— n sig\n");
        assert_eq!(
            b,
            "old 2\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\nn\n\n— n sig\n"
        );
        assert_eq!(request_body(0, &[], "x"), "old 0\n\nx");
        assert_eq!(parse_size("17\n"), Some(17));
        assert_eq!(parse_size("17"), None);
        assert_eq!(parse_size("017\n"), None);
    }

    #[test]
    fn keeps_only_valid_fresh_cosignatures_by_the_key() {
        let sk = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let key = VerifierKey::cosignature("w1", sk.verifying_key().to_bytes()).unwrap();
        let now = 1_700_000_000_000;
        let good = cosign(&sk, "w1", now / 1000, TEXT);
        let foreign = cosign(&other, "w2", now / 1000, TEXT);
        let body = format!("{foreign}{good}");
        assert_eq!(
            check_cosignatures(&body, TEXT, &key, now, 600_000).unwrap(),
            good
        );
        // Over another checkpoint, by the key: refused.
        let wrong = cosign(&sk, "w1", now / 1000, "example.com/log\n4\nx\n");
        assert!(matches!(
            check_cosignatures(&wrong, TEXT, &key, now, 600_000),
            Err(Failure::BadCosignature(_))
        ));
        // Too old.
        let old = cosign(&sk, "w1", now / 1000 - 3600, TEXT);
        assert!(check_cosignatures(&old, TEXT, &key, now, 600_000).is_err());
        // Only foreign lines, or nothing.
        assert!(check_cosignatures(&foreign, TEXT, &key, now, 600_000).is_err());
        assert!(check_cosignatures("", TEXT, &key, now, 600_000).is_err());
    }
}
