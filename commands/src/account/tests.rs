//! Account rules, one per test: registration, business context, widget settings, LLM on/off.

use cqrs_es::test::TestFramework;
use netia_events::account::*;
use netia_events::{AccountId, InboxId, UserId};
use uuid::Uuid;

use super::{Account, AccountCommand, AccountError};
use crate::Commutes;

type AccountTest = TestFramework<Account>;

const ACCOUNT: AccountId = AccountId(Uuid::from_u128(1));
const OWNER: UserId = UserId(Uuid::from_u128(2));
const INBOX: InboxId = InboxId(Uuid::from_u128(3));

fn register(name: &str) -> AccountCommand {
    AccountCommand::Register {
        account_id: ACCOUNT,
        name: name.to_owned(),
        owner_user_id: OWNER,
        primary_inbox_id: INBOX,
    }
}

fn registered() -> AccountEvent {
    AccountEvent::AccountRegistered(AccountRegistered {
        account_id: ACCOUNT,
        name: "Acme".to_owned(),
        owner_user_id: OWNER,
        primary_inbox_id: INBOX,
    })
}

fn context() -> BusinessContext {
    BusinessContext {
        business_name: "Acme".to_owned(),
        business_description: "We sell anvils.\nMostly to coyotes.".to_owned(),
        instructions: "Be brief.".to_owned(),
        scheduling_link: Some("https://cal.com/acme".to_owned()),
    }
}

fn widget() -> WidgetSettings {
    WidgetSettings {
        title: "Welcome to Acme".to_owned(),
        subtitle: "Ask us anything".to_owned(),
        primary_color: "#1a2B3c".to_owned(),
        greeting: "Hi there!".to_owned(),
        new_message_placeholder: "Type a message…".to_owned(),
        show_agent_availability: true,
        is_branding_hidden: false,
        allowed_origins: vec![
            "https://shop.example.com".to_owned(),
            "http://localhost:3000".to_owned(),
            "http://[::1]:8080".to_owned(),
        ],
        locale: "fr".to_owned(),
        reply_time: "hours".to_owned(),
    }
}

fn update_widget(settings: WidgetSettings) -> AccountCommand {
    AccountCommand::UpdateWidgetSettings { settings }
}

fn invalid(field: &'static str, reason: &'static str) -> AccountError {
    AccountError::InvalidField { field, reason }
}

// ----- registration -----

#[test]
fn registering_an_account_records_it() {
    AccountTest::with(())
        .given_no_previous_events()
        .when(register("Acme"))
        .then_expect_events(vec![registered()]);
}

#[test]
fn the_account_name_is_trimmed() {
    AccountTest::with(())
        .given_no_previous_events()
        .when(register("  Acme  "))
        .then_expect_events(vec![registered()]);
}

#[test]
fn registering_an_account_twice_is_refused() {
    AccountTest::with(())
        .given(vec![registered()])
        .when(register("Acme"))
        .then_expect_error(AccountError::AlreadyExists);
}

#[test]
fn an_invalid_account_name_is_refused() {
    for name in ["", "   ", &"a".repeat(101), "Ac\u{0}me", "Acme\nInc"] {
        AccountTest::with(())
            .given_no_previous_events()
            .when(register(name))
            .then_expect_error(AccountError::InvalidName);
    }
}

#[test]
fn any_command_before_registration_is_refused_as_not_found() {
    let commands = [
        AccountCommand::UpdateBusinessContext { context: context() },
        update_widget(widget()),
        AccountCommand::EnableLlm,
        AccountCommand::DisableLlm,
    ];
    for command in commands {
        AccountTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(AccountError::NotFound);
    }
}

// ----- business context -----

#[test]
fn updating_the_business_context_records_it() {
    AccountTest::with(())
        .given(vec![registered()])
        .when(AccountCommand::UpdateBusinessContext { context: context() })
        .then_expect_events(vec![AccountEvent::BusinessContextUpdated(BusinessContextUpdated {
            context: context(),
        })]);
}

#[test]
fn an_unchanged_business_context_is_a_no_op() {
    AccountTest::with(())
        .given(vec![
            registered(),
            AccountEvent::BusinessContextUpdated(BusinessContextUpdated { context: context() }),
        ])
        .when(AccountCommand::UpdateBusinessContext { context: context() })
        .then_expect_events(vec![]);
}

