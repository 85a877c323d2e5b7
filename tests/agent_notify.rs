//! Agents are emailed (real SMTP, a sink on loopback) about customers' messages while no agent of
//! the account is online: one email per conversation per `AGENT_NOTIFY_DELAY`, each message in
//! one email only, none to an agent who turned them off (`PUT /api/me/notifications`), none while
//! an agent is online.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::TestDb;
use common::api::{Api, customer_says};
use common::smtp::{Smtp, header};
use reqwest::StatusCode;
use serde_json::json;

async fn wait_mail(smtp: &Smtp, n: usize) -> Vec<String> {
    let started = Instant::now();
    while smtp.messages().len() < n && started.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    smtp.messages()
}

async fn agents_hear_of_messages_nobody_is_online_to_see(db: &TestDb) {
    let smtp = Smtp::start().await;
    let url = smtp.url();
    let api = Api::start_with(
        db,
        &[
            ("SMTP_URL", url.as_str()),
            ("EMAIL_FROM", "Netia <netia@acme.example>"),
            ("AGENT_NOTIFY_DELAY", "1"),
            ("REPLY_EMAIL_DELAY", "3600"),
            ("NETIA_PUBLIC_URL", "https://support.acme.example"),
        ],
    )
    .await;
    let admin_email = format!("admin-{}@example.com", uuid::Uuid::now_v7().simple());
    let admin = api.register(&admin_email).await;
    let quiet_email = format!("quiet-{}@example.com", uuid::Uuid::now_v7().simple());
    let invitation = api.invite(&admin, &quiet_email, "member").await;
    let quiet = api.accept(&quiet_email, &invitation, "Quiet").await;
    let (_, settings) = api.get("/api/me/notifications", &quiet.token).await;
    assert_eq!(settings["data"]["new_conversation_emails"], true, "on by default");
    let (status, _) = api
        .call(
            reqwest::Method::PUT,
            "/api/me/notifications",
            Some(&quiet.token),
            Some(json!({"new_conversation_emails": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, settings) = api.get("/api/me/notifications", &quiet.token).await;
    assert_eq!(settings["data"]["new_conversation_emails"], false);

    let (conversation, _) = api.conversation(&admin.account_id).await;
    customer_says(&api, &admin, &db.store, &conversation, "Is anyone there?").await;
    customer_says(&api, &admin, &db.store, &conversation, "My bike is stuck.").await;
    let mail = wait_mail(&smtp, 1).await;
    assert_eq!(mail.len(), 1, "one email for the window");
    let first = &mail[0];
    assert!(header(first, "To").unwrap().contains(&admin_email), "{first}");
    assert!(
        header(first, "Subject").unwrap().starts_with("New message from"),
        "{first}"
    );
    assert!(
        first.contains("Is anyone there?") && first.contains("My bike is stuck."),
        "{first}"
    );
    // The body is quoted-printable (RFC 2045 §6.7): soft line breaks and `=3D` for `=`.
    let decoded = first.replace("=\n", "").replace("=3D", "=");
    assert!(
        decoded.contains(&format!("https://support.acme.example/#conversation={conversation}")),
        "{first}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        smtp.messages().len(),
        1,
        "nothing to the agent who opted out, nothing twice"
    );

    // A later message: its own email, without the ones already sent.
    customer_says(&api, &admin, &db.store, &conversation, "Hello??").await;
    let mail = wait_mail(&smtp, 2).await;
    assert_eq!(mail.len(), 2);
    assert!(
        mail[1].contains("Hello??") && !mail[1].contains("Is anyone there?"),
        "{}",
        mail[1]
    );

    // An agent online: nobody is emailed.
    let admin_id: netia_events::UserId = admin.user_id.parse().unwrap();
    netia::command_bus::CommandBus::new(db.store.clone())
        .execute::<netia_commands::User>(
            admin_id,
            netia_commands::UserCommand::SetOnline { online: true },
            &netia_events::Metadata::system("test"),
        )
        .await
        .unwrap();
    customer_says(&api, &admin, &db.store, &conversation, "Third time").await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(smtp.messages().len(), 2, "an agent is online to see it");
}

on_both_backends!(agents_hear_of_messages_nobody_is_online_to_see);
