//! Gmail against a fake Google (wiremock) that checks requests the way Google does — the token
//! endpoint's client id, secret, code, redirect URI and refresh token; the Gmail API's bearer
//! token; `threadId` and raw MIME on send — and keeps a mailbox with a history: the OAuth round
//! trip (forged state, other browser → 403; the refresh token never answered nor in the log), a
//! history page of 3 new messages in 2 threads → 2 conversations (source `gmail`), the agent's
//! reply → `users.messages.send` in the thread with threading headers (and that sent message is
//! not taken back as the customer's), an expired access token → refreshed and the call retried,
//! an expired history id → a resync of the last days without duplicates, mail that arrived while
//! nobody synced → caught up once; no Google secret in answers, events or the server's log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use common::TestDb;
use common::api::{Api, Session};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const CLIENT_ID: &str = "1234-netia.apps.googleusercontent.com";
const CLIENT_SECRET: &str = "GOCSPX-test-client-secret";
const REFRESH_TOKEN: &str = "1//0refresh-token-that-must-never-leak";
const MAILBOX: &str = "support@acme.example";
const PUBLIC_URL: &str = "https://support.acme.example";

/// One message of the fake mailbox.
#[derive(Clone)]
struct Stored {
    id: String,
    thread_id: String,
    labels: Vec<&'static str>,
    raw: Vec<u8>,
    history_id: u64,
}

#[derive(Default)]
struct Mailbox {
    messages: Vec<Stored>,
    /// History records: (id, the record's JSON).
    records: Vec<(u64, Value)>,
    /// Refresh tokens revoked at `/revoke`.
    revoked: Vec<String>,
    history_id: u64,
    /// History before this id is gone (a `startHistoryId` below it answers 404).
    oldest_history: u64,
    /// Access tokens Gmail accepts now.
    valid_tokens: BTreeSet<String>,
    refreshes: usize,
    /// Bodies of `users.messages.send` calls: (threadId, raw).
    sent: Vec<(String, String)>,
    /// `users.messages.list` calls (resyncs).
    lists: usize,
}

struct FakeGoogle(Arc<Mutex<Mailbox>>);

fn google_error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"error": {"code": status, "message": message, "status": "X"}}))
}

impl Mailbox {
    fn add(&mut self, id: &str, thread_id: &str, labels: Vec<&'static str>, raw: Vec<u8>) {
        self.history_id += 7;
        self.records.push((
            self.history_id,
            json!({"id": self.history_id.to_string(), "messages": [{"id": id, "threadId": thread_id}],
                "messagesAdded": [{"message": {"id": id, "threadId": thread_id, "labelIds": labels}}]}),
        ));
        self.messages.push(Stored {
            id: id.to_owned(),
            thread_id: thread_id.to_owned(),
            labels,
            raw,
            history_id: self.history_id,
        });
    }

    /// Moves message `id` to the inbox (out of spam, say): a `labelsAdded` record.
    fn move_to_inbox(&mut self, id: &str) {
        self.history_id += 7;
        let message = self.messages.iter_mut().find(|m| m.id == id).unwrap();
        message.labels = vec!["INBOX"];
        let thread = message.thread_id.clone();
        self.records.push((
            self.history_id,
            json!({"id": self.history_id.to_string(), "messages": [{"id": id, "threadId": thread}],
                "labelsAdded": [{"message": {"id": id, "threadId": thread, "labelIds": ["INBOX"]}, "labelIds": ["INBOX"]}]}),
        ));
    }

