//! Customer rules, one per test: creation, identification and metadata.

use cqrs_es::test::TestFramework;
use netia_events::customer::*;
use netia_events::{AccountId, CustomerId};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{Customer, CustomerCommand, CustomerError, MAX_METADATA_KEYS};
use crate::Commutes;

type CustomerTest = TestFramework<Customer>;

const CUSTOMER: CustomerId = CustomerId(Uuid::from_u128(1));
const ACCOUNT: AccountId = AccountId(Uuid::from_u128(2));

/// A JSON object literal as a metadata map.
fn map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn identity() -> CustomerIdentity {
    CustomerIdentity {
        external_id: Some("shop-42".to_owned()),
        email: Some("ada@example.com".to_owned()),
        name: Some("Ada Lovelace".to_owned()),
        phone: None,
    }
}

fn create(identity: CustomerIdentity, metadata: Value) -> CustomerCommand {
    CustomerCommand::Create {
        customer_id: CUSTOMER,
        account_id: ACCOUNT,
        identity,
        metadata: map(metadata),
        verified: false,
    }
}

fn created(metadata: Value) -> CustomerEvent {
    CustomerEvent::CustomerCreated(CustomerCreated {
        customer_id: CUSTOMER,
        account_id: ACCOUNT,
        identity: identity(),
        metadata: map(metadata),
        verified: false,
    })
}

fn update(changes: Value) -> CustomerCommand {
    CustomerCommand::UpdateMetadata { changes: map(changes) }
}

fn metadata_updated(changes: Value) -> CustomerEvent {
    CustomerEvent::CustomerMetadataUpdated(CustomerMetadataUpdated { changes: map(changes) })
}

// ----- creation -----

#[test]
fn creating_a_customer_records_a_normalised_identity() {
    let messy = CustomerIdentity {
        external_id: Some(" shop-42 ".to_owned()),
        email: Some(" Ada@Example.COM ".to_owned()),
        name: Some("Ada Lovelace  ".to_owned()),
        phone: None,
    };
    CustomerTest::with(())
        .given_no_previous_events()
        .when(create(messy, json!({"browser": "Firefox"})))
        .then_expect_events(vec![created(json!({"browser": "Firefox"}))]);
}

#[test]
fn null_metadata_values_are_dropped_at_creation() {
    CustomerTest::with(())
        .given_no_previous_events()
        .when(create(identity(), json!({"browser": "Firefox", "os": null})))
        .then_expect_events(vec![created(json!({"browser": "Firefox"}))]);
}

#[test]
fn creating_a_customer_twice_is_refused() {
    CustomerTest::with(())
        .given(vec![created(json!({}))])
        .when(create(identity(), json!({})))
        .then_expect_error(CustomerError::AlreadyExists);
}

#[test]
fn creating_a_customer_with_an_invalid_email_is_refused() {
    let mut identity = identity();
    identity.email = Some("ada@example".to_owned());
    CustomerTest::with(())
        .given_no_previous_events()
        .when(create(identity, json!({})))
        .then_expect_error(CustomerError::InvalidEmail);
}

#[test]
fn a_name_over_200_characters_is_refused() {
    let mut identity = identity();
    identity.name = Some("n".repeat(201));
    CustomerTest::with(())
        .given_no_previous_events()
        .when(create(identity, json!({})))
        .then_expect_error(CustomerError::InvalidField {
            field: "name",
            max: 200,
        });
}

#[test]
fn a_blank_external_id_is_refused() {
    let mut identity = identity();
    identity.external_id = Some("  ".to_owned());
    CustomerTest::with(())
        .given_no_previous_events()
        .when(create(identity, json!({})))
        .then_expect_error(CustomerError::InvalidField {
            field: "external_id",
            max: 200,
        });
}

#[test]
fn any_command_before_creation_is_refused_as_not_found() {
    let commands = [
        CustomerCommand::Identify {
            identity: identity(),
            verified: false,
        },
        update(json!({"plan": "pro"})),
    ];
    for command in commands {
        CustomerTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(CustomerError::NotFound);
    }
}

// ----- identification -----

#[test]
fn identifying_a_customer_records_only_the_changed_fields() {
    CustomerTest::with(())
        .given(vec![created(json!({}))])
        .when(CustomerCommand::Identify {
            identity: CustomerIdentity {
                external_id: Some("shop-42".to_owned()),
                email: Some("ada@analytical.engine".to_owned()),
                name: Some("Ada Lovelace".to_owned()),
                phone: Some("+44 20 7946 0000".to_owned()),
            },
            verified: false,
        })
        .then_expect_events(vec![CustomerEvent::CustomerIdentified(CustomerIdentified {
            identity: CustomerIdentity {
                external_id: None,
                email: Some("ada@analytical.engine".to_owned()),
                name: None,
                phone: Some("+44 20 7946 0000".to_owned()),
            },
            verified: false,
        })]);
}

