//! The Twilio link, one rule per test.

use cqrs_es::test::TestFramework;
use netia_events::account::*;
use netia_events::{AccountId, InboxId, UserId};
use uuid::Uuid;

use super::{Account, AccountCommand, AccountError, is_account_sid, is_e164};

type AccountTest = TestFramework<Account>;

const ADMIN: UserId = UserId(Uuid::from_u128(2));
const SID: &str = "AC0123456789abcdef0123456789abcdef";

fn registered() -> AccountEvent {
    AccountEvent::AccountRegistered(AccountRegistered {
        account_id: AccountId(Uuid::from_u128(1)),
        name: "Acme".to_owned(),
        owner_user_id: ADMIN,
        primary_inbox_id: InboxId(Uuid::from_u128(3)),
    })
}

fn link(sid: &str, number: &str) -> AccountCommand {
    AccountCommand::LinkTwilio {
        account_sid: sid.into(),
        from_number: number.into(),
        sealed_auth_token: "v1.sealed".into(),
        linked_by: ADMIN,
    }
}

fn linked() -> AccountEvent {
    AccountEvent::TwilioLinked(TwilioLinked {
        account_sid: SID.into(),
        from_number: "+15005550006".into(),
        sealed_auth_token: "v1.sealed".into(),
        linked_by: ADMIN,
    })
}

#[test]
fn linking_twilio_records_the_number_and_the_sealed_token() {
    AccountTest::with(())
        .given(vec![registered()])
        .when(link(SID, "+15005550006"))
        .then_expect_events(vec![linked()]);
}

#[test]
fn linking_the_same_again_records_nothing() {
    AccountTest::with(())
        .given(vec![registered(), linked()])
        .when(link(SID, "+15005550006"))
        .then_expect_events(vec![]);
}

#[test]
fn a_malformed_sid_or_number_is_refused() {
    for (sid, number, field) in [
        ("AC123", "+15005550006", "account_sid"),
        ("XX0123456789abcdef0123456789abcdef", "+15005550006", "account_sid"),
        (SID, "15005550006", "from_number"),
        (SID, "+0500555", "from_number"),
        (SID, "+1 500 555 0006", "from_number"),
    ] {
        let Err(AccountError::InvalidField { field: refused, .. }) =
            crate::Decide::decide(&account_with(vec![registered()]), &link(sid, number))
        else {
            panic!("{sid} {number} was taken");
        };
        assert_eq!(refused, field);
    }
}

#[test]
fn unlinking_forgets_the_number_once() {
    AccountTest::with(())
        .given(vec![registered(), linked()])
        .when(AccountCommand::UnlinkTwilio)
        .then_expect_events(vec![AccountEvent::TwilioUnlinked(TwilioUnlinked {})]);
    AccountTest::with(())
        .given(vec![
            registered(),
            linked(),
            AccountEvent::TwilioUnlinked(TwilioUnlinked {}),
        ])
        .when(AccountCommand::UnlinkTwilio)
        .then_expect_events(vec![]);
}

#[test]
fn shapes_follow_twilio_and_e164() {
    assert!(is_account_sid(SID));
    assert!(!is_account_sid("AC0123456789abcdef0123456789abcdeg"));
    assert!(is_e164("+442071838750") && is_e164("+15005550006"));
    assert!(!is_e164("+1234567890123456") && !is_e164("+12345") && !is_e164("+1555000000a"));
}

fn account_with(events: Vec<AccountEvent>) -> Account {
    let mut account = Account::default();
    for event in &events {
        account.evolve(event);
    }
    account
}
