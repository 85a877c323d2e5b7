//! Consumers without RabbitMQ: each follows the log itself, from its own checkpoint
//! (`consumer:<name>`), handling the events its bindings match in log order. A failing event is
//! retried after the same backoff as on RabbitMQ (the consumer waits meanwhile: its later events wait
//! too), then parked; the checkpoint moves past an event once it is handled or parked. Past events
//! it does not want (not bound, or not its concern: [`Consumer::concerns`]), the checkpoint moves
//! at most once per [`SKIP_MOVE_EVERY`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use netia_events::{Checkpoint, RecordedEvent};
use netia_projections::Checkpoints;
use sqlx::{AnyPool, Connection};
use tokio::sync::watch;

use super::{BusError, Consumer, Outcome, RetryPolicy, matches, process, routing_key};
use crate::backoff::sleep_or_stop;
use crate::projector::begin_statement;
use crate::store::EventStore;
use crate::tail::Tailer;

/// How often, at most, a consumer's checkpoint moves past events it does not want (most events: a
/// consumer of SMS replies wants none of a chat's messages, the outbound webhooks none of an
/// account without subscriptions). Each move is a transaction; moving after every such event cost
/// the two consumers that always run three statements each per chat message under load (a quarter
/// of the database round trips a message caused). A move held back is made once this has
/// passed, whether or not more events come; one lost in a crash or a stop only makes the consumer
/// read those events again and pass over them again.
pub const SKIP_MOVE_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Embedded {
    pub store: Arc<dyn EventStore>,
    pub db: AnyPool,
    pub policy: RetryPolicy,
}

impl Embedded {
    /// Feeds `consumer` until `stop` turns true.
    pub async fn run(self, consumer: Arc<dyn Consumer>, mut stop: watch::Receiver<bool>) {
        let name = consumer.name();
        let checkpoint_name = format!("consumer:{name}");
        let lease = tokio::select! {
            lease = crate::lease::acquire(&self.db, self.store.backend(), &checkpoint_name) => lease,
            _ = stop.wait_for(|s| *s) => return,
        };
        // A lost lease stops the work at once (another node has it); the supervisor starts again.
        tokio::select! {
            () = self.follow(consumer, &checkpoint_name, &mut stop) => {}
            () = lease.lost() => {}
        }
    }

