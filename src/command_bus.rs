//! Executes commands: load the stream, decide, append with the expected version, retry if it commutes.
//!
//! Commands on one stream take turns within a node (a fair, first-come lock per stream, shared by
//! every command bus of the process: the HTTP handlers', the LLM consumer's, the scheduler's…), so
//! writers on one node never conflict with each other; a conflict with another node is retried,
//! for commands that commute (a message commutes with everything), until a deadline.

use std::any::Any;
use std::collections::HashMap;
use std::fmt::Display;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use netia_commands::{Commutes, Decide};
use netia_events::{DomainEvent, EventError, Metadata, RecordedEvent, StreamRef};

use crate::store::{EventStore, LogMark, StoreError, StreamBound};

/// How many times a commuting command is decided at most (conflicts with other nodes' writers).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 1_000;
/// How long a commuting command keeps retrying after conflicts before it reports one.
pub const RETRY_DEADLINE: Duration = Duration::from_secs(10);
/// Longest pause between two attempts (the pause doubles from 200 µs, with full jitter).
const MAX_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error + 'static> {
    /// The aggregate refused the command.
    #[error(transparent)]
    Domain(E),
    /// Another writer changed the stream; for non-commuting commands this is the caller's 409.
    #[error("the {stream} changed concurrently; reload and try again")]
    Conflict { stream: StreamRef },
    #[error(transparent)]
    Corrupt(#[from] EventError),
    #[error("cannot encode event: {0}")]
    Encode(#[from] serde_json::Error),
    /// The store failed. Not `transparent`: the [`StoreError`] itself stays in the `source()`
    /// chain, so [`crate::store::unavailable_in`] finds an unavailable database through any
    /// wrapper (a 503, not a 500).
    #[error("{0}")]
    Store(#[source] StoreError),
}

/// The result of a command: the events it appended (none for a no-op) and the stream's version.
#[derive(Debug, Clone)]
pub struct Executed {
    pub events: Vec<RecordedEvent>,
    pub version: i64,
    pub attempts: u32,
}

/// Aggregate states kept in memory (by stream), so that a command reads only the events its cached
/// state has not seen. The log is append-only: a cached state at version `v` stays exactly the fold
/// of events `1..=v`, whatever other writers do; it only needs the events after it.
const CACHED_STATES: usize = 10_000;

type StateCache = Mutex<HashMap<String, Cached>>;

/// A cached aggregate state: the fold of its stream's events `1..=version`, and where the log
/// stood when that was the stream's version (none for stores that cannot tell).
struct Cached {
    state: Arc<dyn Any + Send + Sync>,
    version: i64,
    mark: Option<LogMark>,
}

/// One turn lock per stream with commands in flight (dropped entries are swept as the map grows).
type StreamTurns = Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>;

/// The process's turn locks: one node is one process, whichever bus a command goes through.
/// (Stream ids are UUIDs, so two stores in one process — tests — share no lock by accident in
/// any way that matters: at worst two of their commands take turns.)
fn turns() -> &'static StreamTurns {
    static TURNS: std::sync::OnceLock<StreamTurns> = std::sync::OnceLock::new();
    TURNS.get_or_init(StreamTurns::default)
}

#[derive(Clone)]
pub struct CommandBus {
    store: Arc<dyn EventStore>,
    max_attempts: u32,
    cache: Arc<StateCache>,
    use_cache: bool,
}

impl CommandBus {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            cache: Arc::default(),
            use_cache: true,
        }
    }

    /// Reads every stream in full for every command (no state cache): each attempt's decision is
    /// then made on the stream as stored, which tests of concurrent appends rely on.
    pub fn without_state_cache(mut self) -> Self {
        self.use_cache = false;
        self
    }

    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// An aggregate's current state and version. A cached state is brought up to date from this
    /// process's memory of its own appends when no other process has appended since (see
    /// [`EventStore::stream_since`]), otherwise from the events stored after it.
    pub async fn load<A>(&self, id: impl Display) -> Result<(A, i64), CommandError<A::Error>>
    where
        A: Decide + Clone + 'static,
        A::Event: DomainEvent,
    {
        let stream = StreamRef::new(<A::Event as DomainEvent>::STREAM_TYPE, id);
        let cached = self.cached::<A>(&stream);
        if let Some((state, version, Some(mark))) = &cached {
            let since = self
                .store
                .stream_since(&stream, *version, mark)
                .await
                .map_err(CommandError::Store)?;
            if let Some((events, mark)) = since {
                return self.caught_up(&stream, state.clone(), *version, &events, Some(mark));
            }
        }
        self.read::<A>(&stream, cached).await
    }

    /// Reads the stream after `cached`'s version (all of it when nothing is cached).
    async fn read<A>(
        &self,
        stream: &StreamRef,
        cached: Option<(A, i64, Option<LogMark>)>,
    ) -> Result<(A, i64), CommandError<A::Error>>
    where
        A: Decide + Clone + 'static,
        A::Event: DomainEvent,
    {
        let (state, version, _) = cached.unwrap_or_default();
        let bound = if version > 0 {
            StreamBound::After(version)
        } else {
            StreamBound::All
        };
        // Taken before the read: whatever commits after it is this process's (kept in memory) or
        // another's (a NOTIFY).
        let mark = self.store.log_mark();
        let recorded = self
            .store
            .read_stream(stream, bound)
            .await
            .map_err(CommandError::Store)?;
        self.caught_up(stream, state, version, &recorded, mark)
    }

    /// Applies `events` (those after `version`) to `state` and caches the result at `mark`.
    fn caught_up<A>(
        &self,
        stream: &StreamRef,
        mut state: A,
        mut version: i64,
        events: &[RecordedEvent],
        mark: Option<LogMark>,
    ) -> Result<(A, i64), CommandError<A::Error>>
    where
        A: Decide + Clone + 'static,
        A::Event: DomainEvent,
    {
        for event in events {
            cqrs_es::Aggregate::apply(&mut state, <A::Event as DomainEvent>::decode(event)?);
            version = event.version;
        }
        if version > 0 {
            self.remember(stream.to_string(), state.clone(), version, mark);
        }
        Ok((state, version))
    }

    /// The cached state of `stream`, if any (possibly behind the store).
    fn cached<A: Clone + 'static>(&self, stream: &StreamRef) -> Option<(A, i64, Option<LogMark>)> {
        if !self.use_cache {
            return None;
        }
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(&stream.to_string()).and_then(|cached| {
            cached
                .state
                .downcast_ref::<A>()
                .map(|s| (s.clone(), cached.version, cached.mark))
        })
    }

    /// Caches `state` at `version` unless a later version is cached already.
    fn remember<A: Send + Sync + 'static>(&self, key: String, state: A, version: i64, mark: Option<LogMark>) {
        if !self.use_cache {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHED_STATES && !cache.contains_key(&key) {
            cache.clear();
        }
        match cache.get(&key) {
            Some(cached) if cached.version > version => {}
            _ => {
                let state = Arc::new(state);
                cache.insert(key, Cached { state, version, mark });
            }
        }
    }

    /// The turn lock of `stream`: tokio's mutex queues waiters first come, first served.
    fn turn(&self, stream: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = turns().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(turn) = turns.get(stream).and_then(Weak::upgrade) {
            return turn;
        }
        if turns.len() >= CACHED_STATES {
            turns.retain(|_, turn| turn.strong_count() > 0);
        }
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        turns.insert(stream.to_owned(), Arc::downgrade(&turn));
        turn
    }

    /// Decides `command` against aggregate `id` and appends the outcome.
    pub async fn execute<A>(
        &self,
        id: impl Display,
        command: A::Command,
        metadata: &Metadata,
    ) -> Result<Executed, CommandError<A::Error>>
    where
        A: Decide + Clone + 'static,
        A::Command: Commutes,
        A::Event: DomainEvent,
    {
        self.execute_all::<A>(id, std::slice::from_ref(&command), metadata)
            .await
    }

    /// Decides `commands` in order (each against the state the previous ones left) and appends all
    /// their events in one append: all or nothing. Retried after a concurrent append only if every
    /// command commutes.
    #[tracing::instrument(level = "debug", skip_all, fields(stream_type = <A::Event as DomainEvent>::STREAM_TYPE, id = %id), err(level = "debug"))]
    pub async fn execute_all<A>(
        &self,
        id: impl Display,
        commands: &[A::Command],
        metadata: &Metadata,
    ) -> Result<Executed, CommandError<A::Error>>
    where
        A: Decide + Clone + 'static,
        A::Command: Commutes,
        A::Event: DomainEvent,
    {
        let stream = StreamRef::new(<A::Event as DomainEvent>::STREAM_TYPE, id);
        let metadata = serde_json::to_value(metadata)?;
        let commutes = commands.iter().all(Commutes::commutes);
        let turn = self.turn(&stream.to_string());
        let _turn = turn.lock().await;
        let deadline = tokio::time::Instant::now() + RETRY_DEADLINE;
        let mut attempt = 0;
        // First try on the cached state without reading the stream: the append's expected version
        // proves it current. Anything else (a conflict, a refusal, a no-op) is decided again on
        // the stream as stored before it is believed.
        let mut optimistic = true;
        loop {
            attempt += 1;
            let cached = if optimistic { self.cached::<A>(&stream) } else { None };
            optimistic = false;
            let fresh = cached.is_none();
            // Decided again: on the stream as stored, never on memory alone.
            let (mut state, version) = match cached {
                Some((state, version, _)) => (state, version),
                None => self.read::<A>(&stream, self.cached::<A>(&stream)).await?,
            };
            let mut decided = Vec::new();
            let mut refused = None;
            for command in commands {
                match state.decide(command) {
                    Ok(events) => {
                        for event in &events {
                            cqrs_es::Aggregate::apply(&mut state, event.clone());
                        }
                        decided.extend(events);
                    }
                    Err(e) => {
                        refused = Some(e);
                        break;
                    }
                }
            }
            if !fresh && (refused.is_some() || decided.is_empty()) {
                attempt -= 1;
                continue;
            }
            if let Some(e) = refused {
                return Err(CommandError::Domain(e));
            }
            if decided.is_empty() {
                return Ok(Executed {
                    events: Vec::new(),
                    version,
                    attempts: attempt,
                });
            }
            // Whose personal data the events hold, known once they are applied (ADR 0023).
            let subject = state.subject();
            let new_events = netia_events::codec::encode(&decided, &metadata)?
                .into_iter()
                .map(|e| e.with_subject(subject.clone()))
                .collect();
            let mark = self.store.log_mark();
            match self.store.append(&stream, version, new_events).await {
                Ok(events) => {
                    let version = events.last().map_or(version, |e| e.version);
                    let mark = mark.zip(events.last()).map(|(m, e)| m.after_append(e.checkpoint()));
                    self.remember(stream.to_string(), state, version, mark);
                    return Ok(Executed {
                        events,
                        version,
                        attempts: attempt,
                    });
                }
                // The cache was behind: that was no attempt, load and decide properly.
                Err(e) if e.is_conflict() && !fresh => attempt -= 1,
                Err(e)
                    if e.is_conflict()
                        && commutes
                        && attempt < self.max_attempts
                        && tokio::time::Instant::now() < deadline =>
                {
                    // Another node's writer: back off exponentially, with full jitter, so that
                    // colliding writers spread out.
                    let ceiling = (200u64 << attempt.min(16)).min(MAX_BACKOFF.as_micros() as u64);
                    tokio::time::sleep(Duration::from_micros(fastrand::u64(0..=ceiling))).await;
                }
                Err(e) if e.is_conflict() => return Err(CommandError::Conflict { stream }),
                Err(e) => return Err(CommandError::Store(e)),
            }
        }
    }
}
