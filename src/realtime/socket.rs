//! One WebSocket connection speaking Phoenix Channels V2: the upgrade (token, version, origin), the
//! frame loop (heartbeats, joins, leaves, pushes, WS pings, idle timeout, size limit) and the
//! channels: `conversation:<id>`, `notification:<account>`, `room:<account>`, `events:<account>`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Session};
use base64::Engine;
use bytestring::ByteString;
use netia_commands::{Account, Conversation, ConversationCommand};
use netia_events::conversation::Author;
use netia_events::user::Role;
use netia_events::{AccountId, Actor, ConversationId, CustomerId, Metadata, UserId};
use serde_json::{Map, Value, json};

use super::hub::{ConnId, Hub, Outbox};
use super::protocol::{Frame, encode, refuse, reply};
use crate::auth::TokenKind;
use crate::http::conversations::{NewMessage, owned_by, save_message};
use crate::http::{Agent, AppState};

/// Largest frame accepted from a client; a larger one closes the connection (1009).
pub const MAX_FRAME: usize = 64 * 1024;
/// A connection that sends nothing (not even a heartbeat) for this long is closed.
pub const IDLE: Duration = Duration::from_secs(60);
/// Channels one connection may join.
pub const MAX_CHANNELS: usize = 100;
/// How long a sender waits for the broadcast of its own message before its reply.
const BROADCAST_WAIT: Duration = Duration::from_secs(3);

/// Who is connected.
#[derive(Debug, Clone)]
pub enum Caller {
    Agent {
        user_id: UserId,
        account_id: AccountId,
        role: Role,
    },
    Customer {
        customer_id: CustomerId,
        account_id: AccountId,
    },
}

impl Caller {
    fn account_id(&self) -> AccountId {
        match self {
            Caller::Agent { account_id, .. } | Caller::Customer { account_id, .. } => *account_id,
        }
    }

    fn is_agent(&self) -> bool {
        matches!(self, Caller::Agent { .. })
    }

    fn meta(&self) -> Metadata {
        let actor = match self {
            Caller::Agent { user_id, .. } => Actor::Agent { user_id: *user_id },
            Caller::Customer { customer_id, .. } => Actor::Customer {
                customer_id: *customer_id,
            },
        };
        Metadata::new(actor).with_account(self.account_id())
    }

    /// The presence key and meta of this caller.
    fn presence(&self) -> (String, Map<String, Value>) {
        let online_at = chrono::Utc::now().timestamp().to_string();
        match self {
            Caller::Agent { user_id, .. } => (
                format!("user:{user_id}"),
                json!({"online_at": online_at, "user_id": user_id})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
            Caller::Customer { customer_id, .. } => (
                format!("customer:{customer_id}"),
                json!({"online_at": online_at, "customer_id": customer_id})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        }
    }
}

/// The token from `?token=` or from the `authToken` subprotocol (`base64url.bearer.phx.<btoa>`).
fn token(req: &HttpRequest, params: &HashMap<String, String>) -> Option<String> {
    if let Some(token) = params.get("token").filter(|t| !t.is_empty()) {
        return Some(token.clone());
    }
    let protocols = req.headers().get("Sec-WebSocket-Protocol")?.to_str().ok()?;
    protocols.split(',').map(str::trim).find_map(|p| {
        let encoded = p.strip_prefix("base64url.bearer.phx.")?;
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(encoded.trim_end_matches('='))
            .ok()?;
        String::from_utf8(bytes).ok()
    })
}

fn forbidden(reason: &str) -> HttpResponse {
    HttpResponse::Forbidden().json(json!({"error": "forbidden", "message": reason}))
}

async fn authenticate(state: &web::Data<AppState>, token: Option<String>) -> Option<Caller> {
    let token = token?;
    if token.starts_with("ntc_") {
        let holder = state.auth.holder(&token, &[TokenKind::Customer]).await.ok()??;
        return Some(Caller::Customer {
            customer_id: holder.customer_id?,
            account_id: holder.account_id,
        });
    }
    let agent = Agent::from_token(state.clone(), Some(token), false).await.ok()?;
    Some(Caller::Agent {
        user_id: agent.user_id,
        account_id: agent.account_id,
        role: agent.role,
    })
}

/// `GET /socket/websocket?vsn=2.0.0&token=…`: refused with 403 before the upgrade when the version,
/// the token or the origin is wrong.
pub async fn websocket(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    hub: web::Data<Hub>,
) -> Result<HttpResponse, actix_web::Error> {
    let params: HashMap<String, String> = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    if !params.get("vsn").is_some_and(|v| v.starts_with("2.")) {
        return Ok(forbidden("only the Phoenix V2 serializer is supported (vsn=2.0.0)"));
    }
    let Some(caller) = authenticate(&state, token(&req, &params)).await else {
        return Ok(forbidden("a valid agent session or customer token is required"));
    };
    let account = match state.bus.load::<Account>(caller.account_id()).await {
        Ok((account, _)) => account,
        Err(e) => return Err(actix_web::error::ErrorInternalServerError(e.to_string())),
    };
    if let Err(e) = crate::http::widget::check_origin(&req, &account) {
        return Ok(forbidden(&e.to_string()));
    }
    let (response, session, stream) = actix_ws::handle_with_protocols(&req, body, &["phoenix"])?;
    let stream = stream
        .max_frame_size(MAX_FRAME)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME);
    let (outbox, outgoing, kill) = Outbox::new();
    let connection = Connection {
        id: hub.connection_id(),
        caller,
        state: state.into_inner(),
        hub: hub.into_inner(),
        outbox,
        joined: HashMap::new(),
    };
    actix_web::rt::spawn(connection.run(session, stream, outgoing, kill));
    Ok(response)
}

struct Connection {
    id: ConnId,
    caller: Caller,
    state: Arc<AppState>,
    hub: Arc<Hub>,
    outbox: Outbox,
    /// topic → join ref.
    joined: HashMap<String, String>,
}

fn close_reason(code: CloseCode, description: &str) -> Option<CloseReason> {
    Some(CloseReason {
        code,
        description: Some(description.to_owned()),
    })
}

impl Connection {
    fn send(&self, frame: String) {
        self.outbox.send(ByteString::from(frame));
    }

