//! Which fields of which events hold a customer's personal data (GDPR art. 4(1)), for
//! crypto-shredding (ADR 0023): the store seals each of them with the customer's data key before an
//! event is appended and opens them on every read; once the key is destroyed they open to their
//! [`PersonalField::erased`] value. No I/O here: only the catalogue and a walker over payloads.
//!
//! Not personal by this catalogue: ids (UUIDs, Twilio and Slack ids), timestamps, states, and
//! email Message-IDs (`email_message_id`, `in_reply_to`: dedupe and threading keys, which the
//! sending mail client makes up).

use serde_json::Value;

/// The text a sealed string opens to once its subject is erased.
pub const ERASED: &str = "[erased]";

/// One personal field of an event's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersonalField {
    /// Its place in the payload: object keys separated by `/` (RFC 6901 without escapes); `*`
    /// stands for every element of an array. A missing or `null` value is left alone.
    pub path: &'static str,
    /// What it reads as after erasure.
    pub erased: Erased,
}

/// The value an erased field takes, so that the event still decodes into its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erased {
    /// `"[erased]"`.
    Text,
    /// `{}` (identities, metadata).
    Object,
    /// `[]` (attachments).
    List,
}

impl Erased {
    pub fn value(self) -> Value {
        match self {
            Erased::Text => Value::from(ERASED),
            Erased::Object => Value::Object(serde_json::Map::new()),
            Erased::List => Value::Array(Vec::new()),
        }
    }
}

const fn text(path: &'static str) -> PersonalField {
    PersonalField {
        path,
        erased: Erased::Text,
    }
}

const fn object(path: &'static str) -> PersonalField {
    PersonalField {
        path,
        erased: Erased::Object,
    }
}

const MESSAGE: &[PersonalField] = &[
    BODY,
    // Free text the client chooses (the widget's own ids, but any API caller's too).
    text("client_message_id"),
    PersonalField {
        path: "attachments",
        erased: Erased::List,
    },
];

const IDENTITY: PersonalField = object("identity");
const BODY: PersonalField = text("body");
const ERROR: PersonalField = text("error");

/// The personal fields of events of `event_type` (empty for events that hold none). Event type
/// names are unique across families.
pub fn fields(event_type: &str) -> &'static [PersonalField] {
    const CREATED: &[PersonalField] = &[IDENTITY, object("metadata")];
    const EMAIL: &[PersonalField] = &[BODY, text("subject")];
    const SMS: &[PersonalField] = &[BODY, text("from_number")];
    const CHANGES: &[PersonalField] = &[object("changes")];
    const EXTERNAL_ID: &[PersonalField] = &[text("external_id")];
    const SUBJECT: &[PersonalField] = &[text("subject")];
    const TO: &[PersonalField] = &[text("to")];
    const TO_NUMBER: &[PersonalField] = &[text("to_number")];
    match event_type {
        // Customer stream: the identity (email, name, phone, external id) and metadata.
        "CustomerCreated" => CREATED,
        "CustomerIdentified" => &[IDENTITY],
        "CustomerMetadataUpdated" => CHANGES,
        // External id claims.
        "ExternalIdClaimed" => EXTERNAL_ID,
        // Conversation stream: what was said, and where it was sent.
        "ConversationCreated" => SUBJECT,
        "CustomerMessagePosted" | "AgentMessagePosted" | "PrivateNoteAdded" | "BotMessagePosted" => MESSAGE,
        "EmailMessageReceived" => EMAIL,
        "SlackMessageReceived" => &[BODY],
        "SmsMessageReceived" => SMS,
        "EmailNotificationSent" => TO,
        "SmsSent" => TO_NUMBER,
        // Failure texts quote the recipient's address or number.
        "EmailSendFailed" | "SmsSendFailed" | "SlackPostFailed" => &[ERROR],
        _ => &[],
    }
}

/// Calls `f` with every value at `path` in `payload` (see [`PersonalField::path`]), skipping
/// missing and `null` values.
pub fn visit(payload: &mut Value, path: &str, f: &mut impl FnMut(&mut Value)) {
    let (head, rest) = match path.split_once('/') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    let mut step = |child: &mut Value| match rest {
        Some(rest) => visit(child, rest, f),
        None if child.is_null() => {}
        None => f(child),
    };
    match (head, payload) {
        ("*", Value::Array(items)) => items.iter_mut().for_each(&mut step),
        (key, Value::Object(map)) => {
            if let Some(child) = map.get_mut(key) {
                step(child);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn collect(mut payload: Value, path: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        visit(&mut payload, path, &mut |v| seen.push(v.clone()));
        seen
    }

    #[test]
    fn paths_reach_keys_and_array_elements() {
        let payload = json!({"body": "hi", "subject": null, "a": [{"n": 1}, {"n": 2}, {}]});
        assert_eq!(collect(payload.clone(), "body"), vec![json!("hi")]);
        assert!(collect(payload.clone(), "subject").is_empty());
        assert!(collect(payload.clone(), "missing").is_empty());
        assert_eq!(collect(payload, "a/*/n"), vec![json!(1), json!(2)]);
    }

    #[test]
    fn every_message_event_seals_its_body() {
        for event in [
            "CustomerMessagePosted",
            "AgentMessagePosted",
            "PrivateNoteAdded",
            "BotMessagePosted",
            "EmailMessageReceived",
            "SlackMessageReceived",
            "SmsMessageReceived",
        ] {
            assert!(fields(event).iter().any(|f| f.path == "body"), "{event}");
        }
        assert!(fields("ConversationClosed").is_empty());
    }

    #[test]
    fn erased_values_keep_the_field_type() {
        assert_eq!(Erased::Text.value(), json!("[erased]"));
        assert_eq!(Erased::Object.value(), json!({}));
        assert_eq!(Erased::List.value(), json!([]));
    }
}
