//! Any read-model table as JSON objects (column → value), on either backend.

use serde_json::{Map, Value};
use sqlx::{Column, Row};

use super::{Raw, TestDb};

/// Every row of `table` as JSON objects (integers and text, as the read models hold).
pub async fn table_rows(db: &TestDb, table: &str) -> Vec<Map<String, Value>> {
    query_rows(db, &format!("SELECT * FROM {table}")).await
}

/// Every row `sql` selects, as column → value objects (integers as numbers, the rest as strings).
pub async fn query_rows(db: &TestDb, sql: &str) -> Vec<Map<String, Value>> {
    match &db.raw {
        Raw::Postgres(pool) => objects(sqlx::query(sql).fetch_all(pool).await.unwrap()),
        Raw::Sqlite(pool) => objects(sqlx::query(sql).fetch_all(pool).await.unwrap()),
    }
}

fn cell<'r, R: Row>(row: &'r R, i: usize) -> Value
where
    usize: sqlx::ColumnIndex<R>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i32>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return v.map_or(Value::Null, Value::from);
    }
    if let Ok(v) = row.try_get::<Option<i32>, _>(i) {
        return v.map_or(Value::Null, Value::from);
    }
    row.try_get::<Option<String>, _>(i)
        .unwrap()
        .map_or(Value::Null, Value::from)
}
fn objects<R: Row>(rows: Vec<R>) -> Vec<Map<String, Value>>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i32>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    rows.iter()
        .map(|row| {
            row.columns()
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name().to_owned(), cell(row, i)))
                .collect()
        })
        .collect()
}
