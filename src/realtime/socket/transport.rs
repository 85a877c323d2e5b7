//! The socket's transport: which connections are upgrades, who may open one, the handshake and
//! the frame loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_codec::Framed;
use actix_web::HttpResponse;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, create_response, write_response};
use tokio_tungstenite::tungstenite::http::{self, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};

use super::admission::admit;
use super::{Connection, IDLE, MAX_FRAME, READ_BUFFER, SocketServices};
use crate::realtime::hub::{Duplex, Hub, Outbox};
use crate::realtime::protocol::{self, Frame};

/// Where the socket lives; a connection whose first request is a WebSocket upgrade of this path is
/// served by [`serve`], outside the HTTP server (see [`sniff`]).
pub const PATH: &str = "/socket/websocket";
/// Largest request head read for an upgrade.
const MAX_HEAD: usize = 8 * 1024;
/// A client has this long to send its upgrade request.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The request head of a WebSocket upgrade: read (not consumed) from a new connection by
/// [`sniff`], or parsed by the HTTP server on a connection it had already served requests on.
#[derive(Debug)]
pub struct Head {
    /// Bytes the head takes on the wire (0 when the HTTP server consumed it).
    len: usize,
    request: Request,
}

impl Head {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.request.headers().get(name)?.to_str().ok()
    }

    pub(super) fn query(&self) -> &str {
        self.request.uri().query().unwrap_or_default()
    }

    /// The head of an upgrade request the HTTP server parsed (method, target, version, headers).
    fn parsed(request: &actix_http::Request) -> Option<Head> {
        let mut builder = Request::builder()
            .method(request.method().as_str())
            .uri(request.uri().to_string())
            .version(match request.version() {
                actix_http::Version::HTTP_10 => http::Version::HTTP_10,
                _ => http::Version::HTTP_11,
            });
        for (name, value) in request.head().headers() {
            builder = builder.header(name.as_str(), value.as_bytes());
        }
        Some(Head {
            len: 0,
            request: builder.body(()).ok()?,
        })
    }
}

/// Peeks at the first request of a new connection: `Some` when it is `GET /socket/websocket` with
/// `Upgrade: websocket`, which [`serve`] then handles; `None` leaves the connection, unread, to the
/// HTTP server. Upgraded connections bypass the HTTP server so that an idle socket holds no HTTP
/// buffers (actix's dispatcher keeps 16 KiB per connection for its life). An upgrade that comes
/// later on a kept-alive connection (a reverse proxy reusing its upstream connections) reaches
/// [`serve_upgrade`] through the HTTP server instead.
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
    let mut parsed = httparse::Request::new(&mut headers);
    if !parsed.parse(bytes).ok()?.is_complete() {
        return None;
    }
    let upgrade = parsed
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("upgrade") && h.value.trim_ascii().eq_ignore_ascii_case(b"websocket"));
    if !upgrade {
        return None; // a plain GET: the HTTP server answers it
    }
    let mut builder = Request::builder()
        .method(parsed.method?)
        .uri(parsed.path?)
        .version(if parsed.version? == 0 {
            http::Version::HTTP_10
        } else {
            http::Version::HTTP_11
        });
    for header in parsed.headers.iter() {
        builder = builder.header(header.name, header.value);
    }
    Some(Head {
        len: bytes.len(),
        request: builder.body(()).ok()?,
    })
}

/// Serves a connection [`sniff`] found to be a socket upgrade on `runtime` (the node's
/// multi-threaded runtime, where the broadcaster runs) rather than on the HTTP worker that accepted
/// it: a broadcast then wakes each member's writer task within one runtime (a queue push) instead
/// of across threads (a wake-up syscall per member, which made a 1,000-member fan-out spread over
/// 7.7 ms instead of 5.6; ADR 0004). Returns when the socket closes.
pub async fn serve_on(
    runtime: &tokio::runtime::Handle,
    stream: TcpStream,
    head: Head,
    services: Arc<SocketServices>,
    hub: Arc<Hub>,
) {
    // Moved between reactors: deregistered here, registered again inside the runtime's task.
    let Ok(stream) = stream.into_std() else { return };
    let served = runtime.spawn(async move {
        if let Ok(stream) = TcpStream::from_std(stream) {
            serve(stream, head, services, hub).await;
        }
    });
    let _ = served.await;
}

/// Serves a connection [`sniff`] found to be a socket upgrade: its head, still on the wire, is
/// read, then the upgrade is [`accept`]ed or refused.
pub async fn serve(mut stream: TcpStream, head: Head, services: Arc<SocketServices>, hub: Arc<Hub>) {
    let _ = stream.set_nodelay(true);
    let mut consumed = vec![0u8; head.len];
    if stream.read_exact(&mut consumed).await.is_err() {
        return;
    }
    accept(stream, head, Vec::new(), services, hub).await;
}

