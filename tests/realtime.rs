//! The WebSocket as the official `phoenix` npm client meets it (Node 20, `ws` transport): the
//! scenario in `tests/js/conformance.mjs`, against a real server on both databases. The JS
//! dependencies are installed with `npm ci` on first use (Node 20 and npm are needed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Stdio;

use common::TestDb;
use common::api::Api;
use common::nodes::{free_port, node_modules, run_script, serve, serve_with};

async fn the_phoenix_client_works_against_netia(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("agent@example.com").await;
    let (conversation, customer) = api.conversation(&admin.account_id).await;
    let (other, _) = api.conversation(&admin.account_id).await;
    run_script(
        "conformance.mjs",
        &[
            ("NETIA_URL", &api.base),
            ("AGENT_TOKEN", &admin.token),
            ("CUSTOMER_TOKEN", &customer),
            ("CONVERSATION_ID", &conversation),
            ("OTHER_CONVERSATION_ID", &other),
            ("ACCOUNT_ID", &admin.account_id),
        ],
    )
    .await;
    // Coming online and going offline are in the log: the customer (two tabs: once each) and the agent.
    let (_, theirs) = api.get("/api/conversations/customer", &customer).await;
    let customer_id = theirs["data"][0]["customer_id"].as_str().unwrap().to_owned();
    for (stream, online, offline) in [
        (
            netia_events::StreamRef::new("customer", &customer_id),
            "CustomerCameOnline",
            "CustomerWentOffline",
        ),
        (
            netia_events::StreamRef::new("user", &admin.user_id),
            "AgentCameOnline",
            "AgentWentOffline",
        ),
    ] {
        let mut types = Vec::new();
        // Going offline is written after the grace period (a reload writes nothing).
        for _ in 0..300 {
            types = db
                .store
                .read_stream(&stream, netia::store::StreamBound::All)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.event_type)
                .filter(|t| t == online || t == offline)
                .collect();
            if types.len() >= 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(types, [online, offline], "{stream}");
    }
}

on_both_backends!(the_phoenix_client_works_against_netia);

async fn hostile_frames_close_only_the_offending_socket(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("agent@example.com").await;
    let other = api.register("other@example.com").await;
    let (conversation, customer) = api.conversation(&admin.account_id).await;
    run_script(
        "hostile.mjs",
        &[
            ("NETIA_URL", &api.base),
            ("AGENT_TOKEN", &admin.token),
            ("CUSTOMER_TOKEN", &customer),
            ("CONVERSATION_ID", &conversation),
            ("OTHER_ACCOUNT_ID", &other.account_id),
        ],
    )
    .await;
}

mod hostile {
    use super::*;
    on_both_backends!(hostile_frames_close_only_the_offending_socket);
}

/// Field report 2: "Customer is typing…" outlived the customer's tab. Typing ends when its owner
/// leaves, sends, or disconnects (`tests/js/typing.mjs`).
async fn typing_ends_with_its_owner(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("agent@example.com").await;
    let (conversation, customer) = api.conversation(&admin.account_id).await;
    run_script(
        "typing.mjs",
        &[
            ("NETIA_URL", &api.base),
            ("AGENT_TOKEN", &admin.token),
            ("CUSTOMER_TOKEN", &customer),
            ("CONVERSATION_ID", &conversation),
        ],
    )
    .await;
}

mod typing {
    use super::*;
    on_both_backends!(typing_ends_with_its_owner);
}

/// A member that stops reading is disconnected once its outbox is full; the others are not slowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_a_consumer_that_stops_reading_is_disconnected_without_stalling_the_others() {
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    // The sender floods on purpose (the frame limit would close it first).
    let api = Api::start_with(&db, &[("RATE_LIMIT_FRAMES_PER_SECOND", "1000000")]).await;
    let admin = api.register("agent@example.com").await;
    let (conversation, customer) = api.conversation(&admin.account_id).await;
    run_script(
        "slow.mjs",
        &[
            ("NETIA_URL", &api.base),
            ("AGENT_TOKEN", &admin.token),
            ("CUSTOMER_TOKEN", &customer),
            ("CONVERSATION_ID", &conversation),
        ],
    )
    .await;
}

