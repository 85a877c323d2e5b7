//! One WebSocket connection speaking Phoenix Channels V2: the upgrade (token, version, origin), the
//! frame loop (heartbeats, joins, leaves, pushes, WS pings, idle timeout, size limit) and the
//! channels: `conversation:<id>`, `notification:<account>`, `room:<account>`, `events:<account>`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use netia_commands::{Account, Conversation, ConversationCommand};
use netia_events::conversation::Author;
use netia_events::user::Role;
use netia_events::{AccountId, Actor, ConversationId, CustomerId, Metadata, UserId};
use serde_json::{Map, Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::hub::{ConnId, Hub, Outbox};
use super::protocol::{Frame, encode, refuse, reply};
use crate::auth::TokenKind;
use crate::http::conversations::{NewMessage, owned_by, save_message};
use crate::http::{Agent, AppState};

/// Largest frame accepted from a client, in bytes; a larger one closes the connection (1009). The
/// same as an HTTP body: a `shout` carries the same message (see
/// [`netia_commands::validate::MAX_REQUEST_BYTES`]).
pub const MAX_FRAME: usize = netia_commands::validate::MAX_REQUEST_BYTES;
/// A connection that sends nothing (not even a heartbeat) for this long is closed.
pub const IDLE: Duration = Duration::from_secs(60);
/// Bytes read from the network at a time; frames larger than that are read in several goes.
const READ_BUFFER: usize = 1024;
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

/// Where the socket lives; a connection whose first request is a WebSocket upgrade of this path is
/// served by [`serve`], outside the HTTP server (see [`sniff`]).
pub const PATH: &str = "/socket/websocket";
/// Largest request head read for an upgrade.
const MAX_HEAD: usize = 8 * 1024;
/// A client has this long to send its upgrade request.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The request head of a WebSocket upgrade, read (not consumed) from a new connection.
#[derive(Debug)]
pub struct Head {
    /// Bytes the head takes on the wire.
    len: usize,
    query: String,
    headers: HashMap<String, String>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Peeks at the first request of a new connection: `Some` when it is `GET /socket/websocket` with
/// `Upgrade: websocket`, which [`serve`] then handles; `None` leaves the connection, unread, to the
/// HTTP server. Upgraded connections bypass the HTTP server so that an idle socket holds no HTTP
/// buffers (actix's dispatcher keeps 16 KiB per connection for its life).
pub async fn sniff(stream: &tokio::net::TcpStream) -> Option<Head> {
    let prefix = format!("GET {PATH}");
    let prefix = prefix.as_bytes();
    // Most upgrade heads fit in 1 KiB; the buffer grows for longer ones.
    let mut buf = vec![0u8; 1024];
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        let seen = &buf[..n];
        let common = n.min(prefix.len());
        if n == 0 || seen[..common] != prefix[..common] {
            return None;
        }
        if n > prefix.len() && !matches!(seen[prefix.len()], b'?' | b' ') {
            return None;
        }
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            return parse_head(&seen[..end + 4]);
        }
        if n == buf.len() {
            if n >= MAX_HEAD {
                return None; // the HTTP server refuses it
            }
            buf.resize((n * 2).min(MAX_HEAD), 0);
            continue;
        }
        // Part of the head has arrived: peeking again at once would spin.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn parse_head(bytes: &[u8]) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    if !request.parse(bytes).ok()?.is_complete() {
        return None;
    }
    let headers: HashMap<String, String> = request
        .headers
        .iter()
        .filter_map(|h| {
            Some((
                h.name.to_ascii_lowercase(),
                std::str::from_utf8(h.value).ok()?.to_owned(),
            ))
        })
        .collect();
    let upgrade = headers
        .get("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        return None; // a plain GET: the HTTP server answers it
    }
    let query = request
        .path?
        .split_once('?')
        .map(|(_, q)| q.to_owned())
        .unwrap_or_default();
    Some(Head {
        len: bytes.len(),
        query,
        headers,
    })
}

