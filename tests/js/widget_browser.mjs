// The chat widget in headless Chromium (Debian's, driven by playwright-core): a host page on another
// origin embeds Netia's /widget.js; the customer opens the chat and writes; an agent (the official
// phoenix client, in Node) receives it live, types and replies; the customer sees typing and the reply;
// a hostile body shows as text; a reload keeps the conversation; URL parameters apply; no request
// leaves Netia and the host page. Run by tests/browser.rs; screenshots go to SCREENSHOTS.
import crypto from "node:crypto";
import http from "node:http";
import { chromium } from "playwright-core";
import { Socket } from "phoenix";
import WebSocket from "ws";
import { check, deadline } from "./check.mjs";

const netia = process.env.NETIA_URL;
const account = process.env.ACCOUNT_ID;
const screenshots = process.env.SCREENSHOTS;
deadline(90);

// The customer's website, on its own origin, with the embed snippet.
let signedIn = null; // {externalId, userHash, email}: the site's signed-in user, signed by its server
const host = http.createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/html" });
  if (req.url === "/signed-in" && signedIn) {
    res.end(`<!doctype html><html><body><h1>My account</h1><script src="${netia}/widget.js" data-account-id="${account}"
      data-external-id="${signedIn.externalId}" data-user-hash="${signedIn.userHash}"
      data-customer-email="${signedIn.email}" data-customer-name="Grace" async></script></body></html>`);
    return;
  }
  if (req.url === "/papercups") {
    // Papercups' own embed snippet, pointed at Netia.
    res.end(`<!doctype html><html><body><script>window.Papercups = { config: { token: "${account}",
      title: "Legacy snippet", primaryColor: "#00aa00", baseUrl: "${netia}" } };</script>
      <script type="text/javascript" async defer src="${netia}/widget.js"></script></body></html>`);
    return;
  }
  res.end(`<!doctype html><html><head><title>Shop</title></head><body><h1>Acme shop</h1>
<script src="${netia}/widget.js" data-account-id="${account}" data-title="Acme Support"
  data-subtitle="We reply fast" data-primary-color="#aa0000" data-greeting="Hi! How can we help?"
  data-is-branding-hidden="true" data-company-name="Acme" data-show-agent-availability="true" async></script></body></html>`);
});
await new Promise((r) => host.listen(0, "127.0.0.1", r));
const hostUrl = `http://127.0.0.1:${host.address().port}`;

// The agent: the official client on the account's notification topic.
const agentSocket = new Socket(`${netia.replace(/^http/, "ws")}/socket`, {
  transport: WebSocket,
  params: { token: process.env.AGENT_TOKEN },
});
agentSocket.connect();
const notifications = agentSocket.channel(`notification:${account}`, {});
const agentSeen = [];
notifications.on("shout", (m) => agentSeen.push(m));
await new Promise((r) => notifications.join().receive("ok", r));
const room = agentSocket.channel(`room:${account}`, {});
await new Promise((r) => room.join().receive("ok", r));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const context = await browser.newContext({ viewport: { width: 390, height: 844 } }); // a phone
const page = await context.newPage();
const foreign = [];
page.on("request", (r) => {
  const url = r.url();
  if (!url.startsWith(netia) && !url.startsWith(hostUrl) && !url.startsWith("data:")) foreign.push(url);
});
const consoleErrors = [];
page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));

await page.goto(hostUrl);
await page.click("#netia-chat-button");
const frame = page.frameLocator("#netia-chat-frame");
await frame.locator("body[data-ready=true]").waitFor({ timeout: 20000 });
check("the widget opens and connects inside the iframe", true);
check("title from the snippet", (await frame.locator("#title").textContent()) === "Acme Support");
check("subtitle from the snippet", (await frame.locator("#subtitle").textContent()) === "We reply fast");
const headerColor = await frame.locator("#header").evaluate((el) => getComputedStyle(el).backgroundColor);
check("primary colour from the snippet", headerColor === "rgb(170, 0, 0)", headerColor);
check("greeting shown", (await frame.locator("[data-type=greeting]").textContent()) === "Hi! How can we help?");
check("branding hidden", await frame.locator("#branding").isHidden());
await frame.locator("#availability", { hasText: "We're online!" }).waitFor({ timeout: 10000 });
check("agent availability shown (an agent is in the account's room)", true);

