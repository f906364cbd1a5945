//! Writes a large export archive for `benches/export.sh`, or measures the bare passkey check
//! rate on every core to compare the archive verifier with. (An example of the CLI package: it
//! has the verifier with the CLI's `fast` backend, and no database among its dependencies.)
//!
//! `export_archive write DIR N [es256|eddsa]`: an archive of N decisions (spec/export.md), all
//! with passkeys of that algorithm (default ES256), its log key on stdout.
//! `export_archive bare N`: N ES256 assertion checks (`verify_assertion`, default backend: ring,
//! as in the CLI) spread over all cores; prints checks per second.

use std::process::ExitCode;
use std::time::Instant;

use countersign_testvectors::archive::{build, ArchiveSpec};
use countersign_testvectors::generate::{ORIGIN, RP_ID};
use countersign_testvectors::{Alg, SoftPasskey};
use countersign_verifier::{parse_cose_key, verify_assertion, Assertion, AssertionPolicy};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["write", dir, n, rest @ ..] => {
            let Ok(n) = n.parse() else {
                return usage();
            };
            let alg = match rest.first() {
                Some(&"eddsa") => Alg::EdDsa,
                _ => Alg::Es256,
            };
            let t = Instant::now();
            let spec = ArchiveSpec {
                decisions: n,
                alg,
                second_alg: alg,
                withhold: n / 1000,
                ..ArchiveSpec::default()
            };
            match build(std::path::Path::new(dir), &spec) {
                Ok(a) => {
                    eprintln!(
                        "wrote {} entries ({} in the range) in {:.1} s",
                        a.tree_size,
                        a.end - a.start,
                        t.elapsed().as_secs_f64()
                    );
                    println!("{}", a.log_key);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{dir}: {e}");
                    ExitCode::from(2)
                }
            }
        }
        ["bare", n] => {
            let Ok(n) = n.parse::<usize>() else {
                return usage();
            };
            bare(n);
            ExitCode::SUCCESS
        }
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: export_archive write DIR N [es256|eddsa] | export_archive bare N");
    ExitCode::from(2)
}

fn bare(n: usize) {
    // 1,000 distinct assertions, checked round robin.
    let mut pk = SoftPasskey::new(Alg::Es256, 7, RP_ID);
    let key = parse_cose_key(&pk.cose_public_key()).unwrap_or_else(|_| unreachable!());
    let challenges: Vec<[u8; 64]> = (0..1000u32)
        .map(|i| {
            let mut c = [0u8; 64];
            c[..4].copy_from_slice(&i.to_be_bytes());
            c
        })
        .collect();
    let parts: Vec<_> = challenges.iter().map(|c| pk.assert(c, ORIGIN)).collect();
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    let t = Instant::now();
    std::thread::scope(|s| {
        for th in 0..threads {
            let (key, parts, challenges) = (&key, &parts, &challenges);
            s.spawn(move || {
                for i in (th..n).step_by(threads) {
                    let j = i % parts.len();
                    let p = &parts[j];
                    let ok = verify_assertion(
                        key,
                        &Assertion {
                            authenticator_data: &p.authenticator_data,
                            client_data_json: &p.client_data_json,
                            signature: &p.signature,
                        },
                        &challenges[j],
                        &AssertionPolicy {
                            rp_id: RP_ID,
                            allowed_origins: &[ORIGIN],
                            require_user_verification: true,
                            stored_sign_count: None,
                        },
                    );
                    assert!(ok.is_ok(), "assertion {j} does not verify");
                }
            });
        }
    });
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{n} ES256 assertion checks on {threads} threads in {secs:.2} s: {:.0} per second",
        n as f64 / secs
    );
}
