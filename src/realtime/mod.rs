//! Real time: the Phoenix Channels V2 WebSocket (`/socket/websocket`), the per-node hub of topics,
//! members and presences, and the broadcaster that turns committed events into pushes.

pub mod broadcaster;
pub mod cluster;
pub mod hub;
mod presence_log;
pub mod protocol;
pub mod socket;

pub use broadcaster::Broadcaster;
pub use presence_log::{PRESENCE_EVENTS_PER_MINUTE, PRESENCE_GRACE, record_presence, record_presence_with};

/// How often a typist repeats `typing: true` while still typing (pages and the bot).
pub const TYPING_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);
/// How long pages show a typist not heard from since (three missed refreshes): a typist whose
/// connection vanished without a `typing: false` is forgotten after this.
pub const TYPING_TTL: std::time::Duration = std::time::Duration::from_secs(6);
pub use hub::Hub;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(socket::PATH).route(web::get().to(socket::not_upgraded)));
}
