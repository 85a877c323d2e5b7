//! A keyed chain and an app role that cannot rewrite the log (issue 20 part 2; ADR 0021), through
//! the CLI and a running server:
//! - `audit rekey` relinks a plain log with HMAC-SHA256 under `AUDIT_KEY` (and rotates keys); a
//!   rewrite by someone who can recompute plain links, but has not the key, fails verification;
//!   nodes refuse to start with a missing or wrong key, or a key on a plain log;
//! - with `DATABASE_MIGRATE_URL`, the server's role reads and appends events and can do nothing else
//!   to them, while the read models still rebuild.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestDb;
use common::api::Api;
use common::nodes::{free_port, serve_database};
use common::tamper::{conversation, conversation_in, rewrite_history};
use netia_events::chain::{Chain, ChainKey};
use sqlx::postgres::PgPoolOptions;

/// Three `AUDIT_KEY`s (base64 of 32 bytes).
const KEY_1: &str = "bmV0aWEtdGVzdC1hdWRpdC1rZXktbnVtYmVyLW9uZSE=";
const KEY_2: &str = "bmV0aWEtdGVzdC1hdWRpdC1rZXktbnVtYmVyLXR3byE=";
const KEY_3: &str = "bmV0aWEtdGVzdC1hdWRpdC1rZXktbnVtYmVyLTMhISE=";

fn chain(key: &str) -> Chain {
    Chain::Keyed(ChainKey::new(netia::secrets::parse_key(key).unwrap()))
}

