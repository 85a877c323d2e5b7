// Typing is ephemeral state owned by a connection: it ends when its owner leaves the topic,
// sends the message, or goes away without saying so (a closed tab). Run by tests/realtime.rs with
// NETIA_URL, AGENT_TOKEN, CUSTOMER_TOKEN, CONVERSATION_ID; uses the unmodified `phoenix` client.
import { Socket } from "phoenix";
import WebSocket from "ws";
import { check, deadline } from "./check.mjs";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const url = env("NETIA_URL").replace(/^http/, "ws") + "/socket";
const topic = `conversation:${env("CONVERSATION_ID")}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function join(token) {
  const socket = new Socket(url, { transport: WebSocket, params: { token }, reconnectAfterMs: () => 60000 });
  socket.connect();
  const channel = socket.channel(topic, {});
  const typing = [];
  channel.on("typing", (t) => typing.push(t));
  return new Promise((resolve, reject) => {
    channel
      .join()
      .receive("ok", () => resolve({ socket, channel, typing }))
      .receive("error", reject)
      .receive("timeout", () => reject(new Error("join timed out")));
  });
}
async function until(predicate, ms = 3000) {
  const end = Date.now() + ms;
  while (Date.now() < end && !predicate()) await sleep(20);
  return predicate();
}
const last = (list) => list[list.length - 1];

deadline(30);
const agent = await join(env("AGENT_TOKEN"));

// 1. The customer types, then the tab closes: the agent is told the typing ended.
let customer = await join(env("CUSTOMER_TOKEN"));
customer.channel.push("typing", { typing: true });
check("the agent sees the customer typing", await until(() => last(agent.typing)?.typing === true), agent.typing);
const customerId = last(agent.typing).customer_id;
check("the typing names the customer", typeof customerId === "string", last(agent.typing));
customer.socket.conn.close(); // no phx_leave, no typing:false: a closed tab
check(
  "a vanished typist's typing ends on the agent's socket",
  await until(() => last(agent.typing)?.typing === false && last(agent.typing).customer_id === customerId),
  agent.typing,
);

// 2. The customer types, then leaves the channel.
customer = await join(env("CUSTOMER_TOKEN"));
customer.channel.push("typing", { typing: true });
check("typing again", await until(() => last(agent.typing)?.typing === true), agent.typing);
customer.channel.leave();
check("leaving the topic ends the typing", await until(() => last(agent.typing)?.typing === false), agent.typing);

// 3. The customer types, then sends the message: the typing ends with it.
const sender = await join(env("CUSTOMER_TOKEN"));
sender.channel.push("typing", { typing: true });
check("typing before sending", await until(() => last(agent.typing)?.typing === true), agent.typing);
sender.channel.push("shout", { body: "Where is my order?" });
check("sending the message ends the typing", await until(() => last(agent.typing)?.typing === false), agent.typing);

// 4. The agent types and disconnects: the customer is told too.
agent.channel.push("typing", { typing: true });
check("the customer sees the agent typing", await until(() => last(sender.typing)?.typing === true), sender.typing);
agent.socket.conn.close();
check(
  "a vanished agent's typing ends on the customer's socket",
  await until(() => last(sender.typing)?.typing === false && typeof last(sender.typing).user_id === "string"),
  sender.typing,
);

// 5. Saying "not typing" twice does not repeat the end: only a typist's state is ended.
const count = sender.typing.length;
await sleep(300);
check("nothing more is sent for a typist who already stopped", sender.typing.length === count, sender.typing);
sender.socket.disconnect();
console.log("all checks passed");
process.exit(0);
