// The agent dashboard and the widget in headless Chromium, in two browser contexts: the agent signs in;
// a customer writes from the widget; the agent sees the conversation appear live, sees the customer
// typing, replies from the dashboard; the customer sees the reply; a hostile body shows as text in the
// dashboard; closing the conversation updates the inbox counts live; settings show the snippet.
// Run by tests/browser.rs; screenshots go to SCREENSHOTS.
import http from "node:http";
import { chromium } from "playwright-core";
import { Socket } from "phoenix";
import WebSocket from "ws";
import { check, deadline } from "./check.mjs";

const netia = process.env.NETIA_URL;
const account = process.env.ACCOUNT_ID;
const screenshots = process.env.SCREENSHOTS;
deadline(90);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const foreign = [];
const watch = (page) =>
  page.on("request", (r) => {
    if (!r.url().startsWith(netia) && !r.url().startsWith("data:")) foreign.push(r.url());
  });

// The agent signs in.
const agentContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const agent = await agentContext.newPage();
watch(agent);
await agent.goto(`${netia}/`);
await agent.locator("#login-email").fill(process.env.AGENT_EMAIL);
await agent.locator("#login-password").fill(process.env.AGENT_PASSWORD);
await agent.locator("#login-form button[type=submit]").click();
await agent.locator("body[data-live=true]").waitFor({ timeout: 20000 });
check("the agent signs in and the inbox goes live", true);
const count = async (name) => Number((await agent.locator(`[data-count=${name}]`).textContent()) || "0");
const openBefore = await count("open");

// A customer writes from the widget, in its iframe on the shop's own site.
const host = http.createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/html" });
  res.end(`<!doctype html><html><body><h1>Shop</h1><iframe id="chat" src="${netia}/chat?accountId=${account}&title=Help"
    style="width:380px;height:640px;border:0"></iframe></body></html>`);
});
await new Promise((r) => host.listen(0, "127.0.0.1", r));
const hostUrl = `http://127.0.0.1:${host.address().port}`;
const customerContext = await browser.newContext({ viewport: { width: 420, height: 720 } });
const customerPage = await customerContext.newPage();
customerPage.on("request", (r) => {
  if (!r.url().startsWith(netia) && !r.url().startsWith(hostUrl)) foreign.push(r.url());
});
await customerPage.goto(hostUrl);
const customer = customerPage.frameLocator("#chat");
await customer.locator("body[data-ready=true]").waitFor({ timeout: 20000 });
await customer.locator("#message").fill("My parcel is late");
await customer.locator("#message").press("Enter");
await customer.locator(".message.mine[data-state=sent]").waitFor({ timeout: 10000 });

// The agent sees it appear live, with the count.
await agent.locator("#conversations button", { hasText: "My parcel is late" }).waitFor({ timeout: 10000 });
check("the new conversation appears live in the inbox", true);
await agent.waitForFunction((n) => Number(document.querySelector("[data-count=open]").textContent) === n + 1, openBefore, { timeout: 10000 });
check("the open count goes up live", true);
await agent.locator("#conversations button", { hasText: "My parcel is late" }).click();
await agent.locator("#messages .message.customer", { hasText: "My parcel is late" }).waitFor({ timeout: 10000 });
check("the conversation opens with its history", true);
await agent.locator("#viewers", { hasText: "Customer online" }).waitFor({ timeout: 10000 });
check("the agent sees the customer online", true);

// The customer panel reads as words: browser and system, the page as a link, the local time.
const field = (label) => agent.locator("#customer dt", { hasText: label }).locator("xpath=following-sibling::dd[1]");
const browserField = await field("Browser").textContent();
check("the panel names the customer's browser and system", /^Chrome \d+ on Linux$/.test(browserField), browserField);
const pageHref = await field("Page").locator("a").getAttribute("href");
check("the page they wrote from is a link", pageHref.startsWith(hostUrl), pageHref);
const localTime = await field("Local time").textContent();
check("and their local time with its zone", /^\d\d:\d\d.*\(.+\)$/.test(localTime), localTime);
const labels = await agent.locator("#customer dt").allTextContents();
check("no raw metadata keys", labels.every((k) => !k.includes("_")), labels);
const inside = await agent.locator("#customer").evaluate((p) =>
  [...p.querySelectorAll("dd")].every((d) => d.getBoundingClientRect().right <= p.getBoundingClientRect().right + 1),
);
check("every value stays inside the panel", inside);

// Typing both ways.
await customer.locator("#message").type("Still the", { delay: 20 });
await agent.locator("#typing", { hasText: "Customer is typing" }).waitFor({ timeout: 10000 });
check("the agent sees the customer typing", true);
await agent.locator("#reply").type("Let me", { delay: 20 });
await customer.locator("#typing:not([hidden])").waitFor({ timeout: 10000 });
check("the customer sees the agent typing", true);

