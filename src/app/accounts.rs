//! Rules about an account as a whole.

use netia_commands::Account;

/// A browser page on `origin` may not act for the account (its widget's allow-list).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the account does not allow the widget on {origin}")]
pub struct OriginRefused {
    pub origin: String,
}

/// Whether a request with these `Origin` and `Host` headers may act for `account`: no origin (not
/// a browser), Netia's own pages (origin host = `Host`), or an origin on the account's allow-list
/// (compared case-insensitively; an empty list allows every origin).
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, account: &Account) -> Result<(), OriginRefused> {
    let allowed = &account.widget_settings.allowed_origins;
    let Some(origin) = origin else {
        return Ok(());
    };
    let own = origin.split_once("://").is_some_and(|(_, h)| Some(h) == host);
    if allowed.is_empty() || own || allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        Ok(())
    } else {
        Err(OriginRefused {
            origin: origin.to_owned(),
        })
    }
}
