//! Which chain the log is linked with, and relinking it under a key (`netia audit rekey`, ADR 0021).
//!
//! The `audit_chain` table (one row, or none) records the id of the `AUDIT_KEY` the links are keyed
//! with ([`ChainKey::id`]); no row means plain SHA-256. It only keeps nodes consistent: a node
//! started with another key, or none, refuses to append links that would not verify. An auditor
//! verifies with the key itself, and a keyed verification accepts keyed links only, whatever the row
//! says.

use netia_events::RecordedEvent;
use netia_events::chain::{Chain, ChainKey, GENESIS};
use serde::Serialize;
use sqlx::{Connection, Row};
use uuid::Uuid;

use super::{StoreError, chain_input};

/// Rows relinked per statement.
const PAGE: i64 = 2_000;

/// How a relink changes each stored event besides its link: the new payload, or `None` to keep it.
pub type Rewrite<'a> = &'a mut (dyn FnMut(&RecordedEvent) -> Result<Option<serde_json::Value>, StoreError> + Send);

/// What a rekey (or a rewrite) did.
#[derive(Debug, Clone, Serialize)]
pub struct Rekeyed {
    pub streams: u64,
    pub events: u64,
    /// Events whose payload was rewritten (`netia gdpr seal-existing`; none for a rekey).
    pub rewritten: u64,
    /// The chain before, e.g. `sha256`.
    pub from: String,
    /// The chain now, `hmac-sha256:<key id>`.
    pub to: String,
}

/// Computes the new links of events read in `(stream_type, stream_id, version)` order, checking
/// the old links on the way: a log that does not verify is not relinked (that would launder an
/// edit).
struct Relinker<'a> {
    from: &'a Chain,
    to: &'a Chain,
    stream: Option<(String, String)>,
    version: i64,
    prev_old: Vec<u8>,
    prev_new: Vec<u8>,
    streams: u64,
    events: u64,
    rewritten: u64,
}

impl<'a> Relinker<'a> {
    fn new(from: &'a Chain, to: &'a Chain) -> Self {
        Self {
            from,
            to,
            stream: None,
            version: 0,
            prev_old: GENESIS.to_vec(),
            prev_new: GENESIS.to_vec(),
            streams: 0,
            events: 0,
            rewritten: 0,
        }
    }

    /// The new link of `e`, whose payload becomes `rewritten` if given.
    fn relink(&mut self, e: &RecordedEvent, rewritten: Option<&serde_json::Value>) -> Result<[u8; 32], StoreError> {
        let same = self
            .stream
            .as_ref()
            .is_some_and(|(t, i)| *t == e.stream_type && *i == e.stream_id);
        if !same {
            self.stream = Some((e.stream_type.clone(), e.stream_id.clone()));
            self.version = 0;
            self.prev_old = GENESIS.to_vec();
            self.prev_new = GENESIS.to_vec();
            self.streams += 1;
        }
        let broken = |reason: String| StoreError::Corrupt {
            position: e.global_position,
            reason: format!(
                "{}:{} version {}: {reason}; nothing was relinked",
                e.stream_type, e.stream_id, e.version
            ),
        };
        if e.version != self.version + 1 {
            return Err(broken(format!("version {} was expected", self.version + 1)));
        }
        let input = chain_input(e);
        if self.from.link(&self.prev_old, &input).as_slice() != e.hash.as_slice() {
            return Err(broken(format!(
                "the stored link does not verify under {}",
                self.from.name()
            )));
        }
        let mut input = input;
        if let Some(payload) = rewritten {
            input.payload = payload;
        }
        let new = self.to.link(&self.prev_new, &input);
        self.version = e.version;
        self.prev_old = e.hash.clone();
        self.prev_new = new.to_vec();
        self.events += 1;
        Ok(new)
    }

    fn report(&self) -> Rekeyed {
        Rekeyed {
            streams: self.streams,
            events: self.events,
            rewritten: self.rewritten,
            from: self.from.name(),
            to: self.to.name(),
        }
    }
}

/// The key id the log's links use (`None`: plain SHA-256).
pub(super) async fn marker_pg(pool: &sqlx::PgPool) -> Result<Option<String>, StoreError> {
    let row = match sqlx::query("SELECT key_id FROM audit_chain WHERE id = 1")
        .fetch_optional(pool)
        .await
    {
        Err(e) if missing_table(&e) => return Ok(None),
        other => other?,
    };
    Ok(row
        .map(|r| r.try_get::<Option<String>, _>("key_id"))
        .transpose()?
        .flatten())
}