    fn person(&self) -> super::hub::Person {
        match &self.caller {
            Caller::Agent { user_id, .. } => super::hub::Person::Agent(*user_id),
            Caller::Customer { customer_id, .. } => super::hub::Person::Customer(*customer_id),
        }
    }

    async fn run(
        mut self,
        mut session: Session,
        mut stream: actix_ws::AggregatedMessageStream,
        mut outgoing: tokio::sync::mpsc::Receiver<ByteString>,
        kill: Arc<tokio::sync::Notify>,
    ) {
        self.hub.connection(self.person(), true);
        let mut writer_session = session.clone();
        let writer = actix_web::rt::spawn(async move {
            while let Some(frame) = outgoing.recv().await {
                if writer_session.text(frame).await.is_err() {
                    break;
                }
            }
        });
        let reason = loop {
            let next = tokio::select! {
                _ = kill.notified() => break close_reason(CloseCode::Policy, "too slow: outbound queue full"),
                next = tokio::time::timeout(IDLE, stream.recv()) => next,
            };
            match next {
                Err(_) => break close_reason(CloseCode::Normal, "idle"),
                Ok(None) => break None,
                Ok(Some(Err(e))) => {
                    let code = match e {
                        actix_ws::ProtocolError::Overflow => CloseCode::Size,
                        _ => CloseCode::Protocol,
                    };
                    break close_reason(code, &e.to_string());
                }
                Ok(Some(Ok(AggregatedMessage::Text(text)))) => match Frame::parse(&text) {
                    // Boxed: the deep futures of a command live only while a frame is handled, not
                    // in every idle connection's task.
                    Ok(frame) => Box::pin(self.handle(frame)).await,
                    Err(e) => break close_reason(CloseCode::Invalid, &e.to_string()),
                },
                Ok(Some(Ok(AggregatedMessage::Binary(_)))) => {
                    break close_reason(CloseCode::Unsupported, "binary frames are not supported");
                }
                Ok(Some(Ok(AggregatedMessage::Ping(bytes)))) => {
                    if session.pong(&bytes).await.is_err() {
                        break None;
                    }
                }
                Ok(Some(Ok(AggregatedMessage::Pong(_)))) => {}
                Ok(Some(Ok(AggregatedMessage::Close(_)))) => break None,
            }
        };
        let topics: Vec<String> = self.joined.keys().cloned().collect();
        self.hub.disconnect(self.id, &topics);
        self.hub.connection(self.person(), false);
        drop(self.outbox);
        let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
        let _ = session.close(reason).await;
    }

