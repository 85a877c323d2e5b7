//! Settings from environment variables; every invalid value fails startup naming its variable.

use std::collections::HashMap;

use secrecy::{ExposeSecret, SecretString};

/// Where the log lives when DATABASE_URL is not set.
pub const DEFAULT_SQLITE_URL: &str = "sqlite://./data/netia.db";

pub use attachments::{AttachmentLocation, AttachmentSettings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    /// `postgres://…` or `sqlite://…`; may hold a password.
    pub database_url: SecretString,
    pub database_max_connections: u32,
    /// Run migrations at start (`NETIA_MIGRATE`, default on).
    pub migrate: bool,
    pub log_format: LogFormat,
    pub log_filter: String,
    /// Lifetime of an agent session token (`SESSION_TTL_SECONDS`, default one day).
    pub session_ttl_seconds: i64,
    /// Lifetime of a renew token (`RENEW_TTL_SECONDS`, default 30 days).
    pub renew_ttl_seconds: i64,
    /// Public requests per client IP and minute (`RATE_LIMIT_IP_PER_MINUTE`, default 300).
    pub rate_limit_ip_per_minute: u32,
    /// Requests per customer token and minute (`RATE_LIMIT_CUSTOMER_PER_MINUTE`, default 120).
    pub rate_limit_customer_per_minute: u32,
    /// Socket upgrades per client address and minute (`RATE_LIMIT_SOCKETS_PER_MINUTE`, default 300).
    pub rate_limit_sockets_per_minute: u32,
    /// Frames a socket may send per second, bursts of twice that (`RATE_LIMIT_FRAMES_PER_SECOND`,
    /// default 50).
    pub rate_limit_frames_per_second: u32,
    /// Trust `X-Forwarded-For` for the client address (`NETIA_TRUST_PROXY`, default off).
    pub trust_proxy: bool,
    /// How long handled-delivery records and finished jobs are kept (`RETENTION_DAYS`, default 30).
    pub retention: chrono::TimeDelta,
    /// How long a SIGTERM/SIGINT shutdown may take before the process exits anyway
    /// (`SHUTDOWN_TIMEOUT`, seconds, default 15).
    pub shutdown_timeout: std::time::Duration,
    /// RabbitMQ (`AMQP_URL`, `amqp://…`); without it this node runs alone, with an in-process bus.
    pub amqp_url: Option<SecretString>,
    /// The deployment prefix of RabbitMQ exchange and queue names (`AMQP_PREFIX`; by default the
    /// database's name, e.g. `netia`): deployments sharing a vhost never consume each other's events.
    pub amqp_prefix: String,
    /// How consumers retry (`BUS_MAX_ATTEMPTS`, `BUS_RETRY_BASE_MS`, `BUS_PREFETCH`).
    pub retry: crate::bus::RetryPolicy,
    /// The LLM auto-reply (`OPENAI_API_KEY` and/or `LLM_BASE_URL`, `LLM_*`); `None`: disabled.
    pub llm: Option<crate::llm::LlmSettings>,
    /// Reply emails (`SMTP_URL`, `EMAIL_FROM`, `REPLY_EMAIL_DELAY`); `None`: no emails.
    pub email: Option<crate::email::EmailSettings>,
    /// Create a demo account on the first start (`NETIA_DEMO`; default on when DATABASE_URL is unset).
    pub demo: bool,
    /// The bearer token `/metrics` asks for (`METRICS_TOKEN`, at least 16 characters).
    pub metrics_token: Option<SecretString>,
    /// The key that seals secrets at rest (`NETIA_SECRET_KEY`, base64 of 32 bytes); see
    /// [`crate::secrets`] for what happens without it.
    pub secret_key: Option<SecretString>,
    /// `AUDIT_KEY`, `AUDIT_KEY_PREVIOUS`, `DATABASE_MIGRATE_URL`.
    pub audit: AuditSettings,
    /// Where `/metrics` is also served, without a token, for a scraper on a private network
    /// (`METRICS_ADDR`, `host:port`).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// What outbound webhooks may reach (`WEBHOOK_ALLOW_PRIVATE`, default off: no private,
    /// loopback or link-local addresses).
    pub webhooks: crate::app::webhooks::WebhookPolicy,
    /// The Slack app (`SLACK_CLIENT_ID`, `SLACK_CLIENT_SECRET`, `SLACK_SIGNING_SECRET`, base URLs);
    /// `None`: Slack is off.
    pub slack: Option<crate::channels::slack::SlackSettings>,
    /// The Google OAuth client for Gmail (`GOOGLE_CLIENT_ID`, `GOOGLE_CLIENT_SECRET`, base URLs,
    /// `GMAIL_SYNC_INTERVAL`); `None`: Gmail is off.
    pub gmail: Option<crate::channels::gmail::GmailSettings>,
    /// Where users reach this deployment (`NETIA_PUBLIC_URL`, e.g. `https://support.acme.com`):
    /// links in Slack posts, the Slack OAuth redirect, the URL Twilio's signatures cover.
    pub public_url: Option<String>,
    /// Twilio's REST API (`TWILIO_API_BASE_URL`, default `https://api.twilio.com`).
    pub twilio_api_base_url: String,
    /// The domain of inbound addresses (`INBOUND_EMAIL_DOMAIN`, e.g. `in.support.acme.com`,
    /// whose MX points at this deployment): `<local part>@<domain>`.
    pub inbound_email_domain: Option<String>,
    /// Where the built-in SMTP receiver listens (`INBOUND_SMTP_ADDR`, `host:port`); off when unset.
    pub inbound_smtp_addr: Option<std::net::SocketAddr>,
    /// Where attachment files are kept and how large one may be (`ATTACHMENTS_URL`,
    /// `ATTACHMENT_MAX_BYTES`).
    pub attachments: AttachmentSettings,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {variable}={value:?}: {reason}")]
pub struct SettingsError {
    pub variable: &'static str,
    pub value: String,
    pub reason: &'static str,
}

impl Settings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings from a map (tests) instead of the process environment.
    pub fn from_map(map: &HashMap<&str, &str>) -> Result<Self, SettingsError> {
        Self::from_lookup(|name| map.get(name).map(|v| (*v).to_owned()))
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let host = get("HOST").unwrap_or_else(|| "127.0.0.1".to_owned());
        if host.trim().is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("HOST", host, "must be an address or host name to listen on"));
        }
        let port = parse("PORT", get("PORT"), 4000u16, "must be a port number from 0 to 65535")?;
        let database_url = match get("DATABASE_URL").filter(|v| !v.is_empty()) {
            None => DEFAULT_SQLITE_URL.to_owned(),
            Some(url) if is_database_url(&url) => url,
            Some(url) => {
                let shown = url
                    .split_once("://")
                    .map_or("(unrecognised)", |(scheme, _)| scheme)
                    .to_owned();
                return Err(invalid(
                    "DATABASE_URL",
                    shown,
                    "must start with postgres://, postgresql:// or sqlite:",
                ));
            }
        };
        let database_max_connections = parse(
            "DATABASE_MAX_CONNECTIONS",
            get("DATABASE_MAX_CONNECTIONS"),
            10u32,
            "must be a whole number from 1 to 1000",
        )?;
        if !(1..=1000).contains(&database_max_connections) {
            return Err(invalid(
                "DATABASE_MAX_CONNECTIONS",
                database_max_connections.to_string(),
                "must be a whole number from 1 to 1000",
            ));
        }
        let audit = audit::audit_settings(&get, &database_url)?;
        let attachments = attachments::attachment_settings(&get)?;
        let migrate = flag("NETIA_MIGRATE", get("NETIA_MIGRATE"), true)?;
        let log_format = match get("LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("text" | "") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(invalid("LOG_FORMAT", other.to_owned(), "must be text or json")),
        };
        let log_filter = get("RUST_LOG").unwrap_or_else(|| "info,sqlx=warn".to_owned());
        if tracing_subscriber::EnvFilter::try_new(&log_filter).is_err() {
            return Err(invalid("RUST_LOG", log_filter, "is not a valid tracing filter"));
        }
        let ttl = |variable: &'static str, default: i64| -> Result<i64, SettingsError> {
            let reason = "must be a whole number of seconds from 1 to 31536000";
            let value = parse(variable, get(variable), default, reason)?;
            if !(1..=31_536_000).contains(&value) {
                return Err(invalid(variable, value.to_string(), reason));
            }
            Ok(value)
        };
        let session_ttl_seconds = ttl("SESSION_TTL_SECONDS", 86_400)?;
        let renew_ttl_seconds = ttl("RENEW_TTL_SECONDS", 30 * 86_400)?;
        // A rate: a whole number from 1 to 1,000,000 (`reason` names its unit).
        let rate = |variable: &'static str, default: u32, reason: &'static str| -> Result<u32, SettingsError> {
            let value = parse(variable, get(variable), default, reason)?;
            if !(1..=1_000_000).contains(&value) {
                return Err(invalid(variable, value.to_string(), reason));
            }
            Ok(value)
        };
        let per_minute = "must be a whole number of requests per minute from 1 to 1000000";
        let rate_limit_ip_per_minute = rate("RATE_LIMIT_IP_PER_MINUTE", 300, per_minute)?;
        let rate_limit_customer_per_minute = rate("RATE_LIMIT_CUSTOMER_PER_MINUTE", 120, per_minute)?;
        let rate_limit_sockets_per_minute = rate("RATE_LIMIT_SOCKETS_PER_MINUTE", 300, per_minute)?;
        let per_second = "must be a whole number of frames per second from 1 to 1000000";
        let rate_limit_frames_per_second = rate("RATE_LIMIT_FRAMES_PER_SECOND", 50, per_second)?;
        let trust_proxy = flag("NETIA_TRUST_PROXY", get("NETIA_TRUST_PROXY"), false)?;
        let metrics_token = match get("METRICS_TOKEN").filter(|v| !v.is_empty()) {
            None => None,
            Some(token) if token.chars().count() >= 16 && !token.chars().any(char::is_whitespace) => {
                Some(SecretString::from(token))
            }
            Some(_) => {
                return Err(invalid(
                    "METRICS_TOKEN",
                    "(hidden)".to_owned(),
                    "must be at least 16 characters without spaces",
                ));
            }
        };
        let secret_key = match get("NETIA_SECRET_KEY").filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(key) if crate::secrets::parse_key(&key).is_some() => Some(SecretString::from(key)),
            Some(_) => {
                return Err(invalid(
                    "NETIA_SECRET_KEY",
                    "(hidden)".to_owned(),
                    "must be 32 random bytes in base64, e.g. from `openssl rand -base64 32`",
                ));
            }
        };
        let metrics_addr = match get("METRICS_ADDR").filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(addr) => Some(
                addr.trim()
                    .parse()
                    .map_err(|_| invalid("METRICS_ADDR", addr, "must be host:port, e.g. 127.0.0.1:9100"))?,
            ),
        };
        let retention = {
            let reason = "must be a whole number of days from 1 to 3650";
            let days: i64 = parse("RETENTION_DAYS", get("RETENTION_DAYS"), 30, reason)?;
            if !(1..=3650).contains(&days) {
                return Err(invalid("RETENTION_DAYS", days.to_string(), reason));
            }
            chrono::TimeDelta::days(days)
        };
        let shutdown_timeout = {
            let reason = "must be a whole number of seconds from 1 to 600";
            let seconds: u64 = parse("SHUTDOWN_TIMEOUT", get("SHUTDOWN_TIMEOUT"), 15, reason)?;
            if !(1..=600).contains(&seconds) {
                return Err(invalid("SHUTDOWN_TIMEOUT", seconds.to_string(), reason));
            }
            std::time::Duration::from_secs(seconds)
        };
        let amqp_url = match get("AMQP_URL").filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(url) if url.starts_with("amqp://") && url.len() > "amqp://".len() => Some(SecretString::from(url)),
            Some(url) => {
                let shown = url.split_once("://").map_or("(unrecognised)", |(scheme, _)| scheme);
                return Err(invalid(
                    "AMQP_URL",
                    shown.to_owned(),
                    "must be amqp://user:password@host:port/vhost (amqps:// is not supported)",
                ));
            }
        };
        let amqp_prefix = match get("AMQP_PREFIX").filter(|v| !v.trim().is_empty()) {
            Some(prefix) if crate::bus::is_prefix(&prefix) => prefix,
            Some(prefix) => {
                return Err(invalid(
                    "AMQP_PREFIX",
                    prefix,
                    "must be 1 to 64 characters of a-z, 0-9, '_' and '-'",
                ));
            }
            None => crate::bus::prefix_of(&database_url),
        };
        let max_attempts = parse(
            "BUS_MAX_ATTEMPTS",
            get("BUS_MAX_ATTEMPTS"),
            5u32,
            "must be a whole number of attempts from 1 to 20",
        )?;
        if !(1..=20).contains(&max_attempts) {
            return Err(invalid(
                "BUS_MAX_ATTEMPTS",
                max_attempts.to_string(),
                "must be a whole number of attempts from 1 to 20",
            ));
        }
        let base_ms = parse(
            "BUS_RETRY_BASE_MS",
            get("BUS_RETRY_BASE_MS"),
            1000u64,
            "must be a whole number of milliseconds from 10 to 600000",
        )?;
        if !(10..=600_000).contains(&base_ms) {
            return Err(invalid(
                "BUS_RETRY_BASE_MS",
                base_ms.to_string(),
                "must be a whole number of milliseconds from 10 to 600000",
            ));
        }
        let prefetch = parse(
            "BUS_PREFETCH",
            get("BUS_PREFETCH"),
            16u16,
            "must be a whole number from 1 to 1000",
        )?;
        if !(1..=1000).contains(&prefetch) {
            return Err(invalid(
                "BUS_PREFETCH",
                prefetch.to_string(),
                "must be a whole number from 1 to 1000",
            ));
        }
        let reason = "must be a whole number of deliveries from 1 to 256";
        let concurrency: u16 = parse("BUS_CONCURRENCY", get("BUS_CONCURRENCY"), 8, reason)?;
        if !(1..=256).contains(&concurrency) {
            return Err(invalid("BUS_CONCURRENCY", concurrency.to_string(), reason));
        }
        let retry = crate::bus::RetryPolicy {
            max_attempts,
            base: std::time::Duration::from_millis(base_ms),
            prefetch,
            concurrency,
        };
        let llm = llm_settings(&get)?;
        let email = email_settings(&get)?;
        let configured = get("DATABASE_URL").is_some_and(|v| !v.is_empty());
        let demo = flag("NETIA_DEMO", get("NETIA_DEMO"), !configured)?;
        let webhooks = crate::app::webhooks::WebhookPolicy {
            allow_private: flag("WEBHOOK_ALLOW_PRIVATE", get("WEBHOOK_ALLOW_PRIVATE"), false)?,
        };
        let slack = crate::channels::slack::SlackSettings::from_lookup(&get)
            .map_err(|(variable, reason)| invalid(variable, "(hidden)".to_owned(), reason))?;
        let gmail = crate::channels::gmail::GmailSettings::from_lookup(&get)
            .map_err(|(variable, reason)| invalid(variable, "(hidden)".to_owned(), reason))?;
        let public_url = match get("NETIA_PUBLIC_URL").filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(url) if crate::channels::slack::is_http_url(&url) => Some(url.trim().trim_end_matches('/').to_owned()),
            Some(url) => return Err(invalid("NETIA_PUBLIC_URL", url, "must be an http(s) URL")),
        };
        let twilio_api_base_url = match get("TWILIO_API_BASE_URL").filter(|v| !v.trim().is_empty()) {
            None => crate::channels::twilio::client::API_BASE_URL.to_owned(),
            Some(url) if crate::channels::slack::is_http_url(&url) => url.trim().trim_end_matches('/').to_owned(),
            Some(url) => return Err(invalid("TWILIO_API_BASE_URL", url, "must be an http(s) URL")),
        };
        let inbound_email_domain = match get("INBOUND_EMAIL_DOMAIN").map(|v| v.trim().to_lowercase()) {
            None => None,
            Some(d) if d.is_empty() => None,
            Some(d) if is_domain(&d) => Some(d),
            Some(d) => {
                return Err(invalid(
                    "INBOUND_EMAIL_DOMAIN",
                    d,
                    "must be a domain name such as in.acme.com",
                ));
            }
        };
        let inbound_smtp_addr = match get("INBOUND_SMTP_ADDR").filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse()
                    .map_err(|_| invalid("INBOUND_SMTP_ADDR", v.clone(), "must be host:port, e.g. 0.0.0.0:2525"))?,
            ),
        };
        Ok(Self {
            host,
            port,
            database_url: SecretString::from(database_url),
            database_max_connections,
            migrate,
            log_format,
            log_filter,
            session_ttl_seconds,
            renew_ttl_seconds,
            rate_limit_ip_per_minute,
            rate_limit_customer_per_minute,
            rate_limit_sockets_per_minute,
            rate_limit_frames_per_second,
            trust_proxy,
            shutdown_timeout,
            retention,
            metrics_token,
            metrics_addr,
            secret_key,
            audit,
            amqp_url,
            amqp_prefix,
            retry,
            llm,
            email,
            demo,
            webhooks,
            slack,
            gmail,
            public_url,
            twilio_api_base_url,
            inbound_email_domain,
            inbound_smtp_addr,
            attachments,
        })
    }

    pub fn is_postgres(&self) -> bool {
        let url = self.database_url.expose_secret();
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    }
}

