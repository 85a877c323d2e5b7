//! The Gmail sync: every `GMAIL_SYNC_INTERVAL` (default a minute), on one node at a time (the
//! `gmail-sync` lease), each linked mailbox's `users.history.list` is read from the stored history
//! id, and every message it added is fetched (`format=raw`) and taken
//! ([`crate::app::gmail::take`]). The stored history id moves (`GmailHistorySynced`) only past
//! what was taken, so downtime is caught up on the next run; a message met twice (a retried run,
//! a resync, two nodes in a lease hand-over) is one message, since the conversation of its Gmail
//! thread refuses a Gmail id it already holds. When Gmail answers 404 (the history id is too old,
//! about a week), the mailbox is resynced: the last 7 days of `INBOX` (at most
//! [`RESYNC_MAX`] messages), then the sync goes on from the history id read before that.
//!
//! The sync runs beside the scheduler rather than in its one-second tick, so that a slow Google
//! never delays snoozed conversations or reply emails.

use std::time::Duration;

use netia_events::{AccountId, Metadata};
use netia_projections::ConversationProjection;
use tokio::sync::watch;

use super::client::{GoogleError, MessageRef};
use crate::app::App;
use crate::app::gmail::{GmailTaken, GmailUseError, authorized, take};
use crate::backoff::sleep_or_stop;

/// Messages taken per mailbox per run, at most: the rest wait for the next run.
pub const MAX_PER_RUN: usize = 500;
/// Messages a resync takes, at most.
pub const RESYNC_MAX: usize = 500;
/// How far back a resync looks (a Gmail search).
const RESYNC_QUERY: &str = "newer_than:7d";

/// Runs until `stop` turns true, syncing every mailbox each `interval`.
pub async fn run(app: App, interval: Duration, mut stop: watch::Receiver<bool>) {
    let lease = tokio::select! {
        lease = crate::lease::acquire(&app.db, app.store.backend(), "gmail-sync") => lease,
        _ = stop.wait_for(|s| *s) => return,
    };
    tracing::info!("Gmail sync active");
    let runs = async {
        loop {
            sync_all(&app).await;
            if sleep_or_stop(&mut stop, interval).await {
                return;
            }
        }
    };
    tokio::select! {
        () = runs => {}
        () = lease.lost() => {}
    }
}

/// Syncs every linked mailbox once; one mailbox's failure is logged and does not stop the others.
pub async fn sync_all(app: &App) {
    let mailboxes = match app.db.acquire().await {
        Ok(mut conn) => ConversationProjection::gmail_mailboxes(&mut conn).await,
        Err(e) => {
            tracing::warn!(error = %e, "Gmail sync: cannot read the linked mailboxes");
            return;
        }
    };
    let mailboxes = match mailboxes {
        Ok(mailboxes) => mailboxes,
        Err(e) => {
            tracing::warn!(error = %e, "Gmail sync: cannot read the linked mailboxes");
            return;
        }
    };
    for (account, _) in mailboxes {
        let Ok(account_id) = account.parse::<AccountId>() else {
            continue;
        };
        match sync(app, account_id).await {
            Ok(synced) if synced.taken > 0 || synced.resynced => {
                tracing::info!(account = %account_id, taken = synced.taken, resynced = synced.resynced, "Gmail synced");
            }
            Ok(_) => {}
            Err(e) => {
                metrics::counter!("netia_gmail_sync_failures_total").increment(1);
                tracing::warn!(account = %account_id, error = %e, "Gmail sync failed; trying again next run");
            }
        }
    }
}

/// What one run did for a mailbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Synced {
    /// Messages taken (including ones already held, which changed nothing).
    pub taken: usize,
    /// Whether the history id had expired and the last days were read again.
    pub resynced: bool,
}

