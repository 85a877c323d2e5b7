//! Slack against a fake Slack (wiremock) that checks requests the way Slack does (bearer token,
//! JSON or form body, required fields) and answers in Slack's shapes: the OAuth round trip (a
//! forged or expired `state` refused), the channel mapping, customer message → parent in the mapped
//! channel → agent replies in its thread, a signed thread reply → the agent's message on the
//! customer's socket (official `phoenix` client) with the bot stopped, unsigned/stale/tampered
//! events refused with nothing stored, Slack's retries deduplicated, 429 honoured, 500s parked as
//! `SlackPostFailed`; no secret in answers or in the log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::TestDb;
use common::api::{Api, SECRET_KEY, Session};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const CLIENT_ID: &str = "1234.5678";
const CLIENT_SECRET: &str = "slack-client-secret-0123456789";
const SIGNING_SECRET: &str = "slack-signing-secret-abcdef0123";
const BOT_TOKEN: &str = "xoxb-test-bot-token-9876543210";
const TEAM: &str = "T0ACME01";
const BOT_USER: &str = "U0NETIABOT";
const CHANNEL: &str = "C0SUPPORT";
/// The Slack user whose email is the admin's.
const AGENT_USER: &str = "U0AGENT01";

/// Slack's Web API as far as Netia uses it, checking what Slack checks.
struct FakeSlack {
    agent_email: String,
    next_ts: AtomicU64,
    posts: Mutex<Vec<Value>>,
    updates: Mutex<Vec<Value>>,
}

fn slack_error(code: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": code}))
}

impl Respond for FakeSlack {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let method = request.url.path().trim_start_matches('/').to_owned();
        if method == "oauth.v2.access" {
            let form: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(&request.body).into_owned().collect();
            if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
                || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
            {
                return slack_error("invalid_client_id");
            }
            if form.get("code").map(String::as_str) != Some("good-code") {
                return slack_error("invalid_code");
            }
            return ResponseTemplate::new(200).set_body_json(json!({
                "ok": true, "access_token": BOT_TOKEN, "token_type": "bot", "scope": "chat:write",
                "bot_user_id": BOT_USER, "app_id": "A0NETIA", "team": {"id": TEAM, "name": "Acme HQ"},
                "enterprise": null, "authed_user": {"id": AGENT_USER}
            }));
        }
        let auth = request.headers.get("authorization").and_then(|h| h.to_str().ok());
        match auth {
            None => return slack_error("not_authed"),
            Some(a) if a != format!("Bearer {BOT_TOKEN}") => return slack_error("invalid_auth"),
            Some(_) => {}
        }
        let content_type = request
            .headers
            .get("content-type")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        // Read methods take form arguments (Slack ignores a JSON body there); writes take JSON.
        let body: Value = if matches!(method.as_str(), "users.info" | "conversations.list") {
            if !content_type.starts_with("application/x-www-form-urlencoded") {
                return slack_error("invalid_arguments");
            }
            let form: serde_json::Map<String, Value> = url::form_urlencoded::parse(&request.body)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect();
            Value::Object(form)
        } else {
            if !content_type.starts_with("application/json") {
                return slack_error("invalid_form_data");
            }
            let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
                return slack_error("invalid_json");
            };
            body
        };
        match method.as_str() {
            "conversations.list" if body["types"] != "public_channel,private_channel" => slack_error("invalid_types"),
            "conversations.list" => ResponseTemplate::new(200).set_body_json(json!({
                "ok": true,
                "channels": [
                    {"id": CHANNEL, "name": "support", "is_private": false, "is_member": true},
                    {"id": "C0RANDOM", "name": "random", "is_private": false, "is_member": false}
                ],
                "response_metadata": {"next_cursor": ""}
            })),
            "chat.postMessage" => {
                let (Some(channel), Some(_)) = (body["channel"].as_str(), body["text"].as_str()) else {
                    return slack_error("invalid_arguments");
                };
                if channel != CHANNEL {
                    return slack_error("channel_not_found");
                }
                let ts = format!("1700000000.{:06}", self.next_ts.fetch_add(1, Ordering::SeqCst) + 100);
                let mut post = body.clone();
                post["ts"] = json!(ts);
                self.posts.lock().unwrap().push(post);
                ResponseTemplate::new(200).set_body_json(json!({"ok": true, "channel": channel, "ts": ts,
                    "message": {"text": body["text"], "ts": ts}}))
            }
            "chat.update" => {
                let (Some(_), Some(ts), Some(_)) =
                    (body["channel"].as_str(), body["ts"].as_str(), body["text"].as_str())
                else {
                    return slack_error("invalid_arguments");
                };
                if !self.posts.lock().unwrap().iter().any(|p| p["ts"] == ts) {
                    return slack_error("message_not_found");
                }
                self.updates.lock().unwrap().push(body.clone());
                ResponseTemplate::new(200).set_body_json(json!({"ok": true, "channel": body["channel"], "ts": ts}))
            }
            "users.info" => match body["user"].as_str() {
                Some(AGENT_USER) => ResponseTemplate::new(200).set_body_json(json!({"ok": true,
                    "user": {"id": AGENT_USER, "profile": {"email": self.agent_email, "real_name": "Ada"}}})),
                Some(_) => ResponseTemplate::new(200).set_body_json(json!({"ok": true,
                    "user": {"id": "U0STRANGER", "name": "sam", "profile": {"email": "stranger@elsewhere.example", "display_name": "", "real_name": "Sam Stranger"}}})),
                None => slack_error("user_not_found"),
            },
            _ => slack_error("unknown_method"),
        }
    }
}

