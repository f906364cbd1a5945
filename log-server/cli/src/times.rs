//! Times as the CLI prints and reads them: RFC 3339 in UTC (`2026-12-05T07:00:00Z`), never raw
//! Unix seconds, and `--since` as such a time or a duration ago (`2h`, `30m`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// First second RFC 3339's four-digit year cannot write (year 10000).
const YEAR_10000: u64 = 253_402_300_800;

/// `secs` (Unix seconds) as RFC 3339 UTC, to the second. A time past year 9999, which only a
/// damaged record holds, is printed as its number, said to be one.
pub fn rfc3339(secs: u64) -> String {
    if secs >= YEAR_10000 {
        return format!("{secs} (Unix seconds)");
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// [`rfc3339`] of an optional JSON number; `-` when it is absent or not a number.
pub fn rfc3339_of(v: &serde_json::Value) -> String {
    v.as_u64().map_or_else(|| "-".to_owned(), rfc3339)
}

/// Reads `--since`: an RFC 3339 UTC time (`2026-12-05T07:00:00Z`) or a duration before `now`
/// (`2h`, `30m`, `1day 2h`, as humantime reads them); returns Unix seconds.
pub fn parse_since(arg: &str, now: SystemTime) -> Result<u64, String> {
    let arg = arg.trim();
    let at = match humantime::parse_rfc3339_weak(arg) {
        Ok(t) => t,
        Err(_) => {
            let ago = humantime::parse_duration(arg).map_err(|_| {
                format!(
                    "--since {arg:?} is neither an RFC 3339 UTC time (2026-12-05T07:00:00Z) nor \
                     a duration ago (2h, 30m, 1day)"
                )
            })?;
            now.checked_sub(ago).unwrap_or(UNIX_EPOCH)
        }
    };
    Ok(at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_to_the_second() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_454_000), "2026-12-05T07:00:00Z");
        assert_eq!(rfc3339(YEAR_10000 - 1), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(YEAR_10000), "253402300800 (Unix seconds)");
        assert_eq!(rfc3339_of(&serde_json::json!(60)), "1970-01-01T00:01:00Z");
        assert_eq!(rfc3339_of(&serde_json::Value::Null), "-");
    }

    #[test]
    fn since_is_a_time_or_a_duration_ago() {
        let now = UNIX_EPOCH + Duration::from_secs(1_796_454_000);
        assert_eq!(parse_since("2026-12-05T07:00:00Z", now), Ok(1_796_454_000));
        assert_eq!(parse_since("2026-12-05 07:00:01", now), Ok(1_796_454_001));
        assert_eq!(parse_since("2h", now), Ok(1_796_454_000 - 7200));
        assert_eq!(parse_since(" 30m ", now), Ok(1_796_454_000 - 1800));
        assert_eq!(parse_since("1day 1s", now), Ok(1_796_454_000 - 86_401));
        // Further back than the epoch: everything.
        assert_eq!(parse_since("100years", UNIX_EPOCH), Ok(0));
        for bad in ["yesterday", "", "2026-13-01T00:00:00Z", "-2h", "1796454000"] {
            let e = parse_since(bad, now).unwrap_err();
            assert!(
                e.starts_with("--since ") && e.contains("RFC 3339"),
                "{bad}: {e}"
            );
        }
    }
}
