//! Turning typed events into stored `(type, version, payload)` triples and back, with upcasting.

use serde_json::Value;

use crate::envelope::RecordedEvent;

/// A family of events (one per aggregate) that can be stored and read back.
pub trait DomainEvent: Sized {
    /// The stream type its aggregate writes to.
    const STREAM_TYPE: &'static str;
    /// Every event type this family knows, for diagnostics.
    const TYPES: &'static [&'static str];

    fn event_type(&self) -> &'static str;
    /// The current schema version of this event's payload.
    fn event_version(&self) -> i32;
    fn to_payload(&self) -> Result<Value, serde_json::Error>;
    /// Decodes a payload stored at `version`, upcasting older shapes first.
    fn from_stored(event_type: &str, version: i32, payload: Value) -> Result<Self, DecodeError>;
    /// Like [`DomainEvent::from_stored`] without taking the payload: a payload already of the
    /// current version is read in place (no copy of it, which every projector made for every event);
    /// an older one is copied to be upcast.
    fn from_stored_ref(event_type: &str, version: i32, payload: &Value) -> Result<Self, DecodeError>;

    /// [`DomainEvent::decode`], done once per event and shared: the first caller decodes and
    /// keeps the result in the event ([`RecordedEvent::decoded`]), the next ones get it. Errors are
    /// not kept: each caller gets its own.
    fn decode_shared(event: &RecordedEvent) -> Result<std::sync::Arc<Self>, EventError>
    where
        Self: Send + Sync + 'static,
    {
        if event.stream_type == Self::STREAM_TYPE
            && let Some(typed) = event.decoded.get_or_decode(|| Self::decode(event).ok())
        {
            return Ok(typed);
        }
        Self::decode(event).map(std::sync::Arc::new)
    }

    /// Decodes a recorded event, naming its position on failure.
    fn decode(event: &RecordedEvent) -> Result<Self, EventError> {
        if event.stream_type != Self::STREAM_TYPE {
            return Err(EventError {
                position: event.global_position,
                stream: format!("{}:{}", event.stream_type, event.stream_id),
                event_type: event.event_type.clone(),
                source: DecodeError::WrongStream {
                    expected: Self::STREAM_TYPE,
                },
            });
        }
        Self::from_stored_ref(&event.event_type, event.event_version, &event.payload).map_err(|source| EventError {
            position: event.global_position,
            stream: format!("{}:{}", event.stream_type, event.stream_id),
            event_type: event.event_type.clone(),
            source,
        })
    }
}

/// Turns typed events into events ready to append, all with the same metadata.
pub fn encode<E: DomainEvent>(
    events: &[E],
    metadata: &serde_json::Value,
) -> Result<Vec<crate::NewEvent>, serde_json::Error> {
    events
        .iter()
        .map(|e| {
            Ok(crate::NewEvent::new(
                e.event_type(),
                e.event_version(),
                e.to_payload()?,
                metadata.clone(),
            ))
        })
        .collect()
}

/// Why a stored payload could not become a typed event.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type")]
    UnknownType,
    #[error("version {found} is newer than the newest known version {newest}")]
    UnsupportedVersion { found: i32, newest: i32 },
    #[error("no upcaster from version {from}")]
    NoUpcaster { from: i32 },
    #[error("malformed payload: {0}")]
    Malformed(String),
    #[error("event belongs to another stream type (expected {expected})")]
    WrongStream { expected: &'static str },
}

/// A stored event that could not be decoded, with where it sits in the log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("event {event_type} at position {position} in {stream}: {source}")]
pub struct EventError {
    pub position: i64,
    pub stream: String,
    pub event_type: String,
    #[source]
    pub source: DecodeError,
}

/// An upcaster turns a payload of `event_type` at version `from` into version `from + 1`.
pub type Upcaster = fn(Value) -> Result<Value, DecodeError>;

/// Brings a stored payload up to `current`, one version at a time, using `upcasters(type, from)`.
pub fn upcast(
    event_type: &str,
    mut version: i32,
    current: i32,
    mut payload: Value,
    upcasters: fn(&str, i32) -> Option<Upcaster>,
) -> Result<Value, DecodeError> {
    if version > current {
        return Err(DecodeError::UnsupportedVersion {
            found: version,
            newest: current,
        });
    }
    while version < current {
        let step = upcasters(event_type, version).ok_or(DecodeError::NoUpcaster { from: version })?;
        payload = step(payload)?;
        version += 1;
    }
    Ok(payload)
}

