//! The log survives a move to another PostgreSQL cluster (ADR 0016): `pg_dump` of a running Netia's
//! database, restored with `pg_restore` into a fresh cluster (`initdb` on another port) whose
//! transaction ids start far below the restored events'; Netia goes on there and nothing stops or
//! repeats. Ordering the log by `(tx_id, position)`, the new events sorted before the restored ones
//! and no read model ever saw them.
//!
//! Needs PostgreSQL's server binaries (`initdb`, `pg_ctl`: Debian's `postgresql` package, found under
//! `/usr/lib/postgresql/*/bin` or `PG_BINDIR`) and `pg_dump`/`pg_restore`; as root the new cluster runs
//! as the `postgres` user.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::TestDb;
use common::api::Api;
use common::nodes::{free_port, serve_database};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;

/// The directory of `initdb` and `pg_ctl`: `PG_BINDIR`, or the newest `/usr/lib/postgresql/*/bin`.
fn server_binaries() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server binaries under /usr/lib/postgresql (or set PG_BINDIR)")
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().expect("initdb under /usr/lib/postgresql/*/bin").1
}

/// A throwaway PostgreSQL cluster of its own (trust authentication, `postgres` superuser), stopped
/// and deleted on drop.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program` with `args`, as the `postgres` user when run as root (PostgreSQL refuses root).
fn as_postgres(program: &Path, args: &[&str]) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program).args(args);
        command
    } else {
        let mut command = Command::new(program);
        command.args(args);
        command
    }
}

fn run(mut command: Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what} runs: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Cluster {
    fn start() -> Cluster {
        let bin = server_binaries();
        let dir = tempfile::tempdir().expect("a directory for the cluster");
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["postgres:postgres"]).arg(dir.path());
                    c
                },
                "chown",
            );
        }
        let data = dir.path().to_str().unwrap().to_owned();
        run(
            as_postgres(
                &bin.join("initdb"),
                &[
                    "-D",
                    &data,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ],
            ),
            "initdb",
        );
        let port = free_port();
        let options = format!("-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off");
        let log = format!("{data}/server.log");
        run(
            as_postgres(
                &bin.join("pg_ctl"),
                &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
            ),
            "pg_ctl start",
        );
        Cluster { bin, dir, port }
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().to_str().unwrap().to_owned();
        let _ = as_postgres(&self.bin.join("pg_ctl"), &["-D", &data, "-m", "immediate", "stop"]).output();
    }
}

/// The one text `sql` selects, on the database at `url`.
async fn text(url: &str, sql: &str) -> String {
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await.unwrap();
    let value: String = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
    pool.close().await;
    value
}

