// Conformance of Netia's WebSocket with the unmodified `phoenix` client (Node 20, `ws` transport).
// Run by tests/realtime.rs with NETIA_URL, AGENT_TOKEN, CUSTOMER_TOKEN, CONVERSATION_ID, ACCOUNT_ID,
// OTHER_CONVERSATION_ID in the environment. Prints one line per check; exits 1 on the first failure.
import { Socket, Presence } from "phoenix";
import WebSocket from "ws";
import { deadline } from "./check.mjs";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const url = env("NETIA_URL").replace(/^http/, "ws") + "/socket";
const agentToken = env("AGENT_TOKEN");
const customerToken = env("CUSTOMER_TOKEN");
const conversationId = env("CONVERSATION_ID");
const accountId = env("ACCOUNT_ID");
const otherConversationId = env("OTHER_CONVERSATION_ID");
const topic = `conversation:${conversationId}`;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const sockets = [];
function connect(token, opts = {}) {
  const socket = new Socket(url, { transport: WebSocket, params: { token }, ...opts });
  sockets.push(socket);
  socket.connect();
  return socket;
}
function check(name, condition, detail) {
  if (!condition) {
    console.log(`FAIL ${name}${detail === undefined ? "" : `: ${JSON.stringify(detail)}`}`);
    for (const s of sockets) s.disconnect();
    process.exit(1);
  }
  console.log(`ok   ${name}`);
}
/** Resolves with [status, response] of a push (join or event). */
function outcome(push, timeout = 5000) {
  return new Promise((resolve) => {
    push
      .receive("ok", (r) => resolve(["ok", r]))
      .receive("error", (r) => resolve(["error", r]))
      .receive("timeout", () => resolve(["timeout", null]));
    setTimeout(() => resolve(["no answer", null]), timeout);
  });
}
async function until(name, predicate, ms = 3000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (predicate()) return;
    await sleep(20);
  }
  check(name, predicate());
}

deadline(40);

// --- joins ---
const agent = connect(agentToken, { heartbeatIntervalMs: 200 });
const agentChannel = agent.channel(topic, {});
const agentSeen = [];
agentChannel.onMessage = (event, payload) => {
  agentSeen.push([event, payload]);
  return payload;
};
let [status, response] = await outcome(agentChannel.join());
check("agent joins its account's conversation", status === "ok", [status, response]);

const notifications = [];
const notification = agent.channel(`notification:${accountId}`, {});
notification.on("shout", (m) => notifications.push(m));
[status] = await outcome(notification.join());
check("agent joins notification:<account>", status === "ok");

const customerA = connect(customerToken);
const tabA = customerA.channel(topic, { customer_id: "ignored" });
const tabASeen = [];
tabA.onMessage = (event, payload) => {
  tabASeen.push([event, payload]);
  return payload;
};
[status] = await outcome(tabA.join());
check("customer joins its own conversation", status === "ok");

// A rejected join: error reply, and the client retries by itself until the app leaves.
const intruder = customerA.channel(`conversation:${otherConversationId}`, {});
let attempts = 0;
const intruderJoin = intruder.join();
intruderJoin.receive("error", () => attempts++);
const rejected = await outcome(intruderJoin);
check("customer is refused another conversation", rejected[0] === "error" && rejected[1].reason === "unauthorized", rejected);
await until("the client retries a rejected join (and is refused again)", () => attempts >= 2, 2500);
intruder.leave();
const foreign = customerA.channel(`notification:${accountId}`, {});
const foreignOutcome = await outcome(foreign.join());
check("customer is refused notification:<account>", foreignOutcome[0] === "error", foreignOutcome);
foreign.leave();

