//! The `add-checkpoint` request body (c2sp.org/tlog-witness, "add-checkpoint"): an old size
//! line, up to 63 consistency proof lines, an empty line, then the signed checkpoint note.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use countersign_verifier::{parse_decimal, Hash, MAX_NOTE_BYTES};

/// The most proof lines a client may send (tlog-witness: "MUST NOT send more than 63").
pub const MAX_PROOF_LINES: usize = 63;

/// The largest request body read: a note of [`MAX_NOTE_BYTES`] plus the old size line and 63
/// proof lines of 45 bytes each.
pub const MAX_REQUEST_BYTES: usize = MAX_NOTE_BYTES + 4096;

/// A parsed request; the note is not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint<'a> {
    /// The size of the checkpoint the client says the witness last cosigned.
    pub old_size: u64,
    /// The consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, as sent.
    pub note: &'a [u8],
}

/// Parses a request body; `Err` says, in words, which rule it breaks.
pub fn parse(body: &[u8]) -> Result<AddCheckpoint<'_>, &'static str> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err("request body is too large");
    }
    // The header lines are non-empty, so the first blank line ends them.
    let Some(split) = body.windows(2).position(|w| w == b"\n\n") else {
        return Err("no empty line between the old size and proof lines and the checkpoint");
    };
    let head = std::str::from_utf8(&body[..split]).map_err(|_| "header lines are not UTF-8")?;
    let note = &body[split + 2..];
    let mut lines = head.split('\n');
    let old = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .ok_or("the first line is not `old <size>`")?;
    let old_size =
        parse_decimal(old).ok_or("the old size is not a decimal without leading zeros")?;
    let mut proof = Vec::new();
    for l in lines {
        if proof.len() == MAX_PROOF_LINES {
            return Err("more than 63 consistency proof lines");
        }
        let h = B64
            .decode(l)
            .ok()
            .and_then(|b| Hash::from_slice(&b))
            .ok_or("a consistency proof line is not a base64 SHA-256 hash")?;
        proof.push(h);
    }
    Ok(AddCheckpoint {
        old_size,
        proof,
        note,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NOTE: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";

    #[test]
    fn parses_the_spec_example() {
        let body = format!(
            "old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\njrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\n{NOTE}"
        );
        let r = parse(body.as_bytes()).unwrap();
        assert_eq!(r.old_size, 20852014);
        assert_eq!(r.proof.len(), 4);
        assert_eq!(r.note, NOTE.as_bytes());
        let first = format!("old 0\n\n{NOTE}");
        let first = parse(first.as_bytes()).unwrap();
        assert_eq!((first.old_size, first.proof.len()), (0, 0));
    }

    #[test]
    fn rejects_malformed() {
        let h = "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n";
        for bad in [
            String::new(),
            format!("old 1\n{NOTE}").replace("\n\n", "\n"),
            format!("old 01\n\n{NOTE}"),
            format!("old -1\n\n{NOTE}"),
            format!("old  1\n\n{NOTE}"),
            format!("Old 1\n\n{NOTE}"),
            format!("\nold 1\n\n{NOTE}"),
            format!("old 1\nPlRNCrwH\n\n{NOTE}"),
            format!("old 1\n{}\n{NOTE}", h.trim_end().replace('=', "")),
            format!("old 1\n{}\n{NOTE}", h.repeat(64)),
            format!("old 1\n{}\n{NOTE}", "a".repeat(MAX_REQUEST_BYTES)),
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(parse(format!("old 1\n{}\n{NOTE}", h.repeat(63)).as_bytes()).is_ok());
    }
}
