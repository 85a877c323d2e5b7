//! Netia and Node as child processes: `netia serve` on a port, the JS test dependencies.

use std::path::Path;

use std::process::Stdio;

use super::TestDb;
use super::api::Api;

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

/// `netia serve` (this build's binary) on `port` with extra environment `vars`, ready.
pub async fn serve_with(db: &TestDb, port: u16, vars: &[(&str, &str)]) -> tokio::process::Child {
    serve_binary(Path::new(env!("CARGO_BIN_EXE_netia")), db, port, vars).await
}

/// `binary serve` on `port` with extra environment `vars`, ready (`/health/ready` answers 200
/// within 10 s).
pub async fn serve_binary(binary: &Path, db: &TestDb, port: u16, vars: &[(&str, &str)]) -> tokio::process::Child {
    serve_database(binary, &db.url, port, vars).await
}

/// `binary serve` on the database at `database_url`, on `port`, with extra environment `vars`,
/// ready (as [`serve_binary`]).
pub async fn serve_database(
    binary: &Path,
    database_url: &str,
    port: u16,
    vars: &[(&str, &str)],
) -> tokio::process::Child {
    let child = tokio::process::Command::new(binary)
        .arg("serve")
        .env("ATTACHMENTS_URL", super::api::UPLOADS_URL)
        .envs(vars.iter().copied())
        .env("NETIA_SECRET_KEY", super::api::SECRET_KEY)
        .env("DATABASE_URL", database_url)
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

/// Debian's Chromium (or `CHROMIUM`), which `.ci/run` installs.
pub fn chromium() -> String {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        Path::new(&path).exists(),
        "Chromium is needed for the browser tests: apt-get install chromium (or set CHROMIUM)"
    );
    path
}

/// Runs `script` (in `tests/js`) with headless Chromium against `api`, as a new agent of a new
/// account; it must print "all checks passed".
pub async fn browser_script(api: &Api, script: &str) {
    let admin = api.register("agent@example.com").await;
    if script == "ai_browser.mjs" {
        api.enable_ai(&admin.token).await;
    }
    browser_script_as(api, &admin, script).await;
}

/// [`browser_script`] as `admin`, an admin registered as `agent@example.com` (the script signs in
/// with that email and the test password).
pub async fn browser_script_as(api: &Api, admin: &super::api::Session, script: &str) {
    let chromium = chromium();
    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let screenshots = screenshots.to_string_lossy().into_owned();
    let vars = [
        ("NETIA_URL", api.base.as_str()),
        ("ACCOUNT_ID", admin.account_id.as_str()),
        ("AGENT_TOKEN", admin.token.as_str()),
        ("AGENT_EMAIL", "agent@example.com"),
        ("AGENT_PASSWORD", "correct horse battery"),
        ("CHROMIUM", chromium.as_str()),
        ("SCREENSHOTS", screenshots.as_str()),
    ];
    run_script(script, &vars).await;
}

/// Starts `script` (in `tests/js`) with `vars` and returns once it prints the line `joined` (its
/// channel is joined: it cannot miss a broadcast that follows), panicking if it does not within
/// 30 s. The handle ends as [`run_script`] does: exit 0, "all checks passed" printed.
pub async fn spawn_script_joined(script: &str, vars: &[(&str, &str)]) -> tokio::task::JoinHandle<()> {
    use tokio::io::AsyncBufReadExt;
    let dir = node_modules();
    let mut child = tokio::process::Command::new("node")
        .arg(dir.join(script))
        .current_dir(&dir)
        .envs(vars.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("its stdout")).lines();
    let mut printed = String::new();
    let joined = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("its stdout reads") {
            printed.push_str(&line);
            printed.push('\n');
            if line == "joined" {
                return true;
            }
        }
        false
    })
    .await;
    assert!(joined == Ok(true), "{script} did not join within 30 s:\n{printed}");
    let script = script.to_owned();
    tokio::spawn(async move {
        while let Some(line) = lines.next_line().await.expect("its stdout reads") {
            printed.push_str(&line);
            printed.push('\n');
        }
        let output = child.wait_with_output().await.expect("node runs");
        script_passed(&script, &printed, &output);
    })
}

/// The checks every script's end must pass: exit 0 having printed "all checks passed" (`stdout`
/// is what it printed, `output.stdout` may have been read already).
fn script_passed(script: &str, stdout: &str, output: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    assert!(output.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

/// Runs `script` (in `tests/js`) with `vars`; it must exit 0 having printed "all checks passed".
pub async fn run_script(script: &str, vars: &[(&str, &str)]) {
    let dir = node_modules();
    let output = tokio::process::Command::new("node")
        .arg(dir.join(script))
        .current_dir(&dir)
        .envs(vars.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("node runs");
    script_passed(script, &String::from_utf8_lossy(&output.stdout), &output);
}
