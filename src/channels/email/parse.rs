//! Reading an inbound email (RFC 5322, MIME per RFC 2045–2049, any charset) with `mail-parser`:
//! who sent it, its threading headers, and the text a support inbox shows — the plain-text part
//! (or the HTML part as text), without the quoted history and signature of a reply — beside the
//! full text. Auto-replies and bounces are recognised (RFC 3834 `Auto-Submitted`, `Precedence`,
//! null senders, `MAILER-DAEMON`, RFC 3464 delivery reports) so that they never open conversations.

use mail_parser::{HeaderValue, MessageParser};
use netia_commands::validate::MAX_BODY_CHARS;
use sha2::{Digest, Sha256};

/// What Netia takes from an inbound email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundEmail {
    /// The `From` address, lowercased.
    pub from_address: String,
    pub from_name: Option<String>,
    pub subject: Option<String>,
    /// `<id>`: the `Message-ID`, or (when it has none) one derived from the message's bytes, so
    /// that the same message sent twice is still one.
    pub message_id: String,
    /// `<id>`s named by `In-Reply-To`, then by `References` (newest first).
    pub replied_to: Vec<String>,
    /// The reply itself: no quoted history, no signature; at most `MAX_BODY_CHARS` characters.
    pub body: String,
    /// Why the message is automatic (an auto-reply, a bounce, a list), if it is.
    pub automatic: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not an email message (no headers could be read)")]
    NotAnEmail,
    #[error("the message has no From address")]
    NoSender,
    #[error("the message has no text")]
    NoText,
}

/// Reads `raw` (the message as received, headers and body).
pub fn parse(raw: &[u8]) -> Result<InboundEmail, ParseError> {
    let message = MessageParser::default().parse(raw).ok_or(ParseError::NotAnEmail)?;
    if message.headers().is_empty() {
        return Err(ParseError::NotAnEmail);
    }
    let from = message.from().and_then(|a| a.first());
    let from_address = from
        .and_then(|a| a.address())
        .map(|a| a.trim().to_lowercase())
        .filter(|a| a.contains('@'));
    let automatic = automatic(&message, from_address.as_deref());
    let from_address = from_address.ok_or(ParseError::NoSender)?;
    let from_name = from
        .and_then(|a| a.name())
        .map(|n| {
            n.trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect::<String>()
        })
        .filter(|n| !n.is_empty());
    let subject = message
        .subject()
        .map(|s| {
            s.trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(255)
                .collect::<String>()
        })
        .filter(|s| !s.is_empty());
    let message_id = match message.message_id() {
        // A usable key only: short, printable, without spaces (else one derived as below).
        Some(id)
            if !id.trim().is_empty() && id.trim().len() <= 190 && id.trim().chars().all(|c| c.is_ascii_graphic()) =>
        {
            format!("<{}>", id.trim())
        }
        _ => {
            let digest = Sha256::digest(raw);
            let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
            format!("<{hex}@no-message-id.netia.invalid>")
        }
    };
    let mut replied_to = ids(message.in_reply_to());
    replied_to.extend(ids(message.references()).into_iter().rev());
    let full = message.body_text(0).map(|t| clean(&t)).unwrap_or_default();
    let reply = without_quotes(&full);
    let body = if reply.trim().is_empty() {
        full.trim().to_owned()
    } else {
        reply
    };
    if body.is_empty() && automatic.is_none() {
        return Err(ParseError::NoText);
    }
    Ok(InboundEmail {
        from_address,
        from_name,
        subject,
        message_id,
        replied_to,
        body: cut(&body, MAX_BODY_CHARS),
        automatic,
    })
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    let list: Vec<String> = match value {
        HeaderValue::Text(id) => vec![id.to_string()],
        HeaderValue::TextList(ids) => ids.iter().map(|id| id.to_string()).collect(),
        _ => Vec::new(),
    };
    list.into_iter()
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty() && id.len() <= 500)
        .map(|id| format!("<{id}>"))
        .collect()
}

