//! One socket's outbound side. Frames are encoded as WebSocket frames once (a server's frames are
//! unmasked, RFC 6455 §5.1–5.2, so one broadcast's bytes are the same for every connection) and
//! written straight to the socket by whoever sends them, when nothing waits before them: a
//! broadcast to 1,000 sockets is 1,000 `send`s from the broadcaster, with no task woken and no
//! per-connection framing or copy. What the socket does not take at once waits, in order, for the
//! connection's writer ([`Outbox::drain`]); at most [`OUTBOX`] frames wait, and a connection that
//! falls further behind is told to close ([`Outbox::killed`]) rather than allowed to hold memory or
//! slow anyone else. Findings: `docs/adr/0004-real-time.md`.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// Frames that may wait for one connection's writer, in send order.
pub const OUTBOX: usize = 1_024;
/// Room kept beyond [`OUTBOX`] for the protocol's own frames (pongs, the close frame), so that a
/// connection closed for a full queue still gets its 1008 (a client that floods pings without
/// reading fills it too, and is then cut off).
const CONTROL_ROOM: usize = 8;
/// Queued frames the writer writes per hold of the queue's lock (senders that only queue, some
/// holding the hub's lock, wait at most this many system calls).
const WRITE_BATCH: usize = 64;

/// A WebSocket frame as it goes on the wire, header and payload: a final text frame (RFC 6455
/// §5.6), unmasked as a server's frames are. Cloning shares the bytes.
#[derive(Clone, Debug)]
pub struct WireFrame(Bytes);

impl WireFrame {
    /// The text frame carrying `text` (one frame, however long: the Phoenix client reads whole
    /// messages).
    pub fn text(text: String) -> WireFrame {
        let frame = Frame::message(text.into_bytes(), OpCode::Data(Data::Text), true);
        let mut wire = Vec::with_capacity(frame.len());
        // Formatting only writes, and writing into a Vec cannot fail.
        let _ = frame.format(&mut wire);
        WireFrame(Bytes::from(wire))
    }
}

/// One connection's outbound queue, its writer's wake-up and the signal that closes it. Clones
/// share them; the socket's write half is shut down when the last clone is dropped.
#[derive(Clone)]
pub struct Outbox(Arc<Shared>);

struct Shared {
    /// `None`: a detached outbox (the hub's tests), whose frames only queue.
    socket: Option<OwnedWriteHalf>,
    queue: Mutex<Queue>,
    /// The writer: frames are waiting, or the connection is ending.
    wake: Notify,
    /// The connection: the queue overflowed.
    kill: Notify,
}

#[derive(Default)]
struct Queue {
    /// Waiting bytes, each entry a whole frame or the unwritten rest of one.
    frames: VecDeque<Bytes>,
    /// The socket failed: nothing more is taken.
    broken: bool,
    /// The connection is closing: its close frame is on its way, no more frames of its own are
    /// taken (RFC 6455 §5.5.1: nothing follows a close frame).
    closing: bool,
    /// The connection is ending: the writer stops once the queue is empty.
    ending: bool,
}

impl Queue {
    /// What an empty queue means for the writer. Decided under the same hold of the lock that
    /// found the queue empty: checking `ending` under a second hold let a writer preempted between
    /// the two find the connection ended with its last frames (its close frame) queued in between,
    /// and stop without writing them (one socket of 200 got no close frame at a SIGTERM).
    fn idle(&self) -> Written {
        if self.ending { Written::Finished } else { Written::Empty }
    }
}

/// What the writer found when it wrote out the queue.
enum Written {
    Empty,
    /// Nothing waits and the connection is ending: the writer's work is done.
    Finished,
    /// [`WRITE_BATCH`] frames written, more wait.
    More,
    Blocked,
    Broken,
}

impl Outbox {
    /// The outbox of a connection whose writes go to `socket`.
    pub fn new(socket: OwnedWriteHalf) -> Outbox {
        Outbox::with(Some(socket))
    }

    /// An outbox with no socket: frames queue (up to [`OUTBOX`]) and stay there.
    pub fn detached() -> Outbox {
        Outbox::with(None)
    }

