//! The built-in SMTP receiver (`INBOUND_SMTP_ADDR`, off by default; RFC 5321 by `mailin-embedded`,
//! blocking threads): takes mail for `<inbox local part>@<INBOUND_EMAIL_DOMAIN>` — an MX record or
//! a forwarding rule points there — and hands each message to
//! [`crate::app::inbound_email::receive`]. Unknown recipients are refused at `RCPT` (550), a
//! message over 10 MiB at the end of `DATA` (552), one that is not an email with 554; when Netia
//! cannot store it (its database is down) the answer is 451, so the sending server keeps the
//! message and tries again later — mail is never accepted and then lost. No STARTTLS: put a TLS
//! terminating relay in front where the link must be encrypted.

use std::net::{IpAddr, SocketAddr, TcpListener};

use mailin_embedded::response::{INTERNAL_ERROR, NO_MAILBOX, NO_STORAGE, OK};
use mailin_embedded::{Handler, Response, Server};

use crate::app::App;
use crate::app::inbound_email::{self, InboundEmailError, MAX_EMAIL_BYTES, Route};

/// One SMTP session's state (the server clones it for each connection).
#[derive(Clone)]
struct Session {
    app: App,
    runtime: tokio::runtime::Handle,
    domain: String,
    /// The local parts of this message's accepted recipients.
    recipients: Vec<String>,
    data: Vec<u8>,
    too_large: bool,
}

impl Session {
    /// The local part of `to` when it is an address of our domain.
    fn local_part(&self, to: &str) -> Option<String> {
        let to = to.trim().trim_start_matches('<').trim_end_matches('>');
        let (local, domain) = to.rsplit_once('@')?;
        let local = local.to_lowercase();
        (domain.eq_ignore_ascii_case(&self.domain) && netia_commands::is_local_part(&local)).then_some(local)
    }
}

impl Handler for Session {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, _from: &str) -> Response {
        self.recipients.clear();
        self.data.clear();
        self.too_large = false;
        OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        let Some(local) = self.local_part(to) else {
            return NO_MAILBOX;
        };
        let known = self
            .runtime
            .block_on(inbound_email::inbox_of(&self.app, Route::LocalPart(&local)));
        match known {
            Ok(_) => {
                if !self.recipients.contains(&local) {
                    self.recipients.push(local);
                }
                OK
            }
            Err(InboundEmailError::UnknownInbox) => NO_MAILBOX,
            Err(e) => {
                tracing::warn!(error = %e, "inbound SMTP: cannot look up a recipient");
                INTERNAL_ERROR
            }
        }
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, _to: &[String]) -> Response {
        self.data.clear();
        self.too_large = false;
        OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.data.len() + buf.len() > MAX_EMAIL_BYTES {
            self.too_large = true;
        } else {
            self.data.extend_from_slice(buf);
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        if self.too_large {
            return NO_STORAGE;
        }
        let data = std::mem::take(&mut self.data);
        for local in &self.recipients {
            let received = self
                .runtime
                .block_on(inbound_email::receive(&self.app, Route::LocalPart(local), &data));
            match received {
                Ok(received) => tracing::debug!(?received, "inbound SMTP message taken"),
                Err(InboundEmailError::Parse(e)) => {
                    return Response::custom(554, format!("5.6.0 Not an email message: {e}"));
                }
                Err(InboundEmailError::UnknownInbox) => return NO_MAILBOX,
                Err(e) => {
                    tracing::warn!(error = %e, "inbound SMTP: cannot store a message; the sender will retry");
                    return INTERNAL_ERROR;
                }
            }
        }
        OK
    }
}

/// Starts the receiver on `addr` for `domain`, on threads of its own (it blocks); answers only
/// once the socket is bound.
pub fn start(app: App, addr: SocketAddr, domain: String) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("cannot listen for SMTP on {addr}: {e}"))?;
    let session = Session {
        app,
        runtime: tokio::runtime::Handle::current(),
        domain: domain.clone(),
        recipients: Vec::new(),
        data: Vec::new(),
        too_large: false,
    };
    let mut server = Server::new(session);
    server.with_name(domain).with_num_threads(4).with_tcp_listener(listener);
    std::thread::Builder::new().name("inbound-smtp".into()).spawn(move || {
        if let Err(e) = server.serve() {
            tracing::error!(error = %e, "the inbound SMTP receiver stopped");
        }
    })?;
    tracing::info!(%addr, "inbound SMTP receiver listening");
    Ok(())
}
