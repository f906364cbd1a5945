//! Live inbox streams: which approver's open pages to wake when one of their requests changes.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

/// Live inbox streams, one broadcast channel per approver with an inbox open: a change wakes
/// only that approver's streams (the request id is the message), not every open inbox.
#[derive(Debug, Default)]
pub(crate) struct InboxChannels(Mutex<HashMap<String, broadcast::Sender<String>>>);

impl InboxChannels {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<String>>> {
        match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// A receiver of this approver's changes.
    pub(crate) fn subscribe(&self, approver_id: &str) -> broadcast::Receiver<String> {
        let mut map = self.map();
        // Channels whose streams have all ended go here (a stream lives a few minutes).
        map.retain(|_, tx| tx.receiver_count() > 0);
        map.entry(approver_id.to_owned())
            .or_insert_with(|| broadcast::channel(64).0)
            .subscribe()
    }

    /// Tells this approver's open streams, if any, that a request changed.
    pub(crate) fn send(&self, approver_id: &str, request_id: &str) {
        let mut map = self.map();
        if let Some(tx) = map.get(approver_id) {
            if tx.send(request_id.to_owned()).is_err() {
                // Nobody listens any more.
                map.remove(approver_id);
            }
        }
    }

    /// Approvers with a channel (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn inbox_changes_reach_only_their_approver_and_channels_go_with_their_streams() {
        let inbox = InboxChannels::default();
        let mut a1 = inbox.subscribe("alice");
        let mut a2 = inbox.subscribe("alice");
        let mut b = inbox.subscribe("bob");
        inbox.send("alice", "r1");
        inbox.send("carol", "r2"); // nobody listens: nothing happens
        assert_eq!(a1.try_recv().unwrap(), "r1");
        assert_eq!(a2.try_recv().unwrap(), "r1");
        assert!(
            b.try_recv().is_err(),
            "bob must not be woken by alice's requests"
        );
        assert_eq!(inbox.len(), 2);
        drop((a1, a2));
        // The next change for alice finds no receiver and drops her channel.
        inbox.send("alice", "r3");
        assert_eq!(inbox.len(), 1);
        drop(b);
        // A new stream prunes channels whose streams have all ended.
        let _c = inbox.subscribe("carol");
        assert_eq!(inbox.len(), 1);
    }
}
