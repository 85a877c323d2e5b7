// A widget-like client survives a server restart and loses nothing: it remembers the last message
// version it saw, and on every (re)join fetches what came after it over REST (customer token), then
// keeps receiving live broadcasts. Driven by tests/realtime.rs over stdin/stdout:
//   prints READY once joined; the test kills the server, writes messages, restarts it;
//   prints REJOINED <n> after the first rejoin's catch-up; the test posts one live message;
//   prints "all checks passed" once every expected body has been seen exactly once.
import { Socket } from "phoenix";
import WebSocket from "ws";

const base = process.env.NETIA_URL;
const token = process.env.CUSTOMER_TOKEN;
const conversationId = process.env.CONVERSATION_ID;
const expected = JSON.parse(process.env.EXPECTED_BODIES);

const seen = new Map(); // message id → body
let lastVersion = 0;
let joins = 0;
function record(message) {
  if (seen.has(message.id)) return;
  seen.set(message.id, message.body);
  lastVersion = Math.max(lastVersion, message.version);
}
async function catchUp() {
  const response = await fetch(`${base}/api/conversations/${conversationId}/messages?after_version=${lastVersion}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  if (!response.ok) throw new Error(`catch-up answered ${response.status}`);
  const { data } = await response.json();
  data.forEach(record);
  return data.length;
}
function done() {
  const bodies = [...seen.values()];
  return expected.every((b) => bodies.filter((x) => x === b).length === 1);
}

setTimeout(() => {
  console.log(`FAIL timeout; seen ${JSON.stringify([...seen.values()])}`);
  process.exit(1);
}, 45000).unref();

const socket = new Socket(`${base.replace(/^http/, "ws")}/socket`, { transport: WebSocket, params: { token } });
socket.connect();
const channel = socket.channel(`conversation:${conversationId}`, {});
channel.on("shout", (m) => {
  record(m);
  if (done()) {
    console.log("all checks passed");
    process.exit(0);
  }
});
channel.join().receive("ok", async () => {
  joins += 1;
  const fetched = await catchUp();
  if (joins === 1) console.log("READY");
  else if (joins === 2) console.log(`REJOINED ${fetched}`);
  if (done()) {
    console.log("all checks passed");
    process.exit(0);
  }
});
