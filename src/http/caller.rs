//! Who is calling: an agent (session token, or a personal API key under `/api/v1`) or a widget
//! customer (customer token), as `Authorization: Bearer …`; who holds a token is decided by
//! [`crate::app::identity`].

use std::future::Future;
use std::pin::Pin;

use actix_web::HttpMessage;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use netia_events::user::Role;
use netia_events::{AccountId, Actor, CustomerId, Metadata, UserId};
use uuid::Uuid;

use super::{ApiError, AppState};
use crate::auth::TokenKind;

/// An authenticated, enabled agent of one account.
#[derive(Debug, Clone)]
pub struct Agent {
    pub user_id: UserId,
    pub account_id: AccountId,
    pub role: Role,
    pub email: String,
    pub display_name: String,
    /// The session or API key used (to end the session on logout).
    pub token_id: String,
    pub via_api_key: bool,
    /// The request's id ([`RequestId`]): the correlation id of what it writes.
    pub request_id: Uuid,
}

impl Agent {
    /// Metadata for what this agent's request writes: the agent, the account, and the request's
    /// id as the correlation id of the chain it starts.
    pub fn meta(&self) -> Metadata {
        Metadata::new(Actor::Agent { user_id: self.user_id })
            .with_account(self.account_id)
            .with_correlation(self.request_id)
    }

    /// Refuses (403) callers below `role`: viewers read, members answer, admins manage.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this needs the {} role or higher",
                role_name(role)
            )))
        }
    }
}

/// How the API spells a role.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Viewer => "viewer",
        Role::Member => "member",
        Role::Admin => "admin",
    }
}

/// The widget's customer, from a customer token.
#[derive(Debug, Clone, Copy)]
pub struct CustomerCaller {
    pub customer_id: CustomerId,
    pub account_id: AccountId,
    /// The request's id ([`RequestId`]).
    pub request_id: Uuid,
}

impl CustomerCaller {
    /// Metadata for what this customer's request writes (see [`Agent::meta`]).
    pub fn meta(&self) -> Metadata {
        Metadata::new(Actor::Customer {
            customer_id: self.customer_id,
        })
        .with_account(self.account_id)
        .with_correlation(self.request_id)
    }
}

/// The request's id: the caller's `X-Request-Id` when it is a UUID, else a new one (UUIDv7); one
/// per request. Events a request writes carry it as their correlation id, and so does everything
/// they cause (the bot's reply, the email), so a chain can be followed back to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId(pub Uuid);

impl RequestId {
    pub fn of(req: &HttpRequest) -> Uuid {
        if let Some(id) = req.extensions().get::<RequestId>() {
            return id.0;
        }
        let id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(Uuid::now_v7);
        req.extensions_mut().insert(RequestId(id));
        id
    }
}

impl FromRequest for RequestId {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(RequestId(Self::of(req))))
    }
}

pub fn bearer(req: &HttpRequest) -> Option<String> {
    let header = req.headers().get("Authorization")?.to_str().ok()?;
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("application state missing")))
}

fn unauthorized() -> ApiError {
    ApiError::Unauthorized("a valid, unexpired token is required (Authorization: Bearer …)".into())
}

impl From<crate::app::identity::IdentityError> for ApiError {
    fn from(e: crate::app::identity::IdentityError) -> Self {
        use crate::app::identity::IdentityError;
        match e {
            IdentityError::Invalid => unauthorized(),
            IdentityError::Disabled => ApiError::Unauthorized(e.to_string()),
            IdentityError::Auth(e) => e.into(),
            IdentityError::App(e) => e.into(),
            e @ IdentityError::Record(_) => ApiError::internal(e),
        }
    }
}

impl Agent {
    async fn from_token(
        state: web::Data<AppState>,
        token: Option<String>,
        api: bool,
        request_id: Uuid,
    ) -> Result<Self, ApiError> {
        let token = token.ok_or_else(unauthorized)?;
        let kinds: &[TokenKind] = if api {
            &[TokenKind::Session, TokenKind::ApiKey]
        } else {
            &[TokenKind::Session]
        };
        let agent = match crate::app::identity::agent(&state.app, &state.auth, &token, kinds).await {
            // A good token of the wrong kind is a 403 (a widget must not drop its token).
            Err(crate::app::identity::IdentityError::Invalid)
                if crate::app::identity::customer(&state.auth, &token).await.is_ok() =>
            {
                return Err(ApiError::Forbidden(
                    "this route takes an agent's session token (or API key under /api/v1), not a customer token".into(),
                ));
            }
            found => found?,
        };
        Ok(Agent {
            user_id: agent.user_id,
            account_id: agent.account_id,
            role: agent.role,
            email: agent.email,
            display_name: agent.display_name,
            token_id: agent.token_id,
            via_api_key: agent.via_api_key,
            request_id,
        })
    }
}

impl FromRequest for Agent {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let api = req.path().starts_with("/api/v1/");
        let state = state(req);
        let request_id = RequestId::of(req);
        Box::pin(async move { Agent::from_token(state?, token, api, request_id).await })
    }
}

/// An agent, or a widget customer (by the token's kind), for routes both may read.
#[derive(Debug, Clone)]
pub enum Reader {
    Agent(Agent),
    Customer(CustomerCaller),
}

impl FromRequest for Reader {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if bearer(req).is_some_and(|t| t.starts_with("ntc_")) {
            let customer = CustomerCaller::from_request(req, payload);
            Box::pin(async move { customer.await.map(Reader::Customer) })
        } else {
            let agent = Agent::from_request(req, payload);
            Box::pin(async move { agent.await.map(Reader::Agent) })
        }
    }
}

impl FromRequest for CustomerCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let state = state(req);
        let request_id = RequestId::of(req);
        // A browser's call (it has an `Origin`) is held to the account's widget origins on every
        // customer route, as the widget's first calls and its socket are.
        let browser = req.headers().contains_key("origin").then(|| req.clone());
        Box::pin(async move {
            let state = state?;
            let token = token.ok_or_else(unauthorized)?;
            let customer = match crate::app::identity::customer(&state.auth, &token).await {
                Err(crate::app::identity::IdentityError::Invalid)
                    if crate::app::identity::agent(
                        &state.app,
                        &state.auth,
                        &token,
                        &[TokenKind::Session, TokenKind::ApiKey],
                    )
                    .await
                    .is_ok() =>
                {
                    return Err(ApiError::Forbidden(
                        "this route takes a widget customer token, not an agent's".into(),
                    ));
                }
                found => found?,
            };
            if let Some(req) = browser {
                let account = state.load::<netia_commands::Account>(customer.account_id).await?;
                super::widget::check_origin(&req, &account)?;
            }
            Ok(CustomerCaller {
                customer_id: customer.customer_id,
                account_id: customer.account_id,
                request_id,
            })
        })
    }
}

/// A reader of attachments: as [`Reader`], and an agent's personal API key works on every path
/// (messages list the same `/api/attachments/…` URL to sessions and API keys alike).
#[derive(Debug, Clone)]
pub struct FileReader(pub Reader);

impl FromRequest for FileReader {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let token = bearer(req);
        if token.as_deref().is_some_and(|t| t.starts_with("ntc_")) {
            let customer = CustomerCaller::from_request(req, payload);
            return Box::pin(async move { Ok(FileReader(Reader::Customer(customer.await?))) });
        }
        let state = state(req);
        let request_id = RequestId::of(req);
        Box::pin(async move {
            Ok(FileReader(Reader::Agent(
                Agent::from_token(state?, token, true, request_id).await?,
            )))
        })
    }
}
