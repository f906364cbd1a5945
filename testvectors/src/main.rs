//! Writes the generated vectors under `testvectors/` (or the directory given as the first
//! argument). `--check` compares instead of writing and exits 1 on any difference.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.iter().any(|a| a == "--check");
    let dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
                || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
                std::path::PathBuf::from,
            )
        });
    let files = countersign_testvectors::generate::generate();
    let mut stale = 0;
    for (rel, text) in &files {
        let path = dir.join(rel);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                eprintln!("stale: {}", path.display());
                stale += 1;
            }
            continue;
        }
        if let Some(parent) = path.parent() {
            if let Err(e) = std::fs::create_dir_all(parent) {
                eprintln!("{}: {e}", parent.display());
                return ExitCode::from(2);
            }
        }
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if check {
        if stale > 0 {
            eprintln!("{stale} vector files differ from the generator; run `cargo run -p countersign-testvectors`");
            return ExitCode::from(1);
        }
        println!("{} vector files are up to date", files.len());
    } else {
        println!("wrote {} vector files under {}", files.len(), dir.display());
    }
    ExitCode::SUCCESS
}