/// Syncs the account's mailbox once.
pub async fn sync(app: &App, account_id: AccountId) -> Result<Synced, GmailUseError> {
    let gmail = app.gmail.clone().ok_or(GmailUseError::NotConfigured)?;
    let account = app.state_of::<netia_commands::Account>(account_id).await?;
    let link = account.gmail.ok_or(GmailUseError::NotLinked)?;
    let mut synced = Synced::default();
    let mut page_token: Option<String> = None;
    loop {
        let page = authorized(app, account_id, |token| {
            let (client, page_token) = (&gmail.client, page_token.clone());
            async move { client.history(&token, link.history_id, page_token.as_deref()).await }
        })
        .await;
        let page = match page {
            Err(GmailUseError::Google(GoogleError::NotFound)) => {
                return resync(app, account_id, &link.email_address).await;
            }
            other => other?,
        };
        for (record_id, added) in page.records {
            for message in added {
                fetch_and_take(app, account_id, &link.email_address, &message).await?;
                synced.taken += 1;
            }
            if synced.taken >= MAX_PER_RUN {
                record(app, account_id, &link.email_address, record_id, false).await?;
                return Ok(synced);
            }
        }
        match page.next_page_token {
            Some(next) => page_token = Some(next),
            None => {
                record(app, account_id, &link.email_address, page.history_id, false).await?;
                return Ok(synced);
            }
        }
    }
}

/// Reads the last days of the mailbox again (oldest first), then goes on from the history id
/// read before.
async fn resync(app: &App, account_id: AccountId, mailbox: &str) -> Result<Synced, GmailUseError> {
    tracing::warn!(account = %account_id, "Gmail forgot the stored history id; resyncing the last 7 days");
    let gmail = app.gmail.clone().ok_or(GmailUseError::NotConfigured)?;
    let profile = authorized(app, account_id, |token| {
        let client = &gmail.client;
        async move { client.profile(&token).await }
    })
    .await?;
    let head: u64 = profile
        .history_id
        .parse()
        .map_err(|_| GoogleError::Server { status: 200 })?;
    let mut found: Vec<MessageRef> = Vec::new();
    let mut page_token: Option<String> = None;
    loop {
        let (messages, next) = authorized(app, account_id, |token| {
            let (client, page_token) = (&gmail.client, page_token.clone());
            async move { client.list(&token, RESYNC_QUERY, page_token.as_deref()).await }
        })
        .await?;
        found.extend(messages);
        match next {
            Some(next) if found.len() < RESYNC_MAX => page_token = Some(next),
            _ => break,
        }
    }
    found.truncate(RESYNC_MAX);
    let mut synced = Synced {
        taken: 0,
        resynced: true,
    };
    for message in found.iter().rev() {
        fetch_and_take(app, account_id, mailbox, message).await?;
        synced.taken += 1;
    }
    record(app, account_id, mailbox, head, true).await?;
    Ok(synced)
}

async fn fetch_and_take(
    app: &App,
    account_id: AccountId,
    mailbox: &str,
    message: &MessageRef,
) -> Result<(), GmailUseError> {
    let gmail = app.gmail.clone().ok_or(GmailUseError::NotConfigured)?;
    let fetched = authorized(app, account_id, |token| {
        let client = &gmail.client;
        async move { client.message(&token, &message.id).await }
    })
    .await;
    let raw = match fetched {
        // Deleted since it arrived: nothing to take.
        Err(GmailUseError::Google(GoogleError::NotFound)) => return Ok(()),
        // Too large, or not Gmail's shape: never will be; skipped, not retried.
        Err(GmailUseError::Google(e @ GoogleError::Unusable(_))) => {
            metrics::counter!("netia_gmail_messages_refused_total").increment(1);
            tracing::warn!(account = %account_id, gmail_id = %message.id, error = %e, "Gmail message skipped");
            return Ok(());
        }
        other => other?,
    };
    match take(app, account_id, mailbox, &raw).await? {
        GmailTaken::Taken { conversation_id } => {
            tracing::debug!(account = %account_id, conversation = %conversation_id, "Gmail message taken");
        }
        GmailTaken::Skipped(reason) => tracing::debug!(account = %account_id, reason, "Gmail message skipped"),
    }
    Ok(())
}

async fn record(
    app: &App,
    account_id: AccountId,
    mailbox: &str,
    history_id: u64,
    resynced: bool,
) -> Result<(), GmailUseError> {
    let command = netia_commands::AccountCommand::RecordGmailSync {
        email_address: mailbox.to_owned(),
        history_id,
        resynced,
    };
    let meta = Metadata::system("gmail-sync").with_account(account_id);
    app.bus
        .execute::<netia_commands::Account>(account_id, command, &meta)
        .await
        .map_err(|e| match e {
            crate::command_bus::CommandError::Domain(netia_commands::AccountError::InvalidField { .. }) => {
                GmailUseError::NotLinked
            }
            other => GmailUseError::Account(other),
        })?;
    Ok(())
}
