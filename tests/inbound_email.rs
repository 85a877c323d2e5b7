//! Email as a channel, with real SMTP for the replies (a sink on loopback) and raw RFC 5322
//! messages built by `lettre` posted to the inbox's webhook: a new email → a conversation (source
//! `email`) of the sender; the agent's reply → an email in the customer's thread (Re: subject,
//! In-Reply-To, References, Reply-To the inbound address); the customer's answer to it → the same
//! conversation, without the quoted history; the same message twice → once; an auto-reply → no
//! conversation; a 2 MB HTML email in ISO-8859-1 → readable text; a wrong token → 404.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::TestDb;
use common::api::{Api, Session};
use common::smtp::{Smtp, header};
use lettre::message::header::{ContentType, InReplyTo, References};
use reqwest::StatusCode;
use serde_json::{Value, json};

const DOMAIN: &str = "in.acme.example";

struct World {
    api: Api,
    admin: Session,
    smtp: Smtp,
    webhook: String,
    address: String,
    /// The built-in SMTP receiver's port.
    smtp_port: u16,
}

async fn world(db: &TestDb) -> World {
    common::logs::capture();
    let smtp = Smtp::start().await;
    let url = smtp.url();
    let smtp_port = common::nodes::free_port();
    let receiver = format!("127.0.0.1:{smtp_port}");
    let api = Api::start_with(
        db,
        &[
            ("INBOUND_SMTP_ADDR", receiver.as_str()),
            ("SMTP_URL", url.as_str()),
            ("EMAIL_FROM", "Acme Support <support@acme.example>"),
            ("INBOUND_EMAIL_DOMAIN", DOMAIN),
            ("NETIA_PUBLIC_URL", "https://support.acme.example"),
        ],
    )
    .await;
    let admin = api
        .register(&format!("admin-{}@example.com", uuid::Uuid::now_v7().simple()))
        .await;
    let (status, inbound) = api.get("/api/email/inbound", &admin.token).await;
    assert_eq!(status, StatusCode::OK, "{inbound}");
    let address = inbound["data"]["address"].as_str().unwrap().to_owned();
    assert!(address.ends_with(&format!("@{DOMAIN}")), "{address}");
    let webhook = inbound["data"]["webhook_path"].as_str().unwrap().to_owned();
    assert_eq!(
        inbound["data"]["webhook_url"],
        format!("https://support.acme.example{webhook}")
    );
    World {
        api,
        admin,
        smtp,
        webhook,
        address,
        smtp_port,
    }
}

/// POSTs `raw` to `path` as a forwarding service does.
async fn post_raw(w: &World, path: &str, raw: Vec<u8>) -> (StatusCode, Value) {
    let answer = w
        .api
        .http
        .post(format!("{}{path}", w.api.base))
        .header("content-type", "message/rfc822")
        .body(raw)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    (status, answer.json().await.unwrap_or(Value::Null))
}

fn customer_email(w: &World, message_id: &str, subject: &str) -> lettre::message::MessageBuilder {
    lettre::Message::builder()
        .from("Ada Lovelace <ada@customer.example>".parse().unwrap())
        .to(w.address.parse().unwrap())
        .subject(subject)
        .message_id(Some(message_id.to_owned()))
}

async fn messages(w: &World, conversation: &str) -> Vec<Value> {
    let (_, body) = w
        .api
        .get(&format!("/api/conversations/{conversation}/messages"), &w.admin.token)
        .await;
    body["data"].as_array().cloned().unwrap_or_default()
}

async fn wait_mail(w: &World, n: usize) -> Vec<String> {
    let started = Instant::now();
    while w.smtp.messages().len() < n && started.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.smtp.messages()
}

