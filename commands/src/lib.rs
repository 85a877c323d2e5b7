//! Netia's aggregates: commands, pure decisions and domain errors. No I/O, no clock.
//!
//! Every aggregate implements [`Decide`] (state + command → events or a typed error) and `evolve`
//! (state + event → state); `cqrs_es::Aggregate` is derived from those two so that
//! `cqrs_es::test::TestFramework` drives the same code the server runs.

pub mod account;
pub mod conversation;
pub mod customer;
pub mod external_id;
pub mod user;
pub mod validate;

pub use account::{
    Account, AccountCommand, AccountError, EventSubscription, GmailLink, SlackInstallation, TwilioAuthorization,
    is_account_sid, is_e164, is_local_part,
};
pub use conversation::{Conversation, ConversationCommand, ConversationError, Status as ConversationStatus};
pub use customer::{Customer, CustomerCommand, CustomerError};
pub use external_id::{ExternalId, ExternalIdCommand, ExternalIdError};
pub use user::{User, UserCommand, UserError};

/// The decision half of an aggregate.
pub trait Decide: cqrs_es::Aggregate<Error: Send + Sync + 'static, Command: Send + Sync> {
    /// The events `command` produces against the current state; an empty list is a no-op
    /// (for instance a message whose `client_message_id` was seen before).
    fn decide(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// The customer whose personal data this aggregate's events hold, if any (ADR 0023): the
    /// command bus asks after applying the decided events, so a new aggregate knows it already.
    fn subject(&self) -> Option<String> {
        None
    }
}

/// Whether a command may be decided again on fresh state after a concurrent append.
pub trait Commutes {
    /// True when the outcome does not depend on the order relative to other writers (posting a
    /// message, tagging). False when a person decided against a state that has since changed.
    fn commutes(&self) -> bool;
}

/// Implements `cqrs_es::Aggregate` for a type with `decide` and `evolve`.
macro_rules! aggregate {
    ($ty:ty, $stream:literal, $cmd:ty, $event:ty, $err:ty) => {
        impl cqrs_es::Aggregate for $ty {
            const TYPE: &'static str = $stream;
            type Command = $cmd;
            type Event = $event;
            type Error = $err;
            type Services = ();

            async fn handle(
                &mut self,
                command: Self::Command,
                _services: &Self::Services,
                sink: &cqrs_es::event_sink::EventSink<Self>,
            ) -> Result<(), Self::Error> {
                let events = $crate::Decide::decide(self, &command)?;
                for event in events {
                    sink.write(event, self).await;
                }
                Ok(())
            }

            fn apply(&mut self, event: Self::Event) {
                self.evolve(&event);
            }
        }
    };
}
pub(crate) use aggregate;