// The composer says how a reply reaches this (chat) customer, and that a note reaches no one.
await agent.locator("#delivery-hint", { hasText: "appears in the" }).waitFor({ timeout: 10000 });
check("the composer says the reply goes to the chat", true);
// The agent replies; the customer sees it.
await agent.locator("#reply").fill("It arrives tomorrow, sorry!");
await agent.locator("#reply").press("Enter");
await customer.locator(".message", { hasText: "It arrives tomorrow, sorry!" }).waitFor({ timeout: 10000 });
check("the customer sees the agent's reply", true);
await agent.locator("#private").check();
check("a note is said to be for agents only", (await agent.locator("#delivery-hint").textContent()).includes("only agents"));
await agent.locator("#reply").fill("VIP customer, handle with care");
await agent.locator("#reply").press("Enter");
await agent.locator("#messages .message.note", { hasText: "VIP customer" }).waitFor({ timeout: 10000 });
await customerPage.waitForTimeout(500);
check("a private note never reaches the customer", (await customer.locator(".message", { hasText: "VIP customer" }).count()) === 0);

// A hostile body from the customer shows as text in the dashboard.
const hostile = `<img src=x onerror="window.__xss=1"><b>bold</b>`;
await customer.locator("#message").fill(hostile);
await customer.locator("#message").press("Enter");
const shown = agent.locator("#messages .message.customer", { hasText: "onerror" });
await shown.waitFor({ timeout: 10000 });
check("a hostile body is shown as text in the dashboard", (await shown.evaluate((e) => e.firstChild.textContent)) === hostile);
check("no script from a message ran in the dashboard", (await agent.evaluate(() => window.__xss)) === undefined);
check("no element was created from a message", (await agent.locator("#messages img, #messages b").count()) === 0);
if (screenshots) await agent.screenshot({ path: `${screenshots}/dashboard.png` });

// Priority, tags and assignment.
const priorityBefore = await count("priority");
await agent.locator("#toggle-priority", { hasText: "Mark priority" }).click();
await agent.waitForFunction((n) => Number(document.querySelector("[data-count=priority]").textContent) === n + 1, priorityBefore, { timeout: 10000 });
check("marking priority updates the priority count", true);
await agent.locator("#tag-input").fill("shipping");
await agent.locator("#tag-form button[type=submit]").click();
await agent.locator("#tags li", { hasText: "shipping" }).waitFor({ timeout: 10000 });
check("a tag is added", true);
await agent.locator("#assignee").selectOption({ index: 1 });
await agent.waitForFunction(() => Number(document.querySelector("[data-count=assigned_to_me]").textContent) === 1, null, { timeout: 10000 });
check("assigning to oneself updates 'assigned to me'", true);

// A typist who goes silent without saying so (their node died: no refresh, no typing:false) is
// forgotten after a few seconds. The customer's own token, from the widget's storage, on a bare
// phoenix client that says "typing" once.
const saved = JSON.parse(
  await customer.locator("body").evaluate((_, key) => window.localStorage.getItem(key), `netia:${account}:customer`),
);
const theirs = await (await fetch(`${netia}/api/conversations/customer`, { headers: { authorization: `Bearer ${saved.token}` } })).json();
const silent = new Socket(`${netia.replace(/^http/, "ws")}/socket`, { transport: WebSocket, params: { token: saved.token } });
silent.connect();
const silentChannel = silent.channel(`conversation:${theirs.data[0].id}`, {});
await new Promise((r) => silentChannel.join().receive("ok", r));
await agent.locator("#typing").waitFor({ state: "hidden", timeout: 10000 });
silentChannel.push("typing", { typing: true });
await agent.locator("#typing:not([hidden])", { hasText: "Customer is typing" }).waitFor({ timeout: 10000 });
const typingShown = Date.now();
await agent.locator("#typing").waitFor({ state: "hidden", timeout: 10000 });
const typingFor = Date.now() - typingShown;
check("the dashboard forgets a typist not heard from for 6 s", typingFor >= 4000 && typingFor <= 9000, typingFor);
silent.disconnect();

// Closing updates the counts live.
const closedBefore = await count("closed");
await agent.locator("#toggle-status", { hasText: "Close" }).click();
await agent.waitForFunction((n) => Number(document.querySelector("[data-count=closed]").textContent) === n + 1, closedBefore, { timeout: 10000 });
check("closing the conversation updates the counts live", (await count("open")) === openBefore);

// The event history (the auditor's view).
await agent.locator("#show-history").click();
await agent.locator("#history li", { hasText: "closed" }).waitFor({ timeout: 10000 });
check("the event history lists what happened", (await agent.locator("#history li").count()) >= 4);

