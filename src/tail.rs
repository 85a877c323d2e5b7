//! The gap-free log tailer: yields committed events in `global_position` order (commit order, ADR 0016), once each.

use std::sync::Arc;
use std::time::Duration;

use netia_events::{Checkpoint, RecordedEvent};
use tokio::sync::watch;

use crate::store::{EventStore, StoreError};

/// Default number of events per read.
pub const DEFAULT_BATCH: usize = 1_000;
/// How long a tailer waits without a wake-up before reading anyway.
pub const DEFAULT_POLL: Duration = Duration::from_millis(250);

/// A reader of the whole log from a checkpoint on, woken by appends (LISTEN/NOTIFY on PostgreSQL)
/// with a slow poll as fallback. Appends are serialized (commit order is log order), so no event can
/// commit behind one already handed out.
pub struct Tailer {
    store: Arc<dyn EventStore>,
    checkpoint: Checkpoint,
    batch: usize,
    poll: Duration,
    wake: watch::Receiver<u64>,
    /// Whether events come with their metadata ([`EventStore::read_all_payloads`] when not).
    metadata: bool,
}

impl Tailer {
    pub fn new(store: Arc<dyn EventStore>, from: Checkpoint) -> Self {
        let wake = store.wake();
        Self {
            store,
            checkpoint: from,
            batch: DEFAULT_BATCH,
            poll: DEFAULT_POLL,
            wake,
            metadata: true,
        }
    }

    /// Reads events without their metadata (`Value::Null`), for readers that use only payloads.
    pub fn without_metadata(mut self) -> Self {
        self.metadata = false;
        self
    }

    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    pub fn with_poll(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The last event handed out (or the starting point).
    pub fn checkpoint(&self) -> Checkpoint {
        self.checkpoint
    }

    /// The next events that are available now, possibly none.
    pub async fn try_next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        // Mark the current wake-up as seen before reading, so that one arriving during the read
        // is not lost.
        self.wake.borrow_and_update();
        let events = if self.metadata {
            self.store.read_all(self.checkpoint, self.batch).await?
        } else {
            self.store.read_all_payloads(self.checkpoint, self.batch).await?
        };
        if let Some(last) = events.last() {
            self.checkpoint = last.checkpoint();
        }
        Ok(events)
    }

    /// Waits for and returns the next non-empty batch.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        loop {
            let events = self.try_next_batch().await?;
            if !events.is_empty() {
                return Ok(events);
            }
            tokio::select! {
                changed = self.wake.changed() => {
                    if changed.is_err() {
                        // The store is gone; keep polling rather than spinning.
                        tokio::time::sleep(self.poll).await;
                    }
                }
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }
}
