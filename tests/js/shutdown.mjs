// Graceful shutdown as clients meet it: SOCKETS connections (the official phoenix client) join a
// conversation, the script prints READY, the test sends SIGTERM to the server, and every socket must
// get a close frame with code 1001 ("going away") so its client reconnects elsewhere. Run by
// tests/realtime.rs with NETIA_URL, CUSTOMER_TOKEN, CONVERSATION_ID, SOCKETS (and ASK).
import { Socket } from "phoenix";
import WebSocket from "ws";
import { check, deadline } from "./check.mjs";

const url = process.env.NETIA_URL.replace(/^http/, "ws") + "/socket";
const topic = `conversation:${process.env.CONVERSATION_ID}`;
const count = Number(process.env.SOCKETS || "200");
deadline(60);

const codes = [];
// Which sockets closed otherwise (socket 0 is the one that asks, with ASK), for a failure's report.
const others = [];
const sockets = [];
await Promise.all(
  Array.from({ length: count }, () => {
    const socket = new Socket(url, {
      transport: WebSocket,
      params: { token: process.env.CUSTOMER_TOKEN },
      reconnectAfterMs: () => 600000, // no reconnection during the test
      heartbeatIntervalMs: 600000,
    });
    const index = sockets.length;
    socket.onClose((event) => {
      codes.push(event.code);
      if (event.code !== 1001) others.push({ socket: index, code: event.code, reason: event.reason, clean: event.wasClean });
    });
    socket.connect();
    sockets.push(socket);
    return new Promise((resolve, reject) => {
      socket
        .channel(topic, {})
        .join()
        .receive("ok", resolve)
        .receive("error", reject)
        .receive("timeout", () => reject(new Error("join timed out")));
    });
  }),
);
// With ASK, one socket sends it first: the bot's consumer is then busy with it at the SIGTERM.
if (process.env.ASK) {
  const channel = sockets[0].channels[0];
  const asked = await new Promise((resolve) =>
    channel.push("shout", { body: process.env.ASK }).receive("ok", resolve).receive("error", (e) => resolve({ error: e })),
  );
  check("the question is saved", asked.body === process.env.ASK, asked);
}
console.log("READY");

const end = Date.now() + 20000;
while (codes.length < count && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
check(`all ${count} sockets were closed`, codes.length === count, { closed: codes.length });
const away = codes.filter((c) => c === 1001).length;
check("each with 1001 (going away)", away === count, { away, codes: [...new Set(codes)], others });
console.log("all checks passed");
process.exit(0);
