#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    a: ApprovalsArgs,
}

fn config(flags: &[&str], listen: &str) -> Result<CibaConfig, String> {
    let cli = Cli::try_parse_from(std::iter::once("countersign").chain(flags.iter().copied()))
        .map_err(|e| e.to_string())?;
    cli.a
        .config(listen.parse().unwrap())
        .map_err(|e| e.to_string())
}

#[test]
fn with_tls_the_default_public_url_is_https() {
    let cli = Cli::try_parse_from(["countersign"]).unwrap();
    let c = cli
        .a
        .config_with("127.0.0.1:8443".parse().unwrap(), true)
        .unwrap();
    assert_eq!(c.public_url, "https://localhost:8443");
    assert!(c.secure_cookies());
    let c = cli
        .a
        .config_with("192.0.2.7:443".parse().unwrap(), true)
        .unwrap();
    assert_eq!(c.public_url, "https://192.0.2.7:443");
    let cli =
        Cli::try_parse_from(["countersign", "--public-url", "https://approve.example"]).unwrap();
    let c = cli
        .a
        .config_with("127.0.0.1:8443".parse().unwrap(), true)
        .unwrap();
    assert_eq!(
        c.public_url, "https://approve.example",
        "an explicit URL is kept"
    );
}

#[test]
fn defaults_and_the_public_url_of_a_listener() {
    let c = config(&[], "127.0.0.1:8080").unwrap();
    assert_eq!(c.public_url, "http://localhost:8080");
    assert_eq!(c.evidence_retention_days, 400);
    assert_eq!(
        (c.min_expiry_secs, c.default_expiry_secs, c.max_expiry_secs),
        (30, 300, 3600)
    );
    assert_eq!(c.binding_message_max_chars, 128);
    assert_eq!(c.delivery_attempts, 10);
    assert_eq!(c.delivery_backoff, Duration::from_millis(500));
    assert_eq!(c.cleanup_interval, Duration::from_secs(60));
    assert!(c.aaguid_allowlist.is_none() && c.webhook_url.is_none() && c.smtp_url.is_none());

    let c = config(&[], "192.0.2.7:443").unwrap();
    assert_eq!(c.public_url, "http://192.0.2.7:443");
    let c = config(&["--public-url", "https://approve.example"], "[::1]:80").unwrap();
    assert_eq!(c.public_url, "https://approve.example");
}

/// A PEM file of a generated root, kept while the returned directory lives.
fn roots_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("roots.pem");
    let pki = countersign_testvectors::attestation::TestPki::new("Args");
    std::fs::write(&p, pki.root.pem).unwrap();
    let s = p.to_str().unwrap().to_owned();
    (dir, s)
}

#[test]
fn an_allowlist_needs_an_attestation_policy() {
    let e = config(
        &["--aaguid-allow", "00112233445566778899aabbccddeeff"],
        "127.0.0.1:1",
    )
    .unwrap_err();
    assert!(
        e.contains("--aaguid-allow needs an attestation policy"),
        "{e}"
    );
    let (_dir, roots) = roots_file();
    let c = config(
        &[
            "--aaguid-allow",
            "00112233445566778899aabbccddeeff",
            "--attestation-roots",
            &roots,
        ],
        "127.0.0.1:1",
    )
    .unwrap();
    assert!(c.attestation.is_some());
    let e = config(
        &["--attestation-roots", "/nonexistent/roots.pem"],
        "127.0.0.1:1",
    )
    .unwrap_err();
    assert!(e.contains("cannot read /nonexistent/roots.pem"), "{e}");
    let e = config(&["--attestation-mds", &roots], "127.0.0.1:1").unwrap_err();
    assert!(e.contains("--attestation-mds-root"), "{e}");
    // Not a JWS.
    let e = config(
        &[
            "--attestation-mds",
            &roots,
            "--attestation-mds-root",
            &roots,
        ],
        "127.0.0.1:1",
    )
    .unwrap_err();
    assert!(e.contains("--attestation-mds: MDS BLOB"), "{e}");
}

