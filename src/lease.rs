//! Leases: one active instance of a named job across nodes (a projector, the relay, the scheduler,
//! an embedded consumer). On PostgreSQL a lease is a session advisory lock held on a connection of
//! its own, opened with the pool's settings but outside it ([`session`]): a lease is taken again
//! after PostgreSQL restarts, when requests retrying by the thousand fill the pool's queue, and
//! must not wait behind them. Dropping the connection (or the process dying) releases it. SQLite
//! has one process per file, so the lease is always granted.
//!
//! A lease can be lost without its holder doing anything: PostgreSQL restarts, an operator or a
//! failover terminates the session, a proxy drops an idle connection. Another node then takes the
//! lease while the first may still be working on pooled connections. So a [`Lease`] is *fenced*: a
//! keeper checks its session every [`CHECK_EVERY`] (bounded by [`CHECK_TIMEOUT`]) and, when the
//! session is gone, says so through [`Lease::lost`], which the holder selects on to stop its work
//! within two seconds. Work whose writes must not outlive the lease (the relay's checkpoint) makes
//! them on the lease's own connection ([`Lease::connection`]): once the session is gone they fail.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{AnyConnection, AnyPool};
use tokio::sync::{Mutex, MutexGuard, watch};

use crate::store::Backend;

/// How often a held lease's session is checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long a check may take before the session counts as gone.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// A held lease (see the module documentation). Dropping it releases the lease.
pub struct Lease {
    name: String,
    lost: watch::Receiver<bool>,
    /// Keeps `lost` open where nothing can be lost (SQLite).
    _never_lost: Option<watch::Sender<bool>>,
    connection: Option<Arc<Mutex<AnyConnection>>>,
    keeper: Option<tokio::task::AbortHandle>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(keeper) = &self.keeper {
            keeper.abort();
        }
    }
}

impl Lease {
    fn unfenced(name: &str) -> Self {
        let (sender, lost) = watch::channel(false);
        Self {
            name: name.to_owned(),
            lost,
            _never_lost: Some(sender),
            connection: None,
            keeper: None,
        }
    }

    fn kept(name: &str, connection: AnyConnection) -> Self {
        let connection = Arc::new(Mutex::new(connection));
        let (sender, lost) = watch::channel(false);
        let keeper = tokio::spawn(keep(name.to_owned(), connection.clone(), sender)).abort_handle();
        Self {
            name: name.to_owned(),
            lost,
            _never_lost: None,
            connection: Some(connection),
            keeper: Some(keeper),
        }
    }

    /// Resolves when the lease is lost (never on SQLite). Select on it beside the leased work.
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut lost = self.lost.clone();
        let name = self.name.clone();
        async move {
            // The keeper ends only by saying "lost", or when the lease is dropped.
            let _ = lost.wait_for(|l| *l).await;
            tracing::warn!(lease = %name, "lease lost: its database session is gone; stopping the leased work");
        }
    }

    /// Whether the lease is known to be lost.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// The lease's own connection (PostgreSQL), for writes that must fail once the lease is gone.
    pub async fn connection(&self) -> Option<MutexGuard<'_, AnyConnection>> {
        match &self.connection {
            Some(connection) => Some(connection.lock().await),
            None => None,
        }
    }
}

/// Whether a lease's session answers a trivial query within [`CHECK_TIMEOUT`].
pub async fn answers(conn: &mut AnyConnection) -> bool {
    matches!(
        tokio::time::timeout(CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(conn)).await,
        Ok(Ok(_))
    )
}

/// Checks the lease's session until it is gone, then says so.
async fn keep(name: String, connection: Arc<Mutex<AnyConnection>>, lost: watch::Sender<bool>) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let alive = answers(&mut *connection.lock().await).await;
        if !alive {
            tracing::warn!(lease = %name, "the lease's database session is gone");
            let _ = lost.send(true);
            return;
        }
    }
}

/// Waits until this process holds the lease `name`.
pub async fn acquire(db: &AnyPool, backend: Backend, name: &str) -> Lease {
    if backend != Backend::Postgres {
        return Lease::unfenced(name);
    }
    let key = lock_key(name);
    loop {
        match session(db).await {
            Ok(mut conn) => {
                let got: Result<bool, _> = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(key)
                    .fetch_one(&mut conn)
                    .await;
                if let Ok(true) = got {
                    return Lease::kept(name, conn);
                }
                let _ = sqlx::Connection::close(conn).await;
            }
            Err(e) => tracing::warn!(lease = name, error = %e, "cannot acquire a connection for a lease"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Waits until this process holds every lease of `names`, all on one connection (`None` on
/// SQLite). It never keeps some while waiting for the others, so two such waiters cannot deadlock.
/// The caller writes on that connection, so its writes fail once the session is gone.
pub async fn acquire_all(db: &AnyPool, backend: Backend, names: &[&str]) -> Option<AnyConnection> {
    if backend != Backend::Postgres {
        return None;
    }
    let keys: Vec<i64> = names.iter().map(|name| lock_key(name)).collect();
    loop {
        match session(db).await {
            Ok(mut conn) => {
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

/// A new session for a lease, with `db`'s connect options, outside its pool (see the module
/// documentation); given up after [`crate::store::PG_ACQUIRE_TIMEOUT`].
async fn session(db: &AnyPool) -> Result<AnyConnection, sqlx::Error> {
    use sqlx::ConnectOptions;
    let options = db.connect_options();
    tokio::time::timeout(crate::store::PG_ACQUIRE_TIMEOUT, options.connect())
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
}

/// A stable 63-bit key for a lease's advisory lock.
pub fn lock_key(name: &str) -> i64 {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("netia.projection.{name}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes) & i64::MAX
}
