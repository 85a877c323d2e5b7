// A consumer that stops reading is disconnected; the others keep receiving without delay. Raw
// WebSockets (the `ws` package). Run by tests/realtime.rs.
import WebSocket from "ws";
import { check, deadline } from "./check.mjs";

const base = process.env.NETIA_URL.replace(/^http/, "ws") + "/socket/websocket";
const topic = `conversation:${process.env.CONVERSATION_ID}`;
const TYPINGS = 80000; // ~14 MB of pushes: more than the kernel's buffers and the 1,024-frame outbox

deadline(90);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function member(token) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${base}?vsn=2.0.0&token=${encodeURIComponent(token)}`);
    const state = { ws, typing: 0, closed: null, joined: false };
    ws.on("message", (data) => {
      const [, , , event] = JSON.parse(data.toString());
      if (event === "typing") state.typing += 1;
      if (event === "phx_reply") state.joined = true;
    });
    ws.on("close", (code) => (state.closed = code));
    ws.on("error", () => {});
    ws.on("open", () => {
      ws.send(JSON.stringify(["1", "1", topic, "phx_join", {}]));
      resolve(state);
    });
  });
}

const token = process.env.AGENT_TOKEN;
const slow = await member(token);
const fast = await member(token);
const sender = await member(process.env.CUSTOMER_TOKEN);
while (!(slow.joined && fast.joined && sender.joined)) await sleep(10);
check("three members joined", true);

slow.ws._socket.pause(); // stops reading: the server's writes to it pile up
for (let i = 0; i < TYPINGS; i++) {
  sender.ws.send(JSON.stringify(["1", String(i + 2), topic, "typing", { typing: i % 2 === 0 }]));
  if (i % 1000 === 999) await sleep(1); // let the sender's own socket drain
}
const allSent = Date.now() + 60000;
while (Date.now() < allSent && fast.typing < TYPINGS) await sleep(20);
check(`the reading member received all ${TYPINGS} pushes`, fast.typing === TYPINGS, fast.typing);
check("the sender is still connected", sender.closed === null && sender.ws.readyState === WebSocket.OPEN);
slow.ws._socket.resume();
const closedBy = Date.now() + 10000;
while (Date.now() < closedBy && slow.closed === null) await sleep(20);
check("the member that stopped reading was disconnected", slow.closed !== null, slow.closed);
check("it was not sent everything", slow.typing < TYPINGS, slow.typing);

// The server still serves: a fresh member joins and receives.
const again = await member(token);
while (!again.joined) await sleep(10);
sender.ws.send(JSON.stringify(["1", "x", topic, "typing", { typing: true }]));
const until = Date.now() + 5000;
while (Date.now() < until && again.typing === 0) await sleep(10);
check("a new member joins and receives afterwards", again.typing === 1, again.typing);
console.log("all checks passed");
process.exit(0);