    fn with(socket: Option<OwnedWriteHalf>) -> Outbox {
        Outbox(Arc::new(Shared {
            socket,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            kill: Notify::new(),
        }))
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.0.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends `frame`: written at once if nothing waits before it and the socket takes it, else
    /// queued for the writer. False if it was not taken: the socket failed, or the queue is full
    /// (the connection is then told to close).
    pub fn send(&self, frame: &WireFrame) -> bool {
        self.take(frame.0.clone(), true, false)
    }

    /// Queues `frame` for the writer without writing it here: for senders holding a lock others
    /// wait on (the hub's topics), which should not wait for a system call.
    pub fn queue_only(&self, frame: &WireFrame) -> bool {
        self.take(frame.0.clone(), false, false)
    }

    /// Takes `bytes` (whole frames); `control`: the protocol's own, which may use [`CONTROL_ROOM`]
    /// and still go out once the connection is closing.
    fn take(&self, bytes: Bytes, write_now: bool, control: bool) -> bool {
        let mut queue = self.queue();
        if queue.broken || (queue.closing && !control) {
            return false;
        }
        let room = if control { OUTBOX + CONTROL_ROOM } else { OUTBOX };
        if queue.frames.len() >= room {
            self.0.kill.notify_one();
            return false;
        }
        match &self.0.socket {
            Some(socket) if write_now && queue.frames.is_empty() => match socket.try_write(&bytes) {
                Ok(n) if n == bytes.len() => return true,
                Ok(0) => {
                    queue.broken = true;
                    return false;
                }
                Ok(n) => queue.frames.push_back(bytes.slice(n..)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => queue.frames.push_back(bytes),
                Err(_) => {
                    queue.broken = true;
                    return false;
                }
            },
            _ => queue.frames.push_back(bytes),
        }
        drop(queue);
        self.0.wake.notify_one();
        true
    }

    /// Resolves when the queue overflowed: the connection should close (1008).
    pub async fn killed(&self) {
        self.0.kill.notified().await;
    }

    /// The connection's writer: writes out what waits, whenever something does, until
    /// [`Outbox::finish`] was called and nothing waits, or the socket fails.
    pub async fn drain(&self) {
        let Some(socket) = &self.0.socket else { return };
        loop {
            match self.write_queued(socket) {
                Written::Broken => return,
                // Others' turn between batches (a long backlog is written cooperatively).
                Written::More => tokio::task::consume_budget().await,
                Written::Blocked => {
                    if socket.writable().await.is_err() {
                        self.queue().broken = true;
                        return;
                    }
                }
                Written::Finished => return,
                // A frame queued from now on stores a wake-up for this wait.
                Written::Empty => self.0.wake.notified().await,
            }
        }
    }

    fn write_queued(&self, socket: &OwnedWriteHalf) -> Written {
        let mut queue = self.queue();
        for _ in 0..WRITE_BATCH {
            let Some(front) = queue.frames.front_mut() else {
                return queue.idle();
            };
            match socket.try_write(front) {
                Ok(n) if n == front.len() => {
                    queue.frames.pop_front();
                }
                Ok(n) if n > 0 => front.advance(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Written::Blocked,
                Ok(_) | Err(_) => {
                    queue.broken = true;
                    queue.frames.clear();
                    return Written::Broken;
                }
            }
        }
        if queue.frames.is_empty() {
            queue.idle()
        } else {
            Written::More
        }
    }

    /// The connection is closing: frames sent from now on are refused; only the protocol's own
    /// (its close frame) still go out.
    pub fn closing(&self) {
        self.queue().closing = true;
    }

    /// Ends the connection's sending side (TCP FIN) now, while its reading side stays open: after
    /// the close frame, so that the client, which waits for the server's TCP close (RFC 6455
    /// §7.1.1), closes too while what it still sends is read.
    pub fn shutdown_write(&self) {
        if let Some(socket) = &self.0.socket {
            let _ = socket2::SockRef::from(socket.as_ref()).shutdown(std::net::Shutdown::Write);
        }
    }

    /// The connection is ending: the writer stops once what waits is written.
    pub fn finish(&self) {
        self.queue().ending = true;
        self.0.wake.notify_one();
    }

    /// Takes the text frames waiting (whole frames: a detached outbox's, as the hub's tests read
    /// them), payloads as text.
    pub fn take_texts(&self) -> Vec<String> {
        use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
        let frames: Vec<Bytes> = self.queue().frames.drain(..).collect();
        frames
            .into_iter()
            .filter_map(|wire| {
                let mut cursor = std::io::Cursor::new(wire.as_ref());
                let (_, len) = FrameHeader::parse(&mut cursor).ok().flatten()?;
                let start = usize::try_from(cursor.position()).ok()?;
                let payload = wire.get(start..start + usize::try_from(len).ok()?)?;
                String::from_utf8(payload.to_vec()).ok()
            })
            .collect()
    }
}

/// The stream the connection's WebSocket protocol state runs on: reads from the socket, and
/// whatever the protocol writes itself (pongs, close frames) goes through the outbox, in order with
/// everything else sent to the connection.
pub struct Duplex {
    read: OwnedReadHalf,
    outbox: Outbox,
}

impl Duplex {
    pub fn new(read: OwnedReadHalf, outbox: Outbox) -> Duplex {
        Duplex { read, outbox }
    }
}

impl AsyncRead for Duplex {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for Duplex {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(if self.outbox.take(Bytes::copy_from_slice(buf), true, true) {
            Ok(buf.len())
        } else {
            Err(ErrorKind::BrokenPipe.into())
        })
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    async fn pair() -> (Outbox, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_read, write) = server.into_split();
        (Outbox::new(write), client)
    }

    /// Reads `count` text frames from `client` (payloads under 64 KiB).
    async fn read_texts(client: &mut TcpStream, count: usize) -> Vec<String> {
        let mut texts = Vec::new();
        for _ in 0..count {
            let mut head = [0u8; 2];
            client.read_exact(&mut head).await.unwrap();
            assert_eq!(head[0], 0x81, "a final text frame");
            assert_eq!(head[1] & 0x80, 0, "server frames are unmasked");
            let len = match head[1] {
                126 => client.read_u16().await.unwrap() as usize,
                len => len as usize,
            };
            let mut payload = vec![0; len];
            client.read_exact(&mut payload).await.unwrap();
            texts.push(String::from_utf8(payload).unwrap());
        }
        texts
    }

    #[tokio::test]
    async fn frames_arrive_whole_and_in_order_whether_written_at_once_or_queued() {
        let (outbox, mut client) = pair().await;
        let writer = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.drain().await }
        });
        // Frames of 4 KiB while nobody reads, until the socket's buffers are full and 100 more
        // have queued behind them.
        let pad = "x".repeat(4096);
        let (mut sent, mut queued) = (0, 0);
        while queued < 100 {
            assert!(
                outbox.send(&WireFrame::text(format!("{sent:06}{pad}"))),
                "frame {sent} taken"
            );
            sent += 1;
            if !outbox.queue().frames.is_empty() {
                queued += 1;
            }
        }
        let texts = read_texts(&mut client, sent).await;
        for (i, text) in texts.iter().enumerate() {
            assert_eq!(&text[..6], format!("{i:06}"));
            assert_eq!(text.len(), 6 + 4096);
        }
        outbox.finish();
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_that_stops_reading_is_told_to_close_once_its_queue_is_full() {
        let (outbox, _client) = pair().await;
        let pad = "y".repeat(16 * 1024);
        let mut refused = None;
        for i in 0..20_000 {
            if !outbox.send(&WireFrame::text(pad.clone())) {
                refused = Some(i);
                break;
            }
        }
        let refused = refused.expect("a full queue refuses frames");
        assert_eq!(outbox.queue().frames.len(), OUTBOX);
        assert!(refused >= OUTBOX, "frames the socket took at once are not counted");
        tokio::time::timeout(std::time::Duration::from_secs(1), outbox.killed())
            .await
            .expect("the connection is told to close");
    }

    #[test]
    fn a_full_queue_still_takes_the_close_frame_and_nothing_follows_it() {
        let outbox = Outbox::detached();
        for _ in 0..OUTBOX {
            assert!(outbox.queue_only(&WireFrame::text("x".into())));
        }
        assert!(!outbox.send(&WireFrame::text("one too many".into())));
        outbox.closing();
        let close = Bytes::from_static(&[0x88, 0x02, 0x03, 0xf0]); // close 1008
        assert!(
            outbox.take(close.clone(), true, true),
            "the protocol's close frame fits"
        );
        assert!(!outbox.send(&WireFrame::text("after the close".into())));
        assert!(!outbox.queue_only(&WireFrame::text("after the close".into())));
        assert_eq!(outbox.queue().frames.back(), Some(&close));
        assert_eq!(outbox.queue().frames.len(), OUTBOX + 1);
    }

    #[test]
    fn a_detached_outbox_keeps_its_frames_for_the_test_to_read() {
        let outbox = Outbox::detached();
        assert!(outbox.send(&WireFrame::text("short".into())));
        assert!(outbox.queue_only(&WireFrame::text("é".repeat(100))));
        assert!(outbox.send(&WireFrame::text("z".repeat(70_000))));
        let texts = outbox.take_texts();
        assert_eq!(texts[0], "short");
        assert_eq!(texts[1], "é".repeat(100));
        assert_eq!(texts[2].len(), 70_000);
    }
}