    async fn handle(&mut self, frame: Frame) {
        if frame.topic == "phoenix" && frame.event == "heartbeat" {
            self.send(reply(&frame, true, json!({})));
            return;
        }
        match frame.event.as_str() {
            "phx_join" => self.join(frame).await,
            "phx_leave" => self.leave(frame),
            _ => {
                let Some(current) = self.joined.get(&frame.topic) else {
                    let unmatched = Frame {
                        join_ref: None,
                        ..frame
                    };
                    self.send(refuse(&unmatched, "unmatched topic"));
                    return;
                };
                if frame.join_ref.as_ref().is_some_and(|j| j != current) {
                    return; // a push of an earlier join of this topic: ignored, as Phoenix does
                }
                self.handle_in(frame).await;
            }
        }
    }

    async fn join(&mut self, frame: Frame) {
        let Some(join_ref) = frame.join_ref.clone().or_else(|| frame.reference.clone()) else {
            self.send(refuse(&frame, "join needs a ref"));
            return;
        };
        if let Some(old) = self.joined.remove(&frame.topic) {
            self.hub.leave(&frame.topic, self.id);
            self.send(encode(Some(&old), Some(&old), &frame.topic, "phx_close", &json!({})));
        }
        if self.joined.len() >= MAX_CHANNELS {
            self.send(refuse(&frame, "too many channels joined"));
            return;
        }
        if let Err(reason) = self.authorize(&frame.topic).await {
            self.send(refuse(&frame, reason));
            return;
        }
        self.hub.join(
            &frame.topic,
            self.id,
            &join_ref,
            self.caller.is_agent(),
            self.outbox.clone(),
        );
        self.joined.insert(frame.topic.clone(), join_ref);
        self.send(reply(&frame, true, json!({})));
        let kind = frame.topic.split(':').next().unwrap_or_default();
        let (key, meta) = self.caller.presence();
        match (kind, &self.caller) {
            ("conversation", _) | ("notification" | "room", Caller::Agent { .. }) => {
                self.hub.track(&frame.topic, self.id, &key, meta);
            }
            ("room", Caller::Customer { .. }) => self.hub.push_state(&frame.topic, self.id),
            _ => {}
        }
    }

    fn leave(&mut self, frame: Frame) {
        match self.joined.remove(&frame.topic) {
            Some(join_ref) => {
                self.hub.leave(&frame.topic, self.id);
                self.send(reply(&frame, true, json!({})));
                self.send(encode(
                    Some(&join_ref),
                    Some(&join_ref),
                    &frame.topic,
                    "phx_close",
                    &json!({}),
                ));
            }
            None => self.send(reply(&frame, true, json!({}))),
        }
    }

    /// Whether the caller may join `topic`; the reason otherwise.
    async fn authorize(&self, topic: &str) -> Result<(), &'static str> {
        let (kind, rest) = topic.split_once(':').ok_or("unmatched topic")?;
        let account = self.caller.account_id().to_string();
        match kind {
            "conversation" => {
                let id: ConversationId = rest.parse().map_err(|_| "unmatched topic")?;
                let (conversation, _) = self
                    .state
                    .bus
                    .load::<Conversation>(id)
                    .await
                    .map_err(|_| "unavailable")?;
                let mine = match &self.caller {
                    Caller::Agent { account_id, .. } => conversation.account_id == Some(*account_id),
                    Caller::Customer {
                        customer_id,
                        account_id,
                    } => conversation.account_id == Some(*account_id) && conversation.customer_id == Some(*customer_id),
                };
                if mine { Ok(()) } else { Err("unauthorized") }
            }
            "notification" | "events" if self.caller.is_agent() && rest == account => Ok(()),
            "room" if rest == account => Ok(()),
            "notification" | "events" | "room" => Err("unauthorized"),
            _ => Err("unmatched topic"),
        }
    }

