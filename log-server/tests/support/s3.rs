//! The S3 server `COUNTERSIGN_TEST_S3_BUCKET` names (scripts/test.sh starts one with
//! scripts/s3-server.sh and sets it with the `AWS_*` variables), shared by the test crates.

/// A URL of the test bucket under a prefix of its own (`<tag>-<128 random bits>`), so that
/// tests and runs never meet. Unset, the test is skipped with a note, except under CI, where
/// scripts/test.sh always sets it: there the test fails.
pub fn bucket_url(tag: &str) -> Option<String> {
    let Ok(bucket) = std::env::var("COUNTERSIGN_TEST_S3_BUCKET") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "COUNTERSIGN_TEST_S3_BUCKET is not set under CI: scripts/test.sh starts an S3 server"
        );
        eprintln!("COUNTERSIGN_TEST_S3_BUCKET is not set: skipped");
        return None;
    };
    Some(format!("{bucket}/{tag}-{:032x}", rand::random::<u128>()))
}

/// A fresh prefix in the Azure Blob Storage container of the emulator scripts/test.sh starts
/// (`az://CONTAINER/<tag>-<random>`), or `None` without one (outside CI).
#[allow(dead_code)]
pub fn az_url(tag: &str) -> Option<String> {
    let Ok(container) = std::env::var("COUNTERSIGN_TEST_AZ_CONTAINER") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "COUNTERSIGN_TEST_AZ_CONTAINER is not set under CI: scripts/test.sh starts Azurite"
        );
        eprintln!("COUNTERSIGN_TEST_AZ_CONTAINER is not set: skipped");
        return None;
    };
    Some(format!("{container}/{tag}-{:032x}", rand::random::<u128>()))
}
