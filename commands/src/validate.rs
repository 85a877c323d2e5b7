//! Small shared checks on text that reaches the domain from outside.

/// Longest message body, in characters.
pub const MAX_BODY_CHARS: usize = 20_000;
/// Longest idempotency key or external id, in characters.
pub const MAX_KEY_CHARS: usize = 200;

/// Bytes of the longest spelling of one character in JSON: a character outside the BMP escaped
/// as a surrogate pair, `\uD83D\uDE00` (RFC 8259 §7).
pub const MAX_JSON_BYTES_PER_CHAR: usize = 12;

/// Largest request body (HTTP) or socket frame accepted, in bytes: 256 KiB. Lengths are
/// documented in characters, so this must hold the longest documented message in any script and
/// any JSON spelling — 20,000 characters can take 240,000 bytes — which the assertion below keeps
/// true if either number changes.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

const _: () = assert!(
    MAX_REQUEST_BYTES >= (MAX_BODY_CHARS + MAX_KEY_CHARS) * MAX_JSON_BYTES_PER_CHAR + 1024,
    "MAX_REQUEST_BYTES must hold a message of MAX_BODY_CHARS characters in any script and spelling"
);

/// A plausible e-mail address: one `@`, something on both sides, no spaces, at most 254 bytes.
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    s.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Text with no control characters other than newline and tab.
pub fn is_clean_text(s: &str) -> bool {
    !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
}

/// A single-line label within `max` characters, not blank.
pub fn is_label(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control)
}

/// An absolute http(s) URL without spaces.
pub fn is_http_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://"))
        && s.len() <= 2048
        && s.split_once("://").is_some_and(|(_, rest)| !rest.is_empty())
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(is_email("ada@example.com"));
        assert!(!is_email("ada@example"));
        assert!(!is_email("ada example@x.com"));
        assert!(!is_email("@x.com"));
        assert!(!is_email("a@b@c.com"));
    }

    #[test]
    fn labels_and_urls() {
        assert!(is_label("billing", 64));
        assert!(!is_label("  ", 64));
        assert!(!is_label("a\u{0}b", 64));
        assert!(is_http_url("https://cal.com/ada"));
        assert!(!is_http_url("javascript:alert(1)"));
        assert!(!is_http_url("https://"));
    }
}
