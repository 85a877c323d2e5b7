//! Every read model builds the same rows whatever the batch boundaries: one event at a time (the
//! live projector on a quiet system), odd-sized batches, and one large batch (a rebuild); and a
//! whole history applied a second time changes nothing (deletions included). Compared table by table, row by row.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestDb;
use netia::command_bus::CommandBus;
use netia::projector::{projections, read_model_pool};
use netia_commands::{Customer, CustomerCommand};
use netia_events::customer::CustomerIdentity;
use netia_events::{Metadata, RecordedEvent};
use netia_projections::Projection;
use serde_json::{Map, Value, json};
use sqlx::{AnyConnection, Column, Connection, Row};

/// A seeded history plus customers who identify themselves and change their metadata later.
async fn history(db: &TestDb) -> Vec<RecordedEvent> {
    netia::seed::seed_demo(db.store.clone(), 3_000, 30, 11).await.unwrap();
    let bus = CommandBus::new(db.store.clone());
    let meta = Metadata::system("test");
    let customers: Vec<String> = db
        .store
        .streams()
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.stream_type == "customer")
        .map(|s| s.stream_id)
        .collect();
    for (i, id) in customers.iter().enumerate().take(12) {
        let identity = CustomerIdentity {
            external_id: Some(format!("ext-{i}")),
            phone: (i % 2 == 0).then(|| format!("+1555000{i:04}")),
            ..Default::default()
        };
        bus.execute::<Customer>(
            id,
            CustomerCommand::Identify {
                identity,
                verified: i % 3 == 0,
            },
            &meta,
        )
        .await
        .unwrap();
        let changes: Map<String, Value> = [
            ("plan".to_owned(), json!(["free", "pro"][i % 2])),
            (
                "browser".to_owned(),
                if i % 3 == 0 { Value::Null } else { json!("Edge") },
            ),
        ]
        .into_iter()
        .collect();
        bus.execute::<Customer>(id, CustomerCommand::UpdateMetadata { changes }, &meta)
            .await
            .unwrap();
    }
    for id in customers.iter().skip(12).take(3) {
        let command = CustomerCommand::Delete {
            deleted_by: netia_events::UserId::new(),
        };
        bus.execute::<Customer>(id, command, &meta).await.unwrap();
    }
    common::all_events(db.store.as_ref()).await
}

/// Every row of the projection's tables, as text, sorted.
async fn dump(conn: &mut AnyConnection, projection: &dyn Projection) -> Vec<String> {
    let mut all = Vec::new();
    for table in projection.tables() {
        for row in sqlx::query(&format!("SELECT * FROM {table}"))
            .fetch_all(&mut *conn)
            .await
            .unwrap()
        {
            let cells: Vec<String> = (0..row.columns().len())
                .map(|i| {
                    let name = row.columns()[i].name().to_owned();
                    let value = match row.try_get::<Option<String>, _>(i) {
                        Ok(text) => format!("{text:?}"),
                        Err(_) => format!("{:?}", row.try_get::<Option<i64>, _>(i).unwrap()),
                    };
                    format!("{name}={value}")
                })
                .collect();
            all.push(format!("{table}: {}", cells.join(" ")));
        }
    }
    all.sort();
    all
}

async fn clear(conn: &mut AnyConnection, projection: &dyn Projection) {
    for table in projection.tables() {
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
}

async fn apply_in(conn: &mut AnyConnection, projection: &dyn Projection, events: &[RecordedEvent], size: usize) {
    for chunk in events.chunks(size) {
        let mut tx = conn.begin().await.unwrap();
        projection
            .apply_batch(&mut tx, chunk)
            .await
            .map_err(|(p, e)| format!("{}: position {p}: {e}", projection.name()))
            .unwrap();
        tx.commit().await.unwrap();
    }
}

async fn batch_boundaries_do_not_change_any_read_model(db: &TestDb) {
    let events = history(db).await;
    let pool = read_model_pool(&db.url, 2).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    for projection in projections() {
        let projection = projection.as_ref();
        projection.setup_with_query_indexes(&mut conn).await.unwrap();
        let name = projection.name();

        let mut tx = conn.begin().await.unwrap();
        for event in &events {
            projection.apply(&mut tx, event).await.unwrap();
        }
        tx.commit().await.unwrap();
        let one_by_one = dump(&mut conn, projection).await;
        assert!(one_by_one.len() >= 30, "{name}: {} rows", one_by_one.len());

        for size in [7, 333, events.len()] {
            clear(&mut conn, projection).await;
            apply_in(&mut conn, projection, &events, size).await;
            assert_eq!(
                dump(&mut conn, projection).await,
                one_by_one,
                "{name}: batches of {size}"
            );
        }
        apply_in(&mut conn, projection, &events, 500).await;
        assert_eq!(dump(&mut conn, projection).await, one_by_one, "{name}: applied twice");
    }
    // The extra customer events reached the customer read model.
    let identified: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM customers WHERE external_id IS NOT NULL")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(identified, 12);
    let customers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM customers")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(customers, 30 - 3, "deleted customers are gone");
}

on_both_backends!(batch_boundaries_do_not_change_any_read_model);