/// A DNS name (RFC 1035 §2.3.1, letters-digits-hyphens labels, at least two of them).
fn is_domain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').count() >= 2
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A number from the environment within `range`, or `default`.
fn ranged<T>(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
    reason: &'static str,
) -> Result<T, SettingsError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let value = parse(variable, get(variable), default, reason)?;
    if !range.contains(&value) {
        return Err(invalid(variable, value.to_string(), reason));
    }
    Ok(value)
}

fn is_database_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://") || url.starts_with("sqlite:")
}

fn invalid(variable: &'static str, value: String, reason: &'static str) -> SettingsError {
    SettingsError {
        variable,
        value,
        reason,
    }
}

fn flag(variable: &'static str, value: Option<String>, default: bool) -> Result<bool, SettingsError> {
    match value.as_deref().map(str::trim) {
        None => Ok(default),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(other) => Err(invalid(variable, other.to_owned(), "must be 1 or 0 (true/false)")),
    }
}

fn parse<T: std::str::FromStr>(
    variable: &'static str,
    value: Option<String>,
    default: T,
    reason: &'static str,
) -> Result<T, SettingsError> {
    match value {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| invalid(variable, v, reason)),
    }
}

mod attachments;
mod audit;
mod effects;
#[cfg(test)]
mod tests;

pub use audit::AuditSettings;
use effects::{email_settings, llm_settings};