struct World {
    api: Api,
    admin: Session,
    slack: MockServer,
    fake: std::sync::Arc<FakeSlack>,
}

/// The fake, shared between the mock server and the test.
struct Shared(std::sync::Arc<FakeSlack>);

impl Respond for Shared {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.0.respond(request)
    }
}

impl World {
    fn posts(&self) -> Vec<Value> {
        self.fake.posts.lock().unwrap().clone()
    }

    async fn wait_posts(&self, n: usize) -> Vec<Value> {
        let started = Instant::now();
        while self.posts().len() < n && started.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.posts()
    }
}

/// The settings of a server whose Slack is the fake at `base`.
fn slack_vars(base: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SLACK_CLIENT_ID", CLIENT_ID.to_owned()),
        ("SLACK_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
        ("SLACK_SIGNING_SECRET", SIGNING_SECRET.to_owned()),
        ("NETIA_PUBLIC_URL", "https://support.acme.example".to_owned()),
        ("SLACK_API_BASE_URL", base.to_owned()),
        ("SLACK_OAUTH_URL", format!("{base}/oauth/v2/authorize")),
    ]
}

/// A server whose Slack is the fake; `extra` settings; `before` mounts run first (they win).
async fn world(db: &TestDb, extra: &[(&str, &str)], before: Vec<Mock>) -> World {
    let slack = MockServer::start().await;
    for mock in before {
        slack.register(mock).await;
    }
    let owned = slack_vars(&slack.uri());
    let mut vars: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    vars.extend_from_slice(extra);
    let api = Api::start_with(db, &vars).await;
    with_fake(api, slack).await
}

