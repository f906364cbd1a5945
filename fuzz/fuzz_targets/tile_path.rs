//! C2SP tlog-tiles paths (what follows `/tile/`): every accepted path is the one canonical path
//! of its tile, so formatting the parsed tile gives the input back.
#![no_main]

use countersign_log::tiles::{format_index, parse_tile_path, TILE_WIDTH};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = parse_tile_path(path) else {
        return;
    };
    let mut again = match t.level {
        Some(l) => {
            assert!(l <= 7);
            l.to_string()
        }
        None => "entries".to_owned(),
    };
    again.push('/');
    again.push_str(&format_index(t.index));
    if let Some(w) = t.partial {
        assert!(w >= 1 && u64::from(w) < TILE_WIDTH);
        again.push_str(&format!(".p/{w}"));
    }
    assert_eq!(again, path, "tile path is not canonical");
});
