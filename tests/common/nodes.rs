//! Netia and Node as child processes: `netia serve` on a port, the JS test dependencies.

use std::path::Path;

use super::TestDb;

/// A free TCP port on 127.0.0.1 (free when asked; a test binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("its address")
        .port()
}

/// The JS test dependencies (the official phoenix client and ws), installed once if missing.
pub fn node_modules() -> std::path::PathBuf {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    INSTALL.call_once(|| {
        if !dir.join("node_modules/phoenix").exists() {
            let status = std::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .expect("npm runs (Node 20 and npm are needed for the socket tests)");
            assert!(status.success(), "npm ci in tests/js failed");
        }
    });
    dir
}

/// `netia serve` as a child process on `port`, ready.
pub async fn serve(db: &TestDb, port: u16) -> tokio::process::Child {
    serve_with(db, port, &[]).await
}

pub async fn serve_with(db: &TestDb, port: u16, vars: &[(&str, &str)]) -> tokio::process::Child {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_netia"))
        .arg("serve")
        .envs(vars.iter().copied())
        .env("DATABASE_URL", &db.url)
        .env("PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("netia starts");
    let url = format!("http://127.0.0.1:{port}/health/ready");
    for _ in 0..200 {
        if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
            return child;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("netia did not become ready on port {port}");
}
