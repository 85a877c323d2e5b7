// Two nodes sharing PostgreSQL and RabbitMQ, through the official phoenix client: a customer on
// node A (two tabs) and an agent on node B talk both ways, see each other's presence and typing;
// then node A is killed (by tests/realtime.rs, when this script prints KILL_A) and the agent's
// Presence on node B must lose the customer within 10 s.
import { Socket, Presence } from "phoenix";
import WebSocket from "ws";
import readline from "node:readline";
import { check, deadline } from "./check.mjs";

const [nodeA, nodeB] = [process.env.NODE_A, process.env.NODE_B];
const topic = `conversation:${process.env.CONVERSATION_ID}`;
const customerKey = `customer:${process.env.CUSTOMER_ID}`;
const agentKey = `user:${process.env.AGENT_ID}`;
deadline(40);
function join(base, token) {
  const socket = new Socket(`${base.replace(/^http/, "ws")}/socket`, {
    transport: WebSocket,
    params: { token },
    reconnectAfterMs: () => 200,
  });
  socket.onError(() => {});
  socket.connect();
  const channel = socket.channel(topic, {});
  const presence = new Presence(channel);
  const seen = [];
  const typing = [];
  channel.on("shout", (m) => seen.push(m));
  channel.on("typing", (t) => typing.push(t));
  return new Promise((resolve) =>
    channel.join().receive("ok", () => resolve({ socket, channel, presence, seen, typing })),
  );
}
function reply(push) {
  return new Promise((resolve) => push.receive("ok", resolve).receive("error", (e) => resolve({ error: e })));
}
async function until(name, predicate, ms = 5000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && !predicate()) await new Promise((r) => setTimeout(r, 10));
  check(name, predicate());
}
const keys = (client) => client.presence.list((key) => key).sort();
const metas = (client, key) => client.presence.list((k, p) => (k === key ? p.metas.length : 0)).reduce((a, b) => a + b, 0);

const tab1 = await join(nodeA, process.env.CUSTOMER_TOKEN);
const tab2 = await join(nodeA, process.env.CUSTOMER_TOKEN);
const agent = await join(nodeB, process.env.AGENT_TOKEN);
check("both joined, on different nodes", nodeA !== nodeB);

await until("the agent on node B sees the customer of node A, with both tabs", () => metas(agent, customerKey) === 2);
await until("the customer's tabs on node A see the agent of node B", () =>
  [tab1, tab2].every((tab) => keys(tab).includes(agentKey)),
);
check("both nodes list the same people", JSON.stringify(keys(agent)) === JSON.stringify(keys(tab1)), [keys(agent), keys(tab1)]);

const asked = await reply(tab1.channel.push("shout", { body: "question from node A" }));
check("customer's message saved on node A", asked.body === "question from node A", asked);
await until("the agent on node B receives it", () => agent.seen.some((m) => m.id === asked.id));
const answered = await reply(agent.channel.push("shout", { body: "answer from node B" }));
check("agent's reply saved on node B", answered.body === "answer from node B", answered);
await until("the customer on node A receives it", () => tab1.seen.some((m) => m.id === answered.id));
await until("each side saw each message once", () =>
  [tab1.seen, agent.seen].every((seen) => seen.filter((m) => m.id === asked.id || m.id === answered.id).length === 2),
);

agent.channel.push("typing", { typing: true });
await until("the agent's typing on node B reaches both tabs on node A", () =>
  [tab1, tab2].every((tab) => tab.typing.some((t) => t.typing === true && t.user_id === process.env.AGENT_ID)),
);
tab2.channel.push("typing", { typing: true });
await until("the customer's typing on node A reaches the agent on node B", () =>
  agent.typing.some((t) => t.customer_id === process.env.CUSTOMER_ID),
);
check("typing is not sent back to its sender", !tab2.typing.some((t) => t.customer_id === process.env.CUSTOMER_ID));

tab2.socket.disconnect();
await until("one tab closed on node A: node B sees one tab left", () => metas(agent, customerKey) === 1);

// Node A dies (SIGKILL) with tab1 still connected: no leave is ever sent.
console.log("KILL_A");
const lines = readline.createInterface({ input: process.stdin });
await new Promise((resolve) => lines.once("line", resolve));
const killed = Date.now();
await until("node B drops node A's presences within 10 s", () => !keys(agent).includes(customerKey), 10000);
console.log(`CLEARED_MS ${Date.now() - killed}`);
check("the agent's own presence stays", keys(agent).includes(agentKey));
console.log("all checks passed");
process.exit(0);