#[test]
fn identifying_with_nothing_new_is_a_no_op() {
    CustomerTest::with(())
        .given(vec![created(json!({}))])
        .when(CustomerCommand::Identify {
            identity: CustomerIdentity {
                external_id: None,
                email: Some(" ADA@example.com".to_owned()),
                name: Some("Ada Lovelace".to_owned()),
                phone: None,
            },
            verified: false,
        })
        .then_expect_events(vec![]);
}

#[test]
fn identifying_again_with_a_field_learnt_before_is_a_no_op() {
    let learnt = CustomerIdentity {
        phone: Some("+15005550006".to_owned()),
        ..CustomerIdentity::default()
    };
    CustomerTest::with(())
        .given(vec![
            created(json!({})),
            CustomerEvent::CustomerIdentified(CustomerIdentified {
                identity: learnt.clone(),
                verified: false,
            }),
        ])
        .when(CustomerCommand::Identify {
            identity: learnt,
            verified: false,
        })
        .then_expect_events(vec![]);
}

#[test]
fn identifying_with_an_invalid_email_is_refused() {
    CustomerTest::with(())
        .given(vec![created(json!({}))])
        .when(CustomerCommand::Identify {
            identity: CustomerIdentity {
                email: Some("not an email".to_owned()),
                ..CustomerIdentity::default()
            },
            verified: false,
        })
        .then_expect_error(CustomerError::InvalidEmail);
}

// ----- metadata -----

#[test]
fn a_metadata_update_records_only_the_effective_changes() {
    CustomerTest::with(())
        .given(vec![created(json!({"browser": "Firefox", "plan": "free"}))])
        .when(update(json!({"browser": "Firefox", "plan": "pro", "seats": 3})))
        .then_expect_events(vec![metadata_updated(json!({"plan": "pro", "seats": 3}))]);
}

#[test]
fn null_removes_a_metadata_key() {
    CustomerTest::with(())
        .given(vec![created(json!({"browser": "Firefox", "plan": "free"}))])
        .when(update(json!({"plan": null})))
        .then_expect_events(vec![metadata_updated(json!({"plan": null}))]);
}

#[test]
fn null_for_an_absent_key_is_a_no_op() {
    CustomerTest::with(())
        .given(vec![created(json!({"browser": "Firefox"}))])
        .when(update(json!({"plan": null})))
        .then_expect_events(vec![]);
}

#[test]
fn null_for_a_key_removed_before_is_a_no_op() {
    CustomerTest::with(())
        .given(vec![
            created(json!({"browser": "Firefox", "plan": "free"})),
            metadata_updated(json!({"plan": null})),
        ])
        .when(update(json!({"plan": null})))
        .then_expect_events(vec![]);
}

#[test]
fn an_unchanged_metadata_update_is_a_no_op() {
    CustomerTest::with(())
        .given(vec![
            created(json!({"browser": "Firefox"})),
            metadata_updated(json!({"plan": "pro"})),
        ])
        .when(update(json!({"browser": "Firefox", "plan": "pro"})))
        .then_expect_events(vec![]);
}

#[test]
fn metadata_beyond_100_keys_is_refused() {
    let full: Map<String, Value> = (0..MAX_METADATA_KEYS).map(|n| (format!("k{n}"), json!(n))).collect();
    CustomerTest::with(())
        .given(vec![created(Value::Object(full))])
        .when(update(json!({"one_more": true})))
        .then_expect_error(CustomerError::MetadataTooLarge);
}

#[test]
fn replacing_a_key_of_full_metadata_is_accepted() {
    let full: Map<String, Value> = (0..MAX_METADATA_KEYS).map(|n| (format!("k{n}"), json!(n))).collect();
    CustomerTest::with(())
        .given(vec![created(Value::Object(full))])
        .when(update(json!({"k0": null, "one_more": true})))
        .then_expect_events(vec![metadata_updated(json!({"k0": null, "one_more": true}))]);
}

#[test]
fn creating_a_customer_with_more_than_100_metadata_keys_is_refused() {
    let too_many: Map<String, Value> = (0..=MAX_METADATA_KEYS).map(|n| (format!("k{n}"), json!(n))).collect();
    CustomerTest::with(())
        .given_no_previous_events()
        .when(create(identity(), Value::Object(too_many)))
        .then_expect_error(CustomerError::MetadataTooLarge);
}

#[test]
fn metadata_over_16_kib_is_refused() {
    CustomerTest::with(())
        .given(vec![created(json!({}))])
        .when(update(json!({"notes": "x".repeat(16 * 1024)})))
        .then_expect_error(CustomerError::MetadataTooLarge);
}