/// Serves a WebSocket upgrade the HTTP server parsed on a kept-alive connection (the server hands
/// over every request with `Upgrade: websocket`, and `CONNECT`): on [`PATH`] it is [`accept`]ed or
/// refused like any other; elsewhere it is refused (404, or 405 for `CONNECT`) and the connection
/// closed, since its bytes can no longer go back to the HTTP server.
pub async fn serve_upgrade(
    request: actix_http::Request,
    framed: Framed<TcpStream, actix_http::h1::Codec>,
    services: Arc<SocketServices>,
    hub: Arc<Hub>,
) {
    let parts = framed.into_parts();
    let (mut stream, leftover) = (parts.io, parts.read_buf.to_vec());
    drop(parts.write_buf);
    let refusal = if request.method() == actix_http::Method::CONNECT {
        Some((405, "CONNECT is not supported".to_owned()))
    } else if request.path() != PATH {
        Some((404, format!("WebSocket upgrades are served only on {PATH}")))
    } else {
        None
    };
    match (refusal, Head::parsed(&request)) {
        (None, Some(head)) => accept(stream, head, leftover, services, hub).await,
        (refusal, _) => {
            let (status, reason) = refusal.unwrap_or((400, "the request head is not valid HTTP".to_owned()));
            refuse(&mut stream, status, &reason).await;
        }
    }
}

/// Answers an upgrade with an error status and a JSON body (`{"error", "message"}`), and closes.
async fn refuse(stream: &mut TcpStream, status: u16, reason: &str) {
    let status = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    let error = match status.as_u16() {
        403 => "forbidden",
        404 => "not_found",
        429 => "rate_limited",
        405 => "method_not_allowed",
        500 => "internal",
        503 => "unavailable",
        _ => "bad_request",
    };
    let body = json!({"error": error, "message": reason}).to_string();
    // As the REST API's refusals (RFC 9110 §10.2.3): a 429 names the wait its message gives ("retry
    // in N s"), a 503 asks for a second.
    let retry_after = match status.as_u16() {
        429 => reason
            .rsplit_once("retry in ")
            .and_then(|(_, rest)| rest.split(' ').next()?.parse::<u64>().ok())
            .or(Some(1)),
        503 => Some(1),
        _ => None,
    }
    .map(|seconds| format!("retry-after: {seconds}\r\n"))
    .unwrap_or_default();
    let response = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{retry_after}connection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default(),
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Completes an upgrade whose head has been read: a malformed handshake (RFC 6455 §4.2.1) is
/// refused with 400, a caller [`admit`] turns away with its status; otherwise `101 Switching
/// Protocols` is sent (selecting the `phoenix` subprotocol when offered) and the connection runs
/// until it closes. `leftover` is what the client sent after the head (frames already read).
async fn accept(mut stream: TcpStream, head: Head, leftover: Vec<u8>, services: Arc<SocketServices>, hub: Arc<Hub>) {
    let mut response = match create_response(&head.request) {
        Ok(response) => response,
        Err(e) => return refuse(&mut stream, 400, &format!("not a valid WebSocket upgrade: {e}")).await,
    };
    // Boxed, like the connection: its future is freed before the connection settles in.
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let admission = match Box::pin(admit(&head, peer, &services)).await {
        Ok(admission) => admission,
        Err((status, reason)) => return refuse(&mut stream, status, &reason).await,
    };
    if head
        .header("sec-websocket-protocol")
        .is_some_and(|p| p.split(',').any(|p| p.trim() == "phoenix"))
    {
        response
            .headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static("phoenix"));
    }
    drop(head);
    let mut written = Vec::with_capacity(256);
    if write_response(&mut written, &response).is_err() || stream.write_all(&written).await.is_err() {
        return;
    }
    drop((response, written));
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    // The protocol state reads the socket; everything written to it — frames the connection sends,
    // broadcasts, the protocol's own pongs and close frames — goes through one outbox, in order.
    let (read, write) = stream.into_split();
    let outbox = Outbox::new(write);
    let socket =
        WebSocketStream::from_partially_read(Duplex::new(read, outbox.clone()), leftover, Role::Server, Some(config))
            .await;
    let connection = Connection {
        id: hub.connection_id(),
        caller: admission.caller,
        session: admission.session,
        expires_at: admission.expires_at,
        services,
        hub,
        outbox,
        joined: HashMap::new(),
        typing: std::collections::HashSet::new(),
    };
    connection.run(socket).await;
}

/// What the HTTP server answers on the socket path when the request is not a WebSocket upgrade.
pub async fn not_upgraded() -> HttpResponse {
    HttpResponse::BadRequest().json(json!({
        "error": "bad_request",
        "message": "open the socket with a WebSocket upgrade (GET /socket/websocket?vsn=2.0.0 with Upgrade: websocket)",
    }))
}

/// Sleeps until `at`, or for ever.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn close(code: CloseCode, reason: &str) -> Option<CloseFrame> {
    Some(CloseFrame {
        code,
        reason: reason.to_owned().into(),
    })
}