#[test]
fn a_scheduling_link_that_is_not_an_http_url_is_refused() {
    for link in ["javascript:alert(1)", "cal.com/acme", "https://", "https://cal.com/a b"] {
        let mut context = context();
        context.scheduling_link = Some(link.to_owned());
        AccountTest::with(())
            .given(vec![registered()])
            .when(AccountCommand::UpdateBusinessContext { context })
            .then_expect_error(invalid("scheduling_link", "must be an http(s) URL"));
    }
}

#[test]
fn business_instructions_over_10000_characters_are_refused() {
    let mut context = context();
    context.instructions = "x".repeat(10_001);
    AccountTest::with(())
        .given(vec![registered()])
        .when(AccountCommand::UpdateBusinessContext { context })
        .then_expect_error(invalid("instructions", "too long"));
}

#[test]
fn a_business_name_with_control_characters_is_refused() {
    let mut context = context();
    context.business_name = "Acme\u{1b}[31m".to_owned();
    AccountTest::with(())
        .given(vec![registered()])
        .when(AccountCommand::UpdateBusinessContext { context })
        .then_expect_error(invalid("business_name", "contains control characters"));
}

// ----- widget settings -----

#[test]
fn updating_the_widget_settings_records_them() {
    AccountTest::with(())
        .given(vec![registered()])
        .when(update_widget(widget()))
        .then_expect_events(vec![AccountEvent::WidgetSettingsUpdated(WidgetSettingsUpdated {
            settings: widget(),
        })]);
}

#[test]
fn a_short_colour_and_the_default_colour_are_accepted() {
    for colour in ["#fa0", ""] {
        let mut settings = widget();
        settings.primary_color = colour.to_owned();
        AccountTest::with(())
            .given(vec![registered()])
            .when(update_widget(settings.clone()))
            .then_expect_events(vec![AccountEvent::WidgetSettingsUpdated(WidgetSettingsUpdated {
                settings,
            })]);
    }
}

#[test]
fn unchanged_widget_settings_are_a_no_op() {
    AccountTest::with(())
        .given(vec![
            registered(),
            AccountEvent::WidgetSettingsUpdated(WidgetSettingsUpdated { settings: widget() }),
        ])
        .when(update_widget(widget()))
        .then_expect_events(vec![]);
}

#[test]
fn an_invalid_widget_colour_is_refused() {
    for colour in ["red", "1a2b3c", "#12345", "#1234567", "#ggg", "#12 456"] {
        let mut settings = widget();
        settings.primary_color = colour.to_owned();
        AccountTest::with(())
            .given(vec![registered()])
            .when(update_widget(settings))
            .then_expect_error(invalid("primary_color", "must be #rgb or #rrggbb"));
    }
}

#[test]
fn an_invalid_allowed_origin_is_refused() {
    for origin in [
        "https://shop.example.com/path",
        "https://shop.example.com/",
        "ftp://shop.example.com",
        "shop.example.com",
        "https://",
        "https://user:pw@shop.example.com",
        "https://shop.example.com?x=1",
        "*",
    ] {
        let mut settings = widget();
        settings.allowed_origins.push(origin.to_owned());
        AccountTest::with(())
            .given(vec![registered()])
            .when(update_widget(settings))
            .then_expect_error(invalid(
                "allowed_origins",
                "each must be scheme://host[:port] without a path",
            ));
    }
}

#[test]
fn a_widget_language_is_one_the_widget_speaks_or_none() {
    for locale in ["", "en", "fr", "de", "es"] {
        let mut settings = widget();
        settings.locale = locale.to_owned();
        AccountTest::with(())
            .given(vec![registered()])
            .when(update_widget(settings.clone()))
            .then_expect_events(vec![AccountEvent::WidgetSettingsUpdated(WidgetSettingsUpdated {
                settings,
            })]);
    }
    for locale in ["it", "EN", "fr-FR", " "] {
        let mut settings = widget();
        settings.locale = locale.to_owned();
        AccountTest::with(())
            .given(vec![registered()])
            .when(update_widget(settings))
            .then_expect_error(invalid(
                "locale",
                "must be en, fr, de, es, or empty (the visitor's browser language)",
            ));
    }
}

