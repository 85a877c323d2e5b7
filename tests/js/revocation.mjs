// Sockets follow revocation, on every node (tests/security.rs): a member is connected to node A and
// node B; an admin disables them through node A and both sockets must close within 1 s. Another
// member, demoted to viewer, reconnects as a viewer and may no longer send. A third signs out and
// their socket closes. A customer in the account's room learns whether agents are online, never who;
// deleted or erased, their socket closes.
import { Socket } from "phoenix";
import WebSocket from "ws";
import { check, deadline } from "./check.mjs";

const [nodeA, nodeB] = [process.env.NODE_A, process.env.NODE_B];
const env = process.env;
deadline(60);

function connect(base, token, options = {}) {
  const socket = new Socket(`${base.replace(/^http/, "ws")}/socket`, {
    transport: WebSocket,
    params: { token },
    reconnectAfterMs: () => options.reconnect ?? 600000,
    rejoinAfterMs: () => 100,
  });
  const closes = [];
  socket.onClose((event) => closes.push({ code: event.code, reason: event.reason, at: Date.now() }));
  socket.onError(() => {});
  socket.connect();
  return { socket, closes };
}
function join(socket, topic) {
  const channel = socket.channel(topic, {});
  const events = [];
  channel.onMessage = (event, payload) => {
    events.push({ event, payload });
    return payload;
  };
  return new Promise((resolve, reject) =>
    channel
      .join()
      .receive("ok", () => resolve({ channel, events }))
      .receive("error", (e) => reject(new Error(JSON.stringify(e)))),
  );
}
function reply(push) {
  return new Promise((resolve) =>
    push.receive("ok", (r) => resolve({ ok: r })).receive("error", (e) => resolve({ error: e })).receive("timeout", () => resolve({ error: "timeout" })),
  );
}
async function until(name, predicate, ms = 5000) {
  const end = Date.now() + ms;
  while (Date.now() < end && !predicate()) await new Promise((r) => setTimeout(r, 10));
  check(name, predicate());
}
async function api(base, method, path, token, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return response.status;
}

// A customer in the account's room, with an agent online: availability only.
const admin = connect(nodeA, env.ADMIN_TOKEN);
await join(admin.socket, `room:${env.ACCOUNT_ID}`);
const customer = connect(nodeB, env.CUSTOMER_TOKEN);
const room = await join(customer.socket, `room:${env.ACCOUNT_ID}`);
await until("the customer learns that an agent is online", () =>
  room.events.some((e) => e.event === "availability" && e.payload.online === true && e.payload.agents >= 1),
);
const seen = JSON.stringify(room.events);
check("the customer sees no presence state or diff", !room.events.some((e) => e.event.startsWith("presence")), room.events);
check("nor any agent's id", ![env.ADMIN_ID, env.MEMBER_ID, env.VIEWER_ID].some((id) => seen.includes(id)), seen);

// Disabled: both sockets, on both nodes, close within 1 s.
const onA = connect(nodeA, env.MEMBER_TOKEN);
const onB = connect(nodeB, env.MEMBER_TOKEN);
await join(onA.socket, `notification:${env.ACCOUNT_ID}`);
await join(onB.socket, `notification:${env.ACCOUNT_ID}`);
const disabledAt = Date.now();
check("the admin disables the member through node A", (await api(nodeA, "POST", `/api/users/${env.MEMBER_ID}/disable`, env.ADMIN_TOKEN)) === 200);
await until("the member's socket on node A is closed", () => onA.closes.length > 0, 3000);
await until("the member's socket on node B is closed", () => onB.closes.length > 0, 3000);
const took = Math.max(onA.closes[0].at, onB.closes[0].at) - disabledAt;
console.log(`closed ${took} ms after the disable (A: ${onA.closes[0].at - disabledAt} ms, B: ${onB.closes[0].at - disabledAt} ms)`);
check("both within 1 s", took <= 1000, took);
check("with a policy close (1008)", onA.closes[0].code === 1008 && onB.closes[0].code === 1008, [onA.closes, onB.closes]);
const again = connect(nodeB, env.MEMBER_TOKEN);
await until("a disabled member cannot open another socket", () => again.closes.length > 0, 3000);
again.socket.disconnect();

// Demoted to viewer: the socket closes, reconnects with the new role, and may no longer send.
const viewer = connect(nodeB, env.VIEWER_TOKEN, { reconnect: 100 });
const conversation = await join(viewer.socket, `conversation:${env.CONVERSATION_ID}`);
const before = await reply(conversation.channel.push("shout", { body: "as a member" }));
check("a member may send", before.ok?.body === "as a member", before);
check("the admin makes them a viewer", (await api(nodeA, "PUT", `/api/users/${env.VIEWER_ID}/role`, env.ADMIN_TOKEN, { role: "viewer" })) === 200);
await until("their socket is closed", () => viewer.closes.length > 0, 3000);
await until("and reconnects", () => viewer.socket.isConnected() && conversation.channel.state === "joined", 5000);
const after = await reply(conversation.channel.push("shout", { body: "as a viewer" }));
check("a viewer's shout is refused", after.error !== undefined, after);

// Signed out: the session's socket closes.
const leaving = connect(nodeA, env.LEAVER_TOKEN);
await join(leaving.socket, `notification:${env.ACCOUNT_ID}`);
check("the agent signs out", (await api(nodeB, "DELETE", "/api/session", env.LEAVER_TOKEN)) === 204);
await until("their socket (on the other node) is closed", () => leaving.closes.length > 0, 3000);

// Deleted: the customer's socket (on node B) closes when an admin deletes them through node A.
check("the admin deletes the customer", (await api(nodeA, "DELETE", `/api/customers/${env.CUSTOMER_ID}`, env.ADMIN_TOKEN)) === 204);
await until("the deleted customer's socket is closed", () => customer.closes.length > 0, 3000);
check("with a policy close (1008)", customer.closes[0].code === 1008, customer.closes);

// Erased: another customer's socket (on node B) closes when an admin erases them through node A.
const erased = connect(nodeB, env.ERASED_CUSTOMER_TOKEN);
await join(erased.socket, `conversation:${env.ERASED_CONVERSATION_ID}`);
check("the admin erases the other customer", (await api(nodeA, "POST", `/api/customers/${env.ERASED_CUSTOMER_ID}/erase`, env.ADMIN_TOKEN, {})) === 200);
await until("the erased customer's socket is closed", () => erased.closes.length > 0, 3000);
check("with a policy close (1008)", erased.closes[0].code === 1008, erased.closes);

console.log("all checks passed");
process.exit(0);