#[test]
fn a_blank_or_overlong_metadata_key_is_refused() {
    for key in [" ".to_owned(), "k".repeat(101)] {
        let mut changes = Map::new();
        changes.insert(key, json!(1));
        CustomerTest::with(())
            .given(vec![created(json!({}))])
            .when(CustomerCommand::UpdateMetadata { changes })
            .then_expect_error(CustomerError::MetadataTooLarge);
    }
}

// ----- concurrency -----

#[test]
fn identifying_and_metadata_updates_commute_but_creation_does_not() {
    assert!(
        CustomerCommand::Identify {
            identity: identity(),
            verified: false
        }
        .commutes()
    );
    assert!(update(json!({"plan": "pro"})).commutes());
    assert!(!create(identity(), json!({})).commutes());
}

// ----- deletion -----

const AGENT: netia_events::UserId = netia_events::UserId(Uuid::from_u128(9));

fn deleted() -> CustomerEvent {
    CustomerEvent::CustomerDeleted(CustomerDeleted { deleted_by: AGENT })
}

#[test]
fn deleting_a_customer_records_who_did_it() {
    CustomerTest::with(())
        .given(vec![created(json!({}))])
        .when(CustomerCommand::Delete { deleted_by: AGENT })
        .then_expect_events(vec![deleted()]);
}

#[test]
fn a_deleted_customer_accepts_no_command() {
    for command in [
        CustomerCommand::Delete { deleted_by: AGENT },
        update(json!({"plan": "pro"})),
        CustomerCommand::Identify {
            identity: CustomerIdentity {
                name: Some("New name".into()),
                ..Default::default()
            },
            verified: false,
        },
    ] {
        CustomerTest::with(())
            .given(vec![created(json!({})), deleted()])
            .when(command)
            .then_expect_error(CustomerError::NotFound);
    }
    CustomerTest::with(())
        .given(vec![created(json!({})), deleted()])
        .when(create(identity(), json!({})))
        .then_expect_error(CustomerError::AlreadyExists);
}

#[test]
fn deleting_an_unknown_customer_is_not_found() {
    CustomerTest::with(())
        .given_no_previous_events()
        .when(CustomerCommand::Delete { deleted_by: AGENT })
        .then_expect_error(CustomerError::NotFound);
}

#[test]
fn a_customer_coming_online_and_going_offline_is_recorded_once_each() {
    let online = |online| CustomerCommand::SetOnline { online };
    let came = || CustomerEvent::CustomerCameOnline(CustomerCameOnline {});
    CustomerTest::with(())
        .given(vec![created(json!({}))])
        .when(online(true))
        .then_expect_events(vec![came()]);
    CustomerTest::with(())
        .given(vec![created(json!({})), came()])
        .when(online(true))
        .then_expect_events(vec![]);
    CustomerTest::with(())
        .given(vec![created(json!({})), came()])
        .when(online(false))
        .then_expect_events(vec![CustomerEvent::CustomerWentOffline(CustomerWentOffline {})]);
    CustomerTest::with(())
        .given(vec![created(json!({})), deleted()])
        .when(online(true))
        .then_expect_error(CustomerError::NotFound);
}

// ----- identity verification -----

fn verified_created() -> CustomerEvent {
    CustomerEvent::CustomerCreated(CustomerCreated {
        customer_id: CUSTOMER,
        account_id: ACCOUNT,
        identity: identity(),
        metadata: Map::new(),
        verified: true,
    })
}

fn state(events: &[CustomerEvent]) -> Customer {
    let mut customer = Customer::default();
    events.iter().for_each(|e| customer.evolve(e));
    customer
}

#[test]
fn a_customer_created_with_a_valid_hash_is_verified_for_its_external_id_and_email() {
    let customer = state(&[verified_created()]);
    assert!(customer.verified && customer.email_verified);
    let customer = state(&[created(json!({}))]);
    assert!(!customer.verified && !customer.email_verified);
}

#[test]
fn vouching_for_an_unchanged_email_records_it_as_verified() {
    CustomerTest::with(())
        .given(vec![created(json!({}))])
        .when(CustomerCommand::Identify {
            identity: CustomerIdentity {
                email: Some("ada@example.com".to_owned()),
                ..CustomerIdentity::default()
            },
            verified: true,
        })
        .then_expect_events(vec![CustomerEvent::CustomerIdentified(CustomerIdentified {
            identity: CustomerIdentity {
                email: Some("ada@example.com".to_owned()),
                ..CustomerIdentity::default()
            },
            verified: true,
        })]);
}

#[test]
fn an_unverified_call_with_unchanged_values_keeps_their_verification() {
    CustomerTest::with(())
        .given(vec![verified_created()])
        .when(CustomerCommand::Identify {
            identity: identity(),
            verified: false,
        })
        .then_expect_events(vec![]);
}