/// A node started with `NETIA_MIGRATE=0` before the migration that makes `audit_chain`: plain.
fn missing_table(e: &sqlx::Error) -> bool {
    // PostgreSQL's undefined_table; SQLite says "no such table".
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") || db.message().contains("no such table"))
}

/// As [`marker_pg`].
pub(super) async fn marker_sqlite(pool: &sqlx::SqlitePool) -> Result<Option<String>, StoreError> {
    let row = match sqlx::query("SELECT key_id FROM audit_chain WHERE id = 1")
        .fetch_optional(pool)
        .await
    {
        Err(e) if missing_table(&e) => return Ok(None),
        other => other?,
    };
    Ok(row
        .map(|r| r.try_get::<Option<String>, _>("key_id"))
        .transpose()?
        .flatten())
}

/// The row that says the log is keyed with `key` from now on.
const MARK_PG: &str = "INSERT INTO audit_chain (id, key_id, keyed_at) VALUES (1, $1, now()) \
     ON CONFLICT (id) DO UPDATE SET key_id = excluded.key_id, keyed_at = excluded.keyed_at";
const MARK_SQLITE: &str = "INSERT INTO audit_chain (id, key_id, keyed_at) \
     VALUES (1, ?1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) \
     ON CONFLICT (id) DO UPDATE SET key_id = excluded.key_id, keyed_at = excluded.keyed_at";

/// Marks an empty PostgreSQL log as keyed with `key`, under the append lock (so no plain link can
/// slip in between). `false` if the log is not empty.
pub(super) async fn mark_empty_pg(pool: &sqlx::PgPool, key: &ChainKey) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT netia_events_lock()::text")
        .execute(&mut *tx)
        .await?;
    if sqlx::query("SELECT 1 FROM events LIMIT 1")
        .fetch_optional(&mut *tx)
        .await?
        .is_some()
    {
        return Ok(false);
    }
    sqlx::query(MARK_PG).bind(key.id()).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(true)
}

/// As [`mark_empty_pg`], on SQLite's one writer connection.
pub(super) async fn mark_empty_sqlite(writer: &sqlx::SqlitePool, key: &ChainKey) -> Result<bool, StoreError> {
    let mut conn = writer.acquire().await?;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    if sqlx::query("SELECT 1 FROM events LIMIT 1")
        .fetch_optional(&mut *tx)
        .await?
        .is_some()
    {
        return Ok(false);
    }
    sqlx::query(MARK_SQLITE).bind(key.id()).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(true)
}

/// Relinks every stream of a PostgreSQL log from `from` to `to` in one transaction, as the
/// table's owner (`owner`: a connection to `DATABASE_MIGRATE_URL`, or the app's own when it owns
/// the table). Appends wait on the append lock meanwhile; reads go on and see the old links until
/// the commit.
pub(super) async fn rekey_pg(
    owner: &mut sqlx::PgConnection,
    select_columns: &str,
    decode: fn(&sqlx::postgres::PgRow) -> Result<RecordedEvent, StoreError>,
    from: &Chain,
    to: &ChainKey,
) -> Result<Rekeyed, StoreError> {
    let to_chain = Chain::Keyed(to.clone());
    let mut keep = |_: &RecordedEvent| Ok(None);
    relink_pg(owner, select_columns, decode, (from, &to_chain), &mut keep, Some(to)).await
}

