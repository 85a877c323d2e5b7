// The widget speaks the visitor's language (French here, from the browser), or the account's
// (`locale` in the widget settings); with nobody online it offers email replies and saves the
// customer's email; answers that arrive while the chat is closed show as an unread badge on the
// launcher. Headless Chromium (playwright-core) on a host page of another origin; the agent is the
// official phoenix client. Run by tests/browser.rs.
import http from "node:http";
import { chromium } from "playwright-core";
import { Socket } from "phoenix";
import WebSocket from "ws";
import { check, deadline } from "./check.mjs";

const netia = process.env.NETIA_URL;
const account = process.env.ACCOUNT_ID;
const screenshots = process.env.SCREENSHOTS;
deadline(90);

const api = async (method, path, body) => {
  const response = await fetch(netia + path, {
    method,
    headers: { authorization: `Bearer ${process.env.AGENT_TOKEN}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json();
  return { status: response.status, data: json.data, json };
};

const host = http.createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/html" });
  res.end(`<!doctype html><html><head><title>Boutique</title></head><body><h1>Boutique Acme</h1>
<script src="${netia}/widget.js" data-account-id="${account}" data-company-name="Acme" async></script></body></html>`);
});
await new Promise((r) => host.listen(0, "127.0.0.1", r));
const hostUrl = `http://127.0.0.1:${host.address().port}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const context = await browser.newContext({ locale: "fr-FR", viewport: { width: 1200, height: 850 } });
const page = await context.newPage();
const consoleErrors = [];
page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
await page.goto(hostUrl);
const button = page.locator("#netia-chat-button");
const frame = page.frameLocator("#netia-chat-frame");
// The chat loads (and connects) inside the closed, hidden iframe.
await frame.locator("body[data-ready=true]").waitFor({ state: "attached", timeout: 20000 });
check("the launcher speaks French", (await button.getAttribute("aria-label")) === "Ouvrir le chat");
check("no unread badge yet", await page.locator("#netia-chat-badge").isHidden());
await button.click();
check("the chat speaks French: placeholder", (await frame.locator("#message").getAttribute("placeholder")) === "Écrivez votre message…");
check("the chat speaks French: send button", (await frame.locator("#send").textContent()) === "Envoyer");
check("the chat speaks French: default title", (await frame.locator("#title").textContent()) === "Bienvenue !");
check("the page's language is French", (await frame.locator("html").getAttribute("lang")) === "fr");
check("the launcher says it closes the chat", (await button.getAttribute("aria-label")) === "Fermer le chat");

// Nobody is online (no agent in the account's room): after writing, the customer is offered email replies.
await frame.locator("#message").fill("Bonjour, ma commande est en retard");
await frame.locator("#message").press("Enter");
await frame.locator(".message.mine[data-state=sent]").waitFor({ timeout: 10000 });
await frame.locator("#email-capture:not([hidden])").waitFor({ timeout: 10000 });
check("the email form appears when nobody is online", (await frame.locator("#email-ask").textContent()).startsWith("Personne n'est disponible"));
await frame.locator("#email").fill("pas-un-email");
await frame.locator("#email-save").click();
await frame.locator("#email-status", { hasText: "Saisissez une adresse e-mail valide." }).waitFor({ timeout: 5000 });
check("a bad address is refused in the page, in French", (await frame.locator("#email").getAttribute("aria-invalid")) === "true");
await frame.locator("#email").fill("ada@example.com");
await frame.locator("#email-save").click();
await frame.locator("#email-status", { hasText: "Merci ! Nous vous écrirons à ada@example.com." }).waitFor({ timeout: 10000 });
check("the address is saved", true);
const conversationId = await frame.locator("body").getAttribute("data-conversation");
const { data: conversation } = await api("GET", `/api/conversations/${conversationId}`);
const { data: customer } = await api("GET", `/api/customers/${conversation.customer_id}`);
check("agents see the customer's email (unverified)", customer.email === "ada@example.com" && customer.verified === false, customer);
if (screenshots) await page.screenshot({ path: `${screenshots}/widget-email-capture.png` });

// Answers while the chat is closed: a badge counts them; opening the chat clears it.
await button.click();
check("closed again", await page.locator("#netia-chat-frame").isHidden());
const agent = new Socket(`${netia.replace(/^http/, "ws")}/socket`, {
  transport: WebSocket,
  params: { token: process.env.AGENT_TOKEN },
});
agent.connect();
const topic = agent.channel(`conversation:${conversationId}`, {});
await new Promise((r) => topic.join().receive("ok", r));
const say = (body) => new Promise((r) => topic.push("shout", { body }).receive("ok", r));
await say("Bonjour Ada, je regarde.");
await page.locator("#netia-chat-badge:not([hidden])", { hasText: "1" }).waitFor({ timeout: 10000 });
check("one answer while closed: badge 1", (await button.getAttribute("aria-label")) === "Ouvrir le chat (1 message non lu)");
await say("Elle part demain.");
await page.locator("#netia-chat-badge", { hasText: "2" }).waitFor({ timeout: 10000 });
check("two answers: badge 2", (await button.getAttribute("aria-label")) === "Ouvrir le chat (2 messages non lus)");
if (screenshots) await page.screenshot({ path: `${screenshots}/widget-unread-badge.png` });
await button.click();
check("opening clears the badge", await page.locator("#netia-chat-badge").isHidden());
await frame.locator(".message", { hasText: "Elle part demain." }).waitFor({ timeout: 10000 });
await page.waitForTimeout(300);
await say("Autre chose ?");
await frame.locator(".message", { hasText: "Autre chose ?" }).waitFor({ timeout: 10000 });
await page.waitForTimeout(300);
check("an answer while open adds no badge", await page.locator("#netia-chat-badge").isHidden());
agent.disconnect();

// The account chooses German for everyone; a language the widget does not speak is refused.
const refused = await api("PUT", "/api/widget_settings", { locale: "it" });
check("an unknown widget language is refused (422)", refused.status === 422, refused.json);
check("no reply time is shown unless the account sets one", await frame.locator("#reply-time").isHidden());
const saved = await api("PUT", "/api/widget_settings", { locale: "de", reply_time: "hours" });
check("the account's language is saved", saved.status === 200 && saved.data.locale === "de", saved.json);
const german = await context.newPage();
await german.goto(hostUrl);
await german.locator("#netia-chat-button").click();
const germanFrame = german.frameLocator("#netia-chat-frame");
await germanFrame.locator("body[data-ready=true]").waitFor({ timeout: 20000 });
check("the account's language wins over the browser's", (await germanFrame.locator("#message").getAttribute("placeholder")) === "Nachricht eingeben…");
check("the customer who left an email is not asked again", await germanFrame.locator("#email-capture").isHidden());
const replyTime = await germanFrame.locator("#reply-time").textContent();
check("the reply time the account sets, in the widget's language", replyTime === "Wir antworten in der Regel innerhalb weniger Stunden.", replyTime);
await api("PUT", "/api/widget_settings", { locale: "" });

// A browser in a language the widget does not speak gets English.
const italian = await browser.newContext({ locale: "it-IT" });
const direct = await italian.newPage();
await direct.goto(`${netia}/chat?accountId=${account}`);
await direct.locator("body[data-ready=true]").waitFor({ timeout: 20000 });
check("otherwise English", (await direct.locator("#send").textContent()) === "Send");

check("no console errors", consoleErrors.length === 0, consoleErrors);
await browser.close();
host.close();
console.log("all checks passed");
process.exit(0);
