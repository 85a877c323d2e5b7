//! Test harness: a fresh PostgreSQL database or SQLite file per test.
#![allow(dead_code)]

pub mod ai_history;
pub mod api;
pub mod logs;
pub mod nodes;
pub mod proxy;
pub mod rows;
pub mod smtp;
pub mod tamper;

use std::sync::Arc;

use netia::store::{EventStore, PgStore, SqliteStore};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, SqlitePool};

/// `store` with personal fields sealed under per-customer keys, as a server with
/// `NETIA_SECRET_KEY` = [`api::SECRET_KEY`] runs it (ADR 0023).
pub async fn sealed(store: Arc<dyn EventStore>, url: &str) -> Arc<dyn EventStore> {
    let keys = netia::projector::read_model_pool(url, 2).await.expect("key pool");
    let key = netia::secrets::parse_key(api::SECRET_KEY).expect("test key");
    Arc::new(netia::store::ShreddingStore::new(
        store,
        keys,
        netia::secrets::Sealer::new(&key),
    ))
}

/// The command that opens a chat conversation.
pub fn open_conversation(
    conversation_id: netia_events::ConversationId,
    account_id: netia_events::AccountId,
    customer_id: netia_events::CustomerId,
    at: chrono::DateTime<chrono::Utc>,
) -> netia_commands::ConversationCommand {
    netia_commands::ConversationCommand::Create {
        conversation_id,
        account_id,
        customer_id,
        inbox_id: netia_events::InboxId::new(),
        source: netia_events::conversation::Source::Chat,
        subject: None,
        at,
    }
}

/// A new account "Acme" owned by a new agent, written through `bus`: (account, agent, the agent's
/// metadata).
pub async fn register_account(
    bus: &netia::command_bus::CommandBus,
) -> (netia_events::AccountId, netia_events::UserId, netia_events::Metadata) {
    let (account, agent) = (netia_events::AccountId::new(), netia_events::UserId::new());
    let meta = netia_events::Metadata::new(netia_events::Actor::Agent { user_id: agent }).with_account(account);
    let register = netia_commands::AccountCommand::Register {
        account_id: account,
        name: "Acme".into(),
        owner_user_id: agent,
        primary_inbox_id: netia_events::InboxId::new(),
    };
    bus.execute::<netia_commands::Account>(account, register, &meta)
        .await
        .expect("the account is registered");
    (account, agent, meta)
}

/// A chat message (or, with `private`, an agent's note).
pub fn message(
    author: netia_events::conversation::Author,
    body: &str,
    private: bool,
    client_message_id: Option<&str>,
    at: chrono::DateTime<chrono::Utc>,
) -> netia_commands::ConversationCommand {
    netia_commands::ConversationCommand::PostMessage {
        message_id: netia_events::MessageId::new(),
        author,
        body: body.into(),
        format: netia_events::conversation::MessageFormat::Text,
        private,
        client_message_id: client_message_id.map(Into::into),
        attachments: Vec::new(),
        at,
    }
}

/// The whole log.
pub async fn all_events(store: &dyn EventStore) -> Vec<netia_events::RecordedEvent> {
    store.read_all(Default::default(), 1_000_000).await.expect("read_all")
}

/// Where tests create their databases (the server's admin database).
pub fn admin_url() -> String {
    std::env::var("NETIA_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// In CI (CI=true) or with NETIA_REQUIRE_POSTGRES=1 a missing PostgreSQL fails the test instead of skipping it.
pub fn postgres_required() -> bool {
    let set = |v: &str| std::env::var(v).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    set("CI") || set("NETIA_REQUIRE_POSTGRES")
}

/// Raw access to the database under the store, for tests that tamper with it.
pub enum Raw {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

pub struct TestDb {
    pub store: Arc<dyn EventStore>,
    pub raw: Raw,
    pub url: String,
    db_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A new, migrated PostgreSQL database; `None` (skip) only when PostgreSQL is unreachable outside CI.
    pub async fn postgres() -> Option<TestDb> {
        let admin_url = admin_url();
        let admin = match PgPoolOptions::new().max_connections(1).connect(&admin_url).await {
            Ok(pool) => pool,
            Err(e) if !postgres_required() => {
                eprintln!("SKIPPED: PostgreSQL not reachable at {admin_url}: {e} (set CI=true to fail instead)");
                return None;
            }
            Err(e) => panic!("PostgreSQL is required (CI=true) but not reachable at {admin_url}: {e}"),
        };
        let name = format!("netia_test_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let url = replace_db(&admin_url, &name);
        let pool = PgPoolOptions::new()
            .max_connections(20)
            .connect(&url)
            .await
            .expect("connect");
        let store = PgStore::from_pool(pool.clone());
        store.migrate().await.expect("migrate postgres");
        Some(TestDb {
            store: sealed(Arc::new(store), &url).await,
            raw: Raw::Postgres(pool),
            url,
            db_name: Some(name),
            _dir: None,
        })
    }

    /// A new, migrated SQLite file in a temporary directory.
    pub async fn sqlite() -> Option<TestDb> {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/netia.db", dir.path().display());
        let store = SqliteStore::connect(&url, 4).await.expect("open sqlite");
        store.migrate().await.expect("migrate sqlite");
        let pool = SqlitePool::connect(&url).await.expect("raw sqlite");
        Some(TestDb {
            store: sealed(Arc::new(store), &url).await,
            raw: Raw::Sqlite(pool),
            url,
            db_name: None,
            _dir: Some(dir),
        })
    }

    /// Drops the PostgreSQL database (the SQLite directory goes with the value).
    /// The one integer `sql` selects (a `COUNT(*)`), on either backend.
    pub async fn count(&self, sql: &str) -> i64 {
        match &self.raw {
            Raw::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Raw::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .expect("the count query runs")
    }

    pub async fn cleanup(self) {
        if let Raw::Postgres(pool) = &self.raw {
            pool.close().await;
        }
        drop(self.store);
        if let Some(name) = self.db_name
            && let Ok(admin) = PgPoolOptions::new().max_connections(1).connect(&admin_url()).await
        {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&admin)
                .await;
        }
    }
}

fn replace_db(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{name}")
}

/// Runs a test body against both backends: `backends!(name, body_fn)` makes `name_postgres` and `name_sqlite`.
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let Some(db) = $crate::common::TestDb::postgres().await else { return };
                    super::$test(&db).await;
                    db.cleanup().await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let Some(db) = $crate::common::TestDb::sqlite().await else { return };
                    super::$test(&db).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}

impl TestDb {
    /// Runs `netia ARGS…` (this build's binary) on this database and returns what it printed; it
    /// must succeed.
    pub fn netia(&self, args: &[&str]) -> String {
        self.netia_with(args, &[])
    }

    /// [`TestDb::netia`] with extra environment variables.
    pub fn netia_with(&self, args: &[&str], vars: &[(&str, &str)]) -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_netia"))
            .args(args)
            .env("NETIA_SECRET_KEY", api::SECRET_KEY)
            .envs(vars.iter().copied())
            .env("DATABASE_URL", &self.url)
            .env("RUST_LOG", "warn")
            .output()
            .expect("netia runs");
        assert!(
            out.status.success(),
            "netia {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("netia prints UTF-8")
    }
}
