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
        Self::from_stored(&event.event_type, event.event_version, event.payload.clone()).map_err(|source| {
            EventError {
                position: event.global_position,
                stream: format!("{}:{}", event.stream_type, event.stream_id),
                event_type: event.event_type.clone(),
                source,
            }
        })
    }
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