/// How many times `kind` is in the conversation's history.
async fn events_of(api: &Api, token: &str, conversation: &str, kind: &str) -> usize {
    let (_, history) = api
        .get(&format!("/api/conversations/{conversation}/history"), token)
        .await;
    history["data"]
        .as_array()
        .map_or(0, |events| events.iter().filter(|e| e["event_type"] == kind).count())
}

/// SIGTERM with 200 open sockets and the LLM consumer mid-delivery (the model takes 3 s):
/// readiness fails at once, every socket gets a 1001 close frame, the process exits 0 well within
/// SHUTDOWN_TIMEOUT, and the delivery is finished or redelivered: after a restart the customer's
/// message has exactly one answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_sigterm_closes_every_socket_keeps_the_delivery_and_exits_cleanly() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    let model = MockServer::start().await;
    let answer = serde_json::json!({
        "id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "We open at nine."}}]
    });
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(answer)
                .set_delay(std::time::Duration::from_secs(3)),
        )
        .mount(&model)
        .await;
    let llm = format!("{}/v1", model.uri());
    // 200 sockets from one address at once: more than one address may open by default.
    let vars = [
        ("RATE_LIMIT_SOCKETS_PER_MINUTE", "1000"),
        ("SHUTDOWN_TIMEOUT", "10"),
        ("LLM_BASE_URL", llm.as_str()),
        ("LLM_MODEL", "m"),
    ];
    let port = free_port();
    let mut server = serve_with(&db, port, &vars).await;
    let api = Api {
        base: format!("http://127.0.0.1:{port}"),
        // No idle kept-alive connection of ours: the server's graceful stop waits for such a
        // connection's keep-alive (5 s) to run out, which is not what this test measures (CI
        // once saw the stop take 10 s that way).
        http: reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap(),
    };
    let admin = api.register("agent@example.com").await;
    api.enable_ai(&admin.token).await;
    let (conversation, customer) = api.conversation(&admin.account_id).await;
    let dir = node_modules();
    let mut client = tokio::process::Command::new("node")
        .arg(dir.join("shutdown.mjs"))
        .current_dir(&dir)
        .env("NETIA_URL", &api.base)
        .env("CUSTOMER_TOKEN", &customer)
        .env("CONVERSATION_ID", &conversation)
        .env("SOCKETS", "200")
        .env("ASK", "When do you open?")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    let mut output = String::new();
    loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(40), lines.next_line())
            .await
            .expect("200 sockets joined within 40 s")
            .unwrap();
        let Some(line) = line else {
            panic!("the script ended early:\n{output}")
        };
        output.push_str(&line);
        output.push('\n');
        if line == "READY" {
            break;
        }
    }
    // The consumer is mid-delivery once the model has been asked.
    for _ in 0..200 {
        if !model.received_requests().await.unwrap_or_default().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        model.received_requests().await.unwrap().len(),
        1,
        "the model is thinking"
    );

    let signalled = std::time::Instant::now();
    let pid = server.id().expect("the server runs").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let ready = reqwest::get(format!("{}/health/ready", api.base)).await;
    assert!(
        ready.map_or(true, |r| r.status() != reqwest::StatusCode::OK),
        "never ready once told to stop"
    );
    let exit = tokio::time::timeout(std::time::Duration::from_secs(15), server.wait())
        .await
        .expect("the server exits within SHUTDOWN_TIMEOUT")
        .unwrap();
    assert_eq!(exit.code(), Some(0), "a clean exit");
    assert!(
        signalled.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        signalled.elapsed()
    );
    while let Ok(Some(line)) = lines.next_line().await {
        output.push_str(&line);
        output.push('\n');
    }
    let finished = client.wait().await.unwrap();
    assert!(finished.success() && output.contains("all checks passed"), "{output}");

    // Back up: the delivery was finished before the exit, or is delivered again now; either way
    // the customer gets one answer.
    let _server = serve_with(&db, port, &vars).await;
    let mut answers = 0;
    for _ in 0..150 {
        answers = events_of(&api, &admin.token, &conversation, "BotMessagePosted").await;
        if answers > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(answers, 1, "the message in delivery at the SIGTERM is answered");
    eprintln!(
        "exit after {:?}; the model was asked {} time(s) in all",
        signalled.elapsed(),
        model.received_requests().await.unwrap().len()
    );
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(
        events_of(&api, &admin.token, &conversation, "BotMessagePosted").await,
        1,
        "and answered once (model asked {} times)",
        model.received_requests().await.unwrap().len()
    );
    db.cleanup().await;
}

