//! Presence in the log: people coming online and going offline as events (`AgentCameOnline`,
//! `CustomerWentOffline`…), bounded so that flapping connections cannot flood the log.
//!
//! - A last connection closing is written only after [`PRESENCE_GRACE`]: a page reloaded, or a
//!   socket reconnecting within it, writes nothing at all.
//! - One person's presence events are limited to [`PRESENCE_EVENTS_PER_MINUTE`]; a change over the
//!   limit waits, and only the latest state is written when it may (the log ends right).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use netia_commands::{Customer, CustomerCommand, User, UserCommand};
use netia_events::{Actor, Metadata};
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;

use super::hub::Person;
use crate::command_bus::CommandBus;

/// How long a person's last connection may be gone before they are written offline.
pub const PRESENCE_GRACE: Duration = Duration::from_secs(5);
/// Presence events one person may cause per minute (bursts included).
pub const PRESENCE_EVENTS_PER_MINUTE: u32 = 10;

/// Records the changes the hub sends (see [`crate::realtime::Hub::connection`]) as events, in
/// the order this node saw them, with the grace period and the bound above; the aggregates make
/// repeats no-ops. Runs until the channel closes.
pub async fn record_presence(bus: CommandBus, changes: Arc<Mutex<mpsc::UnboundedReceiver<(Person, bool)>>>) {
    record_presence_with(bus, changes, PRESENCE_GRACE).await;
}

/// [`record_presence`] with another grace period (tests).
pub async fn record_presence_with(
    bus: CommandBus,
    changes: Arc<Mutex<mpsc::UnboundedReceiver<(Person, bool)>>>,
    grace: Duration,
) {
    // Shared so that a restarted recorder goes on with the same queue.
    let mut changes = changes.lock().await;
    let quota = Quota::per_minute(NonZeroU32::new(PRESENCE_EVENTS_PER_MINUTE).unwrap_or(NonZeroU32::MIN));
    let limiter: DefaultKeyedRateLimiter<Person> = RateLimiter::keyed(quota);
    // Changes not written yet: the state to write, and when.
    let mut pending: HashMap<Person, (bool, Instant)> = HashMap::new();
    loop {
        let next = pending.values().map(|(_, at)| *at).min();
        tokio::select! {
            change = changes.recv() => {
                let Some((person, online)) = change else {
                    // The node is going away: what is pending is its last word.
                    for (person, (online, _)) in pending.drain() {
                        write(&bus, person, online).await;
                    }
                    return;
                };
                match (online, pending.get(&person)) {
                    // Back within the grace period: the offline was never written, nor is anything now.
                    (true, Some((false, _))) => {
                        pending.remove(&person);
                    }
                    (true, _) => {
                        pending.insert(person, (true, Instant::now()));
                    }
                    (false, _) => {
                        pending.insert(person, (false, Instant::now() + grace));
                    }
                }
            }
            () = sleep_until(next) => {
                let now = Instant::now();
                let due: Vec<Person> = pending.iter().filter(|(_, (_, at))| *at <= now).map(|(p, _)| *p).collect();
                for person in due {
                    let Some((online, _)) = pending.remove(&person) else { continue };
                    if let Err(not_until) = limiter.check_key(&person) {
                        let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
                        pending.insert(person, (online, now + wait));
                        continue;
                    }
                    write(&bus, person, online).await;
                }
                if limiter.len() > 10_000 {
                    limiter.retain_recent();
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn write(bus: &CommandBus, person: Person, online: bool) {
    let meta = Metadata::new(Actor::System {
        component: "realtime".into(),
    });
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
