//! Real time: the Phoenix Channels V2 WebSocket (`/socket/websocket`), the per-node hub of topics,
//! members and presences, and the broadcaster that turns committed events into pushes.

pub mod broadcaster;
pub mod cluster;
pub mod hub;
pub mod protocol;
pub mod socket;

pub use broadcaster::Broadcaster;

/// How often a typist repeats `typing: true` while still typing (pages and the bot).
pub const TYPING_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);
/// How long pages show a typist not heard from since (three missed refreshes): a typist whose
/// connection vanished without a `typing: false` is forgotten after this.
pub const TYPING_TTL: std::time::Duration = std::time::Duration::from_secs(6);
pub use hub::Hub;

use actix_web::web;
use netia_commands::{Customer, CustomerCommand, User, UserCommand};
use netia_events::{Actor, Metadata};
use tokio::sync::mpsc;

use crate::command_bus::CommandBus;
use hub::Person;

/// Records people coming online and going offline as events (`AgentCameOnline`…), one at a time
/// in the order this node saw them; the aggregates make repeats no-ops. (Which changes are sent
/// here, across nodes, is the hub's business: see [`Hub::connection`].)
pub async fn record_presence(
    bus: CommandBus,
    changes: std::sync::Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<(Person, bool)>>>,
) {
    // Shared so that a restarted recorder goes on with the same queue.
    let mut changes = changes.lock().await;
    let meta = Metadata::new(Actor::System {
        component: "realtime".into(),
    });
    while let Some((person, online)) = changes.recv().await {
        let result = match person {
            Person::Agent(id) => bus
                .execute::<User>(id, UserCommand::SetOnline { online }, &meta)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Person::Customer(id) => bus
                .execute::<Customer>(id, CustomerCommand::SetOnline { online }, &meta)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "presence change not recorded");
        }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(socket::PATH).route(web::get().to(socket::not_upgraded)));
}
