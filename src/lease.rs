//! Leases: one active instance of a named job across nodes (a projector, the relay, the scheduler).
//! On PostgreSQL a lease is a session advisory lock held on a connection taken out of the pool;
//! dropping the connection (or the process dying) releases it. SQLite has one process per file, so
//! the lease is always granted.

use std::time::Duration;

use sqlx::{AnyConnection, AnyPool};

use crate::store::Backend;

/// Waits until this process holds the lease `name`. Keep the returned connection for as long as the
/// lease is needed (`None` on SQLite, where there is nothing to hold).
pub async fn acquire(db: &AnyPool, backend: Backend, name: &str) -> Option<AnyConnection> {
    if backend != Backend::Postgres {
        return None;
    }
    let key = lock_key(name);
    loop {
        match db.acquire().await {
            Ok(mut conn) => {
                let got: Result<bool, _> = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(key)
                    .fetch_one(&mut *conn)
                    .await;
                if let Ok(true) = got {
                    return Some(conn.detach());
                }
            }
            Err(e) => tracing::warn!(lease = name, error = %e, "cannot acquire a connection for a lease"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Waits until this process holds every lease of `names`, all on one connection (`None` on
/// SQLite). It never keeps some while waiting for the others, so two such waiters cannot deadlock.
pub async fn acquire_all(db: &AnyPool, backend: Backend, names: &[&str]) -> Option<AnyConnection> {
    if backend != Backend::Postgres {
        return None;
    }
    let keys: Vec<i64> = names.iter().map(|name| lock_key(name)).collect();
    loop {
        match db.acquire().await {
            Ok(conn) => {
                let mut conn = conn.detach();
                let mut held = Vec::new();
                for key in &keys {
                    let got: Result<bool, _> = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                        .bind(key)
                        .fetch_one(&mut conn)
                        .await;
                    match got {
                        Ok(true) => held.push(*key),
                        _ => break,
                    }
                }
                if held.len() == keys.len() {
                    return Some(conn);
                }
                // Closing the connection releases whatever it got.
                let _ = sqlx::Connection::close(conn).await;
            }
            Err(e) => tracing::warn!(leases = ?names, error = %e, "cannot acquire a connection for leases"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// A stable 63-bit key for a lease's advisory lock.
pub fn lock_key(name: &str) -> i64 {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("netia.projection.{name}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes) & i64::MAX
}
