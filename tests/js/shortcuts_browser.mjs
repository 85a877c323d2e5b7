// The dashboard's keyboard shortcuts in headless Chromium: j / k move through the inbox and open the
// conversation, r goes to the reply box (where letters are text, not shortcuts; Esc leaves it), e
// closes the conversation, ? opens the help and Esc closes it.
// Run by tests/browser.rs.
import { chromium } from "playwright-core";
import { check, deadline } from "./check.mjs";

const netia = process.env.NETIA_URL;
const account = process.env.ACCOUNT_ID;
deadline(60);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
const errors = [];
page.on("pageerror", (e) => errors.push(e.message));

const post = async (path, token, body) => {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`${netia}${path}`, { method: "POST", headers, body: JSON.stringify(body) });
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return (await response.json()).data;
};
for (const name of ["Ada Lovelace", "Alan Turing"]) {
  const customer = await post("/api/customers", null, { account_id: account, name });
  await post("/api/conversations", customer.token, { account_id: account, customer_id: customer.id });
}

await page.goto(`${netia}/`);
await page.locator("#login-email").fill(process.env.AGENT_EMAIL);
await page.locator("#login-password").fill(process.env.AGENT_PASSWORD);
await page.locator("#login-form button[type=submit]").click();
await page.locator("body[data-live=true]").waitFor({ timeout: 20000 });
await page.locator("#conversations button").nth(1).waitFor({ timeout: 10000 });
const names = await page.locator("#conversations .who").allTextContents();
const current = () => page.locator("#conversations button[aria-current=true] .who").textContent();
const opened = async (name) => {
  await page.locator("#conv-title", { hasText: name }).waitFor({ timeout: 10000 });
  return (await current()) === name;
};

await page.keyboard.press("j");
check("j opens the first conversation", await opened(names[0]), names);
await page.keyboard.press("j");
check("j again opens the next one", await opened(names[1]));
await page.keyboard.press("k");
check("k goes back", await opened(names[0]));

await page.keyboard.press("r");
check("r goes to the reply box", await page.evaluate(() => document.activeElement.id === "reply"));
await page.keyboard.type("jk");
check("letters typed there are text, not shortcuts", (await page.locator("#reply").inputValue()) === "jk" && (await current()) === names[0]);
await page.keyboard.press("Escape");
check("Esc leaves the reply box", await page.evaluate(() => document.activeElement.id !== "reply"));

await page.keyboard.press("e");
await page.locator("#toggle-status", { hasText: "Reopen" }).waitFor({ timeout: 10000 });
check("e closes the conversation", true);

await page.keyboard.press("?");
check("? opens the shortcuts help", await page.locator("#shortcuts").isVisible());
await page.keyboard.press("j");
check("shortcuts wait while the help is open", (await page.locator("#conv-title").textContent()) === names[0]);
await page.keyboard.press("Escape");
check("Esc closes it", await page.locator("#shortcuts").isHidden());
check("no page errors", errors.length === 0, errors);

await browser.close();
console.log("all checks passed");
process.exit(0);