async fn a_client_loses_nothing_across_a_server_restart(db: &TestDb) {
    use netia::command_bus::CommandBus;
    use netia_commands::{Conversation, ConversationCommand};
    use netia_events::conversation::Author;
    use serde_json::json;
    use tokio::io::{AsyncBufReadExt, BufReader};

    let port = free_port();
    let mut server = serve(db, port).await;
    let api = Api {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    let admin = api.register("agent@example.com").await;
    let (conversation, customer) = api.conversation(&admin.account_id).await;
    let messages = format!("/api/conversations/{conversation}/messages");
    let (status, _) = api.post(&messages, Some(&admin.token), json!({"body": "before"})).await;
    assert_eq!(status, reqwest::StatusCode::CREATED);

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        dir.join("node_modules/phoenix").exists(),
        "run `npm ci --prefix tests/js`"
    );
    let mut client = tokio::process::Command::new("node")
        .arg(dir.join("reconnect.mjs"))
        .current_dir(&dir)
        .env("NETIA_URL", &api.base)
        .env("CUSTOMER_TOKEN", &customer)
        .env("CONVERSATION_ID", &conversation)
        .env(
            "EXPECTED_BODIES",
            r#"["before","missed 1","missed 2","missed 3","live"]"#,
        )
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    let mut next = async || {
        tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .expect("the client answers within 30 s")
            .unwrap()
            .unwrap_or_default()
    };
    assert_eq!(next().await, "READY");

    // The server dies; messages are written while no server runs; it comes back on the same port.
    server.kill().await.unwrap();
    let bus = CommandBus::new(db.store.clone());
    let user_id = admin.user_id.parse().unwrap();
    let meta = netia_events::Metadata::new(netia_events::Actor::Agent { user_id })
        .with_account(admin.account_id.parse().unwrap());
    for i in 1..=3 {
        let command = ConversationCommand::PostMessage {
            message_id: netia_events::MessageId::new(),
            author: Author::Agent { user_id },
            body: format!("missed {i}"),
            format: netia_events::conversation::MessageFormat::Text,
            private: false,
            client_message_id: None,
            attachments: Vec::new(),
            at: chrono::Utc::now(),
        };
        bus.execute::<Conversation>(&conversation, command, &meta)
            .await
            .unwrap();
    }
    let _server = serve(db, port).await;
    let rejoined = next().await;
    assert!(rejoined.starts_with("REJOINED"), "{rejoined}");
    let (status, _) = api.post(&messages, Some(&admin.token), json!({"body": "live"})).await;
    assert_eq!(status, reqwest::StatusCode::CREATED);
    assert_eq!(next().await, "all checks passed");
}

mod restart {
    use super::*;
    on_both_backends!(a_client_loses_nothing_across_a_server_restart);
}

