//! Field reports (faults users of other support inboxes hit), each reproduced against a running
//! server on both databases and held to the right value. Items 1 (bot after assignment), 2
//! (typing), 3 (email References) live with their subjects in `llm.rs`, `realtime.rs` and
//! `background.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::TestDb;
use common::api::{Api, Session};
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every page of `path` (which has its own query) by following `next`; `between` runs after the
/// first page.
async fn traverse(api: &Api, token: &str, path: &str, between: impl AsyncFnOnce()) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    let mut between = Some(between);
    loop {
        let url = match &after {
            Some(cursor) => format!("{path}&after={}", urlencode(cursor)),
            None => path.to_owned(),
        };
        let (status, page) = api.get(&url, token).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages.push(ids(&page));
        if let Some(between) = between.take() {
            between().await;
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return pages,
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The agent holding `token` posts `body` in conversation `id`.
async fn agent_posts(api: &Api, token: &str, id: &str, body: &str) {
    let path = format!("/api/conversations/{id}/messages");
    let (status, answer) = api.post(&path, Some(token), json!({ "body": body })).await;
    assert!(status.is_success(), "{answer}");
}

/// Item 4: a traversal by creation returns every conversation exactly once while the inbox moves;
/// `updated_after` returns what changed since.
async fn a_traversal_by_creation_meets_every_conversation_once(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("lead@example.com").await;
    let mut created = Vec::new();
    for _ in 0..7 {
        created.push(api.conversation(&admin.account_id).await);
    }
    let c1 = created[0].0.clone();

    // The activity order, as reported: C1 moves ahead of the cursor and is never met.
    let post = || agent_posts(&api, &admin.token, &c1, "Hello again");
    let pages = traverse(&api, &admin.token, "/api/conversations?limit=2", post).await;
    let seen: Vec<String> = pages.concat();
    assert!(
        !seen.contains(&c1),
        "the activity order skips a conversation that moved (documented)"
    );

    let cutoff = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let post = || agent_posts(&api, &admin.token, &c1, "Still there?");
    let pages = traverse(&api, &admin.token, "/api/conversations?sort=created_at&limit=2", post).await;
    let seen: Vec<String> = pages.concat();
    let wanted: Vec<String> = created.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(seen, wanted, "every conversation once, oldest first: {pages:?}");

    // What changed since the cutoff: C1 (a message) and C2 (assigned), nothing else.
    let c2 = &created[1].0;
    let (status, body) = api
        .patch(
            &format!("/api/conversations/{c2}"),
            &admin.token,
            json!({"assignee_id": admin.user_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let since = urlencode(&cutoff.to_rfc3339());
    let (status, changed) = api
        .get(
            &format!("/api/conversations?sort=created_at&updated_after={since}"),
            &admin.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(ids(&changed), vec![c1.clone(), c2.clone()], "{changed}");
    let updated_at = changed["data"][1]["updated_at"].as_str().unwrap();
    assert!(updated_at >= cutoff.to_rfc3339().as_str() || updated_at.ends_with('Z'));

    let (status, body) = api.get("/api/conversations?sort=oldest", &admin.token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

/// Item 5: disabling an agent returns their conversations to the unassigned queue, as events.
async fn disabling_an_agent_unassigns_their_conversations(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("lead@example.com").await;
    let invitation = api.invite(&admin, "bob@example.com", "member").await;
    let bob = api.accept("bob@example.com", &invitation, "Bob").await;
    let mut bobs = Vec::new();
    for _ in 0..3 {
        let (id, _) = api.conversation(&admin.account_id).await;
        let (status, body) = api
            .patch(
                &format!("/api/conversations/{id}"),
                &admin.token,
                json!({"assignee_id": bob.user_id}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        bobs.push(id);
    }
    let (status, body) = api
        .patch(
            &format!("/api/conversations/{}", bobs[2]),
            &admin.token,
            json!({"status": "closed"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (mine, _) = api.conversation(&admin.account_id).await;
    api.patch(
        &format!("/api/conversations/{mine}"),
        &admin.token,
        json!({"assignee_id": admin.user_id}),
    )
    .await;

    let (status, body) = api
        .post(
            &format!("/api/users/{}/disable", bob.user_id),
            Some(&admin.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (_, unassigned) = api.get("/api/conversations?assignee=unassigned", &admin.token).await;
    let unassigned: BTreeSet<String> = ids(&unassigned).into_iter().collect();
    assert!(
        unassigned.contains(&bobs[0]) && unassigned.contains(&bobs[1]),
        "{unassigned:?}"
    );
    let (_, counts) = api.get("/api/conversations/count", &admin.token).await;
    assert_eq!(
        counts["data"]["unassigned"], 2,
        "the open ones are in the queue again: {counts}"
    );
    let (_, closed) = api.get(&format!("/api/conversations/{}", bobs[2]), &admin.token).await;
    assert_eq!(closed["data"]["assignee_id"], Value::Null, "closed ones too: {closed}");
    let (_, kept) = api.get(&format!("/api/conversations/{mine}"), &admin.token).await;
    assert_eq!(kept["data"]["assignee_id"], admin.user_id.as_str(), "others' stay");
    let (_, history) = api
        .get(&format!("/api/conversations/{}/history", bobs[0]), &admin.token)
        .await;
    let types: Vec<&str> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types.iter().filter(|t| **t == "AgentAssigned").count(), 2, "{types:?}");
}

/// Item 6: a length documented in characters holds in any script, on REST and on the socket.
async fn twenty_thousand_characters_of_any_script_are_accepted(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("lead@example.com").await;
    let (id, customer) = api.conversation(&admin.account_id).await;
    let emoji = "😀".repeat(20_000);
    let (status, body) = api
        .post(
            &format!("/api/conversations/{id}/messages"),
            Some(&admin.token),
            json!({"body": emoji}),
        )
        .await;
    let shown = body.to_string().chars().take(200).collect::<String>();
    assert_eq!(status, StatusCode::CREATED, "{shown}");
    assert_eq!(body["data"]["body"].as_str().unwrap().chars().count(), 20_000);
    // The same message with every character escaped as a surrogate pair (12 bytes each).
    let escaped: String = "\\ud83d\\ude00".repeat(20_000);
    let raw = format!("{{\"body\": \"{escaped}\"}}");
    let response = api
        .http
        .post(format!("{}/api/conversations/{id}/messages", api.base))
        .bearer_auth(&admin.token)
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    // One character more is refused by the rule, not by the byte limit.
    let (status, body) = api
        .post(
            &format!("/api/conversations/{id}/messages"),
            Some(&admin.token),
            json!({"body": "😀".repeat(20_001)}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // The socket: a shout of 20,000 emoji is saved, not closed with 1009.
    let mut socket = joined(&api, &customer, &id).await;
    let reply = shout_all(&mut socket, &id, &[(emoji.clone(), "big".to_owned())]).await;
    let shown = reply[0].to_string().chars().take(200).collect::<String>();
    assert_eq!(reply[0][4]["status"], "ok", "{shown}");
    assert_eq!(
        reply[0][4]["response"]["body"].as_str().unwrap().chars().count(),
        20_000
    );
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A socket joined to `conversation:<id>` with `token` (Phoenix V2 frames).
async fn joined(api: &Api, token: &str, id: &str) -> Socket {
    use futures_util::SinkExt;
    let url = format!(
        "{}/socket/websocket?vsn=2.0.0&token={token}",
        api.base.replace("http", "ws")
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let join = json!(["1", "1", format!("conversation:{id}"), "phx_join", {}]).to_string();
    socket.send(join.into()).await.unwrap();
    let reply = replies(&mut socket, &["1"]).await;
    assert_eq!(reply[0][4]["status"], "ok", "{:?}", reply);
    socket
}

/// Reads frames until each of `refs` has its reply; the replies in the order of `refs`.
async fn replies(socket: &mut Socket, refs: &[&str]) -> Vec<Value> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut found = std::collections::HashMap::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while found.len() < refs.len() {
            match socket.next().await.expect("the socket ended").unwrap() {
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    if frame[3] == "phx_reply"
                        && let Some(r) = frame[1].as_str()
                        && refs.contains(&r)
                    {
                        found.insert(r.to_owned(), frame);
                    }
                }
                Message::Close(close) => panic!("the socket was closed: {close:?}"),
                _ => {}
            }
        }
    })
    .await
    .expect("every push is answered");
    refs.iter().map(|r| found.remove(*r).unwrap()).collect()
}

/// Pushes every `(body, client_message_id)` as a `shout` at once; their replies.
async fn shout_all(socket: &mut Socket, id: &str, messages: &[(String, String)]) -> Vec<Value> {
    use futures_util::SinkExt;
    let refs: Vec<String> = (0..messages.len()).map(|i| format!("s{i}")).collect();
    for ((body, key), r) in messages.iter().zip(&refs) {
        let frame = json!(["1", r, format!("conversation:{id}"), "shout", {"body": body, "client_message_id": key}]);
        socket.feed(frame.to_string().into()).await.unwrap();
    }
    socket.flush().await.unwrap();
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    replies(socket, &refs).await
}

async fn post_all(api: &Api, id: &str, token: &str, who: &str, n: usize) -> Vec<(StatusCode, Value)> {
    join_all((0..n).map(|i| {
        let body = json!({"body": format!("{who} {i}"), "client_message_id": format!("{who}-{i}")});
        let path = format!("/api/conversations/{id}/messages");
        async move { api.call(Method::POST, &path, Some(token), Some(body)).await }
    }))
    .await
}

/// Items 7 and 10: a burst from both sides is stored whole, and stored order is time order.
async fn a_burst_from_both_sides_is_stored_whole_and_in_time_order(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("lead@example.com").await;
    let (id, customer) = api.conversation(&admin.account_id).await;
    let mut socket = joined(&api, &customer, &id).await;
    let mine: Vec<(String, String)> = (0..40)
        .map(|i| (format!("customer {i}"), format!("customer-{i}")))
        .collect();
    let (customers, agents) = tokio::join!(
        shout_all(&mut socket, &id, &mine),
        post_all(&api, &id, &admin.token, "agent", 40)
    );
    for reply in &customers {
        assert_eq!(reply[4]["status"], "ok", "{reply}");
    }
    for (status, body) in &agents {
        assert_eq!(*status, StatusCode::CREATED, "{body}");
    }
    let (_, page) = api
        .get(&format!("/api/conversations/{id}/messages?limit=1000"), &admin.token)
        .await;
    let messages = page["data"].as_array().unwrap();
    assert_eq!(messages.len(), 80);
    for m in messages {
        let body = m["body"].as_str().unwrap();
        let expected = if body.starts_with("customer") {
            "customer"
        } else {
            "agent"
        };
        assert_eq!(m["type"], expected, "attributed to its author: {m}");
    }
    let times: Vec<chrono::DateTime<chrono::Utc>> = messages
        .iter()
        .map(|m| m["sent_at"].as_str().unwrap().parse().unwrap())
        .collect();
    let backwards = times.windows(2).filter(|w| w[1] <= w[0]).count();
    assert_eq!(backwards, 0, "sent_at follows stored order: {times:?}");
}

/// Item 8: an idempotency key belongs to its author.
async fn an_agent_reusing_the_customers_key_is_still_saved(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("lead@example.com").await;
    let (id, customer) = api.conversation(&admin.account_id).await;
    let path = format!("/api/conversations/{id}/messages");
    let mut socket = joined(&api, &customer, &id).await;
    let hi = [("Hi".to_owned(), "m-1".to_owned())];
    let first = shout_all(&mut socket, &id, &hi).await.remove(0);
    assert_eq!(first[4]["status"], "ok", "{first}");
    let first = json!({"data": first[4]["response"]});
    let (status, agent) = api
        .post(
            &path,
            Some(&admin.token),
            json!({"body": "Hello, how can I help?", "client_message_id": "m-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{agent}");
    assert_eq!(agent["data"]["body"], "Hello, how can I help?");
    assert_eq!(agent["data"]["type"], "agent");
    // Each author's repeat still answers with their own message, saving nothing.
    let again = shout_all(&mut socket, &id, &hi).await.remove(0);
    assert_eq!(again[4]["response"]["id"], first["data"]["id"], "{again}");
    let (status, again) = api
        .post(
            &path,
            Some(&admin.token),
            json!({"body": "Hello, how can I help?", "client_message_id": "m-1"}),
        )
        .await;
    assert_eq!((status, &again["data"]["id"]), (StatusCode::OK, &agent["data"]["id"]));
    let (_, page) = api.get(&path, &admin.token).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
}

async fn new_customer(api: &Api, account: &str, external_id: &str) -> (StatusCode, Value) {
    api.post(
        "/api/customers",
        None,
        json!({"account_id": account, "external_id": external_id, "name": "Ada"}),
    )
    .await
}

/// Item 9: an external id is unique per account, also under concurrent creations.
async fn one_external_id_is_one_customer(db: &TestDb) {
    let api = Api::start(db).await;
    let admin: Session = api.register("lead@example.com").await;
    let other = api.register("other@example.com").await;
    let account = admin.account_id.as_str();
    let results = join_all((0..4).map(|_| new_customer(&api, account, "user-42"))).await;
    let created: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 1, "{results:?}");
    for (status, body) in results.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
        assert_eq!(*status, StatusCode::CONFLICT, "{body}");
    }
    let winner = created[0]["data"]["id"].as_str().unwrap();
    let (_, found) = api
        .call(
            Method::GET,
            &format!("/api/customers/identify?account_id={account}&external_id=user-42"),
            None,
            None,
        )
        .await;
    assert_eq!(found["data"]["customer_id"], winner);
    // Trimmed, as stored: " user-42 " is the same id.
    let (status, _) = new_customer(&api, account, " user-42 ").await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Another account has its own namespace.
    let (status, _) = new_customer(&api, &other.account_id, "user-42").await;
    assert_eq!(status, StatusCode::CREATED);
    // An agent cannot give another customer the id either.
    let (status, second) = new_customer(&api, account, "user-43").await;
    assert_eq!(status, StatusCode::CREATED);
    let second_id = second["data"]["id"].as_str().unwrap();
    let (status, body) = api
        .call(
            Method::PUT,
            &format!("/api/customers/{second_id}"),
            Some(&admin.token),
            Some(json!({"external_id": "user-42"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // Once the holder is deleted, the id is free again.
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/api/customers/{winner}"),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api
        .call(
            Method::PUT,
            &format!("/api/customers/{second_id}"),
            Some(&admin.token),
            Some(json!({"external_id": "user-42"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // …and the one it gave up is free.
    let (status, _) = new_customer(&api, account, "user-43").await;
    assert_eq!(status, StatusCode::CREATED);

    // A customer from before claims existed (written straight to the log, no claim) keeps its id.
    let legacy = netia_events::CustomerId::new();
    let create = netia_commands::CustomerCommand::Create {
        customer_id: legacy,
        account_id: account.parse().unwrap(),
        identity: netia_events::customer::CustomerIdentity {
            external_id: Some("legacy-7".into()),
            ..Default::default()
        },
        metadata: Default::default(),
        verified: false,
    };
    let meta = netia_events::Metadata::system("test");
    netia::command_bus::CommandBus::new(db.store.clone())
        .execute::<netia_commands::Customer>(legacy, create, &meta)
        .await
        .unwrap();
    let identify = format!("/api/customers/identify?account_id={account}&external_id=legacy-7");
    for _ in 0..100 {
        let (_, found) = api.call(Method::GET, &identify, None, None).await;
        if found["data"].is_object() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, body) = new_customer(&api, account, "legacy-7").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains(&legacy.to_string()),
        "{body}"
    );
}

/// Item 11: a conversation always belongs to an inbox.
async fn a_conversation_without_an_inbox_goes_to_the_primary_inbox(db: &TestDb) {
    let api = Api::start(db).await;
    let (status, registered) = api
        .post(
            "/api/registration",
            None,
            json!({"email": "lead@example.com", "password": "correct horse battery", "account_name": "Acme"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    let admin = common::api::session(&registered);
    let inbox = registered["data"]["inbox_id"].as_str().unwrap().to_owned();
    let (id, _) = api.conversation(&admin.account_id).await;
    let (_, conversation) = api.get(&format!("/api/conversations/{id}"), &admin.token).await;
    assert_eq!(conversation["data"]["inbox_id"], inbox.as_str());
    let (_, filtered) = api
        .get(&format!("/api/conversations?inbox_id={inbox}"), &admin.token)
        .await;
    assert_eq!(ids(&filtered), vec![id]);

    let (customer_id, token) = api.customer(&admin.account_id).await;
    let foreign = uuid::Uuid::now_v7().to_string();
    let (status, body) = api
        .post(
            "/api/conversations",
            Some(&token),
            json!({"account_id": admin.account_id, "customer_id": customer_id, "inbox_id": foreign}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = api
        .post(
            "/api/conversations",
            Some(&token),
            json!({"account_id": admin.account_id, "customer_id": customer_id, "inbox_id": inbox}),
        )
        .await;
    assert_eq!(
        (status, body["data"]["inbox_id"].as_str()),
        (StatusCode::CREATED, Some(inbox.as_str()))
    );

    // A conversation created before the rule (its event names no inbox) is read into the primary
    // inbox too (and so, after `netia projections rebuild inbox`, are all old ones).
    let old = netia_events::ConversationId::new();
    let created = netia_events::conversation::ConversationEvent::ConversationCreated(
        netia_events::conversation::ConversationCreated {
            conversation_id: old,
            account_id: admin.account_id.parse().unwrap(),
            customer_id: customer_id.parse().unwrap(),
            inbox_id: None,
            source: netia_events::conversation::Source::Chat,
            subject: None,
            created_at: chrono::Utc::now(),
        },
    );
    let meta = serde_json::to_value(netia_events::Metadata::system("test")).unwrap();
    let stream = netia_events::StreamRef::new("conversation", old);
    db.store
        .append(&stream, 0, netia_events::codec::encode(&[created], &meta).unwrap())
        .await
        .unwrap();
    let mut found = Value::Null;
    for _ in 0..100 {
        let (status, body) = api.get(&format!("/api/conversations/{old}"), &admin.token).await;
        if status == StatusCode::OK {
            found = body;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(found["data"]["inbox_id"], inbox.as_str(), "{found}");
}

on_both_backends!(
    a_traversal_by_creation_meets_every_conversation_once,
    disabling_an_agent_unassigns_their_conversations,
    twenty_thousand_characters_of_any_script_are_accepted,
    a_burst_from_both_sides_is_stored_whole_and_in_time_order,
    an_agent_reusing_the_customers_key_is_still_saved,
    one_external_id_is_one_customer,
    a_conversation_without_an_inbox_goes_to_the_primary_inbox,
);
