//! Two PostgreSQL roles (ADR 0021): the owner (`DATABASE_MIGRATE_URL`) runs the migrations and owns
//! the log; the app (`DATABASE_URL`) may read and append events and nothing more on them, so it
//! cannot update, delete or truncate events, disable their triggers, or replace the functions that
//! guard them. It keeps full use of everything else, and owns the read models' tables, which it
//! rebuilds (drops and recreates) itself.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use super::StoreError;

/// Tables the owner keeps, with what the app may do on them. `audit_chain` only keeps nodes
/// consistent (verification takes the key, not its word), so the app may record its key there
/// when it opens an empty log.
const OWNER_TABLES: [(&str, &str); 3] = [
    ("events", "SELECT, INSERT"),
    ("_sqlx_migrations", "SELECT"),
    ("audit_chain", "SELECT, INSERT, UPDATE"),
];

/// `"name"`, quoted for SQL.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Runs the migrations as the owner, then grants the role of `app_url` what the app needs, and
/// gives it the tables in `app_tables` (the read models and their checkpoints) that the owner
/// holds, so that it can rebuild them. Nothing is granted when both URLs name the same role.
///
/// Errors: the owner cannot connect or migrate; the grants fail (the owner must own the schema's
/// tables and be able to `SET ROLE` to the app's role, e.g. `GRANT netia_app TO netia_owner`, or
/// be a superuser).
pub async fn migrate_as_owner(owner_url: &str, app_url: &str, app_tables: &[&str]) -> Result<(), StoreError> {
    let app = PgConnectOptions::from_str(app_url)?.get_username().to_owned();
    let mut owner = PgConnection::connect(owner_url).await?;
    sqlx::migrate!("./migrations/postgres").run(&mut owner).await?;
    let (me, schema, database): (String, String, String) =
        sqlx::query_as("SELECT current_user::text, current_schema()::text, current_database()::text")
            .fetch_one(&mut owner)
            .await?;
    if me == app {
        return Ok(());
    }
    let (app_q, schema_q, database_q) = (ident(&app), ident(&schema), ident(&database));
    let mut tx = owner.begin().await?;
    // Rebuilds build read models in a schema of their own, then move the tables here.
    for grant in [
        format!("GRANT CREATE ON DATABASE {database_q} TO {app_q}"),
        format!("GRANT USAGE, CREATE ON SCHEMA {schema_q} TO {app_q}"),
    ] {
        sqlx::query(&grant).execute(&mut *tx).await?;
    }
    let owned: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND pg_get_userbyid(c.relowner) = current_user",
    )
    .fetch_all(&mut *tx)
    .await?;
    for table in &owned {
        let table_q = ident(table);
        let sql = if let Some((_, allowed)) = OWNER_TABLES.iter().find(|(name, _)| name == table) {
            // Only this, whatever an earlier grant gave.
            format!("REVOKE ALL ON {table_q} FROM {app_q}; GRANT {allowed} ON {table_q} TO {app_q}")
        } else if app_tables.contains(&table.as_str()) {
            format!("ALTER TABLE {table_q} OWNER TO {app_q}")
        } else {
            format!("GRANT SELECT, INSERT, UPDATE, DELETE ON {table_q} TO {app_q}")
        };
        sqlx::raw_sql(&sql).execute(&mut *tx).await?;
    }
    sqlx::query(&format!(
        "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema_q} TO {app_q}"
    ))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(owner = %me, app = %app, "migrated as the owner; the app's role may read and append events only");
    Ok(())
}
