// A customer's widget, through the official phoenix client: joins its conversation and waits for
// the agent's reply typed in Slack (EXPECTED_BODY) to arrive as a `shout`.
import { Socket } from "phoenix";
import WebSocket from "ws";
import { check, deadline } from "./check.mjs";

deadline(25);
const socket = new Socket(`${process.env.NETIA_URL.replace(/^http/, "ws")}/socket`, {
  transport: WebSocket,
  params: { token: process.env.CUSTOMER_TOKEN },
});
socket.onError(() => {});
socket.connect();
const channel = socket.channel(`conversation:${process.env.CONVERSATION_ID}`, {});
const shouts = [];
channel.on("shout", (message) => shouts.push(message));
await new Promise((resolve, reject) =>
  channel.join().receive("ok", resolve).receive("error", (e) => reject(new Error(JSON.stringify(e)))),
);
console.log("joined");
while (!shouts.some((m) => m.body === process.env.EXPECTED_BODY)) await new Promise((r) => setTimeout(r, 20));
const reply = shouts.find((m) => m.body === process.env.EXPECTED_BODY);
check("the Slack reply reaches the customer as the agent's message", reply.type === "slack" && reply.user_id, reply);
check("the customer sees no email address of the agent", !JSON.stringify(reply).includes("@example.com"), reply);
socket.disconnect();
console.log("all checks passed");
