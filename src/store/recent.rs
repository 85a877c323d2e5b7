//! What this process knows of the log's latest events (see [`Recent`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netia_events::{Checkpoint, RecordedEvent, StreamRef};
use tokio::sync::watch;

/// Where a process stood in the log when it learnt a stream's version (see
/// [`super::EventStore::stream_since`]): its last commit, the other processes' commits it had heard of
/// (PostgreSQL NOTIFYs), and when the database last confirmed it.
#[derive(Debug, Clone, Copy)]
pub struct LogMark {
    at: Checkpoint,
    epoch: u64,
    verified: Instant,
}

impl LogMark {
    /// The mark of an append taken before it (`self`) that ended at `at`: nothing of its stream
    /// can lie between the two, appends being serialized.
    pub fn after_append(self, at: Checkpoint) -> LogMark {
        LogMark { at, ..self }
    }
}

/// What this process knows of the log's latest events, so that tailers at the head (the usual
/// case) rarely read the database:
/// - the appends it committed lately, each with the head it followed: appends are serialized and
///   each learns that head under the append lock, so nothing can ever commit between the two, and a
///   tailer standing at that head gets the events from memory;
/// - that the database had nothing after some checkpoint when it was last read, which stays true
///   until another process commits (its NOTIFY bumps `epoch`) or a while passes (for writers that
///   send none): a tailer woken for nothing new is answered without a query.
///
/// Every wake-up of the store's tailers goes through here.
pub(crate) struct Recent {
    inner: Mutex<RecentState>,
    wake: watch::Sender<u64>,
}

#[derive(Default)]
struct RecentState {
    /// Each batch (in log order) by the checkpoint it follows.
    after: HashMap<Checkpoint, Arc<Vec<RecordedEvent>>>,
    /// Oldest first, for eviction.
    order: VecDeque<Checkpoint>,
    events: usize,
    /// The last event this process committed.
    local_head: Checkpoint,
    /// Bumped whenever another process may have committed.
    epoch: u64,
    /// The database had nothing after `at` in a read begun at `epoch`, at `when`.
    confirmed: Option<(Checkpoint, u64, Instant)>,
}

/// Events kept at most (then the oldest batches go; a tailer that far behind reads the database).
const RECENT_EVENTS: usize = 20_000;
/// How long a read that found nothing stands for, absent any NOTIFY.
const NOTHING_NEW_FOR: Duration = Duration::from_millis(200);

impl Default for Recent {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            wake: watch::channel(0).0,
        }
    }
}

impl Recent {
    fn state(&self) -> std::sync::MutexGuard<'_, RecentState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `events` (in log order), which this process committed right after `head`, and
    /// wakes the tailers. Returns the batches forgotten to make room (beyond [`RECENT_EVENTS`],
    /// oldest first; or one replaced at the same head, which cannot happen), for the caller to drop
    /// when it suits it: freeing thousands of events takes time, which the
    /// append writer spends after answering its callers rather than before (ADR 0006, "The
    /// append's client side").
    pub(crate) fn committed(
        &self,
        head: Checkpoint,
        events: impl Into<Arc<Vec<RecordedEvent>>>,
    ) -> Vec<Arc<Vec<RecordedEvent>>> {
        let events = events.into();
        let mut forgotten = Vec::new();
        let Some(last) = events.last().map(RecordedEvent::checkpoint) else {
            return forgotten;
        };
        {
            let mut state = self.state();
            state.local_head = state.local_head.max(last);
            state.events += events.len();
            if let Some(replaced) = state.after.insert(head, events) {
                // Cannot happen (two commits after one head); keep the count right if it does.
                state.events -= replaced.len();
                forgotten.push(replaced);
            } else {
                state.order.push_back(head);
            }
            while state.events > RECENT_EVENTS {
                let Some(oldest) = state.order.pop_front() else { break };
                if let Some(batch) = state.after.remove(&oldest) {
                    state.events -= batch.len();
                    forgotten.push(batch);
                }
            }
        }
        self.wake.send_modify(|n| *n += 1);
        forgotten
    }

