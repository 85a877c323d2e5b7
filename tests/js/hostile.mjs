// Hostile input on raw WebSockets (the `ws` package, no phoenix client): malformed frames close the
// offending socket and nothing else; refusals are error replies. Run by tests/realtime.rs.
import WebSocket from "ws";
import { check, deadline } from "./check.mjs";

const base = process.env.NETIA_URL.replace(/^http/, "ws") + "/socket/websocket";
const agentToken = process.env.AGENT_TOKEN;
const customerToken = process.env.CUSTOMER_TOKEN;
const conversationId = process.env.CONVERSATION_ID;
const otherAccountId = process.env.OTHER_ACCOUNT_ID;
const topic = `conversation:${conversationId}`;

deadline(30);

/** An open raw socket that records frames and its close code. */
function open(token, query = `vsn=2.0.0&token=${encodeURIComponent(token)}`) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${base}?${query}`);
    const state = { ws, frames: [], closed: null, refused: null };
    ws.on("message", (data) => state.frames.push(JSON.parse(data.toString())));
    ws.on("close", (code) => (state.closed = code));
    ws.on("unexpected-response", (_req, res) => {
      state.refused = res.statusCode;
      resolve(state);
    });
    ws.on("error", () => resolve(state));
    ws.on("open", () => resolve(state));
  });
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function reply(state, ref, ms = 3000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const found = state.frames.find((f) => f[1] === ref && f[3] === "phx_reply");
    if (found) return found;
    await sleep(10);
  }
  return null;
}
async function closedWith(state, ms = 3000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && state.closed === null) await sleep(10);
  return state.closed;
}

// Upgrades refused with 403.
for (const [name, query] of [
  ["no token", "vsn=2.0.0"],
  ["a wrong token", "vsn=2.0.0&token=nts_wrong"],
  ["the V1 serializer", `token=${encodeURIComponent(agentToken)}`],
]) {
  const s = await open(agentToken, query);
  check(`upgrade refused with ${name}`, s.refused === 403, s.refused);
}

// A bystander that must be unaffected by everything below.
const bystander = await open(agentToken);
bystander.ws.send(JSON.stringify(["1", "1", topic, "phx_join", {}]));
check("bystander joins", (await reply(bystander, "1"))?.[4]?.status === "ok");

for (const [name, frame, code] of [
  ["non-JSON", "hello", 1007],
  ["wrong arity", JSON.stringify(["1", "1", topic]), 1007],
  ["a non-object payload", JSON.stringify(["1", "1", topic, "phx_join", "x"]), 1007],
  ["a binary frame", Buffer.from([1, 2, 3]), 1003],
  ["a frame over 256 KiB", JSON.stringify([null, "1", "phoenix", "heartbeat", { pad: "x".repeat(270000) }]), 1009],
  // Still being sent when the server closes: the close frame must not be lost to a reset.
  ["a 4 MiB frame", JSON.stringify([null, "1", "phoenix", "heartbeat", { pad: "x".repeat(4 << 20) }]), 1009],
]) {
  const s = await open(agentToken);
  s.ws.send(frame);
  const closed = await closedWith(s);
  check(`${name} closes the socket (${code})`, closed === code, closed);
}

const s = await open(customerToken);
s.ws.send(JSON.stringify([null, "2", "nothing:here", "phx_join", {}]));
let r = await reply(s, "2");
check("unknown topic: unmatched topic", r?.[4]?.status === "error" && r[4].response.reason === "unmatched topic", r);
s.ws.send(JSON.stringify([null, "3", `notification:${otherAccountId}`, "phx_join", {}]));
r = await reply(s, "3");
check("another account's topic: refused", r?.[4]?.status === "error", r);
s.ws.send(JSON.stringify([null, "4", topic, "shout", { body: "not joined" }]));
r = await reply(s, "4");
check("push to a topic not joined: unmatched topic, join_ref null", r?.[0] === null && r[4].response.reason === "unmatched topic", r);
s.ws.send(JSON.stringify(["5", "5", topic, "phx_join", {}]));
check("customer joins", (await reply(s, "5"))?.[4]?.status === "ok");
s.ws.send(JSON.stringify(["5", "6", topic, "shout", { body: 42 }]));
r = await reply(s, "6");
check("a shout with a non-string body: error reply", r?.[4]?.status === "error", r);
// Fields are checked as the REST API checks them: a truthy `private` is not a note.
s.ws.send(JSON.stringify(["5", "10", topic, "shout", { body: "note?", private: "yes" }]));
r = await reply(s, "10");
check("a non-boolean private: refused", r?.[4]?.response?.reason === "private must be a boolean", r);
s.ws.send(JSON.stringify(["5", "11", topic, "shout", { body: "x", format: "html" }]));
r = await reply(s, "11");
check("an unknown format: refused", r?.[4]?.status === "error" && /^format must be/.test(r[4].response.reason), r);
s.ws.send(JSON.stringify(["5", "12", topic, "shout", { body: "**hi**", format: "markdown" }]));
r = await reply(s, "12");
check("markdown is kept", r?.[4]?.status === "ok" && r[4].response.format === "markdown", r);
s.ws.send(JSON.stringify(["5", "13", topic, "typing", { typing: "yes" }]));
r = await reply(s, "13");
check("a non-boolean typing: refused", r?.[4]?.response?.reason === "typing must be a boolean", r);
// One spelling per conversation: another would be a topic no broadcast reaches.
s.ws.send(JSON.stringify(["14", "14", topic.toUpperCase().replace("CONVERSATION", "conversation"), "phx_join", {}]));
r = await reply(s, "14");
check("an upper-case spelling of the topic: unmatched topic", r?.[4]?.response?.reason === "unmatched topic", r);
s.ws.send(JSON.stringify(["99", "7", topic, "shout", { body: "stale join ref" }]));
await sleep(300);
check("a push with a stale join_ref is ignored", !s.frames.some((f) => f[1] === "7"));
s.ws.send(JSON.stringify(["8", "8", topic, "phx_join", {}]));
await sleep(300);
check(
  "rejoining a joined topic closes the old instance first",
  s.frames.some((f) => f[0] === "5" && f[3] === "phx_close") && s.frames.some((f) => f[1] === "8" && f[4].status === "ok"),
  s.frames.map((f) => [f[0], f[1], f[3]]),
);
s.ws.send(JSON.stringify([null, "9", "phoenix", "heartbeat", {}]));
r = await reply(s, "9");
check("heartbeat answered", r?.[2] === "phoenix" && r[4].status === "ok", r);
let pong = false;
s.ws.on("pong", () => (pong = true));
s.ws.ping("are you there");
await sleep(300);
check("WebSocket pings are answered", pong);

// WebSocket pings count against the frame limit like any frame.
const pinger = await open(customerToken);
for (let i = 0; i < 2000 && pinger.closed === null; i++) pinger.ws.ping();
check("a flood of pings closes the socket (1008)", (await closedWith(pinger)) === 1008, pinger.closed);

// A client that closes gets the server's close frame back (RFC 6455 §5.5.1): `ws` reports the code
// it received, 1006 if the server only dropped the connection.
const leaving = await open(customerToken);
leaving.ws.close(1000, "bye");
check("a client's close is answered with a close frame", (await closedWith(leaving)) === 1000, leaving.closed);

bystander.ws.send(JSON.stringify([null, "50", "phoenix", "heartbeat", {}]));
check("the bystander is unaffected", (await reply(bystander, "50"))?.[4]?.status === "ok" && bystander.closed === null);
console.log("all checks passed");
process.exit(0);