/// Declares an event family: an enum whose variants wrap payload structs of the same name, each with
/// its current version. Upcasters are looked up through the given function.
#[macro_export]
macro_rules! event_family {
    (
        $(#[$meta:meta])*
        $name:ident, stream = $stream:literal, upcasters = $upcasters:path,
        { $($variant:ident = $version:literal),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($variant($variant)),*
        }

        impl $crate::codec::DomainEvent for $name {
            const STREAM_TYPE: &'static str = $stream;
            const TYPES: &'static [&'static str] = &[$(stringify!($variant)),*];

            fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => stringify!($variant)),*
                }
            }

            fn event_version(&self) -> i32 {
                match self {
                    $(Self::$variant(_) => $version),*
                }
            }

            fn to_payload(&self) -> Result<serde_json::Value, serde_json::Error> {
                match self {
                    $(Self::$variant(p) => serde_json::to_value(p)),*
                }
            }

            fn from_stored(
                event_type: &str,
                version: i32,
                payload: serde_json::Value,
            ) -> Result<Self, $crate::codec::DecodeError> {
                match event_type {
                    $(stringify!($variant) => {
                        let payload = $crate::codec::upcast(event_type, version, $version, payload, $upcasters)?;
                        serde_json::from_value(payload)
                            .map(Self::$variant)
                            .map_err(|e| $crate::codec::DecodeError::Malformed(e.to_string()))
                    })*
                    _ => Err($crate::codec::DecodeError::UnknownType),
                }
            }

            fn from_stored_ref(
                event_type: &str,
                version: i32,
                payload: &serde_json::Value,
            ) -> Result<Self, $crate::codec::DecodeError> {
                match event_type {
                    $(stringify!($variant) if version == $version => {
                        <$variant as serde::Deserialize>::deserialize(payload)
                            .map(Self::$variant)
                            .map_err(|e| $crate::codec::DecodeError::Malformed(e.to_string()))
                    })*
                    _ => Self::from_stored(event_type, version, payload.clone()),
                }
            }
        }

        impl cqrs_es::DomainEvent for $name {
            fn event_type(&self) -> String {
                <Self as $crate::codec::DomainEvent>::event_type(self).to_owned()
            }
            fn event_version(&self) -> String {
                <Self as $crate::codec::DomainEvent>::event_version(self).to_string()
            }
        }
    };
}

