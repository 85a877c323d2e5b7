// A customer on node A and an agent on node B talk both ways through the official phoenix client:
// each node broadcasts what the other wrote (both tail the shared log). Run by tests/realtime.rs.
import { Socket } from "phoenix";
import WebSocket from "ws";

const [nodeA, nodeB] = [process.env.NODE_A, process.env.NODE_B];
const topic = `conversation:${process.env.CONVERSATION_ID}`;
setTimeout(() => {
  console.log("FAIL the run took longer than 20 s");
  process.exit(1);
}, 20000).unref();
function check(name, condition, detail) {
  if (!condition) {
    console.log(`FAIL ${name}${detail === undefined ? "" : `: ${JSON.stringify(detail)}`}`);
    process.exit(1);
  }
  console.log(`ok   ${name}`);
}
function join(base, token) {
  const socket = new Socket(`${base.replace(/^http/, "ws")}/socket`, { transport: WebSocket, params: { token } });
  socket.connect();
  const channel = socket.channel(topic, {});
  const seen = [];
  channel.on("shout", (m) => seen.push(m));
  return new Promise((resolve) => channel.join().receive("ok", () => resolve({ channel, seen })));
}
function reply(push) {
  return new Promise((resolve) => push.receive("ok", resolve).receive("error", (e) => resolve({ error: e })));
}
async function until(name, predicate) {
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && !predicate()) await new Promise((r) => setTimeout(r, 10));
  check(name, predicate());
}

const customer = await join(nodeA, process.env.CUSTOMER_TOKEN);
const agent = await join(nodeB, process.env.AGENT_TOKEN);
check("both joined, on different nodes", nodeA !== nodeB);
const asked = await reply(customer.channel.push("shout", { body: "question from node A" }));
check("customer's message saved on node A", asked.body === "question from node A", asked);
await until("the agent on node B receives it", () => agent.seen.some((m) => m.id === asked.id));
const answered = await reply(agent.channel.push("shout", { body: "answer from node B" }));
check("agent's reply saved on node B", answered.body === "answer from node B", answered);
await until("the customer on node A receives it", () => customer.seen.some((m) => m.id === answered.id));
await until("each side saw each message once", () =>
  [customer.seen, agent.seen].every((seen) => seen.filter((m) => m.id === asked.id || m.id === answered.id).length === 2),
);
console.log("all checks passed");
process.exit(0);