/// Why a message is machine-sent, if it is.
fn automatic(message: &mail_parser::Message<'_>, from: Option<&str>) -> Option<&'static str> {
    let header = |name: &str| message.header_raw(name).map(|v| v.trim().to_ascii_lowercase());
    if header("Auto-Submitted").is_some_and(|v| !v.starts_with("no")) {
        return Some("Auto-Submitted (RFC 3834)");
    }
    if header("Precedence").is_some_and(|v| matches!(v.as_str(), "bulk" | "junk" | "list" | "auto_reply")) {
        return Some("Precedence: bulk");
    }
    if header("X-Autoreply").is_some()
        || header("X-Autorespond").is_some()
        || header("X-Auto-Response-Suppress").is_some_and(|v| v.contains("all") || v.contains("autoreply"))
    {
        return Some("an auto-responder's header");
    }
    if header("Return-Path").is_some_and(|v| v == "<>") {
        return Some("a null sender (Return-Path: <>)");
    }
    if from.is_some_and(|f| {
        let local = f.split('@').next().unwrap_or_default();
        local == "mailer-daemon" || local == "postmaster"
    }) {
        return Some("MAILER-DAEMON");
    }
    if header("Content-Type").is_some_and(|v| v.starts_with("multipart/report")) {
        return Some("a delivery report (RFC 3464)");
    }
    None
}

/// Line ends as `\n`, no control characters but tabs and line ends, no trailing spaces, no runs
/// of more than two blank lines.
fn clean(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line: String = line
            .chars()
            .map(|c| if c == '\u{a0}' { ' ' } else { c })
            .filter(|c| !c.is_control() || *c == '\t')
            .collect();
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 2 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim().to_owned()
}

/// Whether `line` (trimmed) opens the quoted history of a reply, as mail clients write it.
fn opens_quote(line: &str, next: Option<&str>) -> bool {
    let lower = line.to_lowercase();
    let attribution = |l: &str| {
        (l.starts_with("on ") && l.ends_with("wrote:"))
            || (l.starts_with("le ") && (l.ends_with("a écrit :") || l.ends_with("a écrit:")))
            || (l.starts_with("am ") && l.ends_with("schrieb:"))
            || (l.starts_with("el ") && l.ends_with("escribió:"))
    };
    attribution(&lower)
        // Gmail wraps a long attribution onto the next line.
        || (lower.starts_with("on ") && next.is_some_and(|n| n.trim().to_lowercase().ends_with("wrote:")))
        || lower.starts_with("-----original message-----")
        || lower.starts_with("________________________________")
        || (lower.starts_with("from:") && next.is_some_and(|n| {
            let n = n.trim().to_lowercase();
            n.starts_with("sent:") || n.starts_with("date:") || n.starts_with("to:")
        }))
}

/// The reply without what it quotes (from the first attribution or quote block on) and without
/// its signature (from the `-- ` line on, RFC 3676 §4.3).
fn without_quotes(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut kept: Vec<&str> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim();
        if *line == "-- " || trimmed == "--" || opens_quote(trimmed, lines.get(i + 1).copied()) {
            break;
        }
        // A block of `>` lines after the reply is the quoted message.
        if trimmed.starts_with('>')
            && lines[i..]
                .iter()
                .all(|l| l.trim().is_empty() || l.trim().starts_with('>'))
        {
            break;
        }
        kept.push(line);
    }
    kept.join("\n").trim().to_owned()
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(headers: &str, body: &str) -> Vec<u8> {
        format!("{headers}\r\n\r\n{body}")
            .replace('\n', "\r\n")
            .replace("\r\r\n", "\r\n")
            .into_bytes()
    }

    #[test]
    fn a_plain_reply_loses_its_quote_and_signature() {
        let raw = email(
            "From: \"Ada L\" <Ada@Example.com>\nTo: support@in.netia.example\nSubject: Re: Order #42\nMessage-ID: <r1@mail.example.com>\nIn-Reply-To: <n1@netia.example>\nReferences: <c0@mail.example.com> <n1@netia.example>",
            "Thanks, that works!\n\n-- \nAda\n\nOn Mon, 1 Dec 2026 at 10:00, Acme <support@acme.example> wrote:\n> It arrives tomorrow.\n",
        );
        let parsed = parse(&raw).unwrap();
        assert_eq!(parsed.from_address, "ada@example.com");
        assert_eq!(parsed.from_name.as_deref(), Some("Ada L"));
        assert_eq!(parsed.subject.as_deref(), Some("Re: Order #42"));
        assert_eq!(parsed.message_id, "<r1@mail.example.com>");
        assert_eq!(
            parsed.replied_to,
            vec!["<n1@netia.example>", "<n1@netia.example>", "<c0@mail.example.com>"]
        );
        assert_eq!(parsed.body, "Thanks, that works!");
        assert_eq!(parsed.automatic, None);
    }

    #[test]
    fn outlook_and_gmail_quotes_are_cut() {
        let outlook = "Sounds good.\n\n________________________________\nFrom: Acme\nSent: Monday\nTo: Ada\n\nIt arrives tomorrow.";
        assert_eq!(without_quotes(outlook), "Sounds good.");
        let gmail = "Great\n\nOn Mon, Dec 1, 2026 at 10:00 AM Acme Support <\nsupport@acme.example> wrote:\n> hi";
        assert_eq!(without_quotes(gmail), "Great");
        let inline = "> question?\nanswer\n> another?\nsecond answer";
        assert_eq!(without_quotes(inline), inline, "answers between quotes are kept");
    }

    #[test]
    fn html_in_latin1_becomes_readable_text() {
        let html = "<html><body><p>Caf\u{e9} cr\u{e8}me &amp; <b>cr\u{ea}pes</b></p><script>x()</script></body></html>";
        let encoded = latin1(html);
        let mut raw = b"From: client@example.fr\r\nSubject: Commande\r\nMessage-ID: <l1@example.fr>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=ISO-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".to_vec();
        raw.extend_from_slice(&encoded);
        let parsed = parse(&raw).unwrap();
        assert!(parsed.body.contains("Café crème & crêpes"), "{:?}", parsed.body);
        assert!(!parsed.body.contains('<'), "{:?}", parsed.body);
    }

    /// ISO-8859-1 is the first 256 code points: each character is its code point as one byte.
    fn latin1(text: &str) -> Vec<u8> {
        text.chars().map(|c| u8::try_from(u32::from(c)).unwrap()).collect()
    }

    #[test]
    fn auto_replies_and_bounces_are_recognised() {
        let auto = email(
            "From: a@example.com\nAuto-Submitted: auto-replied\nSubject: Out of office",
            "Away",
        );
        assert!(parse(&auto).unwrap().automatic.is_some());
        let bulk = email("From: news@example.com\nPrecedence: bulk", "News");
        assert!(parse(&bulk).unwrap().automatic.is_some());
        let bounce = email("From: MAILER-DAEMON@mx.example.com\nSubject: Undelivered", "failed");
        assert!(parse(&bounce).unwrap().automatic.is_some());
        let person = email("From: a@example.com\nAuto-Submitted: no", "Hello");
        assert_eq!(parse(&person).unwrap().automatic, None);
    }

    #[test]
    fn a_message_without_id_gets_a_stable_one_and_garbage_is_refused() {
        let raw = email("From: a@example.com", "Hello");
        assert_eq!(parse(&raw).unwrap().message_id, parse(&raw).unwrap().message_id);
        assert!(
            parse(&raw)
                .unwrap()
                .message_id
                .ends_with("@no-message-id.netia.invalid>")
        );
        assert_eq!(parse(&email("Subject: x", "no sender")), Err(ParseError::NoSender));
        assert!(parse(b"").is_err());
    }
}