/// The messages of `conversation` as the read model has them, once there are `n` (within 20 s).
async fn messages(api: &Api, token: &str, conversation: &str, n: usize) -> Vec<Value> {
    let path = format!("/api/conversations/{conversation}/messages");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = api.get(&path, token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let got = body["data"].as_array().cloned().unwrap_or_default();
        if got.len() >= n || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An agent (`token`) writes `text` in `conversation`.
async fn say(api: &Api, token: &str, conversation: &str, text: &str) {
    let (status, body) = api
        .post(
            &format!("/api/conversations/{conversation}/messages"),
            Some(token),
            json!({ "body": text }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_dump_restored_into_a_fresh_cluster_goes_on_without_stopping_or_repeating() {
    let Some(db) = TestDb::postgres().await else { return };
    let binary = Path::new(env!("CARGO_BIN_EXE_netia"));
    // The new cluster first: the old one's transaction ids must run far ahead of where the new
    // one's will be after the restore, as they do on any cluster that has been in use.
    let cluster = Cluster::start();
    let fresh_xid: u64 = text(&cluster.url("postgres"), "SELECT pg_current_xact_id()::text")
        .await
        .parse()
        .unwrap();
    {
        use sqlx::Connection;
        let mut old = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query("SET synchronous_commit = off")
            .execute(&mut old)
            .await
            .unwrap();
        sqlx::query(&format!(
            "DO $$ BEGIN WHILE pg_current_xact_id()::text::bigint < {} LOOP COMMIT; END LOOP; END $$",
            fresh_xid + 50_000
        ))
        .execute(&mut old)
        .await
        .unwrap();
    }

    // A running Netia with a history.
    let port = free_port();
    let mut first = serve_database(binary, &db.url, port, &[]).await;
    let api = Api {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    let admin = api.register("owner@example.com").await;
    let (conversation, _) = api.conversation(&admin.account_id).await;
    for n in 1..=5 {
        say(&api, &admin.token, &conversation, &format!("before the move {n}")).await;
    }
    assert_eq!(messages(&api, &admin.token, &conversation, 5).await.len(), 5);

    // pg_dump while it runs, then the move: the old node stops, the dump goes into the new cluster.
    let dump = tempfile::NamedTempFile::new().unwrap();
    let dump_path = dump.path().to_str().unwrap().to_owned();
    run(
        {
            let mut c = Command::new("pg_dump");
            c.args(["--format=custom", "--file", &dump_path, "--dbname", &db.url]);
            c
        },
        "pg_dump",
    );
    first.kill().await.unwrap();
    let admin_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&cluster.url("postgres"))
        .await
        .unwrap();
    sqlx::query("CREATE DATABASE netia").execute(&admin_pool).await.unwrap();
    admin_pool.close().await;
    let moved = cluster.url("netia");
    run(
        {
            let mut c = Command::new("pg_restore");
            c.args(["--no-owner", "--exit-on-error", "--dbname", &moved, &dump_path]);
            c
        },
        "pg_restore",
    );
    let restored_min: u64 = text(&moved, "SELECT min(tx_id)::text FROM events")
        .await
        .parse()
        .unwrap();
    let moved_xid: u64 = text(&moved, "SELECT pg_current_xact_id()::text").await.parse().unwrap();
    assert!(
        moved_xid < restored_min,
        "the premise: the new cluster's transaction ids ({moved_xid}) are below the restored events' ({restored_min})"
    );

    // Netia goes on in the new cluster: the same agent token, new messages, a new conversation.
    let port = free_port();
    let mut second = serve_database(binary, &moved, port, &[]).await;
    let api = Api {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    for n in 1..=5 {
        say(&api, &admin.token, &conversation, &format!("after the move {n}")).await;
    }
    let (other, _) = api.conversation(&admin.account_id).await;
    say(&api, &admin.token, &other, "a new conversation after the move").await;

    let got = messages(&api, &admin.token, &conversation, 10).await;
    let bodies: Vec<&str> = got.iter().filter_map(|m| m["body"].as_str()).collect();
    let expected: Vec<String> = (1..=5)
        .map(|n| format!("before the move {n}"))
        .chain((1..=5).map(|n| format!("after the move {n}")))
        .collect();
    assert_eq!(bodies, expected, "every message once, in order, in the read model");
    assert_eq!(messages(&api, &admin.token, &other, 1).await.len(), 1);
    let new_min: u64 = text(
        &moved,
        &format!("SELECT min(tx_id)::text FROM events WHERE global_position > (SELECT max(global_position) FROM events WHERE tx_id >= '{restored_min}'::xid8)"),
    )
    .await
    .parse()
    .unwrap();
    assert!(
        new_min < restored_min,
        "new events carry the new cluster's smaller transaction ids"
    );

    // Every follower of the log reaches its head: none stopped at the restored events.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = Command::new(binary)
            .args(["projections", "status", "--json"])
            .env("DATABASE_URL", &moved)
            .env("NETIA_SECRET_KEY", common::api::SECRET_KEY)
            .output()
            .unwrap();
        assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
        let report: Value = serde_json::from_slice(&status.stdout).unwrap();
        let followers = report.as_array().expect("a list of followers").clone();
        assert!(!followers.is_empty());
        if followers.iter().all(|f| f["lag_events"] == 0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "followers left behind: {report}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    second.kill().await.unwrap();
    drop(cluster);
    db.cleanup().await;
}