#[test]
fn a_widget_reply_time_is_minutes_hours_a_day_or_nothing() {
    for reply_time in ["", "minutes", "hours", "day"] {
        let mut settings = widget();
        settings.reply_time = reply_time.to_owned();
        AccountTest::with(())
            .given(vec![registered()])
            .when(update_widget(settings.clone()))
            .then_expect_events(vec![AccountEvent::WidgetSettingsUpdated(WidgetSettingsUpdated {
                settings,
            })]);
    }
    for reply_time in ["soon", "Minutes", "days", " "] {
        let mut settings = widget();
        settings.reply_time = reply_time.to_owned();
        AccountTest::with(())
            .given(vec![registered()])
            .when(update_widget(settings))
            .then_expect_error(invalid(
                "reply_time",
                "must be minutes, hours, day, or empty (say nothing)",
            ));
    }
}

#[test]
fn more_than_50_allowed_origins_are_refused() {
    let mut settings = widget();
    settings.allowed_origins = (0..51).map(|n| format!("https://shop{n}.example.com")).collect();
    AccountTest::with(())
        .given(vec![registered()])
        .when(update_widget(settings))
        .then_expect_error(invalid("allowed_origins", "at most 50 origins"));
}

#[test]
fn a_widget_title_over_200_characters_is_refused() {
    let mut settings = widget();
    settings.title = "t".repeat(201);
    AccountTest::with(())
        .given(vec![registered()])
        .when(update_widget(settings))
        .then_expect_error(invalid("title", "too long"));
}

// ----- LLM -----

#[test]
fn enabling_the_llm_records_it() {
    AccountTest::with(())
        .given(vec![registered()])
        .when(AccountCommand::EnableLlm)
        .then_expect_events(vec![AccountEvent::LlmEnabled(LlmEnabled {})]);
}

#[test]
fn enabling_an_enabled_llm_is_a_no_op() {
    AccountTest::with(())
        .given(vec![registered(), AccountEvent::LlmEnabled(LlmEnabled {})])
        .when(AccountCommand::EnableLlm)
        .then_expect_events(vec![]);
}

#[test]
fn disabling_an_enabled_llm_records_it() {
    AccountTest::with(())
        .given(vec![registered(), AccountEvent::LlmEnabled(LlmEnabled {})])
        .when(AccountCommand::DisableLlm)
        .then_expect_events(vec![AccountEvent::LlmDisabled(LlmDisabled {})]);
}

#[test]
fn the_llm_starts_disabled_so_disabling_it_is_a_no_op() {
    AccountTest::with(())
        .given(vec![registered()])
        .when(AccountCommand::DisableLlm)
        .then_expect_events(vec![]);
}

#[test]
fn disabling_a_disabled_llm_is_a_no_op() {
    AccountTest::with(())
        .given(vec![
            registered(),
            AccountEvent::LlmEnabled(LlmEnabled {}),
            AccountEvent::LlmDisabled(LlmDisabled {}),
        ])
        .when(AccountCommand::DisableLlm)
        .then_expect_events(vec![]);
}

// ----- concurrency -----

#[test]
fn only_llm_switches_commute() {
    assert!(AccountCommand::EnableLlm.commutes());
    assert!(AccountCommand::DisableLlm.commutes());
    assert!(!register("Acme").commutes());
    assert!(!AccountCommand::UpdateBusinessContext { context: context() }.commutes());
    assert!(!update_widget(widget()).commutes());
}

// ----- canned responses -----

const CANNED: Uuid = Uuid::from_u128(10);

fn save(name: &str, body: &str) -> AccountCommand {
    AccountCommand::SaveCannedResponse {
        canned_response_id: CANNED,
        name: name.to_owned(),
        body: body.to_owned(),
    }
}

fn saved(name: &str, body: &str) -> AccountEvent {
    AccountEvent::CannedResponseSaved(CannedResponseSaved {
        canned_response_id: CANNED,
        name: name.to_owned(),
        body: body.to_owned(),
    })
}

