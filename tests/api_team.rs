//! Team management over real HTTP on both databases: invitations, roles enforced on every kind of
//! route, nobody changing their own role, disabling.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestDb;
use common::api::{Api, Session};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// The admin invites `email` with `role`; the invitee registers and is signed in.
async fn join(api: &Api, admin: &Session, email: &str, role: &str) -> Session {
    let token = api.invite(admin, email, role).await;
    let joined = api.accept(email, &token, role).await;
    assert_eq!(joined.account_id, admin.account_id);
    let (status, _) = api
        .post(
            "/api/registration",
            None,
            json!({"email": email, "password": "another good one", "invitation_token": token}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an invitation is used once");
    joined
}

async fn roles_are_enforced_and_nobody_promotes_themselves(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("admin@example.com").await;
    let member = join(&api, &admin, "member@example.com", "member").await;
    let viewer = join(&api, &admin, "viewer@example.com", "viewer").await;
    let (conversation, _) = api.conversation(&admin.account_id).await;

    let (status, team) = api.get("/api/users", &viewer.token).await;
    assert_eq!(status, StatusCode::OK);
    let roles: Vec<(&str, &str)> = team["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["email"].as_str().unwrap(), u["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        roles,
        [
            ("admin@example.com", "admin"),
            ("member@example.com", "member"),
            ("viewer@example.com", "viewer")
        ]
    );

    let update = format!("/api/conversations/{conversation}");
    let messages = format!("{update}/messages");
    // Viewers read and nothing else.
    assert_eq!(api.get(&update, &viewer.token).await.0, StatusCode::OK);
    assert_eq!(api.get(&messages, &viewer.token).await.0, StatusCode::OK);
    assert_eq!(
        api.patch(&update, &viewer.token, json!({"status": "closed"})).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.post(&messages, Some(&viewer.token), json!({"body": "hi"})).await.0,
        StatusCode::FORBIDDEN
    );
    // Members answer and change conversations, but do not manage the team.
    assert_eq!(
        api.patch(&update, &member.token, json!({"priority": "priority"}))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        api.post(&messages, Some(&member.token), json!({"body": "hi"})).await.0,
        StatusCode::CREATED
    );
    for (who, token) in [("member", &member.token), ("viewer", &viewer.token)] {
        let (status, _) = api
            .post("/api/user_invitations", Some(token), json!({"email": "x@example.com"}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who} invites");
        let (status, _) = api
            .post("/api/personal_api_keys", Some(token), json!({"name": "k"}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who} creates an API key");
        let (status, _) = api
            .call(
                Method::PUT,
                &format!("/api/users/{}/role", viewer.user_id),
                Some(token),
                Some(json!({"role": "admin"})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who} changes a role");
        let (status, _) = api
            .call(
                Method::POST,
                &format!("/api/users/{}/disable", admin.user_id),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who} disables the admin");
    }
    // Nobody changes their own role, admins included.
    for who in [&viewer, &member, &admin] {
        let (status, body) = api
            .call(
                Method::PUT,
                &format!("/api/users/{}/role", who.user_id),
                Some(&who.token),
                Some(json!({"role": "admin"})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/users/{}/disable", admin.user_id),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "nobody disables themselves");

    // A demotion takes effect on the next request.
    let (status, body) = api
        .call(
            Method::PUT,
            &format!("/api/users/{}/role", member.user_id),
            Some(&admin.token),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(
        (status, body["data"]["role"].as_str()),
        (StatusCode::OK, Some("viewer"))
    );
    assert_eq!(
        api.patch(&update, &member.token, json!({"status": "closed"})).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, _) = api
        .call(
            Method::PUT,
            &format!("/api/users/{}/role", member.user_id),
            Some(&admin.token),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Disabling locks out sessions and logins until enabled again.
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/users/{}/disable", viewer.user_id),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.get("/api/me", &viewer.token).await.0, StatusCode::UNAUTHORIZED);
    let login = json!({"email": "viewer@example.com", "password": "another good one"});
    assert_eq!(
        api.post("/api/session", None, login.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/users/{}/enable", viewer.user_id),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.get("/api/me", &viewer.token).await.0, StatusCode::OK);
    assert_eq!(api.post("/api/session", None, login).await.0, StatusCode::CREATED);

    // Another account's admin sees none of this team.
    let other = api.register("other@example.com").await;
    for path in [format!("/api/users/{}/role", member.user_id)] {
        let (status, _) = api
            .call(Method::PUT, &path, Some(&other.token), Some(json!({"role": "admin"})))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/users/{}/disable", member.user_id),
            Some(&other.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, team) = api.get("/api/users", &other.token).await;
    assert_eq!(team["data"].as_array().unwrap().len(), 1);
}

async fn invitations_are_checked(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("boss@example.com").await;
    let (status, _) = api
        .post(
            "/api/user_invitations",
            Some(&admin.token),
            json!({"email": "boss@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "already a user");
    let (status, _) = api
        .post(
            "/api/user_invitations",
            Some(&admin.token),
            json!({"email": "not-an-address"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, invitation) = api
        .post(
            "/api/user_invitations",
            Some(&admin.token),
            json!({"email": "new@example.com", "role": "viewer"}),
        )
        .await;
    let token = invitation["data"]["token"].as_str().unwrap().to_owned();
    let id = invitation["data"]["id"].as_str().unwrap().to_owned();
    let (_, pending) = api.get("/api/user_invitations", &admin.token).await;
    assert_eq!(pending["data"][0]["email"], "new@example.com");
    // The invitee must use the invited address.
    let (status, _) = api
        .post(
            "/api/registration",
            None,
            json!({"email": "else@example.com", "password": "long enough", "invitation_token": token}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = api
        .post(
            "/api/registration",
            None,
            json!({"email": "new@example.com", "password": "long enough", "invitation_token": token, "account_name": "x"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "one of account_name or invitation_token"
    );
    // Withdrawn invitations cannot be used.
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!("/api/user_invitations/{id}"),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api
        .post(
            "/api/registration",
            None,
            json!({"email": "new@example.com", "password": "long enough", "invitation_token": token}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Once an address is registered, every other pending invitation to it is withdrawn: no account's
/// list keeps one that can never be accepted.
async fn a_registered_address_leaves_no_invitation_pending(db: &TestDb) {
    let api = Api::start(db).await;
    let first = api.register("first@example.com").await;
    let second = api.register("second@example.com").await;
    let third = api.register("third@example.com").await;
    let accepted = api.invite(&first, "Shared@Example.com", "member").await;
    let _other = api.invite(&second, "shared@example.com", "viewer").await;
    let _again = api.invite(&first, "shared@example.com", "viewer").await;
    let _elsewhere = api.invite(&third, "own@example.com", "viewer").await;
    let pending = |session: &common::api::Session| {
        let (api, token) = (&api, session.token.clone());
        async move {
            let (status, list) = api.get("/api/user_invitations", &token).await;
            assert_eq!(status, StatusCode::OK, "{list}");
            list["data"].as_array().unwrap().len()
        }
    };
    assert_eq!((pending(&first).await, pending(&second).await), (2, 1));
    api.accept("shared@example.com", &accepted, "Shared").await;
    assert_eq!((pending(&first).await, pending(&second).await), (0, 0), "all withdrawn");
    // An address that registers an account of its own: the same.
    assert_eq!(pending(&third).await, 1);
    let (status, body) = api
        .post(
            "/api/registration",
            None,
            json!({"email": "own@example.com", "password": "long enough", "account_name": "Own"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(pending(&third).await, 0);
}

on_both_backends!(
    roles_are_enforced_and_nobody_promotes_themselves,
    invitations_are_checked,
    a_registered_address_leaves_no_invitation_pending
);
