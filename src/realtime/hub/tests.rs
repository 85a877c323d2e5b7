//! The hub across nodes: presences, people online, ephemeral pushes.

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::*;
use netia_events::{CustomerId, UserId};

/// A hub whose signals, presence records and one member's frames the test can read.
struct Node {
    hub: Hub,
    told: mpsc::UnboundedReceiver<Signal>,
    recorded: mpsc::UnboundedReceiver<(Person, bool)>,
}

fn node() -> Node {
    let (link, told) = mpsc::unbounded_channel();
    let (log, recorded) = mpsc::unbounded_channel();
    Node {
        hub: Hub::new().with_cluster(link).with_presence_log(log),
        told,
        recorded,
    }
}

impl Node {
    /// Hands what this node told so far to `other`.
    fn deliver_to(&mut self, other: &Node) {
        while let Ok(signal) = self.told.try_recv() {
            other.hub.apply(self.hub.node(), signal);
        }
    }

    fn member(&self, topic: &str, conn: ConnId) -> Outbox {
        let outbox = Outbox::detached();
        self.hub.join(topic, conn, "1", true, outbox.clone());
        outbox
    }

    fn records(&mut self) -> Vec<(Person, bool)> {
        std::iter::from_fn(|| self.recorded.try_recv().ok()).collect()
    }
}

fn frames(outbox: &mut Outbox) -> Vec<Value> {
    outbox
        .take_texts()
        .iter()
        .map(|f| serde_json::from_str(f).unwrap())
        .collect()
}

fn meta() -> Map<String, Value> {
    json!({"kind": "customer"}).as_object().unwrap().clone()
}

const TOPIC: &str = "conversation:c1";

#[test]
fn a_presence_tracked_on_one_node_joins_and_leaves_on_the_other() {
    let (mut a, b) = (node(), node());
    let mut watcher = b.member(TOPIC, 7);
    let _customer = a.member(TOPIC, 1);
    a.hub.track(TOPIC, 1, "customer:1", meta());
    a.deliver_to(&b);
    let seen = frames(&mut watcher);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0][3], "presence_diff");
    assert!(seen[0][4]["joins"]["customer:1"]["metas"][0]["phx_ref"].is_string());
    assert_eq!(b.hub.present(TOPIC), ["customer:1"]);

    // A joiner on B gets the remote presence in its state.
    let mut late = b.member(TOPIC, 8);
    b.hub.track(TOPIC, 8, "agent:1", meta());
    let state = frames(&mut late);
    assert_eq!(state[0][3], "presence_state");
    assert!(state[0][4].get("customer:1").is_some() && state[0][4].get("agent:1").is_some());

    a.hub.leave(TOPIC, 1);
    a.deliver_to(&b);
    let seen = frames(&mut watcher);
    let leave = seen.iter().find(|f| f[4]["leaves"].get("customer:1").is_some());
    assert!(leave.is_some(), "{seen:?}");
    assert_eq!(b.hub.present(TOPIC), ["agent:1"]);
}

#[test]
fn a_whole_state_replaces_what_was_known_of_its_node() {
    let (mut a, b) = (node(), node());
    let _m = a.member(TOPIC, 1);
    a.hub.track(TOPIC, 1, "customer:1", meta());
    a.hub.track(TOPIC, 1, "customer:2", meta());
    a.deliver_to(&b);
    // B missed the untrack of customer:2, then gets A's whole state.
    a.hub.leave(TOPIC, 1);
    let _ = std::iter::from_fn(|| a.told.try_recv().ok()).count();
    let _m = a.member(TOPIC, 1);
    a.hub.track(TOPIC, 1, "customer:1", meta());
    let _ = std::iter::from_fn(|| a.told.try_recv().ok()).count();
    let mut watcher = b.member(TOPIC, 9);
    b.hub.apply(a.hub.node(), a.hub.local_state());
    assert_eq!(b.hub.present(TOPIC), ["customer:1"]);
    let seen = frames(&mut watcher);
    assert!(
        seen.iter().any(|f| f[4]["leaves"].get("customer:2").is_some()),
        "{seen:?}"
    );
    // Applying the same state twice changes nothing and sends nothing.
    b.hub.apply(a.hub.node(), a.hub.local_state());
    assert!(frames(&mut watcher).is_empty());
}

#[test]
fn a_dead_node_takes_its_presences_and_only_its_people_offline() {
    let (mut a, mut b) = (node(), node());
    let only_a = Person::Customer(CustomerId::new());
    let on_both = Person::Agent(UserId::new());
    a.hub.connection(only_a, true);
    a.hub.connection(on_both, true);
    b.hub.connection(on_both, true);
    let _m = a.member(TOPIC, 1);
    a.hub.track(TOPIC, 1, "customer:1", meta());
    a.deliver_to(&b);
    let _ = b.records();
    let mut watcher = b.member(TOPIC, 9);

    b.hub.drop_node(a.hub.node());
    assert!(b.hub.present(TOPIC).is_empty());
    assert!(
        frames(&mut watcher)
            .iter()
            .any(|f| f[4]["leaves"].get("customer:1").is_some())
    );
    assert_eq!(b.records(), [(only_a, false)]);
}

#[test]
fn the_last_close_on_one_node_is_not_offline_while_another_node_has_the_person() {
    let (mut a, mut b) = (node(), node());
    let agent = Person::Agent(UserId::new());
    a.hub.connection(agent, true);
    b.hub.connection(agent, true);
    b.deliver_to(&a);
    assert_eq!(a.records(), [(agent, true)]);
    a.hub.connection(agent, false);
    assert_eq!(a.records(), [], "still connected to B");
    a.deliver_to(&b);
    b.hub.connection(agent, false);
    assert_eq!(b.records(), [(agent, true), (agent, false)]);
}

#[test]
fn an_offline_recorded_elsewhere_is_corrected_by_a_node_that_still_has_the_person() {
    let mut a = node();
    let customer = Person::Customer(CustomerId::new());
    a.hub.connection(customer, true);
    let _ = a.records();
    a.hub.went_offline(customer);
    assert_eq!(a.records(), [(customer, true)]);
    a.hub.connection(customer, false);
    let _ = a.records();
    a.hub.went_offline(customer);
    assert_eq!(a.records(), []);
}

#[test]
fn typing_reaches_the_other_nodes_members_but_not_the_sender() {
    let (mut a, b) = (node(), node());
    let mut sender = a.member(TOPIC, 1);
    let mut local = a.member(TOPIC, 2);
    let mut remote = b.member(TOPIC, 3);
    a.hub
        .broadcast_ephemeral(TOPIC, "typing", &json!({"typing": true}), Some(1));
    a.deliver_to(&b);
    assert!(frames(&mut sender).is_empty());
    assert_eq!(frames(&mut local)[0][3], "typing");
    assert_eq!(frames(&mut remote)[0][3], "typing");
}
