//! What the server logs, captured: one process-wide subscriber at `debug` (Netia at `trace`) that
//! writes into memory, so a test can check that no secret ever reaches the log.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static CAPTURED: OnceLock<Buffer> = OnceLock::new();

/// Starts capturing (once per test binary; later calls keep the same capture).
pub fn capture() {
    CAPTURED.get_or_init(|| {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let installed = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug,netia=trace"))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        assert!(installed.is_ok(), "no other subscriber may be installed first");
        buffer
    });
}

/// Everything logged so far.
pub fn text() -> String {
    let captured = CAPTURED.get().expect("capture() first");
    String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned()
}

/// Panics naming the first of `secrets` the log holds.
pub fn assert_none_of(secrets: &[&str]) {
    let logged = text();
    assert!(logged.len() > 1_000, "the log captured too little to tell: {logged}");
    for secret in secrets {
        assert!(!secret.is_empty());
        if let Some(at) = logged.find(secret) {
            let from = logged[..at].rfind('\n').map_or(0, |i| i + 1);
            let line = logged[from..].lines().next().unwrap_or_default();
            panic!("a secret is in the log: {line}");
        }
    }
}
