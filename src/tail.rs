//! The gap-free log tailer: yields committed events in `(tx_id, global_position)` order, once each.

use std::sync::Arc;
use std::time::Duration;

use netia_events::{Checkpoint, RecordedEvent};
use tokio::sync::watch;

use crate::store::{EventStore, StoreError};

/// Default number of events per read.
pub const DEFAULT_BATCH: usize = 1_000;
/// How long a tailer waits without a wake-up before reading anyway.
pub const DEFAULT_POLL: Duration = Duration::from_millis(250);
/// Retry delays while events are held back behind an open transaction.
const HELD_BACK_FIRST_RETRY: Duration = Duration::from_millis(1);
const HELD_BACK_MAX_RETRY: Duration = Duration::from_millis(50);

/// A reader of the whole log from a checkpoint on, woken by appends (LISTEN/NOTIFY on PostgreSQL)
/// with a slow poll as fallback. It never skips a transaction that commits late: the store only
/// returns events below the oldest transaction still open.
pub struct Tailer {
    store: Arc<dyn EventStore>,
    checkpoint: Checkpoint,
    batch: usize,
    poll: Duration,
    wake: watch::Receiver<u64>,
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
        }
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
        let events = self.store.read_all(self.checkpoint, self.batch).await?;
        if let Some(last) = events.last() {
            self.checkpoint = last.checkpoint();
        }
        Ok(events)
    }

    /// Waits for and returns the next non-empty batch.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut held_back = HELD_BACK_FIRST_RETRY;
        loop {
            let events = self.try_next_batch().await?;
            if !events.is_empty() {
                return Ok(events);
            }
            // Committed events wait behind an older open transaction (possibly of another database
            // of the cluster, whose commit sends us no NOTIFY): look again soon.
            if self.store.has_pending(self.checkpoint).await? {
                tokio::time::sleep(held_back).await;
                held_back = (held_back * 2).min(HELD_BACK_MAX_RETRY);
                continue;
            }
            held_back = HELD_BACK_FIRST_RETRY;
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
