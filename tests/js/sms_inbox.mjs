// An agent's dashboard, through the official phoenix client: joins the account's notification
// topic and waits for the customer's SMS (EXPECTED_BODY) to arrive as a `shout`, after the
// conversation's `conversation:created`.
import { Socket } from "phoenix";
import WebSocket from "ws";
import { check, deadline } from "./check.mjs";

deadline(25);
const socket = new Socket(`${process.env.NETIA_URL.replace(/^http/, "ws")}/socket`, {
  transport: WebSocket,
  params: { token: process.env.AGENT_TOKEN },
});
socket.onError(() => {});
socket.connect();
const channel = socket.channel(`notification:${process.env.ACCOUNT_ID}`, {});
const created = [];
const shouts = [];
channel.on("conversation:created", (c) => created.push(c));
channel.on("shout", (message) => shouts.push(message));
await new Promise((resolve, reject) =>
  channel.join().receive("ok", resolve).receive("error", (e) => reject(new Error(JSON.stringify(e)))),
);
console.log("joined");
while (!shouts.some((m) => m.body === process.env.EXPECTED_BODY)) await new Promise((r) => setTimeout(r, 20));
const sms = shouts.find((m) => m.body === process.env.EXPECTED_BODY);
check("the SMS arrives as the customer's message", sms.type === "sms" && sms.source === "sms" && sms.customer_id, sms);
check("its conversation was announced as an SMS conversation", created.some((c) => c.id === sms.conversation_id && c.source === "sms"), created);
socket.disconnect();
console.log("all checks passed");