/// Registers an admin on `api` and mounts the fake (knowing the admin's email) on `slack`.
async fn with_fake(api: Api, slack: MockServer) -> World {
    let email = format!("admin-{}@example.com", uuid::Uuid::now_v7().simple());
    let admin = api.register(&email).await;
    let fake = std::sync::Arc::new(FakeSlack {
        agent_email: email,
        next_ts: AtomicU64::new(0),
        posts: Mutex::new(Vec::new()),
        updates: Mutex::new(Vec::new()),
    });
    Mock::given(method("POST"))
        .respond_with(Shared(fake.clone()))
        .mount(&slack)
        .await;
    World {
        api,
        admin,
        slack,
        fake,
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Links the fake workspace through the OAuth round trip and maps the inbox to `CHANNEL`.
/// Starts an install as `token`'s browser would: the authorize URL's parameters and the cookie
/// (`name=value`) that binds the install to that browser.
async fn start_install(w: &World, token: &str) -> (std::collections::HashMap<String, String>, String) {
    let answer = w
        .api
        .http
        .get(format!("{}/api/slack/oauth/start", w.api.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let set_cookie = answer.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.contains("HttpOnly")
            && set_cookie.contains("SameSite=Lax")
            && set_cookie.contains("Path=/api/slack/oauth"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let started: Value = answer.json().await.unwrap();
    let url = reqwest::Url::parse(started["data"]["url"].as_str().unwrap()).unwrap();
    assert_eq!(url.path(), "/oauth/v2/authorize");
    (url.query_pairs().into_owned().collect(), cookie)
}

/// Slack's redirect back to the callback, from a browser with `cookie` (if any).
async fn callback(w: &World, code: &str, state: &str, cookie: Option<&str>) -> reqwest::Response {
    let url = format!("{}/api/slack/oauth?code={code}&state={}", w.api.base, urlencode(state));
    let mut request = no_redirects().get(url);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.unwrap()
}

async fn link(w: &World) {
    let (params, cookie) = start_install(w, &w.admin.token).await;
    assert_eq!(params["client_id"], CLIENT_ID);
    assert!(params["scope"].contains("chat:write") && params["scope"].contains("users:read.email"));
    assert_eq!(params["redirect_uri"], "https://support.acme.example/api/slack/oauth");
    let answer = callback(w, "good-code", &params["state"], Some(&cookie)).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(answer.headers()["location"], "/#integrations");
    let (_, status) = w.api.get("/api/slack", &w.admin.token).await;
    assert_eq!(status["data"]["installed"], true, "{status}");
    assert_eq!(status["data"]["team_id"], TEAM);
    let (status_code, channels) = w.api.get("/api/slack/channels", &w.admin.token).await;
    assert_eq!(status_code, StatusCode::OK, "{channels}");
    assert_eq!(channels["data"][0]["id"], CHANNEL);
    let inbox = status["data"]["inbox_id"].as_str().unwrap().to_owned();
    let (status_code, mapped) = w
        .api
        .call(
            reqwest::Method::PUT,
            "/api/slack/mapping",
            Some(&w.admin.token),
            Some(json!({"inbox_id": inbox, "channel_id": CHANNEL})),
        )
        .await;
    assert_eq!(status_code, StatusCode::OK, "{mapped}");
    assert_eq!(mapped["data"]["mappings"][0]["channel_id"], CHANNEL);
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A customer message in a new conversation of the admin's account (as the widget posts it).
async fn customer_says(w: &World, db: &TestDb, text: &str) -> (String, String) {
    let (conversation, token) = w.api.conversation(&w.admin.account_id).await;
    customer_says_in(w, db, &conversation, text).await;
    (conversation, token)
}

async fn customer_says_in(w: &World, db: &TestDb, conversation: &str, text: &str) {
    common::api::customer_says(&w.api, &w.admin, &db.store, conversation, text).await;
}

/// Sends `body` to `/api/slack/events` signed as Slack signs (`secret`, timestamp `t`).
async fn send_event(w: &World, body: &str, secret: &str, t: i64) -> StatusCode {
    let signature = netia::channels::slack::signature::sign(secret, t, body.as_bytes());
    w.api
        .http
        .post(format!("{}/api/slack/events", w.api.base))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", t.to_string())
        .header("x-slack-signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
}

fn reply_event(event_id: &str, thread_ts: &str, user: &str, text: &str) -> String {
    json!({
        "token": "legacy", "team_id": TEAM, "api_app_id": "A0NETIA", "type": "event_callback",
        "event_id": event_id, "event_time": 1_700_000_100,
        "event": {"type": "message", "channel": CHANNEL, "user": user, "text": text,
                  "ts": format!("1700000100.{}", &event_id[event_id.len() - 6..]), "thread_ts": thread_ts,
                  "channel_type": "channel"}
    })
    .to_string()
}

async fn messages(w: &World, conversation: &str) -> Vec<Value> {
    let (_, body) = w
        .api
        .get(&format!("/api/conversations/{conversation}/messages"), &w.admin.token)
        .await;
    body["data"].as_array().cloned().unwrap_or_default()
}

async fn the_oauth_round_trip_refuses_forged_and_expired_states(db: &TestDb) {
    let w = world(db, &[], vec![]).await;
    let forged = callback(&w, "good-code", "v1.forged", Some("netia_slack_oauth=00")).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let key = netia::secrets::parse_key(SECRET_KEY).unwrap();
    let sealer = netia::secrets::Sealer::new(&key);
    let (expired, nonce) = netia::channels::oauth_state::issue(
        netia::channels::oauth_state::SLACK,
        &sealer,
        w.admin.account_id.parse().unwrap(),
        w.admin.user_id.parse().unwrap(),
        chrono::Utc::now() - chrono::TimeDelta::minutes(11),
    )
    .unwrap();
    let cookie = format!("netia_slack_oauth={nonce}");
    let answer = callback(&w, "good-code", &expired, Some(&cookie)).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    assert!(answer.text().await.unwrap().contains("expired"));
    // A valid install link opened in another browser (no cookie, or another install's): refused.
    let (params, cookie) = start_install(&w, &w.admin.token).await;
    let answer = callback(&w, "good-code", &params["state"], None).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    assert!(answer.text().await.unwrap().contains("another browser"));
    let (_, other_cookie) = start_install(&w, &w.admin.token).await;
    let answer = callback(&w, "good-code", &params["state"], Some(&other_cookie)).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    let (_, status) = w.api.get("/api/slack", &w.admin.token).await;
    assert_eq!(status["data"]["installed"], false, "nothing linked by a refused state");
    // A bad code is Slack's refusal (422); a member cannot start an install.
    let bad = callback(&w, "bad", &params["state"], Some(&cookie)).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let invitation = w.api.invite(&w.admin, "member@example.com", "member").await;
    let member = w.api.accept("member@example.com", &invitation, "Mo").await;
    let (status_code, _) = w.api.get("/api/slack/oauth/start", &member.token).await;
    assert_eq!(status_code, StatusCode::FORBIDDEN);

    link(&w).await;
    let (_, status) = w.api.get("/api/slack", &w.admin.token).await;
    assert!(
        !status.to_string().contains("xoxb"),
        "the token is never shown: {status}"
    );
    let leaked = db
        .count(&format!(
            "SELECT count(*) FROM events WHERE CAST(payload AS TEXT) LIKE '%{BOT_TOKEN}%' \
             OR CAST(payload AS TEXT) LIKE '%{CLIENT_SECRET}%' OR CAST(payload AS TEXT) LIKE '%{SIGNING_SECRET}%'"
        ))
        .await;
    assert_eq!(leaked, 0, "no secret in the log");
}

/// A fake OpenAI-compatible model that always answers `text`.
async fn model(text: &str) -> MockServer {
    let model = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "test-model",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        })))
        .mount(&model)
        .await;
    model
}

async fn conversations_are_mirrored_and_thread_replies_come_back(db: &TestDb) {
    let model = model("Have you tried **oiling** it?").await;
    let llm = format!("{}/v1", model.uri());
    let w = world(
        db,
        &[("LLM_BASE_URL", llm.as_str()), ("LLM_MODEL", "test-model")],
        vec![],
    )
    .await;
    w.api.enable_ai(&w.admin.token).await;
    link(&w).await;
    let (conversation, customer_token) = customer_says(&w, db, "My **chain** broke").await;
    // The parent, then the bot's answer in its thread.
    let posts = w.wait_posts(2).await;
    assert_eq!(posts.len(), 2, "{posts:?}");
    let parent = &posts[0];
    assert_eq!(parent["channel"], CHANNEL);
    assert!(parent.get("thread_ts").is_none());
    let text = parent["text"].as_str().unwrap();
    assert!(
        // The customer's words are shown as written, never turned into Slack markup.
        text.contains("Ada (ada@example.com)") && text.contains("My **chain** broke"),
        "{text}"
    );
    assert!(
        text.contains(&format!("https://support.acme.example/#conversation={conversation}")),
        "{text}"
    );
    let thread = parent["ts"].as_str().unwrap().to_owned();
    assert_eq!(posts[1]["thread_ts"], thread.as_str());
    assert_eq!(posts[1]["text"], "*Bot*: Have you tried *oiling* it?");

    // An agent's reply in Netia goes into the thread; a private note does not.
    let (status, _) = w
        .api
        .post(
            &format!("/api/conversations/{conversation}/messages"),
            Some(&w.admin.token),
            json!({"body": "On it, see [the guide](https://acme.example/chains)"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = w
        .api
        .post(
            &format!("/api/conversations/{conversation}/messages"),
            Some(&w.admin.token),
            json!({"body": "internal only", "private": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    w.wait_posts(3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let posts = w.posts();
    assert_eq!(posts.len(), 3, "the note is never posted: {posts:?}");
    assert_eq!(posts[2]["thread_ts"], thread.as_str());
    assert!(
        posts[2]["text"]
            .as_str()
            .unwrap()
            .contains("<https://acme.example/chains|the guide>")
    );

    // A reply typed in the Slack thread reaches the customer's socket (the official client).
    let expected = "Fixed: **new chain** fitted";
    let listener = common::nodes::spawn_script_joined(
        "slack_reply.mjs",
        &[
            ("NETIA_URL", w.api.base.as_str()),
            ("CUSTOMER_TOKEN", customer_token.as_str()),
            ("CONVERSATION_ID", conversation.as_str()),
            ("EXPECTED_BODY", expected),
        ],
    )
    .await;
    let now = chrono::Utc::now().timestamp();
    let event = reply_event("Ev0REPLY000001", &thread, AGENT_USER, "Fixed: *new chain* fitted");
    // Slack retries (X-Slack-Retry-Num) the same event: one message.
    for _ in 0..3 {
        assert_eq!(send_event(&w, &event, SIGNING_SECRET, now).await, StatusCode::OK);
    }
    tokio::time::timeout(Duration::from_secs(30), listener)
        .await
        .expect("the customer's socket got the reply")
        .expect("the phoenix client saw it");
    let all = messages(&w, &conversation).await;
    let from_slack: Vec<&Value> = all.iter().filter(|m| m["type"] == "slack").collect();
    assert_eq!(from_slack.len(), 1, "three deliveries, one message: {all:?}");
    assert_eq!(from_slack[0]["body"], expected);
    assert_eq!(from_slack[0]["user_id"], w.admin.user_id.as_str());
    // The bot stops: the customer's next message gets no bot answer (it is mirrored, though).
    customer_says_in(
        &w,
        db,
        &conversation,
        "Thanks! <!channel> [Reset](https://evil.example)",
    )
    .await;
    let posted = w.wait_posts(4).await;
    assert_eq!(posted.len(), 4, "{posted:?}");
    let thanks = posted[3]["text"].as_str().unwrap();
    assert!(
        thanks.ends_with("Thanks! &lt;!channel&gt; [Reset](https://evil.example)"),
        "no mention, no labelled link from a customer: {thanks}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let bot = db
        .count(&format!(
            "SELECT count(*) FROM events WHERE stream_id = '{conversation}' AND event_type = 'BotMessagePosted'"
        ))
        .await;
    assert_eq!(bot, 1, "after an agent's Slack reply the bot stays silent");
    let all = messages(&w, &conversation).await;

    // Wrong secret, stale timestamp, tampered body: 401, nothing stored.
    let other = reply_event("Ev0REPLY000002", &thread, AGENT_USER, "forged");
    assert_eq!(
        send_event(&w, &other, "wrong-secret", now).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send_event(&w, &other, SIGNING_SECRET, now - 301).await,
        StatusCode::UNAUTHORIZED
    );
    let signature = netia::channels::slack::signature::sign(SIGNING_SECRET, now, other.as_bytes());
    let tampered = other.replace("forged", "tampered");
    let answer = w
        .api
        .http
        .post(format!("{}/api/slack/events", w.api.base))
        .header("x-slack-request-timestamp", now.to_string())
        .header("x-slack-signature", signature)
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let unsigned = w
        .api
        .http
        .post(format!("{}/api/slack/events", w.api.base))
        .body(other.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(messages(&w, &conversation).await.len(), all.len(), "nothing stored");

    // url_verification is answered; the bot's own messages and strangers' are not taken as agents'.
    let challenge = json!({"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}).to_string();
    let signature = netia::channels::slack::signature::sign(SIGNING_SECRET, now, challenge.as_bytes());
    let answer: Value = w
        .api
        .http
        .post(format!("{}/api/slack/events", w.api.base))
        .header("x-slack-request-timestamp", now.to_string())
        .header("x-slack-signature", signature)
        .body(challenge)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    let ours = reply_event("Ev0REPLY000003", &thread, BOT_USER, "echo");
    assert_eq!(send_event(&w, &ours, SIGNING_SECRET, now).await, StatusCode::OK);
    assert_eq!(
        messages(&w, &conversation).await.len(),
        all.len(),
        "our own post is no message"
    );

    // A workspace member who is no Netia agent answers as a named external agent: the customer
    // gets it, the thread is not sent it back, and the member still may not press the buttons.
    let posts_before = w.posts().len();
    let stranger = reply_event("Ev0REPLY000004", &thread, "U0STRANGER", "I can help *too*");
    assert_eq!(send_event(&w, &stranger, SIGNING_SECRET, now).await, StatusCode::OK);
    assert_eq!(send_event(&w, &stranger, SIGNING_SECRET, now).await, StatusCode::OK);
    let after = messages(&w, &conversation).await;
    assert_eq!(after.len(), all.len() + 1, "one message, however often Slack sends it");
    let external = after.last().unwrap();
    assert_eq!(external["body"], "I can help **too**");
    assert_eq!(external["type"], "slack");
    assert_eq!(external["author_name"], "Sam Stranger");
    assert!(
        external["user_id"].is_null() && external["customer_id"].is_null(),
        "{external}"
    );
    let logged = common::all_events(&*db.store).await.into_iter().any(|e| {
        e.stream_id == conversation
            && e.payload["author"]
                == json!({"kind": "external_agent", "name": "Sam Stranger", "channel_user_id": "U0STRANGER"})
    });
    assert!(logged, "the log names the external agent and their Slack user id");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        w.posts().len(),
        posts_before,
        "a reply from Slack is not posted back to Slack"
    );
}

async fn rate_limits_are_waited_out_and_failures_parked(db: &TestDb) {
    // The first post is rate-limited once (Retry-After: 1): posted once, after the wait.
    let limited = Mock::given(method("POST"))
        .and(path("/chat.postMessage"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1);
    let w = world(
        db,
        &[("BUS_MAX_ATTEMPTS", "3"), ("BUS_RETRY_BASE_MS", "50")],
        vec![limited],
    )
    .await;
    link(&w).await;
    let started = Instant::now();
    customer_says(&w, db, "Hello?").await;
    let posts = w.wait_posts(1).await;
    assert_eq!(posts.len(), 1);
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After was honoured");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.posts().len(), 1, "posted once");

    // Slack failing with 500 on every attempt: parked, recorded as SlackPostFailed.
    let failing = Mock::given(method("POST"))
        .and(path("/chat.postMessage"))
        .respond_with(ResponseTemplate::new(500))
        .with_priority(1);
    w.slack.register(failing).await;
    // An agent's dashboard listens on events:<account> for the failure notice.
    let notice = {
        let url = format!(
            "{}/socket/websocket?vsn=2.0.0&token={}",
            w.api.base.replace("http", "ws"),
            w.admin.token
        );
        let topic = format!("events:{}", w.admin.account_id);
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        use futures_util::{SinkExt, StreamExt};
        let join = json!(["1", "1", topic, "phx_join", {}]).to_string();
        socket.send(join.into()).await.unwrap();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = socket.next().await {
                let Ok(text) = frame.into_text() else { continue };
                let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if frame[3] == "event" && frame[4]["type"] == "slack_post_failed" {
                    return frame[4].clone();
                }
            }
            Value::Null
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (conversation, _) = customer_says(&w, db, "Anyone there?").await;
    let started = Instant::now();
    let mut failed = 0;
    while failed == 0 && started.elapsed() < Duration::from_secs(20) {
        failed = db
            .count(&format!(
                "SELECT count(*) FROM events WHERE stream_id = '{conversation}' AND event_type = 'SlackPostFailed'"
            ))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(failed, 1, "SlackPostFailed recorded once");
    let pushed = tokio::time::timeout(Duration::from_secs(10), notice)
        .await
        .expect("the notice reached the agent's socket")
        .unwrap();
    assert_eq!(pushed["conversation_id"], conversation.as_str(), "{pushed}");
    assert!(pushed["error"].as_str().unwrap().contains("500"), "{pushed}");
    let parked = db
        .count("SELECT count(*) FROM consumer_parked WHERE consumer = 'slack'")
        .await;
    assert_eq!(parked, 1);
    let attempts = w
        .slack
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/chat.postMessage")
        .count();
    assert_eq!(
        attempts,
        1 + 1 + 3,
        "the 429, the post, and BUS_MAX_ATTEMPTS failed attempts"
    );
}

/// Sends a `block_actions` payload to `/api/slack/actions` (form-encoded, signed as Slack signs).
async fn click(w: &World, user: &str, action: &str, conversation: &str, ts: &str, secret: &str) -> StatusCode {
    let payload = json!({
        "type": "block_actions", "team": {"id": TEAM}, "user": {"id": user}, "channel": {"id": CHANNEL},
        "message": {"ts": ts, "text": "New conversation", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*New conversation* from Ada"}}]},
        "actions": [{"action_id": action, "block_id": "netia_conversation", "value": conversation, "type": "button"}]
    });
    let body = format!("payload={}", urlencode(&payload.to_string()));
    let t = chrono::Utc::now().timestamp();
    let signature = netia::channels::slack::signature::sign(secret, t, body.as_bytes());
    w.api
        .http
        .post(format!("{}/api/slack/actions", w.api.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", t.to_string())
        .header("x-slack-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
}

async fn the_parent_messages_buttons_change_the_conversation(db: &TestDb) {
    let w = world(db, &[], vec![]).await;
    link(&w).await;
    let (conversation, _) = customer_says(&w, db, "Where is my parcel?").await;
    let parent = w.wait_posts(1).await[0].clone();
    let ts = parent["ts"].as_str().unwrap().to_owned();
    let buttons: Vec<&str> = parent["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| {
            b["elements"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["action_id"].as_str().unwrap())
        })
        .collect();
    assert_eq!(buttons, ["netia_close", "netia_reopen", "netia_assign_me"], "{parent}");
    let status_of = || {
        let (api, token, id) = (&w.api, w.admin.token.clone(), conversation.clone());
        async move { api.get(&format!("/api/conversations/{id}"), &token).await.1["data"].clone() }
    };

    // Unsigned or by a stranger: nothing changes.
    assert_eq!(
        click(&w, AGENT_USER, "netia_close", &conversation, &ts, "wrong").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        click(&w, "U0STRANGER", "netia_close", &conversation, &ts, SIGNING_SECRET).await,
        StatusCode::OK
    );
    assert_eq!(status_of().await["status"], "open");
    // On another message than the conversation's parent: nothing either.
    assert_eq!(
        click(&w, AGENT_USER, "netia_close", &conversation, "1.000001", SIGNING_SECRET).await,
        StatusCode::OK
    );
    assert_eq!(status_of().await["status"], "open");

    assert_eq!(
        click(&w, AGENT_USER, "netia_assign_me", &conversation, &ts, SIGNING_SECRET).await,
        StatusCode::OK
    );
    assert_eq!(
        click(&w, AGENT_USER, "netia_close", &conversation, &ts, SIGNING_SECRET).await,
        StatusCode::OK
    );
    let now = status_of().await;
    assert_eq!(now["status"], "closed", "{now}");
    assert_eq!(now["assignee_id"], w.admin.user_id.as_str());
    let updates = w.fake.updates.lock().unwrap().clone();
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert!(
        updates
            .iter()
            .all(|u| u["ts"] == ts.as_str() && u["channel"] == CHANNEL)
    );
    let context = updates[1]["blocks"].to_string();
    assert!(context.contains("Closed by") && context.contains("closed"), "{context}");
    assert_eq!(
        click(&w, AGENT_USER, "netia_reopen", &conversation, &ts, SIGNING_SECRET).await,
        StatusCode::OK
    );
    assert_eq!(status_of().await["status"], "open");
}

/// Slack's signed callbacks are not rate-limited per address (Slack sends a busy workspace's events
/// from a few addresses); the rest of the public API still is.
async fn slack_callbacks_are_not_limited_per_address(db: &TestDb) {
    let w = world(db, &[("RATE_LIMIT_IP_PER_MINUTE", "3")], vec![]).await;
    let challenge = json!({"token": "t", "challenge": "c", "type": "url_verification"}).to_string();
    for _ in 0..10 {
        let status = send_event(&w, &challenge, SIGNING_SECRET, chrono::Utc::now().timestamp()).await;
        assert_eq!(status, StatusCode::OK);
    }
    let mut limited = false;
    for _ in 0..5 {
        let (status, _) = w
            .api
            .post("/api/customers", None, json!({"account_id": w.admin.account_id}))
            .await;
        limited |= status == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited, "the widget's calls are still limited");
}

/// The released binary at `RUST_LOG=debug`, through an install, a mirrored conversation, a thread
/// reply and a webhook delivery: no bot token, client secret, signing secret or webhook secret in
/// what it logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_reaches_the_log() {
    let Some(db) = TestDb::postgres().await else { return };
    let slack = MockServer::start().await;
    let port = common::nodes::free_port();
    let log_path = std::env::temp_dir().join(format!("netia-secrets-{port}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut vars = slack_vars(&slack.uri());
    vars.push(("WEBHOOK_ALLOW_PRIVATE", "1".to_owned()));
    let mut node = tokio::process::Command::new(env!("CARGO_BIN_EXE_netia"))
        .arg("serve")
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .env("NETIA_SECRET_KEY", SECRET_KEY)
        .env("DATABASE_URL", &db.url)
        .env("PORT", port.to_string())
        .env("RUST_LOG", "debug")
        .env("LOG_FORMAT", "json")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if reqwest::get(format!("{base}/health/ready"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let api = Api {
        base,
        http: reqwest::Client::new(),
    };
    let w = with_fake(api, slack).await;
    link(&w).await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let (status, created) = w
        .api
        .post(
            "/api/event_subscriptions",
            Some(&w.admin.token),
            json!({"url": receiver.uri(), "events": ["message:created"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let webhook_secret = created["data"]["secret"].as_str().unwrap().to_owned();
    let (conversation, _) = customer_says(&w, &db, "Is my order shipped?").await;
    let parent = w.wait_posts(1).await;
    let thread = parent[0]["ts"].as_str().unwrap().to_owned();
    let event = reply_event("Ev0SECRETS0001", &thread, AGENT_USER, "Yes, today");
    assert_eq!(
        send_event(&w, &event, SIGNING_SECRET, chrono::Utc::now().timestamp()).await,
        StatusCode::OK
    );
    let started = Instant::now();
    while receiver.received_requests().await.unwrap_or_default().len() < 2
        && started.elapsed() < Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(messages(&w, &conversation).await.iter().any(|m| m["type"] == "slack"));
    node.start_kill().unwrap();
    let _ = node.wait().await;
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(logged.lines().count() > 20, "the node logged at debug level: {logged}");
    for secret in [BOT_TOKEN, CLIENT_SECRET, SIGNING_SECRET, webhook_secret.as_str()] {
        assert!(!logged.contains(secret), "{secret} is in the log");
    }
    let _ = std::fs::remove_file(&log_path);
    db.cleanup().await;
}

on_both_backends!(
    the_oauth_round_trip_refuses_forged_and_expired_states,
    conversations_are_mirrored_and_thread_replies_come_back,
    rate_limits_are_waited_out_and_failures_parked,
    the_parent_messages_buttons_change_the_conversation,
    slack_callbacks_are_not_limited_per_address,
);
