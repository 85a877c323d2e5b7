//! Group commit for PostgreSQL: appends that arrive together share one append statement
//! (`netia_append_each`; `netia_append_one` for an append alone), so one commit (one WAL flush)
//! serves many of them. The statement checks each append's expected version under the append lock
//! and answers per append: a stale one is refused (a conflict) while the others commit. If the
//! database refuses the statement as a whole, each append is tried alone so that only the
//! offending ones fail. Committed events go to [`Recent`] with the head they follow, which wakes
//! local tailers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use netia_events::{Checkpoint, RecordedEvent, StreamRef};
use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPool;
use tokio::sync::{mpsc, oneshot, watch};

use crate::supervisor::{Components, supervise};

use super::{PreparedEvent, Recent, to_recorded};

mod copy;
mod statements;
use copy::{COPY_MIN_ROWS, insert_copied};
use statements::{insert, insert_one};

const MAX_APPENDS_PER_BATCH: usize = 256;
const MAX_ROWS_PER_BATCH: usize = 5_000;

/// Where each inserted event of an append landed: `(global_position, tx_id)`, in version order;
/// `None` if the statement refused the append (its expected version was stale).
type Placed = Option<Vec<(i64, u64)>>;

pub(super) struct Append {
    pub stream: StreamRef,
    pub prepared: Vec<PreparedEvent>,
    /// Gets where its recorded events are in the statement's batch ([`Placement`]), or why they
    /// were not stored.
    pub reply: oneshot::Sender<Result<Placement, WriteError>>,
    /// Who has the append: [`QUEUED`], then [`TAKEN`] by the writer just before its statement, or
    /// [`ABANDONED`] by a caller whose deadline passed first (then it is never written).
    pub state: Arc<AtomicU8>,
}

/// Waiting in the writer's queue.
pub(super) const QUEUED: u8 = 0;
/// In a statement (its outcome is the statement's).
pub(super) const TAKEN: u8 = 1;
/// Given up by its caller before any statement: never written.
pub(super) const ABANDONED: u8 = 2;

impl Append {
    /// Claims the append for a statement; `false` if its caller gave up.
    fn take(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            || self.state.load(Ordering::Acquire) == TAKEN
    }
}

/// What the writer tasks share.
#[derive(Clone)]
pub(super) struct Committed {
    pub recent: Arc<Recent>,
    /// The NOTIFY payload: tells this store's wake-ups from other nodes'.
    pub node: String,
}

#[derive(Debug)]
pub(super) enum WriteError {
    /// The unique `(stream, version)` constraint refused the append: nothing of it was stored.
    Conflict,
    /// The database refused the statement: nothing of it was stored.
    Refused(sqlx::Error),
    /// The database could not be reached (no connection within the pool's timeout): nothing was
    /// stored.
    Unreachable(String),
    /// The connection failed while the statement ran: it may or may not have committed.
    Unknown(String),
}

impl From<sqlx::Error> for WriteError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db)
                if db.code().as_deref() == Some("23505") && db.constraint() == Some("events_stream_version") =>
            {
                WriteError::Conflict
            }
            sqlx::Error::Database(_) => WriteError::Refused(e),
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => WriteError::Unreachable(e.to_string()),
            _ => WriteError::Unknown(e.to_string()),
        }
    }
}

/// Starts the writer task, supervised as `store_writer` (restarted if it panics: the appends of
/// the batch it was writing fail as of unknown outcome, the queued ones wait for the next run);
/// appends are sent through the returned channel. One writer: appends are serialized by the
/// database anyway (the append lock), so a second one would only wait on the lock with a smaller
/// batch. It ends once every sender is gone.
pub(super) fn spawn(
    pool: PgPool,
    committed: Committed,
    components: &Arc<Components>,
    stop: &watch::Sender<bool>,
) -> mpsc::Sender<Append> {
    let (tx, rx) = mpsc::channel::<Append>(4 * MAX_APPENDS_PER_BATCH);
    // Outlives a run that panics, so that queued appends stay queued.
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    supervise(components.clone(), "store_writer", stop.subscribe(), move |_| {
        write_batches(pool.clone(), rx.clone(), committed.clone())
    });
    tx
}