    fn token(&mut self, form: &HashMap<String, String>, redirect: &str) -> ResponseTemplate {
        if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
            || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
        {
            return ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client"}));
        }
        let grant = form.get("grant_type").map(String::as_str);
        let accepted = match grant {
            Some("authorization_code") => {
                matches!(
                    form.get("code").map(String::as_str),
                    Some("good-code" | "readonly-code")
                ) && form.get("redirect_uri").map(String::as_str) == Some(redirect)
            }
            Some("refresh_token") => form.get("refresh_token").map(String::as_str) == Some(REFRESH_TOKEN),
            _ => false,
        };
        if !accepted {
            return ResponseTemplate::new(400)
                .set_body_json(json!({"error": "invalid_grant", "error_description": "Bad Request"}));
        }
        self.refreshes += usize::from(grant == Some("refresh_token"));
        let access = format!("ya29.access-{}", self.refreshes);
        self.valid_tokens.insert(access.clone());
        // The admin may untick a scope on Google's consent page.
        let scope = if form.get("code").map(String::as_str) == Some("readonly-code") {
            "https://www.googleapis.com/auth/gmail.readonly"
        } else {
            netia::channels::gmail::SCOPES
        };
        let mut answer = json!({"access_token": access, "expires_in": 3599, "scope": scope, "token_type": "Bearer"});
        if grant == Some("authorization_code") {
            answer["refresh_token"] = json!(REFRESH_TOKEN);
        }
        ResponseTemplate::new(200).set_body_json(answer)
    }

    fn gmail(&mut self, request: &Request) -> ResponseTemplate {
        let bearer = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !self.valid_tokens.contains(bearer) {
            return google_error(401, "Request had invalid authentication credentials.");
        }
        let query: HashMap<String, String> = request.url.query_pairs().into_owned().collect();
        let path = request.url.path().trim_start_matches("/gmail/v1/users/me").to_owned();
        match (request.method.as_str(), path.as_str()) {
            ("GET", "/profile") => ResponseTemplate::new(200).set_body_json(json!({
                "emailAddress": MAILBOX, "messagesTotal": self.messages.len(), "threadsTotal": 2,
                "historyId": self.history_id.to_string()
            })),
            ("GET", "/history") => {
                let start: u64 = query["startHistoryId"].parse().unwrap();
                let types: Vec<String> = request
                    .url
                    .query_pairs()
                    .filter(|(k, _)| k == "historyTypes")
                    .map(|(_, v)| v.into_owned())
                    .collect();
                assert_eq!(types, vec!["messageAdded", "labelAdded"]);
                if start < self.oldest_history {
                    return google_error(404, "Requested entity was not found.");
                }
                // Pages of two records, to make the client follow nextPageToken.
                let records: Vec<Value> = self
                    .records
                    .iter()
                    .filter(|(id, _)| *id > start)
                    .map(|(_, record)| record.clone())
                    .collect();
                let skip: usize = query.get("pageToken").map_or(0, |t| t.parse().unwrap());
                let page: Vec<Value> = records.iter().skip(skip).take(2).cloned().collect();
                let mut answer = json!({"historyId": self.history_id.to_string()});
                if !page.is_empty() {
                    answer["history"] = json!(page);
                }
                if skip + 2 < records.len() {
                    answer["nextPageToken"] = json!((skip + 2).to_string());
                }
                ResponseTemplate::new(200).set_body_json(answer)
            }
            ("GET", "/messages") => {
                self.lists += 1;
                assert_eq!(query["q"], "newer_than:7d");
                assert_eq!(query["labelIds"], "INBOX");
                let listed: Vec<Value> = self
                    .messages
                    .iter()
                    .rev()
                    .filter(|m| m.labels.contains(&"INBOX"))
                    .map(|m| json!({"id": m.id, "threadId": m.thread_id}))
                    .collect();
                ResponseTemplate::new(200)
                    .set_body_json(json!({"messages": listed, "resultSizeEstimate": listed.len()}))
            }
            ("POST", "/messages/send") => {
                let body: Value = serde_json::from_slice(&request.body).unwrap();
                let (Some(raw), Some(thread)) = (body["raw"].as_str(), body["threadId"].as_str()) else {
                    return google_error(400, "raw and threadId");
                };
                let Ok(decoded) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw.trim_end_matches('='))
                else {
                    return google_error(400, "Invalid value for ByteString");
                };
                if !self.messages.iter().any(|m| m.thread_id == thread) {
                    return google_error(404, "Requested entity was not found.");
                }
                let id = format!("sent{:04}", self.sent.len() + 1);
                self.sent
                    .push((thread.to_owned(), String::from_utf8(decoded.clone()).unwrap()));
                self.add(&id, thread, vec!["SENT"], decoded);
                ResponseTemplate::new(200).set_body_json(json!({"id": id, "threadId": thread, "labelIds": ["SENT"]}))
            }
            ("GET", message) if message.starts_with("/messages/") => {
                assert_eq!(query["format"], "raw");
                let id = message.trim_start_matches("/messages/");
                match self.messages.iter().find(|m| m.id == id) {
                    Some(m) => ResponseTemplate::new(200).set_body_json(json!({
                        "id": m.id, "threadId": m.thread_id, "labelIds": m.labels, "historyId": m.history_id.to_string(),
                        "raw": base64::engine::general_purpose::URL_SAFE.encode(&m.raw)
                    })),
                    None => google_error(404, "Requested entity was not found."),
                }
            }
            _ => google_error(404, "Not Found"),
        }
    }
}