    /// Feeds `consumer` from its checkpoint `checkpoint_name` until `stop` turns true.
    async fn follow(&self, consumer: Arc<dyn Consumer>, checkpoint_name: &str, stop: &mut watch::Receiver<bool>) {
        let name = consumer.name();
        let bindings = consumer.bindings();
        let at = loop {
            match self.load(checkpoint_name).await {
                Ok(at) => break at,
                Err(e) => {
                    tracing::warn!(consumer = name, error = %e, "cannot read the consumer checkpoint; retrying");
                    if sleep_or_stop(stop, Duration::from_secs(1)).await {
                        return;
                    }
                }
            }
        };
        let mut tailer = Tailer::new(self.store.clone(), at).with_batch(200);
        let mut pos = Position::new(at);
        loop {
            let due = pos.moved_at + SKIP_MOVE_EVERY;
            let events = tokio::select! {
                events = tailer.next_batch() => Some(events),
                () = tokio::time::sleep_until(due.into()), if pos.skipped_to.is_some() => None,
                _ = stop.wait_for(|s| *s) => return,
            };
            let Some(events) = events else {
                // Time to make the move held back.
                let Some(to) = pos.skipped_to else { continue };
                match self.move_to(checkpoint_name, pos.at, to, stop).await {
                    Some(next) => pos.moved(next),
                    None => return,
                }
                continue;
            };
            let events = match events {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(consumer = name, error = %e, "cannot read the log; retrying");
                    if sleep_or_stop(stop, Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            };
            for event in &events {
                let key = routing_key(event);
                if !bindings.iter().any(|b| matches(b, &key)) {
                    continue;
                }
                let mut attempt = 1;
                let wanted = loop {
                    match process(&self.db, consumer.as_ref(), event, attempt, &self.policy).await {
                        Ok(Outcome::NotConcerned) => break false,
                        Ok(Outcome::Handled | Outcome::Duplicate | Outcome::Parked) => break true,
                        Ok(Outcome::RetryAfter(wait)) => {
                            attempt += 1;
                            if sleep_or_stop(stop, wait).await {
                                return;
                            }
                        }
                        // Another node handles it (after a lease change): look again, same attempt.
                        Ok(Outcome::Busy(wait)) => {
                            if sleep_or_stop(stop, wait).await {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(consumer = name, error = %e, "consumer bookkeeping failed; retrying");
                            if sleep_or_stop(stop, Duration::from_secs(1)).await {
                                return;
                            }
                        }
                    }
                };
                if !wanted {
                    continue;
                }
                // Moved past each handled event, so a restart does not run its effect again.
                match self.move_to(checkpoint_name, pos.at, event.checkpoint(), stop).await {
                    Some(next) => pos.moved(next),
                    None => return,
                }
            }
            // Past the events of the batch it does not want: now if it has not moved for a while,
            // else once it has not (the branch above).
            if let Some(last) = events
                .last()
                .map(RecordedEvent::checkpoint)
                .filter(|last| *last > pos.at)
            {
                if pos.moved_at.elapsed() < SKIP_MOVE_EVERY {
                    pos.skipped_to = Some(last);
                    continue;
                }
                match self.move_to(checkpoint_name, pos.at, last, stop).await {
                    Some(next) => pos.moved(next),
                    None => return,
                }
            }
        }
    }

    /// Moves the checkpoint from `at` to `next`, retrying on errors; `None` when told to stop or
    /// when someone else moved it.
    async fn move_to(
        &self,
        name: &str,
        at: Checkpoint,
        next: Checkpoint,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Checkpoint> {
        loop {
            match self.advance(name, at, next).await {
                Ok(true) => return Some(next),
                Ok(false) => {
                    tracing::error!(checkpoint = name, "consumer checkpoint moved by someone else; stopping");
                    return None;
                }
                Err(e) => {
                    tracing::warn!(checkpoint = name, error = %e, "cannot move the consumer checkpoint; retrying");
                    if sleep_or_stop(stop, Duration::from_secs(1)).await {
                        return None;
                    }
                }
            }
        }
    }

    async fn load(&self, name: &str) -> Result<Checkpoint, BusError> {
        super::start_at(&self.db, self.store.as_ref(), name).await
    }

    /// Moves the checkpoint, in a transaction begun as a projector's is ([`begin_statement`]): on
    /// PostgreSQL it does not wait for its own WAL flush. What a consumer handled is recorded
    /// durably by its claim (`claims::done`), so a move lost in a crash only makes it read those
    /// events again and skip them as duplicates; waiting would cost a flush per consumer and
    /// event, which the appends behind them wait for on a slow disk.
    async fn advance(&self, name: &str, from: Checkpoint, to: Checkpoint) -> Result<bool, BusError> {
        let mut conn = self.db.acquire().await?;
        let mut tx = (*conn).begin_with(begin_statement(self.store.backend())).await?;
        let moved = Checkpoints::advance(&mut tx, name, from, to).await?;
        if moved {
            tx.commit().await?;
        }
        Ok(moved)
    }
}

/// A consumer's checkpoint as its loop knows it: where it is, when it last moved, and where it may
/// move past unwanted events once [`SKIP_MOVE_EVERY`] has passed (held back).
struct Position {
    at: Checkpoint,
    moved_at: Instant,
    skipped_to: Option<Checkpoint>,
}

impl Position {
    /// At `at`, free to move at once.
    fn new(at: Checkpoint) -> Self {
        let moved_at = Instant::now().checked_sub(SKIP_MOVE_EVERY).unwrap_or_else(Instant::now);
        Self {
            at,
            moved_at,
            skipped_to: None,
        }
    }

    /// The checkpoint moved to `next` just now; nothing is held back any more.
    fn moved(&mut self, next: Checkpoint) {
        (self.at, self.moved_at, self.skipped_to) = (next, Instant::now(), None);
    }
}
