//! Netia's Markdown to Slack's mrkdwn and back (Slack, "Formatting text for app surfaces"): bold
//! `**x**` ↔ `*x*`, italic `*x*`/`_x_` → `_x_`, strike `~~x~~` ↔ `~x~`, links `[t](url)` ↔
//! `<url|t>`; `&`, `<`, `>` escaped as `&amp;`, `&lt;`, `&gt;` (Slack reads `<…>` as a link or
//! mention). Code spans and blocks are the same in both. Mentions from Slack (`<@U…>`) become
//! `@U…`.

/// Markdown (as agents and the bot write it) as Slack mrkdwn.
pub fn to_mrkdwn(markdown: &str) -> String {
    let escaped = markdown.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped.as_str();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("**")
            && let Some(end) = after.find("**")
        {
            out.push('*');
            out.push_str(&after[..end]);
            out.push('*');
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix("~~")
            && let Some(end) = after.find("~~")
        {
            out.push('~');
            out.push_str(&after[..end]);
            out.push('~');
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix('*')
            && let Some(end) = after.find('*')
            && end > 0
        {
            out.push('_');
            out.push_str(&after[..end]);
            out.push('_');
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('[')
            && let Some((text, tail)) = after.split_once("](")
            && !text.contains(']')
            && let Some(close) = tail.find(')')
            && is_url(&tail[..close])
        {
            out.push_str(&format!("<{}|{text}>", &tail[..close]));
            rest = &tail[close + 1..];
        } else {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

fn is_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://") || s.starts_with("mailto:"))
        && !s.contains(char::is_whitespace)
}

/// Slack mrkdwn (a reply typed in Slack) as Markdown.
pub fn from_mrkdwn(mrkdwn: &str) -> String {
    let mut out = String::with_capacity(mrkdwn.len());
    let mut rest = mrkdwn;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('<')
            && let Some(end) = after.find('>')
        {
            let inner = &after[..end];
            match inner.split_once('|') {
                _ if inner.starts_with('@') || inner.starts_with('#') => {
                    out.push_str(inner.split('|').next().unwrap_or(inner));
                }
                Some((url, text)) => out.push_str(&format!("[{text}]({url})")),
                None => out.push_str(inner),
            }
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('*')
            && let Some(end) = after.find('*')
            && end > 0
        {
            out.push_str("**");
            out.push_str(&after[..end]);
            out.push_str("**");
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('~')
            && let Some(end) = after.find('~')
            && end > 0
        {
            out.push_str("~~");
            out.push_str(&after[..end]);
            out.push_str("~~");
            rest = &after[end + 1..];
        } else {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_mrkdwn() {
        assert_eq!(to_mrkdwn("Your **bike** is *ready*"), "Your *bike* is _ready_");
        assert_eq!(to_mrkdwn("~~old~~ new"), "~old~ new");
        assert_eq!(
            to_mrkdwn("See [our hours](https://acme.example/hours)."),
            "See <https://acme.example/hours|our hours>."
        );
        assert_eq!(to_mrkdwn("a < b & c > d"), "a &lt; b &amp; c &gt; d");
        assert_eq!(to_mrkdwn("2 * 3 = 6"), "2 * 3 = 6");
        assert_eq!(to_mrkdwn("`code` stays"), "`code` stays");
        assert_eq!(
            to_mrkdwn("[not a link](javascript:alert(1))"),
            "[not a link](javascript:alert(1))"
        );
    }

    #[test]
    fn mrkdwn_becomes_markdown() {
        assert_eq!(
            from_mrkdwn("It is *done*, see <https://x.example|the notes>"),
            "It is **done**, see [the notes](https://x.example)"
        );
        assert_eq!(from_mrkdwn("<@U123ABC> ~no~ &lt;b&gt; &amp;"), "@U123ABC ~~no~~ <b> &");
        assert_eq!(from_mrkdwn("<https://x.example>"), "https://x.example");
        assert_eq!(from_mrkdwn("_italic_ stays"), "_italic_ stays");
    }

    #[test]
    fn a_round_trip_keeps_bold_links_and_strikes() {
        for text in ["**Hi** there", "go to [site](https://a.example)", "~~x~~ y", "a & b"] {
            assert_eq!(from_mrkdwn(&to_mrkdwn(text)), text);
        }
    }
}
