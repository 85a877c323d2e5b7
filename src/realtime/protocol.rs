//! Phoenix Channels V2 frames: `[join_ref, ref, topic, event, payload]` as a JSON array
//! (`../shared/PHOENIX.md` §2.2). Refs are strings echoed back verbatim; the payload is an object.

use serde::Serialize;
use serde_json::{Map, Value, json};

/// One frame from a client.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub join_ref: Option<String>,
    pub reference: Option<String>,
    pub topic: String,
    pub event: String,
    pub payload: Map<String, Value>,
}

/// Why a text frame is not a Phoenix V2 frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("a frame is a JSON array [join_ref, ref, topic, event, payload]")]
    Shape,
    #[error("{0} must be a string or null")]
    Ref(&'static str),
    #[error("topic and event must be non-empty strings of at most 200 characters")]
    Name,
    #[error("payload must be a JSON object")]
    Payload,
}

fn reference(value: &Value, what: &'static str) -> Result<Option<String>, FrameError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.len() <= 64 => Ok(Some(s.clone())),
        _ => Err(FrameError::Ref(what)),
    }
}

fn name(value: &Value) -> Result<String, FrameError> {
    match value {
        Value::String(s) if !s.is_empty() && s.chars().count() <= 200 => Ok(s.clone()),
        _ => Err(FrameError::Name),
    }
}

impl Frame {
    pub fn parse(text: &str) -> Result<Frame, FrameError> {
        let value: Value = serde_json::from_str(text).map_err(|e| FrameError::NotJson(e.to_string()))?;
        let Value::Array(mut items) = value else {
            return Err(FrameError::Shape);
        };
        if items.len() < 5 {
            return Err(FrameError::Shape);
        }
        let payload = match items.swap_remove(4) {
            Value::Object(map) => map,
            _ => return Err(FrameError::Payload),
        };
        Ok(Frame {
            join_ref: reference(&items[0], "join_ref")?,
            reference: reference(&items[1], "ref")?,
            topic: name(&items[2])?,
            event: name(&items[3])?,
            payload,
        })
    }
}

/// Serializes a frame from the server, straight from the payload's own type (no `Value` tree
/// built and copied first: this runs for every reply and broadcast).
pub fn encode<P: Serialize + ?Sized>(
    join_ref: Option<&str>,
    reference: Option<&str>,
    topic: &str,
    event: &str,
    payload: &P,
) -> String {
    // Cannot fail: strings, and payloads whose maps have string keys.
    serde_json::to_string(&(join_ref, reference, topic, event, payload)).unwrap_or_default()
}

/// The body of a `phx_reply` (fields in the order Phoenix sends them).
#[derive(Serialize)]
struct Reply<'a, P: Serialize + ?Sized> {
    response: &'a P,
    status: &'static str,
}

/// The `phx_reply` to `frame`: `{"status": "ok"|"error", "response": …}`.
pub fn reply<P: Serialize + ?Sized>(frame: &Frame, ok: bool, response: &P) -> String {
    let status = if ok { "ok" } else { "error" };
    encode(
        frame.join_ref.as_deref(),
        frame.reference.as_deref(),
        &frame.topic,
        "phx_reply",
        &Reply { response, status },
    )
}

/// An error reply with a reason, as Phoenix sends them.
pub fn refuse(frame: &Frame, reason: &str) -> String {
    reply(frame, false, &json!({ "reason": reason }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_phoenix_client_sends() {
        let frame = Frame::parse(r#"["3","3","conversation:42","phx_join",{"customer_id":"c"}]"#).unwrap();
        assert_eq!(frame.join_ref.as_deref(), Some("3"));
        assert_eq!(frame.reference.as_deref(), Some("3"));
        assert_eq!(
            (frame.topic.as_str(), frame.event.as_str()),
            ("conversation:42", "phx_join")
        );
        assert_eq!(frame.payload["customer_id"], "c");
        let heartbeat = Frame::parse(r#"[null,"5","phoenix","heartbeat",{}]"#).unwrap();
        assert_eq!(heartbeat.join_ref, None);
        // Extra elements are ignored, like Phoenix's decoder.
        assert!(Frame::parse(r#"[null,"5","phoenix","heartbeat",{},"extra"]"#).is_ok());
    }

    #[test]
    fn refuses_what_is_not_a_frame() {
        for (text, expected) in [
            ("hello", "not JSON"),
            ("{}", "a frame"),
            (r#"[null,"1","t","e"]"#, "a frame"),
            (r#"[1,"1","t","e",{}]"#, "join_ref"),
            (r#"[null,{},"t","e",{}]"#, "ref"),
            (r#"[null,"1","","e",{}]"#, "topic"),
            (r#"[null,"1","t",7,{}]"#, "topic"),
            (r#"[null,"1","t","e",[]]"#, "payload"),
            (r#"[null,"1","t","e","x"]"#, "payload"),
        ] {
            let error = Frame::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn replies_echo_the_refs() {
        let frame = Frame::parse(r#"["3","4","conversation:42","shout",{}]"#).unwrap();
        assert_eq!(
            reply(&frame, true, &json!({})),
            r#"["3","4","conversation:42","phx_reply",{"response":{},"status":"ok"}]"#
        );
        assert_eq!(
            refuse(&frame, "unmatched topic"),
            r#"["3","4","conversation:42","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// JSON values of any shape, frames among them.
        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| json!(n)),
                any::<f64>().prop_map(|n| json!(n)),
                ".{0,80}".prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 64, 8, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                    prop::collection::btree_map(".{0,12}", inner, 0..8)
                        .prop_map(|m| Value::Object(m.into_iter().collect::<serde_json::Map<String, Value>>())),
                ]
            })
        }

        proptest! {
            #[test]
            fn arbitrary_text_is_a_frame_or_a_clear_error(text in ".{0,512}") {
                if let Err(e) = Frame::parse(&text) {
                    prop_assert!(!e.to_string().is_empty());
                }
            }

            #[test]
            fn arbitrary_json_is_a_frame_or_a_clear_error(value in json()) {
                match Frame::parse(&value.to_string()) {
                    Ok(frame) => {
                        prop_assert!(!frame.topic.is_empty());
                        // What it answers is a frame again.
                        prop_assert!(Frame::parse(&refuse(&frame, "no")).is_ok());
                    }
                    Err(e) => prop_assert!(!e.to_string().is_empty()),
                }
            }

            #[test]
            fn frame_shaped_arrays_with_any_elements_never_panic(
                join_ref in json(), reference in json(), topic in json(), event in json(), payload in json()
            ) {
                let text = Value::Array(vec![join_ref, reference, topic, event, payload]).to_string();
                let _ = Frame::parse(&text);
            }
        }
    }
}
