//! The agent's conversation API over real HTTP on both databases: inbox filters, counts, paging,
//! updates, messages (idempotent), history and as-of; and isolation between accounts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use chrono::{Duration, Utc};
use common::TestDb;
use common::api::Api;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn ids(body: &Value) -> BTreeSet<String> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn agents_filter_update_and_answer_conversations(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("lead@example.com").await;
    let t = admin.token.as_str();
    let (c1, _) = api.conversation(&admin.account_id).await;
    let (c2, _) = api.conversation(&admin.account_id).await;
    let (c3, c3_customer) = api.conversation(&admin.account_id).await;

    let (status, list) = api.get("/api/conversations", t).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(ids(&list), BTreeSet::from([c1.clone(), c2.clone(), c3.clone()]));
    assert_eq!(list["data"][0]["customer"]["name"], "Ada");
    assert_eq!(list["data"][0]["status"], "open");

    let before_close = Utc::now();
    let (status, closed) = api
        .patch(&format!("/api/conversations/{c1}"), t, json!({"status": "closed"}))
        .await;
    assert_eq!(
        (status, closed["data"]["status"].as_str()),
        (StatusCode::OK, Some("closed")),
        "{closed}"
    );
    let (status, updated) = api
        .patch(
            &format!("/api/conversations/{c2}"),
            t,
            json!({"priority": "priority", "assignee_id": admin.user_id, "tags": ["vip", "billing"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["data"]["assignee_id"], admin.user_id.as_str());
    assert_eq!(updated["data"]["tags"], json!(["billing", "vip"]));
    assert_eq!(updated["data"]["priority"], "priority");
    let until = (Utc::now() + Duration::hours(2)).to_rfc3339();
    let (status, snoozed) = api
        .patch(&format!("/api/conversations/{c3}"), t, json!({"snooze_until": until}))
        .await;
    assert_eq!(
        (status, snoozed["data"]["status"].as_str()),
        (StatusCode::OK, Some("snoozed"))
    );

    for (filter, expected) in [
        ("status=closed", vec![&c1]),
        ("status=snoozed", vec![&c3]),
        ("status=open", vec![&c2]),
        ("assignee=me", vec![&c2]),
        ("assignee=unassigned", vec![&c1, &c3]),
        (&format!("assignee={}", admin.user_id), vec![&c2]),
        ("tag=vip", vec![&c2]),
        ("priority=priority", vec![&c2]),
        ("source=chat", vec![&c1, &c2, &c3]),
        ("q=Ada", vec![&c1, &c2, &c3]),
        ("q=nobody-matches-this", vec![]),
    ] {
        let (status, list) = api.get(&format!("/api/conversations?{filter}"), t).await;
        assert_eq!(status, StatusCode::OK, "{filter}: {list}");
        let expected: BTreeSet<String> = expected.into_iter().cloned().collect();
        assert_eq!(ids(&list), expected, "{filter}");
    }
    let (status, counts) = api.get("/api/conversations/count", t).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        counts["data"],
        json!({"open": 1, "closed": 1, "snoozed": 1, "priority": 1, "assigned_to_me": 1, "unassigned": 0, "unread": 0})
    );

    // Cursor paging: two pages, nothing twice, nothing lost.
    let (_, first) = api.get("/api/conversations?limit=2", t).await;
    let next = first["next"].as_str().unwrap();
    let (_, second) = api.get(&format!("/api/conversations?limit=2&after={next}"), t).await;
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert!(second["next"].is_null());
    let mut all = ids(&first);
    all.extend(ids(&second));
    assert_eq!(all.len(), 3);

    // Unassign and retag.
    let (_, updated) = api
        .patch(
            &format!("/api/conversations/{c2}"),
            t,
            json!({"assignee_id": null, "tags": ["vip"]}),
        )
        .await;
    assert!(updated["data"]["assignee_id"].is_null());
    assert_eq!(updated["data"]["tags"], json!(["vip"]));

    // Refused updates write nothing.
    for body in [
        json!({"status": "snoozed"}),
        json!({"snooze_until": (Utc::now() - Duration::hours(1)).to_rfc3339()}),
        json!({"status": "bogus"}),
        json!({"priority": "urgent"}),
        json!({"assignee_id": "0190a0a0-0000-7000-8000-000000000000"}),
        json!({"tags": ["ok", ""]}),
        json!({"colour": "red"}),
        json!({"status": 3}),
    ] {
        let (status, answer) = api.patch(&format!("/api/conversations/{c2}"), t, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {answer}");
    }
    let (_, after) = api.get(&format!("/api/conversations/{c2}"), t).await;
    assert_eq!(after["data"]["tags"], json!(["vip"]));

    for (path, expected) in [
        ("/api/conversations?status=weird", StatusCode::BAD_REQUEST),
        ("/api/conversations?assignee=someone", StatusCode::BAD_REQUEST),
        ("/api/conversations?limit=0", StatusCode::BAD_REQUEST),
        ("/api/conversations?after=garbage", StatusCode::BAD_REQUEST),
        ("/api/conversations?unread=maybe", StatusCode::BAD_REQUEST),
        ("/api/conversations?inbox_id=1%27%20OR%201=1", StatusCode::BAD_REQUEST),
        ("/api/conversations/not-a-uuid", StatusCode::BAD_REQUEST),
        (
            "/api/conversations/0190a0a0-0000-7000-8000-000000000000",
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (status, body) = api.get(path, t).await;
        assert_eq!(status, expected, "{path}: {body}");
        assert!(body["error"].is_string());
    }

    // Messages: idempotent post, private notes, refusals.
    let messages = format!("/api/conversations/{c3}/messages");
    let (status, first) = api
        .post(
            &messages,
            Some(t),
            json!({"body": "Hello <b>there</b>", "client_message_id": "c-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = api
        .post(
            &messages,
            Some(t),
            json!({"body": "Hello <b>there</b>", "client_message_id": "c-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["data"]["id"], first["data"]["id"]);
    let (status, note) = api
        .post(&messages, Some(t), json!({"body": "internal", "private": true}))
        .await;
    assert_eq!(
        (status, note["data"]["private"].as_bool()),
        (StatusCode::CREATED, Some(true))
    );
    for body in [
        json!({"body": ""}),
        json!({"body": "x".repeat(20_001)}),
        json!({"text": "hi"}),
    ] {
        let (status, answer) = api.post(&messages, Some(t), body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    }
    let (status, list) = api.get(&messages, t).await;
    assert_eq!(status, StatusCode::OK);
    let list = list["data"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["body"], "Hello <b>there</b>");
    assert_eq!(
        (list[0]["type"].as_str(), list[0]["user_id"].as_str()),
        (Some("agent"), Some(admin.user_id.as_str()))
    );
    assert!(
        !serde_json::to_string(&list).unwrap().contains("lead@example.com"),
        "no agent email"
    );
    // The conversation's customer reads it too, without the note.
    let (status, theirs) = api.get(&messages, &c3_customer).await;
    assert_eq!(status, StatusCode::OK);
    let bodies: Vec<&str> = theirs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["Hello <b>there</b>"]);

    // History and as-of, from the log.
    let (status, history) = api.get(&format!("/api/conversations/{c1}/history"), t).await;
    assert_eq!(status, StatusCode::OK);
    let types: Vec<&str> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["ConversationCreated", "ConversationClosed"]);
    assert_eq!(history["data"][1]["actor"]["user_id"], admin.user_id.as_str());
    let as_of =
        |at: chrono::DateTime<Utc>| format!("/api/conversations/{c1}?as_of={}", at.to_rfc3339().replace('+', "%2B"));
    let (status, then) = api.get(&as_of(before_close), t).await;
    assert_eq!(
        (status, then["data"]["state"]["status"].as_str()),
        (StatusCode::OK, Some("open")),
        "{then}"
    );
    let (_, now) = api.get(&as_of(Utc::now()), t).await;
    assert_eq!(now["data"]["state"]["status"], "closed");
    let (status, _) = api.get(&as_of(before_close - Duration::days(1)), t).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.get(&format!("/api/conversations/{c1}?as_of=yesterday"), t).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Every conversation route, as (method, path, body) for conversation `id`.
fn routes(id: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, format!("/conversations/{id}"), None),
        (
            Method::GET,
            format!("/conversations/{id}?as_of={}", Utc::now().format("%Y-%m-%dT%H:%M:%SZ")),
            None,
        ),
        (
            Method::PATCH,
            format!("/conversations/{id}"),
            Some(json!({"status": "closed"})),
        ),
        (
            Method::PUT,
            format!("/conversations/{id}"),
            Some(json!({"priority": "priority"})),
        ),
        (Method::GET, format!("/conversations/{id}/messages"), None),
        (
            Method::POST,
            format!("/conversations/{id}/messages"),
            Some(json!({"body": "intruder"})),
        ),
        (Method::GET, format!("/conversations/{id}/history"), None),
        (Method::POST, format!("/conversations/{id}/read"), None),
    ]
}

async fn no_id_of_another_account_resolves(db: &TestDb) {
    let api = Api::start(db).await;
    let a = api.register("a@example.com").await;
    let (conversation, customer_a) = api.conversation(&a.account_id).await;
    let b = api.register("b@example.com").await;
    let (_, key_b) = {
        let (_, body) = api
            .post("/api/personal_api_keys", Some(&b.token), json!({"name": "b"}))
            .await;
        ((), body["data"]["key"].as_str().unwrap().to_owned())
    };
    let (customer_b_id, customer_b) = api.customer(&b.account_id).await;
    let history_before = api
        .get(&format!("/api/conversations/{conversation}/history"), &a.token)
        .await
        .1;

    for (method, path, body) in routes(&conversation) {
        for (who, prefix, token) in [("b session", "/api", &b.token), ("b key", "/api/v1", &key_b)] {
            let (status, answer) = api
                .call(method.clone(), &format!("{prefix}{path}"), Some(token), body.clone())
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{who} {method} {path}: {answer}");
        }
        // Customers may read their own conversation's messages, nothing else of an agent's: a good
        // customer token on an agent's route is a 403 (the widget keeps its token), not a 401.
        let readable = method == Method::GET && path.ends_with("/messages");
        for (token, expected) in [
            (
                &customer_b,
                if readable {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::FORBIDDEN
                },
            ),
            (
                &customer_a,
                if readable {
                    StatusCode::OK
                } else {
                    StatusCode::FORBIDDEN
                },
            ),
        ] {
            let (status, _) = api
                .call(method.clone(), &format!("/api{path}"), Some(token), body.clone())
                .await;
            assert_eq!(status, expected, "customer token on {method} {path}");
        }
    }
    let (_, list) = api.get("/api/conversations", &b.token).await;
    assert!(list["data"].as_array().unwrap().is_empty());
    let (_, counts) = api.get("/api/conversations/count", &b.token).await;
    assert_eq!(counts["data"]["open"], 0);

    // A's customer token cannot open conversations for B, nor touch B's customer.
    let (status, _) = api
        .post(
            "/api/conversations",
            Some(&customer_a),
            json!({"account_id": b.account_id, "customer_id": customer_b_id}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api
        .call(
            Method::PUT,
            &format!("/api/customers/{customer_b_id}/metadata"),
            Some(&customer_a),
            Some(json!({"metadata": {"x": 1}})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, mine) = api.get("/api/conversations/customer", &customer_b).await;
    assert!(mine["data"].as_array().unwrap().is_empty());
    let (_, theirs) = api.get("/api/conversations/customer", &customer_a).await;
    assert_eq!(ids(&theirs), BTreeSet::from([conversation.clone()]));

    // Every other route that takes an id of A's: customers, team, invitations, canned responses, keys.
    let customer_a_id = theirs["data"][0]["customer_id"].as_str().unwrap().to_owned();
    let (_, invitation) = api
        .post(
            "/api/user_invitations",
            Some(&a.token),
            json!({"email": "invitee@example.com"}),
        )
        .await;
    let invited = invitation["data"]["id"].as_str().unwrap().to_owned();
    let (_, canned) = api
        .post(
            "/api/canned_responses",
            Some(&a.token),
            json!({"name": "Hi", "body": "Hello"}),
        )
        .await;
    let canned = canned["data"]["id"].as_str().unwrap().to_owned();
    let (_, key_a) = api
        .post("/api/personal_api_keys", Some(&a.token), json!({"name": "a"}))
        .await;
    let key_a_id = key_a["data"]["id"].as_str().unwrap().to_owned();
    let others: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/customers/{customer_a_id}"), None),
        (
            Method::PUT,
            format!("/customers/{customer_a_id}"),
            Some(json!({"name": "intruder"})),
        ),
        (
            Method::PUT,
            format!("/users/{}/role", a.user_id),
            Some(json!({"role": "viewer"})),
        ),
        (Method::POST, format!("/users/{}/disable", a.user_id), None),
        (Method::POST, format!("/users/{}/enable", a.user_id), None),
        (Method::DELETE, format!("/user_invitations/{invited}"), None),
        (
            Method::PUT,
            format!("/canned_responses/{canned}"),
            Some(json!({"name": "x", "body": "y"})),
        ),
        (Method::DELETE, format!("/canned_responses/{canned}"), None),
        (Method::DELETE, format!("/personal_api_keys/{key_a_id}"), None),
    ];
    for (method, path, body) in others {
        for (who, prefix, token) in [("b session", "/api", &b.token), ("b key", "/api/v1", &key_b)] {
            let (status, answer) = api
                .call(method.clone(), &format!("{prefix}{path}"), Some(token), body.clone())
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{who} {method} {path}: {answer}");
        }
        let (status, _) = api
            .call(method.clone(), &format!("/api{path}"), Some(&customer_b), body.clone())
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "customer token on {method} {path}");
    }
    let (status, _) = api
        .call(
            Method::PUT,
            &format!("/api/customers/{customer_a_id}/metadata"),
            Some(&customer_b),
            Some(json!({"metadata": {"x": 1}})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another customer's token");
    // All of A's things are intact.
    assert_eq!(api.get("/api/me", &a.token).await.1["data"]["role"], "admin");
    assert_eq!(
        api.get("/api/canned_responses", &a.token).await.1["data"][0]["body"],
        "Hello"
    );
    assert_eq!(
        api.get("/api/user_invitations", &a.token).await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (_, customer) = api.get(&format!("/api/customers/{customer_a_id}"), &a.token).await;
    assert_eq!(customer["data"]["name"], "Ada");
    assert_eq!(
        api.get("/api/v1/me", key_a["data"]["key"].as_str().unwrap()).await.0,
        StatusCode::OK
    );

    // Nothing was written to A's conversation.
    let history_after = api
        .get(&format!("/api/conversations/{conversation}/history"), &a.token)
        .await
        .1;
    assert_eq!(history_after, history_before);
}

/// Search (`q`) looks into every message of a conversation, not only the last one, and into notes.
async fn search_finds_conversations_by_any_message(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("lead@example.com").await;
    let t = admin.token.as_str();
    let (c2, _) = api.conversation(&admin.account_id).await;
    let (c3, _) = api.conversation(&admin.account_id).await;
    for body in ["The refund for ORDER 8812 is on its way", "Anything else?"] {
        let (status, posted) = api
            .post(
                &format!("/api/conversations/{c2}/messages"),
                Some(t),
                json!({"body": body}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{posted}");
    }
    let (status, posted) = api
        .post(
            &format!("/api/conversations/{c3}/messages"),
            Some(t),
            json!({"body": "Customer prefers phone calls", "private": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{posted}");
    for (q, expected) in [
        ("order%208812", vec![&c2]),
        ("PREFERS%20PHONE", vec![&c3]),
        ("8813", vec![]),
    ] {
        let (status, list) = api.get(&format!("/api/conversations?q={q}"), t).await;
        assert_eq!(status, StatusCode::OK, "{q}: {list}");
        let expected: BTreeSet<String> = expected.into_iter().cloned().collect();
        assert_eq!(ids(&list), expected, "{q}");
    }
}

on_both_backends!(
    agents_filter_update_and_answer_conversations,
    search_finds_conversations_by_any_message,
    no_id_of_another_account_resolves
);