/// The token from `?token=` or from the `authToken` subprotocol (`base64url.bearer.phx.<btoa>`).
fn token(head: &Head, params: &HashMap<String, String>) -> Option<String> {
    if let Some(token) = params.get("token").filter(|t| !t.is_empty()) {
        return Some(token.clone());
    }
    head.header("sec-websocket-protocol")?
        .split(',')
        .map(str::trim)
        .find_map(|p| {
            let encoded = p.strip_prefix("base64url.bearer.phx.")?;
            let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(encoded.trim_end_matches('='))
                .ok()?;
            String::from_utf8(bytes).ok()
        })
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

/// Who may open this socket, or the status and reason of the refusal: the version must be 2.x,
/// the token valid, the origin allowed by the account.
async fn admit(head: &Head, state: &web::Data<AppState>) -> Result<Caller, (u16, String)> {
    let forbidden = |reason: &str| (403, reason.to_owned());
    let params: HashMap<String, String> = web::Query::<HashMap<String, String>>::from_query(&head.query)
        .map(web::Query::into_inner)
        .unwrap_or_default();
    if !params.get("vsn").is_some_and(|v| v.starts_with("2.")) {
        return Err(forbidden("only the Phoenix V2 serializer is supported (vsn=2.0.0)"));
    }
    let Some(caller) = authenticate(state, token(head, &params)).await else {
        return Err(forbidden("a valid agent session or customer token is required"));
    };
    let account = match state.bus.load::<Account>(caller.account_id()).await {
        Ok((account, _)) => account,
        Err(e) => {
            tracing::error!(error = %e, "socket refused: the account could not be read");
            return Err((503, "temporarily unavailable".to_owned()));
        }
    };
    crate::http::widget::origin_allowed(head.header("origin"), head.header("host"), &account)
        .map_err(|e| forbidden(&e.to_string()))?;
    Ok(caller)
}

/// Serves a connection [`sniff`] found to be a socket upgrade: refused with a status before the
/// upgrade when [`admit`] says no, else upgraded (selecting the `phoenix` subprotocol when offered)
/// and run until it closes.
// The handshake callback's error type is tungstenite's (a whole HTTP response).
#[allow(clippy::result_large_err)]
pub async fn serve(mut stream: tokio::net::TcpStream, head: Head, state: web::Data<AppState>, hub: Arc<Hub>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.set_nodelay(true);
    // Boxed, like the handshake: their futures are freed before the connection settles in.
    let caller = match Box::pin(admit(&head, &state)).await {
        Ok(caller) => caller,
        Err((status, reason)) => {
            // The head is read first, so that closing does not reset the connection before the
            // client has read the refusal.
            let mut consumed = vec![0u8; head.len];
            let _ = stream.read_exact(&mut consumed).await;
            let error = if status == 403 { "forbidden" } else { "unavailable" };
            let body = json!({"error": error, "message": reason}).to_string();
            let title = if status == 403 {
                "Forbidden"
            } else {
                "Service Unavailable"
            };
            let response = format!(
                "HTTP/1.1 {status} {title}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
            return;
        }
    };
    let phoenix = head
        .header("sec-websocket-protocol")
        .is_some_and(|p| p.split(',').any(|p| p.trim() == "phoenix"));
    let choose = move |_: &Request, mut response: Response| {
        if phoenix {
            response
                .headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_static("phoenix"));
        }
        Ok(response)
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    let socket = match Box::pin(tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        choose,
        Some(config),
    ))
    .await
    {
        Ok(socket) => socket,
        Err(e) => {
            tracing::debug!(error = %e, "socket handshake failed");
            return;
        }
    };
    let (outbox, outgoing, kill) = Outbox::new();
    let connection = Connection {
        id: hub.connection_id(),
        caller,
        state: state.into_inner(),
        hub,
        outbox,
        joined: HashMap::new(),
        typing: std::collections::HashSet::new(),
    };
    connection.run(socket, outgoing, kill).await;
}

/// What the HTTP server answers on the socket path: the upgrade is served only as a connection's
/// first request (see [`sniff`]).
pub async fn not_upgraded() -> HttpResponse {
    HttpResponse::BadRequest().json(json!({
        "error": "bad_request",
        "message": "open the socket with a WebSocket upgrade (GET /socket/websocket?vsn=2.0.0) as the first request of a new connection",
    }))
}

struct Connection {
    id: ConnId,
    caller: Caller,
    state: Arc<AppState>,
    hub: Arc<Hub>,
    outbox: Outbox,
    /// topic → join ref.
    joined: HashMap<String, String>,
    /// Topics where this connection said it is typing and has not said it stopped: the server
    /// ends that typing itself when the connection leaves the topic or goes away.
    typing: std::collections::HashSet<String>,
}

fn close(code: CloseCode, reason: &str) -> Option<CloseFrame> {
    Some(CloseFrame {
        code,
        reason: reason.to_owned().into(),
    })
}

impl Connection {
    fn send(&self, frame: String) {
        self.outbox.send(Utf8Bytes::from(frame));
    }

    fn person(&self) -> super::hub::Person {
        match &self.caller {
            Caller::Agent { user_id, .. } => super::hub::Person::Agent(*user_id),
            Caller::Customer { customer_id, .. } => super::hub::Person::Customer(*customer_id),
        }
    }

    async fn run(
        mut self,
        socket: WebSocketStream<tokio::net::TcpStream>,
        mut outgoing: tokio::sync::mpsc::Receiver<Utf8Bytes>,
        kill: Arc<tokio::sync::Notify>,
    ) {
        self.hub.connection(self.person(), true);
        let (mut sink, mut stream) = socket.split();
        // Pongs are queued by the socket itself; the writer flushes them out.
        let flush = Arc::new(tokio::sync::Notify::new());
        let flush_now = flush.clone();
        let writer = actix_web::rt::spawn(async move {
            loop {
                tokio::select! {
                    frame = outgoing.recv() => {
                        let Some(frame) = frame else { break };
                        let mut sent = sink.feed(Message::Text(frame)).await;
                        while sent.is_ok() && let Ok(frame) = outgoing.try_recv() {
                            sent = sink.feed(Message::Text(frame)).await;
                        }
                        if sent.is_err() || sink.flush().await.is_err() {
                            break;
                        }
                    }
                    _ = flush_now.notified() => {
                        if sink.flush().await.is_err() {
                            break;
                        }
                    }
                }
            }
            sink
        });
        let reason = loop {
            let next = tokio::select! {
                _ = kill.notified() => break close(CloseCode::Policy, "too slow: outbound queue full"),
                next = tokio::time::timeout(IDLE, stream.next()) => next,
            };
            match next {
                Err(_) => break close(CloseCode::Normal, "idle"),
                Ok(None) => break None,
                Ok(Some(Err(e))) => {
                    use tokio_tungstenite::tungstenite::Error;
                    let code = match &e {
                        Error::Capacity(_) => CloseCode::Size,
                        Error::Utf8 => CloseCode::Invalid,
                        Error::Protocol(_) => CloseCode::Protocol,
                        _ => break None,
                    };
                    break close(code, &e.to_string());
                }
                Ok(Some(Ok(Message::Text(text)))) => match Frame::parse(&text) {
                    // Boxed: the deep futures of a command live only while a frame is handled, not
                    // in every idle connection's task.
                    Ok(frame) => Box::pin(self.handle(frame)).await,
                    Err(e) => break close(CloseCode::Invalid, &e.to_string()),
                },
                Ok(Some(Ok(Message::Binary(_)))) => {
                    break close(CloseCode::Unsupported, "binary frames are not supported");
                }
                Ok(Some(Ok(Message::Ping(_)))) => flush.notify_one(),
                Ok(Some(Ok(Message::Pong(_) | Message::Frame(_)))) => {}
                Ok(Some(Ok(Message::Close(_)))) => break None,
            }
        };
        let typing: Vec<String> = self.typing.iter().cloned().collect();
        for topic in typing {
            self.stop_typing(&topic);
        }
        let topics: Vec<String> = self.joined.keys().cloned().collect();
        self.hub.disconnect(self.id, &topics);
        self.hub.connection(self.person(), false);
        drop(self.outbox);
        let abort = writer.abort_handle();
        match tokio::time::timeout(Duration::from_secs(1), writer).await {
            Ok(Ok(mut sink)) => {
                if let Some(reason) = reason {
                    let _ = sink.send(Message::Close(Some(reason))).await;
                }
                let _ = sink.close().await;
            }
            _ => abort.abort(),
        }
    }

    async fn handle(&mut self, frame: Frame) {
        if frame.topic == "phoenix" && frame.event == "heartbeat" {
            self.send(reply(&frame, true, &json!({})));
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
            self.stop_typing(&frame.topic);
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
        self.send(reply(&frame, true, &json!({})));
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
        self.stop_typing(&frame.topic);
        match self.joined.remove(&frame.topic) {
            Some(join_ref) => {
                self.hub.leave(&frame.topic, self.id);
                self.send(reply(&frame, true, &json!({})));
                self.send(encode(
                    Some(&join_ref),
                    Some(&join_ref),
                    &frame.topic,
                    "phx_close",
                    &json!({}),
                ));
            }
            None => self.send(reply(&frame, true, &json!({}))),
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
            (_, "ping") => self.send(reply(&frame, true, &frame.payload)),
            ("conversation", "shout") => {
                // The message is what the typing was for.
                self.stop_typing(&frame.topic);
                let id = frame.topic["conversation:".len()..].parse();
                match id {
                    Ok(id) => self.shout(&frame, id).await,
                    Err(_) => self.send(refuse(&frame, "unmatched topic")),
                }
            }
            ("conversation", "typing") => {
                let typing = frame.payload.get("typing").and_then(Value::as_bool).unwrap_or(true);
                if typing {
                    self.typing.insert(frame.topic.clone());
                } else {
                    self.typing.remove(&frame.topic);
                }
                self.broadcast_typing(&frame.topic, typing);
            }
            ("conversation", "messages:seen") => {
                let id: Option<ConversationId> = frame.topic["conversation:".len()..].parse().ok();
                match (&self.caller, id) {
                    (Caller::Agent { user_id, .. }, Some(id)) => self.mark_read(&frame, id, *user_id).await,
                    (Caller::Customer { customer_id, .. }, Some(id)) => {
                        let command = ConversationCommand::MarkSeenByCustomer {
                            customer_id: *customer_id,
                            at: chrono::Utc::now(),
                        };
                        let result = self
                            .state
                            .bus
                            .execute::<Conversation>(id, command, &self.caller.meta())
                            .await;
                        match result {
                            Ok(_) => self.send(reply(&frame, true, &json!({}))),
                            Err(e) => self.send(refuse(&frame, &e.to_string())),
                        }
                    }
                    _ => self.send(refuse(&frame, "unmatched topic")),
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

    /// Tells the topic's other members whether this connection's person is typing.
    fn broadcast_typing(&self, topic: &str, typing: bool) {
        let Some(conversation_id) = topic.strip_prefix("conversation:") else {
            return;
        };
        let mut payload = json!({ "typing": typing, "conversation_id": conversation_id });
        match &self.caller {
            Caller::Agent { user_id, .. } => payload["user_id"] = json!(user_id),
            Caller::Customer { customer_id, .. } => payload["customer_id"] = json!(customer_id),
        }
        self.hub.broadcast_ephemeral(topic, "typing", &payload, Some(self.id));
    }

    /// Ends this connection's typing on `topic`, if it was typing there: ephemeral state does not
    /// outlive its owner's presence (a closed tab never sends `typing: false` itself).
    fn stop_typing(&mut self, topic: &str) {
        if self.typing.remove(topic) {
            self.broadcast_typing(topic, false);
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
                self.send(reply(frame, true, &posted.message));
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
            Ok(_) => self.send(reply(frame, true, &json!({}))),
            Err(e) => self.send(refuse(frame, &e.to_string())),
        }
    }
}