// The customer writes: pending at once, then sent; the agent receives it live.
await frame.locator("#message").fill("Hello from the browser");
await frame.locator("#message").press("Enter");
await frame.locator(".message.mine[data-state=sent]", { hasText: "Hello from the browser" }).waitFor({ timeout: 10000 });
check("the customer's message is shown and saved", true);
const until = Date.now() + 10000;
while (Date.now() < until && !agentSeen.some((m) => m.body === "Hello from the browser")) {
  await new Promise((r) => setTimeout(r, 20));
}
const first = agentSeen.find((m) => m.body === "Hello from the browser");
check("the agent receives it live", !!first, agentSeen);
const conversationId = first.conversation_id;

// The agent types, then replies (with a hostile body first).
const conversation = agentSocket.channel(`conversation:${conversationId}`, {});
await new Promise((r) => conversation.join().receive("ok", r));
conversation.push("typing", { typing: true });
await frame.locator("#typing", { hasText: "Acme is typing" }).waitFor({ timeout: 10000 });
check("the customer sees the agent typing", true);
const hostile = `<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>`;
await new Promise((r) => conversation.push("shout", { body: hostile }).receive("ok", r));
await new Promise((r) => conversation.push("shout", { body: "Your order ships today." }).receive("ok", r));
await frame.locator(".message", { hasText: "Your order ships today." }).waitFor({ timeout: 10000 });
check("the customer sees the agent's reply live", true);
check("the typing indicator goes when the reply arrives", await frame.locator("#typing").isHidden());
// A typist who goes silent without saying so (their node died) is forgotten after a few seconds.
conversation.push("typing", { typing: true });
await frame.locator("#typing:not([hidden])").waitFor({ timeout: 10000 });
const typingShown = Date.now();
await frame.locator("#typing").waitFor({ state: "hidden", timeout: 10000 });
const typingFor = Date.now() - typingShown;
check("the widget forgets a typist not heard from for 6 s", typingFor >= 4000 && typingFor <= 9000, typingFor);
const hostileText = await frame.locator(".message", { hasText: "onerror" }).first().evaluate((el) => el.firstChild.textContent);
check("a hostile body is shown as text", hostileText === hostile, hostileText);
const xss = await frame.locator("body").evaluate(() => window.__xss);
check("no script from a message ran", xss === undefined, xss);
check("no <img> was created from a message", (await frame.locator(".messages img").count()) === 0);
if (screenshots) await page.screenshot({ path: `${screenshots}/widget.png` });

// A reload keeps the customer and the conversation.
await page.reload();
await page.click("#netia-chat-button");
await frame.locator("body[data-ready=true]").waitFor({ timeout: 20000 });
const again = await frame.locator("body").getAttribute("data-conversation");
check("a reload resumes the same conversation", again === conversationId, [again, conversationId]);
await frame.locator(".message", { hasText: "Your order ships today." }).waitFor({ timeout: 10000 });
check("the history is shown after the reload", (await frame.locator(".message", { hasText: "Hello from the browser" }).count()) === 1);

// Papercups' snippet works against Netia's URL.
const legacy = await context.newPage();
await legacy.goto(`${hostUrl}/papercups`);
await legacy.click("#netia-chat-button");
const legacyFrame = legacy.frameLocator("#netia-chat-frame");
await legacyFrame.locator("body[data-ready=true]").waitFor({ timeout: 20000 });
check("Papercups' embed snippet works", (await legacyFrame.locator("#title").textContent()) === "Legacy snippet");
check("its colour applies", (await legacyFrame.locator("#header").evaluate((el) => getComputedStyle(el).backgroundColor)) === "rgb(0, 170, 0)");