// --- push + reply, broadcast to every member (sender included, before its reply) ---
const shout = await outcome(tabA.push("shout", { body: "hello from the widget", client_message_id: "c-1" }));
check("shout is answered ok with the saved message", shout[0] === "ok" && shout[1].body === "hello from the widget" && shout[1].type === "customer" && typeof shout[1].id === "string", shout);
const saved = shout[1];
check(
  "the sender got the broadcast before the reply",
  tabASeen.some(([e, p]) => e === "shout" && p.id === saved.id),
  tabASeen.map(([e]) => e),
);
await until("the agent receives the saved message", () => agentSeen.some(([e, p]) => e === "shout" && p.id === saved.id));
await until("notification:<account> carries it too", () => notifications.some((m) => m.id === saved.id));
const again = await outcome(tabA.push("shout", { body: "hello from the widget", client_message_id: "c-1" }));
check("a repeated client_message_id returns the same message", again[0] === "ok" && again[1].id === saved.id, again);
const empty = await outcome(tabA.push("shout", { body: "" }));
check("an invalid message is refused with a reason", empty[0] === "error" && typeof empty[1].reason === "string", empty);

// --- private notes reach agents only ---
const note = await outcome(agentChannel.push("shout", { body: "internal", private: true }));
check("agent note saved", note[0] === "ok" && note[1].private === true, note);
await sleep(300);
check("customers never receive notes", !tabASeen.some(([e, p]) => e === "shout" && p.id === note[1].id));

// --- typing goes to the others only ---
agentChannel.push("typing", { typing: true });
await until("customer sees the agent typing", () => tabASeen.some(([e, p]) => e === "typing" && p.typing === true && p.user_id));
await sleep(200);
check("the typer does not get its own typing", !agentSeen.some(([e]) => e === "typing"));

// --- unknown events and topics ---
const unknown = await outcome(tabA.push("dance", {}));
check("unknown event: error reply", unknown[0] === "error", unknown);

// --- presence: two tabs of one customer and an agent ---
const customerB = connect(customerToken);
const tabB = customerB.channel(topic, {});
[status] = await outcome(tabB.join());
check("second tab joins", status === "ok");
const presence = new Presence(agentChannel);
let leftWithOneTab = null;
presence.onLeave((key, current, left) => {
  if (key.startsWith("customer:")) leftWithOneTab = current.metas.length;
});
// The agent's Presence needs a fresh state: rejoin.
agentChannel.leave();
await sleep(100);
const agentChannel2 = agent.channel(topic, {});
const presence2 = new Presence(agentChannel2);
presence2.onLeave((key, current) => {
  if (key.startsWith("customer:")) leftWithOneTab = current.metas.length;
});
[status] = await outcome(agentChannel2.join());
check("agent rejoins", status === "ok");
await until("presence lists the customer (two tabs) and the agent", () => {
  const list = presence2.list((key, p) => [key, p.metas.length]);
  const customer = list.find(([k]) => k.startsWith("customer:"));
  const user = list.find(([k]) => k.startsWith("user:"));
  return customer && customer[1] === 2 && user;
});
const [leaveStatus] = await outcome(tabB.leave());
check("leave is answered ok", leaveStatus === "ok");
check("the channel is closed after leave", tabB.state === "closed", tabB.state);
await until("one tab leaving keeps the customer online with one meta", () => leftWithOneTab === 1);
const still = presence2.list((key, p) => [key, p.metas.length]).find(([k]) => k.startsWith("customer:"));
check("the customer is still listed", still && still[1] === 1, still);

// --- heartbeats keep the socket open ---
let closed = false;
agent.onClose(() => (closed = true));
await sleep(1000);
check("heartbeats are answered (socket stays open)", !closed && agent.isConnected());

// --- a bad token cannot connect ---
const bad = connect("nts_not-a-token", { reconnectAfterMs: () => 60000 });
let badError = false;
bad.onError(() => (badError = true));
await until("a bad token is refused at the upgrade", () => badError);
check("and never opens", !bad.isConnected());

for (const s of sockets) s.disconnect();
console.log("all checks passed");
process.exit(0);
