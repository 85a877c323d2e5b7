//! Anchors (issue 20 part 2), on both databases through the CLI: someone with the database
//! owner's rights rewrites an event and recomputes every later link of its stream, so that plain
//! `audit verify` passes; `audit verify --anchor FILE` against an anchor written before still
//! fails, and so does an anchor file whose heads were edited.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestDb;
use common::tamper::{conversation, rewrite_history};
use serde_json::Value;

/// `netia ARGS` on `db`: (exit success, stdout).
fn run(db: &TestDb, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netia"))
        .env("NETIA_SECRET_KEY", common::api::SECRET_KEY)
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap())
}

async fn an_anchor_catches_a_rewrite_that_recomputed_the_chain(db: &TestDb) {
    let tampered = conversation(db, 3).await;
    let other = conversation(db, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("anchors.jsonl");
    let file = file.to_str().unwrap();

    let said = db.netia(&["audit", "anchor", "--file", file]);
    assert!(said.contains("anchored 2 streams"), "{said}");
    // Printed instead of appended: the same heads, one JSON line.
    let printed: Value = serde_json::from_str(db.netia(&["audit", "anchor"]).trim()).unwrap();
    assert_eq!(printed["streams"], 2);
    let kept: Value = serde_json::from_str(std::fs::read_to_string(file).unwrap().trim()).unwrap();
    assert_eq!(printed["merkle_root"], kept["merkle_root"]);
    assert!(
        db.netia(&["audit", "verify", "--anchor", file])
            .contains("2 anchored heads checked; 0 broken")
    );

    // More events after the anchor change nothing; a second anchor is appended.
    conversation(db, 1).await;
    db.netia(&["audit", "anchor", "--file", file]);
    assert_eq!(std::fs::read_to_string(file).unwrap().lines().count(), 2);
    assert!(
        db.netia(&["audit", "verify", "--anchor", file])
            .contains("2 anchors, 5 anchored heads checked; 0 broken")
    );

    rewrite_history(db, tampered, 2).await;
    let (plain, said) = run(db, &["audit", "verify"]);
    assert!(plain, "a recomputed plain chain verifies on its own: {said}");
    let (ok, said) = run(db, &["audit", "verify", "--anchor", file]);
    assert!(!ok, "{said}");
    assert!(
        said.contains(&format!("BROKEN conversation:{tampered} at version 4")),
        "{said}"
    );
    assert!(!said.contains(&other.to_string()), "the other stream is intact: {said}");
    assert!(said.contains("5 anchored heads checked; 2 broken"), "{said}");

    // An anchor file whose heads were edited no longer gives its root.
    let edited = std::fs::read_to_string(file)
        .unwrap()
        .replacen("\"version\":4", "\"version\":3", 1);
    std::fs::write(file, edited).unwrap();
    let (ok, said) = run(db, &["audit", "verify", "--anchor", file]);
    assert!(!ok && said.contains("BROKEN the anchor itself"), "{said}");
    // Not an anchor file at all: a clear error.
    std::fs::write(file, "{\"hello\":1}\n").unwrap();
    let (ok, _) = run(db, &["audit", "verify", "--anchor", file]);
    assert!(!ok);
}

on_both_backends!(an_anchor_catches_a_rewrite_that_recomputed_the_chain);