#[test]
fn an_unverified_new_email_is_no_longer_verified_but_the_external_id_still_is() {
    let changed = CustomerEvent::CustomerIdentified(CustomerIdentified {
        identity: CustomerIdentity {
            email: Some("someone@else.example".to_owned()),
            ..CustomerIdentity::default()
        },
        verified: false,
    });
    let customer = state(&[verified_created(), changed]);
    assert!(customer.verified);
    assert!(!customer.email_verified);
}

fn erase() -> CustomerCommand {
    CustomerCommand::Erase {
        erased_by: None,
        erased_at: chrono::DateTime::UNIX_EPOCH,
    }
}

fn erased() -> CustomerEvent {
    CustomerEvent::CustomerErased(CustomerErased {
        erased_by: None,
        erased_at: chrono::DateTime::UNIX_EPOCH,
    })
}

#[test]
fn a_customer_is_erased_once() {
    CustomerTest::with(())
        .given(vec![created(json!({"plan": "pro"}))])
        .when(erase())
        .then_expect_events(vec![erased()]);
    CustomerTest::with(())
        .given(vec![created(json!({})), erased()])
        .when(erase())
        .then_expect_events(vec![]);
}

#[test]
fn a_deleted_customer_can_still_be_erased() {
    let deleted = CustomerEvent::CustomerDeleted(CustomerDeleted {
        deleted_by: netia_events::UserId(Uuid::from_u128(9)),
    });
    CustomerTest::with(())
        .given(vec![created(json!({})), deleted])
        .when(erase())
        .then_expect_events(vec![erased()]);
}

#[test]
fn nothing_applies_to_an_erased_customer_and_it_forgets_who_it_was() {
    CustomerTest::with(())
        .given(vec![created(json!({})), erased()])
        .when(update(json!({"plan": "pro"})))
        .then_expect_error(CustomerError::NotFound);
    let mut customer = Customer::default();
    customer.evolve(&created(json!({"plan": "pro"})));
    customer.evolve(&erased());
    assert_eq!(customer.identity, CustomerIdentity::default());
    assert!(customer.metadata.is_empty() && customer.deleted && customer.erased);
    assert_eq!(crate::Decide::subject(&customer), Some(CUSTOMER.to_string()));
}

#[test]
fn no_customer_no_erasure() {
    CustomerTest::with(())
        .given_no_previous_events()
        .when(erase())
        .then_expect_error(CustomerError::NotFound);
}

#[test]
fn a_phone_is_digits_with_the_usual_separators() {
    for good in [
        "+44 20 7946 0000",
        "(555) 123-4567",
        "555.123.4567",
        "+15005550006",
        "  +1 212/555 0100  ",
    ] {
        let mut identity = identity();
        identity.phone = Some(good.to_owned());
        let result = CustomerTest::with(())
            .given_no_previous_events()
            .when(create(identity, json!({})))
            .inspect_result();
        assert!(result.is_ok(), "{good:?}: {result:?}");
    }
    let too_long = "1".repeat(33);
    for bad in [
        "call me maybe",
        "12",
        "1+2345",
        "++44 20",
        "555 <script>",
        "",
        too_long.as_str(),
    ] {
        let mut identity = identity();
        identity.phone = Some(bad.to_owned());
        CustomerTest::with(())
            .given_no_previous_events()
            .when(create(identity, json!({})))
            .then_expect_error(CustomerError::InvalidPhone);
    }
}

#[test]
fn a_metadata_number_that_would_not_read_back_as_sent_is_refused() {
    // serde_json reads an integer beyond 64 bits as the nearest f64: 12345678901234567890123 would
    // be stored as 12345678901234567000000. Such numbers are refused, in new customers, in
    // updates and nested in objects and arrays; integers within 64 bits and ordinary decimals pass.
    let big: Value = serde_json::from_str("12345678901234567890123").unwrap();
    for bad in [
        json!({ "account_no": big.clone() }),
        json!({ "ids": [1, big.clone()] }),
        json!({ "deep": { "deeper": { "n": -9.1e15 } } }),
    ] {
        CustomerTest::with(())
            .given_no_previous_events()
            .when(create(identity(), bad.clone()))
            .then_expect_error(CustomerError::InexactNumber);
        CustomerTest::with(())
            .given(vec![created(json!({}))])
            .when(update(bad))
            .then_expect_error(CustomerError::InexactNumber);
    }
    let good = json!({
        "u64": u64::MAX, "i64": i64::MIN, "price": 19.99, "ratio": -0.000001, "safe": 9_007_199_254_740_991_i64,
        "list": [1, 2.5, "12345678901234567890123"],
    });
    let result = CustomerTest::with(())
        .given_no_previous_events()
        .when(create(identity(), good))
        .inspect_result();
    assert!(result.is_ok(), "{result:?}");
}