/// RabbitMQ for the cluster link between nodes (`AMQP_URL`, default the local broker).
fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_and_rabbitmq_two_nodes_share_messages_presence_and_typing() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let Some(db) = TestDb::postgres().await else { return };
    let (port_a, port_b) = (free_port(), free_port());
    let amqp = amqp_url();
    let mut a = serve_with(&db, port_a, &[("AMQP_URL", &amqp)]).await;
    let b = serve_with(&db, port_b, &[("AMQP_URL", &amqp)]).await;
    let node_a = Api {
        base: format!("http://127.0.0.1:{port_a}"),
        http: reqwest::Client::new(),
    };
    let node_b = format!("http://127.0.0.1:{port_b}");
    let admin = node_a.register("agent@example.com").await;
    let (conversation, customer) = node_a.conversation(&admin.account_id).await;
    let (_, body) = node_a
        .get(&format!("/api/conversations/{conversation}"), &admin.token)
        .await;
    let customer_id = body["data"]["customer_id"].as_str().unwrap().to_owned();

    let dir = node_modules();
    let mut client = tokio::process::Command::new("node")
        .arg(dir.join("two_nodes.mjs"))
        .current_dir(&dir)
        .envs([
            ("NODE_A", node_a.base.as_str()),
            ("NODE_B", &node_b),
            ("AGENT_TOKEN", &admin.token),
            ("AGENT_ID", &admin.user_id),
            ("CUSTOMER_TOKEN", &customer),
            ("CUSTOMER_ID", &customer_id),
            ("CONVERSATION_ID", &conversation),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdin = client.stdin.take().unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    let mut transcript = String::new();
    let killed = loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(45), lines.next_line())
            .await
            .expect("the client answers within 45 s")
            .unwrap();
        let Some(line) = line else { break false };
        transcript.push_str(&line);
        transcript.push('\n');
        if line == "KILL_A" {
            a.kill().await.unwrap();
            stdin.write_all(b"killed\n").await.unwrap();
            stdin.flush().await.unwrap();
            break true;
        }
    };
    assert!(killed, "the script stopped before node A was killed:\n{transcript}");
    while let Ok(Some(line)) = lines.next_line().await {
        transcript.push_str(&line);
        transcript.push('\n');
    }
    eprintln!("{transcript}");
    assert!(transcript.contains("all checks passed"), "{transcript}");

    // Node B recorded the customer of the dead node offline (their last presence event).
    let stream = netia_events::StreamRef::new("customer", &customer_id);
    let mut last = None;
    // The dead node is noticed within 5 s, and offline written after the grace period.
    for _ in 0..250 {
        let events = db
            .store
            .read_stream(&stream, netia::store::StreamBound::All)
            .await
            .unwrap();
        last = events
            .iter()
            .rev()
            .map(|e| e.event_type.clone())
            .find(|t| t.starts_with("CustomerCame") || t.starts_with("CustomerWent"));
        if last.as_deref() == Some("CustomerWentOffline") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(last.as_deref(), Some("CustomerWentOffline"));
    drop(b);
    db.cleanup().await;
}

/// Sends one HTTP/1.1 request on `stream` (kept alive) and reads its response: status line and body.
async fn exchange(stream: &mut tokio::net::TcpStream, request: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length || n == 0 {
                return (head.lines().next().unwrap_or_default().to_owned(), body.to_owned());
            }
        }
        assert!(n > 0, "the connection closed mid-answer: {text}");
    }
}

/// A reverse proxy with upstream keepalive sends an upgrade on a connection that has carried other
/// requests: it is upgraded there, the socket works, and an upgrade elsewhere is refused.
#[tokio::test]
async fn sqlite_an_upgrade_on_a_kept_alive_connection_opens_the_socket() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let db = TestDb::sqlite().await.expect("a SQLite test database");
    let api = Api::start(&db).await;
    let admin = api.register("agent@example.com").await;
    let (conversation, customer) = api.conversation(&admin.account_id).await;
    let addr = api.base.trim_start_matches("http://").to_owned();

    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    for _ in 0..2 {
        let (status, body) = exchange(
            &mut stream,
            &format!("GET /health/live HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        )
        .await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status} {body}");
    }
    let url = format!("ws://{addr}/socket/websocket?vsn=2.0.0&token={customer}");
    let (mut socket, response) = tokio_tungstenite::client_async(url.as_str(), stream)
        .await
        .expect("the third request of the connection is upgraded");
    assert_eq!(response.status(), 101);
    let join = format!(r#"["1","1","conversation:{conversation}","phx_join",{{}}]"#);
    socket.send(Message::text(join)).await.unwrap();
    let reply = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) if text.contains("phx_reply") => break text.to_string(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no join reply: {other:?}"),
        }
    };
    assert!(reply.contains(r#""status":"ok""#), "{reply}");

    // Refusals on a reused connection: a bad token (403), an upgrade of another path (404).
    let refusals = [
        ("/socket/websocket?vsn=2.0.0&token=ntc_forged", "403"),
        ("/api/conversations", "404"),
    ];
    for (path, expected) in refusals {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let (status, _) = exchange(
            &mut stream,
            &format!("GET /health/live HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        )
        .await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let upgrade = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        let (status, body) = exchange(&mut stream, &upgrade).await;
        assert!(
            status.starts_with(&format!("HTTP/1.1 {expected}")),
            "{path}: {status} {body}"
        );
        assert!(body.contains("\"message\""), "{body}");
    }
}