async fn an_email_thread_becomes_one_conversation(db: &TestDb) {
    let w = world(db).await;

    // A new email: a conversation of its sender. Sent twice: one message.
    let first = customer_email(&w, "<first-1@customer.example>", "Order #42")
        .header(ContentType::TEXT_PLAIN)
        .body("Where is my order #42?\n\nAda".to_owned())
        .unwrap()
        .formatted();
    let (status, taken) = post_raw(&w, &w.webhook, first.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{taken}");
    assert_eq!(taken["data"]["new"], true);
    let original_bytes = first.clone();
    let conversation = taken["data"]["conversation_id"].as_str().unwrap().to_owned();
    let (status, again) = post_raw(&w, &w.webhook, first).await;
    assert_eq!(status, StatusCode::OK, "a resend is already taken: {again}");
    assert_eq!(again["data"]["conversation_id"], conversation.as_str());
    assert_eq!(again["data"]["new"], false, "{again}");
    let mut view = Value::Null;
    for _ in 0..100 {
        let (status, found) = w
            .api
            .get(&format!("/api/conversations/{conversation}"), &w.admin.token)
            .await;
        view = found;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(view["data"]["source"], "email", "{view}");
    assert_eq!(view["data"]["subject"], "Order #42");
    let listed = messages(&w, &conversation).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["type"], "email");
    assert_eq!(listed[0]["body"], "Where is my order #42?\n\nAda");
    let customer = listed[0]["customer_id"].as_str().unwrap();
    let (_, profile) = w.api.get(&format!("/api/customers/{customer}"), &w.admin.token).await;
    assert_eq!(profile["data"]["email"], "ada@customer.example");
    assert_eq!(profile["data"]["name"], "Ada Lovelace");

    // The original is kept byte for byte, for agents of the account, as a download.
    let original = format!(
        "{}/api/conversations/{conversation}/messages/{}/original",
        w.api.base,
        listed[0]["id"].as_str().unwrap()
    );
    let answer = w
        .api
        .http
        .get(&original)
        .bearer_auth(&w.admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()["content-type"], "message/rfc822");
    assert_eq!(answer.headers()["x-content-type-options"], "nosniff");
    assert!(
        answer.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(answer.bytes().await.unwrap().to_vec(), original_bytes);
    let stranger = w.api.register("stranger@example.com").await;
    let answer = w
        .api
        .http
        .get(&original)
        .bearer_auth(&stranger.token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND, "another account's original");

    // The agent's reply goes out at once, threaded under the customer's email.
    let (status, _) = w
        .api
        .post(
            &format!("/api/conversations/{conversation}/messages"),
            Some(&w.admin.token),
            json!({"body": "It ships today."}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mail = wait_mail(&w, 1).await;
    assert_eq!(mail.len(), 1, "one email");
    let sent = &mail[0];
    assert_eq!(header(sent, "Subject"), Some("Re: Order #42"));
    assert_eq!(header(sent, "In-Reply-To"), Some("<first-1@customer.example>"));
    assert_eq!(header(sent, "References"), Some("<first-1@customer.example>"));
    assert!(header(sent, "To").unwrap().contains("ada@customer.example"));
    assert!(header(sent, "Reply-To").unwrap().contains(&w.address), "{sent}");
    assert!(sent.contains("It ships today."));
    let ours = header(sent, "Message-ID").unwrap().to_owned();

    // The customer answers it (quoting us): the same conversation, the quote cut.
    let answer = customer_email(&w, "<second-2@customer.example>", "Re: Order #42")
        .header(InReplyTo::from(ours.clone()))
        .header(References::from(format!("<first-1@customer.example> {ours}")))
        .header(ContentType::TEXT_PLAIN)
        .body(
            "Great, thanks!\n\nOn Mon, 1 Dec 2026, Acme Support <support@acme.example> wrote:\n> It ships today.\n"
                .to_owned(),
        )
        .unwrap()
        .formatted();
    let (status, threaded) = post_raw(&w, &w.webhook, answer).await;
    assert_eq!(status, StatusCode::CREATED, "{threaded}");
    assert_eq!(threaded["data"]["new"], false);
    assert_eq!(threaded["data"]["conversation_id"], conversation.as_str());
    let listed = messages(&w, &conversation).await;
    let bodies: Vec<&str> = listed.iter().filter_map(|m| m["body"].as_str()).collect();
    assert_eq!(
        bodies,
        vec!["Where is my order #42?\n\nAda", "It ships today.", "Great, thanks!"]
    );

    // The next reply names the whole thread.
    w.api
        .post(
            &format!("/api/conversations/{conversation}/messages"),
            Some(&w.admin.token),
            json!({"body": "You're welcome."}),
        )
        .await;
    let mail = wait_mail(&w, 2).await;
    let second = &mail[1];
    assert_eq!(header(second, "In-Reply-To"), Some("<second-2@customer.example>"));
    // References may be folded over several lines (RFC 5322 §2.2.3).
    let unfolded = second.replace("\n ", " ").replace("\n\t", " ");
    let references = header(&unfolded, "References").unwrap();
    assert!(
        references.contains("<first-1@customer.example>") && references.contains(&ours),
        "{references}"
    );
    // Deleting the customer deletes the originals of their emails.
    let (status, _) = w
        .api
        .call(
            reqwest::Method::DELETE,
            &format!("/api/customers/{customer}"),
            Some(&w.admin.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let answer = w
        .api
        .http
        .get(&original)
        .bearer_auth(&w.admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        StatusCode::NOT_FOUND,
        "the original went with the customer"
    );

    // The webhook's token is a secret: the access log shows `[token]` in its place.
    let token = w.webhook.rsplit('/').next().unwrap();
    common::logs::assert_none_of(&[token, &w.admin.token]);
    assert!(common::logs::text().contains("/api/email/inbound/[token]"));
}

async fn automatic_foreign_and_broken_mail_open_nothing(db: &TestDb) {
    let w = world(db).await;
    let auto = customer_email(&w, "<auto-1@customer.example>", "Out of office")
        .header(ContentType::TEXT_PLAIN)
        .body("I am away until Monday.".to_owned())
        .unwrap()
        .formatted();
    let mut raw = b"Auto-Submitted: auto-replied\r\n".to_vec();
    raw.extend_from_slice(&auto);
    let (status, answer) = post_raw(&w, &w.webhook, raw).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let bounce = b"From: MAILER-DAEMON@mx.customer.example\r\nTo: x@in.acme.example\r\nSubject: Undelivered Mail\r\nMessage-ID: <b1@mx>\r\n\r\nDelivery failed.".to_vec();
    assert_eq!(post_raw(&w, &w.webhook, bounce).await.0, StatusCode::ACCEPTED);
    let (status, _) = post_raw(&w, "/api/email/inbound/0000", b"From: a@b.example\r\n\r\nhi".to_vec()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = post_raw(&w, &w.webhook, b"\x00\x01 not an email".to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, inbox) = w.api.get("/api/conversations?source=email", &w.admin.token).await;
    assert_eq!(inbox["data"].as_array().unwrap().len(), 0, "{inbox}");

    // A 2 MB HTML email in ISO-8859-1 reads as text.
    let paragraph = "<p>Caf\u{e9} cr\u{e8}me br\u{fb}l\u{e9}e, s'il vous pla\u{ee}t.</p>\n";
    let html: String = format!(
        "<html><body>{}</body></html>",
        paragraph.repeat(2_100_000 / paragraph.chars().count())
    );
    let mut big = b"From: client@exemple.fr\r\nTo: x@in.acme.example\r\nSubject: Commande\r\nMessage-ID: <big-1@exemple.fr>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=ISO-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".to_vec();
    big.extend(html.chars().map(|c| u8::try_from(u32::from(c)).unwrap()));
    assert!(big.len() > 2_000_000);
    let (status, taken) = post_raw(&w, &w.webhook, big).await;
    assert_eq!(status, StatusCode::CREATED, "{taken}");
    let conversation = taken["data"]["conversation_id"].as_str().unwrap();
    let listed = messages(&w, conversation).await;
    let body = listed[0]["body"].as_str().unwrap();
    assert!(
        body.starts_with("Café crème brûlée, s'il vous plaît."),
        "{}",
        &body[..80]
    );
    assert!(!body.contains("<p>"));

    // Rotating the token: the old webhook is gone, the address stays.
    let (status, rotated) = w
        .api
        .post("/api/email/inbound/rotate", Some(&w.admin.token), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["data"]["address"], w.address.as_str());
    assert_ne!(rotated["data"]["webhook_path"], w.webhook.as_str());
    let hello = b"From: a@b.example\r\nMessage-ID: <r1@b>\r\n\r\nhi".to_vec();
    assert_eq!(post_raw(&w, &w.webhook, hello).await.0, StatusCode::NOT_FOUND);
}

/// Mail sent over SMTP (by `lettre`, as a mail server would relay it) to the inbox's address
/// lands like the webhook's; a recipient we do not have is refused at RCPT.
async fn mail_to_the_smtp_receiver_becomes_a_conversation(db: &TestDb) {
    use lettre::Transport;
    let w = world(db).await;
    let relay = lettre::SmtpTransport::builder_dangerous("127.0.0.1")
        .port(w.smtp_port)
        .build();
    let email = customer_email(&w, "<smtp-1@customer.example>", "Broken bell")
        .header(ContentType::TEXT_PLAIN)
        .body("The bell on my bike is broken.\n.\nA line with a dot, too.".to_owned())
        .unwrap();
    let sent = tokio::task::spawn_blocking(move || relay.send(&email)).await.unwrap();
    assert!(sent.is_ok(), "{sent:?}");
    let mut found = Value::Null;
    for _ in 0..100 {
        let (_, inbox) = w.api.get("/api/conversations?source=email", &w.admin.token).await;
        found = inbox["data"][0].clone();
        if found.is_object() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let conversation = found["id"].as_str().expect("a conversation from SMTP").to_owned();
    let listed = messages(&w, &conversation).await;
    assert_eq!(
        listed[0]["body"],
        "The bell on my bike is broken.\n.\nA line with a dot, too."
    );

    let relay = lettre::SmtpTransport::builder_dangerous("127.0.0.1")
        .port(w.smtp_port)
        .build();
    let stranger = lettre::Message::builder()
        .from("ada@customer.example".parse().unwrap())
        .to(format!("nobody@{DOMAIN}").parse().unwrap())
        .subject("?")
        .body("hello".to_owned())
        .unwrap();
    let refused = tokio::task::spawn_blocking(move || relay.send(&stranger))
        .await
        .unwrap();
    let error = refused.expect_err("an unknown mailbox is refused");
    assert!(error.is_permanent(), "{error}");
}

on_both_backends!(
    mail_to_the_smtp_receiver_becomes_a_conversation,
    an_email_thread_becomes_one_conversation,
    automatic_foreign_and_broken_mail_open_nothing
);