impl Connection {
    pub(super) async fn run(mut self, mut socket: WebSocketStream<Duplex>) {
        self.hub.connection(self.person(), true);
        let revoked = self.hub.admit(self.id, self.person(), self.session.clone());
        // A session's socket ends with the session; nothing the socket does extends it.
        let expiry = self.expires_at.map(|at| {
            let left = (at - chrono::Utc::now()).to_std().unwrap_or_default();
            tokio::time::Instant::now() + left
        });
        metrics::gauge!("netia_sockets_open").increment(1.0);
        // Writes what the socket did not take at once (most frames are written by their sender).
        let writer = tokio::spawn({
            let outbox = self.outbox.clone();
            async move { outbox.drain().await }
        });
        let outbox = self.outbox.clone();
        let finish = FinishOnDrop(self.outbox.clone());
        let mut shutdown = self.services.shutdown.clone();
        let frames = self.services.limiter.frames();
        let reason = loop {
            let next = tokio::select! {
                () = outbox.killed() => break close(CloseCode::Policy, "too slow: outbound queue full"),
                _ = shutdown.wait_for(|stopping| *stopping) => break close(CloseCode::Away, "server shutting down"),
                () = revoked.notified() => break close(CloseCode::Policy, "credentials revoked: sign in again"),
                () = sleep_until(expiry) => break close(CloseCode::Policy, "session expired: renew it and reconnect"),
                next = tokio::time::timeout(IDLE, socket.next()) => next,
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
                    Ok(frame) if frames.check().is_err() => {
                        let rate = self.services.limiter.limits.frames_per_second;
                        let limit = format!(
                            "too many frames: at most {rate} a second (bursts of {})",
                            rate.saturating_mul(2)
                        );
                        self.send(protocol::refuse(&frame, &limit));
                        break close(CloseCode::Policy, &limit);
                    }
                    // Boxed: the deep futures of a command live only while a frame is handled, not
                    // in every idle connection's task.
                    Ok(frame) => {
                        Box::pin(self.handle(frame)).await;
                        // A flood of frames read from one buffer touches no resource that would
                        // make this task yield; the members it pushes to (whose writers wait
                        // behind it on this worker) must get their turn before their outboxes fill.
                        tokio::task::consume_budget().await;
                    }
                    Err(e) => break close(CloseCode::Invalid, &e.to_string()),
                },
                Ok(Some(Ok(Message::Binary(_)))) => {
                    break close(CloseCode::Unsupported, "binary frames are not supported");
                }
                // Pings count against the frame limit like any frame; the protocol queued the
                // pong, flushing hands it to the outbox.
                Ok(Some(Ok(Message::Ping(_)))) => {
                    if frames.check().is_err() {
                        let rate = self.services.limiter.limits.frames_per_second;
                        break close(CloseCode::Policy, &format!("too many frames: at most {rate} a second"));
                    }
                    let _ = socket.flush().await;
                }
                Ok(Some(Ok(Message::Pong(_) | Message::Frame(_)))) => {}
                Ok(Some(Ok(Message::Close(_)))) => break None,
            }
        };
        // From here the connection takes only its own close frame: what others would still queue
        // for it (their presence leaves as a whole node shuts down, n² frames for n sockets) would
        // only hold its close frame back.
        outbox.closing();
        let typing: Vec<String> = self.typing.iter().cloned().collect();
        for topic in typing {
            self.stop_typing(&topic);
        }
        let topics: Vec<String> = self.joined.keys().cloned().collect();
        self.hub.dismiss(self.id);
        self.hub.disconnect(self.id, &topics);
        super::topics_joined(-(topics.len() as f64));
        self.hub.connection(self.person(), false);
        metrics::gauge!("netia_sockets_open").decrement(1.0);
        // The close frame goes after everything queued, and nothing after it; when the client
        // closed first, closing the sink flushes tungstenite's reply. The writer gets a second to
        // write it all out (a node going away: five, as every socket's writer wants a core at
        // once); the write half is shut down with the last outbox.
        let away = reason.as_ref().is_some_and(|r| r.code == CloseCode::Away);
        // Closed by us while the client may still be sending (a flood, a frame too large).
        let linger = reason.is_some() && !away;
        if let Some(reason) = reason {
            let _ = socket.send(Message::Close(Some(reason))).await;
        }
        let _ = SinkExt::close(&mut socket).await;
        drop(finish);
        let abort = writer.abort_handle();
        let write_limit = Duration::from_secs(if away { 5 } else { 1 });
        if tokio::time::timeout(write_limit, writer).await.is_err() {
            abort.abort();
        }
        // Closing a socket with unread data resets the connection, and the client loses the close
        // frame it had not read yet (it saw 1006, not 1009 or 1008). What it still sends is read
        // and dropped until it closes too (RFC 6455 §7.1.1: the client's TCP close comes first,
        // after our FIN), for at most a second and 64 MiB.
        if linger {
            outbox.shutdown_write();
            let rest = AsyncReadExt::take(socket.get_mut(), 64 << 20);
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                tokio::io::copy(&mut { rest }, &mut tokio::io::sink()),
            )
            .await;
        }
    }
}

/// Ends a connection's writer once its queue is written, however the connection ends (a panic
/// included: the writer would otherwise keep the socket open, waiting).
struct FinishOnDrop(Outbox);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        self.0.finish();
    }
}

#[cfg(test)]
mod properties;
