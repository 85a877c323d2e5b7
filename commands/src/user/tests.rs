//! User rules, one per test: invitation, registration, role and access.

use cqrs_es::test::TestFramework;
use netia_events::user::*;
use netia_events::{AccountId, UserId};
use uuid::Uuid;

use super::{User, UserCommand, UserError};
use crate::Commutes;

type UserTest = TestFramework<User>;

const USER: UserId = UserId(Uuid::from_u128(1));
const ACCOUNT: AccountId = AccountId(Uuid::from_u128(2));
const OTHER_ACCOUNT: AccountId = AccountId(Uuid::from_u128(3));
const ADMIN: UserId = UserId(Uuid::from_u128(4));

fn invite(email: &str, role: Role) -> UserCommand {
    UserCommand::Invite {
        user_id: USER,
        account_id: ACCOUNT,
        email: email.to_owned(),
        role,
        invited_by: ADMIN,
    }
}

fn invited(role: Role) -> UserEvent {
    UserEvent::UserInvited(UserInvited {
        user_id: USER,
        account_id: ACCOUNT,
        email: "ada@example.com".to_owned(),
        role,
        invited_by: ADMIN,
    })
}

fn register(account_id: AccountId, email: &str, display_name: &str, role: Role) -> UserCommand {
    UserCommand::Register {
        user_id: USER,
        account_id,
        email: email.to_owned(),
        display_name: display_name.to_owned(),
        role,
    }
}

fn registered(role: Role) -> UserEvent {
    UserEvent::UserRegistered(UserRegistered {
        user_id: USER,
        account_id: ACCOUNT,
        email: "ada@example.com".to_owned(),
        display_name: "Ada".to_owned(),
        role,
    })
}

fn disabled() -> UserEvent {
    UserEvent::UserDisabled(UserDisabled { disabled_by: ADMIN })
}

// ----- invitation -----

#[test]
fn inviting_a_user_records_the_invitation_with_a_lowercase_email() {
    UserTest::with(())
        .given_no_previous_events()
        .when(invite("Ada@Example.COM", Role::Member))
        .then_expect_events(vec![invited(Role::Member)]);
}

#[test]
fn inviting_with_an_invalid_email_is_refused() {
    for email in ["", "ada", "ada@example", "ada @example.com", "@example.com"] {
        UserTest::with(())
            .given_no_previous_events()
            .when(invite(email, Role::Member))
            .then_expect_error(UserError::InvalidEmail);
    }
}

#[test]
fn inviting_a_user_twice_is_refused() {
    UserTest::with(())
        .given(vec![invited(Role::Member)])
        .when(invite("ada@example.com", Role::Member))
        .then_expect_error(UserError::AlreadyExists);
}

#[test]
fn inviting_a_registered_user_is_refused() {
    UserTest::with(())
        .given(vec![registered(Role::Admin)])
        .when(invite("ada@example.com", Role::Member))
        .then_expect_error(UserError::AlreadyExists);
}

// ----- registration -----

#[test]
fn a_founding_admin_registers_with_the_role_asked_for() {
    UserTest::with(())
        .given_no_previous_events()
        .when(register(ACCOUNT, "ADA@example.com", "  Ada ", Role::Admin))
        .then_expect_events(vec![registered(Role::Admin)]);
}

#[test]
fn an_invitee_registers_with_the_invited_role_not_the_one_asked_for() {
    UserTest::with(())
        .given(vec![invited(Role::Viewer)])
        .when(register(ACCOUNT, "ada@example.com", "Ada", Role::Admin))
        .then_expect_events(vec![registered(Role::Viewer)]);
}

#[test]
fn an_invitee_cannot_register_into_another_account() {
    UserTest::with(())
        .given(vec![invited(Role::Member)])
        .when(register(OTHER_ACCOUNT, "ada@example.com", "Ada", Role::Member))
        .then_expect_error(UserError::WrongAccount);
}

