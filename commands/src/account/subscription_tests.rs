//! Outbound webhook subscriptions, one rule per test.

use cqrs_es::test::TestFramework;
use netia_events::account::*;
use netia_events::{AccountId, InboxId, UserId};
use uuid::Uuid;

use super::{Account, AccountCommand, AccountError, MAX_EVENT_SUBSCRIPTIONS};

type AccountTest = TestFramework<Account>;

const SUBSCRIPTION: Uuid = Uuid::from_u128(10);

fn registered() -> AccountEvent {
    AccountEvent::AccountRegistered(AccountRegistered {
        account_id: AccountId(Uuid::from_u128(1)),
        name: "Acme".to_owned(),
        owner_user_id: UserId(Uuid::from_u128(2)),
        primary_inbox_id: InboxId(Uuid::from_u128(3)),
    })
}

fn subscribe(id: Uuid, url: &str, events: &[&str]) -> AccountCommand {
    AccountCommand::CreateEventSubscription {
        subscription_id: id,
        url: url.to_owned(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        sealed_secret: "v1.sealed".to_owned(),
    }
}

fn subscribed(id: Uuid, url: &str, events: &[&str]) -> AccountEvent {
    AccountEvent::EventSubscriptionCreated(EventSubscriptionCreated {
        subscription_id: id,
        url: url.to_owned(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        sealed_secret: "v1.sealed".to_owned(),
    })
}

fn invalid(field: &'static str, reason: &'static str) -> AccountError {
    AccountError::InvalidField { field, reason }
}

#[test]
fn a_subscription_records_its_events_sorted_and_once() {
    AccountTest::with(())
        .given(vec![registered()])
        .when(subscribe(
            SUBSCRIPTION,
            "https://hooks.example.com/netia",
            &["message:created", "customer:created", "message:created"],
        ))
        .then_expect_events(vec![subscribed(
            SUBSCRIPTION,
            "https://hooks.example.com/netia",
            &["customer:created", "message:created"],
        )]);
}

#[test]
fn the_same_subscription_again_is_a_no_op_and_its_id_is_not_reused() {
    let url = "https://hooks.example.com/netia";
    AccountTest::with(())
        .given(vec![registered(), subscribed(SUBSCRIPTION, url, &["message:created"])])
        .when(subscribe(SUBSCRIPTION, url, &["message:created"]))
        .then_expect_events(vec![]);
    AccountTest::with(())
        .given(vec![registered(), subscribed(SUBSCRIPTION, url, &["message:created"])])
        .when(subscribe(
            SUBSCRIPTION,
            "https://elsewhere.example.com/",
            &["message:created"],
        ))
        .then_expect_error(invalid("subscription_id", "is taken"));
}

#[test]
fn a_subscription_needs_an_http_url_without_credentials() {
    for url in [
        "ftp://hooks.example.com/",
        "https://",
        "https://user:pass@hooks.example.com/",
        "javascript:alert(1)",
        "https://hooks.example.com/a b",
    ] {
        AccountTest::with(())
            .given(vec![registered()])
            .when(subscribe(SUBSCRIPTION, url, &["message:created"]))
            .then_expect_error(invalid("url", "must be an http(s) URL without credentials"));
    }
}

#[test]
fn a_subscription_needs_known_events() {
    AccountTest::with(())
        .given(vec![registered()])
        .when(subscribe(SUBSCRIPTION, "https://hooks.example.com/", &[]))
        .then_expect_error(invalid("events", "name at least one event"));
    AccountTest::with(())
        .given(vec![registered()])
        .when(subscribe(SUBSCRIPTION, "https://hooks.example.com/", &["message:deleted"]))
        .then_expect_error(invalid(
            "events",
            "each must be one of message:created, conversation:created, conversation:updated, conversation:closed, customer:created",
        ));
}

#[test]
fn an_account_has_a_bounded_number_of_subscriptions() {
    let full: Vec<AccountEvent> = std::iter::once(registered())
        .chain((0..MAX_EVENT_SUBSCRIPTIONS as u128).map(|i| {
            subscribed(
                Uuid::from_u128(100 + i),
                "https://hooks.example.com/",
                &["message:created"],
            )
        }))
        .collect();
    AccountTest::with(())
        .given(full)
        .when(subscribe(
            SUBSCRIPTION,
            "https://hooks.example.com/",
            &["message:created"],
        ))
        .then_expect_error(AccountError::TooManyEventSubscriptions);
}

#[test]
fn deleting_a_subscription_needs_it_to_exist() {
    AccountTest::with(())
        .given(vec![registered()])
        .when(AccountCommand::DeleteEventSubscription {
            subscription_id: SUBSCRIPTION,
        })
        .then_expect_error(AccountError::EventSubscriptionNotFound);
    AccountTest::with(())
        .given(vec![
            registered(),
            subscribed(SUBSCRIPTION, "https://hooks.example.com/", &["message:created"]),
        ])
        .when(AccountCommand::DeleteEventSubscription {
            subscription_id: SUBSCRIPTION,
        })
        .then_expect_events(vec![AccountEvent::EventSubscriptionDeleted(EventSubscriptionDeleted {
            subscription_id: SUBSCRIPTION,
        })]);
}
