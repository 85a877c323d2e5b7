//! The credentials each socket of this node was opened with, so that a revocation read from the
//! log — a user disabled or their role changed (`UserDisabled`, `UserRoleChanged`), a session
//! ended (`SessionEnded`), a customer deleted (`CustomerDeleted`) — closes the sockets it concerns,
//! on every node (each node's broadcaster reads the whole log).

use std::sync::Arc;

use tokio::sync::Notify;

use super::{ConnId, Hub, Person};

/// What one socket was opened with.
pub(super) struct Credentials {
    person: Person,
    /// The agent session's token id (as the auth store and `SessionEnded` name it).
    session: Option<String>,
    revoked: Arc<Notify>,
}

impl Hub {
    /// Registers socket `conn`, opened by `person` (with session `session`, for agents); the
    /// signal returned fires when its credentials are revoked. [`Hub::dismiss`] it when it closes.
    pub fn admit(&self, conn: ConnId, person: Person, session: Option<String>) -> Arc<Notify> {
        let revoked = Arc::new(Notify::new());
        let credentials = Credentials {
            person,
            session,
            revoked: revoked.clone(),
        };
        self.credentials().insert(conn, credentials);
        revoked
    }

    /// Forgets a closed socket's credentials.
    pub fn dismiss(&self, conn: ConnId) {
        self.credentials().remove(&conn);
    }

    /// Closes every socket of `person` on this node; how many.
    pub fn revoke_person(&self, person: Person) -> usize {
        self.revoke(|c| c.person == person)
    }

    /// Closes every socket opened with session `token_id` on this node; how many.
    pub fn revoke_session(&self, token_id: &str) -> usize {
        self.revoke(|c| c.session.as_deref() == Some(token_id))
    }

    fn revoke(&self, concerned: impl Fn(&Credentials) -> bool) -> usize {
        let credentials = self.credentials();
        let mut closed = 0;
        for c in credentials.values().filter(|c| concerned(c)) {
            // A permit is stored if the socket is not waiting right now: it still closes.
            c.revoked.notify_one();
            closed += 1;
        }
        closed
    }

    fn credentials(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<ConnId, Credentials>> {
        self.credentials.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use netia_events::{CustomerId, UserId};

    use super::*;

    #[tokio::test]
    async fn a_revocation_closes_the_sockets_it_concerns_and_no_other() {
        let hub = Hub::new();
        let (ada, bob) = (Person::Agent(UserId::new()), Person::Agent(UserId::new()));
        let customer = Person::Customer(CustomerId::new());
        let ada_1 = hub.admit(1, ada, Some("s1".into()));
        let ada_2 = hub.admit(2, ada, Some("s2".into()));
        let bob_1 = hub.admit(3, bob, Some("s3".into()));
        let customer_1 = hub.admit(4, customer, None);

        assert_eq!(hub.revoke_session("s1"), 1);
        tokio::time::timeout(std::time::Duration::from_secs(1), ada_1.notified())
            .await
            .expect("the socket of the ended session is told");
        assert_eq!(hub.revoke_person(customer), 1);
        customer_1.notified().await;
        hub.dismiss(1);
        assert_eq!(hub.revoke_person(ada), 1, "only ada's remaining socket");
        ada_2.notified().await;
        assert_eq!(hub.revoke_session("unknown"), 0);
        let untouched = tokio::time::timeout(std::time::Duration::from_millis(50), bob_1.notified()).await;
        assert!(untouched.is_err(), "bob's socket is not concerned");
    }
}
