//! Channels: each vendor's client (base URL configurable, so tests use a local fake), the
//! verification of what it sends us, and the consumer that performs its effects.

pub mod gmail;
pub mod oauth_state;
pub mod slack;
pub mod twilio;

/// The HTTP client of a vendor's API: calls time out after `timeout`; Netia names itself.
pub fn vendor_http(timeout: std::time::Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("Netia/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}
pub mod email;