impl Respond for FakeGoogle {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut mailbox = self.0.lock().unwrap();
        if request.url.path() == "/revoke" {
            let form: HashMap<String, String> = url::form_urlencoded::parse(&request.body).into_owned().collect();
            mailbox.revoked.push(form.get("token").cloned().unwrap_or_default());
            return ResponseTemplate::new(200);
        }
        if request.url.path() == "/token" {
            let form: HashMap<String, String> = url::form_urlencoded::parse(&request.body).into_owned().collect();
            return mailbox.token(&form, &format!("{PUBLIC_URL}/api/gmail/oauth"));
        }
        if request.url.path().starts_with("/gmail/v1/users/me/") {
            return mailbox.gmail(request);
        }
        google_error(404, "Not Found")
    }
}

struct World {
    api: Api,
    admin: Session,
    mailbox: Arc<Mutex<Mailbox>>,
    _google: MockServer,
}

/// A customer's email to the mailbox.
fn email(from: &str, message_id: &str, subject: &str, body: &str, in_reply_to: Option<&str>) -> Vec<u8> {
    let mut builder = lettre::Message::builder()
        .from(from.parse().unwrap())
        .to(MAILBOX.parse().unwrap())
        .subject(subject)
        .message_id(Some(message_id.to_owned()));
    if let Some(previous) = in_reply_to {
        builder = builder.in_reply_to(previous.to_owned());
    }
    builder.body(body.to_owned()).unwrap().formatted()
}

async fn world(db: &TestDb) -> World {
    common::logs::capture();
    let google = MockServer::start().await;
    let mailbox = Arc::new(Mutex::new(Mailbox {
        history_id: 1_000,
        ..Mailbox::default()
    }));
    Mock::given(wiremock::matchers::any())
        .respond_with(FakeGoogle(mailbox.clone()))
        .mount(&google)
        .await;
    let base = google.uri();
    let api = Api::start_with(
        db,
        &[
            ("GOOGLE_CLIENT_ID", CLIENT_ID),
            ("GOOGLE_CLIENT_SECRET", CLIENT_SECRET),
            ("GOOGLE_OAUTH_BASE_URL", base.as_str()),
            ("GMAIL_API_BASE_URL", base.as_str()),
            ("GMAIL_SYNC_INTERVAL", "1"),
            ("NETIA_PUBLIC_URL", PUBLIC_URL),
        ],
    )
    .await;
    let admin = api
        .register(&format!("admin-{}@example.com", uuid::Uuid::now_v7().simple()))
        .await;
    World {
        api,
        admin,
        mailbox,
        _google: google,
    }
}

