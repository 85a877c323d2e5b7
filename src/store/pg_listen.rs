//! PostgreSQL's LISTEN side of the wake-ups: other nodes' appends NOTIFY on
//! [`NOTIFY_CHANNEL`](super::postgres::NOTIFY_CHANNEL), and this relays them to the local tailers.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::watch;

use super::Recent;
use super::postgres::NOTIFY_CHANNEL;

/// Relays other nodes' NOTIFYs to the tailers, reconnecting after errors, until `stop`.
pub(super) async fn listen(pool: PgPool, recent: Arc<Recent>, node: String, mut stop: watch::Receiver<bool>) {
    tokio::select! {
        () = relay_notifications(pool, recent, node) => {}
        _ = stop.wait_for(|stopped| *stopped) => {}
    }
}

async fn relay_notifications(pool: PgPool, recent: Arc<Recent>, node: String) {
    loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                if let Err(e) = listener.listen(NOTIFY_CHANNEL).await {
                    tracing::warn!(error = %e, "LISTEN failed; retrying");
                } else {
                    // Anything committed while we were not listening is found by the next read.
                    recent.foreign_commit();
                    loop {
                        match listener.try_recv().await {
                            // Our own appends woke local tailers already.
                            Ok(Some(note)) if note.payload() == node => {}
                            Ok(Some(_)) => recent.foreign_commit(),
                            // The connection dropped; the next call reconnects and re-LISTENs.
                            // NOTIFYs sent meanwhile are lost, so wake readers to look.
                            Ok(None) => {
                                tracing::warn!("LISTEN connection lost; reconnecting");
                                recent.foreign_commit();
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "LISTEN failed; reconnecting");
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot open LISTEN connection; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