#[test]
fn registering_twice_is_refused() {
    UserTest::with(())
        .given(vec![invited(Role::Member), registered(Role::Member)])
        .when(register(ACCOUNT, "ada@example.com", "Ada", Role::Member))
        .then_expect_error(UserError::AlreadyRegistered);
}

#[test]
fn registering_with_an_invalid_email_is_refused() {
    UserTest::with(())
        .given_no_previous_events()
        .when(register(ACCOUNT, "ada.example.com", "Ada", Role::Admin))
        .then_expect_error(UserError::InvalidEmail);
}

#[test]
fn registering_with_an_invalid_display_name_is_refused() {
    for name in ["", "   ", &"a".repeat(101), "Ada\u{0}"] {
        UserTest::with(())
            .given_no_previous_events()
            .when(register(ACCOUNT, "ada@example.com", name, Role::Admin))
            .then_expect_error(UserError::InvalidDisplayName);
    }
}

// ----- roles -----

#[test]
fn changing_a_role_records_the_previous_role() {
    UserTest::with(())
        .given(vec![registered(Role::Member)])
        .when(UserCommand::ChangeRole {
            role: Role::Admin,
            changed_by: ADMIN,
        })
        .then_expect_events(vec![UserEvent::UserRoleChanged(UserRoleChanged {
            role: Role::Admin,
            previous_role: Role::Member,
            changed_by: ADMIN,
        })]);
}

#[test]
fn nobody_can_change_their_own_role() {
    UserTest::with(())
        .given(vec![registered(Role::Member)])
        .when(UserCommand::ChangeRole {
            role: Role::Admin,
            changed_by: USER,
        })
        .then_expect_error(UserError::CannotChangeOwnRole);
}

#[test]
fn changing_to_the_same_role_is_a_no_op() {
    UserTest::with(())
        .given(vec![registered(Role::Member)])
        .when(UserCommand::ChangeRole {
            role: Role::Member,
            changed_by: ADMIN,
        })
        .then_expect_events(vec![]);
}

#[test]
fn the_role_of_an_invitee_can_be_changed_before_registration() {
    UserTest::with(())
        .given(vec![invited(Role::Viewer)])
        .when(UserCommand::ChangeRole {
            role: Role::Member,
            changed_by: ADMIN,
        })
        .then_expect_events(vec![UserEvent::UserRoleChanged(UserRoleChanged {
            role: Role::Member,
            previous_role: Role::Viewer,
            changed_by: ADMIN,
        })]);
}

#[test]
fn any_command_on_an_unknown_user_is_refused_as_not_found() {
    let commands = [
        UserCommand::ChangeRole {
            role: Role::Admin,
            changed_by: ADMIN,
        },
        UserCommand::Disable { disabled_by: ADMIN },
        UserCommand::Enable { enabled_by: ADMIN },
    ];
    for command in commands {
        UserTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(UserError::NotFound);
    }
}

// ----- access -----

#[test]
fn disabling_a_user_records_it() {
    UserTest::with(())
        .given(vec![registered(Role::Member)])
        .when(UserCommand::Disable { disabled_by: ADMIN })
        .then_expect_events(vec![disabled()]);
}

#[test]
fn nobody_can_disable_themselves() {
    UserTest::with(())
        .given(vec![registered(Role::Admin)])
        .when(UserCommand::Disable { disabled_by: USER })
        .then_expect_error(UserError::CannotDisableSelf);
}

#[test]
fn disabling_a_disabled_user_is_a_no_op() {
    UserTest::with(())
        .given(vec![registered(Role::Member), disabled()])
        .when(UserCommand::Disable { disabled_by: ADMIN })
        .then_expect_events(vec![]);
}