/// For families that have never changed shape.
pub fn no_upcasters(_event_type: &str, _from: i32) -> Option<Upcaster> {
    None
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::conversation::{ConversationClosed, ConversationEvent, CustomerMessagePosted, MessageFormat};
    use crate::ids::{CustomerId, MessageId};

    fn posted() -> ConversationEvent {
        ConversationEvent::CustomerMessagePosted(CustomerMessagePosted {
            message_id: MessageId(Uuid::from_u128(1)),
            customer_id: CustomerId(Uuid::from_u128(2)),
            body: "Where is my order?".to_owned(),
            attachments: Vec::new(),
            format: crate::conversation::MessageFormat::Text,
            client_message_id: Some("c-1".to_owned()),
            sent_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        })
    }

    fn recorded(stream_type: &str, event_type: &str, event_version: i32, payload: Value) -> RecordedEvent {
        RecordedEvent {
            global_position: 4242,
            tx_id: 7,
            event_id: Uuid::from_u128(3),
            stream_type: stream_type.to_owned(),
            stream_id: "c1".to_owned(),
            version: 2,
            event_type: event_type.to_owned(),
            event_version,
            payload,
            metadata: json!({}),
            recorded_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            hash: vec![0; 32],
            decoded: Default::default(),
        }
    }

    #[test]
    fn an_event_survives_a_round_trip_through_its_stored_form() {
        let event = posted();
        let payload = event.to_payload().unwrap();
        let back = ConversationEvent::from_stored(event.event_type(), event.event_version(), payload).unwrap();
        assert_eq!(back, event);
        assert_eq!(event.event_type(), "CustomerMessagePosted");
        assert_eq!(event.event_version(), 2);
    }

    #[test]
    fn reading_a_payload_in_place_decodes_as_taking_it_does() {
        let current = posted().to_payload().unwrap();
        let mut v1 = current.clone();
        v1.as_object_mut().unwrap().remove("format");
        v1.as_object_mut().unwrap().remove("attachments");
        let cases = [
            ("CustomerMessagePosted", 2, current.clone()),
            ("CustomerMessagePosted", 1, v1),
            ("CustomerMessagePosted", 3, current.clone()),
            ("CustomerMessagePosted", 0, current),
            ("CustomerMessagePosted", 2, json!({"body": "hi"})),
            ("ConversationClosed", 1, json!({"closed_at": "yesterday"})),
            ("ConversationTeleported", 1, json!({})),
        ];
        for (event_type, version, payload) in cases {
            let taken = ConversationEvent::from_stored(event_type, version, payload.clone());
            let in_place = ConversationEvent::from_stored_ref(event_type, version, &payload);
            assert_eq!(in_place, taken, "{event_type} v{version}");
        }
        assert!(
            ConversationEvent::from_stored_ref("CustomerMessagePosted", 2, &posted().to_payload().unwrap()).is_ok()
        );
    }

    #[test]
    fn an_event_type_names_its_variant_and_is_listed_in_the_family() {
        for event in [
            posted(),
            ConversationEvent::ConversationClosed(ConversationClosed {
                closed_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            }),
        ] {
            assert!(ConversationEvent::TYPES.contains(&event.event_type()));
            assert_eq!(cqrs_es::DomainEvent::event_type(&event), event.event_type());
            assert_eq!(
                cqrs_es::DomainEvent::event_version(&event),
                event.event_version().to_string()
            );
        }
    }

    #[test]
    fn an_unknown_event_type_is_refused() {
        let result = ConversationEvent::from_stored("ConversationTeleported", 1, json!({}));
        assert_eq!(result, Err(DecodeError::UnknownType));
    }

    #[test]
    fn a_malformed_payload_is_refused() {
        let result = ConversationEvent::from_stored("ConversationClosed", 1, json!({"closed_at": "yesterday"}));
        assert!(matches!(result, Err(DecodeError::Malformed(_))), "{result:?}");
    }

    #[test]
    fn a_payload_missing_a_field_is_refused_as_malformed() {
        let result = ConversationEvent::from_stored("CustomerMessagePosted", 1, json!({"body": "hi"}));
        assert!(matches!(result, Err(DecodeError::Malformed(_))), "{result:?}");
    }

    #[test]
    fn a_version_newer_than_the_current_one_is_refused() {
        let payload = posted().to_payload().unwrap();
        let result = ConversationEvent::from_stored("CustomerMessagePosted", 3, payload);
        assert_eq!(result, Err(DecodeError::UnsupportedVersion { found: 3, newest: 2 }));
    }

    #[test]
    fn an_older_version_without_an_upcaster_is_refused() {
        let payload = posted().to_payload().unwrap();
        let result = ConversationEvent::from_stored("CustomerMessagePosted", 0, payload);
        assert_eq!(result, Err(DecodeError::NoUpcaster { from: 0 }));
    }

    #[test]
    fn upcasting_applies_each_step_in_order() {
        fn steps(event_type: &str, from: i32) -> Option<Upcaster> {
            match (event_type, from) {
                ("Renamed", 1) => Some(|p| Ok(json!({"body": p["text"]}))),
                ("Renamed", 2) => Some(|mut p| {
                    p["private"] = json!(false);
                    Ok(p)
                }),
                _ => None,
            }
        }
        let upcast_payload = upcast("Renamed", 1, 3, json!({"text": "hi"}), steps).unwrap();
        assert_eq!(upcast_payload, json!({"body": "hi", "private": false}));
        assert_eq!(upcast("Renamed", 3, 3, json!({"a": 1}), steps), Ok(json!({"a": 1})));
    }

    #[test]
    fn a_version_1_message_comes_up_as_version_2_in_plain_text_without_attachments() {
        let v1 = json!({"message_id": Uuid::from_u128(1), "customer_id": Uuid::from_u128(2),
                        "body": "Where is my order?", "client_message_id": "c-1",
                        "sent_at": "2023-11-14T22:13:20Z"});
        assert_eq!(
            ConversationEvent::from_stored("CustomerMessagePosted", 1, v1),
            Ok(posted())
        );
        let note = json!({"message_id": Uuid::from_u128(1), "user_id": Uuid::from_u128(3), "body": "internal",
                          "sent_at": "2023-11-14T22:13:20Z"});
        let ConversationEvent::PrivateNoteAdded(note) =
            ConversationEvent::from_stored("PrivateNoteAdded", 1, note).unwrap()
        else {
            panic!("a note")
        };
        assert_eq!((note.format, note.attachments.len()), (MessageFormat::Text, 0));
    }

    #[test]
    fn a_version_2_message_must_say_its_format() {
        let mut payload = posted().to_payload().unwrap();
        payload.as_object_mut().unwrap().remove("format");
        let result = ConversationEvent::from_stored("CustomerMessagePosted", 2, payload);
        assert!(matches!(result, Err(DecodeError::Malformed(_))), "{result:?}");
    }

    #[test]
    fn a_version_1_message_that_is_no_object_is_refused_as_malformed() {
        let result = ConversationEvent::from_stored("AgentMessagePosted", 1, json!(["not", "an", "object"]));
        assert!(matches!(result, Err(DecodeError::Malformed(_))), "{result:?}");
    }

    #[test]
    fn decoding_a_recorded_event_returns_the_typed_event() {
        let event = posted();
        let stored = recorded("conversation", event.event_type(), 2, event.to_payload().unwrap());
        assert_eq!(ConversationEvent::decode(&stored), Ok(event));
    }

    #[test]
    fn a_decode_error_names_the_position_of_the_event() {
        let stored = recorded("conversation", "ConversationTeleported", 1, json!({}));
        let error = ConversationEvent::decode(&stored).unwrap_err();
        assert_eq!(error.position, 4242);
        assert_eq!(error.stream, "conversation:c1");
        assert_eq!(error.event_type, "ConversationTeleported");
        assert_eq!(error.source, DecodeError::UnknownType);
        let message = error.to_string();
        assert!(message.contains("position 4242"), "{message}");
        assert!(message.contains("conversation:c1"), "{message}");
    }

    #[test]
    fn decoding_an_event_of_another_stream_type_is_refused() {
        let event = posted();
        let stored = recorded("customer", event.event_type(), 1, event.to_payload().unwrap());
        let error = ConversationEvent::decode(&stored).unwrap_err();
        assert_eq!(error.position, 4242);
        assert_eq!(
            error.source,
            DecodeError::WrongStream {
                expected: "conversation"
            }
        );
    }

    #[test]
    fn a_shared_decoding_is_done_once_and_equals_the_plain_one() {
        let event = posted();
        let stored = recorded("conversation", event.event_type(), 2, event.to_payload().unwrap());
        let first = ConversationEvent::decode_shared(&stored).unwrap();
        let again = ConversationEvent::decode_shared(&stored).unwrap();
        assert_eq!(*first, event);
        assert!(
            std::sync::Arc::ptr_eq(&first, &again),
            "the second reader gets the first one's"
        );
        let copy = stored.clone();
        assert!(std::sync::Arc::ptr_eq(
            &first,
            &ConversationEvent::decode_shared(&copy).unwrap()
        ));
        assert_eq!(
            copy,
            recorded("conversation", event.event_type(), 2, event.to_payload().unwrap())
        );
    }

    #[test]
    fn a_forgotten_decoding_is_done_again_from_the_changed_payload() {
        let mut stored = recorded(
            "conversation",
            "CustomerMessagePosted",
            2,
            posted().to_payload().unwrap(),
        );
        let first = ConversationEvent::decode_shared(&stored).unwrap();
        stored.payload["body"] = json!("changed");
        stored.decoded.forget();
        let ConversationEvent::CustomerMessagePosted(changed) = &*ConversationEvent::decode_shared(&stored).unwrap()
        else {
            panic!("a message")
        };
        assert_eq!(changed.body, "changed");
        assert_ne!(*first, ConversationEvent::CustomerMessagePosted(changed.clone()));
    }

    #[test]
    fn a_shared_decoding_reports_each_error_and_refuses_another_stream_type() {
        let stored = recorded("conversation", "ConversationTeleported", 1, json!({}));
        for _ in 0..2 {
            let error = ConversationEvent::decode_shared(&stored).unwrap_err();
            assert_eq!((error.position, error.source), (4242, DecodeError::UnknownType));
        }
        let event = posted();
        let stored = recorded("customer", event.event_type(), 2, event.to_payload().unwrap());
        let error = ConversationEvent::decode_shared(&stored).unwrap_err();
        assert_eq!(
            error.source,
            DecodeError::WrongStream {
                expected: "conversation"
            }
        );
    }
}