    /// Another process may have committed (a NOTIFY, or a LISTEN connection lost): wakes the
    /// tailers, and the next read goes to the database.
    pub(crate) fn foreign_commit(&self) {
        self.state().epoch += 1;
        self.wake.send_modify(|n| *n += 1);
    }

    pub(crate) fn wake(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    /// What memory can answer for a read of up to `limit` events after `from`: the events, or
    /// nothing when nothing can have been committed since; `None` when the database must answer.
    pub(crate) fn read(&self, from: Checkpoint, limit: usize) -> Option<Vec<RecordedEvent>> {
        // (batch, how many of its events to take)
        let mut batches: Vec<(Arc<Vec<RecordedEvent>>, usize)> = Vec::new();
        {
            let state = self.state();
            let (mut at, mut n) = (from, 0);
            while n < limit {
                let Some(batch) = state.after.get(&at) else { break };
                let take = batch.len().min(limit - n);
                n += take;
                at = batch[..take].last().map_or(at, RecordedEvent::checkpoint);
                batches.push((batch.clone(), take));
            }
            if batches.is_empty() {
                let nothing_new = from >= state.local_head
                    && state.confirmed.is_some_and(|(at, epoch, when)| {
                        from >= at && epoch == state.epoch && when.elapsed() < NOTHING_NEW_FOR
                    });
                return nothing_new.then(Vec::new);
            }
            if n < limit && at < state.local_head {
                // Another process committed in between: a short read would look like the end of
                // the log, so the database answers it all.
                return None;
            }
        }
        Some(
            batches
                .iter()
                .flat_map(|(batch, take)| batch[..*take].iter().cloned())
                .collect(),
        )
    }

    /// Where this process stands in the log now (its last commit, and the NOTIFYs heard so far),
    /// for [`Recent::stream_since`]: taken before the read or append whose result it stands for.
    pub(crate) fn mark(&self) -> LogMark {
        let state = self.state();
        LogMark {
            at: state.local_head,
            epoch: state.epoch,
            verified: Instant::now(),
        }
    }

    /// The events of `stream` after `version` committed since `mark`, when memory knows every
    /// commit since then: no other process committed (no NOTIFY bumped the epoch), every commit of
    /// this one since `mark.at` is still kept, and `mark` was verified against the database less
    /// than [`NOTHING_NEW_FOR`] ago (for writers that send no NOTIFY). Returns them with the mark
    /// to use next time (moved to this process's head, still verified when `mark` was); `None`
    /// when the database must answer.
    pub(crate) fn stream_since(
        &self,
        mark: &LogMark,
        stream: &StreamRef,
        version: i64,
    ) -> Option<(Vec<RecordedEvent>, LogMark)> {
        if mark.verified.elapsed() >= NOTHING_NEW_FOR {
            return None;
        }
        let state = self.state();
        if state.epoch != mark.epoch {
            return None;
        }
        let (mut at, mut found) = (mark.at, Vec::new());
        while at < state.local_head {
            // A missing link: another process committed in between, or the batch was forgotten.
            let batch = state.after.get(&at)?;
            found.extend(
                batch
                    .iter()
                    .filter(|e| {
                        e.version > version && e.stream_id == stream.stream_id && e.stream_type == stream.stream_type
                    })
                    .cloned(),
            );
            at = batch.last()?.checkpoint();
        }
        Some((found, LogMark { at, ..*mark }))
    }

    /// The epoch to pass to [`Recent::read_database`], taken before the query starts.
    pub(crate) fn epoch(&self) -> u64 {
        self.state().epoch
    }

    /// A database read begun at `epoch` after `from` returned `events`, fewer than it asked for:
    /// the log then ended with them.
    pub(crate) fn read_database(&self, epoch: u64, from: Checkpoint, events: &[RecordedEvent]) {
        let end = events.last().map_or(from, RecordedEvent::checkpoint);
        let mut state = self.state();
        let newer = state
            .confirmed
            .is_none_or(|(at, known, _)| epoch > known || (epoch == known && end >= at));
        if newer {
            state.confirmed = Some((end, epoch, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn event(tx_id: u64, position: i64) -> RecordedEvent {
        RecordedEvent {
            global_position: position,
            tx_id,
            event_id: uuid::Uuid::now_v7(),
            stream_type: "probe".into(),
            stream_id: position.to_string(),
            version: 1,
            event_type: "Probed".into(),
            event_version: 1,
            payload: serde_json::json!({}),
            metadata: serde_json::json!({}),
            recorded_at: Utc::now(),
            hash: vec![0; 32],
            decoded: Default::default(),
        }
    }

    fn at(position: i64) -> Checkpoint {
        Checkpoint::at(position)
    }

    fn positions(events: Option<Vec<RecordedEvent>>) -> Option<Vec<i64>> {
        events.map(|events| events.iter().map(|e| e.global_position).collect())
    }

    #[test]
    fn a_reader_at_the_head_gets_the_appends_that_followed_it_chained_up_to_its_limit() {
        let recent = Recent::default();
        recent.committed(at(0), vec![event(10, 1), event(10, 2)]);
        recent.committed(at(2), vec![event(11, 3)]);
        recent.committed(at(3), vec![event(12, 4), event(12, 5)]);
        assert_eq!(positions(recent.read(at(0), 100)), Some(vec![1, 2, 3, 4, 5]));
        assert_eq!(positions(recent.read(at(2), 100)), Some(vec![3, 4, 5]));
        assert_eq!(
            positions(recent.read(at(0), 4)),
            Some(vec![1, 2, 3, 4]),
            "a batch is cut at the limit"
        );
        assert_eq!(positions(recent.read(at(3), 1)), Some(vec![4]));
        assert_eq!(
            positions(recent.read(at(4), 10)),
            None,
            "from inside a batch: the database"
        );
    }

    #[test]
    fn a_reader_between_local_appends_that_memory_cannot_bridge_asks_the_database() {
        let recent = Recent::default();
        // Another node committed (10, 2) between these two appends of this one.
        recent.committed(at(0), vec![event(9, 1)]);
        recent.committed(at(2), vec![event(11, 3)]);
        assert_eq!(
            positions(recent.read(at(0), 100)),
            None,
            "a short read would look like the end of the log"
        );
        assert_eq!(positions(recent.read(at(0), 1)), Some(vec![1]), "a full batch is fine");
        assert_eq!(positions(recent.read(at(1), 100)), None);
        assert_eq!(positions(recent.read(at(2), 100)), Some(vec![3]));
    }

    #[test]
    fn nothing_new_is_answered_only_until_another_process_commits_or_a_while_passes() {
        let recent = Recent::default();
        assert!(recent.read(at(0), 10).is_none(), "nothing known: ask the database");
        let epoch = recent.epoch();
        recent.read_database(epoch, at(0), &[event(5, 1)]);
        assert_eq!(positions(recent.read(at(1), 10)), Some(vec![]), "the log ended there");
        assert!(
            recent.read(at(0), 10).is_none(),
            "behind what was read: ask the database"
        );
        recent.foreign_commit();
        assert!(recent.read(at(1), 10).is_none(), "another node committed");
        let epoch = recent.epoch();
        recent.read_database(epoch, at(1), &[]);
        assert_eq!(positions(recent.read(at(1), 10)), Some(vec![]));
        {
            let mut state = recent.state();
            state.confirmed = state
                .confirmed
                .map(|(at, epoch, when)| (at, epoch, when - NOTHING_NEW_FOR));
        }
        assert!(recent.read(at(1), 10).is_none(), "a while passed");
    }

    #[test]
    fn a_read_that_began_before_a_notify_confirms_nothing() {
        let recent = Recent::default();
        let epoch = recent.epoch();
        recent.foreign_commit(); // arrives while the query runs
        recent.read_database(epoch, at(0), &[]);
        assert!(recent.read(at(0), 10).is_none());
    }

    #[test]
    fn a_local_append_after_the_confirmed_end_is_not_hidden_by_it() {
        let recent = Recent::default();
        recent.read_database(recent.epoch(), at(0), &[event(5, 1)]);
        // This node's append, after another node's that this node has not read yet.
        recent.committed(at(2), vec![event(7, 3)]);
        assert!(recent.read(at(1), 10).is_none(), "behind this node's own head");
        assert_eq!(positions(recent.read(at(3), 10)), Some(vec![]));
    }

    fn in_stream(stream: &str, version: i64, position: i64) -> RecordedEvent {
        RecordedEvent {
            stream_id: stream.into(),
            version,
            ..event(position as u64, position)
        }
    }

    fn since(recent: &Recent, mark: &LogMark, version: i64) -> Option<Vec<i64>> {
        recent
            .stream_since(mark, &StreamRef::new("probe", "s"), version)
            .map(|(events, _)| events.iter().map(|e| e.version).collect())
    }

    #[test]
    fn a_stream_s_local_appends_since_a_mark_come_from_memory_and_move_the_mark() {
        let recent = Recent::default();
        recent.committed(at(0), vec![in_stream("s", 1, 1)]);
        let mark = recent.mark();
        assert_eq!(since(&recent, &mark, 1), Some(vec![]), "nothing since");
        recent.committed(at(1), vec![in_stream("other", 1, 2)]);
        recent.committed(at(2), vec![in_stream("s", 2, 3), in_stream("s", 3, 4)]);
        assert_eq!(since(&recent, &mark, 1), Some(vec![2, 3]));
        assert_eq!(
            since(&recent, &mark, 2),
            Some(vec![3]),
            "what the caller has is left out"
        );
        let (_, moved) = recent.stream_since(&mark, &StreamRef::new("probe", "s"), 1).unwrap();
        assert_eq!(moved.at, at(4));
        assert_eq!(since(&recent, &moved, 3), Some(vec![]));
    }

    #[test]
    fn a_mark_stands_for_nothing_once_another_process_commits_or_a_while_passes() {
        let recent = Recent::default();
        let mark = recent.mark();
        recent.foreign_commit();
        assert_eq!(since(&recent, &mark, 0), None, "a NOTIFY came");
        let mark = recent.mark();
        // Another node's commit (position 1) between two of this one's: the chain has a hole.
        recent.committed(at(1), vec![in_stream("s", 2, 2)]);
        assert_eq!(since(&recent, &mark, 0), None, "no batch follows the mark");
        let old = LogMark {
            verified: Instant::now() - NOTHING_NEW_FOR,
            ..recent.mark()
        };
        assert_eq!(since(&recent, &old, 0), None, "verified too long ago");
    }

    #[test]
    fn old_batches_are_forgotten_past_the_limit() {
        let recent = Recent::default();
        let mut head = at(0);
        let mut forgotten = Vec::new();
        for i in 1..=(RECENT_EVENTS as i64 + 10) {
            forgotten.extend(recent.committed(head, vec![event(i as u64, i)]));
            head = at(i);
        }
        // Handed back to the committer, oldest first, for it to free outside the lock.
        let forgotten: Vec<i64> = forgotten
            .iter()
            .flat_map(|b| b.iter().map(|e| e.global_position))
            .collect();
        assert_eq!(forgotten, (1..=10).collect::<Vec<_>>());
        assert!(recent.read(at(0), 1).is_none(), "the oldest batch is gone");
        assert_eq!(positions(recent.read(at(10), 1)), Some(vec![11]));
        assert_eq!(recent.state().events, RECENT_EVENTS);
    }
}
