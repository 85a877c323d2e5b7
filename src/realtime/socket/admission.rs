//! Who may open a socket: the Phoenix V2 serializer, a valid token (an agent's session or a
//! customer's token, from `?token=` or the `authToken` subprotocol), an origin the account allows;
//! with the status and reason of a refusal (403, 429, 503; 500 for our own failure).

use std::collections::HashMap;

use actix_web::web;
use base64::Engine;
use netia_commands::Account;

use super::transport::Head;
use super::{Caller, SocketServices};
use crate::app::identity::IdentityError;
use crate::auth::TokenKind;

/// The token from `?token=` or from the `authToken` subprotocol (`base64url.bearer.phx.<btoa>`).
pub(super) fn token(head: &Head, params: &HashMap<String, String>) -> Option<String> {
    if let Some(token) = params.get("token").filter(|t| !t.is_empty()) {
        return Some(token.clone());
    }
    head.header("sec-websocket-protocol")?
        .split(',')
        .map(str::trim)
        .find_map(|p| {
            let encoded = p.strip_prefix("base64url.bearer.phx.")?;
            let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(encoded.trim_end_matches('='))
                .ok()?;
            String::from_utf8(bytes).ok()
        })
}

/// Who opens a socket, with what: the agent's session (its token id, which a `SessionEnded`
/// names, and its expiry, when the socket closes).
pub(super) struct Admission {
    pub(super) caller: Caller,
    pub(super) session: Option<String>,
    pub(super) expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Who holds `token`: refused with 403 when the token is missing, unknown, expired or its user
/// disabled, 503 when it could not be checked because the database is away (the client may
/// retry), 500 for any other failure.
async fn authenticate(services: &SocketServices, token: Option<String>) -> Result<Admission, (u16, String)> {
    let refused = |e: Option<IdentityError>| match e {
        None | Some(IdentityError::Invalid | IdentityError::Disabled) => {
            (403, "a valid agent session or customer token is required".to_owned())
        }
        Some(other) if crate::store::unavailable_in(&other) => {
            tracing::warn!(error = %other, "socket refused: its token could not be checked");
            (503, "temporarily unavailable".to_owned())
        }
        Some(other) => {
            tracing::error!(error = %other, "socket refused: checking its token failed");
            (500, "internal error".to_owned())
        }
    };
    let token = token.ok_or_else(|| refused(None))?;
    if token.starts_with("ntc_") {
        let customer = crate::app::identity::customer(&services.auth, &token)
            .await
            .map_err(|e| refused(Some(e)))?;
        let caller = Caller::Customer {
            customer_id: customer.customer_id,
            account_id: customer.account_id,
        };
        return Ok(Admission {
            caller,
            session: None,
            expires_at: None,
        });
    }
    let agent = crate::app::identity::agent(&services.app, &services.auth, &token, &[TokenKind::Session])
        .await
        .map_err(|e| refused(Some(e)))?;
    let caller = Caller::Agent {
        user_id: agent.user_id,
        account_id: agent.account_id,
        role: agent.role,
    };
    Ok(Admission {
        caller,
        session: Some(agent.token_id),
        expires_at: agent.expires_at,
    })
}

/// Who may open this socket, or the status and reason of the refusal: the version must be 2.x,
/// the token valid, the origin allowed by the account.
pub(super) async fn admit(
    head: &Head,
    peer: Option<std::net::IpAddr>,
    services: &SocketServices,
) -> Result<Admission, (u16, String)> {
    let forbidden = |reason: &str| (403, reason.to_owned());
    if *services.shutdown.borrow() {
        return Err((503, "shutting down; connect to another node".to_owned()));
    }
    let ip = crate::limits::client_ip(
        services.limiter.limits.trust_proxy,
        head.header("x-forwarded-for"),
        peer,
    );
    if let Some(ip) = ip
        && let Err(wait) = services.limiter.upgrade_from(ip)
    {
        // Whole seconds: the upgrade's refusal carries them as its `Retry-After`.
        let seconds = wait.as_millis().div_ceil(1000).max(1);
        return Err((
            429,
            format!("too many socket connections from this address; retry in {seconds} s"),
        ));
    }
    let params: HashMap<String, String> = web::Query::<HashMap<String, String>>::from_query(head.query())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    if !params.get("vsn").is_some_and(|v| v.starts_with("2.")) {
        return Err(forbidden("only the Phoenix V2 serializer is supported (vsn=2.0.0)"));
    }
    // The token and the account are read under one of the node's places in flight, as an API
    // request's work is (see `Limiter::in_flight`): a reconnecting crowd waits there, not in the
    // database pools' queues.
    let Some(_place) = services.limiter.in_flight().await else {
        return Err((503, "this node is busy; retry shortly".to_owned()));
    };
    let admission = authenticate(services, token(head, &params)).await?;
    let account = match services.app.state_of::<Account>(admission.caller.account_id()).await {
        Ok(account) => account,
        Err(e) if crate::store::unavailable_in(&e) => {
            tracing::warn!(error = %e, "socket refused: the account could not be read");
            return Err((503, "temporarily unavailable".to_owned()));
        }
        Err(e) => {
            tracing::error!(error = %e, "socket refused: the account could not be read");
            return Err((500, "internal error".to_owned()));
        }
    };
    crate::app::accounts::origin_allowed(head.header("origin"), head.header("host"), &account)
        .map_err(|e| forbidden(&e.to_string()))?;
    Ok(admission)
}
