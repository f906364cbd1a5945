//! Plain HTTP reads shared by the test crates: each expects a 2xx answer.

use countersign_verifier::{verify_checkpoint, Checkpoint, VerifierKey};

/// `GET url`: the body of a 2xx answer.
pub async fn get_text(client: &reqwest::Client, url: &str) -> String {
    let r = client.get(url).send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "GET {url}: {status} {text}");
    text
}

/// `GET url`: the JSON body of a 2xx answer.
pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    serde_json::from_str(&get_text(client, url).await).unwrap()
}

/// The checkpoint served at `base`, its signature checked against `vkey`.
pub async fn fetch_checkpoint(
    client: &reqwest::Client,
    base: &str,
    vkey: &VerifierKey,
) -> Checkpoint {
    let text = get_text(client, &format!("{base}/checkpoint")).await;
    verify_checkpoint(text.as_bytes(), vkey, &[])
        .expect("served checkpoint verifies")
        .checkpoint
}
