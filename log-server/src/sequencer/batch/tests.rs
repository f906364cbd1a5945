#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use std::time::Instant;
use tokio::sync::oneshot;

#[test]
fn fail_all_answers_every_request_with_the_error() {
    let (requests, replies): (Vec<_>, Vec<_>) = (0u8..3)
        .map(|i| {
            let (tx, rx) = oneshot::channel();
            let req = AppendRequest {
                entry: vec![i],
                leaf: countersign_verifier::leaf_hash(&[i]),
                kind: AppendKind::Enrolment {
                    credential_id: vec![i],
                },
                enqueued: Instant::now(),
                reply: tx,
            };
            (req, rx)
        })
        .unzip();
    // A caller that gave up (its receiver dropped) does not stop the others' answers.
    let mut replies = replies.into_iter();
    drop(replies.next());
    fail_all(requests, AppendError::ShuttingDown);
    for mut rx in replies {
        assert!(matches!(rx.try_recv(), Ok(Err(AppendError::ShuttingDown))));
    }
}
