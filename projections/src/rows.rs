//! Many rows per statement, for the read models that apply a batch at a time: fetch the rows whose
//! key is in a list, and insert (or upsert) rows with multi-row `INSERT … VALUES (…), (…)`.
//!
//! Statements come in power-of-two sizes only (lists padded, rows split): each distinct text is
//! parsed and planned once per connection and then reused from the statement cache, where one text
//! per batch size had PostgreSQL parse and plan nearly every statement of a live projector.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use netia_events::RecordedEvent;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow};

use crate::placeholders;

/// Ids per `IN (…)` list (a power of two).
const IDS_PER_LIST: usize = 512;

/// Parameters per multi-row statement. Measured on a 100k-event rebuild: PostgreSQL is fastest
/// around 1,000–3,000 (larger statements cost more to bind and plan than the round trips they
/// save); SQLite's binding cost grows faster than linearly with the count, so it wants ~300.
fn parameters_per_statement(conn: &AnyConnection) -> usize {
    if conn.backend_name() == "SQLite" { 300 } else { 2_000 }
}

/// One value of a row to insert; read models store only text and integers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
}

impl From<String> for Cell {
    fn from(value: String) -> Self {
        Cell::Text(Some(value))
    }
}

impl From<&str> for Cell {
    fn from(value: &str) -> Self {
        Cell::Text(Some(value.to_owned()))
    }
}

impl From<Option<String>> for Cell {
    fn from(value: Option<String>) -> Self {
        Cell::Text(value)
    }
}

impl From<i64> for Cell {
    fn from(value: i64) -> Self {
        Cell::Int(Some(value))
    }
}

impl From<Option<i64>> for Cell {
    fn from(value: Option<i64>) -> Self {
        Cell::Int(value)
    }
}

/// A `LIKE … ESCAPE '\'` pattern matching `text` anywhere, case-insensitively when compared with
/// `LOWER(column)`: `%`, `_` and `\` in `text` match themselves.
pub(crate) fn contains_pattern(text: &str) -> String {
    let escaped = text
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// The text of a statement of `size` rows (or ids) for `shape` (its table, columns and clauses),
/// made by `build` once per process. A multi-row statement's text is up to ~20 KB of `$n`
/// placeholders, and building it for every statement was ~10% of a rebuild's client time; the
/// distinct texts are few (power-of-two sizes of each model's statements), and every connection's
/// statement cache holds them anyway.
fn statement_text(shape: String, size: usize, build: impl FnOnce() -> String) -> Arc<str> {
    type Texts = HashMap<(String, usize), Arc<str>>;
    static TEXTS: LazyLock<Mutex<Texts>> = LazyLock::new(Default::default);
    let key = (shape, size);
    if let Some(text) = TEXTS.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Arc::clone(text);
    }
    let text: Arc<str> = build().into();
    TEXTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, Arc::clone(&text));
    text
}

