//! Where each projection stands in the log, stored beside its tables.

use netia_events::Checkpoint;
use sqlx::{AnyConnection, Row};

use crate::ProjectionError;

/// The `projection_checkpoints` table.
pub struct Checkpoints;

impl Checkpoints {
    pub async fn setup(conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS projection_checkpoints (\
                name TEXT PRIMARY KEY, \
                tx_id BIGINT NOT NULL, \
                position BIGINT NOT NULL, \
                updated_at TEXT NOT NULL)",
        )
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The checkpoint of `name`, or the start of the log.
    pub async fn load(conn: &mut AnyConnection, name: &str) -> Result<Checkpoint, ProjectionError> {
        Ok(Self::find(conn, name).await?.unwrap_or(Checkpoint::START))
    }

    /// The checkpoint of `name`, if it has one.
    pub async fn find(conn: &mut AnyConnection, name: &str) -> Result<Option<Checkpoint>, ProjectionError> {
        let row = sqlx::query("SELECT tx_id, position FROM projection_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(conn)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let tx_id: i64 = row.try_get("tx_id")?;
        Ok(Some(Checkpoint {
            tx_id: u64::try_from(tx_id).map_err(|e| ProjectionError::Invalid(format!("checkpoint tx_id: {e}")))?,
            position: row.try_get("position")?,
        }))
    }

    /// Gives `name` the checkpoint `to` unless it has one (another writer got there first), and
    /// returns the one that stands.
    pub async fn init(conn: &mut AnyConnection, name: &str, to: Checkpoint) -> Result<Checkpoint, ProjectionError> {
        let tx_id = i64::try_from(to.tx_id).map_err(|e| ProjectionError::Invalid(format!("checkpoint tx_id: {e}")))?;
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, tx_id, position, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(tx_id)
        .bind(to.position)
        .bind(netia_events::chain::format_time(chrono::Utc::now()))
        .execute(&mut *conn)
        .await?;
        Self::load(conn, name).await
    }

    /// Moves `name` from `from` to `to` if it still stands at `from`; call inside the transaction
    /// that applied the events between them. False means another writer moved it (a second
    /// instance, or a rebuild swapped in new tables): roll back and start again from the stored one.
    pub async fn advance(
        conn: &mut AnyConnection,
        name: &str,
        from: Checkpoint,
        to: Checkpoint,
    ) -> Result<bool, ProjectionError> {
        let tx = |c: Checkpoint| {
            i64::try_from(c.tx_id).map_err(|e| ProjectionError::Invalid(format!("checkpoint tx_id: {e}")))
        };
        let done = sqlx::query(
            "INSERT INTO projection_checkpoints (name, tx_id, position, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET tx_id = excluded.tx_id, position = excluded.position, \
             updated_at = excluded.updated_at \
             WHERE projection_checkpoints.tx_id = $5 AND projection_checkpoints.position = $6",
        )
        .bind(name)
        .bind(tx(to)?)
        .bind(to.position)
        .bind(netia_events::chain::format_time(chrono::Utc::now()))
        .bind(tx(from)?)
        .bind(from.position)
        .execute(conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Moves every checkpoint of `names` (which exist) from `from` to `to`, in one statement;
    /// returns how many moved: fewer than `names` means another writer moved some (roll back).
    pub async fn advance_all(
        conn: &mut AnyConnection,
        names: &[&str],
        from: Checkpoint,
        to: Checkpoint,
    ) -> Result<u64, ProjectionError> {
        let tx = |c: Checkpoint| {
            i64::try_from(c.tx_id).map_err(|e| ProjectionError::Invalid(format!("checkpoint tx_id: {e}")))
        };
        let sql = format!(
            "UPDATE projection_checkpoints SET tx_id = $1, position = $2, updated_at = $3 \
             WHERE tx_id = $4 AND position = $5 AND name IN ({})",
            crate::placeholders(6, names.len())
        );
        let mut query = sqlx::query(&sql)
            .bind(tx(to)?)
            .bind(to.position)
            .bind(netia_events::chain::format_time(chrono::Utc::now()))
            .bind(tx(from)?)
            .bind(from.position);
        for name in names {
            query = query.bind(*name);
        }
        Ok(query.execute(conn).await?.rows_affected())
    }

    /// Sets `name` to `to` unconditionally (a rebuild swapping in its tables).
    pub async fn save(conn: &mut AnyConnection, name: &str, to: Checkpoint) -> Result<(), ProjectionError> {
        let tx_id = i64::try_from(to.tx_id).map_err(|e| ProjectionError::Invalid(format!("checkpoint tx_id: {e}")))?;
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, tx_id, position, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET tx_id = excluded.tx_id, position = excluded.position, \
             updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(tx_id)
        .bind(to.position)
        .bind(netia_events::chain::format_time(chrono::Utc::now()))
        .execute(conn)
        .await?;
        Ok(())
    }
}
