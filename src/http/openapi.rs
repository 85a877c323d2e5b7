//! The OpenAPI 3 document, generated from the handlers' annotations and the request and response
//! types (`GET /api/openapi.json`). Every route is listed; `tests/openapi.rs` checks that.

use actix_web::HttpResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    accounts, attachments, conversations, customers, email, gmail, health, messages, session, settings, slack, team,
    twilio, verification, views, webhooks, widget,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Netia",
        description = "Event-sourced customer messaging: agent inbox, widget, channels. Agent routes are \
            served under `/api` (session tokens) and `/api/v1` (session tokens and personal API keys). \
            Errors are `{\"error\": code, \"message\": text}`.",
        license(name = "AGPL-3.0-or-later"),
    ),
    paths(
        health::live, health::ready, health::metrics,
        session::register, session::login, session::logout, session::renew,
        accounts::me, accounts::notifications, accounts::set_notifications, accounts::list_keys, accounts::create_key, accounts::revoke_key,
        team::list, team::change_role, team::disable, team::enable, team::invite, team::invitations, team::withdraw,
        conversations::list, conversations::count, conversations::get, conversations::update,
        conversations::history, conversations::mark_read, messages::messages, messages::post_message, attachments::upload, attachments::download,
        customers::list, customers::get, customers::update, customers::delete, customers::identify, customers::export, customers::erase,
        widget::settings, widget::create_customer, widget::update_metadata, widget::update_email, widget::create_conversation,
        widget::customer_conversations,
        settings::business_context, settings::update_business_context, settings::update_widget_settings,
        settings::canned_responses, settings::create_canned_response, settings::update_canned_response,
        settings::delete_canned_response, settings::tags, settings::reporting, settings::reporting_ai,
        verification::get, verification::rotate, verification::update,
        webhooks::list, webhooks::create, webhooks::delete, webhooks::deliveries, webhooks::send_test,
        slack::status, slack::uninstall, slack::start, slack::callback, slack::channels, slack::map, slack::events, slack::actions,
        twilio::status, twilio::link, twilio::unlink, twilio::webhook, twilio::status_callback,
        email::address, email::rotate, email::receive, email::original,
        gmail::status, gmail::unlink, gmail::start, gmail::callback, gmail::profile, gmail::sync,
    ),
    components(schemas(views::StatusName, views::PriorityName, views::SourceName, views::SortName, views::RoleName)),
    modifiers(&Security),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An agent session token, or (under /api/v1) a personal API key"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "customer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The customer token from POST /api/customers"))
                    .build(),
            ),
        );
    }
}

pub(super) async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
