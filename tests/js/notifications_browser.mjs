// Browser notifications and the title counter of the agent dashboard in headless Chromium: with the
// tab in the background, each new customer message counts in the title ("(2) Netia") and shows a
// notification naming the customer (the agent allowed notifications); the agent's own reply does
// neither; coming back to the tab clears the count; with the tab in front nothing is notified.
// Run by tests/browser.rs; screenshots go to SCREENSHOTS.
import { Socket } from "phoenix";
import WebSocket from "ws";
import { check, deadline, launchChromium, rest, signIn } from "./check.mjs";

const netia = process.env.NETIA_URL;
const account = process.env.ACCOUNT_ID;
deadline(60);

const browser = await launchChromium();
const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, permissions: ["notifications"] });
// Every notification the page creates is recorded before the browser's own Notification shows it.
await context.addInitScript(() => {
  window.shownNotifications = [];
  const Real = window.Notification;
  function Recorded(title, options) {
    window.shownNotifications.push({ title, body: options && options.body, tag: options && options.tag });
    return new Real(title, options);
  }
  Object.defineProperty(Recorded, "permission", { get: () => Real.permission });
  Recorded.requestPermission = (...args) => Real.requestPermission(...args);
  window.Notification = Recorded;
});
const page = await context.newPage();
const errors = [];
page.on("pageerror", (e) => errors.push(e.message));

await signIn(page);
check("with notifications allowed, the dashboard does not ask again", await page.locator("#enable-notifications").isHidden());

// A customer, Grace, opens a conversation; it appears in the inbox.
const post = (path, token, body) => rest("POST", path, token, body);
const customer = await post("/api/customers", null, { account_id: account, name: "Grace Hopper" });
const conversation = await post("/api/conversations", customer.token, { account_id: account, customer_id: customer.id });
await page.locator("#conversations .who", { hasText: "Grace Hopper" }).waitFor({ timeout: 10000 });
const socket = new Socket(`${netia.replace(/^http/, "ws")}/socket`, { transport: WebSocket, params: { token: customer.token } });
socket.connect();
const channel = socket.channel(`conversation:${conversation.id}`, {});
await new Promise((resolve, reject) => channel.join().receive("ok", resolve).receive("error", reject));
const shout = (body) =>
  new Promise((resolve, reject) => channel.push("shout", { body }).receive("ok", resolve).receive("error", reject));

const visibility = (state) =>
  page.evaluate((hidden) => {
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => (hidden ? "hidden" : "visible") });
    Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
    document.dispatchEvent(new Event("visibilitychange"));
  }, state === "hidden");
const shown = () => page.evaluate(() => window.shownNotifications);

// In the background: the customer's messages count and notify.
await visibility("hidden");
await shout("Is anyone there? My order never arrived.");
await page.waitForFunction(() => document.title === "(1) Netia", null, { timeout: 10000 });
check("a customer message while the tab is hidden counts in the title", true);
const first = (await shown())[0];
check("and shows a notification naming the customer", first && first.title === "New message from Grace Hopper", first);
check("with the message as its text", first && first.body === "Is anyone there? My order never arrived.", first);
check("one notification per conversation thread (tagged with it)", first && first.tag === conversation.id, first);

// The agent's own reply (from another tab, say) neither counts nor notifies.
const reply = await fetch(`${netia}/api/conversations/${conversation.id}/messages`, {
  method: "POST",
  headers: { "content-type": "application/json", authorization: `Bearer ${process.env.AGENT_TOKEN}` },
  body: JSON.stringify({ body: "Looking into it now." }),
});
check("the agent replies", reply.status === 201, reply.status);
await shout("Thanks!");
await page.waitForFunction(() => document.title === "(2) Netia", null, { timeout: 10000 });
const all = await shown();
check("the agent's reply is not counted or notified, the next customer message is", all.length === 2 && all[1].body === "Thanks!", all);

// Back to the tab: the count goes.
await visibility("visible");
await page.waitForFunction(() => document.title === "Netia", null, { timeout: 5000 });
check("coming back to the tab clears the title count", true);

// In front: nothing is notified.
await shout("Order 1234, by the way.");
await page.locator("#conversations .preview", { hasText: "Order 1234" }).waitFor({ timeout: 10000 });
check("with the tab in front no notification is shown", (await shown()).length === 2 && (await page.title()) === "Netia");
check("no page errors", errors.length === 0, errors);

// An agent who has not decided yet is offered notifications in the sidebar.
const undecided = await (await browser.newContext()).newPage();
await undecided.goto(`${netia}/`);
await undecided.locator("#login-email").waitFor({ timeout: 10000 });
if ((await undecided.evaluate(() => Notification.permission)) === "default") {
  await undecided.locator("#login-email").fill(process.env.AGENT_EMAIL);
  await undecided.locator("#login-password").fill(process.env.AGENT_PASSWORD);
  await undecided.locator("#login-form button[type=submit]").click();
  await undecided.locator("body[data-live=true]").waitFor({ timeout: 20000 });
  check("an agent who has not decided is offered notifications", await undecided.locator("#enable-notifications").isVisible());
}

socket.disconnect();
await browser.close();
console.log("all checks passed");
process.exit(0);