#[test]
fn enabling_a_disabled_user_records_it() {
    UserTest::with(())
        .given(vec![registered(Role::Member), disabled()])
        .when(UserCommand::Enable { enabled_by: ADMIN })
        .then_expect_events(vec![UserEvent::UserEnabled(UserEnabled { enabled_by: ADMIN })]);
}

#[test]
fn enabling_an_enabled_user_is_a_no_op() {
    UserTest::with(())
        .given(vec![registered(Role::Member)])
        .when(UserCommand::Enable { enabled_by: ADMIN })
        .then_expect_events(vec![]);
}

// ----- concurrency -----

#[test]
fn no_user_command_commutes() {
    let commands = [
        invite("ada@example.com", Role::Member),
        register(ACCOUNT, "ada@example.com", "Ada", Role::Admin),
        UserCommand::ChangeRole {
            role: Role::Admin,
            changed_by: ADMIN,
        },
        UserCommand::Disable { disabled_by: ADMIN },
        UserCommand::Enable { enabled_by: ADMIN },
    ];
    for command in commands {
        assert!(!command.commutes(), "{command:?} should not commute");
    }
}

// ----- online / offline -----

#[test]
fn coming_online_and_going_offline_are_recorded_once_each() {
    let online = |online| UserCommand::SetOnline { online };
    UserTest::with(())
        .given(vec![registered(Role::Member)])
        .when(online(true))
        .then_expect_events(vec![UserEvent::AgentCameOnline(AgentCameOnline {})]);
    UserTest::with(())
        .given(vec![
            registered(Role::Member),
            UserEvent::AgentCameOnline(AgentCameOnline {}),
        ])
        .when(online(true))
        .then_expect_events(vec![]);
    UserTest::with(())
        .given(vec![
            registered(Role::Member),
            UserEvent::AgentCameOnline(AgentCameOnline {}),
        ])
        .when(online(false))
        .then_expect_events(vec![UserEvent::AgentWentOffline(AgentWentOffline {})]);
    UserTest::with(())
        .given(vec![registered(Role::Member)])
        .when(online(false))
        .then_expect_events(vec![]);
    UserTest::with(())
        .given_no_previous_events()
        .when(online(true))
        .then_expect_error(UserError::NotFound);
}

// ----- sessions -----

#[test]
fn an_ended_session_is_recorded_with_its_id_and_why() {
    UserTest::with(())
        .given(vec![registered(Role::Member)])
        .when(UserCommand::EndSession {
            token_id: "t1".to_owned(),
            reason: SessionEnd::LoggedOut,
        })
        .then_expect_events(vec![UserEvent::SessionEnded(SessionEnded {
            token_id: "t1".to_owned(),
            reason: SessionEnd::LoggedOut,
        })]);
}

#[test]
fn a_session_of_nobody_cannot_end() {
    UserTest::with(())
        .given_no_previous_events()
        .when(UserCommand::EndSession {
            token_id: "t1".to_owned(),
            reason: SessionEnd::Renewed,
        })
        .then_expect_error(UserError::NotFound);
}

#[test]
fn ending_sessions_commutes_with_other_commands() {
    let end = UserCommand::EndSession {
        token_id: "t1".to_owned(),
        reason: SessionEnd::Renewed,
    };
    assert!(end.commutes());
}

#[test]
fn new_conversation_emails_are_on_until_turned_off_and_turning_twice_records_once() {
    let off = UserEvent::NotificationSettingsChanged(NotificationSettingsChanged {
        new_conversation_emails: false,
    });
    let set = |on: bool| UserCommand::SetNotifications {
        new_conversation_emails: on,
    };
    UserTest::with(())
        .given(vec![registered(Role::Member)])
        .when(set(true))
        .then_expect_events(vec![]);
    UserTest::with(())
        .given(vec![registered(Role::Member)])
        .when(set(false))
        .then_expect_events(vec![off.clone()]);
    UserTest::with(())
        .given(vec![registered(Role::Member), off])
        .when(set(false))
        .then_expect_events(vec![]);
}
