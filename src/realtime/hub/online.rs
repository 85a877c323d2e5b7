//! Who is online: connections per person on this node and on the others; the first connection
//! anywhere is "online", the last one anywhere "offline" (recorded in the log by
//! [`crate::realtime::record_presence`]).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Hub;
use super::presence::Signal;

/// Someone connected to this node for the first time, or closed their last connection here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Person {
    Agent(netia_events::UserId),
    Customer(netia_events::CustomerId),
}

impl Hub {
    pub(super) fn record(&self, person: Person, online: bool) {
        if let Some(log) = &self.presence_log {
            let _ = log.send((person, online));
        }
    }

    pub(super) fn people(&self) -> std::sync::MutexGuard<'_, HashMap<Person, usize>> {
        self.people.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn remote_people(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, HashSet<Person>>> {
        self.remote_people.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `person` has a connection to this node.
    pub fn connected_here(&self, person: Person) -> bool {
        self.people().contains_key(&person)
    }

    pub(super) fn connected_elsewhere(&self, person: Person) -> bool {
        self.remote_people().values().any(|people| people.contains(&person))
    }

    /// A connection of `person` opened (`true`) or closed. The first one here is recorded as
    /// "online"; the last one here as "offline" unless the person is connected to another node.
    pub fn connection(&self, person: Person, open: bool) {
        let changed = {
            let mut people = self.people();
            let count = people.entry(person).or_default();
            if open {
                *count += 1;
                *count == 1
            } else {
                *count = count.saturating_sub(1);
                let last = *count == 0;
                if last {
                    people.remove(&person);
                }
                last
            }
        };
        if changed {
            self.tell(Signal::Person { person, online: open });
            if open || !self.connected_elsewhere(person) {
                self.record(person, open);
            }
        }
    }

    /// The log says `person` went offline: if they are still connected here (another node, not
    /// yet knowing of this connection, recorded its own last close), they are online again.
    pub fn went_offline(&self, person: Person) {
        if self.connected_here(person) {
            self.record(person, true);
        }
    }
}