/// Relinks every stream of a PostgreSQL log from `chains.0` to `chains.1` in one transaction,
/// with the payloads `rewrite` gives (`None`: unchanged), and records `mark` as the log's key.
pub(super) async fn relink_pg(
    owner: &mut sqlx::PgConnection,
    select_columns: &str,
    decode: fn(&sqlx::postgres::PgRow) -> Result<RecordedEvent, StoreError>,
    (from, to_chain): (&Chain, &Chain),
    rewrite: Rewrite<'_>,
    mark: Option<&ChainKey>,
) -> Result<Rekeyed, StoreError> {
    let mut relinker = Relinker::new(from, to_chain);
    let mut tx = owner.begin().await?;
    sqlx::query("SELECT netia_events_lock()::text")
        .execute(&mut *tx)
        .await?;
    sqlx::query("ALTER TABLE events DISABLE TRIGGER events_no_update_delete")
        .execute(&mut *tx)
        .await?;
    let page = format!(
        "SELECT {select_columns} FROM events WHERE (stream_type, stream_id, version) > ($1, $2, $3) \
         ORDER BY stream_type, stream_id, version LIMIT $4"
    );
    let mut after = (String::new(), String::new(), 0_i64);
    loop {
        let rows = sqlx::query(&page)
            .bind(&after.0)
            .bind(&after.1)
            .bind(after.2)
            .bind(PAGE)
            .fetch_all(&mut *tx)
            .await?;
        let Some(last) = rows.last() else { break };
        let last = decode(last)?;
        after = (last.stream_type, last.stream_id, last.version);
        let mut ids = Vec::with_capacity(rows.len());
        let mut hashes = Vec::with_capacity(rows.len());
        let mut payloads = Vec::with_capacity(rows.len());
        for row in &rows {
            let event = decode(row)?;
            let payload = rewrite(&event)?;
            hashes.push(relinker.relink(&event, payload.as_ref())?.to_vec());
            relinker.rewritten += u64::from(payload.is_some());
            payloads.push(payload.map(|p| p.to_string()));
            ids.push(event.event_id);
        }
        sqlx::query(
            "UPDATE events SET hash = u.h, payload = COALESCE(u.p::json, payload) \
             FROM UNNEST($1::uuid[], $2::bytea[], $3::text[]) AS u(id, h, p) WHERE event_id = u.id",
        )
        .bind(&ids)
        .bind(&hashes)
        .bind(&payloads)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("ALTER TABLE events ENABLE TRIGGER events_no_update_delete")
        .execute(&mut *tx)
        .await?;
    if let Some(key) = mark {
        sqlx::query(MARK_PG).bind(key.id()).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(relinker.report())
}

/// The SQLite log's guard against updates, as `20261125000001_events.sql` creates it.
const SQLITE_NO_UPDATE: &str = "CREATE TRIGGER events_no_update BEFORE UPDATE ON events \
     BEGIN SELECT RAISE(ABORT, 'events are append-only (UPDATE refused)'); END";

/// As [`rekey_pg`] on SQLite: the one writer connection holds the write lock throughout; the
/// update guard is dropped and created again inside the transaction.
pub(super) async fn rekey_sqlite(
    writer: &sqlx::SqlitePool,
    select_columns: &str,
    decode: fn(&sqlx::sqlite::SqliteRow) -> Result<RecordedEvent, StoreError>,
    from: &Chain,
    to: &ChainKey,
) -> Result<Rekeyed, StoreError> {
    let to_chain = Chain::Keyed(to.clone());
    let mut keep = |_: &RecordedEvent| Ok(None);
    relink_sqlite(writer, select_columns, decode, (from, &to_chain), &mut keep, Some(to)).await
}

/// As [`relink_pg`] on SQLite.
pub(super) async fn relink_sqlite(
    writer: &sqlx::SqlitePool,
    select_columns: &str,
    decode: fn(&sqlx::sqlite::SqliteRow) -> Result<RecordedEvent, StoreError>,
    (from, to_chain): (&Chain, &Chain),
    rewrite: Rewrite<'_>,
    mark: Option<&ChainKey>,
) -> Result<Rekeyed, StoreError> {
    let mut relinker = Relinker::new(from, to_chain);
    let mut conn = writer.acquire().await?;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query("DROP TRIGGER IF EXISTS events_no_update")
        .execute(&mut *tx)
        .await?;
    let page = format!(
        "SELECT {select_columns} FROM events WHERE (stream_type, stream_id, version) > (?1, ?2, ?3) \
         ORDER BY stream_type, stream_id, version LIMIT ?4"
    );
    let mut after = (String::new(), String::new(), 0_i64);
    loop {
        let rows = sqlx::query(&page)
            .bind(&after.0)
            .bind(&after.1)
            .bind(after.2)
            .bind(PAGE)
            .fetch_all(&mut *tx)
            .await?;
        let Some(last) = rows.last() else { break };
        let last = decode(last)?;
        after = (last.stream_type, last.stream_id, last.version);
        for row in &rows {
            let event = decode(row)?;
            let payload = rewrite(&event)?;
            let hash = relinker.relink(&event, payload.as_ref())?;
            relinker.rewritten += u64::from(payload.is_some());
            sqlx::query("UPDATE events SET hash = ?1, payload = COALESCE(?2, payload) WHERE event_id = ?3")
                .bind(hash.as_slice())
                .bind(payload.map(|p| p.to_string()))
                .bind(id_text(event.event_id))
                .execute(&mut *tx)
                .await?;
        }
    }
    sqlx::query(SQLITE_NO_UPDATE).execute(&mut *tx).await?;
    if let Some(key) = mark {
        sqlx::query(MARK_SQLITE).bind(key.id()).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(relinker.report())
}

fn id_text(id: Uuid) -> String {
    id.to_string()
}
