//! Real time: the Phoenix Channels V2 WebSocket (`/socket/websocket`), the per-node hub of topics,
//! members and presences, and the broadcaster that turns committed events into pushes.

pub mod broadcaster;
pub mod hub;
pub mod protocol;
pub mod socket;

pub use broadcaster::Broadcaster;
pub use hub::Hub;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/socket/websocket").route(web::get().to(socket::websocket)));
}