/// Starts the link as the admin: the consent URL's query and the browser's cookie.
async fn start(w: &World) -> (HashMap<String, String>, String) {
    let answer = w
        .api
        .http
        .get(format!("{}/api/gmail/oauth/start", w.api.base))
        .bearer_auth(&w.admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let cookie = answer
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    let body: Value = answer.json().await.unwrap();
    let url = url::Url::parse(body["data"]["url"].as_str().unwrap()).unwrap();
    assert!(url.path().ends_with("/o/oauth2/v2/auth"), "{url}");
    (url.query_pairs().into_owned().collect(), cookie)
}

async fn callback(w: &World, code: &str, state: &str, cookie: Option<&str>) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut request = client.get(format!("{}/api/gmail/oauth", w.api.base)).query(&[
        ("code", code),
        ("state", state),
        ("scope", netia::channels::gmail::SCOPES),
    ]);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.unwrap()
}

async fn link(w: &World) {
    let (params, cookie) = start(w).await;
    assert_eq!(params["client_id"], CLIENT_ID);
    assert_eq!(params["redirect_uri"], format!("{PUBLIC_URL}/api/gmail/oauth"));
    assert_eq!(params["access_type"], "offline");
    assert_eq!(params["response_type"], "code");
    assert!(params["scope"].contains("gmail.send"));
    let answer = callback(w, "good-code", &params["state"], Some(&cookie)).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER, "{:?}", answer.text().await);
    let (status, linked) = w.api.get("/api/gmail", &w.admin.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(linked["data"]["linked"], true, "{linked}");
    assert_eq!(linked["data"]["email_address"], MAILBOX);
}