/// The distinct streams of `stream_type` that `events` touch, in id order: what a batch loads.
pub(crate) fn stream_ids(events: &[RecordedEvent], stream_type: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.stream_type == stream_type)
        .map(|e| e.stream_id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Runs `select` once per chunk of `ids`, with `{ids}` in it replaced by the chunk's placeholders,
/// and collects the rows.
pub(crate) async fn select_in<T>(conn: &mut AnyConnection, select: &str, ids: &[String]) -> Result<Vec<T>, sqlx::Error>
where
    T: for<'r> FromRow<'r, AnyRow> + Send + Unpin,
{
    let mut rows = Vec::new();
    for chunk in ids.chunks(IDS_PER_LIST) {
        // Padded with the last id again: a repeat in `IN (…)` changes nothing.
        let size = chunk.len().next_power_of_two();
        let sql = statement_text(select.to_owned(), size, || {
            select.replace("{ids}", &placeholders(1, size))
        });
        let mut q = sqlx::query_as::<_, T>(&sql);
        for i in 0..size {
            q = q.bind(chunk[i.min(chunk.len() - 1)].as_str());
        }
        rows.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(rows)
}

/// Splits `n` rows into statements of power-of-two sizes, none over `max` rows: as many of the
/// largest as fit, then the binary digits of the rest (13 rows, at most 8 a statement: 8, 4, 1).
pub(crate) fn statement_sizes(n: usize, max: usize) -> Vec<usize> {
    let largest = 1usize << max.max(1).ilog2();
    let mut sizes = vec![largest; n / largest];
    let rest = n % largest;
    sizes.extend(
        (0..usize::BITS)
            .rev()
            .map(|bit| 1usize << bit)
            .filter(|size| rest & size != 0),
    );
    sizes
}

/// Rows from which [`insert_new_rows`] tries a plain `INSERT` first; fewer go straight in with
/// their conflict clause, where the savepoint's two round trips would cost more than they save.
const PLAIN_INSERT_FROM: usize = 256;

/// Inserts `rows` that should all be new, leaving the table as [`insert_rows`] with `conflict`
/// would. PostgreSQL inserts each row of an `INSERT … ON CONFLICT` speculatively (a probe of the
/// unique index, the insert, then a confirmation): the 82,653 messages of a 100k-event rebuild
/// took 664–764 ms that way against 405–543 ms plainly (`INSERT … SELECT` of the same rows into
/// an empty table, three runs each). So a large set is first inserted plainly inside a savepoint;
/// if any row is there already (a unique violation), the savepoint is rolled back and the rows go
/// in again with `conflict`. `conn` is in a transaction (a projector's or a rebuild's).
///
/// # Errors
/// What the statements return, except the unique violation that makes it fall back.
pub(crate) async fn insert_new_rows(
    conn: &mut AnyConnection,
    table: &str,
    columns: &[&str],
    rows: &[Vec<Cell>],
    conflict: &str,
) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    if rows.len() < PLAIN_INSERT_FROM {
        return insert_rows(conn, table, columns, rows, conflict).await;
    }
    let mut savepoint = conn.begin().await?;
    match insert_rows(&mut savepoint, table, columns, rows, "").await {
        Ok(()) => savepoint.commit().await,
        Err(e) if e.as_database_error().is_some_and(|e| e.is_unique_violation()) => {
            savepoint.rollback().await?;
            insert_rows(conn, table, columns, rows, conflict).await
        }
        Err(e) => Err(e),
    }
}

/// `INSERT INTO table (columns) VALUES (…), … {conflict}`, as few statements as the parameter limit
/// allows. Every row must have one cell per column.
pub(crate) async fn insert_rows(
    conn: &mut AnyConnection,
    table: &str,
    columns: &[&str],
    rows: &[Vec<Cell>],
    conflict: &str,
) -> Result<(), sqlx::Error> {
    let width = columns.len();
    debug_assert!(rows.iter().all(|row| row.len() == width));
    let mut rest = rows;
    let columns = columns.join(", ");
    let shape = format!("INSERT INTO {table} ({columns}) {conflict}");
    for size in statement_sizes(rows.len(), (parameters_per_statement(conn) / width.max(1)).max(1)) {
        let (chunk, after) = rest.split_at(size);
        rest = after;
        let sql = statement_text(shape.clone(), size, || {
            let values: Vec<String> = (0..size)
                .map(|i| format!("({})", placeholders(i * width + 1, width)))
                .collect();
            format!(
                "INSERT INTO {table} ({columns}) VALUES {} {conflict}",
                values.join(", ")
            )
        });
        let mut q = sqlx::query(&sql);
        for cell in chunk.iter().flatten() {
            q = match cell {
                // Borrowed: sqlx's `Any` copies an owned `String` once more when it encodes it.
                Cell::Text(text) => q.bind(text.as_deref()),
                Cell::Int(int) => q.bind(*int),
            };
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Adds `column` (`definition`: its type and default, e.g. `TEXT`) to `table` unless it is there:
/// a read model made by an older Netia gains a column whose value is the same for every row it
/// already has (its default). Portable: PostgreSQL's `ADD COLUMN IF NOT EXISTS` is not SQLite's.
pub(crate) async fn add_column_if_missing(
    conn: &mut AnyConnection,
    table: &str,
    column: &str,
    definition: &str,
) -> Result<(), sqlx::Error> {
    let probe = format!("SELECT {column} FROM {table} WHERE 1 = 0");
    if sqlx::query(&probe).execute(&mut *conn).await.is_err() {
        sqlx::query(&format!("ALTER TABLE {table} ADD COLUMN {column} {definition}"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// `ON CONFLICT (key) DO UPDATE SET c = excluded.c, …` for every column but the key.
pub(crate) fn replace_on(key: &str, columns: &[&str]) -> String {
    let set: Vec<String> = columns
        .iter()
        .filter(|c| **c != key)
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!("ON CONFLICT ({key}) DO UPDATE SET {}", set.join(", "))
}

#[cfg(test)]
mod tests {
    use super::statement_sizes;

    #[test]
    fn rows_are_split_into_power_of_two_statements_under_the_limit() {
        assert_eq!(statement_sizes(0, 8), Vec::<usize>::new());
        assert_eq!(statement_sizes(1, 8), vec![1]);
        assert_eq!(statement_sizes(13, 8), vec![8, 4, 1]);
        assert_eq!(statement_sizes(21, 8), vec![8, 8, 4, 1]);
        assert_eq!(statement_sizes(16, 111), vec![16]);
        assert_eq!(statement_sizes(300, 111), vec![64, 64, 64, 64, 32, 8, 4]);
        assert_eq!(statement_sizes(5, 1), vec![1, 1, 1, 1, 1]);
        for n in 0..200 {
            let sizes = statement_sizes(n, 20);
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(sizes.iter().all(|s| s.is_power_of_two() && *s <= 20));
        }
    }
}