// Settings: the snippet and the live preview.
await agent.locator("#open-settings").click();
await agent.locator("#snippet", { hasText: "widget.js" }).waitFor({ timeout: 10000 });
check("settings show the embed snippet", (await agent.locator("#snippet").textContent()).includes(account));
await agent.frameLocator("#preview").locator("body[data-ready=true]").waitFor({ timeout: 20000 });
check("settings show a live preview of the widget", true);
await agent.locator("#w-title").fill("Talk to Acme");
await agent.locator("#widget-form button[type=submit]").click();
await agent.locator("#w-saved", { hasText: "Saved." }).waitFor({ timeout: 10000 });
await agent.frameLocator("#preview").locator("#title", { hasText: "Talk to Acme" }).waitFor({ timeout: 20000 });
check("saving the widget settings updates the preview", true);
await agent.locator("#ctx-name").fill("Acme Bikes");
await agent.locator("#ctx-llm").check();
await agent.locator("#context-form button[type=submit]").click();
await agent.locator("#ctx-saved", { hasText: "Saved." }).waitFor({ timeout: 10000 });
check("the business context and the AI switch save", true);
await agent.locator("#invite-email").fill("colleague@example.com");
await agent.locator("#invite-form button[type=submit]").click();
await agent.locator("#invited", { hasText: "Invitation for colleague@example.com" }).waitFor({ timeout: 10000 });
check("an admin invites a colleague from the team page", true);
check("new-conversation emails are on by default", await agent.locator("#notify-new").isChecked());
await agent.locator("#notify-new").uncheck();
await agent.locator("#notify-status", { hasText: "will not be emailed" }).waitFor({ timeout: 10000 });
const notify = await fetch(`${netia}/api/me/notifications`, { headers: { authorization: `Bearer ${process.env.AGENT_TOKEN}` } }).then((r) => r.json());
check("turning them off is saved", notify.data.new_conversation_emails === false, notify);
check("the box still shows them off", !(await agent.locator("#notify-new").isChecked()));
await agent.locator("#key-label").fill("CI key");
await agent.locator("#key-form button[type=submit]").click();
await agent.locator("#new-key", { hasText: "ntk_" }).waitFor({ timeout: 10000 });
check("an API key is created and shown once", true);
await agent.locator("#keys li", { hasText: "CI key" }).getByRole("button", { name: /Revoke/ }).click();
await agent.waitForFunction(() => ![...document.querySelectorAll("#keys li")].some((li) => li.textContent.includes("CI key")), null, { timeout: 10000 });
check("an API key is revoked", true);
// Identity verification: the admin issues a secret, sees it, and requires verification.
await agent.locator("#identity:not([hidden])").waitFor({ timeout: 10000 });
await agent.locator("#identity-required").click(); // refused: the box unticks itself again
await agent.locator("#identity-status", { hasText: "identity secret" }).waitFor({ timeout: 10000 });
check("verification cannot be required before a secret exists", !(await agent.locator("#identity-required").isChecked()));
await agent.locator("#identity-rotate").click();
await agent.locator("#identity-status", { hasText: "New secret issued" }).waitFor({ timeout: 10000 });
const shownSecret = await agent.locator("#identity-secret").textContent();
check("an admin issues and reads the identity secret", /^[0-9a-f]{64}$/.test(shownSecret), shownSecret);
await agent.locator("#identity-required").check();
await agent.locator("#identity-status", { hasText: "Verification is required." }).waitFor({ timeout: 10000 });
const required = await fetch(`${netia}/api/identity_verification`, { headers: { authorization: `Bearer ${process.env.AGENT_TOKEN}` } }).then((r) => r.json());
check("requiring verification is saved", required.data.require_identity_verification === true && required.data.secret === shownSecret, required);
// Integrations: Slack says whether the server has an app; a webhook is added and its secret shown once.
await agent.locator("#integrations:not([hidden])").waitFor({ timeout: 10000 });
check("Slack says the server has no app", (await agent.locator("#slack-status").textContent()).includes("not configured"));
await agent.locator("#twilio-status", { hasText: "Not linked" }).waitFor({ timeout: 10000 });
await agent.locator("#gmail-status", { hasText: "GOOGLE_CLIENT_ID" }).waitFor({ timeout: 10000 });
check("Gmail says the server has no Google client, and offers no link", !(await agent.locator("#gmail-link").isVisible()));
await agent.locator("#email-inbound", { hasText: "/api/email/inbound/" }).waitFor({ timeout: 10000 });
check("the inbound email webhook is shown", true);
check("SMS (Twilio) can be linked from the page", await agent.locator("#twilio-form button[type=submit]").isVisible());
await agent.locator("#hook-url").fill("https://93.184.216.34/netia-hook");
await agent.locator("#hook-form button[type=submit]").click();
await agent.locator("#hook-status", { hasText: "signing secret" }).waitFor({ timeout: 10000 });
const hookStatus = await agent.locator("#hook-status").textContent();
check("a webhook's secret is shown once", /whsec_[0-9a-f]{64}/.test(hookStatus), hookStatus);
check("and the webhook is listed", (await agent.locator("#hooks li").first().textContent()).includes("https://93.184.216.34/netia-hook"));
if (screenshots) await agent.screenshot({ path: `${screenshots}/settings.png` });

check("no request went to another host", foreign.length === 0, foreign);
await browser.close();
host.close();
console.log("all checks passed");
process.exit(0);