/// The account's Gmail conversations, once `n` of them are there (or after 20 s).
async fn gmail_conversations(w: &World, n: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let (_, inbox) = w.api.get("/api/conversations?source=gmail", &w.admin.token).await;
        let found = inbox["data"].as_array().cloned().unwrap_or_default();
        if found.len() >= n || started.elapsed() > Duration::from_secs(20) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn messages(w: &World, conversation: &str) -> Vec<Value> {
    let (_, body) = w
        .api
        .get(&format!("/api/conversations/{conversation}/messages"), &w.admin.token)
        .await;
    body["data"].as_array().cloned().unwrap_or_default()
}

/// Waits until the conversation holds `n` messages (or 20 s), and returns them.
async fn wait_messages(w: &World, conversation: &str, n: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let found = messages(w, conversation).await;
        if found.len() >= n || started.elapsed() > Duration::from_secs(20) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the stored history id is at least `at` (the sync went past it).
async fn wait_synced(w: &World, at: u64) {
    let started = Instant::now();
    loop {
        let (_, status) = w.api.get("/api/gmail", &w.admin.token).await;
        if status["data"]["history_id"].as_u64().is_some_and(|h| h >= at) || started.elapsed() > Duration::from_secs(20)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn the_oauth_round_trip_links_the_mailbox_and_never_shows_the_token(db: &TestDb) {
    let w = world(db).await;
    let (status, before) = w.api.get("/api/gmail", &w.admin.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        before["data"],
        json!({"configured": true, "linked": false, "email_address": null, "history_id": null})
    );
    let (status, _) = w.api.get("/api/gmail/profile", &w.admin.token).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no mailbox yet");

    // A forged state, or a real one brought by another browser, links nothing.
    let (params, cookie) = start(&w).await;
    assert_eq!(
        callback(&w, "good-code", "v1.forged", Some(&cookie)).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        callback(&w, "good-code", &params["state"], None).await.status(),
        StatusCode::FORBIDDEN
    );
    // A code Google does not know: refused, nothing linked.
    let refused = callback(&w, "stolen-code", &params["state"], Some(&cookie)).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // The admin unticked "send": refused, with the reason.
    let partial = callback(&w, "readonly-code", &params["state"], Some(&cookie)).await;
    assert_eq!(partial.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(partial.text().await.unwrap().contains("sending"));
    let declined = w
        .api
        .http
        .get(format!("{}/api/gmail/oauth?error=access_denied&state=x", w.api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(declined.status(), StatusCode::BAD_REQUEST);
    assert!(declined.text().await.unwrap().contains("access_denied"));
    let (_, still) = w.api.get("/api/gmail", &w.admin.token).await;
    assert_eq!(still["data"]["linked"], false);

    link(&w).await;
    let (status, profile) = w.api.get("/api/gmail/profile", &w.admin.token).await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["data"]["emailAddress"], MAILBOX);

    // Members may not see or change the link.
    let invitation = w.api.invite(&w.admin, "member@example.com", "member").await;
    let member = w.api.accept("member@example.com", &invitation, "Member").await;
    let (status, _) = w.api.get("/api/gmail/oauth/start", &member.token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The refresh token is in no answer and in no event (only sealed).
    let (_, shown) = w.api.get("/api/gmail", &w.admin.token).await;
    assert!(!shown.to_string().contains(REFRESH_TOKEN));
    let leaked = common::all_events(&*db.store)
        .await
        .iter()
        .any(|e| e.payload.to_string().contains(REFRESH_TOKEN) || e.payload.to_string().contains("ya29."));
    assert!(!leaked, "a Google token is in the log");

    // Unlinked: nothing more is synced.
    let answer = w
        .api
        .call(reqwest::Method::DELETE, "/api/gmail", Some(&w.admin.token), None)
        .await;
    assert_eq!(answer.0, StatusCode::NO_CONTENT);
    let (_, after) = w.api.get("/api/gmail", &w.admin.token).await;
    assert_eq!(after["data"]["linked"], false);
    assert_eq!(
        w.mailbox.lock().unwrap().revoked,
        vec![REFRESH_TOKEN.to_owned()],
        "the grant is revoked at Google"
    );
    let (status, _) = w.api.post("/api/gmail/sync", Some(&w.admin.token), json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing to sync once unlinked");
    // Nor in the server's log, at its most verbose.
    common::logs::assert_none_of(&[REFRESH_TOKEN, CLIENT_SECRET, "ya29.access", "good-code", &w.admin.token]);
}

async fn new_mail_becomes_conversations_answered_in_their_gmail_thread(db: &TestDb) {
    let w = world(db).await;
    link(&w).await;
    let linked_at = w.mailbox.lock().unwrap().history_id;

    // Three new messages in two threads (and one the mailbox sent itself, and a draft).
    {
        let mut mailbox = w.mailbox.lock().unwrap();
        let first = email(
            "Ada <ada@customer.example>",
            "<a1@customer.example>",
            "Order #42",
            "Where is my order?",
            None,
        );
        mailbox.add("m001", "t001", vec!["INBOX", "UNREAD"], first);
        let other = email(
            "Bob <bob@customer.example>",
            "<b1@customer.example>",
            "Refund",
            "I want a refund.",
            None,
        );
        mailbox.add("m002", "t002", vec!["INBOX", "UNREAD"], other);
        let again = email(
            "Ada <ada@customer.example>",
            "<a2@customer.example>",
            "Re: Order #42",
            "Any news?",
            Some("<a1@customer.example>"),
        );
        mailbox.add("m003", "t001", vec!["INBOX", "UNREAD"], again);
        let own = email(MAILBOX, "<own@acme.example>", "Note", "to self", None);
        mailbox.add("m004", "t003", vec!["SENT"], own);
        let draft = email("Ada <ada@customer.example>", "<d@x>", "draft", "draft", None);
        mailbox.add("m005", "t004", vec!["DRAFT"], draft);
    }
    let conversations = gmail_conversations(&w, 2).await;
    assert_eq!(conversations.len(), 2, "{conversations:?}");
    let ada = conversations
        .iter()
        .find(|c| c["customer"]["email"] == "ada@customer.example" || c["customer_email"] == "ada@customer.example")
        .unwrap_or_else(|| panic!("Ada's conversation: {conversations:?}"));
    let ada_id = ada["id"].as_str().unwrap().to_owned();
    assert_eq!(ada["source"], "gmail");
    let listed = wait_messages(&w, &ada_id, 2).await;
    let bodies: Vec<&str> = listed.iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, vec!["Where is my order?", "Any news?"]);
    // The original is kept as Gmail gave it.
    let original = w
        .api
        .http
        .get(format!(
            "{}/api/conversations/{ada_id}/messages/{}/original",
            w.api.base,
            listed[0]["id"].as_str().unwrap()
        ))
        .bearer_auth(&w.admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(original.status(), StatusCode::OK);
    let first_raw = w.mailbox.lock().unwrap().messages[0].raw.clone();
    assert_eq!(original.bytes().await.unwrap().to_vec(), first_raw);
    let head = w.mailbox.lock().unwrap().history_id;
    assert!(head > linked_at);
    wait_synced(&w, head).await;

    // The agent's reply: sent through Gmail in Ada's thread, threaded by its headers.
    let (status, reply) = w
        .api
        .post(
            &format!("/api/conversations/{ada_id}/messages"),
            Some(&w.admin.token),
            json!({"body": "It ships tomorrow."}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let started = Instant::now();
    while w.mailbox.lock().unwrap().sent.is_empty() && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = w.mailbox.lock().unwrap().sent.clone();
    assert_eq!(sent.len(), 1, "one send");
    let (thread, raw) = &sent[0];
    assert_eq!(thread, "t001");
    assert!(raw.contains("To: ada@customer.example"), "{raw}");
    assert!(raw.contains(MAILBOX), "{raw}");
    assert!(raw.contains("Subject: Re: Order #42"), "{raw}");
    assert!(raw.contains("In-Reply-To: <a2@customer.example>"), "{raw}");
    assert!(
        raw.contains("<a1@customer.example>") && raw.contains("References:"),
        "{raw}"
    );
    assert!(raw.contains("It ships tomorrow."), "{raw}");

    // The sent message comes back in the history (label SENT): not taken as Ada's. Her answer is.
    {
        let mut mailbox = w.mailbox.lock().unwrap();
        let answer = email(
            "Ada <ada@customer.example>",
            "<a3@customer.example>",
            "Re: Order #42",
            "Thanks!\n\nOn Monday, Acme wrote:\n> It ships tomorrow.",
            Some("<a2@customer.example>"),
        );
        // Mail Netia does not take (a sender address it refuses) must not stop the sync.
        let odd = email("Eve <eve@localhost>", "<e1@localhost>", "Hi", "Odd sender.", None);
        mailbox.add("m007", "t007", vec!["INBOX"], odd);
        // The mailbox writing to itself: not a customer.
        let own = email(MAILBOX, "<own2@acme.example>", "Reminder", "to self", None);
        mailbox.add("m008", "t008", vec!["INBOX"], own);
        mailbox.add("m006", "t001", vec!["INBOX"], answer);
    }
    let listed = wait_messages(&w, &ada_id, 4).await;
    let bodies: Vec<&str> = listed.iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(
        bodies,
        vec!["Where is my order?", "Any news?", "It ships tomorrow.", "Thanks!"]
    );
    // A customer's mail Gmail put in spam, moved to the inbox by a human: taken then.
    {
        let mut mailbox = w.mailbox.lock().unwrap();
        let spam = email(
            "Dee <dee@customer.example>",
            "<s1@customer.example>",
            "Not spam",
            "Really not spam.",
            None,
        );
        mailbox.add("m009", "t009", vec!["SPAM"], spam);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(gmail_conversations(&w, 0).await.len(), 2, "spam is not taken");
    w.mailbox.lock().unwrap().move_to_inbox("m009");
    assert_eq!(gmail_conversations(&w, 3).await.len(), 3, "moved to the inbox, it is");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(messages(&w, &ada_id).await.len(), 4, "nothing twice");
    assert_eq!(w.mailbox.lock().unwrap().sent.len(), 1, "the reply was sent once");
    assert_eq!(gmail_conversations(&w, 0).await.len(), 3);
    common::logs::assert_none_of(&[REFRESH_TOKEN, CLIENT_SECRET, "ya29.access", &w.admin.token]);
}

async fn expired_tokens_are_refreshed_and_expired_history_is_resynced_once(db: &TestDb) {
    let w = world(db).await;
    link(&w).await;
    {
        let mut mailbox = w.mailbox.lock().unwrap();
        let first = email(
            "Ada <ada@customer.example>",
            "<x1@customer.example>",
            "Hello",
            "First.",
            None,
        );
        mailbox.add("m101", "t101", vec!["INBOX"], first);
    }
    let conversations = gmail_conversations(&w, 1).await;
    assert_eq!(conversations.len(), 1);
    let id = conversations[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(wait_messages(&w, &id, 1).await.len(), 1);
    let head = w.mailbox.lock().unwrap().history_id;
    wait_synced(&w, head).await;

    // Google revokes the access token early: the next call gets 401, refreshes, and retries.
    {
        let mut mailbox = w.mailbox.lock().unwrap();
        mailbox.valid_tokens.clear();
        let second = email(
            "Ada <ada@customer.example>",
            "<x2@customer.example>",
            "Re: Hello",
            "Second.",
            None,
        );
        mailbox.add("m102", "t101", vec!["INBOX"], second);
    }
    assert_eq!(wait_messages(&w, &id, 2).await.len(), 2);
    assert!(w.mailbox.lock().unwrap().refreshes >= 1, "the token was refreshed");

    // Netia stops syncing for a while (unlinked and linked again elsewhere would lose nothing
    // either): mail arrives, and Gmail forgets the stored history id. The next run answers 404,
    // resyncs the last days, and takes the new mail once, the old mail not again.
    {
        let mut mailbox = w.mailbox.lock().unwrap();
        let third = email(
            "Ada <ada@customer.example>",
            "<x3@customer.example>",
            "Re: Hello",
            "Third.",
            None,
        );
        mailbox.add("m103", "t101", vec!["INBOX"], third);
        let fresh = email(
            "Cy <cy@customer.example>",
            "<y1@customer.example>",
            "New",
            "Hi there.",
            None,
        );
        mailbox.add("m104", "t102", vec!["INBOX"], fresh);
        mailbox.oldest_history = mailbox.history_id;
    }
    let resync_head = w.mailbox.lock().unwrap().history_id;
    let conversations = gmail_conversations(&w, 2).await;
    assert_eq!(conversations.len(), 2, "{conversations:?}");
    let listed = wait_messages(&w, &id, 3).await;
    let bodies: Vec<&str> = listed.iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, vec!["First.", "Second.", "Third."]);
    wait_synced(&w, resync_head).await;
    let (_, status) = w.api.get("/api/gmail", &w.admin.token).await;
    assert_eq!(
        status["data"]["history_id"], resync_head,
        "the sync goes on from the head read before the resync"
    );
    assert_eq!(w.mailbox.lock().unwrap().lists, 1, "one resync");
    // After the resync the sync goes on from the head: later mail arrives normally.
    {
        let mut mailbox = w.mailbox.lock().unwrap();
        mailbox.oldest_history = 0;
        let fourth = email(
            "Ada <ada@customer.example>",
            "<x4@customer.example>",
            "Re: Hello",
            "Fourth.",
            None,
        );
        mailbox.add("m105", "t101", vec!["INBOX"], fourth);
    }
    assert_eq!(wait_messages(&w, &id, 4).await.len(), 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(messages(&w, &id).await.len(), 4, "nothing twice");
    let resyncs = common::all_events(&*db.store)
        .await
        .iter()
        .filter(|e| e.event_type == "GmailHistorySynced" && e.payload["resynced"] == true)
        .count();
    assert_eq!(resyncs, 1, "the resync is recorded once");
    assert_eq!(w.mailbox.lock().unwrap().lists, 1, "and happened once");
}

on_both_backends!(
    the_oauth_round_trip_links_the_mailbox_and_never_shows_the_token,
    new_mail_becomes_conversations_answered_in_their_gmail_thread,
    expired_tokens_are_refreshed_and_expired_history_is_resynced_once
);
