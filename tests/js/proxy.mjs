// Through nginx in front of two nodes (tests/proxy.rs): the official phoenix client joins a
// conversation, talks, and prints JOINED; the test then stops (SIGTERM) the node holding the socket
// and answers "stopped". The client must get a 1001 close, reconnect through nginx to the other node,
// rejoin, send, and receive an agent's reply posted through nginx.
import { Socket } from "phoenix";
import WebSocket from "ws";
import readline from "node:readline";
import { check, deadline } from "./check.mjs";

const proxy = process.env.PROXY;
const conversation = process.env.CONVERSATION_ID;
deadline(60);

// nginx keeps idle connections to both nodes after these: the socket's upgrade then travels on
// a connection that has carried requests before.
for (let i = 0; i < 4; i++) {
  const live = await fetch(`${proxy}/health/live`);
  check(`request ${i + 1} through nginx`, live.status === 200, live.status);
}

const errors = [];
const closes = [];
const socket = new Socket(`${proxy.replace(/^http/, "ws")}/socket`, {
  transport: WebSocket,
  params: { token: process.env.CUSTOMER_TOKEN },
  reconnectAfterMs: () => 100,
  rejoinAfterMs: () => 100,
});
socket.onClose((event) => closes.push(event.code));
socket.onError((e) => errors.push(e?.message ?? String(e)));
socket.connect();
const channel = socket.channel(`conversation:${conversation}`, {});
const seen = [];
channel.on("shout", (message) => seen.push(message));
let joins = 0;
await new Promise((resolve) =>
  channel.join().receive("ok", () => {
    joins += 1;
    resolve();
  }),
);
function reply(push) {
  return new Promise((resolve) => push.receive("ok", resolve).receive("error", (e) => resolve({ error: e })).receive("timeout", () => resolve({ error: "timeout" })));
}
async function until(name, predicate, ms = 15000) {
  const end = Date.now() + ms;
  while (Date.now() < end && !predicate()) await new Promise((r) => setTimeout(r, 20));
  check(name, predicate());
}

check("the socket opened through nginx at the first attempt", errors.length === 0 && closes.length === 0, { errors, closes });
const before = await reply(channel.push("shout", { body: "hello through the proxy" }));
check("a message sent through nginx is saved", before.body === "hello through the proxy", before);

console.log("JOINED");
// One iterator over stdin for the whole run (breaking out of a for-await would close it).
const input = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function told(word) {
  for (;;) {
    const { value, done } = await input.next();
    if (done || value === word) return;
  }
}
await told("stopped");

await until("the stopped node closed the socket with 1001 (going away)", () => closes.includes(1001), 15000);
await until("the client reconnected through nginx and rejoined", () => joins >= 2 && socket.isConnected(), 20000);
const after = await reply(channel.push("shout", { body: "still here after the failover" }));
check("a message sent after the failover is saved", after.body === "still here after the failover", after);

const posted = await fetch(`${proxy}/api/conversations/${conversation}/messages`, {
  method: "POST",
  headers: { "content-type": "application/json", authorization: `Bearer ${process.env.AGENT_TOKEN}` },
  body: JSON.stringify({ body: "an agent answers through nginx" }),
});
check("the agent's reply through nginx is accepted", posted.status === 201 || posted.status === 200, posted.status);
await until("the customer receives the agent's reply on the new node", () =>
  seen.some((m) => m.body === "an agent answers through nginx"),
);
console.log("all checks passed");
// Connected until the test has looked at where the socket is now.
await told("done");
socket.disconnect();
process.exit(0);