#[test]
fn a_canned_response_is_saved_with_a_trimmed_name() {
    AccountTest::with(())
        .given(vec![registered()])
        .when(save("  Greeting ", "Hello!\nHow can we help?"))
        .then_expect_events(vec![saved("Greeting", "Hello!\nHow can we help?")]);
}

#[test]
fn saving_the_same_canned_response_again_changes_nothing_and_a_new_body_replaces_it() {
    AccountTest::with(())
        .given(vec![registered(), saved("Greeting", "Hello!")])
        .when(save("Greeting", "Hello!"))
        .then_expect_events(vec![]);
    AccountTest::with(())
        .given(vec![registered(), saved("Greeting", "Hello!")])
        .when(save("Greeting", "Hi!"))
        .then_expect_events(vec![saved("Greeting", "Hi!")]);
}

#[test]
fn an_invalid_canned_response_is_refused() {
    for (name, body, field) in [
        ("", "body", "name"),
        ("name", "   ", "body"),
        ("name", "bad\u{0}body", "body"),
        (&"n".repeat(101) as &str, "body", "name"),
        ("name", &"b".repeat(5_001) as &str, "body"),
    ] {
        let result = AccountTest::with(())
            .given(vec![registered()])
            .when(save(name, body))
            .inspect_result();
        assert!(
            matches!(result, Err(AccountError::InvalidField { field: f, .. }) if f == field),
            "{name:?}/{body:.10?}: {result:?}"
        );
    }
}

#[test]
fn deleting_a_canned_response_removes_it_and_an_unknown_one_is_not_found() {
    AccountTest::with(())
        .given(vec![registered(), saved("Greeting", "Hello!")])
        .when(AccountCommand::DeleteCannedResponse {
            canned_response_id: CANNED,
        })
        .then_expect_events(vec![AccountEvent::CannedResponseDeleted(CannedResponseDeleted {
            canned_response_id: CANNED,
        })]);
    AccountTest::with(())
        .given(vec![
            registered(),
            saved("Greeting", "Hello!"),
            AccountEvent::CannedResponseDeleted(CannedResponseDeleted {
                canned_response_id: CANNED,
            }),
        ])
        .when(AccountCommand::DeleteCannedResponse {
            canned_response_id: CANNED,
        })
        .then_expect_error(AccountError::CannedResponseNotFound);
}

#[test]
fn canned_response_commands_commute() {
    assert!(save("a", "b").commutes());
}

// ----- identity verification -----

fn secret_rotated() -> AccountEvent {
    AccountEvent::IdentitySecretRotated(IdentitySecretRotated {
        sealed_secret: "v1.sealed".into(),
    })
}

#[test]
fn requiring_identity_verification_needs_a_secret() {
    AccountTest::with(())
        .given(vec![registered()])
        .when(AccountCommand::SetIdentityVerification { required: true })
        .then_expect_error(invalid(
            "require_identity_verification",
            "needs an identity secret: issue one first",
        ));
}

#[test]
fn with_a_secret_identity_verification_can_be_required_once() {
    AccountTest::with(())
        .given(vec![registered(), secret_rotated()])
        .when(AccountCommand::SetIdentityVerification { required: true })
        .then_expect_events(vec![AccountEvent::IdentityVerificationSet(IdentityVerificationSet {
            required: true,
        })]);
    AccountTest::with(())
        .given(vec![
            registered(),
            secret_rotated(),
            AccountEvent::IdentityVerificationSet(IdentityVerificationSet { required: true }),
        ])
        .when(AccountCommand::SetIdentityVerification { required: true })
        .then_expect_events(vec![]);
}

#[test]
fn rotating_the_identity_secret_records_the_sealed_value() {
    AccountTest::with(())
        .given(vec![registered(), secret_rotated()])
        .when(AccountCommand::RotateIdentitySecret {
            sealed_secret: "v1.other".into(),
        })
        .then_expect_events(vec![AccountEvent::IdentitySecretRotated(IdentitySecretRotated {
            sealed_secret: "v1.other".into(),
        })]);
    AccountTest::with(())
        .given(vec![registered()])
        .when(AccountCommand::RotateIdentitySecret {
            sealed_secret: String::new(),
        })
        .then_expect_error(invalid("identity_secret", "must be a sealed secret"));
}