#[test]
fn flags_become_the_configuration() {
    let (_dir, roots) = roots_file();
    let c = config(
        &[
            "--attestation-roots",
            &roots,
            "--binding-message-max",
            "256",
            "--min-expiry",
            "10",
            "--default-expiry",
            "10",
            "--max-expiry",
            "20",
            "--poll-interval",
            "0",
            "--aaguid-allow",
            "00112233-4455-6677-8899-aabbccddeeff,ffffffffffffffffffffffffffffffff",
            "--authorization-details-type",
            "payment_initiation",
            "--webhook-url",
            "https://hooks.example/x",
            "--webhook-secret",
            "k",
            "--smtp-url",
            "smtp://mail.example:587",
            "--smtp-from",
            "a@example",
            "--request-retention",
            "7",
            "--evidence-retention-days",
            "0",
            "--cleanup-interval",
            "0",
            "--delivery-attempts",
            "2",
            "--delivery-backoff-ms",
            "0",
        ],
        "127.0.0.1:1",
    )
    .unwrap();
    assert_eq!(c.binding_message_max_chars, 256);
    assert_eq!(
        (c.min_expiry_secs, c.default_expiry_secs, c.max_expiry_secs),
        (10, 10, 20)
    );
    // Zero intervals would spin: they are raised to the smallest useful value.
    assert_eq!(c.interval_secs, 1);
    assert_eq!(c.cleanup_interval, Duration::from_secs(1));
    assert_eq!(c.delivery_backoff, Duration::from_millis(1));
    let mut first = [0u8; 16];
    hex::decode_to_slice("00112233445566778899aabbccddeeff", &mut first).unwrap();
    assert_eq!(c.aaguid_allowlist, Some(vec![first, [0xff; 16]]));
    assert_eq!(c.authorization_details_types, ["payment_initiation"]);
    assert_eq!(c.webhook_url.as_deref(), Some("https://hooks.example/x"));
    assert_eq!(c.webhook_secret.unwrap().expose(), "k");
    assert_eq!(c.smtp_url.unwrap().expose(), "smtp://mail.example:587");
    assert_eq!(c.smtp_from, "a@example");
    assert_eq!(c.request_retention_secs, 7);
    assert_eq!(c.evidence_retention_days, 0);
    assert_eq!(c.delivery_attempts, 2);
}

#[test]
fn authorization_details_types_skip_empty_and_repeated_names() {
    let types = |flags: &[&str]| {
        config(flags, "127.0.0.1:1")
            .unwrap()
            .authorization_details_types
    };
    assert!(types(&[]).is_empty());
    assert!(types(&["--authorization-details-type", ""]).is_empty());
    assert_eq!(
        types(&[
            "--authorization-details-type",
            "payment_initiation,, deploy",
            "--authorization-details-type",
            "payment_initiation"
        ]),
        ["payment_initiation", "deploy"]
    );
}

#[test]
fn inconsistent_flags_are_refused_with_the_rule() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--binding-message-max", "0"],
            "--binding-message-max must be 1 to 256",
        ),
        (
            &["--binding-message-max", "257"],
            "--binding-message-max must be 1 to 256",
        ),
        (
            &["--min-expiry", "0"],
            "expiry bounds must satisfy 0 < min <= default <= max",
        ),
        (
            &[
                "--min-expiry",
                "100",
                "--max-expiry",
                "50",
                "--default-expiry",
                "60",
            ],
            "expiry bounds must satisfy 0 < min <= default <= max",
        ),
        (
            &["--default-expiry", "4000"],
            "expiry bounds must satisfy 0 < min <= default <= max",
        ),
        (
            &["--default-expiry", "10"],
            "expiry bounds must satisfy 0 < min <= default <= max",
        ),
        (
            &["--aaguid-allow", "0011"],
            "--aaguid-allow \"0011\" is not an AAGUID",
        ),
        (
            &["--aaguid-allow", "zz112233445566778899aabbccddeeff"],
            "is not an AAGUID",
        ),
        (
            &["--delivery-attempts", "0"],
            "--delivery-attempts must be at least 1",
        ),
        (
            &["--webhook-url", "https://hooks.example/x"],
            "--webhook-url and --webhook-secret go together",
        ),
        (
            &["--webhook-secret", "k"],
            "--webhook-url and --webhook-secret go together",
        ),
    ];
    for (flags, want) in cases {
        let e = config(flags, "127.0.0.1:1").unwrap_err();
        assert!(e.contains(want), "{flags:?}: {e:?} does not say {want:?}");
    }
}
