//! Settings of the effects: the LLM auto-reply (`OPENAI_API_KEY`, `LLM_*`) and reply emails
//! (`SMTP_URL`, `EMAIL_FROM`, `REPLY_EMAIL_DELAY`).

use secrecy::SecretString;

use super::{SettingsError, invalid, ranged};

pub(super) fn llm_settings(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<crate::llm::LlmSettings>, SettingsError> {
    use crate::llm::{DEFAULT_BASE_URL, DEFAULT_FALLBACK, DEFAULT_HANDOFF_PHRASES, LlmSettings};
    let key = get("OPENAI_API_KEY").filter(|k| !k.trim().is_empty());
    let base = get("LLM_BASE_URL").filter(|b| !b.trim().is_empty());
    if key.is_none() && base.is_none() {
        return Ok(None);
    }
    let base_url = base.unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(invalid("LLM_BASE_URL", base_url, "must be an http:// or https:// URL"));
    }
    let model = get("LLM_MODEL").unwrap_or_else(|| "gpt-4o-mini".to_owned());
    if model.trim().is_empty() || model.len() > 200 || model.chars().any(char::is_whitespace) {
        return Err(invalid("LLM_MODEL", model, "must be a model name without spaces"));
    }
    let fallback = get("LLM_FALLBACK_MESSAGE").unwrap_or_else(|| DEFAULT_FALLBACK.to_owned());
    if fallback.trim().is_empty() || fallback.chars().count() > 2000 {
        return Err(invalid(
            "LLM_FALLBACK_MESSAGE",
            fallback,
            "must be 1 to 2000 characters",
        ));
    }
    let phrases = get("LLM_HANDOFF_PHRASES").unwrap_or_else(|| DEFAULT_HANDOFF_PHRASES.to_owned());
    let handoff_phrases = phrases
        .split(',')
        .map(|p| p.trim().to_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    Ok(Some(LlmSettings {
        base_url,
        api_key: SecretString::from(key.unwrap_or_default()),
        model,
        max_tokens: ranged(
            get,
            "LLM_MAX_TOKENS",
            500u32,
            1..=32_768,
            "must be a whole number from 1 to 32768",
        )?,
        temperature: ranged(
            get,
            "LLM_TEMPERATURE",
            0.7f32,
            0.0..=2.0,
            "must be a number from 0 to 2",
        )?,
        timeout: std::time::Duration::from_secs(ranged(
            get,
            "LLM_TIMEOUT",
            30u64,
            1..=600,
            "must be a whole number of seconds from 1 to 600",
        )?),
        max_retries: ranged(
            get,
            "LLM_MAX_RETRIES",
            2u32,
            0..=10,
            "must be a whole number from 0 to 10",
        )?,
        history: ranged(
            get,
            "LLM_HISTORY",
            20usize,
            1..=200,
            "must be a whole number from 1 to 200",
        )?,
        fallback,
        handoff_phrases,
        retry_base: std::time::Duration::from_millis(ranged(
            get,
            "LLM_RETRY_BASE_MS",
            1000u64,
            10..=60_000,
            "must be a whole number of milliseconds from 10 to 60000",
        )?),
    }))
}

pub(super) fn email_settings(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<crate::email::EmailSettings>, SettingsError> {
    let Some(url) = get("SMTP_URL").filter(|u| !u.trim().is_empty()) else {
        return Ok(None);
    };
    if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
        let scheme = url.split_once("://").map_or("(unrecognised)", |(s, _)| s).to_owned();
        return Err(invalid(
            "SMTP_URL",
            scheme,
            "must be smtp://host:port or smtps://host:port",
        ));
    }
    if lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(&url).is_err() {
        return Err(invalid("SMTP_URL", "(hidden)".into(), "is not a valid SMTP URL"));
    }
    let from = get("EMAIL_FROM").unwrap_or_else(|| "Netia <no-reply@localhost>".to_owned());
    let Ok(from) = from.parse::<lettre::message::Mailbox>() else {
        return Err(invalid(
            "EMAIL_FROM",
            from,
            "must be an address, e.g. Support <help@example.com>",
        ));
    };
    let delay = ranged(
        get,
        "REPLY_EMAIL_DELAY",
        1200u64,
        0..=604_800,
        "must be a whole number of seconds from 0 to 604800",
    )?;
    let notify = ranged(
        get,
        "AGENT_NOTIFY_DELAY",
        120u64,
        0..=86_400,
        "must be a whole number of seconds from 0 to 86400",
    )?;
    Ok(Some(crate::email::EmailSettings {
        smtp_url: SecretString::from(url),
        from,
        reply_delay: std::time::Duration::from_secs(delay),
        agent_notify_delay: std::time::Duration::from_secs(notify),
    }))
}