    async fn handle_in(&mut self, frame: Frame) {
        let kind = frame.topic.split(':').next().unwrap_or_default().to_owned();
        match (kind.as_str(), frame.event.as_str()) {
            (_, "ping") => self.send(reply(&frame, true, Value::Object(frame.payload.clone()))),
            ("conversation", "shout") => {
                let id = frame.topic["conversation:".len()..].parse();
                match id {
                    Ok(id) => self.shout(&frame, id).await,
                    Err(_) => self.send(refuse(&frame, "unmatched topic")),
                }
            }
            ("conversation", "typing") => {
                let typing = frame.payload.get("typing").and_then(Value::as_bool).unwrap_or(true);
                let mut payload = json!({ "typing": typing, "conversation_id": &frame.topic["conversation:".len()..] });
                match &self.caller {
                    Caller::Agent { user_id, .. } => payload["user_id"] = json!(user_id),
                    Caller::Customer { customer_id, .. } => payload["customer_id"] = json!(customer_id),
                }
                self.hub.broadcast_ephemeral(&frame.topic, "typing", &payload, self.id);
            }
            ("conversation", "messages:seen") => {
                let id: Option<ConversationId> = frame.topic["conversation:".len()..].parse().ok();
                match (&self.caller, id) {
                    (Caller::Agent { user_id, .. }, Some(id)) => self.mark_read(&frame, id, *user_id).await,
                    _ => self.send(reply(&frame, true, json!({}))),
                }
            }
            ("notification", "shout") => {
                let id = frame
                    .payload
                    .get("conversation_id")
                    .and_then(Value::as_str)
                    .map(str::parse);
                match id {
                    Some(Ok(id)) => self.shout(&frame, id).await,
                    _ => self.send(refuse(&frame, "conversation_id must be a conversation id")),
                }
            }
            ("notification", "read") => {
                let id = frame
                    .payload
                    .get("conversation_id")
                    .and_then(Value::as_str)
                    .map(str::parse);
                match (&self.caller, id) {
                    (Caller::Agent { user_id, .. }, Some(Ok(id))) => self.mark_read(&frame, id, *user_id).await,
                    _ => self.send(refuse(&frame, "conversation_id must be a conversation id")),
                }
            }
            _ => self.send(refuse(&frame, "unknown event")),
        }
    }

    /// Saves a message, lets its broadcast go out, then replies with the saved message.
    async fn shout(&self, frame: &Frame, id: ConversationId) {
        let body = match frame.payload.get("body") {
            Some(Value::String(body)) => body.clone(),
            _ => return self.send(refuse(frame, "body must be a string")),
        };
        let client_message_id = match frame.payload.get("client_message_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(key)) => Some(key.clone()),
            Some(_) => return self.send(refuse(frame, "client_message_id must be a string")),
        };
        let private = frame.payload.get("private").and_then(Value::as_bool).unwrap_or(false);
        let author = match &self.caller {
            Caller::Agent { role, .. } if *role < Role::Member => {
                return self.send(refuse(frame, "viewers cannot send messages"));
            }
            Caller::Agent {
                user_id, account_id, ..
            } => {
                if let Err(e) = owned_by(&self.state, *account_id, id).await {
                    return self.send(refuse(frame, &e.to_string()));
                }
                Author::Agent { user_id: *user_id }
            }
            Caller::Customer { customer_id, .. } => {
                if frame.topic != format!("conversation:{id}") {
                    return self.send(refuse(frame, "unauthorized"));
                }
                Author::Customer {
                    customer_id: *customer_id,
                }
            }
        };
        let message = NewMessage {
            body,
            private,
            client_message_id,
        };
        let started = std::time::Instant::now();
        match save_message(&self.state, id, author, message, &self.caller.meta(), false).await {
            Ok(posted) => {
                let saved_in = started.elapsed();
                if let Some(last) = posted.events.last() {
                    self.hub.broadcast_reached(last.checkpoint(), BROADCAST_WAIT).await;
                }
                tracing::debug!(
                    saved_us = saved_in.as_micros() as u64,
                    broadcast_us = started.elapsed().as_micros() as u64,
                    "shout"
                );
                let saved = serde_json::to_value(&posted.message).unwrap_or_default();
                self.send(reply(frame, true, saved));
            }
            Err(e) => self.send(refuse(frame, &e.to_string())),
        }
    }

    async fn mark_read(&self, frame: &Frame, id: ConversationId, user_id: UserId) {
        if let Err(e) = owned_by(&self.state, self.caller.account_id(), id).await {
            return self.send(refuse(frame, &e.to_string()));
        }
        let result = self
            .state
            .bus
            .execute::<Conversation>(id, ConversationCommand::MarkRead { user_id }, &self.caller.meta())
            .await;
        match result {
            Ok(_) => self.send(reply(frame, true, json!({}))),
            Err(e) => self.send(refuse(frame, &e.to_string())),
        }
    }
}