async fn write_batches(pool: PgPool, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Append>>>, committed: Committed) {
    let mut rx = rx.lock().await;
    // One connection, kept from statement to statement (given back when the pool closes, which
    // waits for it); a new one after a failure.
    let mut conn = None;
    loop {
        let next = if conn.is_some() {
            tokio::select! {
                next = rx.recv() => next,
                () = pool.close_event() => {
                    conn = None;
                    rx.recv().await
                }
            }
        } else {
            rx.recv().await
        };
        let Some(first) = next else { break };
        // Callers whose previous appends were just answered are woken together, but each queues
        // its next append only when its task runs: one turn at the back of the run queue lets
        // those already woken queue theirs into this batch instead of waiting out a whole
        // statement for the next (measured with 8 writers: 7.7 appends a batch on average).
        tokio::task::yield_now().await;
        let mut rows = first.prepared.len();
        let mut batch = vec![first];
        while batch.len() < MAX_APPENDS_PER_BATCH && rows < MAX_ROWS_PER_BATCH {
            match rx.try_recv() {
                Ok(next) => {
                    rows += next.prepared.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        // A connection first (bounded): without one, nothing of the batch can be written.
        if conn.is_none() {
            let reason = match tokio::time::timeout(super::APPEND_DEADLINE, pool.acquire()).await {
                Ok(Ok(acquired)) => {
                    conn = Some(acquired);
                    None
                }
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("no database connection within the append deadline".to_owned()),
            };
            if let Some(reason) = reason {
                for append in batch {
                    let _ = append.reply.send(Err(WriteError::Unreachable(reason.clone())));
                }
                continue;
            }
        }
        // Appends whose callers' deadlines passed while they queued are never written.
        batch.retain(Append::take);
        if batch.is_empty() {
            continue;
        }
        if batch.len() > 1 {
            match statement(&pool, &mut conn, &batch, &committed.node).await {
                Ok((head, placed)) => {
                    metrics::histogram!("netia_store_write_batch_appends").record(batch.len() as f64);
                    committed.deliver(head, batch, placed);
                    continue;
                }
                // The database refused the statement (or, from a node without per-append status,
                // a unique violation): nothing was stored, so each append can safely be tried alone.
                Err(WriteError::Conflict | WriteError::Refused(_)) => {}
                // No database: the whole batch fails at once (one by one, each would wait for
                // the pool's timeout again).
                Err(WriteError::Unreachable(reason)) => {
                    for append in batch {
                        let _ = append.reply.send(Err(WriteError::Unreachable(reason.clone())));
                    }
                    continue;
                }
                // Retrying after a possible commit could store events twice: report, don't retry.
                Err(WriteError::Unknown(reason)) => {
                    for append in batch {
                        let _ = append.reply.send(Err(WriteError::Unknown(reason.clone())));
                    }
                    continue;
                }
            }
        }
        for append in batch {
            match statement(&pool, &mut conn, std::slice::from_ref(&append), &committed.node).await {
                Ok((head, placed)) => {
                    metrics::histogram!("netia_store_write_batch_appends").record(1.0);
                    committed.deliver(head, vec![append], placed);
                }
                Err(e) => {
                    let _ = append.reply.send(Err(e));
                }
            }
        }
    }
}

/// Runs one append statement on `conn` (taken from the pool first if there is none). A connection
/// that failed mid-statement is closed rather than reused.
async fn statement(
    pool: &PgPool,
    conn: &mut Option<PoolConnection<Postgres>>,
    appends: &[Append],
    node: &str,
) -> Result<(Checkpoint, Vec<Placed>), WriteError> {
    let held = match conn {
        Some(held) => held,
        None => conn.insert(pool.acquire().await.map_err(WriteError::from)?),
    };
    let rows: usize = appends.iter().map(|a| a.prepared.len()).sum();
    let copied = if rows >= COPY_MIN_ROWS {
        insert_copied(held, appends, node).await
    } else {
        Ok(None)
    };
    let result = match copied {
        Ok(Some(done)) => Ok(done),
        // Too few rows to copy, or an append that did not hold rolled the copy back: the append
        // statement answers per append.
        Ok(None) => match appends {
            [append] => insert_one(&mut **held, append, node).await,
            _ => insert(&mut **held, appends, node).await,
        },
        Err(e) => Err(e),
    }
    .map_err(WriteError::from);
    if let Err(WriteError::Unknown(_)) = &result
        && let Some(broken) = conn.take()
    {
        drop(broken.detach());
    }
    result
}

/// Where one append's recorded events are: in its statement's batch, shared with [`Recent`], so
/// that the writer copies nothing for its callers; each caller copies its own events
/// ([`Placement::events`]) on its own task, while the writer goes on to the next statement.
#[derive(Debug)]
pub(super) struct Placement {
    batch: Arc<Vec<RecordedEvent>>,
    /// Indexes into `batch` of the append's events, in version order.
    at: Vec<usize>,
}

impl Placement {
    /// The append's recorded events, in version order.
    pub(super) fn events(&self) -> Vec<RecordedEvent> {
        self.at.iter().map(|&i| self.batch[i].clone()).collect()
    }
}

impl Committed {
    /// Records one committed statement's appends, wakes local tailers, answers each append. The
    /// events go to [`Recent`] as they are and each caller gets their place there; the batches
    /// `Recent` forgets are freed only once every caller has its answer.
    fn deliver(&self, head: Checkpoint, appends: Vec<Append>, placed: Vec<Placed>) {
        let mut in_log_order: Vec<(usize, RecordedEvent)> = Vec::new();
        let mut accepted = Vec::with_capacity(appends.len());
        let mut replies = Vec::with_capacity(appends.len());
        for (a, (append, placed)) in appends.into_iter().zip(placed).enumerate() {
            accepted.push(placed.is_some());
            replies.push(append.reply);
            if let Some(placed) = placed {
                let stream = &append.stream;
                in_log_order.extend(
                    append
                        .prepared
                        .into_iter()
                        .zip(placed)
                        .map(|(p, (position, tx_id))| (a, to_recorded(stream, p, position, tx_id))),
                );
            }
        }
        // Already in log order (the statement inserts appends in the order sent); kept sorted
        // whatever the statement did.
        in_log_order.sort_by_key(|(_, event)| event.checkpoint());
        let mut at: Vec<Vec<usize>> = vec![Vec::new(); replies.len()];
        let mut events = Vec::with_capacity(in_log_order.len());
        for (i, (a, event)) in in_log_order.into_iter().enumerate() {
            at[a].push(i);
            events.push(event);
        }
        // Each caller gets its events in version order, as it sent them.
        for indexes in &mut at {
            indexes.sort_by_key(|&i| events[i].version);
        }
        let batch = Arc::new(events);
        let forgotten = self.recent.committed(head, batch.clone());
        for ((reply, accepted), at) in replies.into_iter().zip(accepted).zip(at) {
            let answer = if accepted {
                Ok(Placement {
                    batch: batch.clone(),
                    at,
                })
            } else {
                Err(WriteError::Conflict)
            };
            let _ = reply.send(answer);
        }
        drop(forgotten);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(
        stream: &str,
        versions: std::ops::RangeInclusive<i64>,
    ) -> (Append, oneshot::Receiver<Result<Placement, WriteError>>) {
        let (reply, answer) = oneshot::channel();
        let prepared = versions
            .map(|version| PreparedEvent {
                event_id: uuid::Uuid::now_v7(),
                version,
                event_type: "Probed".into(),
                event_version: 1,
                payload: serde_json::json!({ "v": version }),
                metadata: serde_json::json!({}),
                payload_text: format!("{{\"v\":{version}}}"),
                metadata_text: "{}".into(),
                recorded_at: chrono::Utc::now(),
                hash: [0; 32],
            })
            .collect();
        let append = Append {
            stream: StreamRef::new("probe", stream),
            prepared,
            reply,
            state: Arc::new(AtomicU8::new(TAKEN)),
        };
        (append, answer)
    }

    fn placed(answer: &mut oneshot::Receiver<Result<Placement, WriteError>>) -> Vec<(String, i64, i64)> {
        let placement = answer.try_recv().expect("answered").expect("placed");
        placement
            .events()
            .into_iter()
            .map(|e| (e.stream_id, e.version, e.global_position))
            .collect()
    }

    #[test]
    fn each_caller_gets_its_own_events_in_version_order_and_a_refused_one_a_conflict() {
        // Given a statement after position 10 that placed a's two events (out of version order,
        // which the database never does, but the answer must not depend on it), refused b, and
        // placed c's one event between a's.
        let committed = Committed {
            recent: Arc::new(Recent::default()),
            node: "node".into(),
        };
        let (a, mut a_answer) = append("a", 1..=2);
        let (b, mut b_answer) = append("b", 5..=5);
        let (c, mut c_answer) = append("c", 3..=3);
        let placement = vec![Some(vec![(13, 7), (11, 7)]), None, Some(vec![(12, 7)])];
        // When it is delivered
        committed.deliver(Checkpoint::at(10), vec![a, b, c], placement);
        // Then each caller has its own events, in version order, and b a conflict
        assert_eq!(placed(&mut a_answer), [("a".into(), 1, 13), ("a".into(), 2, 11)]);
        assert!(matches!(b_answer.try_recv(), Ok(Err(WriteError::Conflict))));
        assert_eq!(placed(&mut c_answer), [("c".into(), 3, 12)]);
        // and tailers at the head it followed read the batch from memory, in log order.
        let positions: Vec<i64> = committed
            .recent
            .read(Checkpoint::at(10), 10)
            .expect("from memory")
            .iter()
            .map(|e| e.global_position)
            .collect();
        assert_eq!(positions, [11, 12, 13]);
    }

    #[test]
    fn a_broken_connection_leaves_the_outcome_unknown() {
        let io = sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"));
        assert!(matches!(WriteError::from(io), WriteError::Unknown(_)));
    }

    #[test]
    fn a_statement_never_sent_was_not_stored() {
        // No connection: nothing stored, and the database is away (the whole batch fails at once).
        assert!(matches!(
            WriteError::from(sqlx::Error::PoolTimedOut),
            WriteError::Unreachable(_)
        ));
        assert!(matches!(
            WriteError::from(sqlx::Error::PoolClosed),
            WriteError::Unreachable(_)
        ));
    }
}
