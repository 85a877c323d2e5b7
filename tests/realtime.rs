//! The WebSocket as the official `phoenix` npm client meets it (Node 20, `ws` transport): the
//! scenario in `tests/js/conformance.mjs`, against a real server on both databases. Needs
//! `npm ci --prefix tests/js` (done by `.ci/run`); without it the test fails and says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Stdio;

use common::TestDb;
use common::api::Api;

async fn run_script(script: &str, vars: &[(&str, &str)]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        dir.join("node_modules/phoenix").exists(),
        "the phoenix client is not installed: run `npm ci --prefix tests/js`"
    );
    let output = tokio::process::Command::new("node")
        .arg(dir.join(script))
        .current_dir(&dir)
        .envs(vars.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

async fn the_phoenix_client_works_against_netia(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("agent@example.com").await;
    let (conversation, customer) = api.conversation(&admin.account_id).await;
    let (other, _) = api.conversation(&admin.account_id).await;
    run_script(
        "conformance.mjs",
        &[
            ("NETIA_URL", &api.base),
            ("AGENT_TOKEN", &admin.token),
            ("CUSTOMER_TOKEN", &customer),
            ("CONVERSATION_ID", &conversation),
            ("OTHER_CONVERSATION_ID", &other),
            ("ACCOUNT_ID", &admin.account_id),
        ],
    )
    .await;
}

on_both_backends!(the_phoenix_client_works_against_netia);

async fn hostile_frames_close_only_the_offending_socket(db: &TestDb) {
    let api = Api::start(db).await;
    let admin = api.register("agent@example.com").await;
    let other = api.register("other@example.com").await;
    let (conversation, customer) = api.conversation(&admin.account_id).await;
    run_script(
        "hostile.mjs",
        &[
            ("NETIA_URL", &api.base),
            ("AGENT_TOKEN", &admin.token),
            ("CUSTOMER_TOKEN", &customer),
            ("CONVERSATION_ID", &conversation),
            ("OTHER_ACCOUNT_ID", &other.account_id),
        ],
    )
    .await;
}

mod hostile {
    use super::*;
    on_both_backends!(hostile_frames_close_only_the_offending_socket);
}
