//! The pages Netia serves itself, with their assets embedded in the binary (no build step, no CDN):
//! the agent dashboard `/`, the chat widget page `/chat` (for an iframe), the embed script
//! `/widget.js`, and their scripts and styles under `/assets/`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use netia_commands::Account;
use netia_events::AccountId;

use super::AppState;

const CHAT_HTML: &str = include_str!("../../assets/chat.html");
const CHAT_JS: &str = include_str!("../../assets/chat.js");
const CHAT_CSS: &str = include_str!("../../assets/chat.css");
const PHOENIX_JS: &str = include_str!("../../assets/phoenix.js");
const WIDGET_JS: &str = include_str!("../../assets/widget.js");
const DASHBOARD_HTML: &str = include_str!("../../assets/dashboard.html");
const DASHBOARD_JS: &str = include_str!("../../assets/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("../../assets/dashboard.css");
const FILES_JS: &str = include_str!("../../assets/files.js");
const FILES_CSS: &str = include_str!("../../assets/files.css");

/// An allowed origin as CSP can carry it (scheme://host[:port], nothing else).
fn csp_origin(origin: &str) -> Option<&str> {
    let (scheme, rest) = origin.split_once("://")?;
    let clean = matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    clean.then_some(origin)
}

/// `GET /chat`: the widget page. It may be framed by the account's allowed origins (any, when the
/// account allows any); its scripts, styles and connections stay on Netia's own origin.
pub async fn chat(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let query = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let account_id = query
        .get("accountId")
        .or_else(|| query.get("token"))
        .and_then(|id| id.parse::<AccountId>().ok());
    let mut ancestors = "*".to_owned();
    if let Some(id) = account_id
        && let Ok((account, _)) = state.bus.load::<Account>(id).await
    {
        let allowed: Vec<&str> = account
            .widget_settings
            .allowed_origins
            .iter()
            .filter_map(|o| csp_origin(o))
            .collect();
        if !allowed.is_empty() {
            ancestors = format!("'self' {}", allowed.join(" "));
        }
    }
    let policy = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}"
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, policy))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::REFERRER_POLICY, "strict-origin-when-cross-origin"))
        .body(CHAT_HTML)
}

/// `GET /`: the agent dashboard (its sign-in form when signed out). Never framed by other sites.
pub async fn dashboard() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; \
             frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .body(DASHBOARD_HTML)
}

/// `GET /demo?accountId=…`: a stand-in for a customer's website, with the chat widget embedded as
/// the settings page's snippet says.
pub async fn demo(req: HttpRequest) -> HttpResponse {
    let query = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let body = match query.get("accountId").and_then(|id| id.parse::<AccountId>().ok()) {
        Some(id) => format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Demo shop</title>\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head><body>\
             <h1>Demo shop</h1><p>This page stands in for your website. The chat button is the Netia widget.</p>\
             <script src=\"/widget.js\" data-account-id=\"{id}\" async></script></body></html>"
        ),
        None => "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Demo shop</title></head>\
                 <body><p>Open this page as /demo?accountId=&lt;your account id&gt;.</p></body></html>"
            .to_owned(),
    };
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; frame-src 'self'; frame-ancestors 'none'",
        ))
        .body(body)
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

/// `GET /widget.js`: the embed script.
pub async fn widget_js() -> HttpResponse {
    asset("application/javascript; charset=utf-8", WIDGET_JS)
}

/// `GET /assets/{name}`: the pages' scripts and styles.
pub async fn assets(name: web::Path<String>) -> HttpResponse {
    match name.as_str() {
        "chat.js" => asset("application/javascript; charset=utf-8", CHAT_JS),
        "phoenix.js" => asset("application/javascript; charset=utf-8", PHOENIX_JS),
        "files.js" => asset("application/javascript; charset=utf-8", FILES_JS),
        "files.css" => asset("text/css; charset=utf-8", FILES_CSS),
        "chat.css" => asset("text/css; charset=utf-8", CHAT_CSS),
        "dashboard.js" => asset("application/javascript; charset=utf-8", DASHBOARD_JS),
        "dashboard.css" => asset("text/css; charset=utf-8", DASHBOARD_CSS),
        _ => HttpResponse::NotFound()
            .content_type("application/json")
            .body(r#"{"error":"not_found","message":"no such asset"}"#),
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(super::fixed("/", "GET").route(web::get().to(dashboard)))
        .service(super::fixed("/chat", "GET").route(web::get().to(chat)))
        .service(super::fixed("/demo", "GET").route(web::get().to(demo)))
        .service(super::fixed("/widget.js", "GET").route(web::get().to(widget_js)))
        .service(super::fixed("/assets/{name}", "GET").route(web::get().to(assets)));
}
