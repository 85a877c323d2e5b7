// Accessibility of both pages, by axe-core (npm `axe-core`, run inside headless Chromium): the
// widget, the inbox, a conversation and the settings, each in the light and the dark scheme, have
// no serious or critical violation (WCAG 2.x A and AA rules, colour contrast included).
// Run by tests/browser.rs.
import { createRequire } from "node:module";
import { check, deadline, launchChromium, rest, signIn } from "./check.mjs";

const netia = process.env.NETIA_URL;
const account = process.env.ACCOUNT_ID;
const agentToken = process.env.AGENT_TOKEN;
deadline(120);
const axePath = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

const call = rest;
// Something to look at: a conversation with a customer's message (from the widget below), an
// agent's reply, a note, a priority mark and a tag.
await call("PUT", "/api/widget_settings", agentToken, { greeting: "Hi! How can we help?", reply_time: "minutes" });

const browser = await launchChromium();

/** Serious and critical violations on `page` (or in `frame`), as "rule: target" lines. */
async function audit(target) {
  await target.addScriptTag({ path: axePath });
  const result = await target.evaluate(async () => {
    const r = await window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } });
    return r.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .flatMap((v) => v.nodes.map((n) => `${v.id}: ${n.target.join(" ")} (${n.failureSummary.split("\n")[1] || ""})`));
  });
  return result;
}

for (const colorScheme of ["light", "dark"]) {
  // bypassCSP: our pages allow no inline script, and axe is injected as one.
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme, bypassCSP: true });

  // The widget, after the customer wrote.
  const widget = await context.newPage();
  await widget.goto(`${netia}/chat?accountId=${account}`);
  await widget.locator("body[data-ready=true]").waitFor({ timeout: 20000 });
  // A file first (the text after it names the conversation in the inbox), so that attachments are
  // audited on both pages.
  await widget.setInputFiles("#file", { name: `notes-${colorScheme}.txt`, mimeType: "text/plain", buffer: Buffer.from("Order 1234") });
  await widget.locator(".message.mine .file", { hasText: `notes-${colorScheme}.txt` }).waitFor({ timeout: 10000 });
  await widget.locator("#message").fill(`Where is my parcel? (${colorScheme})`);
  await widget.locator("#message").press("Enter");
  await widget.locator(".message.mine[data-state=sent]", { hasText: "Where is my parcel" }).waitFor({ timeout: 10000 });
  let found = await audit(widget);
  check(`${colorScheme}: the widget has no serious or critical violation`, found.length === 0, found);

  // The dashboard: inbox, conversation, settings.
  const page = await context.newPage();
  await page.goto(`${netia}/`);
  found = await audit(page);
  check(`${colorScheme}: the sign-in page has none`, found.length === 0, found);
  await page.locator("#login-email").fill(process.env.AGENT_EMAIL);
  await page.locator("#login-password").fill(process.env.AGENT_PASSWORD);
  await page.locator("#login-form button[type=submit]").click();
  await page.locator("body[data-live=true]").waitFor({ timeout: 20000 });
  await page.locator("#conversations button", { hasText: `(${colorScheme})` }).waitFor({ timeout: 10000 });
  found = await audit(page);
  check(`${colorScheme}: the inbox has none`, found.length === 0, found);

  await page.locator("#conversations button", { hasText: `(${colorScheme})` }).click();
  await page.locator("#messages .message.customer .file").waitFor({ timeout: 10000 });
  const id = await page.evaluate(() => document.body.dataset.conversation);
  await call("POST", `/api/conversations/${id}/messages`, agentToken, { body: "On its way!" });
  await call("POST", `/api/conversations/${id}/messages`, agentToken, { body: "VIP", private: true });
  await call("PATCH", `/api/conversations/${id}`, agentToken, { priority: "priority", tags: ["shipping"] });
  await page.locator("#messages .message.note").waitFor({ timeout: 10000 });
  await page.locator("#customer dt").first().waitFor({ timeout: 10000 });
  found = await audit(page);
  check(`${colorScheme}: a conversation has none`, found.length === 0, found);

  await page.locator("#open-settings").click();
  await page.locator("#snippet").waitFor({ timeout: 10000 });
  found = await audit(page);
  check(`${colorScheme}: the settings have none`, found.length === 0, found);

  await page.locator("#close-settings").click();
  await page.keyboard.press("?");
  found = await audit(page);
  check(`${colorScheme}: the shortcuts help has none`, found.length === 0, found);
  await context.close();
}

await browser.close();
console.log("all checks passed");
process.exit(0);