// Identity verification: the site's server signs its user's id with the account's identity secret;
// the widget passes it on, and agents see a verified customer with the site's email for them.
const api = async (method, path, body) => {
  const response = await fetch(netia + path, {
    method,
    headers: { authorization: `Bearer ${process.env.AGENT_TOKEN}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(json)}`);
  return json.data;
};
const { secret } = await api("POST", "/api/identity_verification/secret", {});
signedIn = {
  externalId: "site-user-7",
  userHash: crypto.createHmac("sha256", secret).update("site-user-7").digest("hex"),
  email: "grace@example.com",
};
const member = await context.newPage();
await member.goto(`${hostUrl}/signed-in`);
await member.click("#netia-chat-button");
const memberFrame = member.frameLocator("#netia-chat-frame");
await memberFrame.locator("body[data-ready=true]").waitFor({ timeout: 20000 });
const memberConversation = await memberFrame.locator("body").getAttribute("data-conversation");
check("a signed-in user gets a conversation of their own", memberConversation && memberConversation !== conversationId);
const { customer_id: memberId } = await api("GET", `/api/conversations/${memberConversation}`);
const verifiedCustomer = await api("GET", `/api/customers/${memberId}`);
check(
  "the customer is verified, with the site's id and email",
  verifiedCustomer.verified === true && verifiedCustomer.external_id === "site-user-7" && verifiedCustomer.email === "grace@example.com",
  verifiedCustomer,
);
// A forged hash is refused once the account requires verification: the widget cannot start.
await api("PUT", "/api/identity_verification", { require_identity_verification: true });
signedIn = { ...signedIn, externalId: "site-user-8" }; // the hash is for site-user-7
const forged = await context.newPage();
const refusals = [];
forged.on("response", (r) => r.url().endsWith("/api/customers") && refusals.push(r.status()));
await forged.goto(`${hostUrl}/signed-in`);
await forged.click("#netia-chat-button");
const until422 = Date.now() + 10000;
while (Date.now() < until422 && !refusals.length) await new Promise((r) => setTimeout(r, 50));
check("a forged user_hash is refused (422)", refusals[0] === 422, refusals);
await api("PUT", "/api/identity_verification", { require_identity_verification: false });

// /chat directly with bad parameters: defaults, with console warnings.
const direct = await context.newPage();
const warnings = [];
direct.on("console", (m) => m.type() === "warning" && warnings.push(m.text()));
await direct.goto(`${netia}/chat?accountId=${account}&primaryColor=red;x&showAgentAvailability=maybe&title=Direct`);
await direct.locator("body[data-ready=true]").waitFor({ timeout: 20000 });
check("a bad colour falls back to the default", (await direct.locator("#header").evaluate((el) => getComputedStyle(el).backgroundColor)) === "rgb(37, 99, 235)");
check("with white text on it", (await direct.locator("#title").evaluate((el) => getComputedStyle(el).color)) === "rgb(255, 255, 255)");
check("bad parameters are warned about", warnings.some((w) => w.includes("primaryColor")) && warnings.some((w) => w.includes("showAgentAvailability")), warnings);
check("a good parameter still applies", (await direct.locator("#title").textContent()) === "Direct");
// A light brand colour stays, with dark text on it so that it can be read (WCAG contrast).
const light = await context.newPage();
await light.goto(`${netia}/chat?accountId=${account}&primaryColor=%23fde047`);
await light.locator("body[data-ready=true]").waitFor({ timeout: 20000 });
check("a light brand colour is kept", (await light.locator("#header").evaluate((el) => getComputedStyle(el).backgroundColor)) === "rgb(253, 224, 71)");
check("with dark text on it", (await light.locator("#title").evaluate((el) => getComputedStyle(el).color)) === "rgb(17, 24, 39)");
await light.close();

// Storage blocked (a third-party iframe under strict browser settings): the widget still works.
const blocked = await browser.newContext();
await blocked.addInitScript(() => {
  Object.defineProperty(window, "localStorage", {
    get() {
      throw new DOMException("blocked", "SecurityError");
    },
  });
});
const noStorage = await blocked.newPage();
await noStorage.goto(`${netia}/chat?accountId=${account}`);
await noStorage.locator("body[data-ready=true]").waitFor({ timeout: 20000 });
await noStorage.locator("#message").fill("No storage here");
await noStorage.locator("#message").press("Enter");
await noStorage.locator(".message.mine[data-state=sent]", { hasText: "No storage here" }).waitFor({ timeout: 10000 });
check("with storage blocked the widget works from memory", true);

// Offline: a message written meanwhile waits, and is sent after the reconnection.
await context.setOffline(true);
await page.waitForTimeout(300);
await frame.locator("#message").fill("Written while offline");
await frame.locator("#message").press("Enter");
await frame.locator(".message.mine", { hasText: "Written while offline" }).waitFor({ timeout: 10000 });
check("a message written offline is shown at once", (await frame.locator(".message.mine[data-state=sent]", { hasText: "Written while offline" }).count()) === 0);
await context.setOffline(false);
await frame.locator(".message.mine[data-state=sent]", { hasText: "Written while offline" }).waitFor({ timeout: 30000 });
check("it is sent after the reconnection", true);
const seenOffline = Date.now() + 10000;
while (Date.now() < seenOffline && !agentSeen.some((m) => m.body === "Written while offline")) await new Promise((r) => setTimeout(r, 20));
check("the agent receives it once", agentSeen.filter((m) => m.body === "Written while offline").length === 1, agentSeen.map((m) => m.body));

check("no request went to another host", foreign.length === 0, foreign);
await browser.close();
agentSocket.disconnect();
host.close();
console.log("all checks passed");
process.exit(0);
