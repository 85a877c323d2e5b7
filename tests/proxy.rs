//! Netia behind Debian's nginx, configured by `deploy/nginx.conf`, in front of two nodes sharing
//! PostgreSQL and RabbitMQ: the widget in a browser, the HTTP API, the client address from
//! `X-Forwarded-For`, and the official phoenix client surviving one node's SIGTERM by reconnecting
//! to the other. nginx is installed by `.ci/run` (elsewhere: `apt-get install nginx`, or NGINX=).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::TestDb;
use common::api::{Api, METRICS_TOKEN};
use common::nodes::{browser_script, free_port, node_modules, serve_with};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn nginx_binary() -> String {
    let path = std::env::var("NGINX").unwrap_or_else(|_| "/usr/sbin/nginx".to_owned());
    assert!(
        Path::new(&path).exists(),
        "nginx is needed for the proxy test: apt-get install nginx (or set NGINX)"
    );
    path
}

/// nginx running `deploy/nginx.conf` on `port`, its upstream pointed at the two nodes.
struct Nginx {
    /// Killed when dropped.
    _child: tokio::process::Child,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    /// SIGTERM (a fast shutdown that stops the workers too; SIGKILL would orphan them, still
    /// listening), then waits up to 2 s for the master to exit.
    fn drop(&mut self) {
        if let Some(pid) = self._child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            for _ in 0..40 {
                if self._child.try_wait().is_ok_and(|exited| exited.is_some()) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Nginx {
    async fn start(port: u16, node_a: u16, node_b: u16) -> Nginx {
        let deployed =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx.conf")).unwrap();
        for needed in ["127.0.0.1:4001", "127.0.0.1:4002", "listen 80;", "listen [::]:80;"] {
            assert!(deployed.contains(needed), "deploy/nginx.conf has {needed}");
        }
        let site = deployed
            .replace("127.0.0.1:4001", &format!("127.0.0.1:{node_a}"))
            .replace("127.0.0.1:4002", &format!("127.0.0.1:{node_b}"))
            .replace("listen [::]:80;", "")
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
        let dir = tempfile::tempdir().unwrap();
        // Workers of a root master run as nobody: they write their temporary files here.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let d = dir.path().display();
        std::fs::write(dir.path().join("netia.conf"), site).unwrap();
        std::fs::write(
            dir.path().join("nginx.conf"),
            format!(
                "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
                 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
                 include {d}/netia.conf;\n}}\n"
            ),
        )
        .unwrap();
        let conf = dir.path().join("nginx.conf");
        let checked = std::process::Command::new(nginx_binary())
            .args(["-t", "-q", "-p"])
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "nginx -t refuses deploy/nginx.conf: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
        let child = tokio::process::Command::new(nginx_binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .kill_on_drop(true)
            .spawn()
            .expect("nginx starts");
        let url = format!("http://127.0.0.1:{port}/health/live");
        for _ in 0..100 {
            if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
                return Nginx { _child: child, dir };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "nginx did not answer on port {port}: {}",
            Nginx { _child: child, dir }.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

/// Open sockets on the node at `port`, from its `/metrics` (one node per process: exact).
async fn sockets_open(port: u16) -> f64 {
    let api = Api {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    api.metric("netia_sockets_open").await.unwrap_or(0.0)
}

/// A client of the proxy whose connections come from `ip` (any 127.0.0.0/8 address is local).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_rabbitmq_two_nodes_behind_nginx_serve_the_widget_and_survive_a_sigterm() {
    let Some(db) = TestDb::postgres().await else { return };
    let (port_a, port_b, port) = (free_port(), free_port(), free_port());
    let amqp = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let vars = [
        ("AMQP_URL", amqp.as_str()),
        ("NETIA_TRUST_PROXY", "1"),
        ("RATE_LIMIT_IP_PER_MINUTE", "60"),
        ("METRICS_TOKEN", METRICS_TOKEN),
        ("SHUTDOWN_TIMEOUT", "10"),
    ];
    let mut a = serve_with(&db, port_a, &vars).await;
    let mut b = serve_with(&db, port_b, &vars).await;
    let nginx = Nginx::start(port, port_a, port_b).await;
    let proxy = Api {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };

    // The widget on a host page, and the dashboard's API, in a browser through nginx: its requests
    // and its socket land on either node.
    browser_script(&proxy, "widget_browser.mjs").await;

    // The HTTP API through nginx.
    let admin = proxy.register("owner@example.com").await;
    let (conversation, customer) = proxy.conversation(&admin.account_id).await;
    let (status, body) = proxy
        .get(&format!("/api/conversations/{conversation}"), &admin.token)
        .await;
    assert_eq!(status, 200, "{body}");

    // The client address is the last X-Forwarded-For entry, the one nginx appends: a client that
    // spends its allowance is refused (whatever X-Forwarded-For it sends itself), while another
    // client is not.
    let spender = client_from("127.0.0.3");
    let openapi = format!("{}/api/openapi.json", proxy.base);
    let mut refused = None;
    for n in 1..=200 {
        let response = spender
            .get(&openapi)
            .header("X-Forwarded-For", format!("198.51.100.{}", n % 250))
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            refused = Some(n);
            break;
        }
    }
    let refused = refused.expect("127.0.0.3 is rate limited after its allowance on both nodes");
    assert!(
        refused > 60,
        "both nodes counted it apart (60 a node): refused at {refused}"
    );
    for _ in 0..4 {
        let other = client_from("127.0.0.4").get(&openapi).send().await.unwrap();
        assert_eq!(other.status(), 200, "another client address keeps its own allowance");
    }

    // The official phoenix client through nginx, and the SIGTERM of the node that holds it.
    let dir = node_modules();
    let mut client = tokio::process::Command::new("node")
        .arg(dir.join("proxy.mjs"))
        .current_dir(&dir)
        .env("PROXY", &proxy.base)
        .env("CUSTOMER_TOKEN", &customer)
        .env("AGENT_TOKEN", &admin.token)
        .env("CONVERSATION_ID", &conversation)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdin = client.stdin.take().unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    let mut transcript = String::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the client answers within 30 s")
            .unwrap();
        let Some(line) = line else {
            panic!("the client stopped before it joined:\n{transcript}")
        };
        transcript.push_str(&line);
        transcript.push('\n');
        if line == "JOINED" {
            break;
        }
    }
    let (on_a, on_b) = (sockets_open(port_a).await, sockets_open(port_b).await);
    assert_eq!(on_a + on_b, 1.0, "one socket, on one node: {on_a} + {on_b}");
    let (holder, other_port) = if on_a == 1.0 {
        (&mut a, port_b)
    } else {
        (&mut b, port_a)
    };
    let pid = holder.id().expect("the node runs").to_string();
    let signalled = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = tokio::time::timeout(Duration::from_secs(15), holder.wait())
        .await
        .expect("the stopped node exits within SHUTDOWN_TIMEOUT")
        .unwrap();
    assert!(exit.success(), "the stopped node exits 0: {exit}");
    eprintln!("the node exited {:?} after SIGTERM", signalled.elapsed());
    stdin.write_all(b"stopped\n").await.unwrap();
    stdin.flush().await.unwrap();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await {
        transcript.push_str(&line);
        transcript.push('\n');
        if line == "all checks passed" || line.starts_with("FAIL") {
            break;
        }
    }
    eprintln!("{transcript}");
    assert!(
        transcript.contains("all checks passed"),
        "{transcript}\nnginx: {}",
        nginx.log()
    );
    let moved = Api {
        base: format!("http://127.0.0.1:{other_port}"),
        http: reqwest::Client::new(),
    };
    assert_eq!(
        moved.metric("netia_sockets_open").await,
        Some(1.0),
        "the socket moved to the other node: {}",
        moved.metrics().await
    );
    stdin.write_all(b"done\n").await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.wait()).await;
    drop(nginx);
    drop((a, b));
    db.cleanup().await;
}
