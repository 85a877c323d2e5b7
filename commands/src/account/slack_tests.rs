//! The Slack link, one rule per test.

use cqrs_es::test::TestFramework;
use netia_events::account::*;
use netia_events::{AccountId, InboxId, UserId};
use uuid::Uuid;

use super::{Account, AccountCommand, AccountError};

type AccountTest = TestFramework<Account>;

const INBOX: InboxId = InboxId(Uuid::from_u128(3));
const ADMIN: UserId = UserId(Uuid::from_u128(2));

fn registered() -> AccountEvent {
    AccountEvent::AccountRegistered(AccountRegistered {
        account_id: AccountId(Uuid::from_u128(1)),
        name: "Acme".to_owned(),
        owner_user_id: ADMIN,
        primary_inbox_id: INBOX,
    })
}

fn install() -> AccountCommand {
    AccountCommand::InstallSlack {
        team_id: "T0123ABC".into(),
        team_name: "Acme HQ".into(),
        bot_user_id: "U0BOT1".into(),
        sealed_bot_token: "v1.sealed".into(),
        installed_by: ADMIN,
    }
}

fn installed() -> AccountEvent {
    AccountEvent::SlackInstalled(SlackInstalled {
        team_id: "T0123ABC".into(),
        team_name: "Acme HQ".into(),
        bot_user_id: "U0BOT1".into(),
        sealed_bot_token: "v1.sealed".into(),
        installed_by: ADMIN,
    })
}

fn map(channel: &str) -> AccountCommand {
    AccountCommand::MapSlackChannel {
        inbox_id: INBOX,
        channel_id: channel.into(),
        channel_name: Some("support".into()),
    }
}

#[test]
fn installing_slack_records_the_workspace_and_the_sealed_token() {
    AccountTest::with(())
        .given(vec![registered()])
        .when(install())
        .then_expect_events(vec![installed()]);
}

#[test]
fn an_installation_needs_slack_ids() {
    AccountTest::with(())
        .given(vec![registered()])
        .when(AccountCommand::InstallSlack {
            team_id: "acme".into(),
            team_name: "Acme".into(),
            bot_user_id: "U0BOT1".into(),
            sealed_bot_token: "v1.sealed".into(),
            installed_by: ADMIN,
        })
        .then_expect_error(AccountError::InvalidField {
            field: "team_id",
            reason: "must be a Slack team id",
        });
}

#[test]
fn an_inbox_maps_to_a_channel_once_slack_is_installed() {
    AccountTest::with(())
        .given(vec![registered()])
        .when(map("C0SUPPORT"))
        .then_expect_error(AccountError::SlackNotInstalled);
    AccountTest::with(())
        .given(vec![registered(), installed()])
        .when(map("C0SUPPORT"))
        .then_expect_events(vec![AccountEvent::SlackChannelMapped(SlackChannelMapped {
            inbox_id: INBOX,
            channel_id: "C0SUPPORT".into(),
            channel_name: Some("support".into()),
        })]);
    AccountTest::with(())
        .given(vec![registered(), installed()])
        .when(map("#support"))
        .then_expect_error(AccountError::InvalidField {
            field: "channel_id",
            reason: "must be a Slack channel id (C…)",
        });
    AccountTest::with(())
        .given(vec![registered(), installed()])
        .when(AccountCommand::MapSlackChannel {
            inbox_id: InboxId(Uuid::from_u128(99)),
            channel_id: "C0SUPPORT".into(),
            channel_name: None,
        })
        .then_expect_error(AccountError::InboxNotFound);
}

#[test]
fn uninstalling_forgets_the_mapping_and_twice_is_a_no_op() {
    let mapped = AccountEvent::SlackChannelMapped(SlackChannelMapped {
        inbox_id: INBOX,
        channel_id: "C0SUPPORT".into(),
        channel_name: None,
    });
    AccountTest::with(())
        .given(vec![registered(), installed(), mapped.clone()])
        .when(AccountCommand::UninstallSlack)
        .then_expect_events(vec![AccountEvent::SlackUninstalled(SlackUninstalled {})]);
    AccountTest::with(())
        .given(vec![
            registered(),
            installed(),
            mapped,
            AccountEvent::SlackUninstalled(SlackUninstalled {}),
        ])
        .when(AccountCommand::UninstallSlack)
        .then_expect_events(vec![]);
}