/// `netia ARGS` on `url` with `vars`: (exit success, stdout and stderr).
fn run(url: &str, vars: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netia"))
        .env("NETIA_SECRET_KEY", common::api::SECRET_KEY)
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

async fn rekeyed_links_need_the_key(db: &TestDb) {
    let tampered = conversation(db, 3).await;
    conversation(db, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("anchors.jsonl");
    let file = file.to_str().unwrap();
    db.netia(&["audit", "anchor", "--file", file]);
    let key_1 = [("AUDIT_KEY", KEY_1)];

    // A key on a plain log: refused until the log is relinked.
    let (ok, said) = run(&db.url, &key_1, &["audit", "verify"]);
    assert!(!ok && said.contains("netia audit rekey"), "{said}");
    let (ok, said) = run(&db.url, &[], &["audit", "rekey"]);
    assert!(!ok && said.contains("AUDIT_KEY is not set"), "{said}");

    let (ok, said) = run(&db.url, &key_1, &["audit", "rekey", "--anchor", file]);
    let id_1 = ChainKey::new(netia::secrets::parse_key(KEY_1).unwrap()).id();
    assert!(ok, "{said}");
    assert!(
        said.contains(&format!("relinked 6 events in 2 streams: sha256 -> hmac-sha256:{id_1}")),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(file).unwrap().lines().count(),
        3,
        "before and after"
    );
    let (ok, said) = run(&db.url, &key_1, &["audit", "rekey"]);
    assert!(ok && said.contains("already linked"), "{said}");

    // Keyed now: without the key, or with another, nothing opens the log.
    let (ok, said) = run(&db.url, &[], &["audit", "verify"]);
    assert!(
        !ok && said.contains(&format!("keyed (HMAC-SHA256, key id {id_1})")),
        "{said}"
    );
    let (ok, said) = run(&db.url, &[("AUDIT_KEY", KEY_2)], &["audit", "verify"]);
    assert!(!ok && said.contains("is not the key the log is linked with"), "{said}");
    let (ok, said) = run(&db.url, &key_1, &["audit", "verify", "--anchor", file]);
    assert!(ok, "{said}");
    assert!(said.contains("2 streams, 6 events checked; 0 broken"), "{said}");
    // The anchor taken earlier and the rekey's "before" are of the plain chain; its "after" matches.
    assert!(said.contains("3 anchors, 2 anchored heads checked; 0 broken"), "{said}");
    assert!(said.contains("2 anchor(s) of the chain before a rekey"), "{said}");

    // A node with the key appends keyed links; the whole log verifies with it.
    let keyed = netia::store::connect_with_chain(&db.url, 4, chain(KEY_1))
        .await
        .unwrap();
    conversation_in(&keyed, 2).await;
    drop(keyed);
    let (ok, said) = run(&db.url, &key_1, &["audit", "verify"]);
    assert!(ok && said.contains("3 streams, 9 events checked; 0 broken"), "{said}");

    // Rotation: from KEY_1 (AUDIT_KEY_PREVIOUS) to KEY_2.
    let rotate = [("AUDIT_KEY", KEY_2), ("AUDIT_KEY_PREVIOUS", KEY_3)];
    let (ok, said) = run(&db.url, &rotate, &["audit", "rekey"]);
    assert!(!ok && said.contains("set AUDIT_KEY_PREVIOUS to that key"), "{said}");
    let rotate = [("AUDIT_KEY", KEY_2), ("AUDIT_KEY_PREVIOUS", KEY_1)];
    let (ok, said) = run(&db.url, &rotate, &["audit", "rekey"]);
    assert!(ok && said.contains("relinked 9 events in 3 streams"), "{said}");
    let key_2 = [("AUDIT_KEY", KEY_2)];
    let (ok, said) = run(&db.url, &key_2, &["audit", "verify"]);
    assert!(ok, "{said}");

    // The owner rewrites a message and recomputes plain links: the keyed check catches it.
    rewrite_history(db, tampered, 2).await;
    let (ok, said) = run(&db.url, &key_2, &["audit", "verify"]);
    assert!(!ok, "{said}");
    assert!(
        said.contains(&format!("BROKEN conversation:{tampered} at version 2")),
        "{said}"
    );
    assert!(said.contains("3 streams, 9 events checked; 1 broken"), "{said}");
    // A broken log is not relinked (that would launder the rewrite): nothing changes.
    let rotate = [("AUDIT_KEY", KEY_3), ("AUDIT_KEY_PREVIOUS", KEY_2)];
    let (ok, said) = run(&db.url, &rotate, &["audit", "rekey"]);
    assert!(!ok && said.contains("nothing was relinked"), "{said}");
    let (_, said) = run(&db.url, &key_2, &["audit", "verify"]);
    assert!(said.contains("3 streams, 9 events checked; 1 broken"), "{said}");
}

/// A node started with a key on an empty log records it; nodes without it are refused.
async fn an_empty_log_takes_the_first_key(db: &TestDb) {
    let (ok, said) = run(&db.url, &[("AUDIT_KEY", KEY_1)], &["audit", "verify"]);
    assert!(ok && said.contains("0 streams, 0 events checked; 0 broken"), "{said}");
    let (ok, said) = run(&db.url, &[], &["status"]);
    assert!(!ok && said.contains("set AUDIT_KEY to that key"), "{said}");
    let (ok, said) = run(&db.url, &[("AUDIT_KEY", "too-short")], &["status"]);
    assert!(!ok && said.contains("AUDIT_KEY"), "{said}");
}

on_both_backends!(rekeyed_links_need_the_key, an_empty_log_takes_the_first_key);

/// The app role (`DATABASE_URL`) with the owner's (`DATABASE_MIGRATE_URL`) beside it: the server
/// works, rebuilds work, and the app's role cannot touch history.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_the_app_role_can_only_read_and_append_events() {
    let Some(db) = TestDb::postgres().await else { return };
    let role = format!("netia_app_{}", uuid::Uuid::now_v7().simple());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&common::admin_url())
        .await
        .unwrap();
    sqlx::query(&format!("CREATE ROLE {role} LOGIN"))
        .execute(&admin)
        .await
        .unwrap();
    let (base, name) = db.url.rsplit_once('/').unwrap();
    let (scheme, host) = base.split_once("://").unwrap();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let app_url = format!("{scheme}://{role}@{host}/{name}");
    let owner = [("DATABASE_MIGRATE_URL", db.url.as_str())];

    // Without grants the app's role cannot use the database at all.
    let (ok, said) = run(&app_url, &[], &["status"]);
    assert!(!ok, "{said}");
    let netia = std::path::Path::new(env!("CARGO_BIN_EXE_netia"));
    let api_on = |port: u16| Api {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    // A deployment that ran with one role (the owner made the read models' tables) ...
    let port = free_port();
    let node = serve_database(netia, &db.url, port, &[]).await;
    let admin_session = api_on(port).register("owner@example.com").await;
    let (conversation_id, _) = api_on(port).conversation(&admin_session.account_id).await;
    drop(node);
    // ... moves to two: the app's role serves, writes and projects.
    let port = free_port();
    let node = serve_database(netia, &app_url, port, &owner).await;
    let (second, _) = api_on(port).conversation(&admin_session.account_id).await;
    for id in [&conversation_id, &second] {
        let (status, body) = api_on(port)
            .get(&format!("/api/conversations/{id}"), &admin_session.token)
            .await;
        assert_eq!(status, 200, "{body}");
    }

    let app = PgPoolOptions::new().max_connections(1).connect(&app_url).await.unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app)
        .await
        .unwrap();
    assert!(events > 0);
    for refused in [
        "UPDATE events SET payload = payload",
        "DELETE FROM events",
        "TRUNCATE events",
        "ALTER TABLE events DISABLE TRIGGER events_no_update_delete",
        "DROP TABLE events",
        "CREATE OR REPLACE FUNCTION netia_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "DELETE FROM _sqlx_migrations",
    ] {
        let err = sqlx::raw_sql(refused).execute(&app).await.expect_err(refused);
        let code = err.as_database_error().and_then(|e| e.code()).unwrap_or_default();
        assert_eq!(code, "42501", "{refused}: {err}");
    }
    drop(node);

    // The read models are the app's: it rebuilds them; audits and rekeys need the owner.
    let (ok, said) = run(&app_url, &owner, &["projections", "rebuild"]);
    assert!(ok, "{said}");
    let (ok, said) = run(&app_url, &[("AUDIT_KEY", KEY_1)], &["audit", "rekey"]);
    assert!(!ok && said.contains("must be owner"), "{said}");
    let mut with_key = owner.to_vec();
    with_key.push(("AUDIT_KEY", KEY_1));
    let (ok, said) = run(&app_url, &with_key, &["audit", "rekey"]);
    assert!(ok, "{said}");
    let port = free_port();
    let node = serve_database(netia, &app_url, port, &with_key).await;
    let (status, body) = api_on(port)
        .get(&format!("/api/conversations/{conversation_id}"), &admin_session.token)
        .await;
    assert_eq!(status, 200, "the rebuilt read model serves: {body}");
    api_on(port).conversation(&admin_session.account_id).await;
    drop(node);
    let (ok, said) = run(&app_url, &[("AUDIT_KEY", KEY_1)], &["audit", "verify"]);
    assert!(ok && said.contains("0 broken"), "{said}");

    app.close().await;
    db.cleanup().await;
    sqlx::query(&format!("DROP ROLE {role}")).execute(&admin).await.unwrap();
}
