// A session's socket closes when the session expires, however busy its heartbeats keep it
// (tests/security.rs starts the node with SESSION_TTL_SECONDS=3), and the expired token cannot
// open a new one.
import { Socket } from "phoenix";
import WebSocket from "ws";
import { check, deadline } from "./check.mjs";

deadline(30);
const expiresAt = Date.parse(process.env.EXPIRES_AT);
const url = `${process.env.NODE_URL.replace(/^http/, "ws")}/socket`;

const socket = new Socket(url, {
  transport: WebSocket,
  params: { token: process.env.AGENT_TOKEN },
  heartbeatIntervalMs: 300,
  reconnectAfterMs: () => 600000,
});
const closes = [];
socket.onClose((e) => closes.push({ code: e.code, at: Date.now() }));
socket.onError(() => {});
socket.connect();
const channel = socket.channel(`notification:${process.env.ACCOUNT_ID}`, {});
await new Promise((resolve, reject) => channel.join().receive("ok", resolve).receive("error", (e) => reject(new Error(JSON.stringify(e)))));
check("the session's socket joins while the session is valid", true);
const end = expiresAt + 5000;
while (Date.now() < end && closes.length === 0) await new Promise((r) => setTimeout(r, 20));
const closed = closes[0];
check("the socket is closed with 1008", closed && closed.code === 1008, closes);
const late = closed.at - expiresAt;
check("within a second of the expiry, heartbeats notwithstanding", late >= -500 && late <= 1000, { late });

// The expired token opens nothing.
const again = new WebSocket(`${url}/websocket?token=${encodeURIComponent(process.env.AGENT_TOKEN)}&vsn=2.0.0`);
const refused = await new Promise((resolve) => {
  again.on("unexpected-response", (_req, res) => resolve(res.statusCode));
  again.on("open", () => resolve("open"));
  again.on("error", () => resolve("error"));
});
check("the expired token cannot open a socket", refused === 401 || refused === 403, refused);
console.log("all checks passed");
process.exit(0);
