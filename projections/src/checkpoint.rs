//! Where each projection stands in the log, stored beside its tables.

use netia_events::Checkpoint;
use sqlx::AnyConnection;

use crate::ProjectionError;

/// The `projection_checkpoints` table.
pub struct Checkpoints;

impl Checkpoints {
    /// Creates the table; drops the `tx_id` column that checkpoints carried before the log was
    /// ordered by position alone (ADR 0016): a stored `(tx_id, position)` checkpoint means the
    /// same place as `position` because appends are serialized, so the positions stand as they are;
    /// adds the `version` column (ADR 0019) to older tables, where every stored read model was
    /// built by version 1 of its projection.
    pub async fn setup(conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS projection_checkpoints (\
                name TEXT PRIMARY KEY, \
                position BIGINT NOT NULL, \
                updated_at TEXT NOT NULL, \
                version BIGINT NOT NULL DEFAULT 1)",
        )
        .execute(&mut *conn)
        .await?;
        if Self::has_column(conn, "tx_id").await? {
            sqlx::query("ALTER TABLE projection_checkpoints DROP COLUMN tx_id")
                .execute(&mut *conn)
                .await?;
        }
        if !Self::has_column(conn, "version").await? {
            // `IF NOT EXISTS` where the database has it: two nodes starting at once both add it.
            let add = if conn.backend_name().eq_ignore_ascii_case("sqlite") {
                "ALTER TABLE projection_checkpoints ADD COLUMN version BIGINT NOT NULL DEFAULT 1"
            } else {
                "ALTER TABLE projection_checkpoints ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 1"
            };
            sqlx::query(add).execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Whether the table has `column` (a probe that cannot fail, so that it can run inside a
    /// PostgreSQL transaction).
    async fn has_column(conn: &mut AnyConnection, column: &str) -> Result<bool, ProjectionError> {
        let probe = if conn.backend_name().eq_ignore_ascii_case("sqlite") {
            "SELECT COUNT(*) FROM pragma_table_info('projection_checkpoints', 'main') WHERE name = $1"
        } else {
            "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() \
             AND table_name = 'projection_checkpoints' AND column_name = $1"
        };
        let found: i64 = sqlx::query_scalar(probe).bind(column).fetch_one(&mut *conn).await?;
        Ok(found > 0)
    }

    /// The checkpoint of `name`, or the start of the log.
    pub async fn load(conn: &mut AnyConnection, name: &str) -> Result<Checkpoint, ProjectionError> {
        Ok(Self::find(conn, name).await?.unwrap_or(Checkpoint::START))
    }

    /// The checkpoint of `name`, if it has one.
    pub async fn find(conn: &mut AnyConnection, name: &str) -> Result<Option<Checkpoint>, ProjectionError> {
        let position: Option<i64> = sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(conn)
            .await?;
        Ok(position.map(Checkpoint::at))
    }

    /// The checkpoint of `name` and the version of the projection that wrote its tables, if it has
    /// a checkpoint.
    pub async fn find_versioned(
        conn: &mut AnyConnection,
        name: &str,
    ) -> Result<Option<(Checkpoint, i64)>, ProjectionError> {
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT position, version FROM projection_checkpoints WHERE name = $1")
                .bind(name)
                .fetch_optional(conn)
                .await?;
        Ok(row.map(|(position, version)| (Checkpoint::at(position), version)))
    }

    /// Gives `name` the checkpoint `to` unless it has one (another writer got there first), and
    /// returns the one that stands.
    pub async fn init(conn: &mut AnyConnection, name: &str, to: Checkpoint) -> Result<Checkpoint, ProjectionError> {
        Ok(Self::init_versioned(conn, name, to, 1).await?.0)
    }

    /// [`Self::init`] for a projection at `version`: returns the checkpoint and version that stand.
    pub async fn init_versioned(
        conn: &mut AnyConnection,
        name: &str,
        to: Checkpoint,
        version: i64,
    ) -> Result<(Checkpoint, i64), ProjectionError> {
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, position, updated_at, version) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(to.position)
        .bind(netia_events::chain::format_time(chrono::Utc::now()))
        .bind(version)
        .execute(&mut *conn)
        .await?;
        Ok(Self::find_versioned(conn, name).await?.unwrap_or((to, version)))
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
        let done = sqlx::query(
            "INSERT INTO projection_checkpoints (name, position, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at \
             WHERE projection_checkpoints.position = $4",
        )
        .bind(name)
        .bind(to.position)
        .bind(netia_events::chain::format_time(chrono::Utc::now()))
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
        let sql = format!(
            "UPDATE projection_checkpoints SET position = $1, updated_at = $2 \
             WHERE position = $3 AND name IN ({})",
            crate::placeholders(4, names.len())
        );
        let mut query = sqlx::query(&sql)
            .bind(to.position)
            .bind(netia_events::chain::format_time(chrono::Utc::now()))
            .bind(from.position);
        for name in names {
            query = query.bind(*name);
        }
        Ok(query.execute(conn).await?.rows_affected())
    }

    /// Sets `name` to `to` unconditionally (a rebuild swapping in its tables).
    pub async fn save(conn: &mut AnyConnection, name: &str, to: Checkpoint) -> Result<(), ProjectionError> {
        Self::save_versioned(conn, name, to, 1).await
    }

    /// [`Self::save`] for tables built by version `version` of the projection.
    pub async fn save_versioned(
        conn: &mut AnyConnection,
        name: &str,
        to: Checkpoint,
        version: i64,
    ) -> Result<(), ProjectionError> {
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, position, updated_at, version) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at, \
             version = excluded.version",
        )
        .bind(name)
        .bind(to.position)
        .bind(netia_events::chain::format_time(chrono::Utc::now()))
        .bind(version)
        .execute(conn)
        .await?;
        Ok(())
    }
}
