//! The Gmail link, one rule per test.

use cqrs_es::test::TestFramework;
use netia_events::account::*;
use netia_events::{AccountId, InboxId, UserId};
use uuid::Uuid;

use super::{Account, AccountCommand, AccountError};

type AccountTest = TestFramework<Account>;

const ADMIN: UserId = UserId(Uuid::from_u128(2));

fn registered() -> AccountEvent {
    AccountEvent::AccountRegistered(AccountRegistered {
        account_id: AccountId(Uuid::from_u128(1)),
        name: "Acme".to_owned(),
        owner_user_id: ADMIN,
        primary_inbox_id: InboxId(Uuid::from_u128(3)),
    })
}

fn link(address: &str) -> AccountCommand {
    AccountCommand::LinkGmail {
        email_address: address.into(),
        sealed_refresh_token: "v1.sealed".into(),
        history_id: 100,
        linked_by: ADMIN,
    }
}

fn linked() -> AccountEvent {
    AccountEvent::GmailLinked(GmailLinked {
        email_address: "support@acme.example".into(),
        sealed_refresh_token: "v1.sealed".into(),
        history_id: 100,
        linked_by: ADMIN,
    })
}

fn synced(history_id: u64, resynced: bool) -> AccountEvent {
    AccountEvent::GmailHistorySynced(GmailHistorySynced { history_id, resynced })
}

#[test]
fn an_admin_links_a_mailbox_by_its_address_lowercased() {
    AccountTest::with(())
        .given(vec![registered()])
        .when(link("Support@Acme.example"))
        .then_expect_events(vec![linked()]);
}

#[test]
fn linking_the_same_mailbox_again_keeps_its_sync_where_it_was() {
    AccountTest::with(())
        .given(vec![registered(), linked(), synced(150, false)])
        .when(AccountCommand::LinkGmail {
            email_address: "support@acme.example".into(),
            sealed_refresh_token: "v1.new".into(),
            history_id: 900,
            linked_by: ADMIN,
        })
        .then_expect_events(vec![AccountEvent::GmailLinked(GmailLinked {
            email_address: "support@acme.example".into(),
            sealed_refresh_token: "v1.new".into(),
            history_id: 150,
            linked_by: ADMIN,
        })]);
}

#[test]
fn another_mailbox_starts_at_its_own_history_id_and_a_stale_run_moves_nothing() {
    let other = AccountEvent::GmailLinked(GmailLinked {
        email_address: "sales@acme.example".into(),
        sealed_refresh_token: "v1.other".into(),
        history_id: 7,
        linked_by: ADMIN,
    });
    AccountTest::with(())
        .given(vec![registered(), linked()])
        .when(AccountCommand::LinkGmail {
            email_address: "sales@acme.example".into(),
            sealed_refresh_token: "v1.other".into(),
            history_id: 7,
            linked_by: ADMIN,
        })
        .then_expect_events(vec![other.clone()]);
    AccountTest::with(())
        .given(vec![registered(), linked(), other])
        .when(AccountCommand::RecordGmailSync {
            email_address: "support@acme.example".into(),
            history_id: 5_000,
            resynced: true,
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_malformed_address_is_refused() {
    AccountTest::with(())
        .given(vec![registered()])
        .when(link("not an address"))
        .then_expect_error(AccountError::InvalidField {
            field: "email_address",
            reason: "must be the mailbox's email address",
        });
}

#[test]
fn the_sync_moves_forward_only() {
    AccountTest::with(())
        .given(vec![registered(), linked()])
        .when(AccountCommand::RecordGmailSync {
            email_address: "support@acme.example".into(),
            history_id: 150,
            resynced: false,
        })
        .then_expect_events(vec![synced(150, false)]);
    AccountTest::with(())
        .given(vec![registered(), linked(), synced(150, false)])
        .when(AccountCommand::RecordGmailSync {
            email_address: "support@acme.example".into(),
            history_id: 120,
            resynced: false,
        })
        .then_expect_events(vec![]);
    AccountTest::with(())
        .given(vec![registered(), linked(), synced(150, false)])
        .when(AccountCommand::RecordGmailSync {
            email_address: "support@acme.example".into(),
            history_id: 150,
            resynced: false,
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_resync_may_start_over_from_an_older_history_id() {
    AccountTest::with(())
        .given(vec![registered(), linked(), synced(150, false)])
        .when(AccountCommand::RecordGmailSync {
            email_address: "support@acme.example".into(),
            history_id: 120,
            resynced: true,
        })
        .then_expect_events(vec![synced(120, true)]);
}

#[test]
fn a_sync_without_a_link_is_refused_and_unlinking_twice_is_one_unlink() {
    AccountTest::with(())
        .given(vec![registered()])
        .when(AccountCommand::RecordGmailSync {
            email_address: "support@acme.example".into(),
            history_id: 1,
            resynced: false,
        })
        .then_expect_error(AccountError::InvalidField {
            field: "gmail",
            reason: "Gmail is not linked",
        });
    AccountTest::with(())
        .given(vec![registered(), linked()])
        .when(AccountCommand::UnlinkGmail)
        .then_expect_events(vec![AccountEvent::GmailUnlinked(GmailUnlinked {})]);
    AccountTest::with(())
        .given(vec![
            registered(),
            linked(),
            AccountEvent::GmailUnlinked(GmailUnlinked {}),
        ])
        .when(AccountCommand::UnlinkGmail)
        .then_expect_events(vec![]);
}
